// The PVC CREATE mutation: pure, a copy of the claim in, the claim as it must be
// created out. Transport and lookups live elsewhere (admission.ts).
import type { V1PersistentVolumeClaim } from '@kubernetes/client-node';
import { AdmissionDenial } from '../src/errors.js';
import { replacementClaim, restoredClaim, targetSpecOf } from '../src/replacement-claim.js';
import { claimUnderPolicy, isOnPolicyTarget, type WorkloadPolicy } from '../src/workload-policy.js';
import { isRestoringClaims, isRewritingClaims, phaseOf, type VolumeMigration } from '../src/volume-migration.js';

export interface MutationResult<T> {
  /**
   * The object as it must be created: the input itself when nothing applies,
   * else a copy in which only the objects on the path to a change are new (the
   * rest is shared with the input; neither may be modified afterwards).
   */
  object: T;
  /** Shown by kubectl; only set when something changed. */
  warnings: string[];
}

/**
 * Rewrites a claim being created under a name that a VolumeMigration in cutover
 * (or rollback) owns. `migrations` are the migrations of the claim's namespace
 * (extra ones are ignored). Throws AdmissionDenial when the claim must not be
 * created as sent and pvshift cannot say what it must be: failing closed makes
 * the StatefulSet controller retry, where allowing it would provision an empty
 * volume on the old class and lose the point of the migration.
 *
 * Applying it to its own output changes nothing, so reinvocation yields no patch.
 */
export function mutateClaim(
  claim: V1PersistentVolumeClaim,
  migrations: readonly VolumeMigration[],
  policy?: WorkloadPolicy,
): MutationResult<V1PersistentVolumeClaim> {
  const name = claim.metadata?.name;
  const namespace = claim.metadata?.namespace;
  if (!name) return { object: claim, warnings: [] };

  const owning = migrations.filter(
    (m) =>
      m.spec.claimName === name &&
      (namespace === undefined || namespace === '' || m.metadata.namespace === namespace) &&
      (isRewritingClaims(phaseOf(m)) || isRestoringClaims(phaseOf(m))),
  );
  if (owning.length === 0) return policy ? underPolicy(claim, policy) : { object: claim, warnings: [] };
  if (owning.length > 1) {
    const names = owning.map((m) => m.metadata.name).sort();
    throw new AdmissionDenial(
      `claim "${name}" is claimed by several VolumeMigrations in cutover (${names.join(', ')}); ` +
        'pvshift cannot tell which one this claim belongs to: abort all but one',
    );
  }
  const migration = owning[0]!;
  return isRewritingClaims(phaseOf(migration)) ? rewrite(claim, migration) : restore(claim, migration);
}

/**
 * A claim a StatefulSet's standing policy covers (src/workload-policy.ts), with no
 * migration in cutover for its name: a new replica's claim, created on the target
 * directly. There is no old volume, so nothing to copy and no migration.
 */
function underPolicy(claim: V1PersistentVolumeClaim, policy: WorkloadPolicy): MutationResult<V1PersistentVolumeClaim> {
  if (isOnPolicyTarget(claim, policy)) return { object: claim, warnings: [] };
  const created = claimUnderPolicy(claim, policy);
  const size = created.spec?.resources?.requests?.storage;
  return {
    object: created,
    warnings: [
      `pvshift: the policy of ${policy.workload} (pvshift.io/target-storage-class) creates this claim on storage class ` +
        `${policy.targetStorageClassName}${size ? `, ${size}` : ''}`,
    ],
  };
}

/** The replacement claim (src/replacement-claim.ts): target class, size and modes, filled by the populator. */
function rewrite(claim: V1PersistentVolumeClaim, migration: VolumeMigration): MutationResult<V1PersistentVolumeClaim> {
  const migrationName = migration.metadata.name;
  const target = targetSpecOf(migration);
  if (target.problem !== undefined) {
    throw new AdmissionDenial(
      `claim "${migration.spec.claimName}" is in cutover to storage class "${migration.spec.targetStorageClassName}" ` +
        `(VolumeMigration "${migrationName}", phase ${phaseOf(migration)}), but ${target.problem}; ` +
        'refusing to create it until the migration says what it must be',
    );
  }
  const replacement = replacementClaim(migration, target.spec, claim);
  if (isSame(replacement, claim)) return { object: claim, warnings: [] };
  return {
    object: replacement,
    warnings: [
      `pvshift: VolumeMigration ${migrationName} set this claim to storage class ` +
        `${migration.spec.targetStorageClassName}, ${target.spec.resources?.requests?.storage}; it binds once the data is copied`,
    ],
  };
}

/** Rollback: the claim comes back as the original (src/replacement-claim.ts), on the original volume. */
function restore(claim: V1PersistentVolumeClaim, migration: VolumeMigration): MutationResult<V1PersistentVolumeClaim> {
  const migrationName = migration.metadata.name;
  const original = migration.status?.originalClaim;
  const volumeName = migration.status?.sourceVolumeName;
  if (!original || !volumeName) {
    const missing = [!original && 'status.originalClaim', !volumeName && 'status.sourceVolumeName'].filter(Boolean);
    throw new AdmissionDenial(
      `claim "${migration.spec.claimName}" is being rolled back by VolumeMigration "${migrationName}", ` +
        `but its ${missing.join(' and ')} ${missing.length > 1 ? 'are' : 'is'} missing; ` +
        'refusing to create it on anything but the original volume',
    );
  }
  const restored = restoredClaim(migration, original, volumeName, claim);
  if (isSame(restored, claim)) return { object: claim, warnings: [] };
  return {
    object: restored,
    warnings: [`pvshift: VolumeMigration ${migrationName} is rolling back; this claim returns to volume ${volumeName}`],
  };
}

/** Equal as JSON, key order included: the builders keep the order of what they are given, so their own output comes back equal. */
function isSame(a: V1PersistentVolumeClaim, b: V1PersistentVolumeClaim): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
