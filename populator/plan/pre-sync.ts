// PreSyncing: a first copy while the application still runs, so the final copy
// (with the application stopped) moves only what changed since. It gives way at
// once to the workload: a recreated pod held by its gate starts the cutover.
import { formatBytes } from '../../src/quantity.js';
import { targetSpecOf } from '../../src/replacement-claim.js';
import { stagingClaim } from '../claims.js';
import { Reason } from '../../src/reasons.js';
import type { World } from '../world.js';
import { planCopy } from './copy-pass.js';
import { claimDeletedBeforeCutover, startCutover } from './cutover.js';
import { consumersOf, copyOf, isFinished } from './readers.js';
import { fail, normal, toPhase } from './steps.js';
import type { Step } from './types.js';
import { checkFits, isShrinking } from './validate.js';

export function planPreSync(w: World, abort: boolean): Step {
  const m = w.migration;
  const snapshot = m.status?.originalClaim;
  if (abort) {
    return toPhase(
      'Aborted',
      'aborted before cutover; cleaning up',
      normal(Reason.Aborted, 'migration aborted during pre-sync'),
    );
  }
  if (!snapshot) return fail(Reason.SnapshotMissing, 'the status lost the snapshot of the original claim');
  const gone = claimDeletedBeforeCutover(w);
  if (gone) return gone;
  const { gated, scheduled } = consumersOf(w);
  const running = w.copyPods.presync && !isFinished(w.copyPods.presync) ? w.copyPods.presync : undefined;
  if (gated.length > 0 && scheduled.length === 0 && w.stagingClaim) {
    // The application is being recreated and waits behind its gate: it must not
    // wait for the rest of a pre-sync, and an RWO source must not stay mounted by
    // a copy pod. Stop the pre-sync; the final copy goes on from where it got to.
    if (running) return { kind: 'deleteCopyPod', pass: 'presync', name: running.metadata.name };
    return startCutover(w, gated, 'the pre-sync was cut short: the final copy continues from where it got to');
  }
  if (!w.stagingClaim) {
    const target = targetSpecOf(m);
    if (target.problem !== undefined) {
      return fail(Reason.InvalidTarget, `the staging claim cannot be made: ${target.problem}`);
    }
    return { kind: 'createClaim', role: 'staging', claim: stagingClaim(m, target.spec) };
  }
  if (w.yieldCopySlot && running) {
    // A final copy (an application held by its gate) needs the slot; a pre-sync resumes later.
    return {
      kind: 'deleteCopyPod',
      pass: 'presync',
      name: running.metadata.name,
      event: normal(
        Reason.PreSyncYielded,
        'pre-sync paused: its copy slot went to a final copy; it resumes when a slot is free',
      ),
    };
  }
  const result = copyOf(m.status, 'presync');
  if (!result) return planCopy(w, 'presync');
  if (isShrinking(w)) {
    const tooBig = checkFits(w, result.bytes);
    if (tooBig) return tooBig;
  }
  if (w.copyPods.presync) return { kind: 'deleteCopyPod', pass: 'presync', name: w.copyPods.presync.metadata.name };
  const copied = `${formatBytes(result.bytesTransferred)} of ${formatBytes(result.bytes)} (${result.files} files)`;
  return toPhase(
    'WaitingForCutover',
    'pre-synced; waiting for the consumer pod to be recreated',
    normal(Reason.PreSynced, `pre-sync copied ${copied} in ${result.seconds.toFixed(1)} s`),
  );
}
