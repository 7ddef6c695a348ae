// What the controller knows about one migration at one moment: read from the
// informer caches by reconcile, handed to plan. Pure data, no clients.
import type {
  V1ObjectMeta,
  V1PersistentVolume,
  V1PersistentVolumeClaim,
  V1Pod,
  V1StorageClass,
} from '@kubernetes/client-node';
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

/**
 * An object as the API server keeps it: named, with a uid. observe hands plan
 * nothing else, and says so in the type, so plan reads both without `!`.
 */
export type Stored<T extends { metadata?: V1ObjectMeta }> = T & {
  metadata: V1ObjectMeta & { name: string; uid: string };
};

/** Whether `o` has a name and a uid (everything read from the API server does). */
export function isStored<T extends { metadata?: V1ObjectMeta }>(o: T): o is Stored<T> {
  return !!o.metadata?.name && !!o.metadata.uid;
}

/** `o` where it is stored, else undefined: a cache entry without a name or uid is no object to act on. */
export function storedOrNone<T extends { metadata?: V1ObjectMeta }>(o: T | undefined): Stored<T> | undefined {
  return o && isStored(o) ? o : undefined;
}

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
  claim?: Stored<V1PersistentVolumeClaim>;
  sourceVolume?: Stored<V1PersistentVolume>;
  targetClass?: V1StorageClass;
  stagingClaim?: Stored<V1PersistentVolumeClaim>;
  stagingVolume?: Stored<V1PersistentVolume>;
  helperClaim?: Stored<V1PersistentVolumeClaim>;
  /** Pods of the namespace that mount the claim (copy pods excluded). */
  consumers: Stored<V1Pod>[];
  copyPods: Partial<Record<Pass, Stored<V1Pod>>>;
  /** For a running copy pod: its latest progress line. */
  progress?: RunnerProgress;
  /** For a finished copy pod: its summary (termination message), where it parsed. */
  summary?: RunnerSummary;
  /** Other migrations of the same namespace (for duplicates and the namespace label). */
  siblings: VolumeMigration[];
  /** A StatefulSet policy's migration: every replica already moved runs Ready on its new volume (true otherwise). */
  movedReplicasReady: boolean;
  /** Whether the namespace carries the active label. */
  namespaceLabelled: boolean;
  /** An annotated StatefulSet in the namespace (src/workload-policy.ts): its future claims need the webhook. */
  workloadPolicyActive: boolean;
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
