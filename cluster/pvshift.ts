// Runs pvshift (webhook and controller, one process, as in the chart) against a
// local cluster, from source, registered by URL: what the cluster tests and the
// demo use. The process is real, so tests can SIGKILL it and start it again.
// It runs as the chart's ServiceAccount under the chart's RBAC and admission
// policy, rendered from the chart by the real helm binary, never as the admin:
// a call the chart does not grant fails here as it would in a real install.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { get as httpsGet } from 'node:https';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';
import { installVolumeMigrationCrd } from './crds.js';
import { findBinaries, REPO_ROOT } from './binaries.js';
import type { LocalCluster } from './local-cluster.js';
import { freePort, waitFor } from './processes.js';
import { ApiError, paths, type Kube } from '../src/kube.js';
import { ANNOTATION_MIGRATION_UID } from '../src/names.js';
import { buildWebhookConfiguration } from '../webhook/configuration.js';

const execFileAsync = promisify(execFile);

export const PVSHIFT_NAMESPACE = 'pvshift-system';
export const WEBHOOK_CONFIGURATION = 'pvshift';

export interface PvshiftProcess {
  child: ChildProcess;
  /** Resolves when the process has exited (by itself or stopped). */
  exited: Promise<void>;
  logPath: string;
  port: number;
  /** SIGTERM and wait (graceful), or SIGKILL (a crash). */
  stop(signal?: 'SIGTERM' | 'SIGKILL'): Promise<void>;
}

export interface Installation {
  port: number;
  /** The user pvshift authenticates as: its ServiceAccount (`system:serviceaccount:<namespace>:<name>`). */
  user: string;
  /** The kubeconfig pvshift runs with (that identity). */
  kubeconfigPath: string;
  start(extraArgs?: string[], options?: StartOptions): Promise<PvshiftProcess>;
}

export interface InstallOptions {
  /**
   * The chart's ValidatingAdmissionPolicy (value `admissionPolicy.enabled`), on
   * by default as in the chart. Off for a test that must write what only
   * pvshift may: a VolumeMigration's status, pvshift's PV annotations.
   */
  admissionPolicy?: boolean;
}

export interface StartOptions {
  /** `webhook,controller` (default), `webhook` or `controller`. */
  mode?: string;
  env?: Record<string, string>;
  /** Do not wait for readiness (a process expected to die soon). */
  noWait?: boolean;
}

/** A rendered object of the chart. */
interface ChartObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; resourceVersion?: string };
  [key: string]: unknown;
}

/** The kinds installPvshift takes from the chart: pvshift's identity, its RBAC, its admission policy; and their API collections. */
const CHART_KINDS: Record<string, string> = {
  ServiceAccount: 'serviceaccounts',
  ClusterRole: 'clusterroles',
  ClusterRoleBinding: 'clusterrolebindings',
  Role: 'roles',
  RoleBinding: 'rolebindings',
  ValidatingAdmissionPolicy: 'validatingadmissionpolicies',
  ValidatingAdmissionPolicyBinding: 'validatingadmissionpolicybindings',
};

/** `helm template` of charts/pvshift as release `pvshift` in PVSHIFT_NAMESPACE, for this cluster's version. */
async function renderChart(cluster: LocalCluster, set: string[]): Promise<ChartObject[]> {
  const { helm } = await findBinaries();
  const version = await cluster.kube.request<{ gitVersion: string }>('GET', '/version');
  const args = [
    'template',
    'pvshift',
    join(REPO_ROOT, 'charts/pvshift'),
    '--namespace',
    PVSHIFT_NAMESPACE,
    '--kube-version',
    version.gitVersion,
  ];
  for (const pair of set) args.push('--set', pair);
  const { stdout } = await execFileAsync(helm, args, {
    cwd: REPO_ROOT,
    maxBuffer: 16 * 1024 * 1024,
    // No user's helm configuration or repositories leak in.
    env: {
      ...process.env,
      HELM_CACHE_HOME: join(REPO_ROOT, 'tmp/helm/cache'),
      HELM_CONFIG_HOME: join(REPO_ROOT, 'tmp/helm/config'),
      HELM_DATA_HOME: join(REPO_ROOT, 'tmp/helm/data'),
    },
  });
  return parseAllDocuments(stdout)
    .map((doc) => doc.toJSON() as ChartObject | null)
    .filter((m): m is ChartObject => m !== null && typeof m === 'object');
}

function oneOf(objects: ChartObject[], kind: string): ChartObject {
  const found = objects.filter((o) => o.kind === kind);
  if (found.length !== 1) throw new Error(`the chart rendered ${found.length} ${kind} objects, expected one`);
  return found[0]!;
}

/** The value of `--name=value` in the chart's Deployment, so local runs name what the chart's RBAC names. */
function chartFlag(objects: ChartObject[], name: string): string {
  const deployment = oneOf(objects, 'Deployment') as unknown as {
    spec: { template: { spec: { containers: { args?: string[] }[] } } };
  };
  const prefix = `--${name}=`;
  const arg = deployment.spec.template.spec.containers[0]?.args?.find((a) => a.startsWith(prefix));
  if (arg === undefined) throw new Error(`the chart's Deployment has no ${prefix}`);
  return arg.slice(prefix.length);
}

/** Creates the object, or replaces what a previous install left. */
async function apply(kube: Kube, object: ChartObject): Promise<void> {
  const base = object.apiVersion === 'v1' ? '/api/v1' : `/apis/${object.apiVersion}`;
  const collection = `${base}${object.metadata.namespace ? `/namespaces/${object.metadata.namespace}` : ''}/${CHART_KINDS[object.kind]}`;
  try {
    await kube.create(collection, object);
  } catch (e: unknown) {
    if (!(e instanceof ApiError && e.code === 409)) throw e;
    const current = await kube.get<ChartObject>(`${collection}/${object.metadata.name}`);
    await kube.replace(`${collection}/${object.metadata.name}`, {
      ...object,
      metadata: { ...object.metadata, resourceVersion: current?.metadata.resourceVersion },
    });
  }
}

/** Whether the API server's authorizer already lets `user` do this (RBAC reads bindings through an informer). */
async function isAllowed(
  kube: Kube,
  user: string,
  groups: string[],
  attributes: Record<string, string>,
): Promise<boolean> {
  const review = await kube.request<{ status?: { allowed?: boolean } }>(
    'POST',
    '/apis/authorization.k8s.io/v1/subjectaccessreviews',
    {
      apiVersion: 'authorization.k8s.io/v1',
      kind: 'SubjectAccessReview',
      spec: { user, groups, resourceAttributes: attributes },
    },
  );
  return review.status?.allowed === true;
}

interface AdmissionPolicy {
  metadata: { name: string; generation?: number };
  status?: {
    observedGeneration?: number;
    typeChecking?: { expressionWarnings?: { fieldRef: string; warning: string }[] };
  };
}

/**
 * Waits until the API server enforces the chart's admission policy (it loads
 * policies through an informer, so a moment after they are created): a dry-run
 * create of a PV carrying one of pvshift's annotations is refused. Then fails on
 * any warning of the API server's type check of its expressions, which would
 * otherwise surface as a puzzling denial (failurePolicy Fail) much later.
 */
async function waitForAdmissionPolicy(kube: Kube, name: string): Promise<void> {
  const probe = {
    apiVersion: 'v1',
    kind: 'PersistentVolume',
    metadata: { name: 'pvshift-policy-probe', annotations: { [ANNOTATION_MIGRATION_UID]: 'probe' } },
    spec: { capacity: { storage: '1Mi' }, accessModes: ['ReadWriteOnce'], hostPath: { path: '/nonexistent' } },
  };
  const path = `/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies/${name}`;
  const policy = await waitFor(`ValidatingAdmissionPolicy ${name} enforced and type-checked`, async () => {
    try {
      await kube.create(paths.volumes(), probe, { dryRun: 'All' });
      return undefined;
    } catch (e: unknown) {
      if (!(e instanceof ApiError && e.code === 403)) throw e;
    }
    const current = await kube.get<AdmissionPolicy>(path);
    return current?.status?.observedGeneration === current?.metadata.generation ? current : undefined;
  });
  const warnings = policy.status?.typeChecking?.expressionWarnings ?? [];
  if (warnings.length > 0)
    throw new Error(
      `ValidatingAdmissionPolicy ${name}: ${warnings.map((w) => `${w.fieldRef}: ${w.warning}`).join('; ')}`,
    );
}

/**
 * CRD, namespace, the chart's ServiceAccount, RBAC and admission policy, the
 * webhook configuration pointing at a loopback port, and a kubeconfig whose
 * identity is that ServiceAccount (a client certificate: RBAC matches a
 * ServiceAccount subject by user name, and the admission policy by the same).
 */
export async function installPvshift(cluster: LocalCluster, options: InstallOptions = {}): Promise<Installation> {
  const { kube } = cluster;
  await installVolumeMigrationCrd(cluster.kubeConfig);
  try {
    await kube.create(paths.namespaces(), { metadata: { name: PVSHIFT_NAMESPACE } });
  } catch (e: unknown) {
    if (!(e instanceof ApiError && e.code === 409)) throw e;
  }
  const chart = await renderChart(cluster, [`admissionPolicy.enabled=${options.admissionPolicy ?? true}`]);
  for (const object of chart.filter((o) => o.kind in CHART_KINDS)) await apply(kube, object);
  if (options.admissionPolicy ?? true)
    await waitForAdmissionPolicy(kube, oneOf(chart, 'ValidatingAdmissionPolicy').metadata.name);
  const serviceAccount = oneOf(chart, 'ServiceAccount').metadata.name;
  const user = `system:serviceaccount:${PVSHIFT_NAMESPACE}:${serviceAccount}`;
  const groups = ['system:serviceaccounts', `system:serviceaccounts:${PVSHIFT_NAMESPACE}`];
  const configurationName = chartFlag(chart, 'webhook-configuration');
  if (configurationName !== WEBHOOK_CONFIGURATION)
    throw new Error(
      `the chart names the webhook configuration ${configurationName}, cluster/pvshift.ts ${WEBHOOK_CONFIGURATION}`,
    );
  const tlsSecret = chartFlag(chart, 'tls-secret');
  // Both bindings in force before pvshift starts: its first calls (the
  // certificate Secret, the Lease) would otherwise race the RBAC informer.
  await waitFor("the chart's RBAC in force for pvshift", async () => {
    const clusterWide = await isAllowed(kube, user, groups, {
      group: 'pvshift.io',
      resource: 'volumemigrations',
      verb: 'list',
    });
    const namespaced = await isAllowed(kube, user, groups, {
      group: 'coordination.k8s.io',
      resource: 'leases',
      verb: 'create',
      namespace: PVSHIFT_NAMESPACE,
    });
    return clusterWide && namespaced ? true : undefined;
  });
  const { path: kubeconfigPath } = await cluster.kubeconfigFor(user, groups);

  const port = await freePort();
  const configuration = buildWebhookConfiguration({
    name: WEBHOOK_CONFIGURATION,
    pvshiftNamespace: PVSHIFT_NAMESPACE,
    caBundle: '',
    url: `https://127.0.0.1:${port}`,
  });
  try {
    await kube.create(paths.mutatingWebhooks(), configuration);
  } catch (e: unknown) {
    if (!(e instanceof ApiError && e.code === 409)) throw e;
  }
  let runs = 0;
  const identity = { kubeconfigPath, tlsSecret };
  return {
    port,
    user,
    kubeconfigPath,
    start: (extraArgs = [], startOptions = {}) =>
      startPvshift(cluster, identity, port, `${++runs}`, extraArgs, startOptions),
  };
}

async function startPvshift(
  cluster: LocalCluster,
  identity: { kubeconfigPath: string; tlsSecret: string },
  port: number,
  run: string,
  extraArgs: string[],
  options: StartOptions,
): Promise<PvshiftProcess> {
  const mode = options.mode ?? 'webhook,controller';
  const metricsPort = await freePort();
  const logPath = join(cluster.dir, `pvshift-${run}.log`);
  const log = createWriteStream(logPath, { flags: 'a' });
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      join(REPO_ROOT, 'src/main.ts'),
      `--mode=${mode}`,
      // pvshift's own identity, not the admin's: the chart's RBAC applies.
      `--kubeconfig=${identity.kubeconfigPath}`,
      `--namespace=${PVSHIFT_NAMESPACE}`,
      `--port=${port}`,
      '--host=127.0.0.1',
      `--metrics-port=${metricsPort}`,
      '--webhook-extra-names=127.0.0.1',
      `--webhook-configuration=${WEBHOOK_CONFIGURATION}`,
      // The Secret the chart's Role lets it get and update (resourceNames).
      `--tls-secret=${identity.tlsSecret}`,
      '--copy-image=pvshift:dev',
      '--lease-duration=4',
      ...extraArgs,
    ],
    {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, PVSHIFT_LOG_LEVEL: process.env.PVSHIFT_LOG_LEVEL ?? 'info', ...options.env },
    },
  );
  child.stdout?.pipe(log);
  child.stderr?.pipe(log);
  const kill = () => child.kill('SIGKILL');
  process.once('exit', kill);
  const exited = new Promise<void>((resolve) =>
    child.on('close', () => {
      process.off('exit', kill);
      resolve();
    }),
  );
  const handle: PvshiftProcess = {
    child,
    exited,
    logPath,
    port,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
  if (options.noWait) return handle;
  if (!mode.includes('webhook')) {
    await waitFor('pvshift controller up', async () => {
      if (child.exitCode !== null) throw new Error(`pvshift exited with ${child.exitCode}; see ${logPath}`);
      const response = await fetch(`http://127.0.0.1:${metricsPort}/healthz`).catch(() => undefined);
      return response?.ok ? true : undefined;
    });
    return handle;
  }
  // Ready: the webhook serves with the CA it patched into the configuration.
  await waitFor(
    'pvshift webhook ready with its CA bundle',
    async () => {
      if (child.exitCode !== null) throw new Error(`pvshift exited with ${child.exitCode}; see ${logPath}`);
      const config = await cluster.kube.get<{ webhooks?: { clientConfig?: { caBundle?: string } }[] }>(
        paths.mutatingWebhooks(WEBHOOK_CONFIGURATION),
      );
      if (!config?.webhooks?.every((w) => w.clientConfig?.caBundle)) return undefined;
      return (await webhookReady(port)) ? true : undefined;
    },
    60_000,
  );
  return handle;
}

/** The webhook's /readyz (true once its migration cache synced); its certificate is checked elsewhere. */
function webhookReady(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const request = httpsGet(
      { host: '127.0.0.1', port, path: '/readyz', rejectUnauthorized: false, timeout: 2000 },
      (response) => {
        response.resume();
        resolve(response.statusCode === 200);
      },
    );
    request.on('error', () => resolve(false));
    request.on('timeout', () => request.destroy());
  });
}
