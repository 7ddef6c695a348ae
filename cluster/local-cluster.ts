// The local cluster: real etcd, kube-apiserver, kube-controller-manager and
// kube-scheduler on loopback ports in a temp dir, plus our fake kubelet and
// hostPath provisioner for what needs a container runtime or a storage backend.
// Used by the cluster tests and by `npm run demo`.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { Kube, paths } from '../src/kube.js';
import { findBinaries, REPO_ROOT, type Binaries } from './binaries.js';
import { FakeKubelet, type ImageEntrypoints } from './fake-kubelet.js';
import { HostPathProvisioner } from './hostpath-provisioner.js';
import { createClusterPki, signClientCertificate } from './pki.js';
import { freePort, startProcess, waitFor, type ManagedProcess } from './processes.js';

export interface LocalClusterOptions {
  /** Node names; default one node, `node-1`. */
  nodes?: string[];
  /** Where the temp dir goes (default the OS temp dir). */
  baseDir?: string;
  /** Progress lines (what is starting); default silent. */
  log?: (line: string) => void;
  /** Extra image entrypoints for the fake kubelet (the pvshift image is always known). */
  images?: ImageEntrypoints;
  /** Keep the temp dir after stop (for debugging); also PVSHIFT_KEEP_CLUSTER=1. */
  keep?: boolean;
}

export interface LocalCluster {
  dir: string;
  /** The admin's (group system:masters): for setup, never for pvshift itself. */
  kubeconfigPath: string;
  kubeConfig: KubeConfig;
  kube: Kube;
  /**
   * A kubeconfig for another identity, written to a file in `dir`: a client
   * certificate signed by the cluster's CA, `user` as its CN and `groups` as its
   * O attributes. It has only what RBAC grants that user and those groups.
   */
  kubeconfigFor(user: string, groups?: string[]): Promise<{ kubeConfig: KubeConfig; path: string }>;
  server: string;
  /** Host directory under which the hostPath provisioner makes volumes. */
  storageRoot: string;
  nodes: string[];
  binaries: Binaries;
  kubelet: FakeKubelet;
  provisioner: HostPathProvisioner;
  /** The log file of a component: etcd, kube-apiserver, kube-controller-manager, kube-scheduler. */
  logs: Record<string, string>;
  /** Tears everything down; safe to call more than once. */
  stop(): Promise<void>;
}

/** The image the copy pods of pvshift use, and how the fake kubelet runs it on this host. */
export const PVSHIFT_DEV_IMAGE = 'pvshift:dev';
export function pvshiftEntrypoint(): string[] {
  // The loader by absolute URL: a copy pod's working directory is /, where a bare
  // `--import tsx` would not resolve.
  return [process.execPath, '--import', import.meta.resolve('tsx'), join(REPO_ROOT, 'src/main.ts')];
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

function buildKubeConfig(server: string, caPem: string, certPem: string, keyPem: string, user = 'pvshift-admin'): KubeConfig {
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

export async function startLocalCluster(options: LocalClusterOptions = {}): Promise<LocalCluster> {
  const log = options.log ?? (() => {});
  const nodes = options.nodes ?? ['node-1'];
  const started = Date.now();
  const binaries = await findBinaries(log);
  const dir = await mkdtemp(join(options.baseDir ?? tmpdir(), 'pvshift-cluster-'));
  const processes: ManagedProcess[] = [];
  let kubelet: FakeKubelet | undefined;
  let provisioner: HostPathProvisioner | undefined;
  let kube: Kube | undefined;
  let stopped = false;
  const keep = options.keep ?? process.env.PVSHIFT_KEEP_CLUSTER === '1';

  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    provisioner?.stop();
    await kubelet?.stop();
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
    const pki = createClusterPki();
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

    const [etcdPort, etcdPeerPort, apiPort, kcmPort, schedPort, kubeletPort] = await Promise.all(
      Array.from({ length: 6 }, () => freePort()),
    );
    const logs: Record<string, string> = {};
    const start = (name: string, bin: string, args: string[]): ManagedProcess => {
      logs[name] = join(dir, `${name}.log`);
      const p = startProcess(name, bin, args, logs[name]);
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

    log(`starting kube-apiserver on 127.0.0.1:${apiPort}`);
    const server = `https://127.0.0.1:${apiPort}`;
    start('kube-apiserver', binaries.kubeApiserver, [
      `--etcd-servers=${etcdUrl}`,
      '--bind-address=127.0.0.1',
      // On loopback the API server cannot pick an advertise address by itself.
      '--advertise-address=127.0.0.1',
      `--secure-port=${apiPort}`,
      `--tls-cert-file=${pkiPath('apiserver.crt')}`,
      `--tls-private-key-file=${pkiPath('apiserver.key')}`,
      `--client-ca-file=${pkiPath('ca.crt')}`,
      '--authorization-mode=RBAC',
      '--enable-admission-plugins=NamespaceLifecycle,LimitRanger,ServiceAccount,DefaultStorageClass,StorageObjectInUseProtection,PersistentVolumeClaimResize,DefaultTolerationSeconds,Priority,MutatingAdmissionWebhook,ValidatingAdmissionPolicy,ValidatingAdmissionWebhook,ResourceQuota',
      `--service-account-issuer=https://kubernetes.default.svc.cluster.local`,
      `--service-account-key-file=${pkiPath('sa.pub')}`,
      `--service-account-signing-key-file=${pkiPath('sa.key')}`,
      '--service-cluster-ip-range=10.0.0.0/24',
      '--allow-privileged=true',
      // Logs are proxied to the fake kubelet on 127.0.0.1; with no kubelet CA set
      // the API server does not verify the kubelet's serving certificate.
      '--kubelet-preferred-address-types=InternalIP',
      `--kubelet-client-certificate=${pkiPath('admin.crt')}`,
      `--kubelet-client-key=${pkiPath('admin.key')}`,
      '--profiling=false',
      '--v=1',
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
    const kubeconfigFor = async (user: string, groups: string[] = []): Promise<{ kubeConfig: KubeConfig; path: string }> => {
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
      `--controllers=${K8S_CONTROLLERS.join(',')}`,
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
      '--v=1',
    ]);

    log(`starting the fake kubelet for ${nodes.join(', ')} and the hostPath provisioner`);
    kubelet = new FakeKubelet(api, {
      nodes,
      dir: join(dir, 'kubelet'),
      images: { [PVSHIFT_DEV_IMAGE]: pvshiftEntrypoint(), pvshift: pvshiftEntrypoint(), ...options.images },
      tls: pki.kubelet,
      port: kubeletPort!,
      log,
      kubeletVersion: binaries.kubeApiserver.match(/k8s-(v[\d.]+)/)?.[1] ?? 'v1.34.4',
    });
    await kubelet.start();
    const storageRoot = join(dir, 'volumes');
    provisioner = new HostPathProvisioner(api, storageRoot, log);
    await provisioner.start();

    // Pods can only be created once the namespace's default ServiceAccount exists.
    await waitFor('the default ServiceAccount', () => api.get(paths.serviceAccounts('default', 'default')), 60_000);
    log(`local cluster ready in ${((Date.now() - started) / 1000).toFixed(1)} s; kubeconfig ${kubeconfigPath}`);
    return { dir, kubeconfigPath, kubeConfig, kubeconfigFor, kube: api, server, storageRoot, nodes, binaries, kubelet, provisioner, logs, stop };
  } catch (e: unknown) {
    await stop();
    throw e;
  }
}
