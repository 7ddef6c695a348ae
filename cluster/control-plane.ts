// The control plane both test tiers run: real etcd, kube-apiserver,
// kube-controller-manager and kube-scheduler in a temp dir. The fast tier
// (local-cluster.ts) serves it on loopback and adds a fake kubelet; the
// real-node tier (real-node-cluster.ts) serves it on an address pods can reach
// and adds containerd and a real kubelet.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { Kube, paths } from '../src/kube.js';
import { findBinaries, type Binaries } from './binaries.js';
import { createClusterPki, signClientCertificate, type ClusterPki } from './pki.js';
import { freePort, startProcess, waitFor, type ManagedProcess } from './processes.js';

/** What a test or the demo holds of either cluster: the control plane's access and its teardown. */
export type ClusterAccess = Pick<
  ControlPlane,
  'dir' | 'kubeconfigPath' | 'kubeConfig' | 'kube' | 'kubeconfigFor' | 'server' | 'binaries' | 'logs' | 'stop'
>;

export interface ControlPlaneOptions {
  /** Where the temp dir goes (default the OS temp dir). */
  baseDir?: string;
  log: (line: string) => void;
  /** Keep the temp dir after stop (for debugging); also PVSHIFT_KEEP_CLUSTER=1. */
  keep?: boolean;
  /**
   * Where the API server listens and what it advertises (default 127.0.0.1 on a
   * free port). The real-node tier uses the `kubernetes` Service's own address
   * and port 443, so pods reach the API server without kube-proxy.
   */
  address?: string;
  port?: number;
  /** The Service range (default 10.0.0.0/24); its first address is the `kubernetes` Service's. */
  serviceCidr?: string;
  /** More kube-apiserver flags, and more kube-controller-manager controllers. */
  apiserverArgs?: string[];
  controllers?: string[];
  /** Authorizers (default RBAC). */
  authorizationModes?: string[];
  /** Admission plugins added to the default set. */
  admissionPlugins?: string[];
}

export interface ControlPlane {
  dir: string;
  pki: ClusterPki;
  /** The admin's (group system:masters): for setup, never for pvshift itself. */
  kubeconfigPath: string;
  kubeConfig: KubeConfig;
  kube: Kube;
  /**
   * A kubeconfig for another identity, written to a file in `dir`: a client
   * certificate signed by the cluster's CA, `user` as its CN and `groups` as its
   * O attributes. It has only what RBAC grants that user and those groups.
   */
  kubeconfigFor: (user: string, groups?: string[]) => Promise<{ kubeConfig: KubeConfig; path: string }>;
  server: string;
  binaries: Binaries;
  /** The log file of a component: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, … */
  logs: Record<string, string>;
  /** Starts one more process whose log lives beside the others and which stops with the cluster. */
  start(name: string, bin: string, args: string[], env?: NodeJS.ProcessEnv): ManagedProcess;
  /** Runs before the processes stop (the node's teardown). */
  onStop(step: () => void | Promise<void>): void;
  /** Tears everything down; safe to call more than once. */
  stop: () => Promise<void>;
}

const K8S_CONTROLLERS = [
  'namespace-controller',
  'garbage-collector-controller',
  'serviceaccount-controller',
  'serviceaccount-token-controller',
  'root-ca-certificate-publisher-controller',
  'deployment-controller',
  'replicaset-controller',
  'statefulset-controller',
  'disruption-controller',
  'persistentvolume-binder-controller',
  'persistentvolume-protection-controller',
  'persistentvolumeclaim-protection-controller',
  // Type-checks ValidatingAdmissionPolicies into their status, so a bad
  // expression in the chart's policy shows as a warning, not only as denials.
  'validatingadmissionpolicy-status-controller',
];

const ADMISSION_PLUGINS = [
  'NamespaceLifecycle',
  'LimitRanger',
  'ServiceAccount',
  'DefaultStorageClass',
  'StorageObjectInUseProtection',
  'PersistentVolumeClaimResize',
  'DefaultTolerationSeconds',
  'Priority',
  'MutatingAdmissionWebhook',
  'ValidatingAdmissionPolicy',
  'ValidatingAdmissionWebhook',
  'ResourceQuota',
];

export function buildKubeConfig(
  server: string,
  caPem: string,
  certPem: string,
  keyPem: string,
  user = 'pvshift-admin',
): KubeConfig {
  const kc = new KubeConfig();
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  kc.loadFromOptions({
    clusters: [{ name: 'pvshift-local', server, caData: b64(caPem) }],
    users: [{ name: user, certData: b64(certPem), keyData: b64(keyPem) }],
    contexts: [{ name: 'pvshift-local', cluster: 'pvshift-local', user, namespace: 'default' }],
    currentContext: 'pvshift-local',
  });
  return kc;
}

/** The first address of a range: the `kubernetes` Service's ClusterIP. */
export function firstServiceAddress(cidr: string): string {
  const [base] = cidr.split('/');
  const octets = base!.split('.').map(Number);
  octets[3] = octets[3]! + 1;
  return octets.join('.');
}

export async function startControlPlane(options: ControlPlaneOptions): Promise<ControlPlane> {
  const log = options.log;
  const binaries = await findBinaries(log);
  const dir = await mkdtemp(join(options.baseDir ?? tmpdir(), 'pvshift-cluster-'));
  const processes: ManagedProcess[] = [];
  const stopSteps: (() => void | Promise<void>)[] = [];
  let kube: Kube | undefined;
  let stopped = false;
  const keep = options.keep ?? process.env.PVSHIFT_KEEP_CLUSTER === '1';
  const address = options.address ?? '127.0.0.1';
  const serviceCidr = options.serviceCidr ?? '10.0.0.0/24';

  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    for (const step of [...stopSteps].reverse()) {
      try {
        await step();
      } catch (e: unknown) {
        log(`teardown: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
    kube?.close();
    for (const p of [...processes].reverse()) await p.stop();
    if (!keep) await rm(dir, { recursive: true, force: true });
  };
  // Ctrl-C: tear down, then die of the same signal as the user meant.
  const onSignal = (signal: NodeJS.Signals): void => {
    void stop().finally(() => process.kill(process.pid, signal));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    const pki = createClusterPki([address, firstServiceAddress(serviceCidr)]);
    const pkiDir = join(dir, 'pki');
    await mkdir(pkiDir, { recursive: true });
    const files: Record<string, string> = {
      'ca.crt': pki.ca.certPem,
      'ca.key': pki.ca.keyPem,
      'apiserver.crt': pki.apiserver.certPem,
      'apiserver.key': pki.apiserver.keyPem,
      'admin.crt': pki.admin.certPem,
      'admin.key': pki.admin.keyPem,
      'sa.pub': pki.serviceAccount.publicKeyPem,
      'sa.key': pki.serviceAccount.privateKeyPem,
    };
    for (const [name, content] of Object.entries(files)) await writeFile(join(pkiDir, name), content, { mode: 0o600 });
    const pkiPath = (name: string) => join(pkiDir, name);

    const [etcdPort, etcdPeerPort, freeApiPort, kcmPort, schedPort] = await Promise.all(
      Array.from({ length: 5 }, () => freePort()),
    );
    const apiPort = options.port ?? freeApiPort!;
    const logs: Record<string, string> = {};
    const start = (name: string, bin: string, args: string[], env?: NodeJS.ProcessEnv): ManagedProcess => {
      logs[name] = join(dir, `${name}.log`);
      const p = startProcess(name, bin, args, logs[name], env);
      processes.push(p);
      void p.exited.then((code) => {
        if (!stopped) log(`${name} exited unexpectedly (code ${code}); see ${logs[name]}`);
      });
      return p;
    };

    log(`starting etcd on 127.0.0.1:${etcdPort}`);
    const etcdUrl = `http://127.0.0.1:${etcdPort}`;
    start('etcd', binaries.etcd, [
      '--name=pvshift',
      `--data-dir=${join(dir, 'etcd')}`,
      `--listen-client-urls=${etcdUrl}`,
      `--advertise-client-urls=${etcdUrl}`,
      `--listen-peer-urls=http://127.0.0.1:${etcdPeerPort}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeerPort}`,
      `--initial-cluster=pvshift=http://127.0.0.1:${etcdPeerPort}`,
      // A throwaway cluster: durability buys nothing, fsync costs seconds.
      '--unsafe-no-fsync',
      '--log-level=warn',
    ]);
    await waitFor('etcd /health', async () => {
      const response = await fetch(`${etcdUrl}/health`);
      return response.ok ? true : undefined;
    });

    log(`starting kube-apiserver on ${address}:${apiPort}`);
    const server = `https://${address}:${apiPort}`;
    start('kube-apiserver', binaries.kubeApiserver, [
      `--etcd-servers=${etcdUrl}`,
      `--bind-address=${address}`,
      // On loopback the API server cannot pick an advertise address by itself.
      `--advertise-address=${address}`,
      `--secure-port=${apiPort}`,
      `--tls-cert-file=${pkiPath('apiserver.crt')}`,
      `--tls-private-key-file=${pkiPath('apiserver.key')}`,
      `--client-ca-file=${pkiPath('ca.crt')}`,
      `--authorization-mode=${(options.authorizationModes ?? ['RBAC']).join(',')}`,
      `--enable-admission-plugins=${[...ADMISSION_PLUGINS, ...(options.admissionPlugins ?? [])].join(',')}`,
      `--service-account-issuer=https://kubernetes.default.svc.cluster.local`,
      `--service-account-key-file=${pkiPath('sa.pub')}`,
      `--service-account-signing-key-file=${pkiPath('sa.key')}`,
      `--service-cluster-ip-range=${serviceCidr}`,
      '--allow-privileged=true',
      // Logs are read from the kubelet's InternalIP; with no kubelet CA set the
      // API server does not verify the kubelet's serving certificate.
      '--kubelet-preferred-address-types=InternalIP',
      `--kubelet-client-certificate=${pkiPath('admin.crt')}`,
      `--kubelet-client-key=${pkiPath('admin.key')}`,
      '--profiling=false',
      '--v=1',
      ...(options.apiserverArgs ?? []),
    ]);
    const kubeConfig = buildKubeConfig(server, pki.ca.certPem, pki.admin.certPem, pki.admin.keyPem);
    kube = new Kube(kubeConfig);
    const api = kube;
    await waitFor(
      'kube-apiserver /readyz',
      async () => {
        const response = await api.raw('GET', '/readyz');
        return response.status === 200 ? true : undefined;
      },
      120_000,
    );
    const kubeconfigPath = join(dir, 'kubeconfig');
    await writeFile(kubeconfigPath, kubeConfig.exportConfig(), { mode: 0o600 });
    const kubeconfigFor = async (
      user: string,
      groups: string[] = [],
    ): Promise<{ kubeConfig: KubeConfig; path: string }> => {
      const pair = signClientCertificate(pki.ca, user, groups);
      const userConfig = buildKubeConfig(server, pki.ca.certPem, pair.certPem, pair.keyPem, user);
      const path = join(dir, `kubeconfig-${user.replace(/[^A-Za-z0-9.-]+/g, '_')}`);
      await writeFile(path, userConfig.exportConfig(), { mode: 0o600 });
      return { kubeConfig: userConfig, path };
    };

    log('starting kube-controller-manager and kube-scheduler');
    start('kube-controller-manager', binaries.kubeControllerManager, [
      `--kubeconfig=${kubeconfigPath}`,
      `--authentication-kubeconfig=${kubeconfigPath}`,
      `--authorization-kubeconfig=${kubeconfigPath}`,
      '--bind-address=127.0.0.1',
      `--secure-port=${kcmPort}`,
      `--controllers=${[...K8S_CONTROLLERS, ...(options.controllers ?? [])].join(',')}`,
      '--use-service-account-credentials=true',
      `--service-account-private-key-file=${pkiPath('sa.key')}`,
      `--root-ca-file=${pkiPath('ca.crt')}`,
      '--leader-elect=false',
      // The PV controller's resync: binding is event-driven, but a rebind of a
      // Released volume is noticed on resync; the default 15 s slows every test.
      '--pvclaimbinder-sync-period=2s',
      '--v=1',
    ]);
    start('kube-scheduler', binaries.kubeScheduler, [
      `--kubeconfig=${kubeconfigPath}`,
      `--authentication-kubeconfig=${kubeconfigPath}`,
      `--authorization-kubeconfig=${kubeconfigPath}`,
      '--bind-address=127.0.0.1',
      `--secure-port=${schedPort}`,
      '--leader-elect=false',
      // A pod whose claim binds while its scheduling attempt is failing on "unbound
      // immediate PersistentVolumeClaims" can miss the requeue (kubernetes/kubernetes
      // #125762, seen in CI) and wait in the unschedulable pool for the 5-minute
      // fallback. Here the fallback is 10 s (checked every 30 s): a test waits a
      // minute at most for a pod, and no pod should wait on this race for minutes.
      '--pod-max-in-unschedulable-pods-duration=10s',
      '--v=1',
    ]);
    return {
      dir,
      pki,
      kubeconfigPath,
      kubeConfig,
      kube: api,
      kubeconfigFor,
      server,
      binaries,
      logs,
      start,
      onStop: (step) => void stopSteps.push(step),
      stop,
    };
  } catch (e: unknown) {
    await stop();
    throw e;
  }
}

/** Pods can only be created once the namespace's default ServiceAccount exists. */
export async function waitForDefaultServiceAccount(kube: Kube): Promise<void> {
  await waitFor('the default ServiceAccount', () => kube.get(paths.serviceAccounts('default', 'default')), 60_000);
}
