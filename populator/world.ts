// What the controller knows about one migration at one moment: read from the
// informer caches by reconcile, handed to plan. Pure data, no clients.
import type { V1PersistentVolume, V1PersistentVolumeClaim, V1Pod, V1StorageClass } from '@kubernetes/client-node';
import type { FidelityDecision } from '../src/pod-security.js';
import type { ProgressAsRead, SummaryAsRead } from '../src/runner-protocol.js';
import type { VolumeMigration } from '../src/volume-migration.js';

export type Pass = 'presync' | 'final' | 'measure';
/** Every pass, in the order a migration runs them first. */
export const PASSES: readonly Pass[] = ['presync', 'final', 'measure'];

/** The latest progress record of a running copy pod, as read from its log. */
export type RunnerProgress = ProgressAsRead;
/** A finished copy pod's summary, as read from its termination message or log. */
export type RunnerSummary = SummaryAsRead;

export interface ControllerSettings {
  copyImage: string;
  copyNodeSelector: Record<string, string>;
  copyTolerations: unknown[];
  copyResources: unknown;
  copyPriorityClassName?: string;
  maxConcurrentCopies: number;
  maxCopiesPerNode: number;
  /** Transient copy failures tolerated before the copy counts as failed for good. */
  copyAttempts: number;
  /** rsync --bwlimit for every copy, KiB/s; 0 = none. */
  copyBandwidthLimitKiBps: number;
  /** Target must exceed the measured data by this fraction. */
  sizeHeadroom: number;
  /** A running copy whose progress has not moved for this long counts as a failed attempt. */
  copyStallSeconds: number;
}

export interface World {
  now: Date;
  migration: VolumeMigration;
  /** The claim that has the migration's claim name now: the original, the replacement, or a restored one. */
  claim?: V1PersistentVolumeClaim;
  sourceVolume?: V1PersistentVolume;
  targetClass?: V1StorageClass;
  stagingClaim?: V1PersistentVolumeClaim;
  stagingVolume?: V1PersistentVolume;
  helperClaim?: V1PersistentVolumeClaim;
  /** Pods of the namespace that mount the claim (copy pods excluded). */
  consumers: V1Pod[];
  copyPods: Partial<Record<Pass, V1Pod>>;
  /** For a running copy pod: its latest progress line. */
  progress?: RunnerProgress;
  /** For a finished copy pod: its summary (termination message), where it parsed. */
  summary?: RunnerSummary;
  /** Other migrations of the same namespace (for duplicates and the namespace label). */
  siblings: VolumeMigration[];
  /** Whether the namespace carries the active label. */
  namespaceLabelled: boolean;
  /** The namespace is being deleted: nothing can be created there any more. */
  namespaceTerminating: boolean;
  /** What copy pods may be here, from the namespace's Pod Security labels as they are now. */
  fidelity: FidelityDecision;
  /** Admission refused this migration's copy pod (Pod Security, a policy webhook): its message. */
  copyPodRefused?: { pass: Pass; message: string };
  /** Whether a copy pod may start now (global and per-node caps). */
  copySlotFree: boolean;
  /**
   * Whether this migration's running pre-sync should give its slot up now, so
   * that a final copy (an application held by its gate) can start: pre-syncs
   * are resumable, finals are downtime.
   */
  yieldCopySlot: boolean;
  settings: ControllerSettings;
}
