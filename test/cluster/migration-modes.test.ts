// The modes beside the main flow, on the real control plane: cutover by
// eviction held by a real PodDisruptionBudget, withdrawing the annotation
// before cutover, sourceRetention, and two controller replicas under leader
// election (one webhook, two controllers, as a chart with replicas: 2 runs it).
import fs from 'node:fs';
import t from 'tap';
import type { V1PersistentVolume, V1PersistentVolumeClaim, V1Pod } from '@kubernetes/client-node';
import { paths, type Kube } from '../../src/kube.js';
import { ANNOTATION_TARGET_CLASS, LABEL_MANAGED_BY, LABEL_NAMESPACE_ACTIVE, SCHEDULING_GATE } from '../../src/names.js';
import {
  clusterFor,
  freshNamespace,
  statefulSet,
  volumeOf,
  waitFor,
  waitForGone,
  waitForPodReady,
} from '../helpers/cluster.js';
import {
  annotateClaim,
  createMigration,
  fillVolume,
  migrationOf,
  snapshotTree,
  waitForPhase,
} from '../helpers/migration.js';
import { installPvshift, PVSHIFT_NAMESPACE, type PvshiftProcess } from '../helpers/pvshift.js';

const LEASE_SECONDS = 4;
const LEASE_NAME = 'pvshift-controller';

const cluster = await clusterFor(t);
const { kube } = cluster;
const installation = await installPvshift(cluster);
const webhook = await installation.start([], { mode: 'webhook' });
t.teardown(() => webhook.stop());
// Two controller replicas for the whole file: every test below runs under leader election.
const controllers: PvshiftProcess[] = await Promise.all(
  [0, 1].map(() => installation.start([`--lease-duration=${LEASE_SECONDS}`], { mode: 'controller' })),
);
t.teardown(() => Promise.all(controllers.map((c) => c.stop())));

type Tree = ReturnType<typeof snapshotTree>;
interface Lease {
  spec?: { holderIdentity?: string; leaseTransitions?: number; renewTime?: string };
}

/** A 1-replica StatefulSet with data on its volume. */
async function appWithData(
  ns: string,
  name: string,
  megabytes = 2,
): Promise<{ pv: V1PersistentVolume; before: Tree; podUid: string }> {
  await kube.create(paths.statefulSets(ns), statefulSet(name));
  const pod = await waitForPodReady(kube, ns, `${name}-0`);
  const pv = await volumeOf(kube, ns, `data-${name}-0`);
  fillVolume(pv.spec!.hostPath!.path, megabytes);
  return { pv, before: snapshotTree(pv.spec!.hostPath!.path), podUid: pod.metadata!.uid! };
}

function newPodReady(ns: string, name: string, oldUid: string): Promise<V1Pod> {
  return waitFor(
    `a new ${name} Ready`,
    async () => {
      const pod = await waitForPodReady(kube, ns, name);
      return pod.metadata?.uid !== oldUid ? pod : undefined;
    },
    120_000,
  );
}

async function targetTree(ns: string, claimName: string): Promise<{ pv: V1PersistentVolume; tree: Tree }> {
  const pv = await volumeOf(kube, ns, claimName);
  return { pv, tree: snapshotTree(pv.spec!.hostPath!.path) };
}

function nothingOfPvshiftLeft(k: Kube, ns: string): Promise<true> {
  return waitFor(`nothing of pvshift left in ${ns}`, async () => {
    const claims = (
      await k.list<V1PersistentVolumeClaim>(paths.claims(ns), { labelSelector: `${LABEL_MANAGED_BY}=pvshift` })
    ).items;
    const pods = (await k.list<V1Pod>(paths.pods(ns), { labelSelector: `${LABEL_MANAGED_BY}=pvshift` })).items;
    const namespace = await k.get<{ metadata: { labels?: Record<string, string> } }>(paths.namespaces(ns));
    return claims.length + pods.length === 0 && namespace?.metadata.labels?.[LABEL_NAMESPACE_ACTIVE] === undefined
      ? true
      : undefined;
  });
}

function pdbPath(ns: string, name?: string): string {
  return `/apis/policy/v1/namespaces/${ns}/poddisruptionbudgets${name ? `/${name}` : ''}`;
}

t.test('cutover: Evict waits while a PodDisruptionBudget refuses, then evicts the pod itself', async (t) => {
  const ns = await freshNamespace(kube);
  const { before, podUid } = await appWithData(ns, 'guarded');
  await kube.create(pdbPath(ns), {
    apiVersion: 'policy/v1',
    kind: 'PodDisruptionBudget',
    metadata: { name: 'guarded' },
    spec: { minAvailable: 1, selector: { matchLabels: { app: 'guarded' } } },
  });
  // The real disruption controller computes the budget: 1 healthy of 1 needed, none to spare.
  await waitFor('the PDB blocks disruptions', async () => {
    const pdb = await kube.get<{
      metadata: { generation?: number };
      status?: { observedGeneration?: number; currentHealthy?: number; disruptionsAllowed?: number };
    }>(pdbPath(ns, 'guarded'));
    const s = pdb?.status;
    return s && s.observedGeneration === pdb.metadata.generation && s.currentHealthy === 1 && s.disruptionsAllowed === 0
      ? true
      : undefined;
  });
  await createMigration(kube, ns, 'guarded', {
    claimName: 'data-guarded-0',
    targetStorageClassName: 'fast',
    preSync: false,
    cutover: 'Evict',
  });
  const held = await waitFor('the eviction refused by the PDB', async () => {
    const m = await migrationOf(kube, ns, 'guarded');
    return m?.status?.phase === 'WaitingForCutover' && /refused .*PodDisruptionBudget/.test(m.status.message ?? '')
      ? m
      : undefined;
  });
  t.match(
    held.status?.message,
    /eviction of guarded-0 refused for now by a PodDisruptionBudget/,
    'the message says the PDB refused',
  );
  // A few more rounds: the pod must still be the same one, and the migration must not move.
  await new Promise((resolve) => setTimeout(resolve, 3000));
  const still = await kube.get<V1Pod>(paths.pods(ns, 'guarded-0'));
  t.equal(still?.metadata?.uid, podUid, 'the pod was not evicted');
  t.notOk(still?.metadata?.deletionTimestamp, 'nor is it terminating');
  t.equal((await migrationOf(kube, ns, 'guarded'))?.status?.phase, 'WaitingForCutover', 'the migration still waits');

  await kube.patch(pdbPath(ns, 'guarded'), { spec: { minAvailable: null, maxUnavailable: 1 } });
  const m = await waitForPhase(kube, ns, 'guarded', ['Succeeded']);
  const pod = await newPodReady(ns, 'guarded-0', podUid);
  t.notOk(
    (pod.spec?.schedulingGates ?? []).some((g) => g.name === SCHEDULING_GATE),
    'the recreated pod runs, its gate lifted',
  );
  const { pv, tree } = await targetTree(ns, 'data-guarded-0');
  t.equal(pv.spec?.storageClassName, 'fast', 'on the target class');
  t.same(Object.fromEntries(tree), Object.fromEntries(before), 'identical data and metadata');
  t.ok((m.status?.downtimeSeconds ?? -1) >= 0, `downtime recorded: ${m.status?.downtimeSeconds} s`);
  const events = (
    await kube.list<{ reason?: string }>(paths.events(ns), {
      fieldSelector: 'involvedObject.name=guarded,involvedObject.kind=VolumeMigration',
    })
  ).items.map((e) => e.reason);
  t.ok(events.includes('Evicting'), 'an Evicting event once the PDB allowed it');
  await nothingOfPvshiftLeft(kube, ns);
});

t.test('removing the annotation before cutover aborts the migration made from it', async (t) => {
  const ns = await freshNamespace(kube);
  const { pv, before, podUid } = await appWithData(ns, 'withdrawn');
  await annotateClaim(kube, ns, 'data-withdrawn-0', 'fast');
  const waiting = await waitForPhase(kube, ns, 'data-withdrawn-0', ['WaitingForCutover']);
  t.same(
    waiting.status?.copies?.map((c) => c.pass),
    ['presync'],
    'pre-synced while the app ran',
  );
  const stagingName = `pvshift-${waiting.metadata.uid}-target`;
  t.ok(await kube.get(paths.claims(ns, stagingName)), 'the staging claim exists');
  t.equal(
    (await kube.get<V1PersistentVolume>(paths.volumes(pv.metadata?.name)))?.spec?.persistentVolumeReclaimPolicy,
    'Retain',
    'the source is Retain meanwhile',
  );

  await kube.patch(paths.claims(ns, 'data-withdrawn-0'), {
    metadata: { annotations: { [ANNOTATION_TARGET_CLASS]: null } },
  });
  const m = await waitForPhase(kube, ns, 'data-withdrawn-0', ['Aborted']);
  t.equal(m.spec.abort, true, 'the migration was told to abort');
  await waitFor('the source policy back to Delete', async () => {
    const current = await kube.get<V1PersistentVolume>(paths.volumes(pv.metadata?.name));
    return current?.spec?.persistentVolumeReclaimPolicy === 'Delete' &&
      !current.metadata?.annotations?.['pvshift.io/original-reclaim-policy']
      ? true
      : undefined;
  });
  t.pass("the source reclaim policy is the user's again");
  await waitForGone(kube, paths.claims(ns, stagingName));
  t.pass('the staging claim is gone');
  await nothingOfPvshiftLeft(kube, ns);
  t.pass('no copy pod, no pvshift claim, namespace label removed');
  const claim = await kube.get<V1PersistentVolumeClaim>(paths.claims(ns, 'data-withdrawn-0'));
  t.equal(claim?.spec?.volumeName, pv.metadata?.name, 'the claim is on its volume');
  t.equal(claim?.spec?.storageClassName, 'standard', 'and its class');
  t.equal((await kube.get<V1Pod>(paths.pods(ns, 'withdrawn-0')))?.metadata?.uid, podUid, 'the app was never touched');
  t.same(
    Object.fromEntries(snapshotTree(pv.spec!.hostPath!.path)),
    Object.fromEntries(before),
    'its data is as it was',
  );
});

t.test('sourceRetention: DeleteAfterVerify hands the old volume back to its provisioner; Keep keeps it', async (t) => {
  const ns = await freshNamespace(kube);
  const apps = { drop: await appWithData(ns, 'drop'), keep: await appWithData(ns, 'keep') };
  await createMigration(kube, ns, 'drop', {
    claimName: 'data-drop-0',
    targetStorageClassName: 'fast',
    preSync: false,
    sourceRetention: 'DeleteAfterVerify',
    verify: 'checksum',
  });
  await createMigration(kube, ns, 'keep', { claimName: 'data-keep-0', targetStorageClassName: 'fast', preSync: false });
  await waitForPhase(kube, ns, 'drop', ['WaitingForCutover']);
  await waitForPhase(kube, ns, 'keep', ['WaitingForCutover']);
  await kube.delete(paths.pods(ns, 'drop-0'));
  await kube.delete(paths.pods(ns, 'keep-0'));
  const drop = await waitForPhase(kube, ns, 'drop', ['Succeeded']);
  await waitForPhase(kube, ns, 'keep', ['Succeeded']);
  t.ok(
    drop.status?.copies?.some((c) => c.pass === 'final' && c.verified !== 'none'),
    `the final copy verified (${drop.status?.copies?.map((c) => c.verified).join(',')})`,
  );
  for (const name of ['drop', 'keep'] as const) {
    await newPodReady(ns, `${name}-0`, apps[name].podUid);
    const { tree } = await targetTree(ns, `data-${name}-0`);
    t.same(Object.fromEntries(tree), Object.fromEntries(apps[name].before), `${name}: identical data on the target`);
  }

  const oldDrop = apps.drop.pv;
  await waitForGone(kube, paths.volumes(oldDrop.metadata?.name), 60_000);
  t.pass('DeleteAfterVerify: the old volume is deleted by its provisioner');
  await waitFor('its directory removed', () =>
    Promise.resolve(fs.existsSync(oldDrop.spec!.hostPath!.path) ? undefined : true),
  );
  t.pass('and its directory with it');

  const oldKeep = await kube.get<V1PersistentVolume>(paths.volumes(apps.keep.pv.metadata?.name));
  t.equal(oldKeep?.spec?.persistentVolumeReclaimPolicy, 'Retain', 'Keep: the old volume stays Retain');
  t.equal(oldKeep?.status?.phase, 'Released', 'and Released');
  t.same(
    Object.fromEntries(snapshotTree(apps.keep.pv.spec!.hostPath!.path)),
    Object.fromEntries(apps.keep.before),
    'with its data',
  );
  await nothingOfPvshiftLeft(kube, ns);
});

t.test('two controller replicas: one leads, and the other takes over when it is killed', async (t) => {
  const identityOf = (c: PvshiftProcess) => `_${c.child.pid}`;
  const holder = async (): Promise<Lease | undefined> => kube.get<Lease>(paths.leases(PVSHIFT_NAMESPACE, LEASE_NAME));
  const lease = await waitFor('a Lease holder', async () =>
    (await holder())?.spec?.holderIdentity ? holder() : undefined,
  );
  const holders = controllers.filter((c) => lease?.spec?.holderIdentity?.endsWith(identityOf(c)));
  t.equal(
    holders.length,
    1,
    `exactly one replica holds ${PVSHIFT_NAMESPACE}/${LEASE_NAME} (${lease?.spec?.holderIdentity})`,
  );
  const leader = holders[0]!;
  const standby = controllers.find((c) => c !== leader)!;

  const ns = await freshNamespace(kube);
  const first = await appWithData(ns, 'one');
  await createMigration(kube, ns, 'one', { claimName: 'data-one-0', targetStorageClassName: 'fast', preSync: false });
  await waitForPhase(kube, ns, 'one', ['WaitingForCutover']);
  await kube.delete(paths.pods(ns, 'one-0'));
  await waitForPhase(kube, ns, 'one', ['Succeeded']);
  await newPodReady(ns, 'one-0', first.podUid);
  t.same(
    Object.fromEntries((await targetTree(ns, 'data-one-0')).tree),
    Object.fromEntries(first.before),
    'the first migration succeeded under the leader',
  );
  t.equal((await holder())?.spec?.holderIdentity, lease?.spec?.holderIdentity, 'the leader kept the Lease throughout');

  const killedAt = Date.now();
  await leader.stop('SIGKILL');
  const taken = await waitFor(
    'the standby takes the Lease',
    async () => {
      const current = await holder();
      return current?.spec?.holderIdentity?.endsWith(identityOf(standby)) ? current : undefined;
    },
    30_000,
    200,
  );
  const seconds = (Date.now() - killedAt) / 1000;
  t.ok(
    seconds <= LEASE_SECONDS + 4,
    `the standby leads ${seconds.toFixed(1)} s after the kill (lease ${LEASE_SECONDS} s)`,
  );
  t.ok((taken.spec?.leaseTransitions ?? 0) >= 1, `the Lease counts the transition (${taken.spec?.leaseTransitions})`);

  const second = await appWithData(ns, 'two');
  await createMigration(kube, ns, 'two', { claimName: 'data-two-0', targetStorageClassName: 'fast', preSync: false });
  await waitForPhase(kube, ns, 'two', ['WaitingForCutover']);
  await kube.delete(paths.pods(ns, 'two-0'));
  await waitForPhase(kube, ns, 'two', ['Succeeded']);
  await newPodReady(ns, 'two-0', second.podUid);
  t.same(
    Object.fromEntries((await targetTree(ns, 'data-two-0')).tree),
    Object.fromEntries(second.before),
    'the new leader finished a second migration',
  );
  await nothingOfPvshiftLeft(kube, ns);
});
