// `npm run bench:migration`: the figures of a migration on the local cluster.
//   - control-plane overhead: an empty volume, pod recreated to pod Running;
//   - 1 GiB of mixed data without pre-sync and with it (a 16 MiB change between):
//     pod recreated to pod Running, the recorded downtime, and copy throughput.
//   - a whole StatefulSet (--scenarios workload): 3 replicas of --workload-mib each,
//     annotated, pre-synced, re-synced every 5 s with 1% of each volume changed per
//     interval, then `rollout restart`: total rollout time, per-replica downtime and
//     the final copy's bytes (only the last interval's change should move).
// A script, not a test: it prints figures. Copies run at full speed.
//   npx tsx hack/bench-migration.ts [--data-mib 1024] [--workload-mib 1024] [--scenarios single,workload]
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { V1PersistentVolume, V1PersistentVolumeClaim, V1Pod, V1StatefulSet } from '@kubernetes/client-node';
import { installPvshift, startLocalCluster, waitFor } from '../cluster/index.js';
import { paths, type Kube } from '../src/kube.js';
import { formatBytes } from '../src/quantity.js';
import { ANNOTATION_TARGET_CLASS } from '../src/names.js';
import type { VolumeMigration } from '../src/volume-migration.js';

const { values } = parseArgs({
  options: {
    'data-mib': { type: 'string', default: '1024' },
    'workload-mib': { type: 'string', default: '1024' },
    scenarios: { type: 'string', default: 'single,workload' },
  },
});
const dataMiB = Number(values['data-mib']);
const workloadMiB = Number(values['workload-mib']);
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

const cluster = await startLocalCluster();
try {
  const pvshift = await (await installPvshift(cluster)).start();
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
  await pvshift.stop();
} finally {
  await cluster.stop();
}
