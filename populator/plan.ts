// The migration's state machine as a pure function: the world in, the one next
// step out. Reconcile does the step and calls plan again; nothing here does I/O,
// so every branch is a table-driven unit test.
//
// Order is the safety argument: the source PV is made Retain (Pending) before
// any claim of the user is deleted (CuttingOver), the replacement claim only
// binds after the final copy verified (Binding), and scheduling gates are lifted
// last. Each step is idempotent, so replaying any prefix after a crash is safe.
//
// This file is the entry and the dispatcher; each phase has a room in plan/:
//   Pending            plan/validate.ts   refusals, source made Retain, claim snapshotted
//   PreSyncing         plan/pre-sync.ts   a copy while the application runs
//   (every copy pass)  plan/copy-pass.ts  start, follow, retry or give up on one copy pod
//   WaitingForCutover,
//   CuttingOver        plan/cutover.ts    where the user's original claim is deleted
//   (continuous sync)  plan/resync.ts     when a re-sync is due, what a pass records, when Evict may go
//   (rollouts)         plan/rollout.ts    a Deployment handed over; a StatefulSet policy, one replica at a time
//   Populating,
//   Binding            plan/binding.ts    final copy, new volume to the replacement, gates lifted
//   RollingBack        plan/rollback.ts   the original claim back on its volume
//   Held               plan/held.ts       no way back, no way on: the user decides
//   terminal phases    plan/finish.ts     tidying up after the end
// Shared: plan/types.ts (Step), plan/steps.ts (step and event constructors),
// plan/readers.ts, plan/ownership.ts (invariant 6); reasons in src/reasons.ts.
import { isTerminal, phaseOf, type Phase } from '../src/volume-migration.js';
import { Reason } from '../src/reasons.js';
import type { World } from './world.js';
import { planBinding, planPopulate } from './plan/binding.js';
import { planCutover, planWaiting } from './plan/cutover.js';
import { planTerminal } from './plan/finish.js';
import { hold, planHeld } from './plan/held.js';
import { provenanceProblem } from './plan/ownership.js';
import { planPreSync } from './plan/pre-sync.js';
import { hasFinalizer } from './plan/readers.js';
import { planRollback } from './plan/rollback.js';
import { fail, wait, WAIT_HELD } from './plan/steps.js';
import type { Step } from './plan/types.js';
import { planPending } from './plan/validate.js';

export type { ClaimRole, EventNote, Step } from './plan/types.js';
export { progressText } from './plan/copy-pass.js';
export { isStampedBy } from './plan/ownership.js';
export { isFinished, migrationKey } from './plan/readers.js';
export { validate } from './plan/validate.js';

/** Phases in which nothing of the user's has changed but the source's reclaim policy. */
const BEFORE_CUTOVER: ReadonlySet<Phase> = new Set(['Pending', 'PreSyncing', 'WaitingForCutover']);

export function plan(w: World): Step {
  const m = w.migration;
  const phase = phaseOf(m);
  const deleting = !!m.metadata.deletionTimestamp;
  // A namespace being deleted takes every claim and pod with it, and refuses new
  // ones: create nothing, let the migration go. Retained volumes stay Retain.
  if (w.namespaceTerminating) return hasFinalizer(m) ? { kind: 'removeFinalizer' } : { kind: 'done' };
  if (!deleting && !hasFinalizer(m) && !isTerminal(phase)) return { kind: 'addFinalizer' };
  if (isTerminal(phase)) return planTerminal(w, phase);
  const problem = provenanceProblem(w);
  if (problem) {
    const message = `${problem}; pvshift changes nothing it cannot prove is this migration's`;
    if (BEFORE_CUTOVER.has(phase)) return fail(Reason.VolumeNotOwned, message);
    if (phase === 'Held') return wait(Reason.VolumeNotOwned, message, WAIT_HELD);
    return hold(w, Reason.VolumeNotOwned, message);
  }
  // The webhooks select namespaces by this label; a tool that strips it would
  // let claims and pods through unrewritten and ungated. Put it back at once.
  if (phase !== 'Pending' && !w.namespaceLabelled) return { kind: 'labelNamespace', active: true };
  const abort = !!m.spec.abort || deleting;
  switch (phase) {
    case 'Pending':
      return planPending(w, abort);
    case 'PreSyncing':
      return planPreSync(w, abort);
    case 'WaitingForCutover':
      return planWaiting(w, abort);
    case 'CuttingOver':
      return planCutover(w, abort);
    case 'Populating':
      return planPopulate(w, abort);
    case 'Binding':
      return planBinding(w, abort);
    case 'RollingBack':
      return planRollback(w);
    case 'Held':
      return planHeld(w);
  }
  return { kind: 'done' };
}
