// Pending: every reason a migration cannot start, refused before anything is
// changed; then the first writes, in the order the safety argument needs: the
// source made Retain (invariant 1), the claim snapshotted, the data measured where
// it must fit a smaller target.
import { ANNOTATION_MIGRATION_UID } from '../../src/names.js';
import { parseDuration } from '../../src/duration.js';
import { formatBytes, parseQuantity } from '../../src/quantity.js';
import { targetSizeOf } from '../../src/replacement-claim.js';
import { isPreSyncEnabled, isTerminal, phaseOf, type Phase, type VolumeMigration } from '../../src/volume-migration.js';
import { snapshotOf } from '../claims.js';
import { Reason, type ReasonName } from '../../src/reasons.js';
import type { World } from '../world.js';
import { planCopy } from './copy-pass.js';
import { isBoundTo } from './ownership.js';
import { uidOf } from './readers.js';
import { fail, normal, retain, toPhase } from './steps.js';
import type { Step } from './types.js';

/** An older unfinished migration of the same claim: the younger one (by creation, then name) gives way. */
function olderMigrationOfClaim(w: World): VolumeMigration | undefined {
  const m = w.migration;
  const created = (s: VolumeMigration) => String(s.metadata.creationTimestamp ?? '');
  return w.siblings.find(
    (s) =>
      s.spec.claimName === m.spec.claimName &&
      s.metadata.name !== m.metadata.name &&
      !isTerminal(phaseOf(s)) &&
      (phaseOf(s) !== 'Pending' ||
        created(s) < created(m) ||
        (created(s) === created(m) && s.metadata.name < m.metadata.name)),
  );
}

/** Validation: every reason a migration cannot start, before anything is changed. */
export function validate(w: World): { reason: ReasonName; message: string } | undefined {
  const m = w.migration;
  const ns = m.metadata.namespace;
  const subject = `claim ${ns}/${m.spec.claimName}`;
  const older = olderMigrationOfClaim(w);
  if (older) {
    return {
      reason: Reason.DuplicateMigration,
      message: `${subject} is already being migrated by VolumeMigration ${older.metadata.name}; delete one of them`,
    };
  }
  const claim = w.claim;
  if (!claim) return { reason: Reason.ClaimNotFound, message: `${subject} does not exist` };
  if (claim.status?.phase !== 'Bound' || !claim.spec?.volumeName) {
    return {
      reason: Reason.ClaimNotBound,
      message: `${subject} is ${claim.status?.phase ?? 'Pending'}, not Bound: there is no volume to copy from`,
    };
  }
  if (!w.sourceVolume) {
    return {
      reason: Reason.VolumeNotFound,
      message: `${subject} is bound to ${claim.spec.volumeName}, which does not exist`,
    };
  }
  if (!isBoundTo(w.sourceVolume, claim)) {
    return {
      reason: Reason.VolumeNotOwned,
      message:
        `volume ${claim.spec.volumeName} is not bound to ${subject} (its claimRef names another claim): ` +
        'pvshift takes only the volume the claim and the volume agree on',
    };
  }
  const retainedBy = w.sourceVolume.metadata.annotations?.[ANNOTATION_MIGRATION_UID];
  const holder =
    retainedBy && retainedBy !== uidOf(m)
      ? w.siblings.find((s) => s.metadata.uid === retainedBy && !isTerminal(phaseOf(s)))
      : undefined;
  if (holder) {
    return {
      reason: Reason.DuplicateMigration,
      message:
        `volume ${claim.spec.volumeName} is held by VolumeMigration ${holder.metadata.name}, ` +
        'which has not finished',
    };
  }
  if ((claim.spec.volumeMode ?? 'Filesystem') === 'Block') {
    return {
      reason: Reason.BlockVolumeUnsupported,
      message: `${subject} has volumeMode Block; pvshift copies files and supports Filesystem volumes only`,
    };
  }
  if (!w.targetClass) {
    return {
      reason: Reason.StorageClassNotFound,
      message: `target StorageClass ${m.spec.targetStorageClassName} does not exist`,
    };
  }
  const rwop = (claim.spec.accessModes ?? []).includes('ReadWriteOncePod');
  if (rwop && m.spec.preSync === true) {
    return {
      reason: Reason.PreSyncUnsupported,
      message:
        `${subject} is ReadWriteOncePod: it cannot be mounted by a copy pod while its application runs; ` +
        'set preSync: false',
    };
  }
  const targetModes = m.spec.targetAccessModes ?? [];
  if (targetModes.includes('ReadWriteOncePod') && targetModes.length > 1) {
    return {
      reason: Reason.InvalidAccessModes,
      message: 'ReadWriteOncePod cannot be combined with other access modes',
    };
  }
  const target = parseQuantity(targetSizeOf(m, claim));
  if (target === undefined || target <= 0) {
    return { reason: Reason.InvalidSize, message: `target size ${m.spec.targetSize} is not a valid quantity` };
  }
  if (m.spec.sourceRetention === 'DeleteAfterVerify' && m.spec.verify !== 'checksum') {
    return {
      reason: Reason.InvalidRetention,
      message: 'sourceRetention: DeleteAfterVerify deletes the old volume, so it requires verify: checksum',
    };
  }
  const sync = syncSettingsProblem(m, rwop);
  if (sync) return { reason: Reason.InvalidSyncSettings, message: sync };
  if (!w.fidelity.ok) return { reason: w.fidelity.reason, message: w.fidelity.message };
  return undefined;
}

/** What is wrong with resyncInterval and maxDowntime (the CRD checks their form; an older CRD may not). */
function syncSettingsProblem(m: VolumeMigration, rwop: boolean): string | undefined {
  const { resyncInterval, maxDowntime } = m.spec;
  const form = 'a duration such as 30s, 5m or 1h30m';
  if (resyncInterval !== undefined && parseDuration(resyncInterval) === undefined) {
    return `resyncInterval "${resyncInterval}" is not ${form} (0 turns re-sync off)`;
  }
  if (maxDowntime === undefined) return undefined;
  const limit = parseDuration(maxDowntime);
  if (!limit) return `maxDowntime "${maxDowntime}" is not ${form}, more than 0`;
  // The estimate comes from pre-sync passes: without them nothing could ever let the eviction go.
  if (!(m.spec.preSync ?? !rwop)) {
    return 'maxDowntime needs pre-sync (the final copy is estimated from its passes), and pre-sync is off';
  }
  return undefined;
}

/** Whether the target is smaller than what the source may hold, so its data must be measured first. */
export function isShrinking(w: World): boolean {
  const original = w.migration.status?.originalClaim ?? w.claim;
  const target = parseQuantity(targetSizeOf(w.migration, original));
  const source = parseQuantity(w.sourceVolume?.spec?.capacity?.storage);
  return target !== undefined && source !== undefined && target < source;
}

/** Fails when data of `bytes` does not fit the target with headroom. */
export function checkFits(w: World, bytes: number): Step | undefined {
  const target = parseQuantity(targetSizeOf(w.migration, w.migration.status?.originalClaim)) ?? 0;
  const needed = Math.ceil(bytes * (1 + w.settings.sizeHeadroom));
  if (needed <= target) return undefined;
  const headroom = Math.round(w.settings.sizeHeadroom * 100);
  return fail(
    Reason.TargetTooSmall,
    `the claim holds ${formatBytes(bytes)}; with ${headroom}% headroom the target needs ${formatBytes(needed)}, ` +
      `but targetSize is ${formatBytes(target)}`,
  );
}

export function planPending(w: World, abort: boolean): Step {
  const m = w.migration;
  const status = m.status ?? {};
  if (abort) {
    return toPhase(
      'Aborted',
      'aborted before anything was changed',
      normal(Reason.Aborted, 'migration aborted before cutover'),
    );
  }
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
    return retain(m, source, normal(Reason.SourceRetained, message));
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
      Reason.Validated,
      `migration of ${m.spec.claimName} to ${m.spec.targetStorageClassName} validated; ` +
        `source ${source.metadata.name} retained${dropped}`,
    ),
  );
}
