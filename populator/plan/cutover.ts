// WaitingForCutover and CuttingOver. THE USER'S ORIGINAL CLAIM IS DELETED HERE, in
// planCutover (event OriginalClaimDeleted), and nowhere else: only when no scheduled
// pod uses it, its volume is Retain and the replacement is known to be makeable. The
// source is then rebound to a helper claim for the final copy, and the replacement made.
import type { V1Pod } from '@kubernetes/client-node';
import {
  ANNOTATION_GATED_AT,
  ANNOTATION_SYNC_REQUEST,
  LABEL_NAMESPACE_ACTIVE,
  sourceHelperClaimName,
} from '../../src/names.js';
import { replacementClaim, targetSpecOf } from '../../src/replacement-claim.js';
import { helperClaim, stagingClaim } from '../claims.js';
import { Reason } from '../../src/reasons.js';
import type { Stored, World } from '../world.js';
import { maxDowntimeMs, pendingSyncRequest } from '../../src/volume-migration.js';
import { planCopy, type PassLabel } from './copy-pass.js';
import { keptVolumesOf } from './held.js';
import { belongsToMigration } from './ownership.js';
import { planHandover, workloadTurn } from './rollout.js';
import { consumersOf, isFinished, namesOf, rvOf, snapshotUid, uidOf } from './readers.js';
import { evictionHold, isSyncRecorded, msUntilResync } from './resync.js';
import {
  deleteClaim,
  normal,
  retain,
  rollBack,
  toPhase,
  wait,
  WAIT_MIN,
  WAIT_SHORT,
  WAIT_USER,
  warning,
} from './steps.js';
import type { Step } from './types.js';

export function planWaiting(w: World, abort: boolean): Step {
  const m = w.migration;
  if (abort) {
    return toPhase(
      'Aborted',
      'aborted before cutover; cleaning up',
      normal(Reason.Aborted, 'migration aborted before cutover'),
    );
  }
  const gone = claimDeletedBeforeCutover(w);
  if (gone) return gone;
  const { gated, scheduled } = consumersOf(w);
  const sync = w.copyPods.presync;
  const syncRunning = !!sync && !isFinished(sync);
  if (gated.length > 0) {
    // The application is being recreated and waits behind its gate: a re-sync
    // gives way at once (an RWO source must not stay mounted by a copy pod, and
    // cutover must not wait for it); the final copy goes on from where it got to.
    if (sync && !sync.metadata.deletionTimestamp) {
      const stopped = `re-sync stopped: pod ${namesOf(gated)} waits for cutover`;
      return {
        kind: 'deleteCopyPod',
        pass: 'presync',
        name: sync.metadata.name,
        ...(syncRunning ? { event: normal(Reason.PreSyncYielded, stopped) } : {}),
      };
    }
    if (scheduled.length === 0) return startCutover(w, gated);
  }
  const handover = planHandover(w, gated, scheduled);
  if (handover) return handover;
  const untilResync = msUntilResync(w);
  let held: string | undefined;
  let turn: string | undefined;
  if (m.spec.cutover === 'Evict') {
    const toEvict = scheduled.filter((p) => !p.metadata.deletionTimestamp && !isFinished(p));
    if (toEvict.length) {
      turn = workloadTurn(w);
      held = turn ?? evictionHold(w);
      // With maxDowntime the estimate must be fresh: a re-sync due or running goes first.
      const fresh =
        maxDowntimeMs(m.spec) === undefined || (!syncRunning && !(untilResync !== undefined && untilResync <= 0));
      if (!held && fresh) {
        const estimate = m.status?.finalCopyEstimateSeconds;
        const fits =
          m.spec.maxDowntime !== undefined && estimate !== undefined
            ? ` (final copy estimated at ${estimate.toFixed(1)} s, within maxDowntime ${m.spec.maxDowntime})`
            : '';
        return {
          kind: 'evictPods',
          pods: toEvict.map((p) => p.metadata.name),
          event: normal(Reason.Evicting, `evicting ${namesOf(toEvict)} for cutover${fits}`),
        };
      }
    }
  }
  if (sync) {
    // A re-sync in flight: followed like any copy pass, its result recorded once, its pod then deleted.
    if (syncRunning && w.yieldCopySlot) {
      return {
        kind: 'deleteCopyPod',
        pass: 'presync',
        name: sync.metadata.name,
        event: normal(Reason.PreSyncYielded, 're-sync paused: its copy slot went to a final copy'),
      };
    }
    if (syncRunning || !isSyncRecorded(sync, m.status)) return planCopy(w, 'presync', resyncLabel(w));
    return { kind: 'deleteCopyPod', pass: 'presync', name: sync.metadata.name };
  }
  const missed = missedGate(w, scheduled);
  if (missed.length) {
    const message =
      `pod ${namesOf(missed)} started on the old volume: it was created after the migration was validated, ` +
      "but without pvshift's scheduling gate (pvshift's pod webhook did not answer in time, " +
      `or the namespace lost the label ${LABEL_NAMESPACE_ACTIVE}); recreate or evict it to cut over`;
    return { ...wait(Reason.GateMissed, message, WAIT_USER), event: warning(Reason.GateMissed, message) };
  }
  if (untilResync !== undefined && untilResync <= 0) return planCopy(w, 'presync', resyncLabel(w));
  // Look again when the next re-sync is due, if that comes before the usual wait.
  const afterMs = untilResync === undefined ? WAIT_USER : Math.max(WAIT_MIN, Math.min(WAIT_USER, untilResync));
  if (held) return wait(turn ? Reason.WaitingForTurn : Reason.EvictionHeld, held, afterMs);
  const why = !scheduled.length
    ? 'waiting for a new pod of the claim'
    : gated.length
      ? `pod ${namesOf(gated)} waits behind pvshift's gate while ${namesOf(scheduled)} still uses the claim; ` +
        'the cutover starts when it goes (delete or evict it)'
      : `waiting for ${namesOf(scheduled)} to go (recreate or evict it to cut over)`;
  return wait(Reason.WaitingForCutover, why, afterMs);
}

/**
 * A re-sync is the pre-sync pass again, numbered; it starts without an event
 * (it recurs every interval) unless the user asked for it, and its failure
 * does not fail the migration.
 */
function resyncLabel(w: World): PassLabel {
  const label = `re-sync ${(w.migration.status?.syncPasses ?? 0) + 1}`;
  const requested = pendingSyncRequest(w.migration);
  return {
    label,
    tolerateFailure: true,
    ...(requested
      ? { started: normal(Reason.ReSyncRequested, `${label} started: asked for by ${ANNOTATION_SYNC_REQUEST}`) }
      : {}),
  };
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

export function startCutover(w: World, gated: Stored<V1Pod>[], note?: string): Step {
  const stamps = gated
    .map((p) => p.metadata.annotations?.[ANNOTATION_GATED_AT])
    .filter((s): s is string => !!s && !Number.isNaN(Date.parse(s)));
  // After a handover the old pods served until a moment ago: the pass that finds
  // them gone (one informer event later) is when downtime began.
  const handedOver = (w.migration.status?.handoverFrom ?? []).length > 0;
  const gatedAt = (handedOver ? undefined : stamps.sort()[0]) ?? w.now.toISOString();
  const held = `pod ${namesOf(gated)} is held until the data is in place`;
  return toPhase(
    'CuttingOver',
    { cutoverStartTime: w.now.toISOString(), gatedAt, message: 'cutover: replacing the claim' },
    normal(Reason.CutoverStarted, note ? `${held}; ${note}` : held),
  );
}

/**
 * Before cutover the user's claim is theirs: deleted (or being deleted) with no
 * pod coming back for it, the migration has nothing left to do. It ends, cleans
 * up what it made, and keeps the old volume (Retain): the user may still want it.
 */
export function claimDeletedBeforeCutover(w: World): Step | undefined {
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
    warning(Reason.ClaimDeleted, `${deleted}; old volume ${source} kept (Retain)`),
  );
}

/**
 * CuttingOver: the original claim is deleted (its data stays on the retained
 * source), the source is rebound to pvshift's helper claim for the final copy, and
 * the staging and replacement claims are made. Each step is idempotent.
 */
export function planCutover(w: World, abort: boolean): Step {
  const m = w.migration;
  const status = m.status ?? {};
  const snapshot = status.originalClaim;
  const source = w.sourceVolume;
  if (abort) {
    return toPhase(
      'RollingBack',
      'aborted during cutover: restoring the original claim',
      normal(Reason.RollingBack, 'abort requested during cutover; restoring the original claim on its volume'),
    );
  }
  if (!snapshot || !source) {
    return toPhase(
      'RollingBack',
      'the source volume or the claim snapshot is missing',
      warning(
        Reason.SourceMissing,
        `source volume ${status.sourceVolumeName} or the claim snapshot is missing; rolling back`,
      ),
    );
  }
  // Known before the original claim goes: what replaces it, and that it can be made.
  const target = targetSpecOf(m);
  if (target.problem !== undefined) {
    return rollBack(Reason.InvalidTarget, `the replacement claim cannot be made: ${target.problem}`);
  }
  if (source.spec?.persistentVolumeReclaimPolicy !== 'Retain') return retain(m, source);
  // A pre-sync pod the cutover began without (a re-sync created as the pod was
  // gated, not yet in the cache then) holds the source claim: pvc-protection would
  // keep the claim until it is deleted, finished or not. It goes first.
  const sync = w.copyPods.presync;
  if (sync && !sync.metadata.deletionTimestamp)
    return { kind: 'deleteCopyPod', pass: 'presync', name: sync.metadata.name };
  const claim = w.claim;
  const originalUid = snapshotUid(status);
  if (claim && claim.metadata.uid === originalUid) {
    // A scheduled pod still uses the original: pvc-protection would hold the
    // delete, and that pod would keep writing to the source. Go back to waiting.
    if (consumersOf(w).scheduled.length > 0 && !claim.metadata.deletionTimestamp) {
      return toPhase(
        'WaitingForCutover',
        'a scheduled pod still uses the claim',
        normal(Reason.CutoverDeferred, 'a scheduled pod uses the claim again; cutover waits for it to go'),
      );
    }
    if (claim.metadata.deletionTimestamp) {
      return wait(Reason.ClaimTerminating, 'waiting for the original claim to be deleted', WAIT_SHORT);
    }
    // The user's original claim goes; its data stays on the source, Retain (checked above).
    const kept = `its data stays on the retained volume ${source.metadata.name}`;
    return deleteClaim(
      claim,
      'original',
      normal(Reason.OriginalClaimDeleted, `deleted claim ${claim.metadata.name}; ${kept}`),
    );
  }
  if (claim && !belongsToMigration(claim, m)) {
    // Created under this name without the webhook's rewrite (say, before the
    // namespace was labelled). It is new and empty and its pod is gated: replace it.
    if (claim.metadata.deletionTimestamp) {
      return wait(Reason.ClaimTerminating, 'waiting for an unrewritten claim to go', WAIT_SHORT);
    }
    const users = consumersOf(w).scheduled;
    if (users.length) {
      // A pod got through ungated (the scope label stripped, the webhook bypassed) and
      // uses it: pvshift never deletes a claim in use. Stop here and say why.
      const message =
        `claim ${claim.metadata.name} was created without pvshift's rewrite ` +
        `and pod ${namesOf(users)} already uses it ` +
        `(was the namespace label ${LABEL_NAMESPACE_ACTIVE} removed?); ` +
        'pvshift does not delete a claim in use: delete that pod to go on, or abort';
      return wait(Reason.ClaimInUse, message, WAIT_USER);
    }
    const message = `claim ${claim.metadata.name} was created without pvshift's rewrite; replacing it`;
    return deleteClaim(claim, 'unrewritten', warning(Reason.UnrewrittenClaimReplaced, message));
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
  if (!w.helperClaim) {
    // The PV controller binds a claim that names its volume when it syncs that
    // claim, on its creation; if its cache still has the old claimRef then, it
    // leaves the claim Pending until its periodic resync (15 s by default: all
    // of it downtime). A pre-bound volume (claimRef without uid) is marked
    // Available by that controller once it has seen it: create the claim after.
    const phase = source.status?.phase;
    if (!ref.uid && (phase === 'Released' || phase === 'Bound')) {
      return wait(
        Reason.SourceBinding,
        `waiting for the PV controller to see volume ${source.metadata.name} reserved for the helper claim`,
        WAIT_SHORT,
      );
    }
    return { kind: 'createClaim', role: 'helper', claim: helperClaim(m, source) };
  }
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
        Reason.ReplacementCreated,
        `created claim ${m.spec.claimName} on ${m.spec.targetStorageClassName}, ` +
          `to be populated from ${source.metadata.name}`,
      ),
    };
  }
  return toPhase(
    'Populating',
    'final copy from the retained source volume',
    normal(Reason.Populating, 'final copy started'),
  );
}
