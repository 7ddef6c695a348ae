// What must not go wrong: bad input is refused with a clear reason and changes
// nothing; an abort mid-copy and a copy that fails for good both roll back to
// the original volume, with the application running on its data.
import t, { type Test } from 'tap';
import type { V1PersistentVolume, V1PersistentVolumeClaim, V1Pod } from '@kubernetes/client-node';
import { paths } from '../../src/kube.js';
import { ANNOTATION_RETRY, LABEL_MANAGED_BY, SCHEDULING_GATE } from '../../src/names.js';
import type { VolumeMigration } from '../../src/volume-migration.js';
import {
  clusterFor,
  freshNamespace,
  volumeOf,
  waitFor,
  waitForClaimBound,
  waitForPodReady,
} from '../helpers/cluster.js';
import {
  createMigration,
  eventReasons,
  eventReasonsWith,
  fillVolume,
  migrationOf,
  snapshotTree,
  waitForPhase,
} from '../helpers/migration.js';
import { installPvshift } from '../helpers/pvshift.js';
import { appWithData as appWithDataIn, claimSpec, recreateApp as recreateAppIn } from '../helpers/app.js';

// A copy image whose runner always fails for good, as when the target cannot hold the data.
const BROKEN_IMAGE = 'pvshift:broken';
const cluster = await clusterFor(t, {
  images: {
    [BROKEN_IMAGE]: [
      '/bin/sh',
      '-c',
      'echo \'{"type":"summary","ok":false,"message":"no space left on device"}\'; exit 76',
    ],
  },
});
const { kube } = cluster;
const installation = await installPvshift(cluster);
// 4 MiB/s: slow enough that a 48 MiB copy can be watched and aborted in flight.
let pvshift = await installation.start(['--copy-bandwidth-limit=4096']);
t.teardown(() => pvshift.stop());
const appWithData = (ns: string, name: string, megabytes: number) => appWithDataIn(kube, ns, name, megabytes);
const recreateApp = (ns: string, claimName: string) => recreateAppIn(kube, ns, claimName);

async function assertRolledBack(
  t: Test,
  ns: string,
  name: string,
  pv: V1PersistentVolume,
  before: ReturnType<typeof snapshotTree>,
): Promise<void> {
  const claim = await waitForClaimBound(kube, ns, name);
  t.equal(claim.spec?.volumeName, pv.metadata?.name, 'the claim is back on its original volume');
  t.equal(claim.spec?.storageClassName, 'standard', 'with its original class');
  t.notOk(claim.spec?.dataSourceRef, 'and no data source');
  const pod = await waitForPodReady(kube, ns, `${name}-app`);
  t.notOk(
    (pod.spec?.schedulingGates ?? []).some((g) => g.name === SCHEDULING_GATE),
    'the app pod is released',
  );
  t.same(
    Object.fromEntries(snapshotTree(pv.spec!.hostPath!.path)),
    Object.fromEntries(before),
    'its data is untouched',
  );
  const restored = await waitFor('reclaim policy restored', async () => {
    const current = await kube.get<V1PersistentVolume>(paths.volumes(pv.metadata?.name));
    return current?.spec?.persistentVolumeReclaimPolicy === 'Delete' ? current : undefined;
  });
  t.equal(restored.status?.phase, 'Bound');
  await waitFor('nothing of pvshift left', async () => {
    const claims = (
      await kube.list<V1PersistentVolumeClaim>(paths.claims(ns), { labelSelector: `${LABEL_MANAGED_BY}=pvshift` })
    ).items;
    const pods = (await kube.list<V1Pod>(paths.pods(ns), { labelSelector: `${LABEL_MANAGED_BY}=pvshift` })).items;
    return claims.length + pods.length === 0 ? true : undefined;
  });
  t.pass('no staging, helper claim or copy pod left');
}

t.test('bad input is refused with a reason, and changes nothing', async (t) => {
  const ns = await freshNamespace(kube);
  await kube.create(paths.claims(ns), { metadata: { name: 'data' }, spec: claimSpec() });
  await kube.create(paths.claims(ns), { metadata: { name: 'raw' }, spec: claimSpec({ volumeMode: 'Block' }) });
  await kube.create(paths.claims(ns), {
    metadata: { name: 'single' },
    spec: claimSpec({ accessModes: ['ReadWriteOncePod'] }),
  });
  await kube.create(paths.claims(ns), { metadata: { name: 'unbound' }, spec: claimSpec({ storageClassName: 'fast' }) });
  const pv = await volumeOf(kube, ns, 'data');
  fillVolume(pv.spec!.hostPath!.path, 24);
  await waitForClaimBound(kube, ns, 'raw');
  await waitForClaimBound(kube, ns, 'single');

  const cases: { name: string; spec: VolumeMigration['spec']; reason: string; message: RegExp }[] = [
    {
      name: 'unknown-class',
      spec: { claimName: 'data', targetStorageClassName: 'platinum' },
      reason: 'StorageClassNotFound',
      message: /StorageClass platinum does not exist/,
    },
    {
      name: 'too-small',
      spec: { claimName: 'data', targetStorageClassName: 'fast', targetSize: '16Mi' },
      reason: 'TargetTooSmall',
      message: /holds 24\.\d MiB; with 10% headroom the target needs .* but targetSize is 16\.0 MiB/,
    },
    {
      name: 'block',
      spec: { claimName: 'raw', targetStorageClassName: 'fast' },
      reason: 'BlockVolumeUnsupported',
      message: /volumeMode Block/,
    },
    {
      name: 'rwop-presync',
      spec: { claimName: 'single', targetStorageClassName: 'fast', preSync: true },
      reason: 'PreSyncUnsupported',
      message: /ReadWriteOncePod/,
    },
    {
      name: 'not-bound',
      spec: { claimName: 'unbound', targetStorageClassName: 'standard' },
      reason: 'ClaimNotBound',
      message: /is Pending, not Bound/,
    },
    {
      name: 'no-claim',
      spec: { claimName: 'ghost', targetStorageClassName: 'standard' },
      reason: 'ClaimNotFound',
      message: /does not exist/,
    },
  ];
  for (const c of cases) {
    await createMigration(kube, ns, c.name, c.spec);
    const m = await waitForPhase(kube, ns, c.name, ['Failed']);
    const validated = m.status?.conditions?.find((x) => x.type === 'Validated');
    t.equal(validated?.status, 'False', `${c.name}: Validated is False`);
    t.equal(validated?.reason, c.reason, `${c.name}: reason ${c.reason}`);
    t.match(m.status?.message, c.message, `${c.name}: the message says why`);
    // The event follows the status write (so a conflicting write never leaves a duplicate event).
    const reasons = await eventReasonsWith(kube, ns, c.name, 'VolumeMigration', [c.reason]);
    t.ok(reasons.includes(c.reason), `${c.name}: a Warning event says so`);
  }
  t.ok(
    (await eventReasonsWith(kube, ns, 'data', 'PersistentVolumeClaim', ['StorageClassNotFound'])).includes(
      'StorageClassNotFound',
    ),
    'the claim carries the event too',
  );

  // A second migration of a claim already being migrated.
  await createMigration(kube, ns, 'first', { claimName: 'data', targetStorageClassName: 'fast' });
  await waitForPhase(kube, ns, 'first', ['WaitingForCutover']);
  await createMigration(kube, ns, 'second', { claimName: 'data', targetStorageClassName: 'expandable' });
  const second = await waitForPhase(kube, ns, 'second', ['Failed']);
  t.match(
    second.status?.message,
    /already being migrated by VolumeMigration first/,
    'the second migration names the first',
  );
  await kube.patch(paths.migrations(ns, 'first'), { spec: { abort: true } });
  await waitForPhase(kube, ns, 'first', ['Aborted']);

  // Nothing of the user's changed.
  await waitFor('the source policy back to Delete', async () => {
    const current = await kube.get<V1PersistentVolume>(paths.volumes(pv.metadata?.name));
    return current?.spec?.persistentVolumeReclaimPolicy === 'Delete' ? true : undefined;
  });
  const claim = await kube.get<V1PersistentVolumeClaim>(paths.claims(ns, 'data'));
  t.equal(claim?.spec?.volumeName, pv.metadata?.name, 'the claim is on its volume');
  t.equal(claim?.spec?.storageClassName, 'standard');
  t.equal((await kube.get<V1PersistentVolumeClaim>(paths.claims(ns, 'unbound')))?.status?.phase, 'Pending');
  await waitFor('no pvshift claims left', async () => {
    const left = (
      await kube.list<V1PersistentVolumeClaim>(paths.claims(ns), { labelSelector: `${LABEL_MANAGED_BY}=pvshift` })
    ).items;
    return left.length === 0 ? true : undefined;
  });
  t.pass('staging claims of the refused migrations are gone');
});

t.test('abort during the final copy rolls back to the original volume', async (t) => {
  const ns = await freshNamespace(kube);
  const { pv, before } = await appWithData(ns, 'db', 48);
  await createMigration(kube, ns, 'db', { claimName: 'db', targetStorageClassName: 'fast', preSync: false });
  await waitForPhase(kube, ns, 'db', ['WaitingForCutover']);
  await recreateApp(ns, 'db');
  await waitForPhase(kube, ns, 'db', ['Populating']);
  const moving = await waitFor(
    'progress reported during the copy',
    async () => {
      const m = await kube.get<VolumeMigration>(paths.migrations(ns, 'db'));
      const p = m?.status?.progress;
      return p && p.bytesTotal > 0 && p.bytesDone > 0 && p.bytesDone < p.bytesTotal ? m : undefined;
    },
    30_000,
  );
  t.ok(moving.status?.progressText, `progress shows: ${moving.status?.progressText}`);
  const pod = await kube.get<V1Pod>(paths.pods(ns, 'db-app'));
  t.ok(
    (pod?.spec?.schedulingGates ?? []).some((g) => g.name === SCHEDULING_GATE),
    'the app waits, gated, during the copy',
  );
  await kube.patch(paths.migrations(ns, 'db'), { spec: { abort: true } });
  const m = await waitForPhase(kube, ns, 'db', ['RolledBack']);
  t.equal(m.status?.conditions?.find((c) => c.type === 'Degraded')?.status, 'True', 'Degraded says it did not happen');
  const reasons = await eventReasonsWith(kube, ns, 'db', 'VolumeMigration', ['RollingBack', 'RolledBack']);
  t.ok(reasons.includes('RollingBack') && reasons.includes('RolledBack'), 'events tell the rollback');
  await assertRolledBack(t, ns, 'db', pv, before);
});

t.test('a copy that fails for good rolls back, and says why', async (t) => {
  await pvshift.stop();
  pvshift = await installation.start([`--copy-image=${BROKEN_IMAGE}`]);
  const ns = await freshNamespace(kube);
  const { pv, before } = await appWithData(ns, 'queue', 2);
  await createMigration(kube, ns, 'queue', { claimName: 'queue', targetStorageClassName: 'fast', preSync: false });
  await waitForPhase(kube, ns, 'queue', ['WaitingForCutover']);
  await recreateApp(ns, 'queue');
  const m = await waitForPhase(kube, ns, 'queue', ['RolledBack']);
  t.match(m.status?.message ?? '', /./, 'a message');
  const reasons = await eventReasonsWith(kube, ns, 'queue', 'VolumeMigration', ['CopyFailed']);
  t.ok(reasons.includes('CopyFailed'), 'CopyFailed event');
  const warning = (
    await kube.list<{ reason?: string; message?: string }>(paths.events(ns), {
      fieldSelector: 'involvedObject.name=queue,reason=CopyFailed',
    })
  ).items[0];
  t.match(
    warning?.message,
    /exit 76\): no space left on device; rolling back/,
    "the event carries the runner's own message",
  );
  await assertRolledBack(t, ns, 'queue', pv, before);
});

t.test(
  'a write the API server refuses for good stops the migration: an Event, Degraded, no retry until the user asks',
  async (t) => {
    const ns = await freshNamespace(kube);
    await kube.create(paths.claims(ns), { metadata: { name: 'data' }, spec: claimSpec() });
    const pv = await volumeOf(kube, ns, 'data');
    const pvName = pv.metadata!.name!;
    // A cluster policy (as Kyverno or Gatekeeper would hold) that forbids changing this
    // volume's reclaim policy: pvshift's first write, retaining the source, is refused with 403.
    const policy = `no-retain-${ns}`;
    await kube.create('/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies', {
      metadata: { name: policy },
      spec: {
        failurePolicy: 'Fail',
        matchConstraints: {
          resourceRules: [
            { apiGroups: [''], apiVersions: ['v1'], operations: ['UPDATE'], resources: ['persistentvolumes'] },
          ],
        },
        validations: [
          {
            expression: `object.metadata.name != '${pvName}' || object.spec.persistentVolumeReclaimPolicy == oldObject.spec.persistentVolumeReclaimPolicy`,
            message: 'reclaim policies are managed by the platform team',
            reason: 'Forbidden',
          },
        ],
      },
    });
    const bindingPath = '/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings';
    await kube.create(bindingPath, {
      metadata: { name: policy },
      spec: { policyName: policy, validationActions: ['Deny'] },
    });
    t.teardown(async () => {
      await kube.delete(`${bindingPath}/${policy}`);
      await kube.delete(`/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies/${policy}`);
    });
    // The policy is in force once a dry run of the change is refused.
    await waitFor('the policy in force', async () => {
      try {
        const retain = { spec: { persistentVolumeReclaimPolicy: 'Retain' } };
        await kube.patch(paths.volumes(pvName), retain, 'merge', { dryRun: 'All' });
        return undefined;
      } catch {
        return true;
      }
    });

    await createMigration(kube, ns, 'stopped', { claimName: 'data', targetStorageClassName: 'fast', preSync: false });
    const degraded = await waitFor('Degraded', async () => {
      const m = await migrationOf(kube, ns, 'stopped');
      return m?.status?.conditions?.find((c) => c.type === 'Degraded' && c.status === 'True') ? m : undefined;
    });
    const condition = degraded.status?.conditions?.find((c) => c.type === 'Degraded');
    t.equal(condition?.reason, 'Forbidden', 'Degraded, with the reason of the refusal');
    t.match(condition?.message, /reclaim policies are managed by the platform team/, "and the API server's message");
    t.match(
      degraded.status?.message,
      /stopped: .*fix the cause, then retry: kubectl annotate volumemigrations stopped pvshift\.io\/retry=/,
      'the message says how to retry',
    );
    t.equal(degraded.status?.phase ?? 'Pending', 'Pending', 'the phase stays where it was');
    const reasons = await eventReasonsWith(kube, ns, 'stopped', 'VolumeMigration', ['Forbidden']);
    t.ok(reasons.includes('Forbidden'), 'a Warning event with the reason');

    // Not retried: over more than one resync (10 s), neither the migration nor its events move.
    await new Promise((resolve) => setTimeout(resolve, 12_000));
    const later = await migrationOf(kube, ns, 'stopped');
    t.equal(later?.metadata?.resourceVersion, degraded.metadata?.resourceVersion, 'the migration is not written again');
    t.equal(
      (await eventReasons(kube, ns, 'stopped', 'VolumeMigration')).filter((r) => r === 'Forbidden').length,
      1,
      'one event, not one per retry',
    );
    t.equal(
      (await kube.get<V1PersistentVolume>(paths.volumes(pvName)))?.spec?.persistentVolumeReclaimPolicy,
      'Delete',
      'the volume is untouched',
    );

    // The cause fixed and the retry asked for: the migration goes on, and Degraded clears.
    await kube.delete(`${bindingPath}/${policy}`);
    await waitFor('the policy lifted', async () => {
      try {
        await kube.patch(paths.volumes(pvName), { spec: { persistentVolumeReclaimPolicy: 'Retain' } }, 'merge', {
          dryRun: 'All',
        });
        return true;
      } catch {
        return undefined;
      }
    });
    await kube.patch(paths.migrations(ns, 'stopped'), { metadata: { annotations: { [ANNOTATION_RETRY]: '1' } } });
    const moving = await waitForPhase(kube, ns, 'stopped', ['WaitingForCutover']);
    t.equal(moving.status?.conditions?.find((c) => c.type === 'Degraded')?.status, 'False', 'Degraded is False again');
    t.equal(
      (await kube.get<V1PersistentVolume>(paths.volumes(pvName)))?.spec?.persistentVolumeReclaimPolicy,
      'Retain',
      'the source is retained now',
    );
    await kube.patch(paths.migrations(ns, 'stopped'), { spec: { abort: true } });
    await waitForPhase(kube, ns, 'stopped', ['Aborted']);
  },
);
