// `npm run bench:migration`: the figures of a migration on the local cluster.
//   - control-plane overhead: an empty volume, pod recreated to pod Running;
//   - 1 GiB of mixed data without pre-sync and with it (a 16 MiB change between):
//     pod recreated to pod Running, the recorded downtime, and copy throughput.
//   - a whole StatefulSet (--scenarios workload): 3 replicas of --workload-mib each,
//     annotated, pre-synced, re-synced every 5 s with 1% of each volume changed per
//     interval, then `rollout restart`: total rollout time, per-replica downtime and
//     the final copy's bytes (only the last interval's change should move).
//   - where a cutover's seconds go (--scenarios trace): one migration of a little
//     data (--trace-mib of 16 KiB files), its timeline step by step (watch events,
//     pvshift's Events and its debug log), --trace-runs times; downtime minus the
//     final copy's own seconds is the overhead of the swap.
//   - copy slots under contention (--scenarios contention): 4 single-replica apps (a namespace each) of
//     --contention-mib each, pre-synced and re-synced every 5 s, their pods recreated
//     together while re-syncs run, once with pvshift capped at 2 concurrent copies and
//     once with 4 (the baseline): each migration's downtime, final copy, and how long
//     its final copy waited for a slot.
// A script, not a test: it prints figures. Copies run at full speed.
//   npx tsx hack/bench-migration.ts [--data-mib 1024] [--workload-mib 1024] [--trace-mib 1] [--trace-runs 3]
//     [--trace-timelines last|all]
//     [--contention-mib 256] [--scenarios single,workload,trace,contention]
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { V1PersistentVolume, V1PersistentVolumeClaim, V1Pod, V1StatefulSet } from '@kubernetes/client-node';
import { installPvshift, sleep, startLocalCluster, waitFor } from '../cluster/index.js';
import { copyPassOf } from '../populator/copy-slots.js';
import { printTimeline, Tracer, type Mark } from './migration-trace.js';
import { paths, type Kube } from '../src/kube.js';
import { formatBytes } from '../src/quantity.js';
import { ANNOTATION_TARGET_CLASS } from '../src/names.js';
import { CHANGED_SINCE_MARGIN_MS } from '../populator/copy-pod.js';
import type { VolumeMigration } from '../src/volume-migration.js';

const { values } = parseArgs({
  options: {
    'data-mib': { type: 'string', default: '1024' },
    'workload-mib': { type: 'string', default: '1024' },
    'trace-mib': { type: 'string', default: '1' },
    'trace-runs': { type: 'string', default: '3' },
    'trace-timelines': { type: 'string', default: 'last' },
    'contention-mib': { type: 'string', default: '256' },
    scenarios: { type: 'string', default: 'single,workload,trace' },
  },
});
const dataMiB = Number(values['data-mib']);
const workloadMiB = Number(values['workload-mib']);
const traceMiB = Number(values['trace-mib']);
const traceRuns = Number(values['trace-runs']);
const allTimelines = values['trace-timelines'] === 'all';
const contentionMiB = Number(values['contention-mib']);
const scenarios = new Set(values.scenarios.split(','));

/** 70% in 64 MiB files, 30% in 16 KiB files: a database next to its many small files. */
function fill(dir: string, mib: number): void {
  const bigCount = Math.max(1, Math.round((mib * 0.7) / 64));
  for (let i = 0; i < bigCount; i++) fs.writeFileSync(path.join(dir, `big-${i}`), randomBytes(64 * 1024 * 1024));
  const small = Math.round((mib * 0.3 * 1024) / 16);
  for (let i = 0; i < small; i++) {
    const sub = path.join(dir, 'small', String(i % 100));
    if (i < 100) fs.mkdirSync(sub, { recursive: true });
    fs.writeFileSync(path.join(sub, `f-${i}`), randomBytes(16 * 1024));
  }
}

/** The benchmarks' StatefulSet: `replicas` pods, each with a 4Gi claim `data-<name>-<ordinal>` on `standard`. */
function benchStatefulSet(name: string, replicas: number): V1StatefulSet {
  return {
    apiVersion: 'apps/v1',
    kind: 'StatefulSet',
    metadata: { name },
    spec: {
      serviceName: name,
      replicas,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name } },
        spec: {
          terminationGracePeriodSeconds: 1,
          containers: [{ name: 'app', image: 'app:1', volumeMounts: [{ name: 'data', mountPath: '/data' }] }],
        },
      },
      volumeClaimTemplates: [
        {
          metadata: { name: 'data' },
          spec: {
            accessModes: ['ReadWriteOnce'],
            storageClassName: 'standard',
            resources: { requests: { storage: '4Gi' } },
          },
        },
      ],
    },
  };
}

interface Figures {
  scenario: string;
  podBackSeconds: number;
  downtimeSeconds: number;
  copies: string;
}

async function scenario(kube: Kube, ns: string, name: string, mib: number, preSync: boolean): Promise<Figures> {
  const claimName = `data-${name}-0`;
  await kube.create(paths.statefulSets(ns), benchStatefulSet(name, 1));
  const pod = await waitFor(`${name}-0 Running`, async () => {
    const p = await kube.get<V1Pod>(paths.pods(ns, `${name}-0`));
    return p?.status?.phase === 'Running' ? p : undefined;
  });
  const claim = await waitFor('claim Bound', async () => {
    const c = await kube.get<V1PersistentVolumeClaim>(paths.claims(ns, claimName));
    return c?.status?.phase === 'Bound' ? c : undefined;
  });
  const dir = (await kube.get<V1PersistentVolume>(paths.volumes(claim.spec?.volumeName)))!.spec!.hostPath!.path;
  if (mib > 0) fill(dir, mib);
  await kube.create(paths.migrations(ns), {
    apiVersion: 'pvshift.io/v1alpha1',
    kind: 'VolumeMigration',
    metadata: { name, namespace: ns },
    spec: { claimName, targetStorageClassName: 'fast', preSync },
  });
  await waitFor(
    'WaitingForCutover',
    async () =>
      (await kube.get<VolumeMigration>(paths.migrations(ns, name)))?.status?.phase === 'WaitingForCutover'
        ? true
        : undefined,
    1_800_000,
    250,
  );
  if (mib > 0 && preSync) fs.writeFileSync(path.join(dir, 'changed-after-presync'), randomBytes(16 * 1024 * 1024));
  const start = Date.now();
  await kube.delete(paths.pods(ns, `${name}-0`));
  await waitFor(
    'pod Running again',
    async () => {
      const p = await kube.get<V1Pod>(paths.pods(ns, `${name}-0`));
      return p && p.metadata?.uid !== pod.metadata?.uid && p.status?.phase === 'Running' ? true : undefined;
    },
    1_800_000,
    100,
  );
  const podBackSeconds = (Date.now() - start) / 1000;
  const m = await waitFor('Succeeded', async () => {
    const x = await kube.get<VolumeMigration>(paths.migrations(ns, name));
    return x?.status?.phase === 'Succeeded' ? x : undefined;
  });
  const copies = (m.status?.copies ?? [])
    .map(
      (c) =>
        `${c.pass}: ${formatBytes(c.bytesTransferred)} in ${c.seconds.toFixed(1)} s = ${c.seconds > 0 ? formatBytes(c.bytesTransferred / c.seconds) : '-'}/s`,
    )
    .join('; ');
  return {
    scenario: `${mib ? formatBytes(mib * 1024 * 1024) : 'empty'}, ${preSync ? 'pre-sync' : 'no pre-sync'}`,
    podBackSeconds,
    downtimeSeconds: m.status?.downtimeSeconds ?? NaN,
    copies,
  };
}

/** The figures of one replica of the StatefulSet scenario. */
interface ReplicaFigures {
  claim: string;
  downtimeSeconds: number;
  finalBytes: number;
  finalSeconds: number;
  lastSyncBytes: number;
}

const isReady = (p: V1Pod): boolean =>
  (p.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');

async function workloadScenario(kube: Kube, ns: string, mib: number, replicas = 3) {
  await kube.create(paths.statefulSets(ns), benchStatefulSet('db', replicas));
  const claims = Array.from({ length: replicas }, (_, i) => `data-db-${i}`);
  await waitFor(
    'replicas Ready',
    async () => {
      const pods = (await kube.list<V1Pod>(paths.pods(ns), { labelSelector: 'app=db' })).items;
      return pods.filter(isReady).length === replicas ? true : undefined;
    },
    600_000,
  );
  const dirs = new Map<string, string>();
  for (const claimName of claims) {
    const c = await kube.get<V1PersistentVolumeClaim>(paths.claims(ns, claimName));
    const dir = (await kube.get<V1PersistentVolume>(paths.volumes(c?.spec?.volumeName)))!.spec!.hostPath!.path;
    fill(dir, mib);
    dirs.set(claimName, dir);
  }
  // The final pass compares the contents of every file changed (ctime) since the
  // migration began, less a margin for clocks: data written just before it counts
  // as changed, which no database that has run for a while is. Wait the margin out.
  console.log(`(waiting ${CHANGED_SINCE_MARGIN_MS / 1000} s: the data must predate the migration)`);
  await new Promise((resolve) => setTimeout(resolve, CHANGED_SINCE_MARGIN_MS + 2000));
  const migration = (name: string) => kube.get<VolumeMigration>(paths.migrations(ns, name));
  await kube.patch(paths.statefulSets(ns, 'db'), { metadata: { annotations: { [ANNOTATION_TARGET_CLASS]: 'fast' } } });
  for (const claimName of claims) {
    await waitFor(
      `${claimName} pre-synced`,
      async () => ((await migration(claimName))?.status?.phase === 'WaitingForCutover' ? true : undefined),
      1_800_000,
      250,
    );
    await kube.patch(paths.migrations(ns, claimName), { spec: { resyncInterval: '5s' } });
  }
  // 1% of each volume changed per interval: one interval caught by a re-sync, the next left for the final copy.
  const change = (round: number): void => {
    for (const dir of dirs.values()) {
      fs.writeFileSync(path.join(dir, `changed-${round}`), randomBytes(Math.round(mib * 0.01 * 1024 * 1024)));
    }
  };
  change(1);
  const passes = new Map<string, number>();
  for (const claimName of claims) passes.set(claimName, (await migration(claimName))?.status?.syncPasses ?? 0);
  for (const claimName of claims) {
    await waitFor(
      `${claimName} re-synced`,
      async () => {
        const m = await migration(claimName);
        return (m?.status?.syncPasses ?? 0) > passes.get(claimName)! && (m?.status?.lastSync?.bytesTransferred ?? 0) > 0
          ? true
          : undefined;
      },
      600_000,
      250,
    );
  }
  const lastSync = new Map<string, number>();
  for (const claimName of claims)
    lastSync.set(claimName, (await migration(claimName))?.status?.lastSync?.bytesTransferred ?? NaN);
  change(2);
  const start = Date.now();
  await kube.patch(paths.statefulSets(ns, 'db'), {
    spec: {
      template: { metadata: { annotations: { 'kubectl.kubernetes.io/restartedAt': new Date().toISOString() } } },
    },
  });
  const done = new Map<string, VolumeMigration>();
  for (const claimName of claims) {
    done.set(
      claimName,
      await waitFor(
        `${claimName} Succeeded`,
        async () => {
          const m = await migration(claimName);
          return m?.status?.phase === 'Succeeded' ? m : undefined;
        },
        1_800_000,
        100,
      ),
    );
  }
  await waitFor(
    'replicas Ready after the rollout',
    async () => {
      const pods = (await kube.list<V1Pod>(paths.pods(ns), { labelSelector: 'app=db' })).items;
      return pods.filter(isReady).length === replicas ? true : undefined;
    },
    600_000,
    100,
  );
  const totalSeconds = (Date.now() - start) / 1000;
  const figures: ReplicaFigures[] = claims.map((claimName) => {
    const m = done.get(claimName)!;
    const final = (m.status?.copies ?? []).find((c) => c.pass === 'final');
    return {
      claim: claimName,
      downtimeSeconds: m.status?.downtimeSeconds ?? NaN,
      finalBytes: final?.bytesTransferred ?? NaN,
      finalSeconds: final?.seconds ?? NaN,
      lastSyncBytes: lastSync.get(claimName) ?? NaN,
    };
  });
  return { totalSeconds, figures };
}

/** A little data in 16 KiB files (no big file): a trace of the swap, not of a copy. */
function fillSmall(dir: string, mib: number): void {
  const count = Math.max(1, Math.round((mib * 1024) / 16));
  fs.mkdirSync(path.join(dir, 'small'), { recursive: true });
  for (let i = 0; i < count; i++) fs.writeFileSync(path.join(dir, 'small', `f-${i}`), randomBytes(16 * 1024));
}

/** The milestones of a cutover, in the order they happen; a segment is the time from one to the next. */
const MILESTONES: { label: string; match: (m: Mark, pod: string, claim: string) => boolean }[] = [
  { label: 'old pod gone', match: (m, pod) => m.what === `pod ${pod} gone` },
  { label: 'new pod created, gated', match: (m, pod) => m.what === `pod ${pod} created (gated)` },
  { label: 'phase CuttingOver', match: (m) => m.what === 'migration phase CuttingOver' },
  { label: 'original claim gone', match: (m, _pod, claim) => m.what === `claim ${claim} gone` },
  { label: 'phase Populating', match: (m) => m.what === 'migration phase Populating' },
  { label: 'helper claim Bound', match: (m) => m.what === 'helper claim Bound' },
  { label: 'final copy pod created', match: (m) => m.what === 'final copy pod created' },
  { label: 'final copy pod Running', match: (m) => m.what === 'final copy pod Running' },
  { label: 'final copy pod Succeeded', match: (m) => m.what === 'final copy pod Succeeded' },
  { label: 'phase Binding', match: (m) => m.what === 'migration phase Binding' },
  { label: 'replacement claim Bound', match: (m, _pod, claim) => m.what === `claim ${claim} Bound` },
  { label: 'gate lifted', match: (m, pod) => m.what === `pod ${pod} gate lifted` },
  { label: 'phase Succeeded', match: (m) => m.what === 'migration phase Succeeded' },
  { label: 'pod Running', match: (m, pod) => m.what === `pod ${pod} Running` },
];

/** When each milestone was first seen (from the first mark on; NaN where not seen). */
function milestones(marks: Mark[], pod: string, claim: string): number[] {
  return MILESTONES.map(({ match }) => marks.find((m) => m.source === 'cluster' && match(m, pod, claim))?.at ?? NaN);
}

interface TraceFigures {
  downtimeSeconds: number;
  finalSeconds: number;
  podBackSeconds: number;
  /** Milestone times, ms (MILESTONES' order). */
  at: number[];
  marks: Mark[];
}

/** One migration of a little data, recreated and traced: what each step of the cutover took. */
async function traceScenario(kube: Kube, ns: string, logPath: string, name: string, mib: number) {
  const claimName = `data-${name}-0`;
  const pod = `${name}-0`;
  await kube.create(paths.statefulSets(ns), benchStatefulSet(name, 1));
  const first = await waitFor(`${pod} Running`, async () => {
    const p = await kube.get<V1Pod>(paths.pods(ns, pod));
    return p?.status?.phase === 'Running' ? p : undefined;
  });
  const claim = await waitFor('claim Bound', async () => {
    const c = await kube.get<V1PersistentVolumeClaim>(paths.claims(ns, claimName));
    return c?.status?.phase === 'Bound' ? c : undefined;
  });
  fillSmall((await kube.get<V1PersistentVolume>(paths.volumes(claim.spec?.volumeName)))!.spec!.hostPath!.path, mib);
  await kube.create(paths.migrations(ns), {
    apiVersion: 'pvshift.io/v1alpha1',
    kind: 'VolumeMigration',
    metadata: { name, namespace: ns },
    spec: { claimName, targetStorageClassName: 'fast', preSync: true },
  });
  const migration = () => kube.get<VolumeMigration>(paths.migrations(ns, name));
  await waitFor(
    `${name} WaitingForCutover`,
    async () => ((await migration())?.status?.phase === 'WaitingForCutover' ? true : undefined),
    600_000,
    100,
  );
  // The pre-sync's pod gone, so the trace is the cutover's alone.
  await waitFor('pre-sync pod gone', async () => {
    const pods = (await kube.list<V1Pod>(paths.pods(ns))).items;
    return pods.some((p) => copyPassOf(p) === 'presync') ? undefined : true;
  });
  const tracer = await new Tracer(kube, ns).start();
  const start = Date.now();
  await kube.delete(paths.pods(ns, pod));
  await waitFor(
    'pod Running again',
    async () => {
      const p = await kube.get<V1Pod>(paths.pods(ns, pod));
      return p && p.metadata?.uid !== first.metadata?.uid && p.status?.phase === 'Running' ? true : undefined;
    },
    600_000,
    50,
  );
  const podBackSeconds = (Date.now() - start) / 1000;
  const m = await waitFor(
    'Succeeded',
    async () => {
      const x = await migration();
      return x?.status?.phase === 'Succeeded' ? x : undefined;
    },
    600_000,
    100,
  );
  await sleep(500); // the last watch events and log lines
  tracer.stop();
  tracer.readLog(logPath);
  const marks = tracer.timeline(`${ns}/${name}`).filter((x) => x.at >= start);
  const final = (m.status?.copies ?? []).find((c) => c.pass === 'final');
  return {
    downtimeSeconds: m.status?.downtimeSeconds ?? NaN,
    finalSeconds: final?.seconds ?? NaN,
    podBackSeconds,
    at: milestones(marks, pod, claimName),
    marks,
  } satisfies TraceFigures;
}

function median(xs: number[]): number {
  const sorted = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (!sorted.length) return NaN;
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function printTrace(runs: TraceFigures[], mib: number): void {
  const shown = allTimelines ? runs : runs.slice(-1);
  for (const run of shown) {
    const zero = run.at[0]!;
    console.log(
      `\nCutover trace, ${formatBytes(mib * 1024 * 1024)} in 16 KiB files, pre-synced; run ${runs.indexOf(run) + 1} of ${runs.length}, ` +
        `at = seconds from the old pod gone (cluster: a watch event received; event: an Event of pvshift; pvshift: its log):`,
    );
    printTimeline(run.marks, Number.isNaN(zero) ? run.marks[0]!.at : zero);
  }
  console.log(
    `\nWhere the cutover's seconds go (segment = from the milestone above to this one), ${runs.length} runs:`,
  );
  const header = runs.map((_, i) => `run ${i + 1}`.padStart(7)).join(' | ');
  console.log(`milestone                 | ${header} |  median`);
  console.log(`--------------------------|${runs.map(() => '---------').join('|')}|--------`);
  for (let i = 1; i < MILESTONES.length; i++) {
    const segment = runs.map((r) => (r.at[i]! - r.at[i - 1]!) / 1000);
    console.log(
      `${MILESTONES[i]!.label.padEnd(26)}| ${segment.map((x) => x.toFixed(3).padStart(7)).join(' | ')} | ${median(segment).toFixed(3).padStart(7)}`,
    );
  }
  const row = (label: string, values: number[]) =>
    console.log(
      `${label.padEnd(26)}| ${values.map((x) => x.toFixed(3).padStart(7)).join(' | ')} | ${median(values).toFixed(3).padStart(7)}`,
    );
  const gated = MILESTONES.findIndex((x) => x.label === 'new pod created, gated');
  const lifted = MILESTONES.findIndex((x) => x.label === 'gate lifted');
  const created = MILESTONES.findIndex((x) => x.label === 'final copy pod created');
  const succeeded = MILESTONES.findIndex((x) => x.label === 'final copy pod Succeeded');
  console.log(`--------------------------|${runs.map(() => '---------').join('|')}|--------`);
  row(
    'downtime recorded',
    runs.map((r) => r.downtimeSeconds),
  );
  row(
    'gated -> gate lifted',
    runs.map((r) => (r.at[lifted]! - r.at[gated]!) / 1000),
  );
  row(
    'final copy (runner)',
    runs.map((r) => r.finalSeconds),
  );
  row(
    'final copy pod lifetime',
    runs.map((r) => (r.at[succeeded]! - r.at[created]!) / 1000),
  );
  row(
    'downtime - final copy',
    runs.map((r) => r.downtimeSeconds - r.finalSeconds),
  );
  row(
    '  - copy pod lifetime',
    runs.map((r) => r.downtimeSeconds - (r.at[succeeded]! - r.at[created]!) / 1000),
  );
  row(
    'pod deleted -> Running',
    runs.map((r) => r.podBackSeconds),
  );
}

interface ContentionFigures {
  app: string;
  downtimeSeconds: number;
  finalBytes: number;
  finalSeconds: number;
  /** From its first WaitingForCopySlot after cutover to its final copy pod created; 0 if it never waited. */
  slotWaitSeconds: number;
  /** For a final that waited: from the slot it took coming free (another final finished) to its own final created. */
  tookFreedSlotSeconds: number;
  /** From its pod created (gated) to its final copy pod created. */
  finalAfterGateSeconds: number;
  /** From its pod created (gated) to phase Populating (the claim swapped, the helper claim made). */
  populatingAfterGateSeconds: number;
  presyncsYielded: number;
}

/**
 * Four single-replica apps, pre-synced and re-synced every 5 s, their pods
 * recreated together while re-syncs run: how each final copy fares with
 * `slots` copy slots (per node too: the local cluster has one node).
 */
async function contentionScenario(
  kube: Kube,
  prefix: string,
  logPath: string,
  mib: number,
  count = 4,
): Promise<ContentionFigures[]> {
  // One namespace each: the cap is the cluster's, shared across namespaces.
  const apps = Array.from({ length: count }, (_, i) => ({ name: `app${i}`, ns: `${prefix}-app${i}` }));
  const dirs: string[] = [];
  for (const { name, ns } of apps) {
    await kube.create(paths.namespaces(), { metadata: { name: ns } });
    await waitFor('namespace ready', () => kube.get(paths.serviceAccounts(ns, 'default')));
    await kube.create(paths.statefulSets(ns), benchStatefulSet(name, 1));
  }
  for (const { name, ns } of apps) {
    await waitFor(`${name}-0 Running`, async () => {
      const x = await kube.get<V1Pod>(paths.pods(ns, `${name}-0`));
      return x?.status?.phase === 'Running' ? x : undefined;
    });
    const c = await waitFor('claim Bound', async () => {
      const x = await kube.get<V1PersistentVolumeClaim>(paths.claims(ns, `data-${name}-0`));
      return x?.status?.phase === 'Bound' ? x : undefined;
    });
    const dir = (await kube.get<V1PersistentVolume>(paths.volumes(c.spec?.volumeName)))!.spec!.hostPath!.path;
    fill(dir, mib);
    dirs.push(dir);
  }
  const migration = ({ name, ns }: { name: string; ns: string }) =>
    kube.get<VolumeMigration>(paths.migrations(ns, name));
  for (const { name, ns } of apps) {
    await kube.create(paths.migrations(ns), {
      apiVersion: 'pvshift.io/v1alpha1',
      kind: 'VolumeMigration',
      metadata: { name, namespace: ns },
      spec: { claimName: `data-${name}-0`, targetStorageClassName: 'fast', preSync: true, resyncInterval: '5s' },
    });
  }
  for (const app of apps) {
    await waitFor(
      `${app.name} pre-synced`,
      async () => ((await migration(app))?.status?.phase === 'WaitingForCutover' ? true : undefined),
      1_800_000,
      250,
    );
  }
  // 5% changed and caught by a re-sync; then 5% more, which the final copies move.
  const change = (round: number) => {
    for (const dir of dirs)
      fs.writeFileSync(path.join(dir, `changed-${round}`), randomBytes(Math.round(mib * 0.05 * 1024 * 1024)));
  };
  const passes = new Map<string, number>();
  for (const app of apps) passes.set(app.name, (await migration(app))?.status?.syncPasses ?? 0);
  change(1);
  for (const app of apps) {
    await waitFor(
      `${app.name} re-synced`,
      async () => {
        const m = await migration(app);
        return (m?.status?.syncPasses ?? 0) > passes.get(app.name)! && (m?.status?.lastSync?.bytesTransferred ?? 0) > 0
          ? true
          : undefined;
      },
      600_000,
      250,
    );
  }
  const tracers = await Promise.all(apps.map(({ ns }) => new Tracer(kube, ns).start()));
  change(2);
  // Recreate while re-syncs run (they come every 5 s): the finals must not wait behind them.
  const resyncsRunning = async () => {
    let n = 0;
    for (const { ns } of apps) {
      const pods = (await kube.list<V1Pod>(paths.pods(ns))).items;
      n += pods.filter((p) => copyPassOf(p) === 'presync' && p.status?.phase === 'Running').length;
    }
    return n;
  };
  const running = await waitFor(
    'a re-sync running',
    async () => {
      const n = await resyncsRunning();
      return n > 0 ? n : undefined;
    },
    60_000,
    50,
  ).catch(() => 0);
  await Promise.all(apps.map(({ name, ns }) => kube.delete(paths.pods(ns, `${name}-0`))));
  console.log(`  (${running} re-sync copy pod(s) running when the ${count} pods were deleted)`);
  const done = new Map<string, VolumeMigration>();
  for (const app of apps) {
    done.set(
      app.name,
      await waitFor(
        `${app.name} Succeeded`,
        async () => {
          const m = await migration(app);
          return m?.status?.phase === 'Succeeded' ? m : undefined;
        },
        1_800_000,
        100,
      ),
    );
  }
  await sleep(500);
  for (const tracer of tracers) {
    tracer.stop();
    tracer.readLog(logPath);
  }
  // When each app's final copy pod finished (its slot came free).
  const finishedAt = apps.map(
    ({ name, ns }, i) =>
      tracers[i]!.timeline(`${ns}/${name}`).find((x) => x.what === 'final copy pod Succeeded')?.at ?? NaN,
  );
  return apps.map(({ name, ns }, i) => {
    const tracer = tracers[i]!;
    const m = done.get(name)!;
    const marks = tracer.timeline(`${ns}/${name}`);
    const first = (what: string, after = -Infinity) => marks.find((x) => x.at >= after && x.what.startsWith(what))?.at;
    const populating = first('migration phase Populating') ?? NaN;
    // pvshift's debug log has every wait; its Event only the first of a message.
    const waited = first('wait WaitingForCopySlot', populating) ?? first('WaitingForCopySlot', populating);
    const created = first('final copy pod created') ?? NaN;
    const gated = first(`pod ${name}-0 created (gated)`) ?? NaN;
    const final = (m.status?.copies ?? []).find((c) => c.pass === 'final');
    // The last slot freed before this final started: how soon a waiting final took it.
    const freed = Math.max(...finishedAt.filter((at, j) => j !== i && at < created));
    return {
      app: name,
      tookFreedSlotSeconds: waited === undefined || !Number.isFinite(freed) ? NaN : (created - freed) / 1000,
      downtimeSeconds: m.status?.downtimeSeconds ?? NaN,
      finalBytes: final?.bytesTransferred ?? NaN,
      finalSeconds: final?.seconds ?? NaN,
      slotWaitSeconds: waited === undefined ? 0 : Math.max(0, (created - waited) / 1000),
      finalAfterGateSeconds: (created - gated) / 1000,
      populatingAfterGateSeconds: (populating - gated) / 1000,
      presyncsYielded: marks.filter((x) => x.what.startsWith('PreSyncYielded')).length,
    };
  });
}

function printContention(slots: number, figures: ContentionFigures[]): void {
  console.log(`max concurrent copies ${slots} (per node ${slots}):`);
  console.log(
    'app   | downtime | final copy moved | final copy time | gated -> Populating | waited for a slot | slot freed -> taken | gated -> final started | re-syncs stopped',
  );
  console.log(
    '------|----------|------------------|-----------------|---------------------|-------------------|---------------------|------------------------|-----------------',
  );
  for (const f of figures)
    console.log(
      `${f.app.padEnd(6)}| ${f.downtimeSeconds.toFixed(1).padStart(6)} s | ${formatBytes(f.finalBytes).padStart(16)} | ${f.finalSeconds.toFixed(1).padStart(13)} s | ${f.populatingAfterGateSeconds.toFixed(1).padStart(17)} s | ${f.slotWaitSeconds.toFixed(1).padStart(15)} s | ${(Number.isNaN(f.tookFreedSlotSeconds) ? '-' : `${f.tookFreedSlotSeconds.toFixed(2)} s`).padStart(19)} | ${f.finalAfterGateSeconds.toFixed(1).padStart(20)} s | ${String(f.presyncsYielded).padStart(15)}`,
    );
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  console.log(
    `mean downtime ${mean(figures.map((f) => f.downtimeSeconds)).toFixed(1)} s, max ${Math.max(...figures.map((f) => f.downtimeSeconds)).toFixed(1)} s`,
  );
}

const cluster = await startLocalCluster();
try {
  const install = await installPvshift(cluster);
  // Debug: the trace reads pvshift's waits and step durations from its log.
  const debug = { env: { PVSHIFT_LOG_LEVEL: 'debug' } };
  let pvshift = await install.start([], debug);
  await cluster.kube.create(paths.namespaces(), { metadata: { name: 'bench' } });
  await waitFor('namespace ready', () => cluster.kube.get(paths.serviceAccounts('bench', 'default')));
  if (scenarios.has('single')) {
    const results: Figures[] = [];
    results.push(await scenario(cluster.kube, 'bench', 'empty', 0, true));
    results.push(await scenario(cluster.kube, 'bench', 'cold', dataMiB, false));
    results.push(await scenario(cluster.kube, 'bench', 'warm', dataMiB, true));
    console.log('\nscenario                   | pod recreated -> Running | downtime recorded | copies');
    console.log('---------------------------|--------------------------|-------------------|-------');
    for (const r of results)
      console.log(
        `${r.scenario.padEnd(27)}| ${r.podBackSeconds.toFixed(1).padStart(22)} s | ${r.downtimeSeconds.toFixed(1).padStart(15)} s | ${r.copies}`,
      );
  }
  if (scenarios.has('workload')) {
    await cluster.kube.create(paths.namespaces(), { metadata: { name: 'bench-sts' } });
    await waitFor('namespace ready', () => cluster.kube.get(paths.serviceAccounts('bench-sts', 'default')));
    const { totalSeconds, figures } = await workloadScenario(cluster.kube, 'bench-sts', workloadMiB);
    const change = formatBytes(workloadMiB * 0.01 * 1024 * 1024);
    console.log(
      `\nStatefulSet, 3 replicas of ${formatBytes(workloadMiB * 1024 * 1024)}, ${change} changed per interval:`,
    );
    console.log(`rollout restart -> all replicas Ready on fast: ${totalSeconds.toFixed(1)} s`);
    console.log('replica    | downtime | last re-sync moved | final copy moved | final copy time');
    console.log('-----------|----------|--------------------|------------------|----------------');
    for (const f of figures)
      console.log(
        `${f.claim.padEnd(11)}| ${f.downtimeSeconds.toFixed(1).padStart(6)} s | ${formatBytes(f.lastSyncBytes).padStart(18)} | ${formatBytes(f.finalBytes).padStart(16)} | ${f.finalSeconds.toFixed(1).padStart(13)} s`,
      );
  }
  if (scenarios.has('trace')) {
    await cluster.kube.create(paths.namespaces(), { metadata: { name: 'bench-trace' } });
    await waitFor('namespace ready', () => cluster.kube.get(paths.serviceAccounts('bench-trace', 'default')));
    const runs: TraceFigures[] = [];
    for (let i = 1; i <= traceRuns; i++)
      runs.push(await traceScenario(cluster.kube, 'bench-trace', pvshift.logPath, `trace${i}`, traceMiB));
    printTrace(runs, traceMiB);
  }
  if (scenarios.has('contention')) {
    const results = new Map<number, ContentionFigures[]>();
    for (const slots of [2, 4]) {
      // pvshift again with this cap, globally and per node (one node here).
      await pvshift.stop();
      pvshift = await install.start([`--max-concurrent-copies=${slots}`, `--max-copies-per-node=${slots}`], debug);
      console.log(`\ncontention: 4 apps of ${formatBytes(contentionMiB * 1024 * 1024)}, ${slots} copy slots`);
      results.set(
        slots,
        await contentionScenario(cluster.kube, `bench-slots-${slots}`, pvshift.logPath, contentionMiB),
      );
    }
    console.log(
      `\nCopy slots under contention: 4 apps (a namespace each) of ${formatBytes(contentionMiB * 1024 * 1024)}, re-synced every 5 s, ` +
        `5% changed after the last re-sync, the 4 pods deleted at once:`,
    );
    for (const [slots, figures] of results) printContention(slots, figures);
    const mean = (xs: ContentionFigures[]) => xs.reduce((a, f) => a + f.downtimeSeconds, 0) / xs.length;
    console.log(`mean downtime with 2 slots / with 4: ${(mean(results.get(2)!) / mean(results.get(4)!)).toFixed(2)}`);
  }
  await pvshift.stop();
} finally {
  await cluster.stop();
}
