// Small readers of the world that several rooms share: names, versions, the pods
// that hold or use the claim, what a copy pass recorded. They decide nothing; the
// rooms do.
import type { V1Pod } from '@kubernetes/client-node';
import { ANNOTATION_MIGRATION, FINALIZER, LABEL_POD_TEMPLATE_HASH, SCHEDULING_GATE } from '../../src/names.js';
import type { CopyResult, VolumeMigration, VolumeMigrationStatus } from '../../src/volume-migration.js';
import type { Pass, Stored, World } from '../world.js';

export function migrationKey(m: VolumeMigration): string {
  return `${m.metadata.namespace}/${m.metadata.name}`;
}

export function uidOf(m: VolumeMigration): string {
  return m.metadata.uid ?? '';
}

export function hasFinalizer(m: VolumeMigration): boolean {
  return (m.metadata.finalizers ?? []).includes(FINALIZER);
}

export function isGated(pod: V1Pod): boolean {
  return (pod.spec?.schedulingGates ?? []).some((g) => g.name === SCHEDULING_GATE);
}

/** pvc-protection counts a pod as a user once it is scheduled, in any phase, until it is deleted. */
export function isScheduled(pod: V1Pod): boolean {
  return !!pod.spec?.nodeName;
}

export function isFinished(pod: V1Pod | undefined): boolean {
  return pod?.status?.phase === 'Succeeded' || pod?.status?.phase === 'Failed';
}

export function copyOf(status: VolumeMigrationStatus | undefined, pass: Pass): CopyResult | undefined {
  return (status?.copies ?? []).find((c) => c.pass === pass);
}

export function attemptsOf(status: VolumeMigrationStatus | undefined, pass: Pass): number {
  return status?.attempts?.[pass] ?? 0;
}

export function rvOf(o: { metadata?: { resourceVersion?: string } } | undefined): string {
  return o?.metadata?.resourceVersion ?? '';
}

/** The uid of the user's original claim, as the status recorded it before cutover. */
export function snapshotUid(status: VolumeMigrationStatus | undefined): string | undefined {
  return status?.originalClaim?.uid;
}

export function consumersOf(w: World): { gated: Stored<V1Pod>[]; scheduled: Stored<V1Pod>[] } {
  return { gated: w.consumers.filter(isGated), scheduled: w.consumers.filter(isScheduled) };
}

/**
 * The Deployment and revision of a pod that a Deployment's ReplicaSet made: the
 * deployment controller names each ReplicaSet `<deployment>-<pod-template-hash>`
 * and puts the hash on its pods as a label. Undefined for any other pod.
 */
export function rolloutOf(pod: V1Pod): { deployment: string; revision: string } | undefined {
  const owner = (pod.metadata?.ownerReferences ?? []).find((r) => r.controller === true);
  const hash = pod.metadata?.labels?.[LABEL_POD_TEMPLATE_HASH];
  if (owner?.kind !== 'ReplicaSet' || !hash || !owner.name.endsWith(`-${hash}`)) return undefined;
  return { deployment: owner.name.slice(0, -(hash.length + 1)), revision: hash };
}

/** `pod a, b`: the names of `pods`, for messages. */
export function namesOf(pods: Stored<V1Pod>[]): string {
  return pods.map((p) => p.metadata.name).join(', ');
}

/** The migrations a gated pod waits for (the webhook's annotation; one gate holds it for all of them). */
export function migrationsOfPod(pod: V1Pod): string[] {
  return (pod.metadata?.annotations?.[ANNOTATION_MIGRATION] ?? '').split(',').filter(Boolean);
}
