// The annotation shortcut on the real control plane: an annotation pvshift
// cannot act on is said once on the claim (and not retried), and annotating a
// claim again after its annotation was withdrawn starts a new migration.
import t from 'tap';
import type { CoreV1Event, V1PersistentVolumeClaim } from '@kubernetes/client-node';
import { paths } from '../../src/kube.js';
import { ANNOTATION_TARGET_CLASS, ANNOTATION_TARGET_SIZE } from '../../src/names.js';
import type { VolumeMigration } from '../../src/volume-migration.js';
import {
  clusterFor,
  freshNamespace,
  statefulSet,
  volumeOf,
  waitFor,
  waitForClaimBound,
  waitForPodReady,
} from '../helpers/cluster.js';
import { annotateClaim, fillVolume, migrationOf, snapshotTree, waitForPhase } from '../helpers/migration.js';
import { installPvshift } from '../helpers/pvshift.js';

const REASON = 'InvalidMigrationAnnotation';
/** The controller's resync period (src/services.ts): every claim's annotation is looked at again this often. */
const RESYNC_MS = 10_000;

const cluster = await clusterFor(t);
const { kube } = cluster;
const pvshift = await (await installPvshift(cluster)).start();
t.teardown(() => pvshift.stop());

async function refusals(ns: string, claimName: string): Promise<CoreV1Event[]> {
  const events = await kube.list<CoreV1Event>(paths.events(ns), {
    fieldSelector: `involvedObject.name=${claimName},involvedObject.kind=PersistentVolumeClaim`,
  });
  return events.items.filter((e) => e.reason === REASON);
}

async function boundClaim(ns: string, name: string): Promise<void> {
  await kube.create<V1PersistentVolumeClaim>(paths.claims(ns), {
    metadata: { name },
    spec: { accessModes: ['ReadWriteOnce'], storageClassName: 'standard', resources: { requests: { storage: '1Gi' } } },
  });
  await waitForClaimBound(kube, ns, name);
}

t.test(
  'an annotation pvshift cannot act on: one Warning event on the claim, no VolumeMigration, no retry loop',
  async (t) => {
    const ns = await freshNamespace(kube);
    await boundClaim(ns, 'data');
    await boundClaim(ns, 'logs');
    // A size that is no quantity (pvshift's own check), and a class name longer
    // than the CRD allows (253: the API server's 422, a check pvshift leaves to it).
    await annotateClaim(kube, ns, 'data', 'fast', { [ANNOTATION_TARGET_SIZE]: 'ten gigs' });
    await annotateClaim(kube, ns, 'logs', 'fast'.repeat(70));
    for (const claim of ['data', 'logs']) {
      await waitFor(
        `${REASON} on ${claim}`,
        async () => ((await refusals(ns, claim)).length > 0 ? true : undefined),
        30_000,
      );
    }
    // More claim events and two resyncs: each looks at the annotation again.
    for (let i = 0; i < 3; i++) {
      for (const claim of ['data', 'logs'])
        await kube.patch(paths.claims(ns, claim), { metadata: { annotations: { 'team.example/touched': String(i) } } });
    }
    await new Promise((resolve) => setTimeout(resolve, 2 * RESYNC_MS + 3000));

    const data = await refusals(ns, 'data');
    t.equal(data.length, 1, 'exactly one event for the unreadable size');
    t.equal(data[0]?.type, 'Warning');
    t.match(data[0]?.message, /target-size "ten gigs" is not a quantity/, `it says why: ${data[0]?.message}`);
    const logs = await refusals(ns, 'logs');
    t.equal(logs.length, 1, 'exactly one event for the class name the API server refused');
    t.equal(logs[0]?.type, 'Warning');
    t.match(
      logs[0]?.message,
      /refused by the API server: .*spec\.targetStorageClassName: Too long/,
      `with the server's message: ${logs[0]?.message}`,
    );
    t.same((await kube.list<VolumeMigration>(paths.migrations(ns))).items, [], 'no VolumeMigration');

    // A value pvshift can act on is acted on: the refusal was of that value, not of the claim.
    await annotateClaim(kube, ns, 'data', 'fast', { [ANNOTATION_TARGET_SIZE]: '2Gi' });
    const m = await waitFor('a VolumeMigration once the size is readable', () => migrationOf(kube, ns, 'data'), 30_000);
    t.equal(m.spec.targetSize, '2Gi', 'created with the corrected size');
  },
);

t.test('annotated again after the annotation was removed before cutover: a new migration runs', async (t) => {
  const ns = await freshNamespace(kube);
  await kube.create(paths.statefulSets(ns), statefulSet('cart'));
  const pod = await waitForPodReady(kube, ns, 'cart-0');
  const pv = await volumeOf(kube, ns, 'data-cart-0');
  fillVolume(pv.spec!.hostPath!.path, 2);
  const before = snapshotTree(pv.spec!.hostPath!.path);

  await annotateClaim(kube, ns, 'data-cart-0', 'fast');
  const first = await waitForPhase(kube, ns, 'data-cart-0', ['WaitingForCutover']);
  await kube.patch(paths.claims(ns, 'data-cart-0'), { metadata: { annotations: { [ANNOTATION_TARGET_CLASS]: null } } });
  const aborted = await waitForPhase(kube, ns, 'data-cart-0', ['Aborted']);
  t.equal(aborted.metadata.uid, first.metadata.uid, 'withdrawing the annotation aborted the migration');

  await annotateClaim(kube, ns, 'data-cart-0', 'fast');
  const again = await waitFor(
    'a new migration of the claim, past pre-sync',
    async () => {
      const m = await migrationOf(kube, ns, 'data-cart-0');
      return m &&
        m.metadata.uid !== first.metadata.uid &&
        ['WaitingForCutover', 'CuttingOver', 'Populating', 'Binding', 'Succeeded'].includes(m.status?.phase ?? '')
        ? m
        : undefined;
    },
    120_000,
  );
  t.not(again.metadata.uid, first.metadata.uid, 'the aborted record was replaced by a new migration');
  t.equal(again.spec.targetStorageClassName, 'fast', 'to the same class');
  t.same(
    again.status?.copies?.map((c) => c.pass),
    ['presync'],
    'which pre-synced',
  );

  await kube.delete(paths.pods(ns, 'cart-0'));
  await waitForPhase(kube, ns, 'data-cart-0', ['Succeeded']);
  await waitFor(
    'a new cart-0 Ready',
    async () => {
      const p = await waitForPodReady(kube, ns, 'cart-0');
      return p.metadata?.uid !== pod.metadata?.uid ? p : undefined;
    },
    120_000,
  );
  const target = await volumeOf(kube, ns, 'data-cart-0');
  t.equal(target.spec?.storageClassName, 'fast', 'the claim is on the target class');
  t.same(
    Object.fromEntries(snapshotTree(target.spec!.hostPath!.path)),
    Object.fromEntries(before),
    'with every byte and attribute',
  );
});
