// Issue 12, a whole StatefulSet migrated with `cutover: Evict`, interrupted:
// the policy withdrawn in the middle of the rollout (the replicas already moved
// stay moved, the others stay where they were, new replicas go back to the old
// class), and the controller SIGKILLed in the middle of it (it finishes, one
// replica down at a time, nothing lost). pvshift runs under the chart's RBAC
// (installPvshift), and every wait watches the real API.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import t, { type Test } from 'tap';
import type { CoreV1Event, V1PersistentVolume, V1PersistentVolumeClaim, V1Pod } from '@kubernetes/client-node';
import { Informer, paths } from '../../src/kube.js';
import {
  ANNOTATION_CUTOVER,
  ANNOTATION_TARGET_CLASS,
  LABEL_COPY_PASS,
  LABEL_MANAGED_BY,
  LABEL_MIGRATION_UID,
  LABEL_NAMESPACE_ACTIVE,
  SCHEDULING_GATE,
} from '../../src/names.js';
import { isTerminal, phaseOf, type VolumeMigration } from '../../src/volume-migration.js';
import { clusterFor, freshNamespace, statefulSet, volumeOf, waitFor } from '../helpers/cluster.js';
import { fillVolume, snapshotTree, waitForPhase } from '../helpers/migration.js';
import { installPvshift, type PvshiftProcess } from '../helpers/pvshift.js';

const cluster = await clusterFor(t);
const { kube } = cluster;
const installation = await installPvshift(cluster);

const REPLICAS = ['db-0', 'db-1', 'db-2'];
type Tree = ReturnType<typeof snapshotTree>;

const isReady = (p: V1Pod): boolean =>
  !p.metadata?.deletionTimestamp && (p.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');
const isGated = (p: V1Pod): boolean => (p.spec?.schedulingGates ?? []).some((g) => g.name === SCHEDULING_GATE);
const podsOf = async (ns: string): Promise<V1Pod[]> =>
  (await kube.list<V1Pod>(paths.pods(ns), { labelSelector: 'app=db' })).items;
const claimOf = (ns: string, name: string) => kube.get<V1PersistentVolumeClaim>(paths.claims(ns, name));
const tree = (pv: V1PersistentVolume): Record<string, unknown> =>
  Object.fromEntries(snapshotTree(pv.spec!.hostPath!.path));

/**
 * Watches the StatefulSet's pods and the namespace's migrations for the whole
 * test: every state the watch reports is counted, so a moment with two replicas
 * down cannot slip between two polls.
 */
async function watchRollout(t: Test, ns: string) {
  const pods = new Informer<V1Pod>(kube, paths.pods(ns), { labelSelector: 'app=db' });
  const migrations = new Informer<VolumeMigration>(kube, paths.migrations(ns));
  const view = {
    pods,
    migrations,
    mostDown: 0,
    downAtWorst: [] as string[],
    timeline: [] as string[],
    phaseOf: (claim: string) => {
      const m = migrations.get(`${ns}/${claim}`);
      return m ? phaseOf(m) : undefined;
    },
  };
  let synced = false;
  const count = (what: string) => {
    const ready = new Set(
      pods
        .list()
        .filter(isReady)
        .map((p) => p.metadata?.name),
    );
    const down = REPLICAS.filter((name) => !ready.has(name));
    if (down.length > view.mostDown) {
      view.mostDown = down.length;
      view.downAtWorst = down;
    }
    // What was down when, with the migrations' phases: the story of a failure.
    const line = `down [${down.join(', ')}], phases ${REPLICAS.map((r) => `${r}:${view.phaseOf(`data-${r}`) ?? '-'}`).join(' ')}`;
    if (!view.timeline.at(-1)?.endsWith(line)) view.timeline.push(`${new Date().toISOString()} ${what}: ${line}`);
  };
  // The first list arrives as one event per pod: counted once it is all in.
  pods.on((type, pod) => synced && count(`${type} ${pod.metadata?.name}`));
  pods.start();
  migrations.start();
  await Promise.all([pods.waitForSync(), migrations.waitForSync()]);
  synced = true;
  count('synced');
  t.teardown(() => {
    pods.stop();
    migrations.stop();
  });
  return view;
}

/** A 3-replica StatefulSet `db`, Ready, with data (owners, modes, links, xattrs) on each volume. */
async function statefulSetWithData(
  ns: string,
): Promise<Map<string, { pv: V1PersistentVolume; before: Tree; claimUid: string }>> {
  await kube.create(paths.statefulSets(ns), statefulSet('db', { replicas: 3 }));
  await waitFor(
    '3 replicas Ready',
    async () => ((await podsOf(ns)).filter(isReady).length === 3 ? true : undefined),
    120_000,
  );
  const volumes = new Map<string, { pv: V1PersistentVolume; before: Tree; claimUid: string }>();
  for (const i of [0, 1, 2]) {
    const name = `data-db-${i}`;
    const pv = await volumeOf(kube, ns, name);
    fillVolume(pv.spec!.hostPath!.path, 2 + i);
    const claimUid = (await claimOf(ns, name))!.metadata!.uid!;
    volumes.set(name, { pv, before: snapshotTree(pv.spec!.hostPath!.path), claimUid });
  }
  return volumes;
}

async function assertNoGateAllReady(t: Test, ns: string, replicas = 3): Promise<void> {
  const pods = await waitFor(
    `${replicas} replicas Ready, none gated`,
    async () => {
      const all = await podsOf(ns);
      const live = all.filter((p) => !p.metadata?.deletionTimestamp);
      return live.length === replicas && live.every((p) => isReady(p) && !isGated(p)) ? all : undefined;
    },
    120_000,
  );
  t.same(
    pods.filter(isGated).map((p) => p.metadata?.name),
    [],
    "no pod keeps pvshift's scheduling gate",
  );
  t.equal(pods.filter(isReady).length, replicas, `all ${replicas} replicas Ready`);
}

async function assertNothingLeftBehind(t: Test, ns: string): Promise<void> {
  await waitFor('no staging or helper claim, no copy pod', async () => {
    const selector = { labelSelector: `${LABEL_MANAGED_BY}=pvshift` };
    const claims = (await kube.list<V1PersistentVolumeClaim>(paths.claims(ns), selector)).items;
    const pods = (await kube.list<V1Pod>(paths.pods(ns), selector)).items;
    return claims.length + pods.length === 0 ? true : undefined;
  });
  t.pass('no staging or helper claim, no copy pod left');
}

/**
 * Moments of the rollout at which the policy is withdrawn, seen by the watch:
 * db-2 cut over and Ready on its new volume (its gate is lifted before the
 * Succeeded write, so either watch may see it first); one step later, db-1's
 * pod evicted by pvshift for its cutover; and its new pod created, held by the
 * gate, as pvshift is about to delete the original claim (a race with the
 * withdrawal: the migration may be aborted, rolled back, or carried through).
 */
const MOMENTS = {
  'db-2 cut over and Ready': () => true,
  'db-1 just evicted': (view: Awaited<ReturnType<typeof watchRollout>>, ns: string, first: Map<string, string>) => {
    const pod = view.pods.get(`${ns}/db-1`);
    return !pod || pod.metadata?.uid !== first.get('db-1') || !!pod.metadata?.deletionTimestamp;
  },
  'db-1 back and gated': (view: Awaited<ReturnType<typeof watchRollout>>, ns: string, first: Map<string, string>) => {
    const pod = view.pods.get(`${ns}/db-1`);
    return !!pod && pod.metadata?.uid !== first.get('db-1') && isGated(pod);
  },
};

for (const [moment, reached] of Object.entries(MOMENTS)) {
  t.test(
    `the annotation removed mid-rollout (${moment}): moved replicas stay moved, the others stay on their old volumes, the policy ends`,
    async (t) => {
      const pvshift = await installation.start();
      t.teardown(() => pvshift.stop());
      const ns = await freshNamespace(kube);
      const volumes = await statefulSetWithData(ns);
      const policies = (await kube.get<V1PersistentVolume>(paths.volumes(volumes.get('data-db-0')!.pv.metadata!.name)))!
        .spec!.persistentVolumeReclaimPolicy;
      const view = await watchRollout(t, ns);

      // At the moment, the policy is withdrawn: from the watch's handlers, not after a sleep.
      const first = new Map(view.pods.list().map((p) => [p.metadata!.name!, p.metadata!.uid!]));
      let withdrawnAt: Record<string, string | undefined> | undefined;
      let db2Ready = false;
      const withdrawn = new Promise<void>((resolve, reject) => {
        const check = () => {
          const db2 = view.pods.get(`${ns}/db-2`);
          if (withdrawnAt || !db2 || db2.metadata?.uid === first.get('db-2') || !isReady(db2)) return;
          if (view.phaseOf('data-db-2') !== 'Succeeded' || !reached(view, ns, first)) return;
          db2Ready = true;
          withdrawnAt = Object.fromEntries(['data-db-0', 'data-db-1', 'data-db-2'].map((c) => [c, view.phaseOf(c)]));
          kube
            .patch(paths.statefulSets(ns, 'db'), {
              metadata: { annotations: { [ANNOTATION_TARGET_CLASS]: null, [ANNOTATION_CUTOVER]: null } },
            })
            .then(() => resolve(), reject);
        };
        view.pods.on(check);
        view.migrations.on(check);
      });
      await kube.patch(paths.statefulSets(ns, 'db'), {
        metadata: { annotations: { [ANNOTATION_TARGET_CLASS]: 'fast', [ANNOTATION_CUTOVER]: 'Evict' } },
      });
      await Promise.race([
        withdrawn,
        waitForPhase(kube, ns, 'data-db-0', ['Succeeded'], 300_000).then(() => {
          throw new Error('the rollout finished before the annotation could be removed mid-way');
        }),
      ]);
      t.comment(`annotation removed with the migrations at ${JSON.stringify(withdrawnAt)}`);
      t.ok(db2Ready, 'removed once db-2 ran Ready on its new volume');
      t.equal(withdrawnAt?.['data-db-2'], 'Succeeded', 'its migration Succeeded');
      t.not(withdrawnAt?.['data-db-0'], 'Succeeded', 'and before db-0 was');

      // Every migration of the set ends.
      const ended = await waitFor(
        'every migration of the set ended',
        () => {
          const all = view.migrations.list();
          const over = all.length === 3 && all.every((m) => isTerminal(phaseOf(m)) && !m.metadata.finalizers?.length);
          return Promise.resolve(over ? all : undefined);
        },
        240_000,
      );
      const phase = new Map(ended.map((m) => [m.spec.claimName, phaseOf(m)]));
      t.comment(`outcome: ${JSON.stringify(Object.fromEntries(phase))}`);
      t.equal(phase.get('data-db-2'), 'Succeeded', 'data-db-2 stays cut over');
      t.equal(phase.get('data-db-0'), 'Aborted', 'data-db-0 withdrawn before its cutover');
      // db-1's turn had come: withdrawn if its cutover had not begun, else carried
      // through (src/workload-policy.ts: removing the policy withdraws what is still a
      // plan); a cutover begun is not undone by the withdrawal.
      t.ok(['Aborted', 'Succeeded'].includes(phase.get('data-db-1') ?? ''), 'data-db-1 withdrawn, or carried through');

      await assertNoGateAllReady(t, ns);
      const moved = [...phase].filter(([, p]) => p === 'Succeeded').map(([c]) => c);
      const stayed = [...phase].filter(([, p]) => p !== 'Succeeded').map(([c]) => c);
      for (const name of moved) {
        const { pv, before } = volumes.get(name)!;
        const claim = await claimOf(ns, name);
        t.equal(claim?.spec?.storageClassName, 'fast', `${name} stays on the target class`);
        t.same(
          tree(await volumeOf(kube, ns, name)),
          Object.fromEntries(before),
          `${name}: every byte on the new volume`,
        );
        const old = await kube.get<V1PersistentVolume>(paths.volumes(pv.metadata!.name));
        t.equal(old?.spec?.persistentVolumeReclaimPolicy, 'Retain', `${name}: its old volume kept (Retain)`);
        t.same(tree(pv), Object.fromEntries(before), `${name}: the old volume still holds the data`);
      }
      for (const name of stayed) {
        const { pv, before } = volumes.get(name)!;
        const claim = await claimOf(ns, name);
        t.equal(claim?.spec?.storageClassName, 'standard', `${name} stays on the old class`);
        t.equal(claim?.spec?.volumeName, pv.metadata?.name, `${name} stays on its original volume`);
        t.equal(claim?.metadata?.uid, volumes.get(name)!.claimUid, `${name} is the user's own claim, never deleted`);
        t.notOk(claim?.spec?.dataSourceRef, `${name} is no replacement claim`);
        t.same(tree(pv), Object.fromEntries(before), `${name}: its data untouched`);
        const current = await kube.get<V1PersistentVolume>(paths.volumes(pv.metadata!.name));
        t.equal(
          current?.spec?.persistentVolumeReclaimPolicy,
          policies,
          `${name}: its volume's reclaim policy restored`,
        );
      }
      // One Event on the StatefulSet for each migration the policy withdrew, naming its claim.
      const withdrawals = async () =>
        (
          await kube.list<CoreV1Event>(paths.events(ns), {
            fieldSelector: 'involvedObject.kind=StatefulSet,involvedObject.name=db,reason=ReplicaMigrationWithdrawn',
          })
        ).items.map((e) => e.message ?? '');
      await waitFor(`${stayed.length} ReplicaMigrationWithdrawn events on the StatefulSet`, async () =>
        (await withdrawals()).length >= stayed.length ? true : undefined,
      ).catch(() => undefined);
      const messages = await withdrawals();
      t.same(
        messages.map((message) => /before claim (\S+) was cut over/.exec(message)?.[1]).sort(),
        [...stayed].sort(),
        'the StatefulSet says, once for each, which migrations the policy withdrew',
        { messages },
      );
      t.ok(view.mostDown <= 1, `never more than one replica down (at worst: ${view.downAtWorst.join(', ')})`, {
        timeline: view.timeline,
      });
      await assertNothingLeftBehind(t, ns);

      // The policy ended: a new replica is born on the old class, with no migration.
      await waitFor('the namespace out of the webhooks’ scope', async () => {
        const namespace = await kube.get<{ metadata: { labels?: Record<string, string> } }>(paths.namespaces(ns));
        return namespace?.metadata.labels?.[LABEL_NAMESPACE_ACTIVE] ? undefined : true;
      });
      t.pass('the namespace label is removed: no migration, no policy left');
      await kube.patch(paths.statefulSets(ns, 'db'), { spec: { replicas: 4 } });
      await assertNoGateAllReady(t, ns, 4);
      t.equal((await claimOf(ns, 'data-db-3'))?.spec?.storageClassName, 'standard', 'a new replica: old class');
      t.same(
        view.migrations
          .list()
          .map((m) => m.spec.claimName)
          .sort(),
        ['data-db-0', 'data-db-1', 'data-db-2'],
        'no migration for it',
      );
      await pvshift.stop();
    },
  );
}

t.test(
  'the controller SIGKILLed mid-rollout (after an eviction, during a final copy): it finishes, one replica at a time',
  async (t) => {
    const webhook = await installation.start([], { mode: 'webhook' });
    t.teardown(() => webhook.stop());
    // A throttled copy (a production-sparing setting), so a final copy lasts long enough to be killed in.
    const controllerArgs = ['--copy-bandwidth-limit=2048'];
    let controller: PvshiftProcess = await installation.start(controllerArgs, { mode: 'controller' });
    t.teardown(() => controller.stop());
    const ns = await freshNamespace(kube);
    const volumes = await statefulSetWithData(ns);
    const view = await watchRollout(t, ns);

    // The user's PodDisruptionBudget holds the rollout until every replica is pre-synced.
    const pdb = `/apis/policy/v1/namespaces/${ns}/poddisruptionbudgets`;
    await kube.create(pdb, {
      apiVersion: 'policy/v1',
      kind: 'PodDisruptionBudget',
      metadata: { name: 'db' },
      spec: { maxUnavailable: 0, selector: { matchLabels: { app: 'db' } } },
    });
    await kube.patch(paths.statefulSets(ns, 'db'), {
      metadata: { annotations: { [ANNOTATION_TARGET_CLASS]: 'fast', [ANNOTATION_CUTOVER]: 'Evict' } },
    });
    for (const i of [0, 1, 2]) await waitForPhase(kube, ns, `data-db-${i}`, ['WaitingForCutover'], 300_000);
    await waitFor('the eviction of db-2 refused by the PDB', () => {
      const m = view.migrations.get(`${ns}/data-db-2`);
      return Promise.resolve(/refused .*PodDisruptionBudget/.test(m?.status?.message ?? '') ? true : undefined);
    });
    // The application writes after the pre-sync: every final copy has a delta, db-1's a big one.
    for (const [name, { pv, claimUid }] of volumes) {
      const dir = pv.spec!.hostPath!.path;
      const megabytes = name === 'data-db-1' ? 12 : 1;
      for (let i = 0; i < megabytes; i++)
        fs.writeFileSync(path.join(dir, 'db', `late-${String(i).padStart(4, '0')}`), randomBytes(1024 * 1024));
      fs.appendFileSync(path.join(dir, 'db', 'wal', 'log 0001'), 'update;\ncommit;\n');
      volumes.set(name, { pv, before: snapshotTree(dir), claimUid });
    }

    // Kill points, from the watch's handlers: the controller dies the moment they are seen.
    const killed: string[] = [];
    const kill = (why: string) => {
      if (killed.includes(why)) return;
      killed.push(why);
      controller.child.kill('SIGKILL');
    };
    const original = new Map(view.pods.list().map((p) => [p.metadata?.name, p.metadata?.uid]));
    const db1Uid = view.migrations.get(`${ns}/data-db-1`)?.metadata.uid;
    view.pods.on((_type, pod) => {
      // db-2 evicted by pvshift: its pod terminating (or gone).
      if (pod.metadata?.name === 'db-2' && pod.metadata.uid === original.get('db-2') && pod.metadata.deletionTimestamp)
        kill('db-2 evicted');
    });
    const copies = new Informer<V1Pod>(kube, paths.pods(ns), { labelSelector: `${LABEL_COPY_PASS}=final` });
    copies.on((_type, pod) => {
      if (pod.metadata?.labels?.[LABEL_MIGRATION_UID] === db1Uid && pod.status?.phase === 'Running')
        kill("db-1's final copy running");
    });
    copies.start();
    await copies.waitForSync();
    t.teardown(() => copies.stop());

    await kube.delete(`${pdb}/db`);
    // Each life of the controller ends at a kill point; the next one starts at once (and waits for the lease).
    for (const point of ['db-2 evicted', "db-1's final copy running"]) {
      await waitFor(
        `the controller killed: ${point}`,
        () => Promise.resolve(killed.includes(point) ? true : undefined),
        300_000,
      );
      await controller.exited;
      t.equal(controller.child.signalCode, 'SIGKILL', `killed (SIGKILL) when ${point}`);
      t.comment(`killed when ${point}: ${JSON.stringify(REPLICAS.map((r) => view.phaseOf(`data-${r}`)))}`);
      controller = await installation.start(controllerArgs, { mode: 'controller' });
    }

    const done = [];
    for (const i of [2, 1, 0]) done.push(await waitForPhase(kube, ns, `data-db-${i}`, ['Succeeded'], 300_000));
    await assertNoGateAllReady(t, ns);
    t.same(killed, ['db-2 evicted', "db-1's final copy running"], 'killed at both points');
    t.ok(view.mostDown >= 1, 'the watch saw the replicas go down for their cutover');
    t.equal(view.mostDown, 1, `never more than one replica down (at worst: ${view.downAtWorst.join(', ')})`, {
      timeline: view.timeline,
    });
    const starts = done.map((m) => Date.parse(m.status?.cutoverStartTime ?? ''));
    t.ok(starts[0]! < starts[1]! && starts[1]! < starts[2]!, 'cut over as db-2, db-1, db-0');
    for (const i of [0, 1, 2]) {
      const name = `data-db-${i}`;
      const { pv, before } = volumes.get(name)!;
      t.equal((await claimOf(ns, name))?.spec?.storageClassName, 'fast', `${name} on the target class`);
      t.same(tree(await volumeOf(kube, ns, name)), Object.fromEntries(before), `${name}: every byte, late writes too`);
      const old = await kube.get<V1PersistentVolume>(paths.volumes(pv.metadata!.name));
      t.ok(old, `${name}: its old volume ${pv.metadata!.name} is not deleted`);
      t.equal(old?.spec?.persistentVolumeReclaimPolicy, 'Retain', `${name}: and stays Retain`);
      t.equal(old?.status?.phase, 'Released', `${name}: Released, for the user to delete`);
      t.same(tree(pv), Object.fromEntries(before), `${name}: the old volume still holds the data`);
    }
    await assertNothingLeftBehind(t, ns);
    await controller.stop();
    await webhook.stop();
  },
);
