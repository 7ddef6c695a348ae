// Invariant 3, last line of defence: no pod stays gated forever. A migration
// lifts its gates before it goes (its finalizer waits for that), but a finalizer
// removed by hand, or a migration deleted in a way pvshift never saw, can leave a
// pod holding pvshift's scheduling gate for a migration that no longer exists.
// Such a pod is released once it has waited longer than any cache could lag.
import type { V1Pod } from '@kubernetes/client-node';
import { ANNOTATION_GATED_AT, ANNOTATION_MIGRATION, SCHEDULING_GATE } from '../src/names.js';
import type { VolumeMigration } from '../src/volume-migration.js';

/** Longer than the webhook's and the controller's caches can disagree about a new migration. */
export const ORPHAN_GRACE_MS = 60_000;

export function isOrphanGated(pod: V1Pod, migrations: VolumeMigration[], now: Date): boolean {
  if (!(pod.spec?.schedulingGates ?? []).some((g) => g.name === SCHEDULING_GATE)) return false;
  const gatedAt = Date.parse(pod.metadata?.annotations?.[ANNOTATION_GATED_AT] ?? '');
  const since = Number.isNaN(gatedAt) ? Date.parse(String(pod.metadata?.creationTimestamp ?? '')) : gatedAt;
  if (Number.isNaN(since) || now.getTime() - since < ORPHAN_GRACE_MS) return false;
  const names = (pod.metadata?.annotations?.[ANNOTATION_MIGRATION] ?? '').split(',').filter(Boolean);
  const namespace = pod.metadata?.namespace;
  return !names.some((name) => migrations.some((m) => m.metadata.namespace === namespace && m.metadata.name === name));
}
