// The annotation shortcut: `pvshift.io/target-storage-class` (and optionally
// `pvshift.io/target-size`) on a claim stands for a VolumeMigration of that claim.
// Pure: a claim and the migrations of its namespace in, what to do out.
import type { V1PersistentVolumeClaim } from '@kubernetes/client-node';
import {
  ANNOTATION_TARGET_CLASS,
  ANNOTATION_TARGET_SIZE,
  ANNOTATION_WORKLOAD,
  API_GROUP_VERSION,
  MIGRATION_KIND,
  PREFIX,
  migrationNameForClaim,
} from '../src/names.js';
import { parseQuantity } from '../src/quantity.js';
import { Reason } from '../src/reasons.js';
import { isOnPolicyTarget, type WorkloadPolicy } from '../src/workload-policy.js';
import { isTerminal, phaseOf, type Phase, type VolumeMigration } from '../src/volume-migration.js';

export const LABEL_CREATED_FROM = `${PREFIX}/created-from`;
export { ANNOTATION_WORKLOAD } from '../src/names.js';
/**
 * On a VolumeMigration pvshift aborted because the claim's annotation was
 * removed: annotating the claim again then means "migrate after all", and the
 * record makes way for a new migration even with the same target.
 */
export const ANNOTATION_ABORTED_BY = `${PREFIX}/aborted-by`;
const ABORTED_BY_WITHDRAWAL = 'annotation-removed';
/** The merge patch of the abort, marked as the shortcut's (one write: the mark and the abort land together). */
export const ABORT_PATCH = {
  metadata: { annotations: { [ANNOTATION_ABORTED_BY]: ABORTED_BY_WITHDRAWAL } },
  spec: { abort: true },
} as const;

/** The reason of the Event on a claim whose annotation pvshift cannot act on. */
export const INVALID_ANNOTATION_REASON = Reason.InvalidMigrationAnnotation;

export type ShortcutAction =
  | { kind: 'create'; migration: VolumeMigration }
  | { kind: 'abort'; name: string }
  /** A finished migration made from an earlier annotation stands in the name's way: delete it, then create. */
  | { kind: 'replace'; name: string }
  /** The annotation cannot be acted on: say why on the claim (once per value), create nothing. */
  | { kind: 'invalid'; reason: typeof INVALID_ANNOTATION_REASON; message: string }
  | { kind: 'none' };

/** The target the shortcut acts on: the claim's own annotations, else its StatefulSet's policy. */
function targetOf(
  claim: V1PersistentVolumeClaim,
  policy: WorkloadPolicy | undefined,
): { target?: string; size?: string; policy?: WorkloadPolicy } {
  const annotations = claim.metadata?.annotations ?? {};
  const own = annotations[ANNOTATION_TARGET_CLASS];
  if (own) return { target: own, size: annotations[ANNOTATION_TARGET_SIZE] };
  if (policy) return { target: policy.targetStorageClassName, size: policy.targetSize, policy };
  return {};
}

/** The target the shortcut reads, as one string: what "the same annotation value" means. */
export function annotationSignature(claim: V1PersistentVolumeClaim, policy?: WorkloadPolicy): string {
  const { target, size } = targetOf(claim, policy);
  return JSON.stringify([target ?? null, size ?? null]);
}

/** Why a target size annotation cannot be used, or undefined if it can (the API server's quantity grammar is checked by the CRD). */
function invalidSize(size: string | undefined): string | undefined {
  if (size === undefined) return undefined;
  const bytes = parseQuantity(size);
  if (bytes === undefined)
    return `${ANNOTATION_TARGET_SIZE} "${size}" is not a quantity (write it as the claim's storage request is written, such as 20Gi or 500M); no migration was created`;
  if (bytes <= 0) return `${ANNOTATION_TARGET_SIZE} "${size}" must be greater than zero; no migration was created`;
  return undefined;
}

/** Ended because pvshift withdrew it when the annotation was removed (before cutover: Aborted; an abort that landed after: RolledBack). */
function isWithdrawn(m: VolumeMigration): boolean {
  const ended: Phase[] = ['Aborted', 'RolledBack'];
  return m.metadata.annotations?.[ANNOTATION_ABORTED_BY] === ABORTED_BY_WITHDRAWAL && ended.includes(phaseOf(m));
}

/** Before cutover a migration is only a plan; removing the annotation then withdraws it. */
const ABORTABLE = new Set(['Pending', 'PreSyncing', 'WaitingForCutover']);

/**
 * What to do about a claim's annotation, or about the policy of the StatefulSet
 * that made it (`policy`, src/workload-policy.ts): the claim's own annotation
 * wins. A claim a policy covers that is on the target already (a replica the
 * webhook created there, a replacement after cutover) needs nothing.
 */
export function shortcutAction(
  claim: V1PersistentVolumeClaim,
  migrations: VolumeMigration[],
  workloadPolicy?: WorkloadPolicy,
): ShortcutAction {
  const name = claim.metadata?.name ?? '';
  const namespace = claim.metadata?.namespace ?? '';
  const { target, size, policy } = targetOf(claim, workloadPolicy);
  const mine = migrations.filter((m) => m.metadata.namespace === namespace && m.spec.claimName === name);
  if (target) {
    if (claim.metadata?.deletionTimestamp) return { kind: 'none' };
    if (policy && isOnPolicyTarget(claim, policy)) return { kind: 'none' };
    const invalid = invalidSize(size);
    if (invalid) return { kind: 'invalid', reason: INVALID_ANNOTATION_REASON, message: invalid };
    // Annotated again with another target after an earlier migration ended (done,
    // aborted, failed): that one's record makes way. The same target does only
    // where pvshift itself withdrew the record because the annotation was
    // removed; so a migration that failed on its input is not retried in a
    // loop, and one that succeeded is not done again.
    const stale = mine.find(
      (m) =>
        m.metadata.name === migrationNameForClaim(name) &&
        m.metadata.labels?.[LABEL_CREATED_FROM] === 'annotation' &&
        isTerminal(phaseOf(m)) &&
        !m.metadata.deletionTimestamp &&
        (m.spec.targetStorageClassName !== target || (m.spec.targetSize ?? '') !== (size ?? '') || isWithdrawn(m)),
    );
    if (stale && mine.every((m) => isTerminal(phaseOf(m)))) return { kind: 'replace', name: stale.metadata.name };
    if (mine.length > 0) return { kind: 'none' };
    return {
      kind: 'create',
      migration: {
        apiVersion: API_GROUP_VERSION,
        kind: MIGRATION_KIND,
        metadata: {
          name: migrationNameForClaim(name),
          namespace,
          labels: { [LABEL_CREATED_FROM]: 'annotation' },
          ...(policy ? { annotations: { [ANNOTATION_WORKLOAD]: policy.workload } } : {}),
        },
        spec: {
          claimName: name,
          targetStorageClassName: target,
          ...(size ? { targetSize: size } : {}),
          ...(policy?.cutover ? { cutover: policy.cutover } : {}),
        },
      },
    };
  }
  const fromAnnotation = mine.find(
    (m) => m.metadata.labels?.[LABEL_CREATED_FROM] === 'annotation' && ABORTABLE.has(phaseOf(m)) && !m.spec.abort,
  );
  // Only the original claim speaks for the user: once cut over, the claim of this
  // name is the replacement, which never carries the annotation.
  if (
    fromAnnotation &&
    (!fromAnnotation.status?.originalClaim?.uid || fromAnnotation.status.originalClaim.uid === claim.metadata?.uid)
  ) {
    return { kind: 'abort', name: fromAnnotation.metadata.name };
  }
  return { kind: 'none' };
}
