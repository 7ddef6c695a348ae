// Every reason pvshift gives: of the Events on the user's claim and
// VolumeMigration, of waits, of failures and of the migration's conditions. One
// list, so a reason is spelled once and whoever filters events or writes an alert
// on one (`kubectl get events --field-selector reason=...`) finds them all here.
export const Reason = {
  // Validation refusals (Pending → Failed): the migration cannot start, nothing was changed.
  DuplicateMigration: 'DuplicateMigration',
  ClaimNotFound: 'ClaimNotFound',
  ClaimNotBound: 'ClaimNotBound',
  VolumeNotFound: 'VolumeNotFound',
  /** Also later, at any phase: status names a volume or claim pvshift cannot prove is the migration's. */
  VolumeNotOwned: 'VolumeNotOwned',
  BlockVolumeUnsupported: 'BlockVolumeUnsupported',
  StorageClassNotFound: 'StorageClassNotFound',
  PreSyncUnsupported: 'PreSyncUnsupported',
  InvalidAccessModes: 'InvalidAccessModes',
  InvalidSize: 'InvalidSize',
  InvalidRetention: 'InvalidRetention',
  /** resyncInterval or maxDowntime is not a duration, or maxDowntime is set where it cannot be met (no pre-sync, 0). */
  InvalidSyncSettings: 'InvalidSyncSettings',
  /** src/pod-security.ts: the namespace's Pod Security level admits no copy pod. */
  PodSecurityRestricted: 'PodSecurityRestricted',
  TargetTooSmall: 'TargetTooSmall',
  /** The staging or replacement claim cannot be made from the spec (fails before cutover, rolls back during it). */
  InvalidTarget: 'InvalidTarget',
  SnapshotMissing: 'SnapshotMissing',

  // Start (Pending): the source is secured, the data measured where it must fit a smaller target.
  SourceRetained: 'SourceRetained',
  /** The event of leaving Pending, and the reason of the Validated condition (populator/reconcile.ts). */
  Validated: 'Validated',
  /** Ended before cutover at the user's request. */
  Aborted: 'Aborted',
  MeasureStarted: 'MeasureStarted',
  MeasureFailed: 'MeasureFailed',

  // Copy passes (measure, presync, final).
  WaitingForCopySlot: 'WaitingForCopySlot',
  PreSyncStarted: 'PreSyncStarted',
  FinalSyncStarted: 'FinalSyncStarted',
  Copying: 'Copying',
  CopyRetrying: 'CopyRetrying',
  CopyFailed: 'CopyFailed',
  CopyPodRefused: 'CopyPodRefused',
  CopyResultMissing: 'CopyResultMissing',
  FeaturesDropped: 'FeaturesDropped',
  PreSyncYielded: 'PreSyncYielded',
  ReSyncFailed: 'ReSyncFailed',
  ReSyncRequested: 'ReSyncRequested',
  PreSynced: 'PreSynced',
  Copied: 'Copied',

  // Waiting for cutover: the workload must stop using the original claim.
  WaitingForCutover: 'WaitingForCutover',
  /** cutover Evict with maxDowntime: the final copy is estimated longer than allowed (or not yet), so no eviction yet. */
  EvictionHeld: 'EvictionHeld',
  Evicting: 'Evicting',
  GateMissed: 'GateMissed',
  /** A Deployment's new pod waits behind the gate while its old pod holds the claim: the old one is evicted. */
  RolloutHandover: 'RolloutHandover',
  /** A StatefulSet policy with cutover Evict: another replica goes first (one at a time, highest ordinal first). */
  WaitingForTurn: 'WaitingForTurn',
  /** The user deleted their claim before cutover: the migration ends. */
  ClaimDeleted: 'ClaimDeleted',

  // Cutover: the original claim is deleted and replaced.
  CutoverStarted: 'CutoverStarted',
  CutoverDeferred: 'CutoverDeferred',
  SourceMissing: 'SourceMissing',
  ClaimTerminating: 'ClaimTerminating',
  ClaimInUse: 'ClaimInUse',
  OriginalClaimDeleted: 'OriginalClaimDeleted',
  UnrewrittenClaimReplaced: 'UnrewrittenClaimReplaced',
  ReplacementCreated: 'ReplacementCreated',

  // Populating and binding: the final copy, the new volume handed to the replacement, the gates lifted.
  Populating: 'Populating',
  SourceBinding: 'SourceBinding',
  StagingClaimLost: 'StagingClaimLost',
  ReplacementMissing: 'ReplacementMissing',
  TargetBinding: 'TargetBinding',
  TargetMissing: 'TargetMissing',
  TargetUnreachable: 'TargetUnreachable',
  Binding: 'Binding',
  GateLifted: 'GateLifted',
  Succeeded: 'Succeeded',

  // Rollback: the original claim back on its original volume.
  RollingBack: 'RollingBack',
  RollbackImpossible: 'RollbackImpossible',
  OriginalRestored: 'OriginalRestored',
  RestoreBinding: 'RestoreBinding',
  RolledBack: 'RolledBack',

  // Held: no way back and no way on; the user decides.
  Held: 'Held',
  ReleasedFromHold: 'ReleasedFromHold',

  // Terminal: what a finished migration still does.
  SourceReleased: 'SourceReleased',
  /** A copy pod or staging claim pvshift deleted is still going (grace period, pvc-protection). */
  TidyingUp: 'TidyingUp',

  // Conditions (populator/conditions.ts).
  /** Degraded=False. */
  AsExpected: 'AsExpected',
  /** Degraded=False after a terminal error: the migration changed (spec or pvshift.io/retry) and is tried again. */
  Retrying: 'Retrying',

  // The annotation shortcut (populator/shortcut.ts, an Event on the claim).
  InvalidMigrationAnnotation: 'InvalidMigrationAnnotation',

  // A workload's policy (src/workload-policy.ts), as Events on the StatefulSet or Deployment.
  /** The policy's annotations say something pvshift cannot act on (a size that is none, an unknown template). */
  InvalidWorkloadPolicy: 'InvalidWorkloadPolicy',
  ReplicaMigrationCreated: 'ReplicaMigrationCreated',
  ReplicaMigrationWithdrawn: 'ReplicaMigrationWithdrawn',

  // API errors that retrying will not cure (src/errors.ts TerminalError).
  Forbidden: 'Forbidden',
  APIRejected: 'APIRejected',
} as const;

export type ReasonName = (typeof Reason)[keyof typeof Reason];

// Each reason is spelled as its own name: this fails to compile where a value and its key differ.
const _spelledAsNamed: { readonly [K in keyof typeof Reason]: K } = Reason;
