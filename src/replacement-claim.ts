// What the claim of the user's name is while a migration holds it: the
// replacement on the target class (cutover), or the original again on its own
// volume (rollback). Both programs that create it build it here: the planner
// when it creates the claim itself, the webhook when someone else (a
// StatefulSet) creates it first. Either way it comes out the same, so it does
// not matter who wins that race.
import type { V1ObjectMeta, V1PersistentVolumeClaim, V1PersistentVolumeClaimSpec } from '@kubernetes/client-node';
import {
  ANNOTATION_MIGRATION,
  ANNOTATION_TARGET_CLASS,
  ANNOTATION_TARGET_SIZE,
  API_GROUP,
  MIGRATION_KIND,
} from './names.js';
import { parseQuantity } from './quantity.js';
import type { ClaimSnapshot, VolumeMigration } from './volume-migration.js';

/**
 * Annotations the API machinery puts on a bound claim; a new claim must not
 * inherit them. `bind-completed` on a claim the PV controller has not bound
 * makes it Lost at once (syncBoundClaim in pkg/controller/volume/persistentvolume),
 * and `storage-provisioner` or `selected-node` would name the old class's
 * provisioner and node.
 */
export const BINDING_ANNOTATIONS: readonly string[] = [
  'pv.kubernetes.io/bind-completed',
  'pv.kubernetes.io/bound-by-controller',
  'volume.kubernetes.io/storage-provisioner',
  'volume.beta.kubernetes.io/storage-provisioner',
  'volume.kubernetes.io/selected-node',
];

/** The shortcut's annotations are spent once the migration cuts over: the replacement never carries them. */
const REPLACEMENT_DROPS: readonly string[] = [...BINDING_ANNOTATIONS, ANNOTATION_TARGET_CLASS, ANNOTATION_TARGET_SIZE];

export type TargetSpec =
  { spec: V1PersistentVolumeClaimSpec; problem?: undefined } | { spec?: undefined; problem: string };

/** The target's size as a quantity string: targetSize, else the original claim's request; undefined when neither is set. */
export function targetSizeOf(
  m: VolumeMigration,
  original: { spec?: V1PersistentVolumeClaimSpec } | undefined,
): string | undefined {
  // targetSize is int-or-string in the CRD, and a request may be read as a number: either becomes a string.
  const value = (m.spec.targetSize ?? original?.spec?.resources?.requests?.storage) as
    string | number | null | undefined;
  return value === undefined || value === null || String(value) === '' ? undefined : String(value);
}

/**
 * The spec of a volume on the target: what the staging claim is provisioned
 * with and the replacement asks for. The two must agree, since the staging
 * claim's volume is handed to the replacement, and the PV controller binds a
 * claim only to a volume of its volume mode, with every access mode it asks
 * for and at least its size. Everything comes from the migration (its spec, and
 * the snapshot of the original claim in its status), nothing from whoever
 * creates the claim; where the migration does not say, there is no guess (a
 * default size could be smaller than the data): the problem says why.
 */
export function targetSpecOf(m: VolumeMigration): TargetSpec {
  const snapshot = m.status?.originalClaim;
  const size = targetSizeOf(m, snapshot);
  if (size === undefined) return { problem: unsaid(m, 'targetSize', 'storage request') };
  const bytes = parseQuantity(size);
  if (bytes === undefined || bytes <= 0)
    return { problem: `the target size "${size}" is not a quantity greater than zero` };
  const accessModes = m.spec.targetAccessModes?.length ? m.spec.targetAccessModes : snapshot?.spec.accessModes;
  if (!accessModes?.length) return { problem: unsaid(m, 'targetAccessModes', 'access modes') };
  return {
    spec: {
      storageClassName: m.spec.targetStorageClassName,
      accessModes: [...accessModes],
      volumeMode: snapshot?.spec.volumeMode ?? 'Filesystem',
      resources: { requests: { storage: size } },
    },
  };
}

/** Why the target's `field` is unknown: neither the migration's spec nor the snapshot of the original says it. */
function unsaid(m: VolumeMigration, field: string, what: string): string {
  return m.status?.originalClaim
    ? `the migration has no ${field} and the snapshot of the original claim in its status has no ${what}`
    : `the migration has no ${field} and its status holds no snapshot of the original claim`;
}

/**
 * The replacement: the target spec (from targetSpecOf), filled by the populator
 * (dataSourceRef to the migration) and bound only when pvshift hands it the
 * copy (no volumeName). Its metadata is `created`'s: the claim being created
 * (webhook), or the original's from the snapshot (planner, by default), less
 * the annotations a new replacement must not carry, and naming the migration.
 * Nothing of `created`'s spec is kept: a selector, volumeAttributesClassName or
 * limits of the old claim mean nothing on the target.
 */
export function replacementClaim(
  m: VolumeMigration,
  target: V1PersistentVolumeClaimSpec,
  created: V1PersistentVolumeClaim = underUserName(m, m.status?.originalClaim),
): V1PersistentVolumeClaim {
  // Only dataSourceRef is set. The API server copies it into dataSource itself
  // when the claim is stored (NormalizeDataSources in
  // pkg/api/persistentvolumeclaim/util.go runs in PrepareForCreate, after mutating
  // admission), so a dataSource left over from a template could only disagree
  // with it and fail validation.
  const spec: V1PersistentVolumeClaimSpec = {
    ...structuredClone(target),
    dataSourceRef: { apiGroup: API_GROUP, kind: MIGRATION_KIND, name: m.metadata.name },
  };
  return { ...created, metadata: namingMigration(m, created.metadata, REPLACEMENT_DROPS), spec };
}

/**
 * The original claim again, bound by name to its original volume: the
 * snapshot's spec, exactly, less its data sources. Metadata as for the
 * replacement, except that the shortcut's annotations stay: the original comes
 * back as it was.
 */
export function restoredClaim(
  m: VolumeMigration,
  original: ClaimSnapshot,
  sourceVolumeName: string,
  created: V1PersistentVolumeClaim = underUserName(m, original),
): V1PersistentVolumeClaim {
  const spec: V1PersistentVolumeClaimSpec = { ...structuredClone(original.spec), volumeName: sourceVolumeName };
  delete spec.dataSource;
  delete spec.dataSourceRef;
  return { ...created, metadata: namingMigration(m, created.metadata, BINDING_ANNOTATIONS), spec };
}

/** The claim pvshift itself creates under the user's name: the original's labels and annotations, as the snapshot holds them. */
function underUserName(m: VolumeMigration, snapshot: ClaimSnapshot | undefined): V1PersistentVolumeClaim {
  return {
    apiVersion: 'v1',
    kind: 'PersistentVolumeClaim',
    metadata: {
      name: m.spec.claimName,
      namespace: m.metadata.namespace,
      labels: { ...snapshot?.labels },
      annotations: { ...snapshot?.annotations },
    },
  };
}

/**
 * `metadata` with the annotations in `drop` removed and the migration's name set
 * (where it stood, if it was there: applied to its own output, nothing moves).
 */
function namingMigration(
  m: VolumeMigration,
  metadata: V1ObjectMeta | undefined,
  drop: readonly string[],
): V1ObjectMeta {
  const annotations: Record<string, string> = {};
  for (const [key, value] of Object.entries(metadata?.annotations ?? {}))
    if (!drop.includes(key)) annotations[key] = value;
  annotations[ANNOTATION_MIGRATION] = m.metadata.name;
  return { ...metadata, annotations };
}
