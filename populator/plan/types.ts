// What the planner answers: one Step, the next write (or wait) reconcile does.
// Its own module so the rooms of populator/plan/ and the dispatcher in
// populator/plan.ts share it without importing each other.
import type { V1ObjectReference, V1PersistentVolumeClaim } from '@kubernetes/client-node';
import type { Phase, VolumeMigrationStatus } from '../../src/volume-migration.js';
import type { Pass, RunnerProgress } from '../world.js';

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
  // Every PV write carries the resourceVersion the plan saw: a PV changed since is a
  // conflict, never a blind overwrite.
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
  | {
      kind: 'annotateVolume';
      volumeName: string;
      resourceVersion: string;
      annotations: Record<string, string | null>;
    }
  | { kind: 'labelNamespace'; active: boolean }
  | { kind: 'createClaim'; role: ClaimRole; claim: V1PersistentVolumeClaim; event?: EventNote }
  | { kind: 'deleteClaim'; name: string; uid: string; why: string; event?: EventNote }
  /** Drops the ownerReference of a claim pvshift made, so deleting the migration cannot collect what it holds. */
  | { kind: 'disownClaim'; name: string; uid: string; resourceVersion: string }
  /**
   * Marks a claim pvshift made (an annotation) for no other purpose than an update
   * event: the PV controller syncs a claim on its events and, after a conflict, only
   * at its periodic resync (15 s by default). The helper claim left half-bound is one.
   */
  | { kind: 'nudgeClaim'; name: string; uid: string; resourceVersion: string }
  | { kind: 'createCopyPod'; pass: Pass; event?: EventNote }
  | { kind: 'deleteCopyPod'; pass: Pass; name: string; event?: EventNote }
  | {
      kind: 'rebindVolume';
      volumeName: string;
      resourceVersion: string;
      claimRef: V1ObjectReference;
      event?: EventNote;
    }
  | { kind: 'evictPods'; pods: string[]; event: EventNote }
  | { kind: 'liftGates'; pods: string[]; event?: EventNote }
  /** Nothing to write; the message is shown, and the event (if any) is recorded once, when the message is new. */
  | {
      kind: 'wait';
      reason: string;
      message: string;
      afterMs: number;
      progress?: RunnerProgress;
      event?: EventNote;
    }
  | { kind: 'done' };
