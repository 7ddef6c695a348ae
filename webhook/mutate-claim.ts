// The PVC CREATE mutation: pure, a copy of the claim in, the claim as it must be
// created out. Transport and lookups live elsewhere (admission.ts).
import type { V1PersistentVolumeClaim } from '@kubernetes/client-node';
import { AdmissionDenial } from '../src/errors.js';
import { ANNOTATION_MIGRATION, API_GROUP, MIGRATION_KIND } from '../src/names.js';
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
  if (owning.length === 0) return { object: claim, warnings: [] };
  if (owning.length > 1) {
    const names = owning.map((m) => m.metadata.name).sort();
    throw new AdmissionDenial(
      `claim "${name}" is claimed by several VolumeMigrations in cutover (${names.join(', ')}); ` +
        'pvshift cannot tell which one this claim belongs to: abort all but one',
    );
  }
  const migration = owning[0]!;
  // Copy on write: the objects this mutation writes into are new, the rest is shared.
  const copy: V1PersistentVolumeClaim = {
    ...claim,
    metadata: { ...claim.metadata },
    spec: { ...claim.spec, ...(claim.spec?.resources ? { resources: { ...claim.spec.resources } } : {}) },
  };
  return isRewritingClaims(phaseOf(migration)) ? rewrite(claim, copy, migration) : restore(claim, copy, migration);
}

/** The replacement claim: target class, size and modes, filled by the populator. */
function rewrite(
  original: V1PersistentVolumeClaim,
  claim: V1PersistentVolumeClaim,
  migration: VolumeMigration,
): MutationResult<V1PersistentVolumeClaim> {
  const migrationName = migration.metadata.name;
  const size = migration.spec.targetSize ?? migration.status?.originalClaim?.spec?.resources?.requests?.storage;
  if (size === undefined || size === null || String(size) === '') {
    throw new AdmissionDenial(
      `claim "${migration.spec.claimName}" is in cutover to storage class "${migration.spec.targetStorageClassName}" ` +
        `(VolumeMigration "${migrationName}", phase ${phaseOf(migration)}), but the migration has no targetSize ` +
        'and its status holds no snapshot of the original claim; refusing to create it until the controller records one',
    );
  }

  const spec = (claim.spec ??= {});
  spec.storageClassName = migration.spec.targetStorageClassName;
  spec.resources ??= {};
  spec.resources.requests = { ...spec.resources.requests, storage: String(size) };
  if (migration.spec.targetAccessModes && migration.spec.targetAccessModes.length > 0) {
    spec.accessModes = [...migration.spec.targetAccessModes];
  }
  // Only dataSourceRef is set. The API server copies it into dataSource itself
  // when the claim is stored (NormalizeDataSources in
  // pkg/api/persistentvolumeclaim/util.go runs in PrepareForCreate, after mutating
  // admission), so a dataSource left over from the template could only disagree
  // with it and fail validation.
  spec.dataSourceRef = { apiGroup: API_GROUP, kind: MIGRATION_KIND, name: migrationName };
  delete spec.dataSource;
  // The replacement is bound by the populator handing over the target PV, never by name.
  delete spec.volumeName;
  setAnnotation(claim, ANNOTATION_MIGRATION, migrationName);

  if (JSON.stringify(claim) === JSON.stringify(original)) return { object: original, warnings: [] };
  return {
    object: claim,
    warnings: [
      `pvshift: VolumeMigration ${migrationName} set this claim to storage class ` +
        `${migration.spec.targetStorageClassName}, ${String(size)}; it binds once the data is copied`,
    ],
  };
}

/** Rollback: the claim comes back as the original, on the original volume. */
function restore(
  originalClaim: V1PersistentVolumeClaim,
  claim: V1PersistentVolumeClaim,
  migration: VolumeMigration,
): MutationResult<V1PersistentVolumeClaim> {
  const migrationName = migration.metadata.name;
  const original = migration.status?.originalClaim?.spec;
  const volumeName = migration.status?.sourceVolumeName;
  if (!original || !volumeName) {
    const missing = [!original && 'status.originalClaim', !volumeName && 'status.sourceVolumeName'].filter(Boolean);
    throw new AdmissionDenial(
      `claim "${migration.spec.claimName}" is being rolled back by VolumeMigration "${migrationName}", ` +
        `but its ${missing.join(' and ')} ${missing.length > 1 ? 'are' : 'is'} missing; ` +
        'refusing to create it on anything but the original volume',
    );
  }
  const spec = (claim.spec ??= {});
  copyField(spec, original, 'storageClassName');
  copyField(spec, original, 'accessModes');
  copyField(spec, original, 'volumeMode');
  if (original.resources) spec.resources = structuredClone(original.resources);
  spec.volumeName = volumeName;
  delete spec.dataSourceRef;
  delete spec.dataSource;
  setAnnotation(claim, ANNOTATION_MIGRATION, migrationName);

  if (JSON.stringify(claim) === JSON.stringify(originalClaim)) return { object: originalClaim, warnings: [] };
  return {
    object: claim,
    warnings: [`pvshift: VolumeMigration ${migrationName} is rolling back; this claim returns to volume ${volumeName}`],
  };
}

/** Copies `key` exactly: present with its value, or absent when the original lacked it. */
function copyField<K extends keyof NonNullable<V1PersistentVolumeClaim['spec']>>(
  target: NonNullable<V1PersistentVolumeClaim['spec']>,
  source: NonNullable<V1PersistentVolumeClaim['spec']>,
  key: K,
): void {
  const value = source[key];
  if (value === undefined) delete target[key];
  else target[key] = structuredClone(value);
}

function setAnnotation(object: { metadata?: { annotations?: Record<string, string> } }, key: string, value: string): void {
  const metadata = (object.metadata ??= {});
  metadata.annotations = { ...metadata.annotations, [key]: value };
}
