// The conditions of a VolumeMigration: Ready, Validated and Degraded. The phase
// moves them (conditionsFor); a terminal API failure sets Degraded on its own
// (populator/controller.ts), and the next phase change or a retry clears it.
import { Reason } from '../src/reasons.js';
import type { Condition, CopyFidelity, Phase } from '../src/volume-migration.js';

/** What a condition says: its status, the reason constant (src/reasons.ts) and a message for people. */
export interface ConditionNote {
  status: Condition['status'];
  reason: string;
  message: string;
}

/** Conditions carry seconds (metav1.Time): no fraction, or a strict client rejects them. */
function stampOf(now: Date): string {
  return now.toISOString().replace(/\.\d+Z$/, 'Z');
}

/** `existing` with condition `type` set; lastTransitionTime moves only when the status does. */
export function withCondition(existing: Condition[], type: string, note: ConditionNote, now: Date): Condition[] {
  const old = existing.find((c) => c.type === type);
  const changed = !old || old.status !== note.status;
  const next: Condition = {
    type,
    status: note.status,
    reason: note.reason,
    message: note.message,
    lastTransitionTime: changed ? stampOf(now) : old.lastTransitionTime,
  };
  return [...existing.filter((c) => c.type !== type), next];
}

/** Ready, Validated and Degraded, moved with the phase. */
export function conditionsFor(
  existing: Condition[],
  phase: Phase,
  event: { reason: string; message: string },
  now: Date,
  fidelity?: CopyFidelity,
): Condition[] {
  const { reason, message } = event;
  let out = withCondition(
    existing,
    'Ready',
    { status: phase === 'Succeeded' ? 'True' : 'False', reason, message },
    now,
  );
  if (phase === 'Failed') out = withCondition(out, 'Validated', { status: 'False', reason, message }, now);
  else if (phase !== 'Pending' && phase !== 'Aborted') {
    // What the namespace's Pod Security level costs is part of what was validated.
    const cost = fidelity?.dropped.length
      ? `; not copied at Pod Security level ${fidelity.level}: ${fidelity.dropped.join(', ')}`
      : '';
    const fit = `the claim, its volume and the target class are fit to migrate${cost}`;
    out = withCondition(out, 'Validated', { status: 'True', reason: Reason.Validated, message: fit }, now);
  }
  const degraded = phase === 'Failed' || phase === 'RollingBack' || phase === 'RolledBack';
  const note: ConditionNote = degraded
    ? { status: 'True', reason, message }
    : { status: 'False', reason: Reason.AsExpected, message: '' };
  return withCondition(out, 'Degraded', note, now);
}
