// A StatefulSet annotated with a target class: the claims of all its replicas are
// migrated, a rollout restart cuts them over one replica at a time (the
// StatefulSet controller's own order), and the annotation is a standing policy:
// the claims of replicas added later are created on the target, with no
// migration, until the annotation is removed.
import t from 'tap';
import type { CoreV1Event, V1PersistentVolumeClaim, V1Pod, V1StatefulSet } from '@kubernetes/client-node';
import { paths } from '../../src/kube.js';
import {
  ANNOTATION_CUTOVER,
  ANNOTATION_TARGET_CLASS,
  ANNOTATION_TARGET_SIZE,
  LABEL_NAMESPACE_ACTIVE,
  SCHEDULING_GATE,
} from '../../src/names.js';
import type { VolumeMigration } from '../../src/volume-migration.js';
import { clusterFor, freshNamespace, statefulSet, volumeOf, waitFor } from '../helpers/cluster.js';
import { eventReasonsWith, fillVolume, snapshotTree, waitForPhase } from '../helpers/migration.js';
import { installPvshift } from '../helpers/pvshift.js';

const cluster = await clusterFor(t);
const { kube } = cluster;
const installation = await installPvshift(cluster);
const pvshift = await installation.start();
t.teardown(() => pvshift.stop());

const isReady = (p: V1Pod): boolean =>
  !p.metadata?.deletionTimestamp && (p.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');
const podsOf = async (ns: string): Promise<V1Pod[]> =>
  (await kube.list<V1Pod>(paths.pods(ns), { labelSelector: 'app=db' })).items;
const claimOf = (ns: string, name: string) => kube.get<V1PersistentVolumeClaim>(paths.claims(ns, name));
const migrationsIn = async (ns: string) => (await kube.list<VolumeMigration>(paths.migrations(ns))).items;

async function scale(ns: string, replicas: number): Promise<void> {
  await kube.patch(paths.statefulSets(ns, 'db'), { spec: { replicas } });
  await waitFor(
    `${replicas} replicas Ready`,
    async () => {
      const ready = (await podsOf(ns)).filter(isReady);
      return ready.length === replicas ? true : undefined;
    },
    120_000,
  );
}

t.test(
  'an annotated StatefulSet: every replica migrated one at a time, and new replicas born on the target',
  async (t) => {
    const ns = await freshNamespace(kube);
    await kube.create(paths.statefulSets(ns), statefulSet('db', { replicas: 3 }));
    await waitFor('3 replicas Ready', async () => ((await podsOf(ns)).filter(isReady).length === 3 ? true : undefined));
    const before = new Map<string, ReturnType<typeof snapshotTree>>();
    for (const i of [0, 1, 2]) {
      const pv = await volumeOf(kube, ns, `data-db-${i}`);
      fillVolume(pv.spec!.hostPath!.path, 2 + i);
      before.set(`data-db-${i}`, snapshotTree(pv.spec!.hostPath!.path));
    }

    await kube.patch(paths.statefulSets(ns, 'db'), {
      metadata: { annotations: { [ANNOTATION_TARGET_CLASS]: 'fast' } },
    });
    for (const i of [0, 1, 2]) await waitForPhase(kube, ns, `data-db-${i}`, ['WaitingForCutover']);
    t.equal((await migrationsIn(ns)).length, 3, 'one migration per replica');
    const created = await eventReasonsWith(kube, ns, 'db', 'StatefulSet', ['ReplicaMigrationCreated']);
    t.equal(created.filter((r) => r === 'ReplicaMigrationCreated').length, 3, 'an Event on the StatefulSet for each');
    // Found as `kubectl describe statefulset` looks for them: by the object's uid too.
    const set = await kube.get<V1StatefulSet>(paths.statefulSets(ns, 'db'));
    const described = await kube.list<CoreV1Event>(paths.events(ns), {
      fieldSelector: `involvedObject.kind=StatefulSet,involvedObject.name=db,involvedObject.uid=${set?.metadata?.uid}`,
    });
    t.equal(
      described.items.filter((e) => e.reason === 'ReplicaMigrationCreated').length,
      3,
      "the Events carry the StatefulSet's uid (kubectl describe shows them)",
    );

    // Never more than one replica down: sampled through the whole rollout.
    let mostDown = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const pods = await podsOf(ns);
        const ready = pods.filter(isReady).map((p) => p.metadata!.name!);
        mostDown = Math.max(mostDown, 3 - ready.filter((n) => ['db-0', 'db-1', 'db-2'].includes(n)).length);
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    })();
    // `kubectl rollout restart sts/db`: the StatefulSet controller replaces db-2, db-1, db-0 in turn.
    await kube.patch(paths.statefulSets(ns, 'db'), {
      spec: {
        template: { metadata: { annotations: { 'kubectl.kubernetes.io/restartedAt': new Date().toISOString() } } },
      },
    });
    for (const i of [2, 1, 0]) await waitForPhase(kube, ns, `data-db-${i}`, ['Succeeded'], 180_000);
    await waitFor('3 replicas Ready after the rollout', async () =>
      (await podsOf(ns)).filter(isReady).length === 3 ? true : undefined,
    );
    sampling = false;
    await sampler;
    t.equal(mostDown, 1, 'one replica down at a time, never more');
    for (const i of [0, 1, 2]) {
      const name = `data-db-${i}`;
      t.equal((await claimOf(ns, name))?.spec?.storageClassName, 'fast', `${name} on fast`);
      const pv = await volumeOf(kube, ns, name);
      t.same(
        Object.fromEntries(snapshotTree(pv.spec!.hostPath!.path)),
        Object.fromEntries(before.get(name)!),
        `${name}: every byte`,
      );
    }

    // The policy stands: new replicas' claims are created on the target, with no migration.
    await scale(ns, 5);
    for (const name of ['data-db-3', 'data-db-4']) {
      t.equal((await claimOf(ns, name))?.spec?.storageClassName, 'fast', `${name} created on fast`);
    }
    t.same(
      (await migrationsIn(ns)).map((m) => m.spec.claimName).sort(),
      ['data-db-0', 'data-db-1', 'data-db-2'],
      'no migration for them',
    );
    await scale(ns, 3);
    await scale(ns, 5);
    t.equal((await claimOf(ns, 'data-db-4'))?.spec?.storageClassName, 'fast', 'scaled down and up: still on fast');
    const namespace = await kube.get<{ metadata?: { labels?: Record<string, string> } }>(paths.namespaces(ns));
    t.equal(
      namespace?.metadata?.labels?.[LABEL_NAMESPACE_ACTIVE],
      'true',
      'the namespace stays in the webhooks’ scope while the policy stands',
    );

    // The annotation removed: the policy ends. Migrated replicas stay; a new one is on the old class again.
    await kube.patch(paths.statefulSets(ns, 'db'), { metadata: { annotations: { [ANNOTATION_TARGET_CLASS]: null } } });
    await waitFor('the webhook sees the policy gone', async () => {
      // The claim webhook answers from its cache: a dry-run claim tells when it no longer rewrites.
      const probe = await kube.create<V1PersistentVolumeClaim>(
        paths.claims(ns),
        {
          metadata: { name: 'data-db-9', labels: { app: 'db' } },
          spec: {
            accessModes: ['ReadWriteOnce'],
            storageClassName: 'standard',
            resources: { requests: { storage: '1Gi' } },
          },
        },
        { dryRun: 'All' },
      );
      return probe.spec?.storageClassName === 'standard' ? true : undefined;
    });
    await scale(ns, 6);
    t.equal(
      (await claimOf(ns, 'data-db-5'))?.spec?.storageClassName,
      'standard',
      'a new replica after the policy: old class',
    );
    for (const i of [0, 1, 2])
      t.equal((await claimOf(ns, `data-db-${i}`))?.spec?.storageClassName, 'fast', `data-db-${i} stays migrated`);
    const gated = (await podsOf(ns)).filter((p) =>
      (p.spec?.schedulingGates ?? []).some((g) => g.name === SCHEDULING_GATE),
    );
    t.same(
      gated.map((p) => p.metadata?.name),
      [],
      'no gate left',
    );
  },
);

t.test(
  'the annotation removed before cutover: its migrations are withdrawn, nothing of the user changes',
  async (t) => {
    const ns = await freshNamespace(kube);
    await kube.create(paths.statefulSets(ns), statefulSet('db', { replicas: 2 }));
    await waitFor('2 replicas Ready', async () => ((await podsOf(ns)).filter(isReady).length === 2 ? true : undefined));
    await kube.patch(paths.statefulSets(ns, 'db'), {
      metadata: { annotations: { [ANNOTATION_TARGET_CLASS]: 'fast' } },
    });
    for (const i of [0, 1]) await waitForPhase(kube, ns, `data-db-${i}`, ['WaitingForCutover']);
    await kube.patch(paths.statefulSets(ns, 'db'), { metadata: { annotations: { [ANNOTATION_TARGET_CLASS]: null } } });
    for (const i of [0, 1]) await waitForPhase(kube, ns, `data-db-${i}`, ['Aborted']);
    const withdrawn = await eventReasonsWith(kube, ns, 'db', 'StatefulSet', ['ReplicaMigrationWithdrawn']);
    t.ok(withdrawn.includes('ReplicaMigrationWithdrawn'), 'the StatefulSet says the policy withdrew them');
    for (const i of [0, 1]) {
      t.equal((await claimOf(ns, `data-db-${i}`))?.spec?.storageClassName, 'standard', `data-db-${i} untouched`);
    }
    await kube.delete(paths.pods(ns, 'db-1'));
    await waitFor('db-1 back, ungated and Ready', async () => {
      const pod = (await podsOf(ns)).find((p) => p.metadata?.name === 'db-1');
      return pod && isReady(pod) && !(pod.spec?.schedulingGates ?? []).length ? true : undefined;
    });
    t.pass('a recreated replica starts at once on its old volume');
  },
);

t.test('a target size that is no size: a Warning on the StatefulSet, no migration, until it is fixed', async (t) => {
  const ns = await freshNamespace(kube);
  await kube.create(paths.statefulSets(ns), statefulSet('db'));
  await waitFor('db-0 Ready', async () => ((await podsOf(ns)).filter(isReady).length === 1 ? true : undefined));
  await kube.patch(paths.statefulSets(ns, 'db'), {
    metadata: { annotations: { [ANNOTATION_TARGET_CLASS]: 'fast', [ANNOTATION_TARGET_SIZE]: 'big' } },
  });
  const set = await kube.get<V1StatefulSet>(paths.statefulSets(ns, 'db'));
  const warnings = await waitFor('the Warning on the StatefulSet', async () => {
    const events = await kube.list<CoreV1Event>(paths.events(ns), {
      fieldSelector: `involvedObject.kind=StatefulSet,involvedObject.name=db,involvedObject.uid=${set?.metadata?.uid}`,
    });
    const found = events.items.filter((e) => e.reason === 'InvalidWorkloadPolicy');
    return found.length ? found : undefined;
  });
  t.match(
    warnings[0],
    {
      type: 'Warning',
      message: /^pvshift.io\/target-size "big" is not a size such as 20Gi: the policy moves no claim/,
    },
    'it says which value is wrong, and what that means',
  );
  t.same(await migrationsIn(ns), [], 'no migration from a policy pvshift cannot act on');
  t.equal(warnings[0]?.count ?? 1, 1, 'said once, however often the controller looks again');

  // A class that does not exist, on a StatefulSet with no replica yet: said on it, before any claim is made.
  const empty = await freshNamespace(kube);
  await kube.create(paths.statefulSets(empty), {
    ...statefulSet('db', { replicas: 0 }),
    metadata: { name: 'db', annotations: { [ANNOTATION_TARGET_CLASS]: 'fsat' } },
  });
  const noClass = await waitFor('the Warning on the StatefulSet with no class', async () => {
    const events = await kube.list<CoreV1Event>(paths.events(empty), {
      fieldSelector: 'involvedObject.kind=StatefulSet,involvedObject.name=db,reason=InvalidWorkloadPolicy',
    });
    return events.items[0];
  });
  t.match(
    noClass.message,
    /^pvshift.io\/target-storage-class "fsat" names no StorageClass/,
    'a class that is not there',
  );

  await kube.patch(paths.statefulSets(ns, 'db'), { metadata: { annotations: { [ANNOTATION_TARGET_SIZE]: '2Gi' } } });
  const m = await waitForPhase(kube, ns, 'data-db-0', ['WaitingForCutover']);
  t.equal(m.spec.targetSize, '2Gi', 'fixed: the migration follows, with the size');
  await kube.patch(paths.statefulSets(ns, 'db'), {
    metadata: { annotations: { [ANNOTATION_TARGET_CLASS]: null, [ANNOTATION_TARGET_SIZE]: null } },
  });
  await waitForPhase(kube, ns, 'data-db-0', ['Aborted']);
});

t.test('cutover: Evict on the StatefulSet: pvshift rolls the replicas itself, highest ordinal first', async (t) => {
  const ns = await freshNamespace(kube);
  await kube.create(paths.statefulSets(ns), statefulSet('db', { replicas: 3 }));
  await waitFor('3 replicas Ready', async () => ((await podsOf(ns)).filter(isReady).length === 3 ? true : undefined));
  let mostDown = 0;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const ready = (await podsOf(ns)).filter(isReady).length;
      mostDown = Math.max(mostDown, 3 - ready);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  })();
  await kube.patch(paths.statefulSets(ns, 'db'), {
    metadata: { annotations: { [ANNOTATION_TARGET_CLASS]: 'fast', [ANNOTATION_CUTOVER]: 'Evict' } },
  });
  const done = [];
  for (const i of [2, 1, 0]) done.push(await waitForPhase(kube, ns, `data-db-${i}`, ['Succeeded'], 180_000));
  await waitFor('3 replicas Ready', async () => ((await podsOf(ns)).filter(isReady).length === 3 ? true : undefined));
  sampling = false;
  await sampler;
  t.equal(mostDown, 1, 'one replica down at a time, never more');
  const starts = done.map((m) => Date.parse(m.status?.cutoverStartTime ?? ''));
  t.ok(starts[0]! < starts[1]! && starts[1]! < starts[2]!, 'cut over as db-2, db-1, db-0');
  for (const i of [0, 1, 2]) {
    t.equal((await claimOf(ns, `data-db-${i}`))?.spec?.storageClassName, 'fast', `data-db-${i} on fast`);
  }
});
