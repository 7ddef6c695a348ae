// Runs pvshift (webhook and controller, one process, as in the chart) against a
// local cluster, from source, registered by URL: what the cluster tests and the
// demo use. The process is real, so tests can SIGKILL it and start it again.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { get as httpsGet } from 'node:https';
import { join } from 'node:path';
import { installVolumeMigrationCrd } from './crds.js';
import { REPO_ROOT } from './binaries.js';
import type { LocalCluster } from './local-cluster.js';
import { freePort, waitFor } from './processes.js';
import { ApiError, paths } from '../src/kube.js';
import { buildWebhookConfiguration } from '../webhook/configuration.js';

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
  start(extraArgs?: string[], options?: StartOptions): Promise<PvshiftProcess>;
}

export interface StartOptions {
  /** `webhook,controller` (default), `webhook` or `controller`. */
  mode?: string;
  env?: Record<string, string>;
  /** Do not wait for readiness (a process expected to die soon). */
  noWait?: boolean;
}

/** CRD, namespace and the webhook configuration pointing at a loopback port. */
export async function installPvshift(cluster: LocalCluster): Promise<Installation> {
  const { kube } = cluster;
  await installVolumeMigrationCrd(cluster.kubeConfig);
  try {
    await kube.create(paths.namespaces(), { metadata: { name: PVSHIFT_NAMESPACE } });
  } catch (e: unknown) {
    if (!(e instanceof ApiError && e.code === 409)) throw e;
  }
  const port = await freePort();
  const configuration = buildWebhookConfiguration({ name: WEBHOOK_CONFIGURATION, pvshiftNamespace: PVSHIFT_NAMESPACE, caBundle: '', url: `https://127.0.0.1:${port}` });
  try {
    await kube.create(paths.mutatingWebhooks(), configuration);
  } catch (e: unknown) {
    if (!(e instanceof ApiError && e.code === 409)) throw e;
  }
  let runs = 0;
  return {
    port,
    start: (extraArgs = [], options = {}) => startPvshift(cluster, port, `${++runs}`, extraArgs, options),
  };
}

async function startPvshift(cluster: LocalCluster, port: number, run: string, extraArgs: string[], options: StartOptions): Promise<PvshiftProcess> {
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
      `--kubeconfig=${cluster.kubeconfigPath}`,
      `--namespace=${PVSHIFT_NAMESPACE}`,
      `--port=${port}`,
      '--host=127.0.0.1',
      `--metrics-port=${metricsPort}`,
      '--webhook-extra-names=127.0.0.1',
      `--webhook-configuration=${WEBHOOK_CONFIGURATION}`,
      '--copy-image=pvshift:dev',
      '--lease-duration=4',
      ...extraArgs,
    ],
    { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PVSHIFT_LOG_LEVEL: process.env.PVSHIFT_LOG_LEVEL ?? 'info', ...options.env } },
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
      const config = await cluster.kube.get<{ webhooks?: { clientConfig?: { caBundle?: string } }[] }>(paths.mutatingWebhooks(WEBHOOK_CONFIGURATION));
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
    const request = httpsGet({ host: '127.0.0.1', port, path: '/readyz', rejectUnauthorized: false, timeout: 2000 }, (response) => {
      response.resume();
      resolve(response.statusCode === 200);
    });
    request.on('error', () => resolve(false));
    request.on('timeout', () => request.destroy());
  });
}
