// The Pod CREATE mutation: pure, a copy of the pod in, the pod as it must be
// created out. A pod that mounts a claim under migration is held by a
// scheduling gate until the populator has put the data in place.
import type { V1Pod } from '@kubernetes/client-node';
import {
  ANNOTATION_GATED_AT,
  ANNOTATION_MIGRATION,
  LABEL_MANAGED_BY,
  MANAGED_BY_VALUE,
  SCHEDULING_GATE,
} from '../src/names.js';
import { isGatingPods, phaseOf, type VolumeMigration } from '../src/volume-migration.js';
import type { MutationResult } from './mutate-claim.js';

/** The names of the claims a pod mounts directly (generic ephemeral volumes are the pod's own). */
export function claimNamesOf(pod: V1Pod): string[] {
  const names = new Set<string>();
  for (const volume of pod.spec?.volumes ?? []) {
    const claimName = volume.persistentVolumeClaim?.claimName;
    if (claimName) names.add(claimName);
  }
  return [...names];
}

/**
 * Gates a pod that mounts a claim of an unfinished VolumeMigration. The input
 * is never modified; the result shares the parts that did not change with it.
 * `migrations` are the migrations of the pod's namespace (any that do not name a
 * mounted claim are ignored); `now` is when the gate is added, kept from the
 * first call on reinvocation so the recorded downtime starts once.
 */
export function mutatePod(pod: V1Pod, migrations: readonly VolumeMigration[], now: Date): MutationResult<V1Pod> {
  // pvshift's own copy pods mount the live source claim during pre-sync; gating
  // them would deadlock the migration on itself. The webhook's objectSelector
  // excludes them already; this is the same rule for callers of the function.
  if (pod.metadata?.labels?.[LABEL_MANAGED_BY] === MANAGED_BY_VALUE) return unchanged(pod);

  const claims = new Set(claimNamesOf(pod));
  const namespace = pod.metadata?.namespace;
  const gating = migrations.filter(
    (m) =>
      claims.has(m.spec.claimName) &&
      (namespace === undefined || namespace === '' || m.metadata.namespace === namespace) &&
      isGatingPods(phaseOf(m)),
  );
  if (gating.length === 0) return unchanged(pod);

  const names = [...new Set(gating.map((m) => m.metadata.name))].sort();
  const gatedClaims = [...new Set(gating.map((m) => m.spec.claimName))].sort();

  // A pod that names its node skips the scheduler, and the API server rejects a
  // pod created with both nodeName and a scheduling gate (ValidatePodCreate:
  // "cannot be set until all schedulingGates have been cleared"). Gating it would
  // make its creation fail, so it is let through with a warning; the kubelet still
  // waits for the replacement claim to bind before mounting it.
  if (pod.spec?.nodeName) {
    return {
      object: pod,
      warnings: [
        `pvshift: this pod sets spec.nodeName, so it cannot be held while ${gatedClaims.join(', ')} ` +
          `${gatedClaims.length > 1 ? 'are' : 'is'} migrated (${names.join(', ')})`,
      ],
    };
  }

  const gates = pod.spec?.schedulingGates ?? [];
  const hasGate = gates.some((g) => g.name === SCHEDULING_GATE);
  const annotations = pod.metadata?.annotations ?? {};
  const migrationValue = names.join(',');
  // Reinvocation: everything already in place means nothing to change.
  if (
    hasGate &&
    annotations[ANNOTATION_MIGRATION] === migrationValue &&
    annotations[ANNOTATION_GATED_AT] !== undefined
  ) {
    return unchanged(pod);
  }
  // Copy on write: only the objects on the path to a change are new, the rest
  // is shared with the input (a pod spec is mostly containers pvshift never
  // touches, and a deep copy of it costs more than the rest of the request).
  const object: V1Pod = {
    ...pod,
    metadata: {
      ...pod.metadata,
      annotations: {
        ...annotations,
        [ANNOTATION_MIGRATION]: migrationValue,
        [ANNOTATION_GATED_AT]: annotations[ANNOTATION_GATED_AT] ?? rfc3339(now),
      },
    },
    spec: { ...pod.spec!, schedulingGates: hasGate ? gates : [...gates, { name: SCHEDULING_GATE }] },
  };
  return {
    object,
    warnings: [
      `pvshift: pod held by scheduling gate ${SCHEDULING_GATE} until ${gatedClaims.join(', ')} finish migrating`,
    ],
  };
}

function unchanged(pod: V1Pod): MutationResult<V1Pod> {
  return { object: pod, warnings: [] };
}

/** RFC 3339 in UTC with milliseconds: Go's time.RFC3339 parses the fraction, and downtime wants it. */
function rfc3339(date: Date): string {
  return date.toISOString();
}
