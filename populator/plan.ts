// The migration's state machine as a pure function: the world in, the one next
// step out. Reconcile does the step and calls plan again; nothing here does I/O,
// so every branch is a table-driven unit test.
//
// Order is the safety argument: the source PV is made Retain (Pending) before
// any claim of the user is deleted (CuttingOver), the replacement claim only
// binds after the final copy verified (Binding), and scheduling gates are lifted
// last. Each step is idempotent, so replaying any prefix after a crash is safe.
import type { V1ObjectReference, V1PersistentVolume, V1PersistentVolumeClaim, V1Pod } from '@kubernetes/client-node';
import {
  ANNOTATION_COPY_ATTEMPT,
  ANNOTATION_GATED_AT,
  ANNOTATION_MIGRATION,
  ANNOTATION_MIGRATION_UID,
  ANNOTATION_ORIGINAL_RECLAIM_POLICY,
  API_GROUP,
  FINALIZER,
  LABEL_MIGRATION_UID,
  LABEL_NAMESPACE_ACTIVE,
  MIGRATION_KIND,
  SCHEDULING_GATE,
  sourceHelperClaimName,
  stagingClaimName,
} from '../src/names.js';
import { formatBytes, parseQuantity } from '../src/quantity.js';
import { replacementClaim, restoredClaim, targetSizeOf, targetSpecOf } from '../src/replacement-claim.js';
import {
  isTerminal,
  phaseOf,
  type ClaimSnapshot,
  type CopyResult,
  type KeptVolume,
  type Phase,
  type VolumeMigration,
  type VolumeMigrationStatus,
} from '../src/volume-migration.js';
import { classifyRunnerExit } from '../src/runner-protocol.js';
import { helperClaim, snapshotOf, stagingClaim } from './claims.js';
import { placementConflict } from './placement.js';
import type { Pass, RunnerProgress, RunnerSummary, Stored, World } from './world.js';

export type ClaimRole = 'staging' | 'helper' | 'replacement' | 'restored';

export interface EventNote {
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
}

export type Step =
  | { kind: 'addFinalizer' }
  | { kind: 'removeFinalizer' }
  | { kind: 'setPhase'; phase: Phase; status: VolumeMigrationStatus; event: EventNote }
  | { kind: 'patchStatus'; status: VolumeMigrationStatus; event?: EventNote }
  // Every PV write carries the resourceVersion the plan saw: a PV changed since is a conflict, never a blind overwrite.
  | {
      kind: 'retainVolume';
      volumeName: string;
      resourceVersion: string;
      originalPolicy: string;
      migrationKey: string;
      migrationUid: string;
      event?: EventNote;
    }
  | { kind: 'restoreVolumePolicy'; volumeName: string; resourceVersion: string; policy: string }
  | { kind: 'setVolumePolicy'; volumeName: string; resourceVersion: string; policy: string; event: EventNote }
  | { kind: 'annotateVolume'; volumeName: string; resourceVersion: string; annotations: Record<string, string | null> }
  | { kind: 'labelNamespace'; active: boolean }
  | { kind: 'createClaim'; role: ClaimRole; claim: V1PersistentVolumeClaim; event?: EventNote }
  | { kind: 'deleteClaim'; name: string; uid: string; why: string; event?: EventNote }
  /** Drops the ownerReference of a claim pvshift made, so deleting the migration cannot collect what it holds. */
  | { kind: 'disownClaim'; name: string; uid: string; resourceVersion: string }
  | { kind: 'createCopyPod'; pass: Pass; event?: EventNote }
  | { kind: 'deleteCopyPod'; pass: Pass; name: string; event?: EventNote }
  | { kind: 'rebindVolume'; volumeName: string; resourceVersion: string; claimRef: V1ObjectReference; event?: EventNote }
  | { kind: 'evictPods'; pods: string[]; event: EventNote }
  | { kind: 'liftGates'; pods: string[]; event?: EventNote }
  /** Nothing to write; the message is shown, and the event (if any) is recorded once, when the message is new. */
  | { kind: 'wait'; reason: string; message: string; afterMs: number; progress?: RunnerProgress; event?: EventNote }
  | { kind: 'done' };

const WAIT_SHORT = 1000;
const WAIT_COPY = 2000;
const WAIT_HELD = 30_000;

// --- small readers -----------------------------------------------------------

export function migrationKey(m: VolumeMigration): string {
  return `${m.metadata.namespace}/${m.metadata.name}`;
}

function uidOf(m: VolumeMigration): string {
  return m.metadata.uid ?? '';
}

function hasFinalizer(m: VolumeMigration): boolean {
  return (m.metadata.finalizers ?? []).includes(FINALIZER);
}

function isGated(pod: V1Pod): boolean {
  return (pod.spec?.schedulingGates ?? []).some((g) => g.name === SCHEDULING_GATE);
}

/** pvc-protection counts a pod as a user once it is scheduled, in any phase, until it is deleted. */
function isScheduled(pod: V1Pod): boolean {
  return !!pod.spec?.nodeName;
}

export function isFinished(pod: V1Pod | undefined): boolean {
  return pod?.status?.phase === 'Succeeded' || pod?.status?.phase === 'Failed';
}

/** Pre-sync needs a second mount of the live source; ReadWriteOncePod forbids it. */
export function isPreSyncEnabled(m: VolumeMigration, snapshot: ClaimSnapshot | undefined): boolean {
  const rwop = (snapshot?.spec.accessModes ?? []).includes('ReadWriteOncePod');
  return m.spec.preSync ?? !rwop;
}

function copyOf(status: VolumeMigrationStatus | undefined, pass: Pass): CopyResult | undefined {
  return (status?.copies ?? []).find((c) => c.pass === pass);
}

function attemptsOf(status: VolumeMigrationStatus | undefined, pass: Pass): number {
  return status?.attempts?.[pass] ?? 0;
}

function rvOf(o: { metadata?: { resourceVersion?: string } } | undefined): string {
  return o?.metadata?.resourceVersion ?? '';
}

/** Deletes a claim plan saw, by uid: a claim of the name made since is not this one. */
function deleteClaim(claim: Stored<V1PersistentVolumeClaim>, why: string, event?: EventNote): Step {
  return { kind: 'deleteClaim', name: claim.metadata.name, uid: claim.metadata.uid, why, ...(event ? { event } : {}) };
}

/** Makes `pv` Retain and stamps it as this migration's, recording its policy; guarded by the resourceVersion plan saw. */
function retain(m: VolumeMigration, pv: Stored<V1PersistentVolume>, event?: EventNote): Step {
  return {
    kind: 'retainVolume',
    volumeName: pv.metadata.name,
    resourceVersion: rvOf(pv),
    originalPolicy: pv.spec?.persistentVolumeReclaimPolicy ?? 'Delete',
    migrationKey: migrationKey(m),
    migrationUid: uidOf(m),
    ...(event ? { event } : {}),
  };
}

/** Invariant 6: a volume is this migration's when pvshift stamped it with the migration's UID and it is claimed in its namespace. */
export function isStampedBy(pv: V1PersistentVolume | undefined, m: VolumeMigration): boolean {
  return (
    !!pv &&
    !!uidOf(m) &&
    pv.metadata?.annotations?.[ANNOTATION_MIGRATION_UID] === uidOf(m) &&
    pv.spec?.claimRef?.namespace === m.metadata.namespace
  );
}

/** The user's claim and its volume point at each other (name, namespace and uid): the one volume a migration may take. */
function isBoundTo(pv: V1PersistentVolume | undefined, claim: V1PersistentVolumeClaim | undefined): boolean {
  const ref = pv?.spec?.claimRef;
  return (
    !!pv &&
    !!claim &&
    ref?.namespace === claim.metadata?.namespace &&
    ref?.name === claim.metadata?.name &&
    !!ref?.uid &&
    ref.uid === claim.metadata?.uid &&
    claim.spec?.volumeName === pv.metadata?.name
  );
}

/** A claim of pvshift's own for this migration: labelled with its UID (the name alone could be taken first by anyone). */
function isMadeBy(claim: V1PersistentVolumeClaim | undefined, m: VolumeMigration): boolean {
  return !!claim && claim.metadata?.labels?.[LABEL_MIGRATION_UID] === uidOf(m);
}

/** Whether the migration's status names volumes it cannot prove are its own: status is a record, never an authority. */
function provenanceProblem(w: World): string | undefined {
  const m = w.migration;
  const status = m.status ?? {};
  const ns = m.metadata.namespace;
  const source = w.sourceVolume;
  if (status.sourceVolumeName && source && !isStampedBy(source, m)) {
    return (
      `volume ${source.metadata.name} (named in status.sourceVolumeName) does not carry this migration's ` +
      `${ANNOTATION_MIGRATION_UID} or is claimed outside namespace ${ns}`
    );
  }
  for (const claim of [w.stagingClaim, w.helperClaim]) {
    if (claim && !isMadeBy(claim, m)) {
      return (
        `claim ${ns}/${claim.metadata.name} has the name of one of this migration's claims but was not made by it ` +
        `(no ${LABEL_MIGRATION_UID}=${uidOf(m)})`
      );
    }
  }
  const target = w.stagingVolume;
  if (target) {
    const ref = target.spec?.claimRef;
    // Claimed in our namespace by our staging claim (its name carries our UID; the
    // claim itself may be gone) or by our replacement.
    const claimedByOurs =
      ref?.namespace === ns &&
      (ref.name === stagingClaimName(uidOf(m)) || (!!ref.uid && belongsToMigration(w.claim, m) && ref.uid === w.claim?.metadata.uid));
    if (!claimedByOurs && !isStampedBy(target, m)) {
      return (
        `volume ${target.metadata.name} (the target) is neither bound to this migration's claims in namespace ${ns} ` +
        'nor stamped with its UID'
      );
    }
  }
  return undefined;
}

function belongsToMigration(claim: V1PersistentVolumeClaim | undefined, m: VolumeMigration): boolean {
  const ref = claim?.spec?.dataSourceRef;
  return ref?.apiGroup === API_GROUP && ref.kind === MIGRATION_KIND && ref.name === m.metadata.name;
}

function snapshotUid(status: VolumeMigrationStatus | undefined): string | undefined {
  return status?.originalClaim?.uid;
}

// --- phases -----------------------------------------------------------------

function normal(reason: string, message: string): EventNote {
  return { type: 'Normal', reason, message };
}

function warning(reason: string, message: string): EventNote {
  return { type: 'Warning', reason, message };
}

/** Moves to `phase`: the status (a message alone, or fields of it) and the event that says so. */
function toPhase(phase: Phase, status: string | VolumeMigrationStatus, event: EventNote): Step {
  return { kind: 'setPhase', phase, status: typeof status === 'string' ? { message: status } : status, event };
}

function fail(reason: string, message: string): Step {
  return toPhase('Failed', message, warning(reason, message));
}

function wait(reason: string, message: string, afterMs: number): Extract<Step, { kind: 'wait' }> {
  return { kind: 'wait', reason, message, afterMs };
}

/** Phases in which nothing of the user's has changed but the source's reclaim policy. */
const BEFORE_CUTOVER: ReadonlySet<Phase> = new Set(['Pending', 'PreSyncing', 'WaitingForCutover']);

export function plan(w: World): Step {
  const m = w.migration;
  const phase = phaseOf(m);
  const deleting = !!m.metadata.deletionTimestamp;
  // A namespace being deleted takes every claim and pod with it, and refuses new
  // ones: create nothing, let the migration go. Retained volumes stay Retain.
  if (w.namespaceTerminating) return hasFinalizer(m) ? { kind: 'removeFinalizer' } : { kind: 'done' };
  if (!deleting && !hasFinalizer(m) && !isTerminal(phase)) return { kind: 'addFinalizer' };
  if (isTerminal(phase)) return planTerminal(w, phase);
  const problem = provenanceProblem(w);
  if (problem) {
    const message = `${problem}; pvshift changes nothing it cannot prove is this migration's`;
    if (BEFORE_CUTOVER.has(phase)) return fail('VolumeNotOwned', message);
    if (phase === 'Held') return wait('VolumeNotOwned', message, WAIT_HELD);
    return hold(w, 'VolumeNotOwned', message);
  }
  // The webhooks select namespaces by this label; a tool that strips it would
  // let claims and pods through unrewritten and ungated. Put it back at once.
  if (phase !== 'Pending' && !w.namespaceLabelled) return { kind: 'labelNamespace', active: true };
  const abort = !!m.spec.abort || deleting;
  switch (phase) {
    case 'Pending':
      return planPending(w, abort);
    case 'PreSyncing':
      return planPreSync(w, abort);
    case 'WaitingForCutover':
      return planWaiting(w, abort);
    case 'CuttingOver':
      return planCutover(w, abort);
    case 'Populating':
      return planPopulate(w, abort);
    case 'Binding':
      return planBinding(w, abort);
    case 'RollingBack':
      return planRollback(w);
    case 'Held':
      return planHeld(w);
  }
  return { kind: 'done' };
}

/** An older unfinished migration of the same claim: the younger one (by creation, then name) gives way. */
function olderMigrationOfClaim(w: World): VolumeMigration | undefined {
  const m = w.migration;
  const created = (s: VolumeMigration) => String(s.metadata.creationTimestamp ?? '');
  return w.siblings.find(
    (s) =>
      s.spec.claimName === m.spec.claimName &&
      s.metadata.name !== m.metadata.name &&
      !isTerminal(phaseOf(s)) &&
      (phaseOf(s) !== 'Pending' || created(s) < created(m) || (created(s) === created(m) && s.metadata.name < m.metadata.name)),
  );
}

/** Validation: every reason a migration cannot start, before anything is changed. */
export function validate(w: World): { reason: string; message: string } | undefined {
  const m = w.migration;
  const ns = m.metadata.namespace;
  const subject = `claim ${ns}/${m.spec.claimName}`;
  const older = olderMigrationOfClaim(w);
  if (older) {
    return {
      reason: 'DuplicateMigration',
      message: `${subject} is already being migrated by VolumeMigration ${older.metadata.name}; delete one of them`,
    };
  }
  const claim = w.claim;
  if (!claim) return { reason: 'ClaimNotFound', message: `${subject} does not exist` };
  if (claim.status?.phase !== 'Bound' || !claim.spec?.volumeName) {
    return {
      reason: 'ClaimNotBound',
      message: `${subject} is ${claim.status?.phase ?? 'Pending'}, not Bound: there is no volume to copy from`,
    };
  }
  if (!w.sourceVolume) {
    return { reason: 'VolumeNotFound', message: `${subject} is bound to ${claim.spec.volumeName}, which does not exist` };
  }
  if (!isBoundTo(w.sourceVolume, claim)) {
    return {
      reason: 'VolumeNotOwned',
      message:
        `volume ${claim.spec.volumeName} is not bound to ${subject} (its claimRef names another claim): ` +
        'pvshift takes only the volume the claim and the volume agree on',
    };
  }
  const retainedBy = w.sourceVolume.metadata.annotations?.[ANNOTATION_MIGRATION_UID];
  const holder =
    retainedBy && retainedBy !== uidOf(m) ? w.siblings.find((s) => s.metadata.uid === retainedBy && !isTerminal(phaseOf(s))) : undefined;
  if (holder) {
    return {
      reason: 'DuplicateMigration',
      message: `volume ${claim.spec.volumeName} is held by VolumeMigration ${holder.metadata.name}, which has not finished`,
    };
  }
  if ((claim.spec.volumeMode ?? 'Filesystem') === 'Block') {
    return {
      reason: 'BlockVolumeUnsupported',
      message: `${subject} has volumeMode Block; pvshift copies files and supports Filesystem volumes only`,
    };
  }
  if (!w.targetClass) {
    return { reason: 'StorageClassNotFound', message: `target StorageClass ${m.spec.targetStorageClassName} does not exist` };
  }
  const rwop = (claim.spec.accessModes ?? []).includes('ReadWriteOncePod');
  if (rwop && m.spec.preSync === true) {
    return {
      reason: 'PreSyncUnsupported',
      message: `${subject} is ReadWriteOncePod: it cannot be mounted by a copy pod while its application runs; set preSync: false`,
    };
  }
  if ((m.spec.targetAccessModes ?? []).includes('ReadWriteOncePod') && (m.spec.targetAccessModes ?? []).length > 1) {
    return { reason: 'InvalidAccessModes', message: 'ReadWriteOncePod cannot be combined with other access modes' };
  }
  const target = parseQuantity(targetSizeOf(m, claim));
  if (target === undefined || target <= 0) {
    return { reason: 'InvalidSize', message: `target size ${m.spec.targetSize} is not a valid quantity` };
  }
  if (m.spec.sourceRetention === 'DeleteAfterVerify' && m.spec.verify !== 'checksum') {
    return {
      reason: 'InvalidRetention',
      message: 'sourceRetention: DeleteAfterVerify deletes the old volume, so it requires verify: checksum',
    };
  }
  if (!w.fidelity.ok) return { reason: w.fidelity.reason, message: w.fidelity.message };
  return undefined;
}

/** Whether the target is smaller than what the source may hold, so its data must be measured first. */
function isShrinking(w: World): boolean {
  const original = w.migration.status?.originalClaim ?? w.claim;
  const target = parseQuantity(targetSizeOf(w.migration, original));
  const source = parseQuantity(w.sourceVolume?.spec?.capacity?.storage);
  return target !== undefined && source !== undefined && target < source;
}

/** Fails when data of `bytes` does not fit the target with headroom. */
function checkFits(w: World, bytes: number): Step | undefined {
  const target = parseQuantity(targetSizeOf(w.migration, w.migration.status?.originalClaim)) ?? 0;
  const needed = Math.ceil(bytes * (1 + w.settings.sizeHeadroom));
  if (needed <= target) return undefined;
  const headroom = Math.round(w.settings.sizeHeadroom * 100);
  return fail(
    'TargetTooSmall',
    `the claim holds ${formatBytes(bytes)}; with ${headroom}% headroom the target needs ${formatBytes(needed)}, ` +
      `but targetSize is ${formatBytes(target)}`,
  );
}

function planPending(w: World, abort: boolean): Step {
  const m = w.migration;
  const status = m.status ?? {};
  if (abort) return toPhase('Aborted', 'aborted before anything was changed', normal('Aborted', 'migration aborted before cutover'));
  const invalid = validate(w);
  if (invalid) return fail(invalid.reason, invalid.message);
  const source = w.sourceVolume!;
  const claim = w.claim!;
  const policy = source.spec?.persistentVolumeReclaimPolicy ?? 'Delete';
  // Invariant 1: the data's only home is made Retain before anything else. A
  // source Retain already (by the user, or an earlier migration of the claim) is
  // still stamped as this migration's.
  if (policy !== 'Retain') {
    const message = `set reclaim policy of ${source.metadata.name} to Retain (was ${policy})`;
    return retain(m, source, normal('SourceRetained', message));
  }
  if (source.metadata.annotations?.[ANNOTATION_MIGRATION_UID] !== uidOf(m)) return retain(m, source);
  if (!status.originalClaim) {
    return {
      kind: 'patchStatus',
      status: {
        originalClaim: snapshotOf(claim),
        sourceVolumeName: source.metadata.name,
        sourceStorageClassName: source.spec?.storageClassName,
        startTime: w.now.toISOString(),
        ...(w.fidelity.ok ? { copyFidelity: w.fidelity.fidelity } : {}),
      },
    };
  }
  if (!w.namespaceLabelled) return { kind: 'labelNamespace', active: true };
  if (isShrinking(w) && !isPreSyncEnabled(m, status.originalClaim)) {
    const measured = status.usedBytes;
    if (measured === undefined) return planCopy(w, 'measure');
    const tooBig = checkFits(w, measured);
    if (tooBig) return tooBig;
  }
  if (w.copyPods.measure) return { kind: 'deleteCopyPod', pass: 'measure', name: w.copyPods.measure.metadata.name };
  const next: Phase = isPreSyncEnabled(m, status.originalClaim) ? 'PreSyncing' : 'WaitingForCutover';
  const dropped = w.fidelity.ok && w.fidelity.fidelity.dropped.length ? `; ${w.fidelity.note}` : '';
  return toPhase(
    next,
    next === 'PreSyncing' ? 'copying while the application runs' : 'waiting for the consumer pod to be recreated',
    normal(
      'Validated',
      `migration of ${m.spec.claimName} to ${m.spec.targetStorageClassName} validated; source ${source.metadata.name} retained${dropped}`,
    ),
  );
}

function planPreSync(w: World, abort: boolean): Step {
  const m = w.migration;
  const snapshot = m.status?.originalClaim;
  if (abort) return toPhase('Aborted', 'aborted before cutover; cleaning up', normal('Aborted', 'migration aborted during pre-sync'));
  if (!snapshot) return fail('SnapshotMissing', 'the status lost the snapshot of the original claim');
  const gone = claimDeletedBeforeCutover(w);
  if (gone) return gone;
  const { gated, scheduled } = consumersOf(w);
  const running = w.copyPods.presync && !isFinished(w.copyPods.presync) ? w.copyPods.presync : undefined;
  if (gated.length > 0 && scheduled.length === 0 && w.stagingClaim) {
    // The application is being recreated and waits behind its gate: it must not
    // wait for the rest of a pre-sync, and an RWO source must not stay mounted by
    // a copy pod. Stop the pre-sync; the final copy goes on from where it got to.
    if (running) return { kind: 'deleteCopyPod', pass: 'presync', name: running.metadata.name };
    return startCutover(w, gated, 'the pre-sync was cut short: the final copy continues from where it got to');
  }
  if (!w.stagingClaim) {
    const target = targetSpecOf(m);
    if (target.problem !== undefined) return fail('InvalidTarget', `the staging claim cannot be made: ${target.problem}`);
    return { kind: 'createClaim', role: 'staging', claim: stagingClaim(m, target.spec) };
  }
  if (w.yieldCopySlot && running) {
    // A final copy (an application held by its gate) needs the slot; a pre-sync resumes later.
    return {
      kind: 'deleteCopyPod',
      pass: 'presync',
      name: running.metadata.name,
      event: normal('PreSyncYielded', 'pre-sync paused: its copy slot went to a final copy; it resumes when a slot is free'),
    };
  }
  const result = copyOf(m.status, 'presync');
  if (!result) return planCopy(w, 'presync');
  if (isShrinking(w)) {
    const tooBig = checkFits(w, result.bytes);
    if (tooBig) return tooBig;
  }
  if (w.copyPods.presync) return { kind: 'deleteCopyPod', pass: 'presync', name: w.copyPods.presync.metadata.name };
  const copied = `${formatBytes(result.bytesTransferred)} of ${formatBytes(result.bytes)} (${result.files} files)`;
  return toPhase(
    'WaitingForCutover',
    'pre-synced; waiting for the consumer pod to be recreated',
    normal('PreSynced', `pre-sync copied ${copied} in ${result.seconds.toFixed(1)} s`),
  );
}

/**
 * One copy pass: start the pod when there is none and a slot is free, follow its
 * progress, record its summary, retry transient failures, give up on terminal ones.
 */
function planCopy(w: World, pass: Pass): Step {
  const m = w.migration;
  const pod = w.copyPods[pass];
  if (!pod && w.copyPodRefused?.pass === pass) {
    // Admission said no (Pod Security, a policy): asking again gets the same answer.
    const message = `the ${pass} copy pod was refused by admission: ${w.copyPodRefused.message}`;
    if (pass === 'final') return rollBack('CopyPodRefused', message);
    return fail('CopyPodRefused', message);
  }
  if (!pod) {
    if (!w.copySlotFree) return wait('WaitingForCopySlot', 'waiting for a free copy slot (max concurrent copies reached)', WAIT_COPY);
    const reason = pass === 'final' ? 'FinalSyncStarted' : pass === 'presync' ? 'PreSyncStarted' : 'MeasureStarted';
    return { kind: 'createCopyPod', pass, event: normal(reason, `started ${pass} copy pod`) };
  }
  if (!isFinished(pod)) {
    const stalled = stalledSeconds(w, pod);
    if (stalled > w.settings.copyStallSeconds) {
      const message = `${pass} copy made no progress for ${Math.round(stalled)} s (--copy-stall-timeout ${w.settings.copyStallSeconds} s)`;
      return copyFailed(w, pod, pass, true, message);
    }
    const running = wait('Copying', `${pass} copy running`, WAIT_COPY);
    return w.progress ? { ...running, progress: w.progress } : running;
  }
  const terminated = pod.status?.containerStatuses?.[0]?.state?.terminated;
  const exitCode = terminated?.exitCode ?? -1;
  if (pod.status?.phase === 'Succeeded') {
    if (pass === 'measure') {
      // An empty message is no measurement (Number('') is 0, which would pass any size check).
      const text = (terminated?.message ?? '').trim();
      const bytes = text ? Number(text) : NaN;
      if (!Number.isFinite(bytes) || bytes < 0) {
        return fail('MeasureFailed', `could not read the used bytes of the source: ${terminated?.message ?? 'no output'}`);
      }
      return { kind: 'patchStatus', status: { usedBytes: bytes } };
    }
    const summary = w.summary;
    if (!summary) {
      const message = `the ${pass} copy pod succeeded but left no readable summary`;
      // After cutover a terminal phase would leave the claim on an unpopulated replacement: roll back instead.
      if (pass === 'final') {
        return toPhase('RollingBack', message, warning('CopyResultMissing', `${message}; rolling back to the original volume`));
      }
      return fail('CopyResultMissing', message);
    }
    const copy: CopyResult = {
      pass,
      bytes: summary.bytes,
      bytesTransferred: summary.bytesTransferred,
      files: summary.files,
      seconds: summary.seconds,
      verified: (summary.verified as CopyResult['verified']) ?? 'none',
      ...(summary.dropped?.length ? { dropped: summary.dropped } : {}),
    };
    const copies = [...(m.status?.copies ?? []).filter((c) => c.pass !== pass), copy];
    const done: RunnerProgress = {
      bytesDone: summary.bytes,
      bytesTotal: summary.bytes,
      filesDone: summary.files,
      filesTotal: summary.files,
      bytesPerSecond: summary.seconds > 0 ? summary.bytesTransferred / summary.seconds : 0,
    };
    const dropped = summary.dropped?.length ? `the target cannot hold ${summary.dropped.join(', ')}: dropped` : undefined;
    return {
      kind: 'patchStatus',
      status: { copies, progress: { ...done, etaSeconds: 0, updatedAt: w.now.toISOString() }, progressText: progressText(done) },
      ...(dropped ? { event: warning('FeaturesDropped', dropped) } : {}),
    };
  }
  const transient = classifyRunnerExit(exitCode) === 'transient';
  return copyFailed(w, pod, pass, transient, `${pass} copy failed (exit ${exitCode}): ${summaryMessage(w.summary, terminated?.message)}`);
}

/** Seconds since the running copy last moved (or started, before its first progress). */
function stalledSeconds(w: World, pod: V1Pod): number {
  const started = Date.parse(String(pod.status?.startTime ?? pod.metadata?.creationTimestamp ?? ''));
  const advanced = Date.parse(w.migration.status?.progress?.advancedAt ?? '');
  const since = Math.max(Number.isNaN(started) ? -Infinity : started, Number.isNaN(advanced) ? -Infinity : advanced);
  return Number.isFinite(since) ? (w.now.getTime() - since) / 1000 : 0;
}

/** A failed (or stalled) copy: transient failures are retried a few times, then the pass fails for good. */
function copyFailed(w: World, pod: Stored<V1Pod>, pass: Pass, transient: boolean, message: string): Step {
  const m = w.migration;
  // This pod's failure is number (failures recorded when it started) + 1, however
  // often the failed pod is seen again: counting from the status alone would add
  // one per reconcile and spend the whole budget on a single failure.
  const startedAfter = Number(pod.metadata.annotations?.[ANNOTATION_COPY_ATTEMPT]);
  const attempts = (Number.isInteger(startedAfter) && startedAfter >= 0 ? startedAfter : attemptsOf(m.status, pass)) + 1;
  if (transient && attempts < w.settings.copyAttempts) {
    const recorded = m.status?.attempts ?? {};
    if ((recorded[pass] ?? 0) < attempts) {
      return {
        kind: 'patchStatus',
        status: { attempts: { ...recorded, [pass]: attempts } },
        event: warning('CopyRetrying', `${message}; retrying (attempt ${attempts + 1} of ${w.settings.copyAttempts})`),
      };
    }
    return { kind: 'deleteCopyPod', pass, name: pod.metadata.name };
  }
  if (pass === 'final') return rollBack('CopyFailed', message);
  return fail('CopyFailed', message);
}

function summaryMessage(summary: RunnerSummary | undefined, fallback: string | undefined): string {
  const text = summary?.message ?? fallback ?? 'no message';
  return text.length > 600 ? `${text.slice(0, 600)}…` : text;
}

export function progressText(p: RunnerProgress): string {
  const pct = p.bytesTotal > 0 ? Math.floor((p.bytesDone / p.bytesTotal) * 100) : 100;
  return `${formatBytes(p.bytesDone)} / ${formatBytes(p.bytesTotal)} (${pct}%)`;
}

function consumersOf(w: World): { gated: Stored<V1Pod>[]; scheduled: Stored<V1Pod>[] } {
  return { gated: w.consumers.filter(isGated), scheduled: w.consumers.filter(isScheduled) };
}

/** `pod a, b`: the names of `pods`, for messages. */
function namesOf(pods: Stored<V1Pod>[]): string {
  return pods.map((p) => p.metadata.name).join(', ');
}

function planWaiting(w: World, abort: boolean): Step {
  const m = w.migration;
  if (abort) return toPhase('Aborted', 'aborted before cutover; cleaning up', normal('Aborted', 'migration aborted before cutover'));
  const gone = claimDeletedBeforeCutover(w);
  if (gone) return gone;
  const { gated, scheduled } = consumersOf(w);
  if (m.spec.cutover === 'Evict') {
    const toEvict = scheduled.filter((p) => !p.metadata.deletionTimestamp && !isFinished(p));
    if (toEvict.length) {
      return {
        kind: 'evictPods',
        pods: toEvict.map((p) => p.metadata.name),
        event: normal('Evicting', `evicting ${namesOf(toEvict)} for cutover`),
      };
    }
  }
  if (gated.length > 0 && scheduled.length === 0) return startCutover(w, gated);
  const missed = missedGate(w, scheduled);
  if (missed.length) {
    const message =
      `pod ${namesOf(missed)} started on the old volume: it was created after the migration was validated, ` +
      "but without pvshift's scheduling gate (pvshift's pod webhook did not answer in time, " +
      `or the namespace lost the label ${LABEL_NAMESPACE_ACTIVE}); recreate or evict it to cut over`;
    return { ...wait('GateMissed', message, 5000), event: warning('GateMissed', message) };
  }
  const why = scheduled.length
    ? `waiting for ${namesOf(scheduled)} to go (recreate or evict it to cut over)`
    : 'waiting for a new pod of the claim';
  return wait('WaitingForCutover', why, 5000);
}

/**
 * Running consumers that should have been held: created after the migration was
 * validated, yet never gated (or their gate removed by someone). By then the gate
 * was in force: the namespace label is set in an earlier step, and the webhook
 * gates from Pending on. The webhook's failurePolicy is Ignore, so an outage of
 * pvshift lets a recreated pod through onto the old volume: the recreate the user
 * meant as the cutover is missed, and this is how they learn it. Times are whole
 * seconds: a pod of the validation's own second is given the benefit of the doubt.
 */
function missedGate(w: World, scheduled: Stored<V1Pod>[]): Stored<V1Pod>[] {
  const validated = w.migration.status?.conditions?.find((c) => c.type === 'Validated' && c.status === 'True');
  const since = Date.parse(validated?.lastTransitionTime ?? '');
  if (Number.isNaN(since)) return [];
  return scheduled.filter((p) => {
    const created = Date.parse(String(p.metadata.creationTimestamp ?? ''));
    return !p.metadata.deletionTimestamp && !isFinished(p) && created > since;
  });
}

function startCutover(w: World, gated: Stored<V1Pod>[], note?: string): Step {
  const stamps = gated
    .map((p) => p.metadata.annotations?.[ANNOTATION_GATED_AT])
    .filter((s): s is string => !!s && !Number.isNaN(Date.parse(s)));
  const gatedAt = stamps.sort()[0] ?? w.now.toISOString();
  const held = `pod ${namesOf(gated)} is held until the data is in place`;
  return toPhase(
    'CuttingOver',
    { cutoverStartTime: w.now.toISOString(), gatedAt, message: 'cutover: replacing the claim' },
    normal('CutoverStarted', note ? `${held}; ${note}` : held),
  );
}

/**
 * Before cutover the user's claim is theirs: deleted (or being deleted) with no
 * pod coming back for it, the migration has nothing left to do. It ends, cleans
 * up what it made, and keeps the old volume (Retain): the user may still want it.
 */
function claimDeletedBeforeCutover(w: World): Step | undefined {
  const m = w.migration;
  const original = w.claim && w.claim.metadata.uid === snapshotUid(m.status) ? w.claim : undefined;
  const gone = !original || !!original.metadata.deletionTimestamp;
  const { gated, scheduled } = consumersOf(w);
  if (!gone || gated.length > 0 || scheduled.length > 0) return undefined;
  const source = m.status?.sourceVolumeName ?? '(unknown)';
  const deleted = `claim ${m.spec.claimName} was deleted before cutover`;
  return toPhase(
    'Failed',
    {
      message: `${deleted}; the migration ends and its old volume ${source} is kept (reclaim policy Retain)`,
      keptVolumes: keptVolumesOf(w),
    },
    warning('ClaimDeleted', `${deleted}; old volume ${source} kept (Retain)`),
  );
}

function planCutover(w: World, abort: boolean): Step {
  const m = w.migration;
  const status = m.status ?? {};
  const snapshot = status.originalClaim;
  const source = w.sourceVolume;
  if (abort) {
    return toPhase(
      'RollingBack',
      'aborted during cutover: restoring the original claim',
      normal('RollingBack', 'abort requested during cutover; restoring the original claim on its volume'),
    );
  }
  if (!snapshot || !source) {
    return toPhase(
      'RollingBack',
      'the source volume or the claim snapshot is missing',
      warning('SourceMissing', `source volume ${status.sourceVolumeName} or the claim snapshot is missing; rolling back`),
    );
  }
  // Known before the original claim goes: what replaces it, and that it can be made.
  const target = targetSpecOf(m);
  if (target.problem !== undefined) return rollBack('InvalidTarget', `the replacement claim cannot be made: ${target.problem}`);
  if (source.spec?.persistentVolumeReclaimPolicy !== 'Retain') return retain(m, source);
  const claim = w.claim;
  const originalUid = snapshotUid(status);
  if (claim && claim.metadata.uid === originalUid) {
    // A scheduled pod still uses the original: pvc-protection would hold the
    // delete, and that pod would keep writing to the source. Go back to waiting.
    if (consumersOf(w).scheduled.length > 0 && !claim.metadata.deletionTimestamp) {
      return toPhase(
        'WaitingForCutover',
        'a scheduled pod still uses the claim',
        normal('CutoverDeferred', 'a scheduled pod uses the claim again; cutover waits for it to go'),
      );
    }
    if (claim.metadata.deletionTimestamp) return wait('ClaimTerminating', 'waiting for the original claim to be deleted', WAIT_SHORT);
    const kept = `its data stays on the retained volume ${source.metadata.name}`;
    return deleteClaim(claim, 'original', normal('OriginalClaimDeleted', `deleted claim ${claim.metadata.name}; ${kept}`));
  }
  if (claim && !belongsToMigration(claim, m)) {
    // Created under this name without the webhook's rewrite (say, before the
    // namespace was labelled). It is new and empty and its pod is gated: replace it.
    if (claim.metadata.deletionTimestamp) return wait('ClaimTerminating', 'waiting for an unrewritten claim to go', WAIT_SHORT);
    const users = consumersOf(w).scheduled;
    if (users.length) {
      // A pod got through ungated (the scope label stripped, the webhook bypassed) and
      // uses it: pvshift never deletes a claim in use. Stop here and say why.
      const message =
        `claim ${claim.metadata.name} was created without pvshift's rewrite and pod ${namesOf(users)} already uses it ` +
        `(was the namespace label ${LABEL_NAMESPACE_ACTIVE} removed?); ` +
        'pvshift does not delete a claim in use: delete that pod to go on, or abort';
      return wait('ClaimInUse', message, 5000);
    }
    const message = `claim ${claim.metadata.name} was created without pvshift's rewrite; replacing it`;
    return deleteClaim(claim, 'unrewritten', warning('UnrewrittenClaimReplaced', message));
  }
  const helperName = sourceHelperClaimName(uidOf(m));
  const ref = source.spec?.claimRef;
  if (ref?.name !== helperName || ref.namespace !== m.metadata.namespace) {
    return {
      kind: 'rebindVolume',
      volumeName: source.metadata.name,
      resourceVersion: rvOf(source),
      // No uid: the PV controller binds such a claimRef to the claim of that name.
      claimRef: { apiVersion: 'v1', kind: 'PersistentVolumeClaim', namespace: m.metadata.namespace, name: helperName },
    };
  }
  if (!w.helperClaim) return { kind: 'createClaim', role: 'helper', claim: helperClaim(m, source) };
  if (!w.stagingClaim) {
    // The copy lands where the held pod can run: a WaitForFirstConsumer target is
    // provisioned on the node of the final copy pod, which carries the pod's constraints.
    return { kind: 'createClaim', role: 'staging', claim: stagingClaim(m, target.spec) };
  }
  if (!claim) {
    return {
      kind: 'createClaim',
      role: 'replacement',
      claim: replacementClaim(m, target.spec),
      event: normal(
        'ReplacementCreated',
        `created claim ${m.spec.claimName} on ${m.spec.targetStorageClassName}, to be populated from ${source.metadata.name}`,
      ),
    };
  }
  return toPhase('Populating', 'final copy from the retained source volume', normal('Populating', 'final copy started'));
}

function planPopulate(w: World, abort: boolean): Step {
  const m = w.migration;
  if (abort) {
    const message = 'abort requested during the final copy; restoring the original claim';
    return toPhase('RollingBack', 'aborted during the final copy', normal('RollingBack', message));
  }
  if (!w.stagingClaim) {
    return rollBack('StagingClaimLost', `the staging claim ${stagingClaimName(uidOf(m))} was deleted during the final copy`);
  }
  if (w.helperClaim?.status?.phase !== 'Bound') {
    return wait('SourceBinding', 'waiting for the retained source volume to bind to the helper claim', WAIT_SHORT);
  }
  const result = copyOf(m.status, 'final');
  if (!result) return planCopy(w, 'final');
  if (w.copyPods.final) return { kind: 'deleteCopyPod', pass: 'final', name: w.copyPods.final.metadata.name };
  const moved = `${formatBytes(result.bytesTransferred)} (${result.files} files, ${formatBytes(result.bytes)} in all)`;
  return toPhase(
    'Binding',
    'copy verified; binding the new volume',
    normal('Copied', `final copy moved ${moved} in ${result.seconds.toFixed(1)} s; verified: ${result.verified}`),
  );
}

function rollBack(reason: string, why: string): Step {
  const message = `${why}; rolling back to the original volume`;
  return toPhase('RollingBack', message, warning(reason, message));
}

function planBinding(w: World, abort: boolean): Step {
  const m = w.migration;
  const status = m.status ?? {};
  const replacement = w.claim;
  const staging = w.stagingVolume;
  const boundToTarget =
    !!replacement &&
    belongsToMigration(replacement, m) &&
    replacement.status?.phase === 'Bound' &&
    !!status.targetVolumeName &&
    replacement.spec?.volumeName === status.targetVolumeName;
  if (!boundToTarget) {
    // Until the replacement is bound to the copy, the original is one rollback away.
    if (abort) return rollBack('RollingBack', 'abort requested while binding');
    const retained = staging?.spec?.persistentVolumeReclaimPolicy === 'Retain';
    // Gone for good only when its claim says so too (Lost, or gone itself): a volume just
    // provisioned may be in the claims cache before it is in the volumes cache.
    const stagingLost = !w.stagingClaim || w.stagingClaim.status?.phase === 'Lost';
    if (status.targetVolumeName && !staging && stagingLost) {
      return rollBack('TargetMissing', `the target volume ${status.targetVolumeName} is gone`);
    }
    if (!w.stagingClaim && !retained) {
      return rollBack('StagingClaimLost', `the staging claim ${stagingClaimName(uidOf(m))} was deleted before its volume was kept`);
    }
  }
  if (!replacement || !belongsToMigration(replacement, m)) {
    return wait('ReplacementMissing', 'waiting for the replacement claim (the workload recreates it, or pvshift does)', WAIT_SHORT);
  }
  if (!status.targetVolumeName) {
    const name = w.stagingClaim?.spec?.volumeName;
    if (!name) return wait('TargetBinding', 'waiting for the target volume', WAIT_SHORT);
    return { kind: 'patchStatus', status: { targetVolumeName: name } };
  }
  if (staging && !boundToTarget) {
    const unreachable = consumersOf(w).gated.map((p) => placementConflict(p, staging)).find((c) => c !== undefined);
    if (unreachable) return rollBack('TargetUnreachable', unreachable);
  }
  const target = staging ?? undefined;
  const bound = replacement.status?.phase === 'Bound' && replacement.spec?.volumeName === status.targetVolumeName;
  if (!bound) {
    if (!target) return wait('TargetMissing', `waiting for volume ${status.targetVolumeName}`, WAIT_SHORT);
    // Retain while the staging claim is let go: its deletion must not take the new data.
    if (target.spec?.persistentVolumeReclaimPolicy !== 'Retain') return retain(m, target);
    const ref = target.spec?.claimRef;
    if (ref?.uid !== replacement.metadata.uid) {
      const { name, uid } = replacement.metadata;
      return {
        kind: 'rebindVolume',
        volumeName: status.targetVolumeName,
        resourceVersion: rvOf(target),
        claimRef: { apiVersion: 'v1', kind: 'PersistentVolumeClaim', namespace: m.metadata.namespace, name, uid },
        event: normal('Binding', `handing volume ${status.targetVolumeName} to claim ${name}`),
      };
    }
    return wait('Binding', 'waiting for the replacement claim to bind', WAIT_SHORT);
  }
  if (w.stagingClaim) return deleteClaim(w.stagingClaim, 'staging');
  if (w.helperClaim) return deleteClaim(w.helperClaim, 'helper');
  const original = target?.metadata.annotations?.[ANNOTATION_ORIGINAL_RECLAIM_POLICY];
  if (target && (original || target.metadata.annotations?.[ANNOTATION_MIGRATION_UID])) {
    // The new volume is the user's from now on: its class's policy, none of pvshift's marks.
    return {
      kind: 'restoreVolumePolicy',
      volumeName: status.targetVolumeName,
      resourceVersion: rvOf(target),
      policy: w.targetClass?.reclaimPolicy ?? original ?? target.spec?.persistentVolumeReclaimPolicy ?? 'Delete',
    };
  }
  const source = w.sourceVolume;
  if (source && source.metadata.annotations?.[ANNOTATION_MIGRATION] !== migrationKey(m)) {
    return {
      kind: 'annotateVolume',
      volumeName: source.metadata.name,
      resourceVersion: rvOf(source),
      annotations: { [ANNOTATION_MIGRATION]: migrationKey(m) },
    };
  }
  const gated = releasable(w, consumersOf(w).gated);
  if (gated.length) {
    // Never lift a gate onto a volume the pod cannot reach (node affinity): roll back instead.
    const unreachable = target ? gated.map((p) => placementConflict(p, target)).find((c) => c !== undefined) : undefined;
    if (unreachable) return rollBack('TargetUnreachable', unreachable);
    return liftGates(gated);
  }
  const downtime = downtimeSeconds(w);
  const took = downtime !== undefined ? `; downtime ${downtime.toFixed(1)} s` : '';
  return toPhase(
    'Succeeded',
    {
      completionTime: w.now.toISOString(),
      message: `migrated to ${m.spec.targetStorageClassName}; old volume ${status.sourceVolumeName} kept (Released, Retain)`,
      ...(downtime !== undefined ? { downtimeSeconds: downtime } : {}),
    },
    normal(
      'Succeeded',
      `claim ${m.spec.claimName} is on ${m.spec.targetStorageClassName} (volume ${status.targetVolumeName})${took}; ` +
        `old volume ${status.sourceVolumeName} kept`,
    ),
  );
}

/** Downtime: from the gate added to the first gated pod to now (the gate is lifted in this pass). */
function downtimeSeconds(w: World): number | undefined {
  const m = w.migration;
  const from = m.status?.gatedAt ?? m.status?.cutoverStartTime;
  if (!from) return undefined;
  return Math.max(0, (w.now.getTime() - new Date(from).getTime()) / 1000);
}

function liftGates(pods: Stored<V1Pod>[], where = ''): Step {
  return {
    kind: 'liftGates',
    pods: pods.map((p) => p.metadata.name),
    event: normal('GateLifted', `released ${namesOf(pods)}${where}`),
  };
}

function planRollback(w: World): Step {
  const m = w.migration;
  const status = m.status ?? {};
  const snapshot = status.originalClaim;
  const sourceName = status.sourceVolumeName;
  for (const pass of ['final', 'presync', 'measure'] as const) {
    const pod = w.copyPods[pass];
    if (pod) return { kind: 'deleteCopyPod', pass, name: pod.metadata.name };
  }
  const source = w.sourceVolume;
  if (!snapshot || !sourceName || !source) {
    // No way back, and no way on: the pods stay held and the claims rewritten (so
    // nothing starts on an empty volume) and whatever copy there is, is kept.
    const why = `cannot roll back: source volume ${sourceName ?? '(unknown)'} or the claim snapshot is gone`;
    return hold(w, 'RollbackImpossible', why);
  }
  const claim = w.claim;
  const isRestored = (c: V1PersistentVolumeClaim) => c.spec?.volumeName === sourceName && !belongsToMigration(c, m);
  if (claim && claim.metadata.uid !== snapshotUid(status) && !isRestored(claim)) {
    if (claim.metadata.deletionTimestamp) return wait('ClaimTerminating', 'waiting for the replacement claim to go', WAIT_SHORT);
    const users = consumersOf(w).scheduled;
    if (users.length) {
      const message =
        `rollback waits: pod ${namesOf(users)} uses claim ${claim.metadata.name}, and pvshift does not delete a claim in use; ` +
        'delete that pod to go on';
      return wait('ClaimInUse', message, 5000);
    }
    return deleteClaim(claim, 'replacement');
  }
  if (w.helperClaim) return deleteClaim(w.helperClaim, 'helper');
  const ref = source.spec?.claimRef;
  const originalStillThere = claim && claim.metadata.uid === snapshotUid(status);
  if (!originalStillThere && (ref?.name !== m.spec.claimName || (ref.uid && ref.uid !== claim?.metadata.uid))) {
    return {
      kind: 'rebindVolume',
      volumeName: sourceName,
      resourceVersion: rvOf(source),
      claimRef: {
        apiVersion: 'v1',
        kind: 'PersistentVolumeClaim',
        namespace: m.metadata.namespace,
        name: m.spec.claimName,
        ...(claim ? { uid: claim.metadata.uid } : {}),
      },
    };
  }
  if (!claim) {
    return {
      kind: 'createClaim',
      role: 'restored',
      claim: restoredClaim(m, snapshot, sourceName),
      event: normal('OriginalRestored', `recreated claim ${m.spec.claimName} on its original volume ${sourceName}`),
    };
  }
  if (claim.status?.phase !== 'Bound') return wait('RestoreBinding', 'waiting for the restored claim to bind', WAIT_SHORT);
  if (w.stagingClaim) return deleteClaim(w.stagingClaim, 'staging');
  const gated = releasable(w, consumersOf(w).gated);
  if (gated.length) return liftGates(gated, ' on the original volume');
  const back = `claim ${m.spec.claimName} is back on its original volume ${sourceName}`;
  return toPhase('RolledBack', { completionTime: w.now.toISOString() }, normal('RolledBack', back));
}

/** Finished migrations still tidy up: copy pods, staging claims, gates, policies, the namespace label, the finalizer. */
function planTerminal(w: World, phase: Phase): Step {
  const m = w.migration;
  const status = m.status ?? {};
  for (const pass of ['final', 'presync', 'measure'] as const) {
    const pod = w.copyPods[pass];
    if (pod) return { kind: 'deleteCopyPod', pass, name: pod.metadata.name };
  }
  // After cutover a Failed migration was Held: its copy may be the only one, and stays.
  const beforeCutover = phase === 'Aborted' || (phase === 'Failed' && !status.cutoverStartTime);
  if (beforeCutover && w.stagingClaim && isMadeBy(w.stagingClaim, m)) return deleteClaim(w.stagingClaim, 'staging');
  const source = w.sourceVolume;
  const original = source?.metadata.annotations?.[ANNOTATION_ORIGINAL_RECLAIM_POLICY];
  // Back on (or never off) the source: its reclaim policy is the user's again. Only
  // the migration that recorded the policy restores it, only while the user's claim
  // is bound to it, and never while another migration of the claim is unfinished:
  // that one may be between deleting the claim and rebinding the volume (Released).
  const othersOfClaim = w.siblings.some(
    (s) => s.metadata.uid !== m.metadata.uid && s.spec.claimName === m.spec.claimName && !isTerminal(phaseOf(s)),
  );
  if (source && original && phase !== 'Succeeded' && isStampedBy(source, m) && isBoundTo(source, w.claim) && !othersOfClaim) {
    return { kind: 'restoreVolumePolicy', volumeName: source.metadata.name, resourceVersion: rvOf(source), policy: original };
  }
  const gated = releasable(
    w,
    w.consumers.filter((p) => isGated(p) && migrationsOfPod(p).includes(m.metadata.name)),
  );
  if (gated.length) return liftGates(gated);
  if (
    phase === 'Succeeded' &&
    m.spec.sourceRetention === 'DeleteAfterVerify' &&
    m.spec.verify === 'checksum' &&
    source &&
    isStampedBy(source, m) &&
    source.status?.phase === 'Released' &&
    source.spec?.persistentVolumeReclaimPolicy !== 'Delete' &&
    !othersOfClaim &&
    (status.copies ?? []).some((c) => c.pass === 'final' && c.verified === 'checksum')
  ) {
    return {
      kind: 'setVolumePolicy',
      volumeName: source.metadata.name,
      resourceVersion: rvOf(source),
      policy: 'Delete',
      event: normal(
        'SourceReleased',
        `copy verified; old volume ${source.metadata.name} handed back to its provisioner for deletion ` +
          '(sourceRetention: DeleteAfterVerify)',
      ),
    };
  }
  const othersActive = w.siblings.some((s) => s.metadata.name !== m.metadata.name && !isTerminal(phaseOf(s)));
  if (w.namespaceLabelled && !othersActive) return { kind: 'labelNamespace', active: false };
  // A finished migration needs no finalizer: nothing is left to clean up, and an
  // uninstalled pvshift must not leave records (and namespaces) no one can delete.
  if (hasFinalizer(m)) return { kind: 'removeFinalizer' };
  return { kind: 'done' };
}

function migrationsOfPod(pod: V1Pod): string[] {
  return (pod.metadata?.annotations?.[ANNOTATION_MIGRATION] ?? '').split(',').filter(Boolean);
}

/**
 * The gated pods this migration may release: one gate holds a pod for every
 * migration of its claims, so it is lifted by the last of them to finish.
 */
function releasable(w: World, pods: Stored<V1Pod>[]): Stored<V1Pod>[] {
  const m = w.migration;
  const unfinished = (name: string) => w.siblings.some((s) => s.metadata.name === name && !isTerminal(phaseOf(s)));
  return pods.filter((p) => migrationsOfPod(p).every((name) => name === m.metadata.name || !unfinished(name)));
}

/** What pvshift keeps for the user, and what they can do with it. */
function keptVolumesOf(w: World): KeptVolume[] {
  const m = w.migration;
  const kept: KeptVolume[] = [];
  const source = w.sourceVolume;
  if (source && isStampedBy(source, m)) {
    const name = source.metadata.name;
    kept.push({
      name,
      role: 'source',
      message:
        'the original data, reclaim policy Retain; to use it again, point its claimRef at a claim (name and namespace, no uid) ' +
        `and create that claim with spec.volumeName: ${name}`,
    });
  }
  const target = w.stagingVolume;
  if (target && (isStampedBy(target, m) || target.spec?.claimRef?.uid === w.stagingClaim?.metadata.uid)) {
    const verified = (m.status?.copies ?? []).some((c) => c.pass === 'final');
    const claim = w.stagingClaim ? ` (claim ${w.stagingClaim.metadata.name})` : '';
    kept.push({
      name: target.metadata.name,
      role: 'copy',
      message:
        `${verified ? 'the verified final copy' : 'a copy that may be incomplete'} on ${m.spec.targetStorageClassName}, ` +
        `reclaim policy Retain, owned by nothing${claim}`,
    });
  }
  return kept;
}

function hold(w: World, reason: string, why: string): Step {
  const message =
    `${why}; held: pods stay gated and new claims of the name stay rewritten, so nothing starts on an empty volume; ` +
    'see keptVolumes for the data, and delete this VolumeMigration to release the pods';
  return toPhase('Held', { message, keptVolumes: keptVolumesOf(w) }, warning(reason, message));
}

/**
 * Held: after cutover, with no way back (the source is gone) and no way on. The
 * copy is made safe (Retain, no ownerReference), the pods stay gated, and the
 * user decides: deleting the migration releases the pods. spec.abort does not:
 * it is usually what started the rollback that could not finish.
 */
function planHeld(w: World): Step {
  const m = w.migration;
  const kept = keptVolumesOf(w);
  const target = w.stagingVolume;
  if (target && target.spec?.persistentVolumeReclaimPolicy !== 'Retain') return retain(m, target);
  const staging = w.stagingClaim;
  if (staging && (staging.metadata.ownerReferences ?? []).length > 0) {
    return { kind: 'disownClaim', name: staging.metadata.name, uid: staging.metadata.uid, resourceVersion: rvOf(staging) };
  }
  if (m.metadata.deletionTimestamp) {
    const where = kept.length ? `the data is kept on ${kept.map((k) => k.name).join(', ')}` : 'no volume of this migration is left';
    const message = `released from hold: pods are no longer gated; ${where}`;
    return toPhase('Failed', { message, keptVolumes: kept }, warning('ReleasedFromHold', message));
  }
  if (JSON.stringify(m.status?.keptVolumes ?? []) !== JSON.stringify(kept)) return { kind: 'patchStatus', status: { keptVolumes: kept } };
  return wait('Held', m.status?.message ?? 'held', WAIT_HELD);
}
