// Shared by the real-node tier: a cluster with a real node per test file, the
// chart installed by the real helm with the image built here, the real kubectl
// (with the plugin bundle found through kubectl's plugin discovery on PATH),
// and a StatefulSet of real containers that writes a tree worth checking.
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Test } from 'tap';
import type { V1PersistentVolume, V1PersistentVolumeClaim, V1Pod, V1StatefulSet } from '@kubernetes/client-node';
import { REPO_ROOT, waitFor } from '../../cluster/index.js';
import { startRealNodeCluster, type RealNodeCluster } from '../../cluster/real-node-cluster.js';
import { paths, type Kube } from '../../src/kube.js';
import { FIDELITY_TREE_COMMANDS } from '../runner/fixtures/trees.js';

const execFileAsync = promisify(execFile);

export const RELEASE = 'pvshift';
export const PVSHIFT_NAMESPACE = 'pvshift-system';

/** Starts a real-node cluster for the file's tests and stops it when they are done. */
export async function realClusterFor(t: Test): Promise<RealNodeCluster> {
  const cluster = await startRealNodeCluster({ log: (line) => t.comment(line) });
  t.teardown(() => cluster.stop());
  return cluster;
}

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

async function runCommand(
  file: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  timeoutMs: number,
): Promise<CommandResult> {
  try {
    const { stdout, stderr } = await execFileAsync(file, args, {
      cwd: REPO_ROOT,
      env,
      maxBuffer: 32 * 1024 * 1024,
      timeout: timeoutMs,
    });
    return { code: 0, stdout, stderr };
  } catch (e: unknown) {
    const failure = e as { code?: unknown; stdout?: string; stderr?: string };
    if (typeof failure.code !== 'number') throw e;
    return { code: failure.code, stdout: failure.stdout ?? '', stderr: failure.stderr ?? '' };
  }
}

/** The real helm, as the admin; the chart from this checkout. Never throws on a non-zero exit. */
export function helm(cluster: RealNodeCluster, args: string[], timeoutMs = 300_000): Promise<CommandResult> {
  const home = join(cluster.dir, 'helm');
  return runCommand(
    cluster.binaries.helm,
    [...args, '--kubeconfig', cluster.kubeconfigPath],
    {
      ...process.env,
      HELM_CACHE_HOME: join(home, 'cache'),
      HELM_CONFIG_HOME: join(home, 'config'),
      HELM_DATA_HOME: join(home, 'data'),
    },
    timeoutMs,
  );
}

/**
 * `helm install` (or upgrade) of charts/pvshift with default values but the image:
 * the one built here from the Dockerfile (hack/images), imported into the node.
 */
export function installChart(
  cluster: RealNodeCluster,
  verb: 'install' | 'upgrade' = 'install',
  set: string[] = [],
): Promise<CommandResult> {
  const [repository, tag] = splitRef(cluster.images.pvshift.ref);
  return helm(cluster, [
    verb,
    RELEASE,
    join(REPO_ROOT, 'charts/pvshift'),
    '--namespace',
    PVSHIFT_NAMESPACE,
    ...(verb === 'install' ? ['--create-namespace'] : []),
    '--set',
    `image.repository=${repository}`,
    '--set',
    `image.tag=${tag}`,
    ...set.flatMap((s) => ['--set', s]),
    '--wait',
    '--timeout',
    '4m',
  ]);
}

function splitRef(ref: string): [string, string] {
  const colon = ref.lastIndexOf(':');
  return [ref.slice(0, colon), ref.slice(colon + 1)];
}

/**
 * A user's environment, nothing of the test runner's: through `env -i`, since
 * tap puts its loader into NODE_OPTIONS of every process a test starts, and the
 * plugin must run with a plain `node`.
 */
function userCommand(
  file: string,
  args: string[],
  env: Record<string, string>,
  timeoutMs: number,
): Promise<CommandResult> {
  const pairs = Object.entries(env).map(([k, v]) => `${k}=${v}`);
  return runCommand('/usr/bin/env', ['-i', ...pairs, file, ...args], {}, timeoutMs);
}

let pluginDir: Promise<string> | undefined;
/** A directory holding only `kubectl-pvshift`, the bundle users install (hack/bundle-plugin.ts, once per file). */
function pluginPath(): Promise<string> {
  pluginDir ??= (async () => {
    await mkdir(join(REPO_ROOT, 'tmp'), { recursive: true });
    const dir = await mkdtemp(join(REPO_ROOT, 'tmp', 'e2e-plugin-'));
    const built = await userCommand(
      process.execPath,
      ['--import', 'tsx', 'hack/bundle-plugin.ts', '--out-dir', dir],
      { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/' },
      120_000,
    );
    if (built.code !== 0) throw new Error(`hack/bundle-plugin.ts failed (${built.code}): ${built.stderr}`);
    return dir;
  })();
  return pluginDir;
}

/** The real kubectl as the admin, with the plugin bundle on PATH (kubectl finds `kubectl pvshift` there). */
export async function kubectl(cluster: RealNodeCluster, args: string[], timeoutMs = 120_000): Promise<CommandResult> {
  const dir = await pluginPath();
  return userCommand(
    cluster.binaries.kubectl,
    args,
    { PATH: `${dir}:${process.env.PATH}`, HOME: process.env.HOME ?? '/', KUBECONFIG: cluster.kubeconfigPath },
    timeoutMs,
  );
}

/**
 * When the test fails, prints what a user would look at next: the namespace's
 * events in order and the tail of pvshift's own logs (read through the real
 * kubelet, as `kubectl logs` does).
 */
export function diagnoseOnFailure(t: Test, cluster: RealNodeCluster, namespace: () => string | undefined): void {
  t.teardown(async () => {
    if (t.passing()) return;
    const ns = namespace();
    if (ns) {
      const events = await kubectl(cluster, [
        'get',
        'events',
        '-n',
        ns,
        '--sort-by=.lastTimestamp',
        '-o',
        'custom-columns=AT:.lastTimestamp,KIND:.involvedObject.kind,NAME:.involvedObject.name,REASON:.reason,MESSAGE:.message',
      ]);
      t.comment(`events in ${ns}:\n${events.stdout}${events.stderr}`);
    }
    const logs = await kubectl(cluster, [
      'logs',
      '-n',
      PVSHIFT_NAMESPACE,
      '-l',
      'app.kubernetes.io/name=pvshift',
      '--tail=60',
      '--prefix',
      '--all-containers',
    ]);
    t.comment(`pvshift logs:\n${logs.stdout}${logs.stderr}`);
  });
}

/** Fails the test with kubectl's output when it exits non-zero. */
export async function kubectlOk(t: Test, cluster: RealNodeCluster, args: string[]): Promise<string> {
  const result = await kubectl(cluster, args);
  t.equal(result.code, 0, `kubectl ${args.join(' ')}${result.code ? `: ${result.stderr.trim()}` : ''}`);
  return result.stdout;
}

/**
 * The app's script: on first start it writes the fidelity tree (hard links,
 * sparse files, xattrs, ACLs, odd names, ns mtimes, devices) and a
 * `security.*` xattr into /data, then appends a line to log/heartbeat every
 * 200 ms for as long as it runs, so the final copy always has a change to move.
 * Without CAP_SYS_ADMIN (`trusted: false`) it leaves out the `trusted.*` xattr.
 */
export function appScript(options: { trusted: boolean; megabytes: number }): string {
  const tree = FIDELITY_TREE_COMMANDS.map((c) =>
    options.trusted ? c : c.replace(/ && setfattr -n trusted\.\S+ -v \S+/, ''),
  ).join(' && ');
  return [
    'set -e',
    'cd /data',
    'if [ ! -e .tree-done ]; then',
    // A start cut short left part of the tree: begin again from empty.
    '  find . -mindepth 1 -maxdepth 1 ! -name lost+found -exec rm -rf {} +',
    `  ${tree}`,
    // Writing security.* needs CAP_SYS_ADMIN too.
    ...(options.trusted ? ['  setfattr -n security.pvshift -v e2e a/h1'] : []),
    `  mkdir -p bulk && for i in $(seq 1 ${options.megabytes}); do head -c 1048576 /dev/urandom > bulk/chunk-$i; done`,
    '  mkdir -p log && touch .tree-done',
    'fi',
    'trap "exit 0" TERM',
    'while true; do date +%s.%N >> log/heartbeat; sleep 0.2; done',
  ].join('\n');
}

export interface StatefulSetOptions {
  replicas: number;
  storageClass: string;
  size: string;
  /** Privileged containers (to write `trusted.*` xattrs); false for a `baseline` namespace. */
  privileged: boolean;
  /** Bulk data per replica, on top of the tree (random, MiB). */
  megabytes?: number;
}

/** A StatefulSet `name` of the app image, one claim template `data`, Ready once its tree is written. */
export function statefulSet(image: string, name: string, options: StatefulSetOptions): V1StatefulSet {
  return {
    apiVersion: 'apps/v1',
    kind: 'StatefulSet',
    metadata: { name },
    spec: {
      replicas: options.replicas,
      serviceName: name,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name } },
        spec: {
          terminationGracePeriodSeconds: 2,
          containers: [
            {
              name: 'app',
              image,
              imagePullPolicy: 'Never',
              command: ['bash', '-c', appScript({ trusted: options.privileged, megabytes: options.megabytes ?? 8 })],
              securityContext: options.privileged ? { privileged: true } : { allowPrivilegeEscalation: false },
              readinessProbe: { exec: { command: ['test', '-e', '/data/.tree-done'] }, periodSeconds: 1 },
              volumeMounts: [{ name: 'data', mountPath: '/data' }],
            },
          ],
        },
      },
      volumeClaimTemplates: [
        {
          metadata: { name: 'data' },
          spec: {
            accessModes: ['ReadWriteOnce'],
            storageClassName: options.storageClass,
            resources: { requests: { storage: options.size } },
          },
        },
      ],
    },
  };
}

/** Waits until every replica of the StatefulSet is Ready at its current revision. */
export async function waitForRollout(
  kube: Kube,
  namespace: string,
  name: string,
  timeoutMs = 600_000,
): Promise<V1StatefulSet> {
  return waitFor(
    `StatefulSet ${namespace}/${name} rolled out`,
    async () => {
      const sts = await kube.get<V1StatefulSet>(`/apis/apps/v1/namespaces/${namespace}/statefulsets/${name}`);
      const status = sts?.status;
      const done =
        status &&
        status.observedGeneration === sts.metadata?.generation &&
        status.readyReplicas === sts.spec?.replicas &&
        status.updatedReplicas === sts.spec?.replicas &&
        status.currentRevision === status.updateRevision;
      return done ? sts : undefined;
    },
    timeoutMs,
    1000,
  );
}

/** The PV a claim is bound to, and the host path where the loop provisioner mounted its filesystem. */
export async function volumeOfClaim(
  kube: Kube,
  namespace: string,
  claim: string,
): Promise<{ pv: V1PersistentVolume; path: string }> {
  const bound = await waitFor(`claim ${namespace}/${claim} Bound`, async () => {
    const c = await kube.get<V1PersistentVolumeClaim>(paths.claims(namespace, claim));
    return c?.status?.phase === 'Bound' ? c : undefined;
  });
  const pv = (await kube.get<V1PersistentVolume>(paths.volumes(bound.spec!.volumeName)))!;
  return { pv, path: pv.spec!.local!.path };
}

export async function podsOf(kube: Kube, namespace: string, app: string): Promise<V1Pod[]> {
  const list = await kube.get<{ items: V1Pod[] }>(`${paths.pods(namespace)}?labelSelector=app%3D${app}`);
  return list?.items ?? [];
}
