// Held: after cutover, with no way back and no way on, pvshift stops and keeps
// everything (pods gated, data Retain) until the user decides. Also what the user
// is told is kept for them (keptVolumes), which a failed migration reports too.
import type { KeptVolume } from '../../src/volume-migration.js';
import { Reason, type ReasonName } from '../../src/reasons.js';
import type { World } from '../world.js';
import { isStampedBy } from './ownership.js';
import { rvOf } from './readers.js';
import { retain, toPhase, wait, WAIT_HELD, warning } from './steps.js';
import type { Step } from './types.js';

/** What pvshift keeps for the user, and what they can do with it. */
export function keptVolumesOf(w: World): KeptVolume[] {
  const m = w.migration;
  const kept: KeptVolume[] = [];
  const source = w.sourceVolume;
  if (source && isStampedBy(source, m)) {
    const name = source.metadata.name;
    kept.push({
      name,
      role: 'source',
      message:
        'the original data, reclaim policy Retain; to use it again, point its claimRef at a claim ' +
        `(name and namespace, no uid) and create that claim with spec.volumeName: ${name}`,
    });
  }
  const target = w.stagingVolume;
  if (target && (isStampedBy(target, m) || target.spec?.claimRef?.uid === w.stagingClaim?.metadata.uid)) {
    const verified = (m.status?.copies ?? []).some((c) => c.pass === 'final');
    const claim = w.stagingClaim ? ` (claim ${w.stagingClaim.metadata.name})` : '';
    kept.push({
      name: target.metadata.name,
      role: 'copy',
      message:
        `${verified ? 'the verified final copy' : 'a copy that may be incomplete'} ` +
        `on ${m.spec.targetStorageClassName}, ` +
        `reclaim policy Retain, owned by nothing${claim}`,
    });
  }
  return kept;
}

/** Moves to Held, saying why and what is kept. */
export function hold(w: World, reason: ReasonName, why: string): Step {
  const message =
    `${why}; held: pods stay gated and new claims of the name stay rewritten, so nothing starts on an empty volume; ` +
    'see keptVolumes for the data, and delete this VolumeMigration to release the pods';
  return toPhase('Held', { message, keptVolumes: keptVolumesOf(w) }, warning(reason, message));
}

/**
 * Held: after cutover, with no way back (the source is gone) and no way on. The
 * copy is made safe (Retain, no ownerReference), the pods stay gated, and the
 * user decides: deleting the migration releases the pods. spec.abort does not:
 * it is usually what started the rollback that could not finish.
 */
export function planHeld(w: World): Step {
  const m = w.migration;
  const kept = keptVolumesOf(w);
  const target = w.stagingVolume;
  if (target && target.spec?.persistentVolumeReclaimPolicy !== 'Retain') return retain(m, target);
  const staging = w.stagingClaim;
  if (staging && (staging.metadata.ownerReferences ?? []).length > 0) {
    return {
      kind: 'disownClaim',
      name: staging.metadata.name,
      uid: staging.metadata.uid,
      resourceVersion: rvOf(staging),
    };
  }
  if (m.metadata.deletionTimestamp) {
    const where = kept.length
      ? `the data is kept on ${kept.map((k) => k.name).join(', ')}`
      : 'no volume of this migration is left';
    const message = `released from hold: pods are no longer gated; ${where}`;
    return toPhase('Failed', { message, keptVolumes: kept }, warning(Reason.ReleasedFromHold, message));
  }
  if (JSON.stringify(m.status?.keptVolumes ?? []) !== JSON.stringify(kept)) {
    return { kind: 'patchStatus', status: { keptVolumes: kept } };
  }
  return wait(Reason.Held, m.status?.message ?? 'held', WAIT_HELD);
}
