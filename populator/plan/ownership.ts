// Invariant 6: pvshift changes only what it can prove is this migration's. Status
// is a record, never an authority: a volume is proven by pvshift's UID stamp, a
// claim by its label or dataSourceRef, and a shared gate is lifted by the last
// migration that needs it.
import type { V1PersistentVolume, V1PersistentVolumeClaim, V1Pod } from '@kubernetes/client-node';
import {
  ANNOTATION_MIGRATION_UID,
  API_GROUP,
  LABEL_MIGRATION_UID,
  MIGRATION_KIND,
  stagingClaimName,
} from '../../src/names.js';
import { isTerminal, phaseOf, type VolumeMigration } from '../../src/volume-migration.js';
import type { Stored, World } from '../world.js';
import { migrationsOfPod, uidOf } from './readers.js';

/**
 * Invariant 6: a volume is this migration's when pvshift stamped it with the
 * migration's UID and it is claimed in its namespace.
 */
export function isStampedBy(pv: V1PersistentVolume | undefined, m: VolumeMigration): boolean {
  return (
    !!pv &&
    !!uidOf(m) &&
    pv.metadata?.annotations?.[ANNOTATION_MIGRATION_UID] === uidOf(m) &&
    pv.spec?.claimRef?.namespace === m.metadata.namespace
  );
}

/**
 * The user's claim and its volume point at each other (name, namespace and uid):
 * the one volume a migration may take.
 */
export function isBoundTo(pv: V1PersistentVolume | undefined, claim: V1PersistentVolumeClaim | undefined): boolean {
  const ref = pv?.spec?.claimRef;
  return (
    !!pv &&
    !!claim &&
    ref?.namespace === claim.metadata?.namespace &&
    ref?.name === claim.metadata?.name &&
    !!ref?.uid &&
    ref.uid === claim.metadata?.uid &&
    claim.spec?.volumeName === pv.metadata?.name
  );
}

/**
 * A claim of pvshift's own for this migration: labelled with its UID (the name
 * alone could be taken first by anyone).
 */
export function isMadeBy(claim: V1PersistentVolumeClaim | undefined, m: VolumeMigration): boolean {
  return !!claim && claim.metadata?.labels?.[LABEL_MIGRATION_UID] === uidOf(m);
}

/** A claim populated from this migration (the replacement the webhook or pvshift wrote). */
export function belongsToMigration(claim: V1PersistentVolumeClaim | undefined, m: VolumeMigration): boolean {
  const ref = claim?.spec?.dataSourceRef;
  return ref?.apiGroup === API_GROUP && ref.kind === MIGRATION_KIND && ref.name === m.metadata.name;
}

/** Whether the migration's status names volumes it cannot prove are its own: status is a record, never an authority. */
export function provenanceProblem(w: World): string | undefined {
  const m = w.migration;
  const status = m.status ?? {};
  const ns = m.metadata.namespace;
  const source = w.sourceVolume;
  if (status.sourceVolumeName && source && !isStampedBy(source, m)) {
    return (
      `volume ${source.metadata.name} (named in status.sourceVolumeName) does not carry this migration's ` +
      `${ANNOTATION_MIGRATION_UID} or is claimed outside namespace ${ns}`
    );
  }
  for (const claim of [w.stagingClaim, w.helperClaim]) {
    if (claim && !isMadeBy(claim, m)) {
      return (
        `claim ${ns}/${claim.metadata.name} has the name of one of this migration's claims but was not made by it ` +
        `(no ${LABEL_MIGRATION_UID}=${uidOf(m)})`
      );
    }
  }
  const target = w.stagingVolume;
  if (target) {
    const ref = target.spec?.claimRef;
    // Claimed in our namespace by our staging claim (its name carries our UID; the
    // claim itself may be gone) or by our replacement.
    const claimedByOurs =
      ref?.namespace === ns &&
      (ref.name === stagingClaimName(uidOf(m)) ||
        (!!ref.uid && belongsToMigration(w.claim, m) && ref.uid === w.claim?.metadata.uid));
    if (!claimedByOurs && !isStampedBy(target, m)) {
      return (
        `volume ${target.metadata.name} (the target) is neither bound to this migration's claims in namespace ${ns} ` +
        'nor stamped with its UID'
      );
    }
  }
  return undefined;
}

/**
 * The gated pods this migration may release: one gate holds a pod for every
 * migration of its claims, so it is lifted by the last of them to finish.
 */
export function releasable(w: World, pods: Stored<V1Pod>[]): Stored<V1Pod>[] {
  const m = w.migration;
  const unfinished = (name: string) => w.siblings.some((s) => s.metadata.name === name && !isTerminal(phaseOf(s)));
  return pods.filter((p) => migrationsOfPod(p).every((name) => name === m.metadata.name || !unfinished(name)));
}
