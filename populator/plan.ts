// The migration's state machine as a pure function: the world in, the one next
// step out. Reconcile does the step and calls plan again; nothing here does I/O,
// so every branch is a table-driven unit test.
//
// Order is the safety argument: the source PV is made Retain (Pending) before
// any claim of the user is deleted (CuttingOver), the replacement claim only
// binds after the final copy verified (Binding), and scheduling gates are lifted
// last. Each step is idempotent, so replaying any prefix after a crash is safe.
import type { V1ObjectReference, V1PersistentVolume, V1PersistentVolumeClaim, V1PersistentVolumeClaimSpec, V1Pod } from '@kubernetes/client-node';
import {
  ANNOTATION_COPY_ATTEMPT,
  ANNOTATION_GATED_AT,
  ANNOTATION_MIGRATION,
  ANNOTATION_ORIGINAL_RECLAIM_POLICY,
  ANNOTATION_TARGET_CLASS,
  ANNOTATION_TARGET_SIZE,
  API_GROUP,
  FINALIZER,
  MIGRATION_KIND,
  SCHEDULING_GATE,
  sourceHelperClaimName,
  stagingClaimName,
} from '../src/names.js';
import { formatBytes, parseQuantity } from '../src/quantity.js';
import { isTerminal, phaseOf, type ClaimSnapshot, type CopyResult, type Phase, type VolumeMigration, type VolumeMigrationStatus } from '../src/volume-migration.js';
import { classifyRunnerExit } from '../runner/exit-codes.js';
import type { Pass, RunnerProgress, RunnerSummary, World } from './world.js';

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
  | { kind: 'retainVolume'; volumeName: string; originalPolicy: string; migrationKey: string; event?: EventNote }
  | { kind: 'restoreVolumePolicy'; volumeName: string; policy: string }
  | { kind: 'setVolumePolicy'; volumeName: string; policy: string; event: EventNote }
  | { kind: 'annotateVolume'; volumeName: string; annotations: Record<string, string | null> }
  | { kind: 'labelNamespace'; active: boolean }
  | { kind: 'createClaim'; role: ClaimRole; claim: V1PersistentVolumeClaim; event?: EventNote }
  | { kind: 'deleteClaim'; name: string; uid: string; why: string; event?: EventNote }
  | { kind: 'createCopyPod'; pass: Pass; event?: EventNote }
  | { kind: 'deleteCopyPod'; pass: Pass; name: string }
  | { kind: 'rebindVolume'; volumeName: string; resourceVersion: string; claimRef: V1ObjectReference; event?: EventNote }
  | { kind: 'evictPods'; pods: string[]; event: EventNote }
  | { kind: 'liftGates'; pods: string[]; event?: EventNote }
  | { kind: 'wait'; reason: string; message: string; afterMs: number; progress?: RunnerProgress }
  | { kind: 'done' };

const WAIT_SHORT = 1000;
const WAIT_COPY = 2000;

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

function isFinished(pod: V1Pod | undefined): boolean {
  return pod?.status?.phase === 'Succeeded' || pod?.status?.phase === 'Failed';
}

function requestOf(spec: V1PersistentVolumeClaimSpec | undefined): string | undefined {
  const value = spec?.resources?.requests?.storage as string | number | undefined;
  return value === undefined ? undefined : String(value);
}

function accessModesOf(m: VolumeMigration, snapshot: ClaimSnapshot): string[] {
  return m.spec.targetAccessModes?.length ? m.spec.targetAccessModes : (snapshot.spec.accessModes ?? ['ReadWriteOnce']);
}

export function targetSizeOf(m: VolumeMigration, snapshot: ClaimSnapshot | undefined): string {
  return m.spec.targetSize ?? requestOf(snapshot?.spec) ?? '1Gi';
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

function belongsToMigration(claim: V1PersistentVolumeClaim | undefined, m: VolumeMigration): boolean {
  const ref = claim?.spec?.dataSourceRef;
  return ref?.apiGroup === API_GROUP && ref.kind === MIGRATION_KIND && ref.name === m.metadata.name;
}

/** Annotations the API machinery puts on a bound claim; a new claim must not inherit them. */
const BINDING_ANNOTATIONS = [
  'pv.kubernetes.io/bind-completed',
  'pv.kubernetes.io/bound-by-controller',
  'volume.kubernetes.io/storage-provisioner',
  'volume.beta.kubernetes.io/storage-provisioner',
  'volume.kubernetes.io/selected-node',
];

function userAnnotations(snapshot: ClaimSnapshot, drop: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(snapshot.annotations ?? {})) if (!drop.includes(k)) out[k] = v;
  return out;
}

// --- the claims pvshift makes --------------------------------------------------

function managedLabels(m: VolumeMigration, component: string): Record<string, string> {
  return {
    'app.kubernetes.io/managed-by': 'pvshift',
    'app.kubernetes.io/component': component,
    'pvshift.io/migration-uid': uidOf(m),
  };
}

function ownerReference(m: VolumeMigration) {
  return [{ apiVersion: m.apiVersion, kind: m.kind, name: m.metadata.name, uid: uidOf(m), controller: true, blockOwnerDeletion: false }];
}

/** A claim of pvshift's own: labelled, owned by the migration, excluded from the claim webhook. */
function managedClaim(m: VolumeMigration, component: string, name: string, spec: V1PersistentVolumeClaimSpec): V1PersistentVolumeClaim {
  return {
    apiVersion: 'v1',
    kind: 'PersistentVolumeClaim',
    metadata: {
      name,
      namespace: m.metadata.namespace,
      labels: managedLabels(m, component),
      annotations: { [ANNOTATION_MIGRATION]: m.metadata.name },
      ownerReferences: ownerReference(m),
    },
    spec,
  };
}

export function stagingClaim(m: VolumeMigration, snapshot: ClaimSnapshot): V1PersistentVolumeClaim {
  return managedClaim(m, 'staging', stagingClaimName(uidOf(m)), {
    storageClassName: m.spec.targetStorageClassName,
    accessModes: accessModesOf(m, snapshot),
    volumeMode: snapshot.spec.volumeMode ?? 'Filesystem',
    resources: { requests: { storage: targetSizeOf(m, snapshot) } },
  });
}

/** Binds the retained source PV (claimRef moved to it) so a copy pod can mount it. */
export function helperClaim(m: VolumeMigration, source: V1PersistentVolume): V1PersistentVolumeClaim {
  return managedClaim(m, 'source-helper', sourceHelperClaimName(uidOf(m)), {
    storageClassName: source.spec?.storageClassName ?? '',
    accessModes: source.spec?.accessModes ?? ['ReadWriteOnce'],
    volumeMode: source.spec?.volumeMode ?? 'Filesystem',
    volumeName: source.metadata?.name,
    resources: { requests: { storage: String(source.spec?.capacity?.storage ?? '1Gi') } },
  });
}

/** A claim under the user's name: the snapshot's labels and annotations (less `drop`), naming its migration. */
function userClaim(m: VolumeMigration, snapshot: ClaimSnapshot, drop: string[], spec: V1PersistentVolumeClaimSpec): V1PersistentVolumeClaim {
  return {
    apiVersion: 'v1',
    kind: 'PersistentVolumeClaim',
    metadata: {
      name: m.spec.claimName,
      namespace: m.metadata.namespace,
      labels: { ...snapshot.labels },
      annotations: { ...userAnnotations(snapshot, drop), [ANNOTATION_MIGRATION]: m.metadata.name },
    },
    spec,
  };
}

/** What the webhook also makes of a claim created under this name during cutover. */
export function replacementClaim(m: VolumeMigration, snapshot: ClaimSnapshot): V1PersistentVolumeClaim {
  return userClaim(m, snapshot, [...BINDING_ANNOTATIONS, ANNOTATION_TARGET_CLASS, ANNOTATION_TARGET_SIZE], {
    storageClassName: m.spec.targetStorageClassName,
    accessModes: accessModesOf(m, snapshot),
    volumeMode: snapshot.spec.volumeMode ?? 'Filesystem',
    resources: { requests: { storage: targetSizeOf(m, snapshot) } },
    dataSourceRef: { apiGroup: API_GROUP, kind: MIGRATION_KIND, name: m.metadata.name },
  });
}

/** The original claim again, on its original volume (rollback). */
export function restoredClaim(m: VolumeMigration, snapshot: ClaimSnapshot, sourceVolumeName: string): V1PersistentVolumeClaim {
  const spec: V1PersistentVolumeClaimSpec = { ...snapshot.spec, volumeName: sourceVolumeName };
  delete spec.dataSource;
  delete spec.dataSourceRef;
  return userClaim(m, snapshot, BINDING_ANNOTATIONS, spec);
}

export function snapshotOf(claim: V1PersistentVolumeClaim): ClaimSnapshot {
  const spec = structuredClone(claim.spec ?? {});
  return {
    ...(claim.metadata?.labels ? { labels: { ...claim.metadata.labels } } : {}),
    ...(claim.metadata?.annotations ? { annotations: { ...claim.metadata.annotations } } : {}),
    spec,
    ...(claim.metadata?.uid ? { uid: claim.metadata.uid } : {}),
  };
}

function snapshotUid(status: VolumeMigrationStatus | undefined): string | undefined {
  return status?.originalClaim?.uid;
}

// --- phases -----------------------------------------------------------------

function fail(reason: string, message: string): Step {
  return { kind: 'setPhase', phase: 'Failed', status: { message }, event: { type: 'Warning', reason, message } };
}

export function plan(w: World): Step {
  const m = w.migration;
  const phase = phaseOf(m);
  const deleting = !!m.metadata.deletionTimestamp;
  if (!deleting && !hasFinalizer(m) && !isTerminal(phase)) return { kind: 'addFinalizer' };
  if (isTerminal(phase)) return planTerminal(w, phase);
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
      return planBinding(w);
    case 'RollingBack':
      return planRollback(w);
  }
  return { kind: 'done' };
}

/** Validation: every reason a migration cannot start, before anything is changed. */
export function validate(w: World): { reason: string; message: string } | undefined {
  const m = w.migration;
  const ns = m.metadata.namespace;
  const older = w.siblings.find(
    (s) =>
      s.spec.claimName === m.spec.claimName &&
      s.metadata.name !== m.metadata.name &&
      !isTerminal(phaseOf(s)) &&
      (phaseOf(s) !== 'Pending' || String(s.metadata.creationTimestamp ?? '') < String(m.metadata.creationTimestamp ?? '') ||
        (String(s.metadata.creationTimestamp ?? '') === String(m.metadata.creationTimestamp ?? '') && s.metadata.name < m.metadata.name)),
  );
  if (older) {
    return { reason: 'DuplicateMigration', message: `claim ${ns}/${m.spec.claimName} is already being migrated by VolumeMigration ${older.metadata.name}; delete one of them` };
  }
  const claim = w.claim;
  if (!claim) return { reason: 'ClaimNotFound', message: `claim ${ns}/${m.spec.claimName} does not exist` };
  if (claim.status?.phase !== 'Bound' || !claim.spec?.volumeName) {
    return { reason: 'ClaimNotBound', message: `claim ${ns}/${m.spec.claimName} is ${claim.status?.phase ?? 'Pending'}, not Bound: there is no volume to copy from` };
  }
  if (!w.sourceVolume) return { reason: 'VolumeNotFound', message: `claim ${ns}/${m.spec.claimName} is bound to ${claim.spec.volumeName}, which does not exist` };
  if ((claim.spec.volumeMode ?? 'Filesystem') === 'Block') {
    return { reason: 'BlockVolumeUnsupported', message: `claim ${ns}/${m.spec.claimName} has volumeMode Block; pvshift copies files and supports Filesystem volumes only` };
  }
  if (!w.targetClass) return { reason: 'StorageClassNotFound', message: `target StorageClass ${m.spec.targetStorageClassName} does not exist` };
  const rwop = (claim.spec.accessModes ?? []).includes('ReadWriteOncePod');
  if (rwop && m.spec.preSync === true) {
    return { reason: 'PreSyncUnsupported', message: `claim ${ns}/${m.spec.claimName} is ReadWriteOncePod: it cannot be mounted by a copy pod while its application runs; set preSync: false` };
  }
  if ((m.spec.targetAccessModes ?? []).includes('ReadWriteOncePod') && (m.spec.targetAccessModes ?? []).length > 1) {
    return { reason: 'InvalidAccessModes', message: 'ReadWriteOncePod cannot be combined with other access modes' };
  }
  const target = parseQuantity(m.spec.targetSize ?? requestOf(claim.spec));
  if (target === undefined || target <= 0) return { reason: 'InvalidSize', message: `target size ${m.spec.targetSize} is not a valid quantity` };
  return undefined;
}

/** Whether the target is smaller than what the source may hold, so its data must be measured first. */
function isShrinking(w: World): boolean {
  const target = parseQuantity(targetSizeOf(w.migration, w.migration.status?.originalClaim ?? (w.claim ? snapshotOf(w.claim) : undefined)));
  const source = parseQuantity(w.sourceVolume?.spec?.capacity?.storage);
  return target !== undefined && source !== undefined && target < source;
}

/** Fails when data of `bytes` does not fit the target with headroom. */
function checkFits(w: World, bytes: number): Step | undefined {
  const target = parseQuantity(targetSizeOf(w.migration, w.migration.status?.originalClaim)) ?? 0;
  const needed = Math.ceil(bytes * (1 + w.settings.sizeHeadroom));
  if (needed <= target) return undefined;
  return fail(
    'TargetTooSmall',
    `the claim holds ${formatBytes(bytes)}; with ${Math.round(w.settings.sizeHeadroom * 100)}% headroom the target needs ${formatBytes(needed)}, but targetSize is ${formatBytes(target)}`,
  );
}

function planPending(w: World, abort: boolean): Step {
  const m = w.migration;
  const status = m.status ?? {};
  if (abort) return { kind: 'setPhase', phase: 'Aborted', status: { message: 'aborted before anything was changed' }, event: { type: 'Normal', reason: 'Aborted', message: 'migration aborted before cutover' } };
  const invalid = validate(w);
  if (invalid) return fail(invalid.reason, invalid.message);
  const source = w.sourceVolume!;
  const claim = w.claim!;
  const policy = source.spec?.persistentVolumeReclaimPolicy ?? 'Delete';
  // Invariant 1: the data's only home is made Retain before anything else.
  if (policy !== 'Retain') {
    return {
      kind: 'retainVolume',
      volumeName: source.metadata!.name!,
      originalPolicy: policy,
      migrationKey: migrationKey(m),
      event: { type: 'Normal', reason: 'SourceRetained', message: `set reclaim policy of ${source.metadata?.name} to Retain (was ${policy})` },
    };
  }
  if (!status.originalClaim) {
    return {
      kind: 'patchStatus',
      status: {
        originalClaim: snapshotOf(claim),
        sourceVolumeName: source.metadata?.name,
        sourceStorageClassName: source.spec?.storageClassName,
        startTime: w.now.toISOString(),
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
  if (w.copyPods.measure) return { kind: 'deleteCopyPod', pass: 'measure', name: w.copyPods.measure.metadata!.name! };
  const next: Phase = isPreSyncEnabled(m, status.originalClaim) ? 'PreSyncing' : 'WaitingForCutover';
  return {
    kind: 'setPhase',
    phase: next,
    status: { message: next === 'PreSyncing' ? 'copying while the application runs' : 'waiting for the consumer pod to be recreated' },
    event: { type: 'Normal', reason: 'Validated', message: `migration of ${m.spec.claimName} to ${m.spec.targetStorageClassName} validated; source ${source.metadata?.name} retained` },
  };
}

function planPreSync(w: World, abort: boolean): Step {
  const m = w.migration;
  const snapshot = m.status?.originalClaim;
  if (abort) return { kind: 'setPhase', phase: 'Aborted', status: { message: 'aborted before cutover; cleaning up' }, event: { type: 'Normal', reason: 'Aborted', message: 'migration aborted during pre-sync' } };
  if (!snapshot) return fail('SnapshotMissing', 'the status lost the snapshot of the original claim');
  if (!w.stagingClaim) return { kind: 'createClaim', role: 'staging', claim: stagingClaim(m, snapshot) };
  const result = copyOf(m.status, 'presync');
  if (!result) return planCopy(w, 'presync');
  if (isShrinking(w)) {
    const tooBig = checkFits(w, result.bytes);
    if (tooBig) return tooBig;
  }
  if (w.copyPods.presync) return { kind: 'deleteCopyPod', pass: 'presync', name: w.copyPods.presync.metadata!.name! };
  return {
    kind: 'setPhase',
    phase: 'WaitingForCutover',
    status: { message: 'pre-synced; waiting for the consumer pod to be recreated' },
    event: { type: 'Normal', reason: 'PreSynced', message: `pre-sync copied ${formatBytes(result.bytesTransferred)} of ${formatBytes(result.bytes)} (${result.files} files) in ${result.seconds.toFixed(1)} s` },
  };
}

/**
 * One copy pass: start the pod when there is none and a slot is free, follow its
 * progress, record its summary, retry transient failures, give up on terminal ones.
 */
function planCopy(w: World, pass: Pass): Step {
  const m = w.migration;
  const pod = w.copyPods[pass];
  if (!pod) {
    if (!w.copySlotFree) return { kind: 'wait', reason: 'WaitingForCopySlot', message: 'waiting for a free copy slot (max concurrent copies reached)', afterMs: WAIT_COPY };
    return { kind: 'createCopyPod', pass, event: { type: 'Normal', reason: pass === 'final' ? 'FinalSyncStarted' : pass === 'presync' ? 'PreSyncStarted' : 'MeasureStarted', message: `started ${pass} copy pod` } };
  }
  if (!isFinished(pod)) {
    return { kind: 'wait', reason: 'Copying', message: `${pass} copy running`, afterMs: WAIT_COPY, ...(w.progress ? { progress: w.progress } : {}) };
  }
  const terminated = pod.status?.containerStatuses?.[0]?.state?.terminated;
  const exitCode = terminated?.exitCode ?? -1;
  if (pod.status?.phase === 'Succeeded') {
    if (pass === 'measure') {
      // An empty message is no measurement (Number('') is 0, which would pass any size check).
      const text = (terminated?.message ?? '').trim();
      const bytes = text ? Number(text) : NaN;
      if (!Number.isFinite(bytes) || bytes < 0) return fail('MeasureFailed', `could not read the used bytes of the source: ${terminated?.message ?? 'no output'}`);
      return { kind: 'patchStatus', status: { usedBytes: bytes } };
    }
    const summary = w.summary;
    if (!summary) {
      const message = `the ${pass} copy pod succeeded but left no readable summary`;
      // After cutover a terminal phase would leave the claim on an unpopulated replacement: roll back instead.
      if (pass === 'final') return { kind: 'setPhase', phase: 'RollingBack', status: { message }, event: { type: 'Warning', reason: 'CopyResultMissing', message: `${message}; rolling back to the original volume` } };
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
    const done: RunnerProgress = { bytesDone: summary.bytes, bytesTotal: summary.bytes, filesDone: summary.files, filesTotal: summary.files, bytesPerSecond: summary.seconds > 0 ? summary.bytesTransferred / summary.seconds : 0 };
    return {
      kind: 'patchStatus',
      status: { copies, progress: { ...done, etaSeconds: 0, updatedAt: w.now.toISOString() }, progressText: progressText(done) },
      ...(summary.dropped?.length ? { event: { type: 'Warning' as const, reason: 'FeaturesDropped', message: `the target cannot hold ${summary.dropped.join(', ')}: dropped` } } : {}),
    };
  }
  // Failed: transient codes (and a pod killed from outside) are retried a few times.
  // This pod's failure is number (failures recorded when it started) + 1, however
  // often the failed pod is seen again: counting from the status alone would add
  // one per reconcile and spend the whole budget on a single failure.
  const startedAfter = Number(pod.metadata?.annotations?.[ANNOTATION_COPY_ATTEMPT]);
  const attempts = (Number.isInteger(startedAfter) && startedAfter >= 0 ? startedAfter : attemptsOf(m.status, pass)) + 1;
  const transient = classifyRunnerExit(exitCode) === 'transient';
  const message = `${pass} copy failed (exit ${exitCode}): ${summaryMessage(w.summary, terminated?.message)}`;
  if (transient && attempts < w.settings.copyAttempts) {
    const recorded = m.status?.attempts ?? {};
    if ((recorded[pass] ?? 0) < attempts) {
      return { kind: 'patchStatus', status: { attempts: { ...recorded, [pass]: attempts } }, event: { type: 'Warning', reason: 'CopyRetrying', message: `${message}; retrying (attempt ${attempts + 1} of ${w.settings.copyAttempts})` } };
    }
    return { kind: 'deleteCopyPod', pass, name: pod.metadata!.name! };
  }
  if (pass === 'final') {
    return { kind: 'setPhase', phase: 'RollingBack', status: { message }, event: { type: 'Warning', reason: 'CopyFailed', message: `${message}; rolling back to the original volume` } };
  }
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

function consumersOf(w: World): { gated: V1Pod[]; scheduled: V1Pod[] } {
  return { gated: w.consumers.filter(isGated), scheduled: w.consumers.filter(isScheduled) };
}

function planWaiting(w: World, abort: boolean): Step {
  const m = w.migration;
  if (abort) return { kind: 'setPhase', phase: 'Aborted', status: { message: 'aborted before cutover; cleaning up' }, event: { type: 'Normal', reason: 'Aborted', message: 'migration aborted before cutover' } };
  const { gated, scheduled } = consumersOf(w);
  if (m.spec.cutover === 'Evict') {
    const toEvict = scheduled.filter((p) => !p.metadata?.deletionTimestamp && !isFinished(p));
    if (toEvict.length) {
      return { kind: 'evictPods', pods: toEvict.map((p) => p.metadata!.name!), event: { type: 'Normal', reason: 'Evicting', message: `evicting ${toEvict.map((p) => p.metadata?.name).join(', ')} for cutover` } };
    }
  }
  if (gated.length > 0 && scheduled.length === 0) {
    const stamps = gated.map((p) => p.metadata?.annotations?.[ANNOTATION_GATED_AT]).filter((s): s is string => !!s && !Number.isNaN(Date.parse(s)));
    const gatedAt = stamps.sort()[0] ?? w.now.toISOString();
    return {
      kind: 'setPhase',
      phase: 'CuttingOver',
      status: { cutoverStartTime: w.now.toISOString(), gatedAt, message: 'cutover: replacing the claim' },
      event: { type: 'Normal', reason: 'CutoverStarted', message: `pod ${gated.map((p) => p.metadata?.name).join(', ')} is held until the data is in place` },
    };
  }
  const why = scheduled.length ? `waiting for ${scheduled.map((p) => p.metadata?.name).join(', ')} to go (recreate or evict it to cut over)` : 'waiting for a new pod of the claim';
  return { kind: 'wait', reason: 'WaitingForCutover', message: why, afterMs: 5000 };
}

function planCutover(w: World, abort: boolean): Step {
  const m = w.migration;
  const status = m.status ?? {};
  const snapshot = status.originalClaim;
  const source = w.sourceVolume;
  if (abort) return { kind: 'setPhase', phase: 'RollingBack', status: { message: 'aborted during cutover: restoring the original claim' }, event: { type: 'Normal', reason: 'RollingBack', message: 'abort requested during cutover; restoring the original claim on its volume' } };
  if (!snapshot || !source) return { kind: 'setPhase', phase: 'RollingBack', status: { message: 'the source volume or the claim snapshot is missing' }, event: { type: 'Warning', reason: 'SourceMissing', message: `source volume ${status.sourceVolumeName} or the claim snapshot is missing; rolling back` } };
  if (source.spec?.persistentVolumeReclaimPolicy !== 'Retain') {
    return { kind: 'retainVolume', volumeName: source.metadata!.name!, originalPolicy: source.spec?.persistentVolumeReclaimPolicy ?? 'Delete', migrationKey: migrationKey(m) };
  }
  const claim = w.claim;
  const originalUid = snapshotUid(status);
  if (claim && claim.metadata?.uid === originalUid) {
    // A scheduled pod still uses the original: pvc-protection would hold the
    // delete, and that pod would keep writing to the source. Go back to waiting.
    if (consumersOf(w).scheduled.length > 0 && !claim.metadata?.deletionTimestamp) {
      return { kind: 'setPhase', phase: 'WaitingForCutover', status: { message: 'a scheduled pod still uses the claim' }, event: { type: 'Normal', reason: 'CutoverDeferred', message: 'a scheduled pod uses the claim again; cutover waits for it to go' } };
    }
    if (claim.metadata?.deletionTimestamp) return { kind: 'wait', reason: 'ClaimTerminating', message: 'waiting for the original claim to be deleted', afterMs: WAIT_SHORT };
    return { kind: 'deleteClaim', name: claim.metadata!.name!, uid: claim.metadata!.uid!, why: 'original', event: { type: 'Normal', reason: 'OriginalClaimDeleted', message: `deleted claim ${claim.metadata?.name}; its data stays on the retained volume ${source.metadata?.name}` } };
  }
  if (claim && !belongsToMigration(claim, m)) {
    // Created under this name without the webhook's rewrite (say, before the
    // namespace was labelled). It is new and empty and its pod is gated: replace it.
    if (claim.metadata?.deletionTimestamp) return { kind: 'wait', reason: 'ClaimTerminating', message: 'waiting for an unrewritten claim to go', afterMs: WAIT_SHORT };
    return { kind: 'deleteClaim', name: claim.metadata!.name!, uid: claim.metadata!.uid!, why: 'unrewritten', event: { type: 'Warning', reason: 'UnrewrittenClaimReplaced', message: `claim ${claim.metadata?.name} was created without pvshift's rewrite; replacing it` } };
  }
  const helperName = sourceHelperClaimName(uidOf(m));
  const ref = source.spec?.claimRef;
  if (ref?.name !== helperName || ref.namespace !== m.metadata.namespace) {
    return {
      kind: 'rebindVolume',
      volumeName: source.metadata!.name!,
      resourceVersion: source.metadata!.resourceVersion!,
      // No uid: the PV controller binds such a claimRef to the claim of that name.
      claimRef: { apiVersion: 'v1', kind: 'PersistentVolumeClaim', namespace: m.metadata.namespace, name: helperName },
    };
  }
  if (!w.helperClaim) return { kind: 'createClaim', role: 'helper', claim: helperClaim(m, source) };
  if (!w.stagingClaim) return { kind: 'createClaim', role: 'staging', claim: stagingClaim(m, snapshot) };
  if (!claim) return { kind: 'createClaim', role: 'replacement', claim: replacementClaim(m, snapshot), event: { type: 'Normal', reason: 'ReplacementCreated', message: `created claim ${m.spec.claimName} on ${m.spec.targetStorageClassName}, to be populated from ${source.metadata?.name}` } };
  return { kind: 'setPhase', phase: 'Populating', status: { message: 'final copy from the retained source volume' }, event: { type: 'Normal', reason: 'Populating', message: 'final copy started' } };
}

function planPopulate(w: World, abort: boolean): Step {
  const m = w.migration;
  if (abort) return { kind: 'setPhase', phase: 'RollingBack', status: { message: 'aborted during the final copy' }, event: { type: 'Normal', reason: 'RollingBack', message: 'abort requested during the final copy; restoring the original claim' } };
  if (w.helperClaim?.status?.phase !== 'Bound') return { kind: 'wait', reason: 'SourceBinding', message: 'waiting for the retained source volume to bind to the helper claim', afterMs: WAIT_SHORT };
  const result = copyOf(m.status, 'final');
  if (!result) return planCopy(w, 'final');
  if (w.copyPods.final) return { kind: 'deleteCopyPod', pass: 'final', name: w.copyPods.final.metadata!.name! };
  return {
    kind: 'setPhase',
    phase: 'Binding',
    status: { message: 'copy verified; binding the new volume' },
    event: { type: 'Normal', reason: 'Copied', message: `final copy moved ${formatBytes(result.bytesTransferred)} (${result.files} files, ${formatBytes(result.bytes)} in all) in ${result.seconds.toFixed(1)} s; verified: ${result.verified}` },
  };
}

function planBinding(w: World): Step {
  const m = w.migration;
  const status = m.status ?? {};
  const replacement = w.claim;
  const staging = w.stagingVolume;
  if (!replacement || !belongsToMigration(replacement, m)) {
    return { kind: 'wait', reason: 'ReplacementMissing', message: 'waiting for the replacement claim (the workload recreates it, or pvshift does)', afterMs: WAIT_SHORT };
  }
  if (!status.targetVolumeName) {
    const name = w.stagingClaim?.spec?.volumeName;
    if (!name) return { kind: 'wait', reason: 'TargetBinding', message: 'waiting for the target volume', afterMs: WAIT_SHORT };
    return { kind: 'patchStatus', status: { targetVolumeName: name } };
  }
  const target = staging ?? undefined;
  const bound = replacement.status?.phase === 'Bound' && replacement.spec?.volumeName === status.targetVolumeName;
  if (!bound) {
    if (!target) return { kind: 'wait', reason: 'TargetMissing', message: `waiting for volume ${status.targetVolumeName}`, afterMs: WAIT_SHORT };
    const policy = target.spec?.persistentVolumeReclaimPolicy ?? 'Delete';
    // Retain while the staging claim is let go: its deletion must not take the new data.
    if (policy !== 'Retain') return { kind: 'retainVolume', volumeName: status.targetVolumeName, originalPolicy: policy, migrationKey: migrationKey(m) };
    const ref = target.spec?.claimRef;
    if (ref?.uid !== replacement.metadata?.uid) {
      return {
        kind: 'rebindVolume',
        volumeName: status.targetVolumeName,
        resourceVersion: target.metadata!.resourceVersion!,
        claimRef: { apiVersion: 'v1', kind: 'PersistentVolumeClaim', namespace: m.metadata.namespace, name: replacement.metadata!.name!, uid: replacement.metadata!.uid! },
        event: { type: 'Normal', reason: 'Binding', message: `handing volume ${status.targetVolumeName} to claim ${replacement.metadata?.name}` },
      };
    }
    return { kind: 'wait', reason: 'Binding', message: 'waiting for the replacement claim to bind', afterMs: WAIT_SHORT };
  }
  if (w.stagingClaim) return { kind: 'deleteClaim', name: w.stagingClaim.metadata!.name!, uid: w.stagingClaim.metadata!.uid!, why: 'staging' };
  if (w.helperClaim) return { kind: 'deleteClaim', name: w.helperClaim.metadata!.name!, uid: w.helperClaim.metadata!.uid!, why: 'helper' };
  const original = target?.metadata?.annotations?.[ANNOTATION_ORIGINAL_RECLAIM_POLICY];
  if (target && original) return { kind: 'restoreVolumePolicy', volumeName: status.targetVolumeName, policy: w.targetClass?.reclaimPolicy ?? original };
  const source = w.sourceVolume;
  if (source && source.metadata?.annotations?.[ANNOTATION_MIGRATION] !== migrationKey(m)) {
    return { kind: 'annotateVolume', volumeName: source.metadata!.name!, annotations: { [ANNOTATION_MIGRATION]: migrationKey(m) } };
  }
  const gated = consumersOf(w).gated;
  if (gated.length) return { kind: 'liftGates', pods: gated.map((p) => p.metadata!.name!), event: { type: 'Normal', reason: 'GateLifted', message: `released ${gated.map((p) => p.metadata?.name).join(', ')}` } };
  const downtime = downtimeSeconds(w);
  return {
    kind: 'setPhase',
    phase: 'Succeeded',
    status: { completionTime: w.now.toISOString(), message: `migrated to ${m.spec.targetStorageClassName}; old volume ${status.sourceVolumeName} kept (Released, Retain)`, ...(downtime !== undefined ? { downtimeSeconds: downtime } : {}) },
    event: { type: 'Normal', reason: 'Succeeded', message: `claim ${m.spec.claimName} is on ${m.spec.targetStorageClassName} (volume ${status.targetVolumeName})${downtime !== undefined ? `; downtime ${downtime.toFixed(1)} s` : ''}; old volume ${status.sourceVolumeName} kept` },
  };
}

/** Downtime: from the gate added to the first gated pod to now (the gate is lifted in this pass). */
function downtimeSeconds(w: World): number | undefined {
  const m = w.migration;
  const from = m.status?.gatedAt ?? m.status?.cutoverStartTime;
  if (!from) return undefined;
  return Math.max(0, (w.now.getTime() - new Date(from).getTime()) / 1000);
}

function planRollback(w: World): Step {
  const m = w.migration;
  const status = m.status ?? {};
  const snapshot = status.originalClaim;
  const sourceName = status.sourceVolumeName;
  for (const pass of ['final', 'presync', 'measure'] as const) {
    const pod = w.copyPods[pass];
    if (pod) return { kind: 'deleteCopyPod', pass, name: pod.metadata!.name! };
  }
  const source = w.sourceVolume;
  if (!snapshot || !sourceName || !source) return fail('RollbackImpossible', `cannot roll back: source volume ${sourceName ?? '(unknown)'} or the claim snapshot is gone`);
  const claim = w.claim;
  const isRestored = (c: V1PersistentVolumeClaim) => c.spec?.volumeName === sourceName && !belongsToMigration(c, m);
  if (claim && claim.metadata?.uid !== snapshotUid(status) && !isRestored(claim)) {
    if (claim.metadata?.deletionTimestamp) return { kind: 'wait', reason: 'ClaimTerminating', message: 'waiting for the replacement claim to go', afterMs: WAIT_SHORT };
    return { kind: 'deleteClaim', name: claim.metadata!.name!, uid: claim.metadata!.uid!, why: 'replacement' };
  }
  if (w.helperClaim) return { kind: 'deleteClaim', name: w.helperClaim.metadata!.name!, uid: w.helperClaim.metadata!.uid!, why: 'helper' };
  const ref = source.spec?.claimRef;
  const originalStillThere = claim && claim.metadata?.uid === snapshotUid(status);
  if (!originalStillThere && (ref?.name !== m.spec.claimName || (ref.uid && ref.uid !== claim?.metadata?.uid))) {
    return {
      kind: 'rebindVolume',
      volumeName: sourceName,
      resourceVersion: source.metadata!.resourceVersion!,
      claimRef: { apiVersion: 'v1', kind: 'PersistentVolumeClaim', namespace: m.metadata.namespace, name: m.spec.claimName, ...(claim ? { uid: claim.metadata!.uid! } : {}) },
    };
  }
  if (!claim) return { kind: 'createClaim', role: 'restored', claim: restoredClaim(m, snapshot, sourceName), event: { type: 'Normal', reason: 'OriginalRestored', message: `recreated claim ${m.spec.claimName} on its original volume ${sourceName}` } };
  if (claim.status?.phase !== 'Bound') return { kind: 'wait', reason: 'RestoreBinding', message: 'waiting for the restored claim to bind', afterMs: WAIT_SHORT };
  if (w.stagingClaim) return { kind: 'deleteClaim', name: w.stagingClaim.metadata!.name!, uid: w.stagingClaim.metadata!.uid!, why: 'staging' };
  const gated = consumersOf(w).gated;
  if (gated.length) return { kind: 'liftGates', pods: gated.map((p) => p.metadata!.name!), event: { type: 'Normal', reason: 'GateLifted', message: `released ${gated.map((p) => p.metadata?.name).join(', ')} on the original volume` } };
  return { kind: 'setPhase', phase: 'RolledBack', status: { completionTime: w.now.toISOString() }, event: { type: 'Normal', reason: 'RolledBack', message: `claim ${m.spec.claimName} is back on its original volume ${sourceName}` } };
}

/** Finished migrations still tidy up: copy pods, staging claims, gates, policies, the namespace label, the finalizer. */
function planTerminal(w: World, phase: Phase): Step {
  const m = w.migration;
  const status = m.status ?? {};
  for (const pass of ['final', 'presync', 'measure'] as const) {
    const pod = w.copyPods[pass];
    if (pod) return { kind: 'deleteCopyPod', pass, name: pod.metadata!.name! };
  }
  // A Failed after cutover (rollback impossible) may leave the staging volume as the only full copy: keep it.
  const beforeCutover = phase === 'Aborted' || (phase === 'Failed' && !status.cutoverStartTime);
  if (beforeCutover && w.stagingClaim) return { kind: 'deleteClaim', name: w.stagingClaim.metadata!.name!, uid: w.stagingClaim.metadata!.uid!, why: 'staging' };
  const source = w.sourceVolume;
  const original = source?.metadata?.annotations?.[ANNOTATION_ORIGINAL_RECLAIM_POLICY];
  // Back on (or never off) the source: its reclaim policy is the user's again.
  if (source && original && phase !== 'Succeeded' && source.spec?.claimRef?.name === m.spec.claimName) {
    return { kind: 'restoreVolumePolicy', volumeName: source.metadata!.name!, policy: original };
  }
  const gated = w.consumers.filter((p) => isGated(p) && (p.metadata?.annotations?.[ANNOTATION_MIGRATION] ?? '').split(',').includes(m.metadata.name));
  if (gated.length) return { kind: 'liftGates', pods: gated.map((p) => p.metadata!.name!), event: { type: 'Normal', reason: 'GateLifted', message: `released ${gated.map((p) => p.metadata?.name).join(', ')}` } };
  if (
    phase === 'Succeeded' &&
    m.spec.sourceRetention === 'DeleteAfterVerify' &&
    source &&
    source.status?.phase === 'Released' &&
    source.spec?.persistentVolumeReclaimPolicy !== 'Delete' &&
    (status.copies ?? []).some((c) => c.pass === 'final' && c.verified !== 'none')
  ) {
    return { kind: 'setVolumePolicy', volumeName: source.metadata!.name!, policy: 'Delete', event: { type: 'Normal', reason: 'SourceReleased', message: `copy verified; old volume ${source.metadata?.name} handed back to its provisioner for deletion (sourceRetention: DeleteAfterVerify)` } };
  }
  const othersActive = w.siblings.some((s) => s.metadata.name !== m.metadata.name && !isTerminal(phaseOf(s)));
  if (w.namespaceLabelled && !othersActive) return { kind: 'labelNamespace', active: false };
  if (m.metadata.deletionTimestamp && hasFinalizer(m)) return { kind: 'removeFinalizer' };
  return { kind: 'done' };
}
