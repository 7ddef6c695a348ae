// The terminal phases (Succeeded, Failed, Aborted, RolledBack) still tidy up:
// copy pods, a staging claim made before cutover, gates, the source's reclaim
// policy, the namespace label, the finalizer. Also where DeleteAfterVerify hands
// the verified old volume back to its provisioner.
import { ANNOTATION_ORIGINAL_RECLAIM_POLICY } from '../../src/names.js';
import { isTerminal, phaseOf, type Phase } from '../../src/volume-migration.js';
import { Reason } from '../../src/reasons.js';
import type { World } from '../world.js';
import { isBoundTo, isMadeBy, isStampedBy, releasable } from './ownership.js';
import { hasFinalizer, isGated, migrationsOfPod, rvOf } from './readers.js';
import { deleteClaim, liftGates, normal, wait, WAIT_SHORT } from './steps.js';
import type { Step } from './types.js';

/**
 * Finished migrations still tidy up: copy pods, staging claims, gates, policies,
 * the namespace label, the finalizer.
 */
export function planTerminal(w: World, phase: Phase): Step {
  const m = w.migration;
  const status = m.status ?? {};
  // What is already going is waited for, not deleted again (once per reconcile,
  // that was a burst of DELETEs for a pod in its grace period or a claim held
  // by pvc-protection); the wait keeps the finished migration's message.
  const going = wait(Reason.TidyingUp, status.message ?? '', WAIT_SHORT);
  for (const pass of ['final', 'presync', 'measure'] as const) {
    const pod = w.copyPods[pass];
    if (pod) return pod.metadata.deletionTimestamp ? going : { kind: 'deleteCopyPod', pass, name: pod.metadata.name };
  }
  // After cutover a Failed migration was Held: its copy may be the only one, and stays.
  const beforeCutover = phase === 'Aborted' || (phase === 'Failed' && !status.cutoverStartTime);
  if (beforeCutover && w.stagingClaim && isMadeBy(w.stagingClaim, m))
    return w.stagingClaim.metadata.deletionTimestamp ? going : deleteClaim(w.stagingClaim, 'staging');
  const source = w.sourceVolume;
  const original = source?.metadata.annotations?.[ANNOTATION_ORIGINAL_RECLAIM_POLICY];
  // Back on (or never off) the source: its reclaim policy is the user's again. Only
  // the migration that recorded the policy restores it, only while the user's claim
  // is bound to it, and never while another migration of the claim is unfinished:
  // that one may be between deleting the claim and rebinding the volume (Released).
  const othersOfClaim = w.siblings.some(
    (s) => s.metadata.uid !== m.metadata.uid && s.spec.claimName === m.spec.claimName && !isTerminal(phaseOf(s)),
  );
  if (
    source &&
    original &&
    phase !== 'Succeeded' &&
    isStampedBy(source, m) &&
    isBoundTo(source, w.claim) &&
    !othersOfClaim
  ) {
    return {
      kind: 'restoreVolumePolicy',
      volumeName: source.metadata.name,
      resourceVersion: rvOf(source),
      policy: original,
    };
  }
  const gated = releasable(
    w,
    w.consumers.filter((p) => isGated(p) && migrationsOfPod(p).includes(m.metadata.name)),
  );
  if (gated.length) return liftGates(gated);
  if (
    phase === 'Succeeded' &&
    m.spec.sourceRetention === 'DeleteAfterVerify' &&
    m.spec.verify === 'checksum' &&
    source &&
    isStampedBy(source, m) &&
    source.status?.phase === 'Released' &&
    source.spec?.persistentVolumeReclaimPolicy !== 'Delete' &&
    !othersOfClaim &&
    (status.copies ?? []).some((c) => c.pass === 'final' && c.verified === 'checksum')
  ) {
    return {
      kind: 'setVolumePolicy',
      volumeName: source.metadata.name,
      resourceVersion: rvOf(source),
      policy: 'Delete',
      event: normal(
        Reason.SourceReleased,
        `copy verified; old volume ${source.metadata.name} handed back to its provisioner for deletion ` +
          '(sourceRetention: DeleteAfterVerify)',
      ),
    };
  }
  const othersActive = w.siblings.some((s) => s.metadata.name !== m.metadata.name && !isTerminal(phaseOf(s)));
  // An annotated StatefulSet's next replica needs the webhook too (src/workload-policy.ts).
  if (w.namespaceLabelled && !othersActive && !w.workloadPolicyActive) return { kind: 'labelNamespace', active: false };
  // A finished migration needs no finalizer: nothing is left to clean up, and an
  // uninstalled pvshift must not leave records (and namespaces) no one can delete.
  if (hasFinalizer(m)) return { kind: 'removeFinalizer' };
  return { kind: 'done' };
}
