// Continuous sync: while a migration waits for cutover, the pre-sync runs again
// every spec.resyncInterval, so the final copy (the application's downtime)
// moves only the change since the last pass, and spec.maxDowntime can hold an
// eviction until that copy is expected to be short. The rules here are pure
// readers; planWaiting (cutover.ts) follows and starts the passes.
//
// A re-sync never holds the source while the application wants it: none starts
// while a pod of the claim waits behind its gate, a running one is deleted the
// moment one is gated (planWaiting), and none starts while no pod runs on the
// source (nothing writes to it, so there is nothing to catch up with) unless
// the user asked for one (the annotation pvshift.io/sync-requested, set by
// `kubectl pvshift sync`). A re-sync that fails for good does not fail the
// migration: it is recorded (status.lastSyncFailure, a Warning) and the next
// pass, or the final copy, copies what it missed.
import type { V1Pod } from '@kubernetes/client-node';
import { ANNOTATION_SYNC_PASS, ANNOTATION_SYNC_REQUEST } from '../../src/names.js';
import type { RunnerSummary, World } from '../world.js';
import {
  DEFAULT_RESYNC_INTERVAL,
  isPreSyncEnabled,
  pendingSyncRequest,
  maxDowntimeMs,
  resyncIntervalMs,
  type VolumeMigrationStatus,
} from '../../src/volume-migration.js';
import { consumersOf, copyOf, isFinished } from './readers.js';

/** The pre-sync pass a pod of that pass is (its annotation), else undefined (a pod made before passes were counted). */
export function syncPassOf(pod: V1Pod): number | undefined {
  const n = Number(pod.metadata?.annotations?.[ANNOTATION_SYNC_PASS]);
  return Number.isInteger(n) && n > 0 ? n : undefined;
}

/** Whether the status already holds this finished pre-sync pod's result (a success, or a failure it tolerated). */
export function isSyncRecorded(pod: V1Pod, status: VolumeMigrationStatus | undefined): boolean {
  if (pod.metadata?.uid && pod.metadata.uid === status?.lastSyncFailure?.podUid) return true;
  const n = syncPassOf(pod);
  if (n === undefined) return copyOf(status, 'presync') !== undefined;
  return n <= (status?.syncPasses ?? 0);
}

/** The request a pre-sync pod was started for (the annotation it carries), if any. */
export function syncRequestOf(pod: V1Pod): string | undefined {
  return pod.metadata?.annotations?.[ANNOTATION_SYNC_REQUEST] || undefined;
}

/** Pods that write to the source now: scheduled, not finished, not on their way out. */
function runningConsumers(w: World) {
  return consumersOf(w).scheduled.filter((p) => !p.metadata.deletionTimestamp && !isFinished(p));
}

/**
 * When the next re-sync is due, in ms from now (0 or less: due now), or
 * undefined when none will be: no pre-sync, an application held by its gate
 * (the cutover goes first), re-sync off, or none running (the source is
 * still). A pending request of the user's is due now, unless the gate holds.
 */
export function msUntilResync(w: World): number | undefined {
  const m = w.migration;
  if (!isPreSyncEnabled(m, m.status?.originalClaim) || consumersOf(w).gated.length > 0) return undefined;
  if (pendingSyncRequest(m) !== undefined) return 0;
  const interval = resyncIntervalMs(m.spec);
  if (interval === undefined || runningConsumers(w).length === 0) return undefined;
  const last = Date.parse(m.status?.lastSyncTime ?? '');
  // No record of a pass (a migration pre-synced by an older pvshift): due now.
  if (Number.isNaN(last)) return 0;
  // A failed pass waits its interval too: failing again at once helps nobody.
  const failed = Date.parse(m.status?.lastSyncFailure?.time ?? '');
  return Math.max(last, Number.isNaN(failed) ? last : failed) + interval - w.now.getTime();
}

/**
 * The status a finished pre-sync pass leaves, beside its copy record: its pass
 * number, when it finished, its delta, and the estimate of the final copy.
 *
 * The estimate is the pass's own duration. A pass, pre-sync or final, costs a
 * walk of the whole tree (rsync compares every file's size and mtime; the
 * runner counts and lists it) plus moving what changed since the pass before.
 * The final copy walks the same tree, and moves what changed since the latest
 * pre-sync; when it follows that pass closely (with maxDowntime pvshift evicts
 * only right after one, see planWaiting) that is at most one pass's worth of
 * writes, so the latest pass's seconds bound the copy from above. After the
 * first pass (a full copy) the estimate is high; each re-sync brings it down to
 * what an interval's change costs. Not counted: the final copy's verification
 * (spec.verify), the claim swap, and the application's restart.
 */
export function syncRecord(w: World, pod: V1Pod, summary: RunnerSummary): VolumeMigrationStatus {
  const request = syncRequestOf(pod);
  return {
    ...(request ? { syncRequestServed: request } : {}),
    syncPasses: syncPassOf(pod) ?? (w.migration.status?.syncPasses ?? 0) + 1,
    lastSyncTime: w.now.toISOString(),
    lastSync: {
      bytesTransferred: summary.bytesTransferred,
      filesTransferred: summary.filesTransferred ?? 0,
      seconds: summary.seconds,
    },
    finalCopyEstimateSeconds: summary.seconds,
  };
}

/**
 * Why an eviction (cutover Evict) must wait for the final copy to get shorter,
 * or undefined when it may go now: maxDowntime unset, or the estimate fits it
 * (planWaiting also waits for a due or running re-sync first, so the
 * estimate is fresh when the eviction goes).
 */
export function evictionHold(w: World): string | undefined {
  const m = w.migration;
  const limit = maxDowntimeMs(m.spec);
  if (limit === undefined) return undefined;
  const estimate = m.status?.finalCopyEstimateSeconds;
  const budget = `maxDowntime ${m.spec.maxDowntime}`;
  const interval = resyncIntervalMs(m.spec);
  const resyncing =
    interval === undefined
      ? 're-sync is off (resyncInterval 0), so the estimate will not shrink: raise maxDowntime, or recreate the pod yourself'
      : `re-syncing every ${m.spec.resyncInterval ?? DEFAULT_RESYNC_INTERVAL} to bring it down`;
  if (estimate === undefined)
    return `eviction waits for a pre-sync to estimate the final copy (${budget}); ${resyncing}`;
  if (estimate * 1000 > limit) {
    return `eviction held: the final copy is estimated at ${estimate.toFixed(1)} s, over ${budget}; ${resyncing}`;
  }
  return undefined;
}

/**
 * The status a re-sync that failed for good leaves: the failure, its pod (so
 * it is recorded once), the request it answered, and a fresh retry budget for
 * the next pass. The migration goes on waiting for its cutover.
 */
export function syncFailureRecord(w: World, pod: V1Pod, message: string): VolumeMigrationStatus {
  const request = syncRequestOf(pod);
  const attempts = w.migration.status?.attempts ?? {};
  return {
    lastSyncFailure: { time: w.now.toISOString(), message, podUid: pod.metadata?.uid ?? '' },
    ...(request ? { syncRequestServed: request } : {}),
    ...(attempts.presync ? { attempts: { ...attempts, presync: 0 } } : {}),
  };
}
