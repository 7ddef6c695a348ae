// Populating and Binding: the final copy from the retained source, then the new
// volume handed to the replacement claim, pvshift's marks removed, and the gates
// lifted last (the held pods start on the new volume). Until the replacement is
// bound to the copy, any trouble rolls back to the original.
import {
  ANNOTATION_BIND_NUDGED,
  ANNOTATION_MIGRATION,
  ANNOTATION_MIGRATION_UID,
  ANNOTATION_ORIGINAL_RECLAIM_POLICY,
  stagingClaimName,
} from '../../src/names.js';
import type { V1PersistentVolumeClaim } from '@kubernetes/client-node';
import type { VolumeMigration } from '../../src/volume-migration.js';
import { formatBytes } from '../../src/quantity.js';
import { placementConflict } from '../placement.js';
import { Reason } from '../../src/reasons.js';
import type { World } from '../world.js';
import { planCopy } from './copy-pass.js';
import { belongsToMigration, releasable } from './ownership.js';
import { consumersOf, copyOf, migrationKey, rvOf, uidOf } from './readers.js';
import { deleteClaim, liftGates, normal, retain, rollBack, toPhase, wait, WAIT_SHORT } from './steps.js';
import type { Step } from './types.js';

export function planPopulate(w: World, abort: boolean): Step {
  const m = w.migration;
  if (abort) {
    const message = 'abort requested during the final copy; restoring the original claim';
    return toPhase('RollingBack', 'aborted during the final copy', normal(Reason.RollingBack, message));
  }
  if (!w.stagingClaim) {
    return rollBack(
      Reason.StagingClaimLost,
      `the staging claim ${stagingClaimName(uidOf(m))} was deleted during the final copy`,
    );
  }
  const helper = w.helperClaim;
  if (helper?.status?.phase !== 'Bound') {
    // Half-bound: the PV controller wrote the volume (claimRef with the helper's uid,
    // Bound) but not yet the claim. It does both in one sync; when a write of that
    // sync conflicts (its volume worker writes the same phase at once), the claim
    // waits for its periodic resync, 15 s by default. An update event brings it now.
    const ref = w.sourceVolume?.spec?.claimRef;
    const halfBound =
      !!helper &&
      ref?.uid === helper.metadata.uid &&
      w.sourceVolume?.status?.phase === 'Bound' &&
      !helper.metadata.deletionTimestamp &&
      !helper.metadata.annotations?.[ANNOTATION_BIND_NUDGED];
    if (halfBound) {
      return {
        kind: 'nudgeClaim',
        name: helper.metadata.name,
        uid: helper.metadata.uid,
        resourceVersion: rvOf(helper),
      };
    }
    return wait(Reason.SourceBinding, 'waiting for the retained source volume to bind to the helper claim', WAIT_SHORT);
  }
  const result = copyOf(m.status, 'final');
  if (!result) return planCopy(w, 'final');
  if (w.copyPods.final) return { kind: 'deleteCopyPod', pass: 'final', name: w.copyPods.final.metadata.name };
  const moved = `${formatBytes(result.bytesTransferred)} (${result.files} files, ${formatBytes(result.bytes)} in all)`;
  // The copy's volume recorded with the phase: one status write less before the gate lifts (planBinding would make it).
  const targetVolumeName = m.status?.targetVolumeName ? undefined : w.stagingClaim.spec?.volumeName;
  return toPhase(
    'Binding',
    { message: 'copy verified; binding the new volume', ...(targetVolumeName ? { targetVolumeName } : {}) },
    normal(Reason.Copied, `final copy moved ${moved} in ${result.seconds.toFixed(1)} s; verified: ${result.verified}`),
  );
}

export function planBinding(w: World, abort: boolean): Step {
  const m = w.migration;
  const status = m.status ?? {};
  const replacement = w.claim;
  const staging = w.stagingVolume;
  const boundToTarget = isBoundToTarget(replacement, m);
  if (!boundToTarget) {
    // Until the replacement is bound to the copy, the original is one rollback away.
    if (abort) return rollBack(Reason.RollingBack, 'abort requested while binding');
    const retained = staging?.spec?.persistentVolumeReclaimPolicy === 'Retain';
    // Gone for good only when its claim says so too (Lost, or gone itself): a volume just
    // provisioned may be in the claims cache before it is in the volumes cache.
    const stagingLost = !w.stagingClaim || w.stagingClaim.status?.phase === 'Lost';
    if (status.targetVolumeName && !staging && stagingLost) {
      return rollBack(Reason.TargetMissing, `the target volume ${status.targetVolumeName} is gone`);
    }
    if (!w.stagingClaim && !retained) {
      return rollBack(
        Reason.StagingClaimLost,
        `the staging claim ${stagingClaimName(uidOf(m))} was deleted before its volume was kept`,
      );
    }
  }
  if (!replacement || !belongsToMigration(replacement, m)) {
    return wait(
      Reason.ReplacementMissing,
      'waiting for the replacement claim (the workload recreates it, or pvshift does)',
      WAIT_SHORT,
    );
  }
  if (!status.targetVolumeName) {
    const name = w.stagingClaim?.spec?.volumeName;
    if (!name) return wait(Reason.TargetBinding, 'waiting for the target volume', WAIT_SHORT);
    return { kind: 'patchStatus', status: { targetVolumeName: name } };
  }
  if (staging && !boundToTarget) {
    const unreachable = consumersOf(w)
      .gated.map((p) => placementConflict(p, staging))
      .find((c) => c !== undefined);
    if (unreachable) return rollBack(Reason.TargetUnreachable, unreachable);
  }
  const target = staging ?? undefined;
  const bound = replacement.status?.phase === 'Bound' && replacement.spec?.volumeName === status.targetVolumeName;
  if (!bound) {
    if (!target) return wait(Reason.TargetMissing, `waiting for volume ${status.targetVolumeName}`, WAIT_SHORT);
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
        event: normal(Reason.Binding, `handing volume ${status.targetVolumeName} to claim ${name}`),
      };
    }
    return wait(Reason.Binding, 'waiting for the replacement claim to bind', WAIT_SHORT);
  }
  // Deleted is enough, gone is not awaited: pvc-protection lets each go once no pod
  // uses it (none does: the final copy pod is gone), and neither is what the new
  // volume (bound to the replacement, by uid) or the old one (Retain) hangs on.
  if (w.stagingClaim && !w.stagingClaim.metadata.deletionTimestamp) return deleteClaim(w.stagingClaim, 'staging');
  if (w.helperClaim && !w.helperClaim.metadata.deletionTimestamp) return deleteClaim(w.helperClaim, 'helper');
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
  if (w.helperClaim && m.spec.sourceRetention === 'DeleteAfterVerify') {
    // The old volume is handed back (planTerminal) once Released: its helper claim gone first.
    return wait(Reason.ClaimTerminating, 'waiting for the helper claim to go', WAIT_SHORT);
  }
  const gated = releasable(w, consumersOf(w).gated);
  if (gated.length) {
    // Never lift a gate onto a volume the pod cannot reach (node affinity): roll back instead.
    const unreachable = target
      ? gated.map((p) => placementConflict(p, target)).find((c) => c !== undefined)
      : undefined;
    if (unreachable) return rollBack(Reason.TargetUnreachable, unreachable);
    return liftGates(gated);
  }
  const downtime = downtimeSeconds(w);
  const took = downtime !== undefined ? `; downtime ${downtime.toFixed(1)} s` : '';
  return toPhase(
    'Succeeded',
    {
      completionTime: w.now.toISOString(),
      message:
        `migrated to ${m.spec.targetStorageClassName}; ` +
        `old volume ${status.sourceVolumeName} kept (Released, Retain)`,
      ...(downtime !== undefined ? { downtimeSeconds: downtime } : {}),
    },
    normal(
      Reason.Succeeded,
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
/** Whether `claim` is the migration's replacement, bound to the target volume: from then on, finishing is the way out. */
export function isBoundToTarget(claim: V1PersistentVolumeClaim | undefined, m: VolumeMigration): boolean {
  const target = m.status?.targetVolumeName;
  return (
    !!claim &&
    !!target &&
    belongsToMigration(claim, m) &&
    claim.status?.phase === 'Bound' &&
    claim.spec?.volumeName === target
  );
}
