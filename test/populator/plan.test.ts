// plan, the pure state machine: one World in, the one next Step out. Each case
// names the state it starts from and the step the migration must take next;
// the sequences walk a phase from its first step to the next phase.
import t, { type Test } from 'tap';
import { plan, validate, type Step } from '../../populator/plan.js';
import type { World } from '../../populator/world.js';
import { RUNNER_EXIT } from '../../src/runner-protocol.js';
import {
  ANNOTATION_BIND_NUDGED,
  ANNOTATION_MIGRATION,
  ANNOTATION_SYNC_PASS,
  ANNOTATION_SYNC_REQUEST,
  FINALIZER,
} from '../../src/names.js';
import {
  PHASES,
  phaseOf,
  type Phase,
  type VolumeMigration,
  type VolumeMigrationStatus,
} from '../../src/volume-migration.js';
import {
  CLAIM,
  HELPER,
  KEY,
  NAME,
  NOW,
  NS,
  ORIGINAL_UID,
  REPLACEMENT_UID,
  SETTINGS,
  SOURCE_PV,
  STAGING,
  TARGET_PV,
  UID,
  claimWithVolume,
  copyPod,
  migration,
  originalClaim,
  pod,
  prepared,
  replacementClaim,
  restoredClaim,
  retainedSource,
  snapshot,
  targetClass,
  unrewrittenClaim,
  volume,
  world,
} from './fixtures/world.js';

/** The parts of a step a case pins down (a subset match). */
type Expect = Partial<Record<string, unknown>> & { kind: Step['kind'] };

function check(t: Test, w: World, expected: Expect, name?: string): Step {
  const step = plan(w);
  t.match(step, expected, name ?? `${expected.kind}${'phase' in expected ? ` ${String(expected.phase)}` : ''}`);
  return step;
}

const SUMMARY = {
  ok: true,
  bytes: 3 * 2 ** 20,
  bytesTransferred: 2 * 2 ** 20,
  files: 12,
  seconds: 2,
  verified: 'metadata',
};
const FINAL_COPY = {
  pass: 'final' as const,
  bytes: 3 * 2 ** 20,
  bytesTransferred: 2 * 2 ** 20,
  files: 12,
  seconds: 2,
  verified: 'metadata' as const,
};
const PRESYNC_COPY = { ...FINAL_COPY, pass: 'presync' as const, verified: 'none' as const };
/** Pre-synced just now: the status a pre-sync pass leaves, with no re-sync due. */
const SYNCED: VolumeMigrationStatus = {
  copies: [PRESYNC_COPY],
  syncPasses: 1,
  lastSyncTime: NOW.toISOString(),
  lastSync: { bytesTransferred: PRESYNC_COPY.bytesTransferred, filesTransferred: 12, seconds: PRESYNC_COPY.seconds },
  finalCopyEstimateSeconds: PRESYNC_COPY.seconds,
};

t.test('a new migration gets the finalizer before anything else', (t) => {
  check(
    t,
    world({ migration: migration({ finalizer: false }), claim: originalClaim(), sourceVolume: volume(SOURCE_PV) }),
    { kind: 'addFinalizer' },
  );
  check(
    t,
    world({ migration: migration({ finalizer: false, phase: 'WaitingForCutover', status: prepared() }) }),
    { kind: 'addFinalizer' },
    'in any unfinished phase',
  );
  check(
    t,
    world({
      migration: migration({ finalizer: false, phase: 'Succeeded', status: prepared() }),
      namespaceLabelled: false,
    }),
    { kind: 'done' },
    'a finished one does not get it back',
  );
  check(
    t,
    world({ migration: migration({ finalizer: false, deleting: true }) }),
    { kind: 'setPhase', phase: 'Aborted' },
    'a deleted one is not re-finalized: it aborts',
  );
  t.end();
});

t.test('validation: every reason a migration cannot start fails it with that reason, and changes nothing', (t) => {
  const base = {
    migration: migration(),
    claim: originalClaim(),
    sourceVolume: volume(SOURCE_PV, { claimRef: { name: CLAIM, uid: ORIGINAL_UID } }),
  };
  const cases: { name: string; w: World; reason: string; message: string }[] = [
    {
      name: 'another unfinished migration of the claim (past Pending)',
      w: world({ ...base, siblings: [base.migration, migration({ name: 'other', phase: 'PreSyncing' })] }),
      reason: 'DuplicateMigration',
      message: 'claim shop/data is already being migrated by VolumeMigration other; delete one of them',
    },
    {
      name: 'an older Pending migration of the claim',
      w: world({ ...base, siblings: [base.migration, migration({ name: 'older', created: '2024-05-01T10:00:00Z' })] }),
      reason: 'DuplicateMigration',
      message: 'claim shop/data is already being migrated by VolumeMigration older; delete one of them',
    },
    {
      name: 'a Pending migration of the same second and a smaller name',
      w: world({ ...base, siblings: [base.migration, migration({ name: 'aaa' })] }),
      reason: 'DuplicateMigration',
      message: 'claim shop/data is already being migrated by VolumeMigration aaa; delete one of them',
    },
    {
      name: 'the claim does not exist',
      w: world({ migration: migration() }),
      reason: 'ClaimNotFound',
      message: 'claim shop/data does not exist',
    },
    {
      name: 'the claim is Pending',
      w: world({ ...base, claim: originalClaim({ phase: 'Pending', volumeName: null }) }),
      reason: 'ClaimNotBound',
      message: 'claim shop/data is Pending, not Bound: there is no volume to copy from',
    },
    {
      name: 'the claim is Lost',
      w: world({ ...base, claim: originalClaim({ phase: 'Lost' }) }),
      reason: 'ClaimNotBound',
      message: 'claim shop/data is Lost, not Bound: there is no volume to copy from',
    },
    {
      name: 'the bound volume is missing',
      w: world({ migration: migration(), claim: originalClaim() }),
      reason: 'VolumeNotFound',
      message: 'claim shop/data is bound to pv-source, which does not exist',
    },
    {
      name: 'a Block volume',
      w: world({ ...base, claim: originalClaim({ volumeMode: 'Block' }) }),
      reason: 'BlockVolumeUnsupported',
      message: 'claim shop/data has volumeMode Block; pvshift copies files and supports Filesystem volumes only',
    },
    {
      name: 'the target class is missing',
      w: world({ ...base, targetClass: undefined }),
      reason: 'StorageClassNotFound',
      message: 'target StorageClass fast does not exist',
    },
    {
      name: 'ReadWriteOncePod with preSync asked for',
      w: world({
        ...base,
        migration: migration({ spec: { preSync: true } }),
        claim: originalClaim({ accessModes: ['ReadWriteOncePod'] }),
      }),
      reason: 'PreSyncUnsupported',
      message:
        'claim shop/data is ReadWriteOncePod: it cannot be mounted by a copy pod while its application runs; set preSync: false',
    },
    {
      name: 'ReadWriteOncePod combined with another target mode',
      w: world({
        ...base,
        migration: migration({ spec: { targetAccessModes: ['ReadWriteOncePod', 'ReadWriteOnce'] } }),
      }),
      reason: 'InvalidAccessModes',
      message: 'ReadWriteOncePod cannot be combined with other access modes',
    },
    {
      name: 'a target size that is no quantity',
      w: world({ ...base, migration: migration({ spec: { targetSize: 'lots' } }) }),
      reason: 'InvalidSize',
      message: 'target size lots is not a valid quantity',
    },
    {
      name: 'a target size of zero',
      w: world({ ...base, migration: migration({ spec: { targetSize: '0' } }) }),
      reason: 'InvalidSize',
      message: 'target size 0 is not a valid quantity',
    },
    {
      name: 'a resyncInterval that is no duration',
      w: world({ ...base, migration: migration({ spec: { resyncInterval: 'hourly' } }) }),
      reason: 'InvalidSyncSettings',
      message: 'resyncInterval "hourly" is not a duration such as 30s, 5m or 1h30m (0 turns re-sync off)',
    },
    {
      name: 'a maxDowntime of zero',
      w: world({ ...base, migration: migration({ spec: { maxDowntime: '0' } }) }),
      reason: 'InvalidSyncSettings',
      message: 'maxDowntime "0" is not a duration such as 30s, 5m or 1h30m, more than 0',
    },
    {
      name: 'maxDowntime without pre-sync',
      w: world({ ...base, migration: migration({ spec: { maxDowntime: '30s', preSync: false } }) }),
      reason: 'InvalidSyncSettings',
      message: 'maxDowntime needs pre-sync (the final copy is estimated from its passes), and pre-sync is off',
    },
    {
      name: 'maxDowntime on a ReadWriteOncePod claim (no pre-sync by default)',
      w: world({
        ...base,
        migration: migration({ spec: { maxDowntime: '30s' } }),
        claim: originalClaim({ accessModes: ['ReadWriteOncePod'] }),
      }),
      reason: 'InvalidSyncSettings',
      message: 'maxDowntime needs pre-sync (the final copy is estimated from its passes), and pre-sync is off',
    },
  ];
  for (const c of cases) {
    t.test(`${c.name} → Failed ${c.reason}`, (t) => {
      t.same(validate(c.w), { reason: c.reason, message: c.message }, 'validate says why');
      t.same(
        plan(c.w),
        {
          kind: 'setPhase',
          phase: 'Failed',
          status: { message: c.message },
          event: { type: 'Warning', reason: c.reason, message: c.message },
        },
        'and plan fails the migration with it',
      );
      t.end();
    });
  }
  t.test('valid input passes', (t) => {
    t.equal(validate(world(base)), undefined);
    t.equal(
      validate(
        world({ ...base, siblings: [base.migration, migration({ name: 'newer', created: '2024-05-01T12:00:00Z' })] }),
      ),
      undefined,
      'a newer Pending migration is the duplicate, not this one',
    );
    t.equal(
      validate(world({ ...base, siblings: [base.migration, migration({ name: 'done', phase: 'Succeeded' })] })),
      undefined,
      'a finished migration of the claim is no duplicate',
    );
    t.equal(
      validate(world({ ...base, claim: originalClaim({ accessModes: ['ReadWriteOncePod'] }) })),
      undefined,
      'ReadWriteOncePod without an explicit preSync',
    );
    t.end();
  });
  t.end();
});

t.test('Pending: the source is made Retain first, then snapshot, namespace label, and on', (t) => {
  const claim = originalClaim();
  const source = volume(SOURCE_PV, { policy: 'Delete', claimRef: { name: CLAIM, uid: ORIGINAL_UID } });
  check(
    t,
    world({ migration: migration(), claim, sourceVolume: source, namespaceLabelled: false }),
    {
      kind: 'retainVolume',
      volumeName: SOURCE_PV,
      originalPolicy: 'Delete',
      migrationKey: KEY,
      event: {
        type: 'Normal',
        reason: 'SourceRetained',
        message: 'set reclaim policy of pv-source to Retain (was Delete)',
      },
    },
    'a Delete source: Retain before the snapshot and before the namespace label',
  );
  check(
    t,
    world({
      migration: migration(),
      claim,
      sourceVolume: volume(SOURCE_PV, { policy: 'Recycle', claimRef: { name: CLAIM, uid: ORIGINAL_UID } }),
    }),
    { kind: 'retainVolume', originalPolicy: 'Recycle', migrationUid: UID, resourceVersion: `rv-${SOURCE_PV}` },
    'any policy but Retain is recorded and replaced, stamped with the migration UID, guarded by resourceVersion',
  );
  check(
    t,
    world({
      migration: migration(),
      claim,
      sourceVolume: volume(SOURCE_PV, { policy: 'Retain', claimRef: { name: CLAIM, uid: ORIGINAL_UID } }),
    }),
    { kind: 'retainVolume', originalPolicy: 'Retain', migrationUid: UID },
    "already Retain (by the user): stamped as this migration's before anything else",
  );
  check(
    t,
    world({
      migration: migration(),
      claim,
      sourceVolume: volume(SOURCE_PV, { policy: 'Delete', claimRef: { name: 'other', uid: 'uid-other' } }),
    }),
    { kind: 'setPhase', phase: 'Failed', event: { reason: 'VolumeNotOwned' } },
    "a volume whose claimRef names another claim is not taken, whatever the claim's volumeName says",
  );
  const retained = retainedSource();
  const snap = plan(world({ migration: migration(), claim, sourceVolume: retained, namespaceLabelled: false }));
  t.same(
    snap,
    {
      kind: 'patchStatus',
      status: {
        originalClaim: {
          labels: claim.metadata.labels,
          annotations: claim.metadata.annotations,
          spec: claim.spec,
          uid: ORIGINAL_UID,
        },
        sourceVolumeName: SOURCE_PV,
        sourceStorageClassName: 'standard',
        startTime: NOW.toISOString(),
        copyFidelity: { level: 'privileged', privileged: false, dropped: ['trusted xattrs', 'security xattrs'] },
      },
    },
    'Retain: the claim snapshot (with its uid) goes into the status',
  );
  check(
    t,
    world({ migration: migration({ status: prepared() }), claim, sourceVolume: retained, namespaceLabelled: false }),
    { kind: 'labelNamespace', active: true },
    'then the namespace enters the webhooks scope',
  );
  check(
    t,
    world({ migration: migration({ status: prepared() }), claim, sourceVolume: retained }),
    {
      kind: 'setPhase',
      phase: 'PreSyncing',
      event: { reason: 'Validated', message: 'migration of data to fast validated; source pv-source retained' },
    },
    'ReadWriteOnce: pre-sync by default',
  );
  check(
    t,
    world({ migration: migration({ spec: { preSync: false }, status: prepared() }), claim, sourceVolume: retained }),
    { kind: 'setPhase', phase: 'WaitingForCutover' },
    'preSync: false goes to waiting',
  );
  const rwop = originalClaim({ accessModes: ['ReadWriteOncePod'] });
  check(
    t,
    world({
      migration: migration({
        status: { ...prepared(), originalClaim: snapshot({ accessModes: ['ReadWriteOncePod'] }) },
      }),
      claim: rwop,
      sourceVolume: retained,
    }),
    { kind: 'setPhase', phase: 'WaitingForCutover' },
    'ReadWriteOncePod: no pre-sync by default',
  );
  t.end();
});

t.test('Pending: a shrink without pre-sync measures the source first', (t) => {
  const spec = { targetSize: '512Mi', preSync: false };
  const base = { claim: originalClaim(), sourceVolume: retainedSource() };
  const m = (status: VolumeMigrationStatus = {}) => migration({ spec, status: prepared(status) });
  check(
    t,
    world({ ...base, migration: m() }),
    { kind: 'createCopyPod', pass: 'measure', event: { reason: 'MeasureStarted' } },
    'no measurement: start the measure pod',
  );
  check(
    t,
    world({ ...base, migration: m(), copySlotFree: false }),
    { kind: 'wait', reason: 'WaitingForCopySlot' },
    'no free copy slot: wait for one',
  );
  check(
    t,
    world({ ...base, migration: m(), copyPods: { measure: copyPod('measure', { phase: 'Running' }) } }),
    { kind: 'wait', reason: 'Copying' },
    'measuring: wait',
  );
  check(
    t,
    world({
      ...base,
      migration: m(),
      copyPods: { measure: copyPod('measure', { phase: 'Succeeded', message: '314572800\n' }) },
    }),
    { kind: 'patchStatus', status: { usedBytes: 314572800 } },
    'measured: the used bytes are recorded',
  );
  check(
    t,
    world({
      ...base,
      migration: m(),
      copyPods: { measure: copyPod('measure', { phase: 'Succeeded', message: 'du: cannot access' }) },
    }),
    {
      kind: 'setPhase',
      phase: 'Failed',
      event: { reason: 'MeasureFailed', message: 'could not read the used bytes of the source: du: cannot access' },
    },
    'unreadable output: MeasureFailed',
  );
  check(
    t,
    world({ ...base, migration: m(), copyPods: { measure: copyPod('measure', { phase: 'Succeeded', message: '' }) } }),
    { kind: 'setPhase', phase: 'Failed', event: { reason: 'MeasureFailed' } },
    'no output is no measurement (not 0 bytes)',
  );
  const tooBig = world({
    ...base,
    migration: m({ usedBytes: 900 * 2 ** 20 }),
    copyPods: { measure: copyPod('measure', { phase: 'Succeeded', message: String(900 * 2 ** 20) }) },
  });
  const message =
    'the claim holds 900.0 MiB; with 10% headroom the target needs 990.0 MiB, but targetSize is 512.0 MiB';
  t.same(
    plan(tooBig),
    {
      kind: 'setPhase',
      phase: 'Failed',
      status: { message },
      event: { type: 'Warning', reason: 'TargetTooSmall', message },
    },
    'too much data: TargetTooSmall with the sizes',
  );
  check(
    t,
    world({
      ...base,
      migration: m({ usedBytes: 400 * 2 ** 20 }),
      copyPods: { measure: copyPod('measure', { phase: 'Succeeded', message: '1' }) },
    }),
    { kind: 'deleteCopyPod', pass: 'measure', name: `pvshift-${UID}-measure` },
    'fits: the measure pod goes',
  );
  check(
    t,
    world({ ...base, migration: m({ usedBytes: 400 * 2 ** 20 }) }),
    { kind: 'setPhase', phase: 'WaitingForCutover' },
    'then on to waiting',
  );
  check(
    t,
    world({ ...base, migration: migration({ spec: { targetSize: '2Gi', preSync: false }, status: prepared() }) }),
    { kind: 'setPhase', phase: 'WaitingForCutover' },
    'a grow needs no measurement',
  );
  check(
    t,
    world({ ...base, migration: migration({ spec: { targetSize: '512Mi' }, status: prepared() }) }),
    { kind: 'setPhase', phase: 'PreSyncing' },
    'a shrink with pre-sync is measured by the pre-sync itself',
  );
  t.end();
});

t.test('PreSyncing: staging claim, copy pod, progress, result, pod deleted, then WaitingForCutover', (t) => {
  const base = {
    claim: originalClaim(),
    sourceVolume: retainedSource(),
    consumers: [pod('app-0', { node: 'node-1' })],
  };
  const m = (status: VolumeMigrationStatus = {}, spec = {}) =>
    migration({ phase: 'PreSyncing', spec, status: prepared(status) });
  const staging = claimWithVolume(STAGING, TARGET_PV);
  const created = check(
    t,
    world({ ...base, migration: m() }),
    { kind: 'createClaim', role: 'staging' },
    'first the staging claim',
  );
  if (created.kind === 'createClaim') {
    t.same(created.claim.metadata?.name, STAGING, 'named from the migration uid');
    t.same(
      created.claim.spec,
      {
        storageClassName: 'fast',
        accessModes: ['ReadWriteOnce'],
        volumeMode: 'Filesystem',
        resources: { requests: { storage: '1Gi' } },
      },
      'on the target class, at the original size',
    );
    t.match(
      created.claim.metadata?.ownerReferences,
      [{ kind: 'VolumeMigration', name: NAME, uid: UID, controller: true }],
      'owned by the migration',
    );
    t.equal(created.claim.metadata?.labels?.['app.kubernetes.io/managed-by'], 'pvshift');
  }
  check(
    t,
    world({ ...base, migration: m(), stagingClaim: staging }),
    { kind: 'createCopyPod', pass: 'presync', event: { reason: 'PreSyncStarted' } },
    'then the copy pod',
  );
  check(
    t,
    world({ ...base, migration: m(), stagingClaim: staging, copySlotFree: false }),
    { kind: 'wait', reason: 'WaitingForCopySlot' },
    'no slot: wait for one',
  );
  const bigger = plan(world({ ...base, migration: m({}, { targetSize: 2147483648 as unknown as string }) }));
  t.same(
    bigger.kind === 'createClaim' && bigger.claim.spec?.resources,
    { requests: { storage: '2147483648' } },
    'an integer targetSize (int-or-string) is asked for as a quantity string',
  );
  check(
    t,
    world({ ...base, migration: m({}, { targetSize: '0' }) }),
    {
      kind: 'setPhase',
      phase: 'Failed',
      event: { type: 'Warning', reason: 'InvalidTarget', message: /staging claim cannot be made: the target size "0"/ },
    },
    'a target that cannot be made (targetSize edited to 0 after validation): Failed, before cutover, nothing guessed',
  );
  const progress = { bytesDone: 10, bytesTotal: 40, filesDone: 1, filesTotal: 4, bytesPerSecond: 5 };
  check(
    t,
    world({
      ...base,
      migration: m(),
      stagingClaim: staging,
      copyPods: { presync: copyPod('presync', { phase: 'Running' }) },
      progress,
    }),
    { kind: 'wait', reason: 'Copying', message: 'presync copy running', progress },
    'running: wait, carrying its progress',
  );
  check(
    t,
    world({
      ...base,
      migration: m(),
      stagingClaim: staging,
      copyPods: { presync: copyPod('presync', { phase: 'Pending' }) },
    }),
    { kind: 'wait', reason: 'Copying' },
    'not started yet: wait too',
  );
  const done = plan(
    world({
      ...base,
      migration: m(),
      stagingClaim: staging,
      copyPods: { presync: copyPod('presync', { phase: 'Succeeded' }) },
      summary: { ...SUMMARY, verified: 'none' },
    }),
  );
  t.match(
    done,
    {
      kind: 'patchStatus',
      status: {
        copies: [PRESYNC_COPY],
        progressText: '3.0 MiB / 3.0 MiB (100%)',
        progress: { bytesDone: SUMMARY.bytes, etaSeconds: 0, updatedAt: NOW.toISOString() },
      },
    },
    'succeeded: the result is recorded',
  );
  t.match(
    done,
    {
      kind: 'patchStatus',
      status: {
        syncPasses: 1,
        lastSyncTime: NOW.toISOString(),
        lastSync: { bytesTransferred: SUMMARY.bytesTransferred, seconds: SUMMARY.seconds },
        finalCopyEstimateSeconds: SUMMARY.seconds,
      },
    },
    'the first pass starts the sync record: when, its delta, and the final copy estimated from its duration',
  );
  t.notOk('event' in done && done.event, 'no event when nothing was dropped');
  check(
    t,
    world({
      ...base,
      migration: m(),
      stagingClaim: staging,
      copyPods: { presync: copyPod('presync', { phase: 'Succeeded' }) },
      summary: { ...SUMMARY, dropped: ['acls'] },
    }),
    {
      kind: 'patchStatus',
      event: { type: 'Warning', reason: 'FeaturesDropped', message: 'the target cannot hold acls: dropped' },
    },
    'what the target cannot hold is a warning',
  );
  check(
    t,
    world({
      ...base,
      migration: m(),
      stagingClaim: staging,
      copyPods: { presync: copyPod('presync', { phase: 'Succeeded' }) },
    }),
    { kind: 'setPhase', phase: 'Failed', event: { reason: 'CopyResultMissing' } },
    'succeeded without a summary: Failed (nothing of the user changed yet)',
  );
  check(
    t,
    world({
      ...base,
      migration: m({ copies: [PRESYNC_COPY] }),
      stagingClaim: staging,
      copyPods: { presync: copyPod('presync', { phase: 'Succeeded' }) },
    }),
    { kind: 'deleteCopyPod', pass: 'presync', name: `pvshift-${UID}-presync` },
    'recorded: the pod is deleted',
  );
  check(
    t,
    world({ ...base, migration: m({ copies: [PRESYNC_COPY] }), stagingClaim: staging }),
    {
      kind: 'setPhase',
      phase: 'WaitingForCutover',
      event: { reason: 'PreSynced', message: 'pre-sync copied 2.0 MiB of 3.0 MiB (12 files) in 2.0 s' },
    },
    'and the migration waits for cutover',
  );
  const shrink = { targetSize: '3Mi' };
  const tooBig = plan(world({ ...base, migration: m({ copies: [PRESYNC_COPY] }, shrink), stagingClaim: staging }));
  t.match(
    tooBig,
    {
      kind: 'setPhase',
      phase: 'Failed',
      event: {
        reason: 'TargetTooSmall',
        message: 'the claim holds 3.0 MiB; with 10% headroom the target needs 3.3 MiB, but targetSize is 3.0 MiB',
      },
    },
    'a shrink checks the pre-synced bytes',
  );
  check(
    t,
    world({ ...base, migration: migration({ phase: 'PreSyncing', status: { sourceVolumeName: SOURCE_PV } }) }),
    { kind: 'setPhase', phase: 'Failed', event: { reason: 'SnapshotMissing' } },
    'a status without the snapshot fails',
  );
  t.end();
});

t.test('a failed copy pass: transient exits retry within the budget, terminal ones end it', (t) => {
  const pre = (status: VolumeMigrationStatus, exitCode: number, attempt?: number) =>
    world({
      migration: migration({ phase: 'PreSyncing', status: prepared(status) }),
      claim: originalClaim(),
      sourceVolume: retainedSource(),
      stagingClaim: claimWithVolume(STAGING, TARGET_PV),
      copyPods: {
        presync: copyPod('presync', {
          phase: 'Failed',
          exitCode,
          message: 'rsync: connection reset',
          ...(attempt !== undefined ? { attempt } : {}),
        }),
      },
    });
  check(
    t,
    pre({}, 75, 0),
    {
      kind: 'patchStatus',
      status: { attempts: { presync: 1 } },
      event: {
        type: 'Warning',
        reason: 'CopyRetrying',
        message: 'presync copy failed (exit 75): rsync: connection reset; retrying (attempt 2 of 3)',
      },
    },
    'first pod fails transiently (75): the failure is recorded',
  );
  check(
    t,
    pre({ attempts: { presync: 1 } }, 75, 0),
    { kind: 'deleteCopyPod', pass: 'presync' },
    'the same failed pod seen again: deleted, so a new one starts (not counted twice)',
  );
  check(
    t,
    pre({ attempts: { presync: 1 } }, 137, 0),
    { kind: 'deleteCopyPod', pass: 'presync' },
    'killed by a signal (137) counts as transient',
  );
  check(
    t,
    pre({ attempts: { presync: 1 } }, 75, 1),
    { kind: 'patchStatus', status: { attempts: { presync: 2 } }, event: { message: /retrying \(attempt 3 of 3\)$/ } },
    'the second pod fails: failure 2 recorded',
  );
  check(t, pre({ attempts: { presync: 2 } }, 75, 1), { kind: 'deleteCopyPod', pass: 'presync' }, 'and it is deleted');
  check(
    t,
    pre({ attempts: { presync: 2 } }, 75, 2),
    {
      kind: 'setPhase',
      phase: 'Failed',
      event: { reason: 'CopyFailed', message: 'presync copy failed (exit 75): rsync: connection reset' },
    },
    'the third pod fails: attempts exhausted before cutover, Failed',
  );
  check(
    t,
    pre({}, 75),
    { kind: 'patchStatus', status: { attempts: { presync: 1 } } },
    'a pod without the attempt annotation counts from the status',
  );
  check(
    t,
    pre({}, 76, 0),
    { kind: 'setPhase', phase: 'Failed', event: { reason: 'CopyFailed' } },
    'terminal (76) before cutover: Failed at once',
  );
  check(
    t,
    world({ ...pre({}, 75, 0), settings: { ...SETTINGS, copyAttempts: 1 } }),
    { kind: 'setPhase', phase: 'Failed' },
    'copyAttempts 1: no retry',
  );
  // Replaying the reconciles on one failed pod never fails the migration: the budget is per pod.
  let status: VolumeMigrationStatus = {};
  const seen: string[] = [];
  for (let i = 0; i < 5; i++) {
    const step = plan(pre(status, 75, 0));
    seen.push(step.kind);
    if (step.kind === 'patchStatus') status = { ...status, ...step.status };
  }
  t.same(
    seen,
    ['patchStatus', 'deleteCopyPod', 'deleteCopyPod', 'deleteCopyPod', 'deleteCopyPod'],
    'one failed pod, reconciled five times: recorded once, then deleted',
  );
  t.end();
});

t.test('WaitingForCutover: no cutover while a scheduled pod uses the claim', (t) => {
  const m = (spec = {}) => migration({ phase: 'WaitingForCutover', spec, status: prepared(SYNCED) });
  const base = {
    claim: originalClaim(),
    sourceVolume: retainedSource(),
    stagingClaim: claimWithVolume(STAGING, TARGET_PV),
  };
  check(
    t,
    world({ ...base, migration: m(), consumers: [pod('app-0', { node: 'node-1' })] }),
    {
      kind: 'wait',
      reason: 'WaitingForCutover',
      message: 'waiting for app-0 to go (recreate or evict it to cut over)',
      afterMs: 5000,
    },
    'the app runs: wait',
  );
  check(
    t,
    world({ ...base, migration: m(), consumers: [] }),
    { kind: 'wait', message: 'waiting for a new pod of the claim' },
    'no pod at all: wait for one',
  );
  check(
    t,
    world({
      ...base,
      migration: m(),
      consumers: [pod('app-0', { node: 'node-1', terminating: true }), pod('app-0-new', { gated: true })],
    }),
    { kind: 'wait', reason: 'WaitingForCutover' },
    'a gated pod while the old one still terminates (scheduled): wait',
  );
  check(
    t,
    world({
      ...base,
      migration: m(),
      consumers: [pod('job', { node: 'node-1', phase: 'Succeeded' }), pod('app-0', { gated: true })],
    }),
    { kind: 'wait' },
    'a finished but undeleted pod still counts for pvc-protection: wait',
  );
  const cut = plan(
    world({
      ...base,
      migration: m(),
      consumers: [
        pod('a', { gated: true, gatedAt: '2024-05-01T11:59:30Z' }),
        pod('b', { gated: true, gatedAt: '2024-05-01T11:58:00Z' }),
        pod('c', { gated: true, gatedAt: 'not a time' }),
      ],
    }),
  );
  t.same(
    cut,
    {
      kind: 'setPhase',
      phase: 'CuttingOver',
      status: {
        cutoverStartTime: NOW.toISOString(),
        gatedAt: '2024-05-01T11:58:00Z',
        message: 'cutover: replacing the claim',
      },
      event: { type: 'Normal', reason: 'CutoverStarted', message: 'pod a, b, c is held until the data is in place' },
    },
    'gated pods and none scheduled: cut over, downtime from the earliest gated-at',
  );
  check(
    t,
    world({ ...base, migration: m(), consumers: [pod('a', { gated: true })] }),
    { kind: 'setPhase', phase: 'CuttingOver', status: { gatedAt: NOW.toISOString() } },
    'no gated-at stamp: now',
  );
  check(
    t,
    world({
      ...base,
      migration: m({ cutover: 'Evict' }),
      consumers: [pod('app-0', { node: 'node-1' }), pod('app-1', { node: 'node-2' })],
    }),
    {
      kind: 'evictPods',
      pods: ['app-0', 'app-1'],
      event: { reason: 'Evicting', message: 'evicting app-0, app-1 for cutover' },
    },
    'Evict: the controller evicts the scheduled pods itself',
  );
  check(
    t,
    world({
      ...base,
      migration: m({ cutover: 'Evict' }),
      consumers: [pod('app-0', { node: 'node-1', terminating: true }), pod('job', { node: 'node-1', phase: 'Failed' })],
    }),
    { kind: 'wait', reason: 'WaitingForCutover' },
    'Evict: terminating and finished pods are not evicted again',
  );
  check(
    t,
    world({ ...base, migration: m({ cutover: 'Evict' }), consumers: [pod('app-0', { gated: true })] }),
    { kind: 'setPhase', phase: 'CuttingOver' },
    'Evict: once only a gated pod is left, cut over',
  );
  check(
    t,
    world({ ...base, migration: m({ cutover: 'OnPodRecreate' }), consumers: [pod('app-0', { node: 'node-1' })] }),
    { kind: 'wait' },
    'OnPodRecreate never evicts',
  );
  t.end();
});

t.test('WaitingForCutover: a pod created ungated after validation is a missed cutover, said once', (t) => {
  const validatedAt = '2024-05-01T11:00:05Z';
  const m = (spec = {}) =>
    migration({
      phase: 'WaitingForCutover',
      spec,
      status: prepared({
        ...SYNCED,
        conditions: [
          { type: 'Validated', status: 'True', reason: 'Validated', message: '', lastTransitionTime: validatedAt },
        ],
      }),
    });
  const base = {
    claim: originalClaim(),
    sourceVolume: retainedSource(),
    stagingClaim: claimWithVolume(STAGING, TARGET_PV),
  };
  const created = (at: string, options: Parameters<typeof pod>[1] = { node: 'node-1' }) => {
    const p = pod('app-0', options);
    p.metadata.creationTimestamp = at as unknown as Date;
    return p;
  };
  const missed = plan(world({ ...base, migration: m(), consumers: [created('2024-05-01T11:30:00Z')] }));
  t.match(
    missed,
    { kind: 'wait', reason: 'GateMissed', event: { type: 'Warning', reason: 'GateMissed' } },
    'created after validation, running ungated: missed',
  );
  t.match(
    missed.kind === 'wait' ? missed.message : '',
    /^pod app-0 started on the old volume: .*without pvshift's scheduling gate .*pvshift\.io\/migration-active.*recreate or evict it to cut over$/,
    'the message names the pod, the causes and what to do',
  );
  t.equal(
    missed.kind === 'wait' && missed.event?.message,
    missed.kind === 'wait' && missed.message,
    'the event says what the status says',
  );
  check(
    t,
    world({ ...base, migration: m(), consumers: [created('2024-05-01T10:59:00Z')] }),
    { kind: 'wait', reason: 'WaitingForCutover' },
    'created before validation: the app as it was',
  );
  check(
    t,
    world({ ...base, migration: m(), consumers: [created('2024-05-01T11:00:05Z')] }),
    { kind: 'wait', reason: 'WaitingForCutover' },
    'the same second as validation: not called a miss',
  );
  check(
    t,
    world({ ...base, migration: m(), consumers: [created('2024-05-01T11:00:06Z')] }),
    { kind: 'wait', reason: 'GateMissed' },
    'a second later: missed',
  );
  check(
    t,
    world({
      ...base,
      migration: m(),
      consumers: [created('2024-05-01T11:30:00Z', { node: 'node-1', terminating: true })],
    }),
    { kind: 'wait', reason: 'WaitingForCutover' },
    'a missed pod on its way out: wait for it',
  );
  check(
    t,
    world({
      ...base,
      migration: m(),
      consumers: [created('2024-05-01T11:30:00Z', { node: 'node-1', phase: 'Succeeded' })],
    }),
    { kind: 'wait', reason: 'WaitingForCutover' },
    'a finished pod is not running on anything',
  );
  check(
    t,
    world({
      ...base,
      migration: migration({ phase: 'WaitingForCutover', status: prepared(SYNCED) }),
      consumers: [created('2024-05-01T11:30:00Z')],
    }),
    { kind: 'wait', reason: 'WaitingForCutover' },
    'no Validated condition: no claim of a miss',
  );
  check(
    t,
    world({ ...base, migration: m({ cutover: 'Evict' }), consumers: [created('2024-05-01T11:30:00Z')] }),
    { kind: 'evictPods', pods: ['app-0'] },
    'Evict: evicted again, which is the cutover',
  );
  t.end();
});

/** A pre-sync copy pod of pass `n` (1 the first pre-sync, then each re-sync). */
function syncPod(n: number, state: Parameters<typeof copyPod>[1]): ReturnType<typeof copyPod> {
  const p = copyPod('presync', state);
  p.metadata.annotations = { ...p.metadata.annotations, [ANNOTATION_SYNC_PASS]: String(n) };
  return p;
}

/** A migration waiting for cutover after its pre-sync, with `status` and `spec` over that. */
function waitingSynced(status: VolumeMigrationStatus = {}, spec = {}): VolumeMigration {
  return migration({ phase: 'WaitingForCutover', spec, status: prepared({ ...SYNCED, ...status }) });
}

/** Its world: the claim on its retained source, the staging claim bound, the application running on node-1. */
function syncedWorld() {
  return {
    claim: originalClaim(),
    sourceVolume: retainedSource(),
    stagingClaim: claimWithVolume(STAGING, TARGET_PV),
    consumers: [pod('app-0', { node: 'node-1' })],
  };
}

/** `seconds` before NOW, as a status time. */
function ago(seconds: number): string {
  return new Date(NOW.getTime() - seconds * 1000).toISOString();
}

t.test('WaitingForCutover: continuous sync re-syncs every resyncInterval while the application runs', (t) => {
  const m = waitingSynced;
  const base = syncedWorld();
  check(
    t,
    world({ ...base, migration: m({ lastSyncTime: ago(240) }) }),
    { kind: 'wait', reason: 'WaitingForCutover', afterMs: 5000 },
    'synced 4 min ago, default interval 5m: not due, wait as usual',
  );
  check(
    t,
    world({ ...base, migration: m({ lastSyncTime: ago(1.5) }, { resyncInterval: '2s' }) }),
    { kind: 'wait', reason: 'WaitingForCutover', afterMs: 500 },
    'due sooner than the usual wait: look again when it is due',
  );
  const due = check(
    t,
    world({ ...base, migration: m({ lastSyncTime: ago(300) }) }),
    { kind: 'createCopyPod', pass: 'presync' },
    'synced 5 min ago: due, the pre-sync pass again',
  );
  t.notOk('event' in due && due.event, 'a re-sync starts without an event (it recurs every interval)');
  check(
    t,
    world({ ...base, migration: m({ lastSyncTime: ago(3) }, { resyncInterval: '2s' }) }),
    { kind: 'createCopyPod', pass: 'presync' },
    'resyncInterval 2s, synced 3 s ago: due',
  );
  check(
    t,
    world({ ...base, migration: m({ lastSyncTime: undefined }) }),
    { kind: 'createCopyPod', pass: 'presync' },
    'no lastSyncTime (pre-synced by an older pvshift): due now',
  );
  check(
    t,
    world({ ...base, migration: m({ lastSyncTime: ago(3600) }, { resyncInterval: '0' }) }),
    { kind: 'wait', reason: 'WaitingForCutover', afterMs: 5000 },
    'resyncInterval 0: off',
  );
  check(
    t,
    world({ ...base, migration: m({ lastSyncTime: ago(3600) }, { preSync: false }) }),
    { kind: 'wait', reason: 'WaitingForCutover' },
    'preSync false: no re-sync either',
  );
  check(
    t,
    world({ ...base, migration: m({ lastSyncTime: ago(3600) }), consumers: [] }),
    { kind: 'wait', message: 'waiting for a new pod of the claim' },
    'no pod runs on the source: nothing changes, nothing to re-sync',
  );
  check(
    t,
    world({ ...base, migration: m({ lastSyncTime: ago(3600) }), copySlotFree: false }),
    { kind: 'wait', reason: 'WaitingForCopySlot' },
    'due, no copy slot: wait for one',
  );
  const progress = { bytesDone: 10, bytesTotal: 40, filesDone: 1, filesTotal: 4, bytesPerSecond: 5 };
  check(
    t,
    world({
      ...base,
      migration: m(),
      copyPods: { presync: syncPod(2, { phase: 'Running', node: 'node-1' }) },
      progress,
    }),
    { kind: 'wait', reason: 'Copying', message: 're-sync 2 running', progress },
    'a re-sync running: followed like any copy, carrying its progress',
  );
  const recorded = plan(
    world({
      ...base,
      migration: m({ lastSyncTime: ago(300) }),
      copyPods: { presync: syncPod(2, { phase: 'Succeeded' }) },
      summary: { ...SUMMARY, bytesTransferred: 4096, filesTransferred: 2, seconds: 0.7, verified: 'none' },
    }),
  );
  t.match(
    recorded,
    {
      kind: 'patchStatus',
      status: {
        copies: [{ pass: 'presync', bytesTransferred: 4096, seconds: 0.7 }],
        syncPasses: 2,
        lastSyncTime: NOW.toISOString(),
        lastSync: { bytesTransferred: 4096, filesTransferred: 2, seconds: 0.7 },
        finalCopyEstimateSeconds: 0.7,
      },
    },
    'a re-sync finished: its delta, its time and the new estimate recorded',
  );
  t.equal(
    recorded.kind === 'patchStatus' && recorded.status.copies?.length,
    1,
    'one presync record, the latest: the list does not grow with every pass',
  );
  t.notOk('event' in recorded && recorded.event, 'no event for a routine re-sync');
  check(
    t,
    world({ ...base, migration: m({ syncPasses: 2 }), copyPods: { presync: syncPod(2, { phase: 'Succeeded' }) } }),
    { kind: 'deleteCopyPod', pass: 'presync', name: `pvshift-${UID}-presync`, event: undefined },
    'recorded: its pod is deleted (the next re-sync reuses the name)',
  );
  check(
    t,
    world({
      ...base,
      migration: m(),
      copyPods: { presync: syncPod(2, { phase: 'Failed', exitCode: 75, attempt: 0 }) },
    }),
    { kind: 'patchStatus', status: { attempts: { presync: 1 } }, event: { reason: 'CopyRetrying' } },
    'a re-sync failed transiently: counted, retried',
  );
  const retried = plan(
    world({
      ...base,
      migration: m({ lastSyncTime: ago(300), attempts: { presync: 1 } }),
      copyPods: { presync: syncPod(2, { phase: 'Succeeded', attempt: 1 }) },
      summary: { ...SUMMARY, verified: 'none' },
    }),
  );
  t.match(
    retried,
    { kind: 'patchStatus', status: { syncPasses: 2, attempts: { presync: 0 } } },
    'a pass that succeeds restores the retry budget for the passes after it',
  );
  check(
    t,
    world({
      ...base,
      migration: m(),
      copyPods: { presync: syncPod(2, { phase: 'Running', node: 'node-1' }) },
      yieldCopySlot: true,
    }),
    { kind: 'deleteCopyPod', pass: 'presync', event: { reason: 'PreSyncYielded' } },
    'a final copy elsewhere needs the slot: the re-sync yields',
  );
  t.end();
});

t.test('WaitingForCutover: a re-sync that fails for good is recorded, and the migration goes on', (t) => {
  const m = waitingSynced;
  const base = syncedWorld();
  const failed = syncPod(3, { phase: 'Failed', exitCode: 75, attempt: 2, message: 'rsync: connection reset' });
  const tolerated = check(
    t,
    world({ ...base, migration: m({ syncPasses: 2, attempts: { presync: 2 } }), copyPods: { presync: failed } }),
    {
      kind: 'patchStatus',
      status: {
        lastSyncFailure: {
          time: NOW.toISOString(),
          message: 'presync copy failed (exit 75): rsync: connection reset',
          podUid: 'uid-copy-presync',
        },
        attempts: { presync: 0 },
      },
      event: { type: 'Warning', reason: 'ReSyncFailed', message: /^re-sync 3 failed: .*the migration goes on/ },
    },
    'its retries spent: a Warning and status.lastSyncFailure, its retry budget restored for the next pass',
  );
  t.notOk('phase' in tolerated, 'no phase change: the migration still waits for its cutover');
  const terminal = syncPod(3, { phase: 'Failed', exitCode: RUNNER_EXIT.TERMINAL, attempt: 0 });
  check(
    t,
    world({ ...base, migration: m({ syncPasses: 2 }), copyPods: { presync: terminal } }),
    {
      kind: 'patchStatus',
      status: { lastSyncFailure: { podUid: 'uid-copy-presync' } },
      event: { reason: 'ReSyncFailed' },
    },
    'a terminal exit at once: the same',
  );
  const recordedFailure = { time: ago(1), message: 'x', podUid: 'uid-copy-presync' };
  check(
    t,
    world({
      ...base,
      migration: m({ syncPasses: 2, lastSyncTime: ago(600), lastSyncFailure: recordedFailure }),
      copyPods: { presync: failed },
    }),
    { kind: 'deleteCopyPod', pass: 'presync', name: `pvshift-${UID}-presync` },
    'recorded once: its pod is deleted next',
  );
  check(
    t,
    world({ ...base, migration: m({ syncPasses: 2, lastSyncTime: ago(600), lastSyncFailure: recordedFailure }) }),
    { kind: 'wait', reason: 'WaitingForCutover' },
    'the next pass waits an interval from the failure, not from the last success',
  );
  check(
    t,
    world({
      ...base,
      migration: m({ syncPasses: 2, lastSyncTime: ago(900), lastSyncFailure: { ...recordedFailure, time: ago(300) } }),
    }),
    { kind: 'createCopyPod', pass: 'presync' },
    'an interval after the failure: the next pass',
  );
  const first = migration({ phase: 'PreSyncing', status: prepared() });
  check(
    t,
    world({
      ...base,
      migration: first,
      copyPods: { presync: syncPod(1, { phase: 'Failed', exitCode: RUNNER_EXIT.TERMINAL }) },
    }),
    { kind: 'setPhase', phase: 'Failed', event: { reason: 'CopyFailed' } },
    'the first pre-sync is not a re-sync: its failure still fails the migration (nothing was copied)',
  );
  t.end();
});

t.test('WaitingForCutover: the user asks for a re-sync (pvshift.io/sync-requested)', (t) => {
  const m = (status: VolumeMigrationStatus = {}, spec = {}, request = '2024-05-01T12:00:00.000Z') => {
    const made = waitingSynced(status, spec);
    made.metadata.annotations = { ...made.metadata.annotations, [ANNOTATION_SYNC_REQUEST]: request };
    return made;
  };
  const base = syncedWorld();
  check(
    t,
    world({ ...base, migration: m({ lastSyncTime: ago(10) }) }),
    {
      kind: 'createCopyPod',
      pass: 'presync',
      event: {
        type: 'Normal',
        reason: 'ReSyncRequested',
        message: /^re-sync 2 started: asked for by pvshift.io\/sync-requested/,
      },
    },
    'synced 10 s ago, interval 5m: a request is due now, with an event',
  );
  check(
    t,
    world({ ...base, migration: m({ lastSyncTime: ago(10) }, { resyncInterval: '0' }) }),
    { kind: 'createCopyPod', pass: 'presync' },
    'resyncInterval 0 (off): a request still runs one pass',
  );
  check(
    t,
    world({ ...base, migration: m({ lastSyncTime: ago(10) }), consumers: [] }),
    { kind: 'createCopyPod', pass: 'presync' },
    'no pod runs on the source: the request still runs (the user knows something pvshift does not)',
  );
  check(
    t,
    world({ ...base, migration: m({ lastSyncTime: ago(10), syncRequestServed: '2024-05-01T12:00:00.000Z' }) }),
    { kind: 'wait', reason: 'WaitingForCutover' },
    'served: not again',
  );
  check(
    t,
    world({ ...base, migration: m({ lastSyncTime: ago(10) }, { preSync: false }) }),
    { kind: 'wait', reason: 'WaitingForCutover' },
    'pre-sync off: no pass (the source may be one the application alone may mount)',
  );
  const gated = pod('app-0', { gated: true });
  check(
    t,
    world({ ...base, migration: m({ lastSyncTime: ago(10) }), consumers: [gated] }),
    { kind: 'setPhase', phase: 'CuttingOver' },
    'a pod waits behind its gate: the cutover goes first, the request is not served',
  );
  const requested = syncPod(2, { phase: 'Succeeded' });
  requested.metadata.annotations = { ...requested.metadata.annotations, [ANNOTATION_SYNC_REQUEST]: 'r-1' };
  check(
    t,
    world({
      ...base,
      migration: m({ lastSyncTime: ago(10) }, {}, 'r-1'),
      copyPods: { presync: requested },
      summary: { ...SUMMARY, verified: 'none' },
    }),
    { kind: 'patchStatus', status: { syncPasses: 2, syncRequestServed: 'r-1' } },
    'the pass it started records the request as served',
  );
  t.end();
});

t.test('WaitingForCutover: a re-sync gives way to the application held by its gate', (t) => {
  const m = (status: VolumeMigrationStatus = {}) =>
    migration({ phase: 'WaitingForCutover', status: prepared({ ...SYNCED, ...status }) });
  const base = {
    claim: originalClaim(),
    sourceVolume: retainedSource(),
    stagingClaim: claimWithVolume(STAGING, TARGET_PV),
  };
  check(
    t,
    world({
      ...base,
      migration: m(),
      consumers: [pod('app-0', { gated: true })],
      copyPods: { presync: syncPod(2, { phase: 'Running', node: 'node-1' }) },
    }),
    {
      kind: 'deleteCopyPod',
      pass: 'presync',
      event: { reason: 'PreSyncYielded', message: 're-sync stopped: pod app-0 waits for cutover' },
    },
    'a pod gated while a re-sync runs: the re-sync is stopped at once',
  );
  const terminating = syncPod(2, { phase: 'Running', node: 'node-1' });
  terminating.metadata.deletionTimestamp = NOW;
  check(
    t,
    world({ ...base, migration: m(), consumers: [pod('app-0', { gated: true })], copyPods: { presync: terminating } }),
    { kind: 'setPhase', phase: 'CuttingOver' },
    'the re-sync on its way out: cut over (the claim is deleted once the pod lets go of it)',
  );
  check(
    t,
    world({
      ...base,
      migration: m(),
      consumers: [pod('app-0', { gated: true })],
      copyPods: { presync: syncPod(2, { phase: 'Succeeded' }) },
    }),
    { kind: 'deleteCopyPod', pass: 'presync', event: undefined },
    'a finished re-sync still mounting the source is deleted too, quietly',
  );
  check(
    t,
    world({
      ...base,
      migration: m({ lastSyncTime: ago(3600) }),
      consumers: [pod('app-0', { node: 'node-1', terminating: true }), pod('app-0-new', { gated: true })],
    }),
    { kind: 'wait', reason: 'WaitingForCutover' },
    'due, but a gated pod waits (its predecessor still terminating): no re-sync starts',
  );
  check(
    t,
    world({ ...base, migration: m({ lastSyncTime: ago(3600) }), consumers: [pod('app-0', { gated: true })] }),
    { kind: 'setPhase', phase: 'CuttingOver' },
    'due, and a gated pod alone: cutover, not a re-sync',
  );
  check(
    t,
    world({
      ...base,
      migration: migration({
        phase: 'CuttingOver',
        status: prepared({ ...SYNCED, cutoverStartTime: NOW.toISOString() }),
      }),
      consumers: [pod('app-0', { gated: true })],
      copyPods: { presync: syncPod(2, { phase: 'Running', node: 'node-1' }) },
    }),
    { kind: 'deleteCopyPod', pass: 'presync' },
    'CuttingOver with a re-sync the cutover began without (cache lag): it goes before the claim is deleted',
  );
  t.end();
});

t.test('WaitingForCutover: Evict with maxDowntime waits until the final copy is estimated to fit', (t) => {
  const m = (status: VolumeMigrationStatus = {}, spec = {}) =>
    migration({
      phase: 'WaitingForCutover',
      spec: { cutover: 'Evict', maxDowntime: '5s', ...spec },
      status: prepared({ ...SYNCED, ...status }),
    });
  const base = {
    claim: originalClaim(),
    sourceVolume: retainedSource(),
    stagingClaim: claimWithVolume(STAGING, TARGET_PV),
    consumers: [pod('app-0', { node: 'node-1' })],
  };
  const held = check(
    t,
    world({ ...base, migration: m({ finalCopyEstimateSeconds: 40 }) }),
    {
      kind: 'wait',
      reason: 'EvictionHeld',
      message:
        'eviction held: the final copy is estimated at 40.0 s, over maxDowntime 5s; re-syncing every 5m to bring it down',
    },
    'the first pass took 40 s: over 5s, no eviction',
  );
  t.notOk('event' in held && held.event, 'the hold is a status message, not an event per estimate');
  check(
    t,
    world({ ...base, migration: m({ finalCopyEstimateSeconds: 40, lastSyncTime: ago(300) }) }),
    { kind: 'createCopyPod', pass: 'presync' },
    'held, and a re-sync is due: it runs, so the estimate shrinks',
  );
  check(
    t,
    world({
      ...base,
      migration: m({ finalCopyEstimateSeconds: 40 }),
      copyPods: { presync: syncPod(2, { phase: 'Succeeded' }) },
      summary: { ...SUMMARY, bytesTransferred: 1024, filesTransferred: 1, seconds: 1.5, verified: 'none' },
    }),
    { kind: 'patchStatus', status: { finalCopyEstimateSeconds: 1.5 } },
    'the re-sync moved one interval of change in 1.5 s: the estimate is 1.5 s',
  );
  check(
    t,
    world({ ...base, migration: m({ finalCopyEstimateSeconds: 1.5 }) }),
    {
      kind: 'evictPods',
      pods: ['app-0'],
      event: {
        reason: 'Evicting',
        message: 'evicting app-0 for cutover (final copy estimated at 1.5 s, within maxDowntime 5s)',
      },
    },
    'the estimate fits, fresh: evict',
  );
  check(
    t,
    world({
      ...base,
      migration: m({ finalCopyEstimateSeconds: 1.5 }),
      copyPods: { presync: syncPod(2, { phase: 'Running', node: 'node-1' }) },
    }),
    { kind: 'wait', reason: 'Copying', message: 're-sync 2 running' },
    'it fits, but a re-sync runs: its result first (evicting now would waste it)',
  );
  check(
    t,
    world({ ...base, migration: m({ finalCopyEstimateSeconds: 1.5, lastSyncTime: ago(300) }) }),
    { kind: 'createCopyPod', pass: 'presync' },
    'it fits, but the last pass is an interval old: re-sync first, so the delta is small',
  );
  check(
    t,
    world({ ...base, migration: m({ finalCopyEstimateSeconds: 5 }) }),
    { kind: 'evictPods' },
    'exactly maxDowntime fits',
  );
  check(
    t,
    world({
      ...base,
      migration: m({ finalCopyEstimateSeconds: 40, lastSyncTime: ago(3600) }, { resyncInterval: '0' }),
    }),
    {
      kind: 'wait',
      reason: 'EvictionHeld',
      message:
        'eviction held: the final copy is estimated at 40.0 s, over maxDowntime 5s; re-sync is off (resyncInterval 0), ' +
        'so the estimate will not shrink: raise maxDowntime, or recreate the pod yourself',
    },
    'held with re-sync off: the message says it will not change by itself',
  );
  check(
    t,
    world({ ...base, migration: m({ finalCopyEstimateSeconds: undefined }) }),
    { kind: 'wait', reason: 'EvictionHeld', message: /^eviction waits for a pre-sync to estimate the final copy/ },
    'no estimate yet: held',
  );
  check(
    t,
    world({ ...base, migration: m({ finalCopyEstimateSeconds: 40 }), consumers: [pod('app-0', { gated: true })] }),
    { kind: 'setPhase', phase: 'CuttingOver' },
    'held, but the user recreated the pod: the gated pod cuts over (maxDowntime only holds evictions)',
  );
  check(
    t,
    world({ ...base, migration: m({ finalCopyEstimateSeconds: 40 }, { maxDowntime: undefined }) }),
    { kind: 'evictPods', pods: ['app-0'], event: { message: 'evicting app-0 for cutover' } },
    'no maxDowntime: Evict evicts at once, as ever',
  );
  check(
    t,
    world({ ...base, migration: m({ finalCopyEstimateSeconds: 40 }, { cutover: 'OnPodRecreate' }) }),
    { kind: 'wait', reason: 'WaitingForCutover' },
    'OnPodRecreate: maxDowntime has nothing to hold',
  );
  t.end();
});

t.test(
  'CuttingOver: Retain, original deleted by uid, source rebound to the helper, helper, staging, replacement, Populating',
  (t) => {
    const m = (spec = {}) =>
      migration({
        phase: 'CuttingOver',
        spec,
        status: prepared({ copies: [PRESYNC_COPY], cutoverStartTime: NOW.toISOString() }),
      });
    const gated = [pod('app-0', { gated: true })];
    const staging = claimWithVolume(STAGING, TARGET_PV);
    const helper = claimWithVolume(HELPER, SOURCE_PV, 'Pending');
    // Pre-bound to the helper: the PV controller marks such a volume Available once it has seen it.
    const toHelper = retainedSource({ claimRef: { name: HELPER }, phase: 'Available' });
    const steps: [string, World, Expect][] = [
      [
        'the source lost Retain: Retain again, before the claim is touched',
        world({
          migration: m(),
          claim: originalClaim(),
          sourceVolume: volume(SOURCE_PV, {
            policy: 'Delete',
            migrationUid: UID,
            claimRef: { name: CLAIM, uid: ORIGINAL_UID },
          }),
          consumers: gated,
        }),
        { kind: 'retainVolume', volumeName: SOURCE_PV, originalPolicy: 'Delete', migrationKey: KEY },
      ],
      [
        'the source in status is not stamped with this migration: Held, nothing touched',
        world({
          migration: m(),
          claim: originalClaim(),
          sourceVolume: volume(SOURCE_PV, { policy: 'Retain', claimRef: { name: CLAIM, uid: ORIGINAL_UID } }),
          consumers: gated,
        }),
        { kind: 'setPhase', phase: 'Held', event: { type: 'Warning', reason: 'VolumeNotOwned' } },
      ],
      [
        'the original: deleted, by uid',
        world({ migration: m(), claim: originalClaim(), sourceVolume: retainedSource(), consumers: gated }),
        {
          kind: 'deleteClaim',
          name: CLAIM,
          uid: ORIGINAL_UID,
          why: 'original',
          event: {
            reason: 'OriginalClaimDeleted',
            message: 'deleted claim data; its data stays on the retained volume pv-source',
          },
        },
      ],
      [
        'the original terminating: wait',
        world({
          migration: m(),
          claim: originalClaim({ terminating: true }),
          sourceVolume: retainedSource(),
          consumers: gated,
        }),
        { kind: 'wait', reason: 'ClaimTerminating' },
      ],
      [
        'a claim of the name without the rewrite: replaced',
        world({ migration: m(), claim: unrewrittenClaim(), sourceVolume: retainedSource(), consumers: gated }),
        {
          kind: 'deleteClaim',
          name: CLAIM,
          uid: 'c1a1m000-0000-4000-8000-000000000003',
          why: 'unrewritten',
          event: { type: 'Warning', reason: 'UnrewrittenClaimReplaced' },
        },
      ],
      [
        'the unrewritten claim terminating: wait',
        world({
          migration: m(),
          claim: unrewrittenClaim({ terminating: true }),
          sourceVolume: retainedSource(),
          consumers: gated,
        }),
        { kind: 'wait', reason: 'ClaimTerminating' },
      ],
      [
        'no claim: the source PV is pointed at the helper claim',
        world({ migration: m(), sourceVolume: retainedSource(), consumers: gated }),
        { kind: 'rebindVolume', volumeName: SOURCE_PV, resourceVersion: `rv-${SOURCE_PV}` },
      ],
      [
        'rebound, but the PV controller has not seen it yet (Released): wait, or it leaves the helper Pending until its resync',
        world({
          migration: m(),
          sourceVolume: retainedSource({ claimRef: { name: HELPER }, phase: 'Released' }),
          consumers: gated,
        }),
        { kind: 'wait', reason: 'SourceBinding' },
      ],
      [
        'rebound, still Bound in the cache: wait too',
        world({
          migration: m(),
          sourceVolume: retainedSource({ claimRef: { name: HELPER }, phase: 'Bound' }),
          consumers: gated,
        }),
        { kind: 'wait', reason: 'SourceBinding' },
      ],
      [
        'rebound and seen (Available): the helper claim on the source PV',
        world({ migration: m(), sourceVolume: toHelper, consumers: gated }),
        {
          kind: 'createClaim',
          role: 'helper',
          claim: {
            metadata: { name: HELPER, namespace: NS },
            spec: { volumeName: SOURCE_PV, storageClassName: 'standard', resources: { requests: { storage: '1Gi' } } },
          },
        },
      ],
      [
        'helper there: the staging claim (when pre-sync made none)',
        world({ migration: m(), sourceVolume: toHelper, helperClaim: helper, consumers: gated }),
        { kind: 'createClaim', role: 'staging', claim: { metadata: { name: STAGING } } },
      ],
      [
        'staging there: the replacement claim',
        world({ migration: m(), sourceVolume: toHelper, helperClaim: helper, stagingClaim: staging, consumers: gated }),
        { kind: 'createClaim', role: 'replacement', event: { reason: 'ReplacementCreated' } },
      ],
      [
        'the replacement there: Populating',
        world({
          migration: m(),
          claim: replacementClaim(),
          sourceVolume: toHelper,
          helperClaim: helper,
          stagingClaim: staging,
          consumers: gated,
        }),
        { kind: 'setPhase', phase: 'Populating', event: { reason: 'Populating' } },
      ],
    ];
    for (const [name, w, expected] of steps) check(t, w, expected, name);

    const rebind = plan(world({ migration: m(), sourceVolume: retainedSource(), consumers: gated }));
    t.same(
      rebind.kind === 'rebindVolume' && rebind.claimRef,
      { apiVersion: 'v1', kind: 'PersistentVolumeClaim', namespace: NS, name: HELPER },
      'the helper claimRef carries no uid, so the PV controller binds it by name',
    );
    const replacement = plan(
      world({ migration: m(), sourceVolume: toHelper, helperClaim: helper, stagingClaim: staging, consumers: gated }),
    );
    if (replacement.kind === 'createClaim') {
      t.same(
        replacement.claim.spec,
        {
          storageClassName: 'fast',
          accessModes: ['ReadWriteOnce'],
          volumeMode: 'Filesystem',
          resources: { requests: { storage: '1Gi' } },
          dataSourceRef: { apiGroup: 'pvshift.io', kind: 'VolumeMigration', name: NAME },
        },
        'the replacement: target class, populated from the migration',
      );
      t.same(
        replacement.claim.metadata?.annotations,
        { 'team.example/owner': 'orders', [ANNOTATION_MIGRATION]: NAME },
        "the user's annotations, without binding or shortcut annotations",
      );
      t.same(replacement.claim.metadata?.labels, { app: 'shop' }, "the user's labels");
    }
    check(
      t,
      world({
        migration: m({ targetSize: '5Gi', targetAccessModes: ['ReadWriteMany'] }),
        sourceVolume: toHelper,
        helperClaim: helper,
        stagingClaim: staging,
        consumers: gated,
      }),
      {
        kind: 'createClaim',
        role: 'replacement',
        claim: { spec: { accessModes: ['ReadWriteMany'], resources: { requests: { storage: '5Gi' } } } },
      },
      'target size and access modes from the spec',
    );
    check(
      t,
      world({
        migration: m({ targetSize: '0' }),
        claim: originalClaim(),
        sourceVolume: retainedSource(),
        consumers: gated,
      }),
      { kind: 'setPhase', phase: 'RollingBack', event: { type: 'Warning', reason: 'InvalidTarget' } },
      'a replacement that cannot be made (targetSize edited to 0): roll back before the original claim is deleted',
    );
    const unmade = migration({ phase: 'CuttingOver', status: prepared({ cutoverStartTime: NOW.toISOString() }) });
    delete unmade.status!.originalClaim!.spec.resources;
    check(
      t,
      world({
        migration: unmade,
        sourceVolume: toHelper,
        helperClaim: helper,
        stagingClaim: staging,
        consumers: gated,
      }),
      {
        kind: 'setPhase',
        phase: 'RollingBack',
        event: {
          reason: 'InvalidTarget',
          message: /no targetSize and the snapshot of the original claim .* has no storage request/,
        },
      },
      'a snapshot without a size and no targetSize: no 1Gi guess, roll back',
    );
    check(
      t,
      world({ migration: m(), claim: replacementClaim(), sourceVolume: retainedSource(), consumers: gated }),
      { kind: 'rebindVolume' },
      'a replacement the webhook made first does not skip the rebind',
    );
    check(
      t,
      world({
        migration: m(),
        claim: originalClaim(),
        sourceVolume: retainedSource(),
        consumers: [pod('app-0', { node: 'node-1' })],
      }),
      { kind: 'setPhase', phase: 'WaitingForCutover', event: { reason: 'CutoverDeferred' } },
      'a scheduled pod uses the original again: back to waiting',
    );
    check(
      t,
      world({ migration: m(), claim: originalClaim(), consumers: gated }),
      { kind: 'setPhase', phase: 'RollingBack', event: { type: 'Warning', reason: 'SourceMissing' } },
      'the source volume gone: roll back',
    );
    t.end();
  },
);

/** A small seeded generator, so a failing world can be reproduced. */
function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let x = s;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

t.test('invariant 1: no plan deletes the original claim while its source PV is not Retain', (t) => {
  const next = random(20240501);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)]!;
  const maybe = <T>(x: T): T | undefined => (next() < 0.5 ? x : undefined);
  let walked = 0;
  let originalDeletes = 0;
  let guarded = 0;
  let policyWrites = 0;
  const bad: string[] = [];
  const phases: Phase[] = ['CuttingOver', 'CuttingOver', 'CuttingOver', ...PHASES];
  for (let i = 0; i < 20_000; i++) {
    const phase = pick(phases);
    const policy = pick(['Retain', 'Retain', 'Delete', 'Recycle', undefined]);
    const ref = pick([{ name: CLAIM, uid: ORIGINAL_UID }, { name: HELPER }, { name: CLAIM }, undefined]);
    const stamp = pick([UID, UID, UID, 'uid-other', undefined]);
    const source = maybe(
      volume(SOURCE_PV, {
        ...(policy ? { policy } : {}),
        ...(ref ? { claimRef: ref } : {}),
        originalPolicy: pick(['Delete', undefined]) as string,
        ...(stamp ? { migrationUid: stamp } : {}),
        phase: pick(['Bound', 'Released']),
      }),
    );
    if (source && policy === undefined) delete source.spec!.persistentVolumeReclaimPolicy;
    const claim = pick([
      originalClaim(),
      originalClaim(),
      originalClaim({ terminating: true }),
      replacementClaim(),
      unrewrittenClaim(),
      restoredClaim(),
      undefined,
    ]);
    const consumers = [
      maybe(pod('a', { gated: true })),
      next() < 0.25 ? pod('b', { node: 'node-1' }) : undefined,
      next() < 0.25 ? pod('c', { node: 'node-1', terminating: true }) : undefined,
    ].filter((p) => p !== undefined);
    const status = {
      ...prepared(),
      ...(next() < 0.1 ? { originalClaim: undefined } : {}),
      cutoverStartTime: NOW.toISOString(),
    };
    // Another migration of the same claim (a duplicate left Failed, or the live one), which may have stamped the source.
    const other =
      next() < 0.5
        ? migration({
            name: 'other',
            phase: pick([
              'Failed',
              'Aborted',
              'RolledBack',
              'WaitingForCutover',
              'CuttingOver',
              'Populating',
              'Binding',
            ]),
            status: prepared(),
          })
        : undefined;
    const self = migration({
      phase,
      spec: { abort: next() < 0.1, ...(next() < 0.2 ? { cutover: 'Evict' as const } : {}) },
      status,
      deleting: next() < 0.05,
      finalizer: next() < 0.95,
    });
    const w = world({
      migration: self,
      siblings: other ? [self, other] : [self],
      ...(claim ? { claim } : {}),
      ...(source ? { sourceVolume: source } : {}),
      ...(next() < 0.5 ? { helperClaim: claimWithVolume(HELPER, SOURCE_PV, pick(['Bound', 'Pending'])) } : {}),
      ...(next() < 0.5 ? { stagingClaim: claimWithVolume(STAGING, TARGET_PV) } : {}),
      consumers,
    });
    const step = plan(w);
    walked += 1;
    const sourceRetained = w.sourceVolume?.spec?.persistentVolumeReclaimPolicy === 'Retain';
    if (
      phase === 'CuttingOver' &&
      w.sourceVolume &&
      !sourceRetained &&
      w.claim?.metadata?.uid === ORIGINAL_UID &&
      step.kind === 'retainVolume'
    )
      guarded += 1;
    if (step.kind === 'deleteClaim' && step.uid === ORIGINAL_UID) {
      originalDeletes += 1;
      if (w.sourceVolume?.spec?.persistentVolumeReclaimPolicy !== 'Retain')
        bad.push(`world ${i}: ${phase}, source ${policy}`);
    }
    // Item 1 of the safety review: a leftover migration flipped the live source back to Delete.
    const setsPolicy =
      (step.kind === 'restoreVolumePolicy' || step.kind === 'setVolumePolicy') &&
      step.volumeName === SOURCE_PV &&
      step.policy !== 'Retain';
    if (setsPolicy) {
      policyWrites += 1;
      const otherUnfinished = other && !['Failed', 'Aborted', 'RolledBack'].includes(phaseOf(other));
      if (stamp !== UID || otherUnfinished)
        bad.push(
          `world ${i}: ${phase} sets ${step.policy} on a source stamped ${stamp ?? 'by nobody'} while ${other ? `${phaseOf(other)} other` : 'no other'}`,
        );
    }
  }
  t.same(
    bad,
    [],
    `${walked} worlds walked; the original was deleted in ${originalDeletes} of them, always from a Retain source; the source's policy set ${policyWrites} times, never on a volume another unfinished migration (or another UID) holds`,
  );
  t.ok(policyWrites > 20, 'the walk reached policy writes often enough to mean something');
  t.ok(
    guarded > 100,
    `in ${guarded} CuttingOver worlds with the original and a source not Retain, the step was to make it Retain`,
  );
  t.ok(originalDeletes > 50, 'the walk reached the delete often enough to mean something');
  t.end();
});

t.test('Populating: final copy from the helper claim, retries, rollback on failure, then Binding', (t) => {
  const base = {
    claim: replacementClaim(),
    sourceVolume: retainedSource({ claimRef: { name: HELPER, uid: 'uid-helper' } }),
    helperClaim: claimWithVolume(HELPER, SOURCE_PV),
    stagingClaim: claimWithVolume(STAGING, TARGET_PV),
    consumers: [pod('app-0', { gated: true })],
  };
  const m = (status: VolumeMigrationStatus = {}, spec = {}) =>
    migration({ phase: 'Populating', spec, status: prepared({ copies: [PRESYNC_COPY], ...status }) });
  check(
    t,
    world({ ...base, migration: m(), helperClaim: claimWithVolume(HELPER, SOURCE_PV, 'Pending') }),
    { kind: 'wait', reason: 'SourceBinding' },
    'the helper claim not Bound: wait',
  );
  const halfBoundSource = retainedSource({ claimRef: { name: HELPER, uid: `uid-${HELPER}` } });
  check(
    t,
    world({
      ...base,
      migration: m(),
      sourceVolume: halfBoundSource,
      helperClaim: claimWithVolume(HELPER, SOURCE_PV, 'Pending'),
    }),
    { kind: 'nudgeClaim', name: HELPER, uid: `uid-${HELPER}` },
    'the volume bound to the helper, the helper still Pending (a conflict in the PV controller): nudged, once',
  );
  const nudged = claimWithVolume(HELPER, SOURCE_PV, 'Pending');
  nudged.metadata.annotations = { [ANNOTATION_BIND_NUDGED]: NOW.toISOString() };
  check(
    t,
    world({ ...base, migration: m(), sourceVolume: halfBoundSource, helperClaim: nudged }),
    { kind: 'wait', reason: 'SourceBinding' },
    'nudged already: wait',
  );
  check(
    t,
    world({ ...base, migration: m(), helperClaim: undefined }),
    { kind: 'wait', reason: 'SourceBinding' },
    'no helper claim: wait',
  );
  check(
    t,
    world({ ...base, migration: m() }),
    { kind: 'createCopyPod', pass: 'final', event: { reason: 'FinalSyncStarted' } },
    'helper Bound: the final copy pod',
  );
  check(
    t,
    world({ ...base, migration: m(), copyPods: { final: copyPod('final', { phase: 'Running' }) } }),
    { kind: 'wait', reason: 'Copying', message: 'final copy running' },
    'copying: wait',
  );
  const failed = (recorded: number, exitCode: number, attempt = recorded) =>
    world({
      ...base,
      migration: m({ attempts: { final: recorded } }),
      copyPods: { final: copyPod('final', { phase: 'Failed', exitCode, message: 'vanished', attempt }) },
    });
  check(
    t,
    failed(0, 75),
    { kind: 'patchStatus', status: { attempts: { final: 1 } }, event: { reason: 'CopyRetrying' } },
    'transient failure: the attempt is recorded',
  );
  check(
    t,
    failed(1, 75, 0),
    { kind: 'deleteCopyPod', pass: 'final', name: `pvshift-${UID}-final` },
    'then the pod is deleted for a retry',
  );
  check(
    t,
    failed(2, 75),
    {
      kind: 'setPhase',
      phase: 'RollingBack',
      status: { message: 'final copy failed (exit 75): vanished' },
      event: {
        type: 'Warning',
        reason: 'CopyFailed',
        message: 'final copy failed (exit 75): vanished; rolling back to the original volume',
      },
    },
    'attempts exhausted: RollingBack',
  );
  check(
    t,
    failed(0, 77),
    { kind: 'setPhase', phase: 'RollingBack', event: { reason: 'CopyFailed' } },
    'verify failed (77), terminal: RollingBack at once',
  );
  check(t, failed(0, 2), { kind: 'setPhase', phase: 'RollingBack' }, 'usage error (2), terminal: RollingBack');
  check(
    t,
    world({ ...base, migration: m(), copyPods: { final: copyPod('final', { phase: 'Succeeded' }) } }),
    { kind: 'setPhase', phase: 'RollingBack', event: { reason: 'CopyResultMissing' } },
    'succeeded without a summary after cutover: roll back, never a terminal Failed',
  );
  check(
    t,
    world({ ...base, migration: m(), copyPods: { final: copyPod('final', { phase: 'Succeeded' }) }, summary: SUMMARY }),
    { kind: 'patchStatus', status: { copies: [PRESYNC_COPY, FINAL_COPY] } },
    'succeeded: the result is recorded beside the pre-sync',
  );
  check(
    t,
    world({
      ...base,
      migration: m({ copies: [PRESYNC_COPY, FINAL_COPY] }),
      copyPods: { final: copyPod('final', { phase: 'Succeeded' }) },
    }),
    { kind: 'deleteCopyPod', pass: 'final' },
    'recorded: the pod goes',
  );
  check(
    t,
    world({ ...base, migration: m({ copies: [PRESYNC_COPY, FINAL_COPY] }) }),
    {
      kind: 'setPhase',
      phase: 'Binding',
      // The staging claim's volume recorded with the phase (no separate status write).
      status: { targetVolumeName: TARGET_PV },
      event: {
        reason: 'Copied',
        message: 'final copy moved 2.0 MiB (12 files, 3.0 MiB in all) in 2.0 s; verified: metadata',
      },
    },
    'then Binding, with the target volume recorded',
  );
  t.end();
});

t.test(
  'Binding: target recorded, staging PV Retain, claimRef to the replacement, bound, cleanup, policy, gates, Succeeded',
  (t) => {
    const m = (status: VolumeMigrationStatus = {}, spec = {}) =>
      migration({
        phase: 'Binding',
        spec,
        status: prepared({
          copies: [PRESYNC_COPY, FINAL_COPY],
          gatedAt: '2024-05-01T11:59:00Z',
          cutoverStartTime: '2024-05-01T11:59:10Z',
          ...status,
        }),
      });
    const withTarget = { targetVolumeName: TARGET_PV };
    const source = retainedSource({ claimRef: { name: HELPER, uid: 'uid-helper' } });
    const staging = claimWithVolume(STAGING, TARGET_PV);
    const helper = claimWithVolume(HELPER, SOURCE_PV);
    const gated = [pod('app-0', { gated: true }), pod('other', { node: 'node-1' })];
    const targetVolume = (options: Parameters<typeof volume>[1]) => volume(TARGET_PV, options);
    const bound = replacementClaim({ phase: 'Bound', volumeName: TARGET_PV });
    const terminating = <T extends { metadata: object }>(o: T): T => ({
      ...o,
      metadata: { ...o.metadata, deletionTimestamp: new Date('2024-05-01T12:00:00Z') },
    });
    const base = {
      sourceVolume: source,
      helperClaim: helper,
      stagingClaim: staging,
      consumers: gated,
      targetClass: targetClass('Retain'),
    };
    const steps: [string, World, Expect][] = [
      [
        'no replacement claim yet: wait',
        world({ ...base, migration: m() }),
        { kind: 'wait', reason: 'ReplacementMissing' },
      ],
      [
        'a claim of the name that is not the replacement: wait',
        world({ ...base, migration: m(), claim: unrewrittenClaim() }),
        { kind: 'wait', reason: 'ReplacementMissing' },
      ],
      [
        'the staging claim has no volume yet: wait',
        world({
          ...base,
          migration: m(),
          claim: replacementClaim(),
          stagingClaim: claimWithVolume(STAGING, undefined, 'Pending'),
        }),
        { kind: 'wait', reason: 'TargetBinding' },
      ],
      [
        'the target volume is recorded first',
        world({
          ...base,
          migration: m(),
          claim: replacementClaim(),
          stagingVolume: targetVolume({ claimRef: { name: STAGING, uid: `uid-${STAGING}` } }),
        }),
        { kind: 'patchStatus', status: { targetVolumeName: TARGET_PV } },
      ],
      [
        'the staging PV is made Retain before its claim is let go',
        world({
          ...base,
          migration: m(withTarget),
          claim: replacementClaim(),
          stagingVolume: targetVolume({ claimRef: { name: STAGING, uid: `uid-${STAGING}` } }),
        }),
        { kind: 'retainVolume', volumeName: TARGET_PV, originalPolicy: 'Delete', migrationKey: KEY },
      ],
      [
        'then its claimRef goes to the replacement, with uid',
        world({
          ...base,
          migration: m(withTarget),
          claim: replacementClaim(),
          stagingVolume: targetVolume({
            policy: 'Retain',
            originalPolicy: 'Delete',
            claimRef: { name: STAGING, uid: `uid-${STAGING}` },
          }),
        }),
        {
          kind: 'rebindVolume',
          volumeName: TARGET_PV,
          resourceVersion: `rv-${TARGET_PV}`,
          claimRef: {
            apiVersion: 'v1',
            kind: 'PersistentVolumeClaim',
            namespace: NS,
            name: CLAIM,
            uid: REPLACEMENT_UID,
          },
          event: { reason: 'Binding' },
        },
      ],
      [
        'claimRef set: wait for the replacement to bind',
        world({
          ...base,
          migration: m(withTarget),
          claim: replacementClaim(),
          stagingVolume: targetVolume({
            policy: 'Retain',
            originalPolicy: 'Delete',
            claimRef: { name: CLAIM, uid: REPLACEMENT_UID },
          }),
        }),
        { kind: 'wait', reason: 'Binding' },
      ],
      [
        'the target volume not in the cache while its claim is bound to it: wait (caches lag)',
        world({ ...base, migration: m(withTarget), claim: replacementClaim() }),
        { kind: 'wait', reason: 'TargetMissing' },
      ],
      [
        'the target volume missing and its claim Lost: roll back (there is nothing to bind)',
        world({
          ...base,
          migration: m(withTarget),
          claim: replacementClaim(),
          stagingClaim: claimWithVolume(STAGING, TARGET_PV, 'Lost'),
        }),
        { kind: 'setPhase', phase: 'RollingBack', event: { reason: 'TargetMissing' } },
      ],
      [
        'bound: the staging claim is deleted',
        world({
          ...base,
          migration: m(withTarget),
          claim: bound,
          stagingVolume: targetVolume({
            policy: 'Retain',
            originalPolicy: 'Delete',
            claimRef: { name: CLAIM, uid: REPLACEMENT_UID },
          }),
        }),
        { kind: 'deleteClaim', name: STAGING, uid: `uid-${STAGING}`, why: 'staging' },
      ],
      [
        'then the helper claim',
        world({
          ...base,
          migration: m(withTarget),
          claim: bound,
          stagingClaim: undefined,
          stagingVolume: targetVolume({
            policy: 'Retain',
            originalPolicy: 'Delete',
            claimRef: { name: CLAIM, uid: REPLACEMENT_UID },
          }),
        }),
        { kind: 'deleteClaim', name: HELPER, uid: `uid-${HELPER}`, why: 'helper' },
      ],
      [
        'the staging claim deleted, not gone yet (pvc-protection): the helper claim is not kept waiting for it',
        world({
          ...base,
          migration: m(withTarget),
          claim: bound,
          stagingClaim: terminating(staging),
          stagingVolume: targetVolume({
            policy: 'Retain',
            originalPolicy: 'Delete',
            claimRef: { name: CLAIM, uid: REPLACEMENT_UID },
          }),
        }),
        { kind: 'deleteClaim', name: HELPER, uid: `uid-${HELPER}`, why: 'helper' },
      ],
      [
        "both deleted, not gone yet: on to the new volume's policy (it is bound to the replacement by uid)",
        world({
          ...base,
          migration: m(withTarget),
          claim: bound,
          stagingClaim: terminating(staging),
          helperClaim: terminating(helper),
          stagingVolume: targetVolume({
            policy: 'Retain',
            originalPolicy: 'Delete',
            claimRef: { name: CLAIM, uid: REPLACEMENT_UID },
          }),
        }),
        { kind: 'restoreVolumePolicy', volumeName: TARGET_PV, policy: 'Retain' },
      ],
      [
        'DeleteAfterVerify: the gates wait for the helper claim to be gone (the source must be Released to go)',
        world({
          ...base,
          migration: m(withTarget, { sourceRetention: 'DeleteAfterVerify', verify: 'checksum' }),
          claim: bound,
          stagingClaim: undefined,
          helperClaim: terminating(helper),
          stagingVolume: targetVolume({ claimRef: { name: CLAIM, uid: REPLACEMENT_UID } }),
        }),
        { kind: 'wait', reason: 'ClaimTerminating' },
      ],
      [
        "then the new volume's policy goes back to its class's",
        world({
          ...base,
          migration: m(withTarget),
          claim: bound,
          stagingClaim: undefined,
          helperClaim: undefined,
          stagingVolume: targetVolume({
            policy: 'Retain',
            originalPolicy: 'Delete',
            claimRef: { name: CLAIM, uid: REPLACEMENT_UID },
          }),
        }),
        { kind: 'restoreVolumePolicy', volumeName: TARGET_PV, policy: 'Retain' },
      ],
      [
        'then the source is annotated with its migration',
        world({
          ...base,
          migration: m(withTarget),
          claim: bound,
          stagingClaim: undefined,
          helperClaim: undefined,
          sourceVolume: retainedSource({ migrationKey: 'shop/older', claimRef: { name: HELPER } }),
          stagingVolume: targetVolume({ claimRef: { name: CLAIM, uid: REPLACEMENT_UID } }),
        }),
        { kind: 'annotateVolume', volumeName: SOURCE_PV, annotations: { [ANNOTATION_MIGRATION]: KEY } },
      ],
      [
        'then the gates are lifted',
        world({
          ...base,
          migration: m(withTarget),
          claim: bound,
          stagingClaim: undefined,
          helperClaim: undefined,
          stagingVolume: targetVolume({ claimRef: { name: CLAIM, uid: REPLACEMENT_UID } }),
        }),
        { kind: 'liftGates', pods: ['app-0'], event: { reason: 'GateLifted', message: 'released app-0' } },
      ],
    ];
    for (const [name, w, expected] of steps) check(t, w, expected, name);
    const last = plan(
      world({
        ...base,
        migration: m(withTarget),
        claim: bound,
        stagingClaim: undefined,
        helperClaim: undefined,
        consumers: [pod('app-0', { node: 'node-1' })],
        stagingVolume: targetVolume({ claimRef: { name: CLAIM, uid: REPLACEMENT_UID } }),
      }),
    );
    t.same(
      last,
      {
        kind: 'setPhase',
        phase: 'Succeeded',
        status: {
          completionTime: NOW.toISOString(),
          message: 'migrated to fast; old volume pv-source kept (Released, Retain)',
          downtimeSeconds: 60,
        },
        event: {
          type: 'Normal',
          reason: 'Succeeded',
          message: 'claim data is on fast (volume pv-target); downtime 60.0 s; old volume pv-source kept',
        },
      },
      'released: Succeeded, downtime from the first gated pod',
    );
    check(
      t,
      world({
        ...base,
        migration: m({ ...withTarget, gatedAt: undefined }),
        claim: bound,
        stagingClaim: undefined,
        helperClaim: undefined,
        consumers: [],
        stagingVolume: targetVolume({ claimRef: { name: CLAIM, uid: REPLACEMENT_UID } }),
      }),
      { kind: 'setPhase', phase: 'Succeeded', status: { downtimeSeconds: 50 } },
      'no gated-at: downtime from the cutover start',
    );
    check(
      t,
      world({
        ...base,
        targetClass: undefined,
        migration: m(withTarget),
        claim: bound,
        stagingClaim: undefined,
        helperClaim: undefined,
        stagingVolume: targetVolume({
          policy: 'Retain',
          originalPolicy: 'Delete',
          claimRef: { name: CLAIM, uid: REPLACEMENT_UID },
        }),
      }),
      { kind: 'restoreVolumePolicy', policy: 'Delete' },
      'the class gone: the recorded policy',
    );
    t.end();
  },
);

t.test(
  'RollingBack: copy pods, replacement, helper, source rebound, original restored, staging, gates, RolledBack',
  (t) => {
    const m = (status: VolumeMigrationStatus = {}) =>
      migration({
        phase: 'RollingBack',
        spec: { abort: true },
        status: prepared({ cutoverStartTime: NOW.toISOString(), ...status }),
      });
    const gated = [pod('app-0', { gated: true })];
    const onHelper = retainedSource({ claimRef: { name: HELPER, uid: 'uid-helper' } });
    const staging = claimWithVolume(STAGING, TARGET_PV);
    const helper = claimWithVolume(HELPER, SOURCE_PV);
    const steps: [string, World, Expect][] = [
      [
        'the final copy pod is deleted first',
        world({
          migration: m(),
          claim: replacementClaim(),
          sourceVolume: onHelper,
          helperClaim: helper,
          stagingClaim: staging,
          consumers: gated,
          copyPods: { final: copyPod('final', { phase: 'Running' }) },
        }),
        { kind: 'deleteCopyPod', pass: 'final' },
      ],
      [
        'the replacement claim is deleted, by uid',
        world({
          migration: m(),
          claim: replacementClaim(),
          sourceVolume: onHelper,
          helperClaim: helper,
          stagingClaim: staging,
          consumers: gated,
        }),
        { kind: 'deleteClaim', name: CLAIM, uid: REPLACEMENT_UID, why: 'replacement' },
      ],
      [
        'the replacement terminating: wait',
        world({
          migration: m(),
          claim: replacementClaim({ terminating: true }),
          sourceVolume: onHelper,
          helperClaim: helper,
          stagingClaim: staging,
          consumers: gated,
        }),
        { kind: 'wait', reason: 'ClaimTerminating' },
      ],
      [
        'an unrewritten claim of the name goes too',
        world({
          migration: m(),
          claim: unrewrittenClaim(),
          sourceVolume: onHelper,
          helperClaim: helper,
          consumers: gated,
        }),
        { kind: 'deleteClaim', why: 'replacement' },
      ],
      [
        'then the helper claim',
        world({ migration: m(), sourceVolume: onHelper, helperClaim: helper, stagingClaim: staging, consumers: gated }),
        { kind: 'deleteClaim', name: HELPER, why: 'helper' },
      ],
      [
        'then the source PV points at the claim name again, no uid',
        world({ migration: m(), sourceVolume: onHelper, stagingClaim: staging, consumers: gated }),
        {
          kind: 'rebindVolume',
          volumeName: SOURCE_PV,
          claimRef: { apiVersion: 'v1', kind: 'PersistentVolumeClaim', namespace: NS, name: CLAIM },
        },
      ],
      [
        "a claimRef with the deleted original's uid is cleared too",
        world({ migration: m(), sourceVolume: retainedSource(), stagingClaim: staging, consumers: gated }),
        { kind: 'rebindVolume', volumeName: SOURCE_PV },
      ],
      [
        'then the original claim is recreated on its volume',
        world({
          migration: m(),
          sourceVolume: retainedSource({ claimRef: { name: CLAIM } }),
          stagingClaim: staging,
          consumers: gated,
        }),
        {
          kind: 'createClaim',
          role: 'restored',
          claim: {
            metadata: { name: CLAIM, labels: { app: 'shop' } },
            spec: { volumeName: SOURCE_PV, storageClassName: 'standard' },
          },
          event: { reason: 'OriginalRestored' },
        },
      ],
      [
        'restored, not yet Bound: wait',
        world({
          migration: m(),
          claim: restoredClaim('Pending'),
          sourceVolume: retainedSource({ claimRef: { name: CLAIM } }),
          stagingClaim: staging,
          consumers: gated,
        }),
        { kind: 'wait', reason: 'RestoreBinding' },
      ],
      [
        'a claimRef to an old uid while the restored claim exists: its uid',
        world({
          migration: m(),
          claim: restoredClaim('Pending'),
          sourceVolume: retainedSource({ claimRef: { name: CLAIM, uid: ORIGINAL_UID } }),
          consumers: gated,
        }),
        { kind: 'rebindVolume', claimRef: { name: CLAIM, uid: 'c1a1m000-0000-4000-8000-000000000004' } },
      ],
      [
        'restored and Bound: the staging claim goes',
        world({
          migration: m(),
          claim: restoredClaim(),
          sourceVolume: retainedSource({ claimRef: { name: CLAIM, uid: 'c1a1m000-0000-4000-8000-000000000004' } }),
          stagingClaim: staging,
          consumers: gated,
        }),
        { kind: 'deleteClaim', name: STAGING, why: 'staging' },
      ],
      [
        'then the gates are lifted',
        world({
          migration: m(),
          claim: restoredClaim(),
          sourceVolume: retainedSource({ claimRef: { name: CLAIM, uid: 'c1a1m000-0000-4000-8000-000000000004' } }),
          consumers: gated,
        }),
        { kind: 'liftGates', pods: ['app-0'] },
      ],
      [
        'then RolledBack',
        world({
          migration: m(),
          claim: restoredClaim(),
          sourceVolume: retainedSource({ claimRef: { name: CLAIM, uid: 'c1a1m000-0000-4000-8000-000000000004' } }),
        }),
        {
          kind: 'setPhase',
          phase: 'RolledBack',
          status: { completionTime: NOW.toISOString() },
          event: { reason: 'RolledBack', message: 'claim data is back on its original volume pv-source' },
        },
      ],
      [
        'aborted before the original was deleted: nothing to rebind, just clean up',
        world({
          migration: m(),
          claim: originalClaim(),
          sourceVolume: retainedSource(),
          stagingClaim: staging,
          consumers: gated,
        }),
        { kind: 'deleteClaim', name: STAGING, why: 'staging' },
      ],
      [
        'the source volume gone: Held (pods stay gated), RollbackImpossible',
        world({ migration: m(), consumers: gated }),
        { kind: 'setPhase', phase: 'Held', event: { type: 'Warning', reason: 'RollbackImpossible' } },
      ],
    ];
    for (const [name, w, expected] of steps) check(t, w, expected, name);
    const restored = plan(world({ migration: m(), sourceVolume: retainedSource({ claimRef: { name: CLAIM } }) }));
    if (restored.kind === 'createClaim') {
      t.notOk(restored.claim.spec?.dataSourceRef, 'the restored claim has no data source');
      t.same(
        restored.claim.metadata?.annotations,
        { 'team.example/owner': 'orders', 'pvshift.io/target-storage-class': 'fast', [ANNOTATION_MIGRATION]: NAME },
        "the original's annotations, without the binding ones",
      );
    }
    t.end();
  },
);

t.test('finished migrations tidy up', (t) => {
  const finished = (phase: Phase, extra: { spec?: object; status?: VolumeMigrationStatus; deleting?: boolean } = {}) =>
    migration({
      phase,
      spec: extra.spec ?? {},
      status: prepared(extra.status ?? {}),
      ...(extra.deleting ? { deleting: true } : {}),
    });
  const staging = claimWithVolume(STAGING, TARGET_PV);
  for (const phase of ['Succeeded', 'RolledBack', 'Aborted', 'Failed'] as const) {
    check(
      t,
      world({ migration: finished(phase), copyPods: { presync: copyPod('presync', { phase: 'Running' }) } }),
      { kind: 'deleteCopyPod', pass: 'presync' },
      `${phase}: a copy pod left is deleted`,
    );
  }
  check(
    t,
    world({ migration: finished('Aborted'), stagingClaim: staging }),
    { kind: 'deleteClaim', name: STAGING, why: 'staging' },
    'Aborted: the staging claim is deleted',
  );
  const going = { ...staging, metadata: { ...staging.metadata, deletionTimestamp: NOW } };
  const outcome = finished('Aborted', { status: { message: 'aborted before cutover; cleaning up' } });
  check(
    t,
    world({ migration: outcome, stagingClaim: going }),
    { kind: 'wait', message: 'aborted before cutover; cleaning up', afterMs: 1000 },
    'a staging claim already going (pvc-protection) is waited for, not deleted again, and the message stays',
  );
  const leaving = copyPod('presync', { phase: 'Running' });
  leaving.metadata.deletionTimestamp = NOW;
  check(
    t,
    world({ migration: outcome, copyPods: { presync: leaving } }),
    { kind: 'wait', message: 'aborted before cutover; cleaning up' },
    'a copy pod in its grace period alike',
  );
  check(
    t,
    world({ migration: finished('Failed'), stagingClaim: staging }),
    { kind: 'deleteClaim', name: STAGING, why: 'staging' },
    'Failed before cutover: the staging claim is deleted',
  );
  check(
    t,
    world({
      migration: finished('Failed', { status: { cutoverStartTime: NOW.toISOString() } }),
      stagingClaim: staging,
      namespaceLabelled: false,
    }),
    { kind: 'removeFinalizer' },
    'Failed after cutover (rollback impossible): the staging volume may be the only full copy, kept',
  );
  check(
    t,
    world({ migration: finished('Succeeded'), stagingClaim: staging, namespaceLabelled: false }),
    { kind: 'removeFinalizer' },
    'Succeeded: no staging claim is touched',
  );

  const onClaim = retainedSource();
  const claim = originalClaim();
  check(
    t,
    world({ migration: finished('Aborted'), claim, sourceVolume: onClaim }),
    { kind: 'restoreVolumePolicy', volumeName: SOURCE_PV, policy: 'Delete', resourceVersion: `rv-${SOURCE_PV}` },
    "Aborted: the source policy is the user's again (guarded by resourceVersion)",
  );
  check(
    t,
    world({ migration: finished('RolledBack'), claim, sourceVolume: onClaim }),
    { kind: 'restoreVolumePolicy', policy: 'Delete' },
    'RolledBack: so is it',
  );
  check(
    t,
    world({ migration: finished('Failed'), claim, sourceVolume: onClaim }),
    { kind: 'restoreVolumePolicy', policy: 'Delete' },
    'Failed: so is it',
  );
  check(
    t,
    world({ migration: finished('Failed'), sourceVolume: onClaim, namespaceLabelled: false }),
    { kind: 'removeFinalizer' },
    'the claim deleted by its user: the old volume stays Retain (nothing restored onto a Released volume)',
  );
  check(
    t,
    world({
      migration: finished('Failed'),
      claim,
      sourceVolume: retainedSource({ migrationUid: 'uid-other' }),
      namespaceLabelled: false,
    }),
    { kind: 'removeFinalizer' },
    'a policy recorded by another migration is not restored by this one',
  );
  check(
    t,
    world({
      migration: finished('Failed'),
      claim,
      sourceVolume: onClaim,
      siblings: [finished('Failed'), migration({ name: 'live', phase: 'CuttingOver', status: prepared() })],
      namespaceLabelled: true,
    }),
    { kind: 'removeFinalizer' },
    'never while another migration of the claim is unfinished (it may be between deleting the claim and rebinding)',
  );
  check(
    t,
    world({
      migration: finished('Succeeded'),
      sourceVolume: retainedSource({ claimRef: { name: HELPER }, phase: 'Released' }),
      namespaceLabelled: false,
    }),
    { kind: 'removeFinalizer' },
    'Succeeded: the old volume stays Retain',
  );
  check(
    t,
    world({
      migration: finished('Failed'),
      sourceVolume: retainedSource({ claimRef: { name: HELPER } }),
      namespaceLabelled: false,
    }),
    { kind: 'removeFinalizer' },
    'a source still on the helper claim keeps Retain',
  );

  const pods = [
    pod('mine', { gated: true }),
    pod('both', { gated: true, migrations: `logs,${NAME}` }),
    pod('theirs', { gated: true, migrations: 'logs' }),
    pod('running', { node: 'node-1' }),
  ];
  check(
    t,
    world({ migration: finished('Aborted'), consumers: pods }),
    { kind: 'liftGates', pods: ['mine', 'both'] },
    'gates lifted only for pods that name this migration',
  );

  const verified = { copies: [{ ...FINAL_COPY, verified: 'checksum' as const }] };
  const released = retainedSource({ claimRef: { name: HELPER, uid: 'uid-helper' }, phase: 'Released' });
  const dav = { sourceRetention: 'DeleteAfterVerify', verify: 'checksum' };
  check(
    t,
    world({ migration: finished('Succeeded', { spec: dav, status: verified }), sourceVolume: released }),
    {
      kind: 'setVolumePolicy',
      volumeName: SOURCE_PV,
      policy: 'Delete',
      event: {
        reason: 'SourceReleased',
        message:
          'copy verified; old volume pv-source handed back to its provisioner for deletion (sourceRetention: DeleteAfterVerify)',
      },
    },
    'DeleteAfterVerify, verified final copy, Released: the source goes back to Delete',
  );
  check(
    t,
    world({
      migration: finished('Succeeded', { spec: dav, status: { copies: [{ ...FINAL_COPY, verified: 'none' }] } }),
      sourceVolume: released,
      namespaceLabelled: false,
    }),
    { kind: 'removeFinalizer' },
    'DeleteAfterVerify with verify none: kept',
  );
  check(
    t,
    world({
      migration: finished('Succeeded', { spec: dav, status: { copies: [{ ...PRESYNC_COPY, verified: 'metadata' }] } }),
      sourceVolume: released,
      namespaceLabelled: false,
    }),
    { kind: 'removeFinalizer' },
    'DeleteAfterVerify with only a pre-sync recorded: kept',
  );
  check(
    t,
    world({
      migration: finished('Succeeded', { spec: dav, status: verified }),
      sourceVolume: retainedSource({ claimRef: { name: HELPER, uid: 'uid-helper' } }),
      namespaceLabelled: false,
    }),
    { kind: 'removeFinalizer' },
    'DeleteAfterVerify while the source is still Bound: not yet',
  );
  check(
    t,
    world({
      migration: finished('Succeeded', { spec: dav, status: verified }),
      sourceVolume: volume(SOURCE_PV, { policy: 'Delete', phase: 'Released' }),
      namespaceLabelled: false,
    }),
    { kind: 'removeFinalizer' },
    'DeleteAfterVerify already Delete: done',
  );
  check(
    t,
    world({
      migration: finished('RolledBack', { spec: dav, status: verified }),
      sourceVolume: retainedSource({ claimRef: { name: HELPER }, phase: 'Released' }),
      namespaceLabelled: false,
    }),
    { kind: 'removeFinalizer' },
    'DeleteAfterVerify on a rollback: never',
  );
  check(
    t,
    world({ migration: finished('Succeeded', { status: verified }), sourceVolume: released, namespaceLabelled: false }),
    { kind: 'removeFinalizer' },
    'Keep: kept',
  );

  check(
    t,
    world({ migration: finished('Succeeded') }),
    { kind: 'labelNamespace', active: false },
    'no sibling active: the namespace label goes',
  );
  check(
    t,
    world({
      migration: finished('Succeeded'),
      siblings: [finished('Succeeded'), migration({ name: 'logs', phase: 'PreSyncing' })],
    }),
    { kind: 'removeFinalizer' },
    'a sibling still active: the label stays',
  );
  check(
    t,
    world({
      migration: finished('Succeeded'),
      siblings: [finished('Succeeded'), migration({ name: 'logs', phase: 'Failed' })],
    }),
    { kind: 'labelNamespace', active: false },
    'finished siblings do not hold it',
  );
  check(
    t,
    world({ migration: finished('Succeeded', { deleting: true }), namespaceLabelled: false }),
    { kind: 'removeFinalizer' },
    'deleting: the finalizer goes last',
  );
  check(
    t,
    world({ migration: finished('Succeeded'), namespaceLabelled: false }),
    { kind: 'removeFinalizer' },
    'not deleting: a finished migration needs no finalizer (an uninstalled pvshift leaves nothing undeletable)',
  );
  const deletingNoFinalizer = migration({ phase: 'Succeeded', status: prepared(), deleting: true, finalizer: false });
  check(
    t,
    world({ migration: deletingNoFinalizer, namespaceLabelled: false }),
    { kind: 'done' },
    'deleting without the finalizer: done',
  );
  t.ok(FINALIZER.startsWith('pvshift.io/'));
  t.end();
});

t.test('abort (spec.abort or deletion) in each phase goes where it should', (t) => {
  const ready = { claim: originalClaim(), sourceVolume: retainedSource(), consumers: [pod('app-0', { gated: true })] };
  const expected: [Phase, Expect][] = [
    ['Pending', { kind: 'setPhase', phase: 'Aborted', event: { reason: 'Aborted' } }],
    ['PreSyncing', { kind: 'setPhase', phase: 'Aborted' }],
    ['WaitingForCutover', { kind: 'setPhase', phase: 'Aborted' }],
    ['CuttingOver', { kind: 'setPhase', phase: 'RollingBack', event: { reason: 'RollingBack' } }],
    ['Populating', { kind: 'setPhase', phase: 'RollingBack', event: { reason: 'RollingBack' } }],
  ];
  for (const [phase, step] of expected) {
    check(
      t,
      world({ ...ready, migration: migration({ phase, spec: { abort: true }, status: prepared() }) }),
      step,
      `abort in ${phase} → ${String(step.phase)}`,
    );
    check(
      t,
      world({ ...ready, migration: migration({ phase, status: prepared(), deleting: true }) }),
      step,
      `deleted in ${phase} → ${String(step.phase)}`,
    );
  }
  const binding = world({
    migration: migration({
      phase: 'Binding',
      spec: { abort: true },
      status: prepared({ targetVolumeName: TARGET_PV }),
    }),
    claim: replacementClaim(),
    stagingClaim: claimWithVolume(STAGING, TARGET_PV),
    stagingVolume: volume(TARGET_PV, { policy: 'Retain', claimRef: { name: CLAIM, uid: REPLACEMENT_UID } }),
    sourceVolume: retainedSource({ claimRef: { name: HELPER } }),
  });
  check(
    t,
    binding,
    { kind: 'setPhase', phase: 'RollingBack' },
    'abort in Binding before the replacement is bound: roll back (the original is one step away)',
  );
  const bound = world({
    migration: migration({
      phase: 'Binding',
      spec: { abort: true },
      status: prepared({ targetVolumeName: TARGET_PV }),
    }),
    claim: replacementClaim({ phase: 'Bound', volumeName: TARGET_PV }),
    stagingVolume: volume(TARGET_PV, { policy: 'Delete', claimRef: { name: CLAIM, uid: REPLACEMENT_UID } }),
    sourceVolume: retainedSource({ claimRef: { name: HELPER } }),
    consumers: [pod('app-0', { gated: true })],
  });
  check(t, bound, { kind: 'liftGates' }, 'abort in Binding once the replacement is bound to the copy: it finishes');
  check(
    t,
    world({ ...ready, migration: migration({ phase: 'RollingBack', spec: { abort: true }, status: prepared() }) }),
    { kind: 'liftGates' },
    'RollingBack carries on',
  );
  check(
    t,
    world({
      migration: migration({ phase: 'Aborted', spec: { abort: true }, status: prepared() }),
      namespaceLabelled: false,
    }),
    { kind: 'removeFinalizer' },
    'a finished migration stays finished',
  );
  t.equal(UID.length, 36, 'fixture uid has the length of a real one');
  t.end();
});

t.test('plan does not modify the world it is given', (t) => {
  const w = world({
    migration: migration({ phase: 'CuttingOver', status: prepared() }),
    sourceVolume: retainedSource(),
    consumers: [pod('app-0', { gated: true })],
  });
  const copy = structuredClone(w);
  plan(w);
  t.same(w, copy);
  t.end();
});

t.test('WaitingForCutover: a Deployment rollout whose new pod waits behind the gate hands over', (t) => {
  const base = {
    claim: originalClaim(),
    sourceVolume: retainedSource(),
    stagingClaim: claimWithVolume(STAGING, TARGET_PV),
  };
  const status = (extra = {}) => prepared({ copies: [PRESYNC_COPY], ...extra });
  /** A pod of ReplicaSet `<deployment>-<hash>`, as the deployment controller makes them. */
  const revision = (name: string, deployment: string, hash: string, options: Parameters<typeof pod>[1]) => {
    const p = pod(name, options);
    p.metadata.labels = { app: deployment, 'pod-template-hash': hash };
    p.metadata.ownerReferences = [
      { apiVersion: 'apps/v1', kind: 'ReplicaSet', name: `${deployment}-${hash}`, uid: `rs-${hash}`, controller: true },
    ];
    return p;
  };
  const oldPod = revision('web-7d4-a', 'web', '7d4', { node: 'node-1' });
  const newPod = revision('web-9f1-b', 'web', '9f1', { gated: true, gatedAt: '2024-05-01T11:59:00Z' });
  const waiting = (extra = {}) => migration({ phase: 'WaitingForCutover', status: status(extra) });

  const first = plan(world({ ...base, migration: waiting(), consumers: [oldPod, newPod] }));
  t.match(
    first,
    { kind: 'patchStatus', status: { handoverFrom: ['web-7d4-a'] }, event: { reason: 'RolloutHandover' } },
    'first the handover is recorded',
  );
  t.match(
    first.kind === 'patchStatus' ? first.status.message : '',
    /^Deployment web: new pod web-9f1-b waits behind pvshift's gate while old pod web-7d4-a holds the claim/,
    'and says why',
  );
  check(
    t,
    world({ ...base, migration: waiting({ handoverFrom: ['web-7d4-a'] }), consumers: [oldPod, newPod] }),
    { kind: 'evictPods', pods: ['web-7d4-a'] },
    'then the old pod is evicted (a PodDisruptionBudget still has its say)',
  );
  const leaving = revision('web-7d4-a', 'web', '7d4', { node: 'node-1', terminating: true });
  check(
    t,
    world({ ...base, migration: waiting({ handoverFrom: ['web-7d4-a'] }), consumers: [leaving, newPod] }),
    { kind: 'wait', reason: 'RolloutHandover' },
    'an old pod on its way out is waited for, not evicted again',
  );
  const cutover = plan(world({ ...base, migration: waiting({ handoverFrom: ['web-7d4-a'] }), consumers: [newPod] }));
  t.match(cutover, { kind: 'setPhase', phase: 'CuttingOver', status: { gatedAt: NOW.toISOString() } }, 'gone: cutover');
  t.equal(
    cutover.kind === 'setPhase' && cutover.status.gatedAt,
    NOW.toISOString(),
    'downtime starts when the old pod stopped, not at the gate (it served until then)',
  );
  const plain = plan(world({ ...base, migration: waiting(), consumers: [newPod] }));
  t.equal(plain.kind === 'setPhase' && plain.status.gatedAt, '2024-05-01T11:59:00Z', 'without a handover: at the gate');

  const otherApp = revision('api-5c2-c', 'api', '5c2', { node: 'node-1' });
  const otherWait = plan(world({ ...base, migration: waiting(), consumers: [otherApp, newPod] }));
  t.match(otherWait, { kind: 'wait', reason: 'WaitingForCutover' }, "another Deployment's pod is not evicted");
  t.match(
    otherWait.kind === 'wait' ? otherWait.message : '',
    /^pod web-9f1-b waits behind pvshift's gate while api-5c2-c still uses the claim; the cutover starts when it goes/,
    'the wait says exactly what holds it',
  );
  const sameRevision = revision('web-9f1-c', 'web', '9f1', { node: 'node-1' });
  check(
    t,
    world({ ...base, migration: waiting(), consumers: [sameRevision, newPod] }),
    { kind: 'wait', reason: 'WaitingForCutover' },
    'a running pod of the same revision is no predecessor',
  );
  const bare = pod('standalone', { node: 'node-1' });
  check(
    t,
    world({ ...base, migration: waiting(), consumers: [oldPod, bare, newPod] }),
    { kind: 'wait', reason: 'WaitingForCutover' },
    'a pod of no Deployment beside the old one: not all are predecessors, nothing evicted',
  );
  const forged = revision('web-7d4-x', 'web', '7d4', { node: 'node-1' });
  forged.metadata.ownerReferences = [
    { apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'other-7d4', uid: 'x', controller: true },
  ];
  forged.metadata.labels = { 'pod-template-hash': 'zzz' };
  check(
    t,
    world({ ...base, migration: waiting(), consumers: [forged, newPod] }),
    { kind: 'wait', reason: 'WaitingForCutover' },
    'a hash that does not name its ReplicaSet is no revision',
  );
  t.end();
});

t.test('WaitingForCutover: a StatefulSet policy with cutover Evict moves one replica at a time, highest first', (t) => {
  const WORKLOAD = { 'pvshift.io/workload': 'StatefulSet/db' };
  const base = {
    claim: originalClaim(),
    sourceVolume: retainedSource(),
    stagingClaim: claimWithVolume(STAGING, TARGET_PV),
    consumers: [pod('app-0', { node: 'node-1' })],
  };
  // This migration is the claim `data` (ordinal -1: no number): peers are named data-db-N.
  const me = (spec: Record<string, unknown> = { cutover: 'Evict' }) => {
    const m = migration({ phase: 'WaitingForCutover', spec, status: SYNCED });
    m.metadata.annotations = { ...WORKLOAD };
    m.spec.claimName = 'data-db-0';
    return m;
  };
  const peer = (claimName: string, phase: Phase, workload = WORKLOAD) => {
    const p = migration({ name: claimName, phase });
    p.metadata.annotations = { ...workload };
    p.spec.claimName = claimName;
    return p;
  };
  const turn = (siblings: VolumeMigration[], extra: Partial<World> = {}) =>
    plan(world({ ...base, migration: me(), siblings, ...extra }));
  t.match(turn([]), { kind: 'evictPods' }, 'alone: its turn');
  t.match(
    turn([peer('data-db-1', 'Populating')]),
    { kind: 'wait', reason: 'WaitingForTurn', message: /one replica at a time: data-db-1 is cutting over/ },
    'another replica is down: wait',
  );
  t.match(
    turn([peer('data-db-2', 'WaitingForCutover')]),
    { kind: 'wait', reason: 'WaitingForTurn', message: /highest ordinal first: waiting for data-db-2/ },
    'a higher ordinal not moved yet: it goes first',
  );
  t.match(
    turn([peer('data-db-2', 'Succeeded'), peer('data-db-1', 'Succeeded')]),
    { kind: 'evictPods' },
    'the higher ones moved: its turn',
  );
  t.match(
    turn([peer('data-db-2', 'Succeeded')], { movedReplicasReady: false }),
    { kind: 'wait', reason: 'WaitingForTurn', message: /replicas already moved to be Ready/ },
    'the replica moved before it not Ready yet: wait',
  );
  t.match(
    turn([peer('data-db-2', 'WaitingForCutover', { 'pvshift.io/workload': 'StatefulSet/other' })]),
    { kind: 'evictPods' },
    "another workload's migrations do not count",
  );
  t.match(
    turn([peer('data-db-2', 'Failed')]),
    { kind: 'evictPods' },
    'a higher ordinal that ended (Failed) does not block',
  );
  t.end();
});
