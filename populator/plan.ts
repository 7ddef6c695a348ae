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
  ANNOTATION_MIGRATION_UID,
  ANNOTATION_ORIGINAL_RECLAIM_POLICY,
  ANNOTATION_TARGET_CLASS,
  ANNOTATION_TARGET_SIZE,
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
import { isTerminal, phaseOf, type ClaimSnapshot, type CopyResult, type KeptVolume, type Phase, type VolumeMigration, type VolumeMigrationStatus } from '../src/volume-migration.js';
import { classifyRunnerExit } from '../src/runner-protocol.js';
import { placementConflict } from './placement.js';
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
  // Every PV write carries the resourceVersion the plan saw: a PV changed since is a conflict, never a blind overwrite.
  | { kind: 'retainVolume'; volumeName: string; resourceVersion: string; originalPolicy: string; migrationKey: string; migrationUid: string; event?: EventNote }
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

function nameOf(o: { metadata?: { name?: string } } | undefined): string {
  return o?.metadata?.name ?? '';
}

function rvOf(o: { metadata?: { resourceVersion?: string } } | undefined): string {
  return o?.metadata?.resourceVersion ?? '';
}

/** Makes `pv` Retain and stamps it as this migration's, recording its policy; guarded by the resourceVersion plan saw. */
function retain(m: VolumeMigration, pv: V1PersistentVolume, event?: EventNote): Step {
  return {
    kind: 'retainVolume',
    volumeName: nameOf(pv),
    resourceVersion: rvOf(pv),
    originalPolicy: pv.spec?.persistentVolumeReclaimPolicy ?? 'Delete',
    migrationKey: migrationKey(m),
    migrationUid: uidOf(m),
    ...(event ? { event } : {}),
  };
}

/** Invariant 6: a volume is this migration's when pvshift stamped it with the migration's UID and it is claimed in its namespace. */
export function isStampedBy(pv: V1PersistentVolume | undefined, m: VolumeMigration): boolean {
  return !!pv && !!uidOf(m) && pv.metadata?.annotations?.[ANNOTATION_MIGRATION_UID] === uidOf(m) && pv.spec?.claimRef?.namespace === m.metadata.namespace;
}

/** The user's claim and its volume point at each other (name, namespace and uid): the one volume a migration may take. */
function isBoundTo(pv: V1PersistentVolume | undefined, claim: V1PersistentVolumeClaim | undefined): boolean {
  const ref = pv?.spec?.claimRef;
  return !!pv && !!claim && ref?.namespace === claim.metadata?.namespace && ref?.name === claim.metadata?.name && !!ref?.uid && ref.uid === claim.metadata?.uid && claim.spec?.volumeName === pv.metadata?.name;
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
    return `volume ${nameOf(source)} (named in status.sourceVolumeName) does not carry this migration's ${ANNOTATION_MIGRATION_UID} or is claimed outside namespace ${ns}`;
  }
  for (const claim of [w.stagingClaim, w.helperClaim]) {
    if (claim && !isMadeBy(claim, m)) return `claim ${ns}/${nameOf(claim)} has the name of one of this migration's claims but was not made by it (no ${LABEL_MIGRATION_UID}=${uidOf(m)})`;
  }
  const target = w.stagingVolume;
  if (target) {
    const ref = target.spec?.claimRef;
    // Claimed in our namespace by our staging claim (its name carries our UID; the claim itself may be gone) or by our replacement.
    const claimedByOurs =
      ref?.namespace === ns && (ref.name === stagingClaimName(uidOf(m)) || (!!ref.uid && belongsToMigration(w.claim, m) && ref.uid === w.claim?.metadata?.uid));
    if (!claimedByOurs && !isStampedBy(target, m)) return `volume ${nameOf(target)} (the target) is neither bound to this migration's claims in namespace ${ns} nor stamped with its UID`;
  }
  return undefined;
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
    if (phase === 'Held') return { kind: 'wait', reason: 'VolumeNotOwned', message, afterMs: WAIT_HELD };
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
  if (!isBoundTo(w.sourceVolume, claim)) {
    return { reason: 'VolumeNotOwned', message: `volume ${claim.spec.volumeName} is not bound to claim ${ns}/${m.spec.claimName} (its claimRef names another claim): pvshift takes only the volume the claim and the volume agree on` };
  }
  const retainedBy = w.sourceVolume.metadata?.annotations?.[ANNOTATION_MIGRATION_UID];
  const holder = retainedBy && retainedBy !== uidOf(m) ? w.siblings.find((s) => s.metadata.uid === retainedBy && !isTerminal(phaseOf(s))) : undefined;
  if (holder) return { reason: 'DuplicateMigration', message: `volume ${claim.spec.volumeName} is held by VolumeMigration ${holder.metadata.name}, which has not finished` };
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
  if (m.spec.sourceRetention === 'DeleteAfterVerify' && m.spec.verify !== 'checksum') {
    return { reason: 'InvalidRetention', message: 'sourceRetention: DeleteAfterVerify deletes the old volume, so it requires verify: checksum' };
  }
  if (!w.fidelity.ok) return { reason: w.fidelity.reason, message: w.fidelity.message };
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
  // Invariant 1: the data's only home is made Retain before anything else. A
  // source Retain already (by the user, or an earlier migration of the claim) is
  // still stamped as this migration's.
  if (policy !== 'Retain') {
    return retain(m, source, { type: 'Normal', reason: 'SourceRetained', message: `set reclaim policy of ${source.metadata?.name} to Retain (was ${policy})` });
  }
  if (source.metadata?.annotations?.[ANNOTATION_MIGRATION_UID] !== uidOf(m)) return retain(m, source);
  if (!status.originalClaim) {
    return {
      kind: 'patchStatus',
      status: {
        originalClaim: snapshotOf(claim),
        sourceVolumeName: source.metadata?.name,
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
  if (w.copyPods.measure) return { kind: 'deleteCopyPod', pass: 'measure', name: w.copyPods.measure.metadata!.name! };
  const next: Phase = isPreSyncEnabled(m, status.originalClaim) ? 'PreSyncing' : 'WaitingForCutover';
  return {
    kind: 'setPhase',
    phase: next,
    status: { message: next === 'PreSyncing' ? 'copying while the application runs' : 'waiting for the consumer pod to be recreated' },
    event: {
      type: 'Normal',
      reason: 'Validated',
      message: `migration of ${m.spec.claimName} to ${m.spec.targetStorageClassName} validated; source ${source.metadata?.name} retained${w.fidelity.ok && w.fidelity.fidelity.dropped.length ? `; ${w.fidelity.note}` : ''}`,
    },
  };
}

function planPreSync(w: World, abort: boolean): Step {
  const m = w.migration;
  const snapshot = m.status?.originalClaim;
  if (abort) return { kind: 'setPhase', phase: 'Aborted', status: { message: 'aborted before cutover; cleaning up' }, event: { type: 'Normal', reason: 'Aborted', message: 'migration aborted during pre-sync' } };
  if (!snapshot) return fail('SnapshotMissing', 'the status lost the snapshot of the original claim');
  const gone = claimDeletedBeforeCutover(w);
  if (gone) return gone;
  const { gated, scheduled } = consumersOf(w);
  const running = w.copyPods.presync && !isFinished(w.copyPods.presync) ? w.copyPods.presync : undefined;
  if (gated.length > 0 && scheduled.length === 0 && w.stagingClaim) {
    // The application is being recreated and waits behind its gate: it must not
    // wait for the rest of a pre-sync, and an RWO source must not stay mounted by
    // a copy pod. Stop the pre-sync; the final copy goes on from where it got to.
    if (running) return { kind: 'deleteCopyPod', pass: 'presync', name: nameOf(running) };
    return startCutover(w, gated, 'the pre-sync was cut short: the final copy continues from where it got to');
  }
  if (!w.stagingClaim) return { kind: 'createClaim', role: 'staging', claim: stagingClaim(m, snapshot) };
  if (w.yieldCopySlot && running) {
    // A final copy (an application held by its gate) needs the slot; a pre-sync resumes later.
    return { kind: 'deleteCopyPod', pass: 'presync', name: nameOf(running), event: { type: 'Normal', reason: 'PreSyncYielded', message: 'pre-sync paused: its copy slot went to a final copy; it resumes when a slot is free' } };
  }
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
  if (!pod && w.copyPodRefused?.pass === pass) {
    // Admission said no (Pod Security, a policy): asking again gets the same answer.
    const message = `the ${pass} copy pod was refused by admission: ${w.copyPodRefused.message}`;
    if (pass === 'final') return rollBack('CopyPodRefused', message);
    return fail('CopyPodRefused', message);
  }
  if (!pod) {
    if (!w.copySlotFree) return { kind: 'wait', reason: 'WaitingForCopySlot', message: 'waiting for a free copy slot (max concurrent copies reached)', afterMs: WAIT_COPY };
    return { kind: 'createCopyPod', pass, event: { type: 'Normal', reason: pass === 'final' ? 'FinalSyncStarted' : pass === 'presync' ? 'PreSyncStarted' : 'MeasureStarted', message: `started ${pass} copy pod` } };
  }
  if (!isFinished(pod)) {
    const stalled = stalledSeconds(w, pod);
    if (stalled > w.settings.copyStallSeconds) return copyFailed(w, pod, pass, true, `${pass} copy made no progress for ${Math.round(stalled)} s (--copy-stall-timeout ${w.settings.copyStallSeconds} s)`);
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
function copyFailed(w: World, pod: V1Pod, pass: Pass, transient: boolean, message: string): Step {
  const m = w.migration;
  // This pod's failure is number (failures recorded when it started) + 1, however
  // often the failed pod is seen again: counting from the status alone would add
  // one per reconcile and spend the whole budget on a single failure.
  const startedAfter = Number(pod.metadata?.annotations?.[ANNOTATION_COPY_ATTEMPT]);
  const attempts = (Number.isInteger(startedAfter) && startedAfter >= 0 ? startedAfter : attemptsOf(m.status, pass)) + 1;
  if (transient && attempts < w.settings.copyAttempts) {
    const recorded = m.status?.attempts ?? {};
    if ((recorded[pass] ?? 0) < attempts) {
      return { kind: 'patchStatus', status: { attempts: { ...recorded, [pass]: attempts } }, event: { type: 'Warning', reason: 'CopyRetrying', message: `${message}; retrying (attempt ${attempts + 1} of ${w.settings.copyAttempts})` } };
    }
    return { kind: 'deleteCopyPod', pass, name: nameOf(pod) };
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

function consumersOf(w: World): { gated: V1Pod[]; scheduled: V1Pod[] } {
  return { gated: w.consumers.filter(isGated), scheduled: w.consumers.filter(isScheduled) };
}

function planWaiting(w: World, abort: boolean): Step {
  const m = w.migration;
  if (abort) return { kind: 'setPhase', phase: 'Aborted', status: { message: 'aborted before cutover; cleaning up' }, event: { type: 'Normal', reason: 'Aborted', message: 'migration aborted before cutover' } };
  const gone = claimDeletedBeforeCutover(w);
  if (gone) return gone;
  const { gated, scheduled } = consumersOf(w);
  if (m.spec.cutover === 'Evict') {
    const toEvict = scheduled.filter((p) => !p.metadata?.deletionTimestamp && !isFinished(p));
    if (toEvict.length) {
      return { kind: 'evictPods', pods: toEvict.map((p) => p.metadata!.name!), event: { type: 'Normal', reason: 'Evicting', message: `evicting ${toEvict.map((p) => p.metadata?.name).join(', ')} for cutover` } };
    }
  }
  if (gated.length > 0 && scheduled.length === 0) return startCutover(w, gated);
  const missed = missedGate(w, scheduled);
  if (missed.length) {
    const names = missed.map(nameOf).join(', ');
    const message = `pod ${names} started on the old volume: it was created after the migration was validated, but without pvshift's scheduling gate (pvshift's pod webhook did not answer in time, or the namespace lost the label ${LABEL_NAMESPACE_ACTIVE}); recreate or evict it to cut over`;
    return { kind: 'wait', reason: 'GateMissed', message, afterMs: 5000, event: { type: 'Warning', reason: 'GateMissed', message } };
  }
  const why = scheduled.length ? `waiting for ${scheduled.map((p) => p.metadata?.name).join(', ')} to go (recreate or evict it to cut over)` : 'waiting for a new pod of the claim';
  return { kind: 'wait', reason: 'WaitingForCutover', message: why, afterMs: 5000 };
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
function missedGate(w: World, scheduled: V1Pod[]): V1Pod[] {
  const validated = w.migration.status?.conditions?.find((c) => c.type === 'Validated' && c.status === 'True');
  const since = Date.parse(validated?.lastTransitionTime ?? '');
  if (Number.isNaN(since)) return [];
  return scheduled.filter((p) => {
    const created = Date.parse(String(p.metadata?.creationTimestamp ?? ''));
    return !p.metadata?.deletionTimestamp && !isFinished(p) && created > since;
  });
}

function startCutover(w: World, gated: V1Pod[], note?: string): Step {
  const stamps = gated.map((p) => p.metadata?.annotations?.[ANNOTATION_GATED_AT]).filter((s): s is string => !!s && !Number.isNaN(Date.parse(s)));
  const gatedAt = stamps.sort()[0] ?? w.now.toISOString();
  const held = `pod ${gated.map((p) => p.metadata?.name).join(', ')} is held until the data is in place`;
  return {
    kind: 'setPhase',
    phase: 'CuttingOver',
    status: { cutoverStartTime: w.now.toISOString(), gatedAt, message: 'cutover: replacing the claim' },
    event: { type: 'Normal', reason: 'CutoverStarted', message: note ? `${held}; ${note}` : held },
  };
}

/**
 * Before cutover the user's claim is theirs: deleted (or being deleted) with no
 * pod coming back for it, the migration has nothing left to do. It ends, cleans
 * up what it made, and keeps the old volume (Retain): the user may still want it.
 */
function claimDeletedBeforeCutover(w: World): Step | undefined {
  const m = w.migration;
  const original = w.claim && w.claim.metadata?.uid === snapshotUid(m.status) ? w.claim : undefined;
  const gone = !original || !!original.metadata?.deletionTimestamp;
  const { gated, scheduled } = consumersOf(w);
  if (!gone || gated.length > 0 || scheduled.length > 0) return undefined;
  const source = m.status?.sourceVolumeName ?? '(unknown)';
  return {
    kind: 'setPhase',
    phase: 'Failed',
    status: {
      message: `claim ${m.spec.claimName} was deleted before cutover; the migration ends and its old volume ${source} is kept (reclaim policy Retain)`,
      keptVolumes: keptVolumesOf(w),
    },
    event: { type: 'Warning', reason: 'ClaimDeleted', message: `claim ${m.spec.claimName} was deleted before cutover; old volume ${source} kept (Retain)` },
  };
}

function planCutover(w: World, abort: boolean): Step {
  const m = w.migration;
  const status = m.status ?? {};
  const snapshot = status.originalClaim;
  const source = w.sourceVolume;
  if (abort) return { kind: 'setPhase', phase: 'RollingBack', status: { message: 'aborted during cutover: restoring the original claim' }, event: { type: 'Normal', reason: 'RollingBack', message: 'abort requested during cutover; restoring the original claim on its volume' } };
  if (!snapshot || !source) return { kind: 'setPhase', phase: 'RollingBack', status: { message: 'the source volume or the claim snapshot is missing' }, event: { type: 'Warning', reason: 'SourceMissing', message: `source volume ${status.sourceVolumeName} or the claim snapshot is missing; rolling back` } };
  if (source.spec?.persistentVolumeReclaimPolicy !== 'Retain') return retain(m, source);
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
    const users = consumersOf(w).scheduled;
    if (users.length) {
      // A pod got through ungated (the scope label stripped, the webhook bypassed) and
      // uses it: pvshift never deletes a claim in use. Stop here and say why.
      return {
        kind: 'wait',
        reason: 'ClaimInUse',
        message: `claim ${claim.metadata?.name} was created without pvshift's rewrite and pod ${users.map(nameOf).join(', ')} already uses it (was the namespace label ${'pvshift.io/migration-active'} removed?); pvshift does not delete a claim in use: delete that pod to go on, or abort`,
        afterMs: 5000,
      };
    }
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
  if (!w.stagingClaim) {
    // The copy lands where the held pod can run: a WaitForFirstConsumer target is
    // provisioned on the node of the final copy pod, which carries the pod's constraints.
    return { kind: 'createClaim', role: 'staging', claim: stagingClaim(m, snapshot) };
  }
  if (!claim) return { kind: 'createClaim', role: 'replacement', claim: replacementClaim(m, snapshot), event: { type: 'Normal', reason: 'ReplacementCreated', message: `created claim ${m.spec.claimName} on ${m.spec.targetStorageClassName}, to be populated from ${source.metadata?.name}` } };
  return { kind: 'setPhase', phase: 'Populating', status: { message: 'final copy from the retained source volume' }, event: { type: 'Normal', reason: 'Populating', message: 'final copy started' } };
}

function planPopulate(w: World, abort: boolean): Step {
  const m = w.migration;
  if (abort) return { kind: 'setPhase', phase: 'RollingBack', status: { message: 'aborted during the final copy' }, event: { type: 'Normal', reason: 'RollingBack', message: 'abort requested during the final copy; restoring the original claim' } };
  if (!w.stagingClaim) return rollBack('StagingClaimLost', `the staging claim ${stagingClaimName(uidOf(m))} was deleted during the final copy`);
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

function rollBack(reason: string, why: string): Step {
  return { kind: 'setPhase', phase: 'RollingBack', status: { message: `${why}; rolling back to the original volume` }, event: { type: 'Warning', reason, message: `${why}; rolling back to the original volume` } };
}

function planBinding(w: World, abort: boolean): Step {
  const m = w.migration;
  const status = m.status ?? {};
  const replacement = w.claim;
  const staging = w.stagingVolume;
  const boundToTarget = !!replacement && belongsToMigration(replacement, m) && replacement.status?.phase === 'Bound' && !!status.targetVolumeName && replacement.spec?.volumeName === status.targetVolumeName;
  if (!boundToTarget) {
    // Until the replacement is bound to the copy, the original is one rollback away.
    if (abort) return rollBack('RollingBack', 'abort requested while binding');
    const retained = staging?.spec?.persistentVolumeReclaimPolicy === 'Retain';
    // Gone for good only when its claim says so too (Lost, or gone itself): a volume just
    // provisioned may be in the claims cache before it is in the volumes cache.
    const stagingLost = !w.stagingClaim || w.stagingClaim.status?.phase === 'Lost';
    if (status.targetVolumeName && !staging && stagingLost) return rollBack('TargetMissing', `the target volume ${status.targetVolumeName} is gone`);
    if (!w.stagingClaim && !retained) return rollBack('StagingClaimLost', `the staging claim ${stagingClaimName(uidOf(m))} was deleted before its volume was kept`);
  }
  if (!replacement || !belongsToMigration(replacement, m)) {
    return { kind: 'wait', reason: 'ReplacementMissing', message: 'waiting for the replacement claim (the workload recreates it, or pvshift does)', afterMs: WAIT_SHORT };
  }
  if (!status.targetVolumeName) {
    const name = w.stagingClaim?.spec?.volumeName;
    if (!name) return { kind: 'wait', reason: 'TargetBinding', message: 'waiting for the target volume', afterMs: WAIT_SHORT };
    return { kind: 'patchStatus', status: { targetVolumeName: name } };
  }
  if (staging && !boundToTarget) {
    const unreachable = consumersOf(w).gated.map((p) => placementConflict(p, staging)).find((c) => c !== undefined);
    if (unreachable) return rollBack('TargetUnreachable', unreachable);
  }
  const target = staging ?? undefined;
  const bound = replacement.status?.phase === 'Bound' && replacement.spec?.volumeName === status.targetVolumeName;
  if (!bound) {
    if (!target) return { kind: 'wait', reason: 'TargetMissing', message: `waiting for volume ${status.targetVolumeName}`, afterMs: WAIT_SHORT };
    // Retain while the staging claim is let go: its deletion must not take the new data.
    if (target.spec?.persistentVolumeReclaimPolicy !== 'Retain') return retain(m, target);
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
  if (target && (original || target.metadata?.annotations?.[ANNOTATION_MIGRATION_UID])) {
    // The new volume is the user's from now on: its class's policy, none of pvshift's marks.
    return { kind: 'restoreVolumePolicy', volumeName: status.targetVolumeName, resourceVersion: rvOf(target), policy: w.targetClass?.reclaimPolicy ?? original ?? target.spec?.persistentVolumeReclaimPolicy ?? 'Delete' };
  }
  const source = w.sourceVolume;
  if (source && source.metadata?.annotations?.[ANNOTATION_MIGRATION] !== migrationKey(m)) {
    return { kind: 'annotateVolume', volumeName: nameOf(source), resourceVersion: rvOf(source), annotations: { [ANNOTATION_MIGRATION]: migrationKey(m) } };
  }
  const gated = releasable(w, consumersOf(w).gated);
  if (gated.length) {
    // Never lift a gate onto a volume the pod cannot reach (node affinity): roll back instead.
    const unreachable = target ? gated.map((p) => placementConflict(p, target)).find((c) => c !== undefined) : undefined;
    if (unreachable) return rollBack('TargetUnreachable', unreachable);
    return { kind: 'liftGates', pods: gated.map(nameOf), event: { type: 'Normal', reason: 'GateLifted', message: `released ${gated.map(nameOf).join(', ')}` } };
  }
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
  if (!snapshot || !sourceName || !source) {
    // No way back, and no way on: the pods stay held and the claims rewritten (so
    // nothing starts on an empty volume) and whatever copy there is, is kept.
    return hold(w, 'RollbackImpossible', `cannot roll back: source volume ${sourceName ?? '(unknown)'} or the claim snapshot is gone`);
  }
  const claim = w.claim;
  const isRestored = (c: V1PersistentVolumeClaim) => c.spec?.volumeName === sourceName && !belongsToMigration(c, m);
  if (claim && claim.metadata?.uid !== snapshotUid(status) && !isRestored(claim)) {
    if (claim.metadata?.deletionTimestamp) return { kind: 'wait', reason: 'ClaimTerminating', message: 'waiting for the replacement claim to go', afterMs: WAIT_SHORT };
    const users = consumersOf(w).scheduled;
    if (users.length) {
      return { kind: 'wait', reason: 'ClaimInUse', message: `rollback waits: pod ${users.map(nameOf).join(', ')} uses claim ${nameOf(claim)}, and pvshift does not delete a claim in use; delete that pod to go on`, afterMs: 5000 };
    }
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
  const gated = releasable(w, consumersOf(w).gated);
  if (gated.length) return { kind: 'liftGates', pods: gated.map(nameOf), event: { type: 'Normal', reason: 'GateLifted', message: `released ${gated.map(nameOf).join(', ')} on the original volume` } };
  return { kind: 'setPhase', phase: 'RolledBack', status: { completionTime: w.now.toISOString() }, event: { type: 'Normal', reason: 'RolledBack', message: `claim ${m.spec.claimName} is back on its original volume ${sourceName}` } };
}

/** Finished migrations still tidy up: copy pods, staging claims, gates, policies, the namespace label, the finalizer. */
function planTerminal(w: World, phase: Phase): Step {
  const m = w.migration;
  const status = m.status ?? {};
  for (const pass of ['final', 'presync', 'measure'] as const) {
    const pod = w.copyPods[pass];
    if (pod) return { kind: 'deleteCopyPod', pass, name: nameOf(pod) };
  }
  // After cutover a Failed migration was Held: its copy may be the only one, and stays.
  const beforeCutover = phase === 'Aborted' || (phase === 'Failed' && !status.cutoverStartTime);
  if (beforeCutover && w.stagingClaim && isMadeBy(w.stagingClaim, m)) return { kind: 'deleteClaim', name: nameOf(w.stagingClaim), uid: w.stagingClaim.metadata?.uid ?? '', why: 'staging' };
  const source = w.sourceVolume;
  const original = source?.metadata?.annotations?.[ANNOTATION_ORIGINAL_RECLAIM_POLICY];
  // Back on (or never off) the source: its reclaim policy is the user's again. Only
  // the migration that recorded the policy restores it, only while the user's claim
  // is bound to it, and never while another migration of the claim is unfinished:
  // that one may be between deleting the claim and rebinding the volume (Released).
  const othersOfClaim = w.siblings.some((s) => s.metadata.uid !== m.metadata.uid && s.spec.claimName === m.spec.claimName && !isTerminal(phaseOf(s)));
  if (source && original && phase !== 'Succeeded' && isStampedBy(source, m) && isBoundTo(source, w.claim) && !othersOfClaim) {
    return { kind: 'restoreVolumePolicy', volumeName: nameOf(source), resourceVersion: rvOf(source), policy: original };
  }
  const gated = releasable(
    w,
    w.consumers.filter((p) => isGated(p) && migrationsOfPod(p).includes(m.metadata.name)),
  );
  if (gated.length) return { kind: 'liftGates', pods: gated.map(nameOf), event: { type: 'Normal', reason: 'GateLifted', message: `released ${gated.map(nameOf).join(', ')}` } };
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
    return { kind: 'setVolumePolicy', volumeName: nameOf(source), resourceVersion: rvOf(source), policy: 'Delete', event: { type: 'Normal', reason: 'SourceReleased', message: `copy verified; old volume ${source.metadata?.name} handed back to its provisioner for deletion (sourceRetention: DeleteAfterVerify)` } };
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
function releasable(w: World, pods: V1Pod[]): V1Pod[] {
  const m = w.migration;
  return pods.filter((p) =>
    migrationsOfPod(p).every((name) => name === m.metadata.name || !w.siblings.some((s) => s.metadata.name === name && !isTerminal(phaseOf(s)))),
  );
}

/** What pvshift keeps for the user, and what they can do with it. */
function keptVolumesOf(w: World): KeptVolume[] {
  const m = w.migration;
  const kept: KeptVolume[] = [];
  const source = w.sourceVolume;
  if (source && isStampedBy(source, m)) {
    kept.push({
      name: nameOf(source),
      role: 'source',
      message: `the original data, reclaim policy Retain; to use it again, point its claimRef at a claim (name and namespace, no uid) and create that claim with spec.volumeName: ${nameOf(source)}`,
    });
  }
  const target = w.stagingVolume;
  if (target && (isStampedBy(target, m) || target.spec?.claimRef?.uid === w.stagingClaim?.metadata?.uid)) {
    const verified = (m.status?.copies ?? []).some((c) => c.pass === 'final');
    kept.push({
      name: nameOf(target),
      role: 'copy',
      message: `${verified ? 'the verified final copy' : 'a copy that may be incomplete'} on ${m.spec.targetStorageClassName}, reclaim policy Retain, owned by nothing${w.stagingClaim ? ` (claim ${nameOf(w.stagingClaim)})` : ''}`,
    });
  }
  return kept;
}

function hold(w: World, reason: string, why: string): Step {
  const message = `${why}; held: pods stay gated and new claims of the name stay rewritten, so nothing starts on an empty volume; see keptVolumes for the data, and delete this VolumeMigration to release the pods`;
  return { kind: 'setPhase', phase: 'Held', status: { message, keptVolumes: keptVolumesOf(w) }, event: { type: 'Warning', reason, message } };
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
  if (staging && (staging.metadata?.ownerReferences ?? []).length > 0) {
    return { kind: 'disownClaim', name: nameOf(staging), uid: staging.metadata?.uid ?? '', resourceVersion: rvOf(staging) };
  }
  if (m.metadata.deletionTimestamp) {
    const message = `released from hold: pods are no longer gated; ${kept.length ? `the data is kept on ${kept.map((k) => k.name).join(', ')}` : 'no volume of this migration is left'}`;
    return { kind: 'setPhase', phase: 'Failed', status: { message, keptVolumes: kept }, event: { type: 'Warning', reason: 'ReleasedFromHold', message } };
  }
  if (JSON.stringify(m.status?.keptVolumes ?? []) !== JSON.stringify(kept)) return { kind: 'patchStatus', status: { keptVolumes: kept } };
  return { kind: 'wait', reason: 'Held', message: m.status?.message ?? 'held', afterMs: WAIT_HELD };
}
