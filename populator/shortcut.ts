// The annotation shortcut: `pvshift.io/target-storage-class` (and optionally
// `pvshift.io/target-size`) on a claim stands for a VolumeMigration of that claim.
// Pure: a claim and the migrations of its namespace in, what to do out.
import type { V1PersistentVolumeClaim } from '@kubernetes/client-node';
import { ANNOTATION_TARGET_CLASS, ANNOTATION_TARGET_SIZE, API_GROUP_VERSION, MIGRATION_KIND, PREFIX, migrationNameForClaim } from '../src/names.js';
import { phaseOf, type VolumeMigration } from '../src/volume-migration.js';

export const LABEL_CREATED_FROM = `${PREFIX}/created-from`;

export type ShortcutAction =
  | { kind: 'create'; migration: VolumeMigration }
  | { kind: 'abort'; name: string }
  | { kind: 'none' };

/** Before cutover a migration is only a plan; removing the annotation then withdraws it. */
const ABORTABLE = new Set(['Pending', 'PreSyncing', 'WaitingForCutover']);

export function shortcutAction(claim: V1PersistentVolumeClaim, migrations: VolumeMigration[]): ShortcutAction {
  const name = claim.metadata?.name ?? '';
  const namespace = claim.metadata?.namespace ?? '';
  const annotations = claim.metadata?.annotations ?? {};
  const target = annotations[ANNOTATION_TARGET_CLASS];
  const mine = migrations.filter((m) => m.metadata.namespace === namespace && m.spec.claimName === name);
  if (target) {
    if (mine.length > 0 || claim.metadata?.deletionTimestamp) return { kind: 'none' };
    const size = annotations[ANNOTATION_TARGET_SIZE];
    return {
      kind: 'create',
      migration: {
        apiVersion: API_GROUP_VERSION,
        kind: MIGRATION_KIND,
        metadata: { name: migrationNameForClaim(name), namespace, labels: { [LABEL_CREATED_FROM]: 'annotation' } },
        spec: { claimName: name, targetStorageClassName: target, ...(size ? { targetSize: size } : {}) },
      },
    };
  }
  const fromAnnotation = mine.find((m) => m.metadata.labels?.[LABEL_CREATED_FROM] === 'annotation' && ABORTABLE.has(phaseOf(m)) && !m.spec.abort);
  // Only the original claim speaks for the user: once cut over, the claim of this
  // name is the replacement, which never carries the annotation.
  if (fromAnnotation && (!fromAnnotation.status?.originalClaim?.uid || fromAnnotation.status.originalClaim.uid === claim.metadata?.uid)) {
    return { kind: 'abort', name: fromAnnotation.metadata.name };
  }
  return { kind: 'none' };
}
