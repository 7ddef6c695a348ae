// Invariants 3 and 4 under fire: the controller killed (SIGKILL) after every
// step it takes, and the webhook down during cutover. Each time the migration
// finishes with identical data, nothing on the wrong class, nothing left behind.
import t, { type Test } from 'tap';
import type { V1PersistentVolume, V1PersistentVolumeClaim, V1Pod } from '@kubernetes/client-node';
import { paths } from '../../src/kube.js';
import { LABEL_MANAGED_BY, LABEL_NAMESPACE_ACTIVE } from '../../src/names.js';
import type { Phase, VolumeMigration } from '../../src/volume-migration.js';
import { clusterFor, freshNamespace, statefulSet, volumeOf, waitFor, waitForPodReady } from '../helpers/cluster.js';
import { annotateClaim, fillVolume, migrationOf, snapshotTree, waitForPhase } from '../helpers/migration.js';
import { installPvshift, type PvshiftProcess } from '../helpers/pvshift.js';

const cluster = await clusterFor(t);
const { kube } = cluster;
const installation = await installPvshift(cluster);

async function appReady(
  ns: string,
  name: string,
): Promise<{ pv: V1PersistentVolume; before: ReturnType<typeof snapshotTree> }> {
  await kube.create(paths.statefulSets(ns), statefulSet(name));
  await waitForPodReady(kube, ns, `${name}-0`);
  const pv = await volumeOf(kube, ns, `data-${name}-0`);
  fillVolume(pv.spec!.hostPath!.path, 4);
  return { pv, before: snapshotTree(pv.spec!.hostPath!.path) };
}

async function assertDone(
  t: Test,
  ns: string,
  name: string,
  pv: V1PersistentVolume,
  before: ReturnType<typeof snapshotTree>,
): Promise<void> {
  await waitForPodReady(kube, ns, `${name}-0`);
  const target = await volumeOf(kube, ns, `data-${name}-0`);
  t.equal(target.spec?.storageClassName, 'fast', 'the claim is on the target class');
  t.same(
    Object.fromEntries(snapshotTree(target.spec!.hostPath!.path)),
    Object.fromEntries(before),
    'identical data and metadata',
  );
  const old = await kube.get<V1PersistentVolume>(paths.volumes(pv.metadata?.name));
  t.equal(old?.spec?.persistentVolumeReclaimPolicy, 'Retain', 'the old volume is kept');
  t.same(Object.fromEntries(snapshotTree(pv.spec!.hostPath!.path)), Object.fromEntries(before), 'with its data');
  await waitFor('nothing left behind', async () => {
    const claims = (
      await kube.list<V1PersistentVolumeClaim>(paths.claims(ns), { labelSelector: `${LABEL_MANAGED_BY}=pvshift` })
    ).items;
    const pods = (await kube.list<V1Pod>(paths.pods(ns), { labelSelector: `${LABEL_MANAGED_BY}=pvshift` })).items;
    const namespace = await kube.get<{ metadata: { labels?: Record<string, string> } }>(paths.namespaces(ns));
    return claims.length + pods.length === 0 && !namespace?.metadata.labels?.[LABEL_NAMESPACE_ACTIVE]
      ? true
      : undefined;
  });
  t.pass('no staging or helper claim, no copy pod, namespace label removed');
}

t.test('the controller SIGKILLed after every step still finishes the migration', async (t) => {
  const webhook = await installation.start([], { mode: 'webhook' });
  t.teardown(() => webhook.stop());
  const ns = await freshNamespace(kube);
  const { pv, before } = await appReady(ns, 'crash');
  await annotateClaim(kube, ns, 'data-crash-0', 'fast');

  const phasesSeen = new Set<Phase>();
  let crashes = 0;
  // Runs controllers that each die after one step, until `until` holds.
  const crashLoop = async (until: (m: VolumeMigration | undefined) => boolean): Promise<void> => {
    for (let i = 0; i < 80; i++) {
      const m = await migrationOf(kube, ns, 'data-crash-0');
      phasesSeen.add(m?.status?.phase ?? 'Pending');
      if (until(m)) return;
      const controller: PvshiftProcess = await installation.start(['--leader-elect=false'], {
        mode: 'controller',
        env: { PVSHIFT_FAULT_CRASH_AFTER_STEPS: '1' },
        noWait: true,
      });
      const died = await Promise.race([
        controller.exited.then(() => true),
        new Promise<boolean>((r) => setTimeout(() => r(false), 20_000)),
      ]);
      if (died && controller.child.signalCode === 'SIGKILL') crashes += 1;
      else await controller.stop('SIGKILL');
    }
    throw new Error('the migration did not progress through 80 controller lives');
  };
  await crashLoop((m) => m?.status?.phase === 'WaitingForCutover');
  await kube.delete(paths.pods(ns, 'crash-0'));
  await crashLoop((m) => m?.status?.phase === 'Succeeded' && !!m.metadata.finalizers);
  // The last steps (gates, label) happen in Succeeded: one more life without faults tidies up.
  const finisher = await installation.start(['--leader-elect=false'], { mode: 'controller' });
  t.teardown(() => finisher.stop());
  t.ok(crashes >= 15, `the controller was killed ${crashes} times, once after each step`);
  t.comment(`phases seen between crashes: ${[...phasesSeen].join(', ')}`);
  for (const phase of ['PreSyncing', 'WaitingForCutover', 'CuttingOver', 'Populating', 'Binding'] as Phase[])
    t.ok(phasesSeen.has(phase), `killed during ${phase}`);
  await waitForPhase(kube, ns, 'data-crash-0', ['Succeeded']);
  await assertDone(t, ns, 'crash', pv, before);
  await finisher.stop();
  await webhook.stop();
});

t.test(
  'with the webhook down during cutover nothing is created on the wrong class; it finishes once back',
  async (t) => {
    const ns = await freshNamespace(kube);
    const { pv, before } = await appReady(ns, 'outage');
    let webhook = await installation.start([], { mode: 'webhook' });
    let controller = await installation.start(['--leader-elect=false'], { mode: 'controller' });
    await annotateClaim(kube, ns, 'data-outage-0', 'fast');
    await waitForPhase(kube, ns, 'data-outage-0', ['WaitingForCutover']);
    // The pod is recreated and gated while the webhook runs; then the webhook goes down
    // and the controller starts the cutover without it.
    await controller.stop();
    await kube.delete(paths.pods(ns, 'outage-0'));
    await waitFor('the recreated pod gated', async () => {
      const pod = await kube.get<V1Pod>(paths.pods(ns, 'outage-0'));
      return pod && !pod.metadata?.deletionTimestamp && (pod.spec?.schedulingGates ?? []).length > 0 ? pod : undefined;
    });
    await webhook.stop();
    controller = await installation.start(['--leader-elect=false'], { mode: 'controller' });
    await waitForPhase(kube, ns, 'data-outage-0', ['CuttingOver']);
    await waitFor('the original claim deleted', async () => {
      const claim = await kube.get<V1PersistentVolumeClaim>(paths.claims(ns, 'data-outage-0'));
      return !claim ? true : undefined;
    });
    // For a while, nobody (neither the StatefulSet controller nor pvshift) can create the claim.
    for (let i = 0; i < 16; i++) {
      const claim = await kube.get<V1PersistentVolumeClaim>(paths.claims(ns, 'data-outage-0'));
      t.notOk(claim, `no claim created without the webhook (${i / 2} s)`);
      if (claim) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    const stuck = await migrationOf(kube, ns, 'data-outage-0');
    t.equal(stuck?.status?.phase, 'CuttingOver', 'the migration waits in cutover');
    t.match(
      stuck?.status?.message,
      /retrying: .*failed calling webhook "persistentvolumeclaims\.pvshift\.io"/,
      'the migration says why it waits: the claim webhook is down',
    );
    const refused = (
      await kube.list<{ reason?: string; message?: string }>(paths.events(ns), {
        fieldSelector: 'involvedObject.name=outage',
      })
    ).items.filter((e) => e.reason === 'FailedCreate');
    t.comment(`StatefulSet controller refusals seen: ${refused.length}`);
    webhook = await installation.start([], { mode: 'webhook' });
    await waitForPhase(kube, ns, 'data-outage-0', ['Succeeded']);
    await assertDone(t, ns, 'outage', pv, before);
    await controller.stop();
    await webhook.stop();
  },
);

t.test(
  'a pod recreated while the webhook is down runs on the old volume; pvshift says the cutover was missed, the next recreate makes it',
  async (t) => {
    const ns = await freshNamespace(kube);
    const { pv, before } = await appReady(ns, 'missed');
    let webhook = await installation.start([], { mode: 'webhook' });
    const controller = await installation.start(['--leader-elect=false'], { mode: 'controller' });
    t.teardown(() => controller.stop());
    await annotateClaim(kube, ns, 'data-missed-0', 'fast');
    await waitForPhase(kube, ns, 'data-missed-0', ['WaitingForCutover']);

    // The pod webhook's failurePolicy is Ignore: with pvshift unreachable, the
    // StatefulSet's new pod is admitted as it is, with no gate.
    await webhook.stop();
    const old = await kube.get<V1Pod>(paths.pods(ns, 'missed-0'));
    await kube.delete(paths.pods(ns, 'missed-0'));
    const recreated = await waitFor('missed-0 recreated and Ready', async () => {
      const pod = await waitForPodReady(kube, ns, 'missed-0');
      return pod.metadata?.uid !== old?.metadata?.uid ? pod : undefined;
    });
    t.same(recreated.spec?.schedulingGates ?? [], [], 'the new pod got no gate');
    t.equal(
      (await volumeOf(kube, ns, 'data-missed-0')).metadata?.name,
      pv.metadata?.name,
      'and runs on the old volume',
    );

    const told = await waitFor('the migration to say the cutover was missed', async () => {
      const m = await migrationOf(kube, ns, 'data-missed-0');
      return /started on the old volume/.test(m?.status?.message ?? '') ? m : undefined;
    });
    t.equal(told.status?.phase, 'WaitingForCutover', 'still waiting for a cutover');
    t.match(
      told.status?.message,
      /pod missed-0 started on the old volume: .*without pvshift's scheduling gate.*recreate or evict it to cut over/,
      'the message names the pod and what to do',
    );
    // Reconciles repeat every few seconds; the warning is recorded once.
    await new Promise((r) => setTimeout(r, 12_000));
    const warnings = (
      await kube.list<{ reason?: string; type?: string; involvedObject?: { kind?: string } }>(paths.events(ns))
    ).items.filter((e) => e.reason === 'GateMissed' && e.involvedObject?.kind === 'VolumeMigration');
    t.equal(warnings.length, 1, 'one GateMissed event on the migration, not one per pass');
    t.equal(warnings[0]?.type, 'Warning');

    // pvshift back: the next recreate is gated and cut over.
    webhook = await installation.start([], { mode: 'webhook' });
    t.teardown(() => webhook.stop());
    await kube.delete(paths.pods(ns, 'missed-0'));
    await waitForPhase(kube, ns, 'data-missed-0', ['Succeeded']);
    await assertDone(t, ns, 'missed', pv, before);
  },
);
