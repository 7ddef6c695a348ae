// The VolumeMigration resource (pvshift.io/v1alpha1) as TypeScript types, and the
// pure predicates that webhook and controller share about its phases.
import type { V1ObjectMeta, V1PersistentVolumeClaimSpec } from '@kubernetes/client-node';
import type { ProgressCounters, Summary, VerifyMode } from './runner-protocol.js';
import { ANNOTATION_SYNC_REQUEST, type API_GROUP_VERSION } from './names.js';
import { parseDuration } from './duration.js';

export type CutoverMode = 'OnPodRecreate' | 'Evict';
export type SourceRetention = 'Keep' | 'DeleteAfterVerify';

export interface VolumeMigrationSpec {
  /** The claim to move, in the migration's own namespace. */
  claimName: string;
  targetStorageClassName: string;
  /** Quantity; defaults to the claim's current request. */
  targetSize?: string;
  targetAccessModes?: string[];
  /** Copy while the app still runs; defaults to on where a second mount is allowed. */
  preSync?: boolean;
  cutover?: CutoverMode;
  /**
   * While waiting for cutover, copy again this often (a duration, `5m`), so the
   * final copy moves only the last interval's change; `0` turns it off.
   * Default DEFAULT_RESYNC_INTERVAL. Needs preSync.
   */
  resyncInterval?: string;
  /**
   * With cutover Evict: evict only once the final copy is estimated to take at
   * most this long (a duration, `30s`). Unset: evict at once. Needs preSync.
   */
  maxDowntime?: string;
  verify?: VerifyMode;
  sourceRetention?: SourceRetention;
  /** Set to true to stop: before cutover it cleans up, after it rolls back. */
  abort?: boolean;
}

/**
 * The life of a migration. Everything before CuttingOver leaves the user's
 * objects as they were (only the source PV's reclaim policy is made Retain).
 */
export const PHASES = [
  'Pending', // accepted, not yet validated
  'PreSyncing', // copying while the app runs
  'WaitingForCutover', // ready; waiting for the consumer pod to be recreated (or evicted)
  'CuttingOver', // original claim deleted; helper and replacement claims being made
  'Populating', // final copy from the retained source PV into the target
  'Binding', // target PV being handed to the replacement claim
  'Held', // after cutover, no way back and no way on: pods stay gated, claims stay rewritten, the data is kept (keptVolumes)
  'Succeeded',
  'RollingBack', // putting the original claim back on the source PV
  'RolledBack',
  'Aborted', // stopped before cutover; nothing of the user's was changed
  'Failed', // rejected before cutover; nothing of the user's was changed
] as const;
export type Phase = (typeof PHASES)[number];

export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  lastTransitionTime: string;
  observedGeneration?: number;
}

export interface ClaimSnapshot {
  /** The uid of the original claim: how pvshift tells it from a replacement of the same name. */
  uid?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  spec: V1PersistentVolumeClaimSpec;
}

/** The running copy's latest progress record, and when it was read. */
export interface CopyProgress extends ProgressCounters {
  etaSeconds?: number;
  updatedAt: string;
  /** When bytesDone or filesDone last moved: a copy stalled past --copy-stall-timeout is stopped. */
  advancedAt?: string;
}

/** A finished copy pass: the figures of the runner's summary. */
export interface CopyResult extends Pick<Summary, 'bytes' | 'bytesTransferred' | 'files' | 'seconds' | 'verified'> {
  pass: 'presync' | 'final';
  dropped?: string[];
}

/** What the latest pre-sync pass (the first, or a re-sync) moved: the delta since the pass before. */
export interface SyncDelta {
  bytesTransferred: number;
  filesTransferred: number;
  seconds: number;
}

/** A volume pvshift keeps on purpose (Retain, owned by nothing), and why. */
export interface KeptVolume {
  name: string;
  /** source: the original data; copy: the (possibly only) full copy on the target class. */
  role: 'source' | 'copy';
  message: string;
}

/** What the copy pods may do in the namespace, decided from its Pod Security level before anything starts. */
export interface CopyFidelity {
  /** The namespace's `pod-security.kubernetes.io/enforce` level (privileged when unset). */
  level: string;
  /** Whether copy pods get CAP_SYS_ADMIN (trusted.* xattrs): privileged level and the namespace opt-in. */
  privileged: boolean;
  /** What the copy cannot keep at this level, e.g. ['trusted xattrs']; empty for full fidelity. */
  dropped: string[];
}

export interface SyncFailure {
  time: string;
  message: string;
  /** The failed pass's pod, so that its result is recorded once. */
  podUid: string;
}

export interface VolumeMigrationStatus {
  phase?: Phase;
  observedGeneration?: number;
  message?: string;
  conditions?: Condition[];
  originalClaim?: ClaimSnapshot;
  sourceVolumeName?: string;
  sourceStorageClassName?: string;
  targetVolumeName?: string;
  /** The node the copies ran on, where topology pinned them. */
  nodeName?: string;
  progress?: CopyProgress;
  /** "1.2 GiB / 4.0 GiB (30%)": what the printer column shows. */
  progressText?: string;
  /** One record per pass; a re-sync replaces the presync record, so it is the latest pre-sync's. */
  copies?: CopyResult[];
  /** Pre-sync passes completed (the first and every re-sync). */
  syncPasses?: number;
  /** When the latest pre-sync pass finished. */
  lastSyncTime?: string;
  lastSync?: SyncDelta;
  /**
   * The latest re-sync that failed for good (its retries spent). A failed
   * re-sync does not fail the migration: the next pass, or the final copy,
   * copies what it missed.
   */
  lastSyncFailure?: SyncFailure;
  /** The value of the annotation pvshift.io/sync-requested the latest ended pass answered. */
  syncRequestServed?: string;
  /** How long the final copy is expected to take (populator/plan/resync.ts says how it is estimated). */
  finalCopyEstimateSeconds?: number;
  /** Used bytes of the source, where they had to be measured before a shrink. */
  usedBytes?: number;
  /** Failed attempts of each copy pass, for the retry budget. */
  attempts?: Partial<Record<'presync' | 'final' | 'measure', number>>;
  startTime?: string;
  cutoverStartTime?: string;
  /**
   * When downtime started: the first consumer pod's gate (the webhook's
   * annotation), or, where old pods of a rollout still served then (handoverFrom),
   * the moment the last of them had stopped.
   */
  gatedAt?: string;
  /** Old pods of a Deployment rollout that pvshift evicted so that the new, gated pod could cut over. */
  handoverFrom?: string[];
  completionTime?: string;
  /** No pod of the workload could use the claim: from gatedAt to the gate lifted. */
  downtimeSeconds?: number;
  /** Volumes kept on purpose after a failure or rollback, with what the user can do with each. */
  keptVolumes?: KeptVolume[];
  copyFidelity?: CopyFidelity;
}

export interface VolumeMigration {
  apiVersion: typeof API_GROUP_VERSION;
  kind: 'VolumeMigration';
  metadata: V1ObjectMeta & { name: string; namespace: string };
  spec: VolumeMigrationSpec;
  status?: VolumeMigrationStatus;
}

/**
 * spec.resyncInterval when unset (the CRD defaults it to the same). Each re-sync
 * walks the whole live source (rsync compares every file's size and mtime), so
 * it costs the application I/O however little changed: every 5 minutes keeps
 * that small on a large volume while the final copy's delta stays a few minutes'
 * worth of writes.
 */
export const DEFAULT_RESYNC_INTERVAL = '5m';

/** Milliseconds between re-syncs; undefined when off (`0`, or not a duration: the CRD admits none). */
export function resyncIntervalMs(spec: VolumeMigrationSpec): number | undefined {
  const ms = parseDuration(spec.resyncInterval ?? DEFAULT_RESYNC_INTERVAL);
  return ms ? ms : undefined;
}

/** Pre-sync needs a second mount of the live source; ReadWriteOncePod forbids it. */
export function isPreSyncEnabled(m: VolumeMigration, snapshot: ClaimSnapshot | undefined): boolean {
  const rwop = (snapshot?.spec.accessModes ?? []).includes('ReadWriteOncePod');
  return m.spec.preSync ?? !rwop;
}

/**
 * The user's request for a re-sync (the annotation pvshift.io/sync-requested,
 * `kubectl pvshift sync`) that no ended pass has answered yet, else undefined.
 */
export function pendingSyncRequest(m: VolumeMigration): string | undefined {
  const requested = m.metadata.annotations?.[ANNOTATION_SYNC_REQUEST];
  return requested && requested !== m.status?.syncRequestServed ? requested : undefined;
}

/** spec.maxDowntime in milliseconds; undefined when unset or not a duration. */
export function maxDowntimeMs(spec: VolumeMigrationSpec): number | undefined {
  return spec.maxDowntime === undefined ? undefined : parseDuration(spec.maxDowntime);
}

const TERMINAL: ReadonlySet<Phase> = new Set(['Succeeded', 'RolledBack', 'Aborted', 'Failed']);
/** Phases in which the original claim is gone and a claim of its name must be the replacement. */
const REWRITING: ReadonlySet<Phase> = new Set(['CuttingOver', 'Populating', 'Binding', 'Held']);

export function phaseOf(m: VolumeMigration): Phase {
  return m.status?.phase ?? 'Pending';
}

export function isTerminal(phase: Phase): boolean {
  return TERMINAL.has(phase);
}

/** A new pod mounting the claim must wait (scheduling gate) in every unfinished phase. */
export function isGatingPods(phase: Phase): boolean {
  return !TERMINAL.has(phase);
}

/** A claim created with the migration's claim name must come back as the replacement. */
export function isRewritingClaims(phase: Phase): boolean {
  return REWRITING.has(phase);
}

/** During rollback a claim created with the name must come back as the original, on the source PV. */
export function isRestoringClaims(phase: Phase): boolean {
  return phase === 'RollingBack';
}
