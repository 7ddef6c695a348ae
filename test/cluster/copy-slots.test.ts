// Copy slots on the real control plane: pods a tenant labels as copy pods take
// no slot, the cap holds however many migrations race for it, and a final copy
// (an application held by its gate) does not wait behind a pre-sync.
import t from 'tap';
import type { V1Pod } from '@kubernetes/client-node';
import { Informer, paths } from '../../src/kube.js';
import { LABEL_COMPONENT, LABEL_MANAGED_BY, LABEL_MIGRATION_UID } from '../../src/names.js';
import type { VolumeMigration } from '../../src/volume-migration.js';
import {
  clusterFor,
  freshNamespace,
  statefulSet,
  volumeOf,
  waitFor,
  waitForClaimBound,
  waitForGone,
  waitForPodReady,
} from '../helpers/cluster.js';
import { createMigration, fillVolume, migrationOf, snapshotTree, waitForPhase } from '../helpers/migration.js';
import { installPvshift } from '../helpers/pvshift.js';

const cluster = await clusterFor(t);
const { kube } = cluster;
const installation = await installPvshift(cluster);

const COPY_LABELS = { [LABEL_MANAGED_BY]: 'pvshift', [LABEL_COMPONENT]: 'copy' };

function isUnfinished(pod: V1Pod): boolean {
  return pod.status?.phase !== 'Succeeded' && pod.status?.phase !== 'Failed';
}

/** A 1-replica StatefulSet whose volume holds `megabytes` of data; its pod runs on node-1. */
async function appWithData(ns: string, name: string, megabytes: number): Promise<{ dir: string; podUid: string }> {
  await kube.create(paths.statefulSets(ns), statefulSet(name));
  const pod = await waitForPodReady(kube, ns, `${name}-0`, 120_000);
  const pv = await volumeOf(kube, ns, `data-${name}-0`);
  fillVolume(pv.spec!.hostPath!.path, megabytes);
  return { dir: pv.spec!.hostPath!.path, podUid: pod.metadata!.uid! };
}

t.test("pods a tenant labels as copy pods take no copy slot: the migration's pre-sync still runs", async (t) => {
  // Defaults: 4 copies at once, 2 per node.
  const pvshift = await installation.start();
  t.teardown(() => pvshift.stop());
  const tenant = await freshNamespace(kube, 'tenant');
  const fakeUid = '00000000-0000-4000-8000-00000000beef';
  // Four that never schedule (the global cap), two bound to node-1 that never start (the node's cap).
  for (let i = 0; i < 6; i++) {
    const onNode = i >= 4;
    await kube.create<V1Pod>(paths.pods(tenant), {
      metadata: {
        name: `pvshift-${fakeUid.slice(0, -1)}${i}-presync`,
        labels: { ...COPY_LABELS, [LABEL_MIGRATION_UID]: fakeUid },
      },
      spec: {
        ...(onNode ? { nodeName: 'node-1' } : { nodeSelector: { 'pvshift.test/nowhere': 'true' } }),
        containers: [{ name: 'copy', image: 'pvshift:dev', command: ['/bin/sleep', '3600'] }],
        ...(onNode ? { volumes: [{ name: 'v', persistentVolumeClaim: { claimName: 'never-there' } }] } : {}),
      },
    });
  }
  t.teardown(async () => {
    for (const pod of (await kube.list<V1Pod>(paths.pods(tenant))).items)
      await kube.delete(paths.pods(tenant, pod.metadata?.name));
  });
  const tenantPods = (await kube.list<V1Pod>(paths.pods(tenant))).items;
  t.equal(tenantPods.filter(isUnfinished).length, 6, 'six unfinished pods with the copy labels, two of them on node-1');

  const ns = await freshNamespace(kube);
  await appWithData(ns, 'shop', 1);
  await createMigration(kube, ns, 'shop', { claimName: 'data-shop-0', targetStorageClassName: 'fast', preSync: true });
  const m = await waitForPhase(kube, ns, 'shop', ['WaitingForCutover'], 90_000);
  t.same(
    m.status?.copies?.map((c) => c.pass),
    ['presync'],
    'the pre-sync ran beside them, pinned to node-1',
  );
});

t.test('the cap holds: 16 migrations racing over 8 workers never run more than 3 copies at once', async (t) => {
  const CAP = 3;
  const COUNT = 16;
  const pvshift = await installation.start([
    `--max-concurrent-copies=${CAP}`,
    '--max-copies-per-node=16',
    '--workers=8',
  ]);
  t.teardown(() => pvshift.stop());
  const ns = await freshNamespace(kube);
  const names = Array.from({ length: COUNT }, (_, i) => `vol-${i}`);
  for (const name of names) {
    await kube.create(paths.claims(ns), {
      metadata: { name },
      spec: {
        accessModes: ['ReadWriteOnce'],
        storageClassName: 'standard',
        resources: { requests: { storage: '1Gi' } },
      },
    });
  }
  for (const name of names) {
    await waitForClaimBound(kube, ns, name);
    fillVolume((await volumeOf(kube, ns, name)).spec!.hostPath!.path, 1);
  }

  // Every copy pod of the namespace as the watch reports it, in order.
  const pods = new Informer<V1Pod>(kube, paths.pods(ns), { labelSelector: `${LABEL_COMPONENT}=copy` });
  let most = 0;
  const seen = new Set<string>();
  let crowd: string[] = [];
  pods.on((_type, pod) => {
    seen.add(pod.metadata?.uid ?? '');
    const running = pods.list().filter(isUnfinished);
    if (running.length > most) {
      most = running.length;
      crowd = running.map((p) => p.metadata?.name ?? '');
    }
  });
  pods.start();
  await pods.waitForSync();
  t.teardown(() => pods.stop());

  await Promise.all(
    names.map((name) =>
      createMigration(kube, ns, name, { claimName: name, targetStorageClassName: 'fast', preSync: true }),
    ),
  );
  for (const name of names) {
    const m = await waitForPhase(kube, ns, name, ['WaitingForCutover'], 600_000);
    t.same(
      m.status?.copies?.map((c) => c.pass),
      ['presync'],
      `${name} pre-synced`,
    );
  }
  t.comment(`at most ${most} unfinished copy pods at once (${crowd.join(', ')}); ${seen.size} copy pods in all`);
  t.ok(most <= CAP, `never more than ${CAP} unfinished copy pods at once (saw ${most})`);
  t.ok(most >= 2, 'and copies did run side by side');
});

t.test('a final copy does not wait behind a pre-sync: the pre-sync yields its slot and resumes after', async (t) => {
  // One slot; 1 MiB/s makes a 48 MiB pre-sync take most of a minute.
  const pvshift = await installation.start(['--max-concurrent-copies=1', '--copy-bandwidth-limit=1024']);
  t.teardown(() => pvshift.stop());
  const ns = await freshNamespace(kube);
  const beta = await appWithData(ns, 'beta', 1);
  const alpha = await appWithData(ns, 'alpha', 48);
  const betaBefore = snapshotTree(beta.dir);
  const alphaBefore = snapshotTree(alpha.dir);

  await createMigration(kube, ns, 'beta', { claimName: 'data-beta-0', targetStorageClassName: 'fast', preSync: false });
  await waitForPhase(kube, ns, 'beta', ['WaitingForCutover']);
  const a = await createMigration(kube, ns, 'alpha', {
    claimName: 'data-alpha-0',
    targetStorageClassName: 'fast',
    preSync: true,
  });
  const alphaPresync = `pvshift-${a.metadata.uid}-presync`;
  const running = await waitFor(
    'alpha pre-sync copying',
    async () => {
      const m = await migrationOf(kube, ns, 'alpha');
      const pod = await kube.get<V1Pod>(paths.pods(ns, alphaPresync));
      return pod?.status?.phase === 'Running' && (m?.status?.progress?.bytesDone ?? 0) > 0 ? pod : undefined;
    },
    120_000,
    200,
  );

  // Cutover of beta: its pod is recreated, held by the gate until its data is in place.
  await kube.delete(paths.pods(ns, 'beta-0'));
  const populating = await waitFor(
    'beta Populating',
    async () => {
      const m = await migrationOf(kube, ns, 'beta');
      return ['Populating', 'Binding', 'Succeeded'].includes(m?.status?.phase ?? '') ? Date.now() : undefined;
    },
    120_000,
    100,
  );
  const b = (await migrationOf(kube, ns, 'beta'))!;
  const finalAt = await waitFor(
    'beta final copy pod',
    async () => ((await kube.get(paths.pods(ns, `pvshift-${b.metadata.uid}-final`))) ? Date.now() : undefined),
    120_000,
    100,
  );
  const alphaThen = (await migrationOf(kube, ns, 'alpha'))!;
  const waited = (finalAt - populating) / 1000;
  t.ok(waited <= 8, `beta's final copy pod was created ${waited.toFixed(1)} s after beta began populating`);
  t.notOk(
    alphaThen.status?.copies?.some((c) => c.pass === 'presync'),
    "while alpha's pre-sync had not finished",
  );

  // The slot is beta's: alpha's pre-sync pod goes, without counting as a failure.
  await waitFor(
    "alpha's pre-sync pod stopped for beta",
    async () => {
      const pod = await kube.get<V1Pod>(paths.pods(ns, alphaPresync));
      return !pod || pod.metadata?.uid !== running.metadata?.uid ? true : undefined;
    },
    30_000,
    200,
  );
  t.pass("alpha's pre-sync pod gave its slot up");
  await waitForPhase(kube, ns, 'beta', ['Succeeded'], 180_000);
  const alphaSynced = await waitForPhase(kube, ns, 'alpha', ['WaitingForCutover'], 300_000);
  t.same(
    alphaSynced.status?.copies?.map((c) => c.pass),
    ['presync'],
    'alpha pre-synced in the end',
  );
  t.notOk(alphaSynced.status?.attempts?.presync, 'the yield did not count as a failed attempt');

  await kube.delete(paths.pods(ns, 'alpha-0'));
  await waitForPhase(kube, ns, 'alpha', ['Succeeded'], 300_000);
  for (const [name, before] of [
    ['beta', betaBefore],
    ['alpha', alphaBefore],
  ] as const) {
    const target = await volumeOf(kube, ns, `data-${name}-0`);
    t.equal(target.spec?.storageClassName, 'fast', `${name} is on the target class`);
    t.same(
      Object.fromEntries(snapshotTree(target.spec!.hostPath!.path)),
      Object.fromEntries(before),
      `${name}: every byte and attribute arrived`,
    );
  }
  await waitForGone(kube, paths.pods(ns, alphaPresync));
  const migrations = (await kube.list<VolumeMigration>(paths.migrations(ns))).items;
  t.same(migrations.map((m) => m.status?.phase).sort(), ['Succeeded', 'Succeeded'], 'both migrations succeeded');
});
