// The constructors of the planner's answers, shared by every room: Events, phase
// moves (toPhase, fail, rollBack), waits, and the writes several phases make alike
// (a claim deleted by uid, a volume made Retain at the version seen, gates lifted).
import type { V1PersistentVolume, V1PersistentVolumeClaim, V1Pod } from '@kubernetes/client-node';
import type { Phase, VolumeMigration, VolumeMigrationStatus } from '../../src/volume-migration.js';
import { Reason, type ReasonName } from '../../src/reasons.js';
import type { Stored } from '../world.js';
import type { EventNote, Step } from './types.js';
import { migrationKey, namesOf, rvOf, uidOf } from './readers.js';

/** The shortest wait: a re-sync about to be due is looked at no sooner than this. */
export const WAIT_MIN = 250;
/** Waiting for the cluster: a claim to bind or go, a volume to appear. */
export const WAIT_SHORT = 1000;
/** Following a running copy pass, or waiting for a copy slot. */
export const WAIT_COPY = 2000;
/** Waiting for what only the user or their workload does: a pod to go, or to come. */
export const WAIT_USER = 5000;
/** Held: nothing changes until the user deletes the migration. */
export const WAIT_HELD = 30_000;

export function normal(reason: ReasonName, message: string): EventNote {
  return { type: 'Normal', reason, message };
}

export function warning(reason: ReasonName, message: string): EventNote {
  return { type: 'Warning', reason, message };
}

/** Moves to `phase`: the status (a message alone, or fields of it) and the event that says so. */
export function toPhase(phase: Phase, status: string | VolumeMigrationStatus, event: EventNote): Step {
  return { kind: 'setPhase', phase, status: typeof status === 'string' ? { message: status } : status, event };
}

export function fail(reason: ReasonName, message: string): Step {
  return toPhase('Failed', message, warning(reason, message));
}

/** After cutover there is no failing: the way out is back to the original volume. */
export function rollBack(reason: ReasonName, why: string): Step {
  const message = `${why}; rolling back to the original volume`;
  return toPhase('RollingBack', message, warning(reason, message));
}

export function wait(reason: ReasonName, message: string, afterMs: number): Extract<Step, { kind: 'wait' }> {
  return { kind: 'wait', reason, message, afterMs };
}

/** Deletes a claim plan saw, by uid: a claim of the name made since is not this one. */
export function deleteClaim(claim: Stored<V1PersistentVolumeClaim>, why: string, event?: EventNote): Step {
  return { kind: 'deleteClaim', name: claim.metadata.name, uid: claim.metadata.uid, why, ...(event ? { event } : {}) };
}

/**
 * Makes `pv` Retain and stamps it as this migration's, recording its policy;
 * guarded by the resourceVersion plan saw.
 */
export function retain(m: VolumeMigration, pv: Stored<V1PersistentVolume>, event?: EventNote): Step {
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

export function liftGates(pods: Stored<V1Pod>[], where = ''): Step {
  return {
    kind: 'liftGates',
    pods: pods.map((p) => p.metadata.name),
    event: normal(Reason.GateLifted, `released ${namesOf(pods)}${where}`),
  };
}
