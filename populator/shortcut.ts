// The annotation shortcut: `pvshift.io/target-storage-class` (and optionally
// `pvshift.io/target-size`) on a claim stands for a VolumeMigration of that claim.
// Pure: a claim and the migrations of its namespace in, what to do out.
import type { V1PersistentVolumeClaim } from '@kubernetes/client-node';
import { ANNOTATION_TARGET_CLASS, ANNOTATION_TARGET_SIZE, API_GROUP_VERSION, MIGRATION_KIND, PREFIX, migrationNameForClaim } from '../src/names.js';
import { isTerminal, phaseOf, type VolumeMigration } from '../src/volume-migration.js';

export const LABEL_CREATED_FROM = `${PREFIX}/created-from`;

export type ShortcutAction =
  | { kind: 'create'; migration: VolumeMigration }
  | { kind: 'abort'; name: string }
  /** A finished migration made from an earlier annotation stands in the name's way: delete it, then create. */
  | { kind: 'replace'; name: string }
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
    if (claim.metadata?.deletionTimestamp) return { kind: 'none' };
    const size = annotations[ANNOTATION_TARGET_SIZE];
    // Annotated again with another target after an earlier migration ended (done,
    // aborted, failed): that one's record makes way. The same target never does,
    // so a migration that failed on its input is not retried in a loop.
    const stale = mine.find(
      (m) =>
        m.metadata.name === migrationNameForClaim(name) &&
        m.metadata.labels?.[LABEL_CREATED_FROM] === 'annotation' &&
        isTerminal(phaseOf(m)) &&
        !m.metadata.deletionTimestamp &&
        (m.spec.targetStorageClassName !== target || (m.spec.targetSize ?? '') !== (size ?? '')),
    );
    if (stale && mine.every((m) => isTerminal(phaseOf(m)))) return { kind: 'replace', name: stale.metadata.name };
    if (mine.length > 0) return { kind: 'none' };
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
