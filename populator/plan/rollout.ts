// Rollouts of a workload, while its migrations wait for cutover: a Deployment's
// RollingUpdate handed over (its new pod is gated, its old pod holds the claim),
// and a StatefulSet policy with cutover Evict taking its replicas one at a time,
// highest ordinal first. planWaiting (cutover.ts) asks both before it waits.
import type { V1Pod } from '@kubernetes/client-node';
import { ANNOTATION_WORKLOAD } from '../../src/names.js';
import { Reason } from '../../src/reasons.js';
import { isTerminal, phaseOf, type Phase } from '../../src/volume-migration.js';
import type { Stored, World } from '../world.js';
import { isFinished, namesOf, rolloutOf } from './readers.js';
import { normal, wait, WAIT_SHORT } from './steps.js';
import type { Step } from './types.js';

/** Phases in which a replica is down because of pvshift. */
const REPLICA_DOWN: ReadonlySet<Phase> = new Set(['CuttingOver', 'Populating', 'Binding', 'RollingBack']);

function ordinalOf(claimName: string): number {
  const match = /-(\d+)$/.exec(claimName);
  return match ? Number(match[1]) : -1;
}

/**
 * A StatefulSet policy with `cutover: Evict` rolls its replicas itself, as the
 * StatefulSet controller's rollout would: one at a time, highest ordinal first,
 * each once the replicas moved before it run Ready on their new volumes, so
 * never more than one replica of the workload is down because of pvshift.
 * Undefined when it is this migration's turn; else why it waits.
 */
export function workloadTurn(w: World): string | undefined {
  const m = w.migration;
  const workload = m.metadata.annotations?.[ANNOTATION_WORKLOAD];
  if (!workload) return undefined;
  const peers = w.siblings.filter(
    (s) => s.metadata.name !== m.metadata.name && s.metadata.annotations?.[ANNOTATION_WORKLOAD] === workload,
  );
  const down = peers.filter((s) => REPLICA_DOWN.has(phaseOf(s)));
  if (down.length) {
    return `${workload} moves one replica at a time: ${down.map((s) => s.spec.claimName).join(', ')} is cutting over`;
  }
  const ordinal = ordinalOf(m.spec.claimName);
  const first = peers.filter((s) => ordinalOf(s.spec.claimName) > ordinal && !isTerminal(phaseOf(s)));
  if (first.length) {
    const names = first.map((s) => s.spec.claimName).sort();
    return `${workload} moves its replicas highest ordinal first: waiting for ${names.join(', ')}`;
  }
  if (!w.movedReplicasReady) return `${workload}: waiting for the replicas already moved to be Ready`;
  return undefined;
}

/**
 * A Deployment with the RollingUpdate strategy creates the new pod first and
 * removes the old one only once the new one is Ready. Held by pvshift's gate, the
 * new pod never gets Ready, and the old pod holds the claim for ever: a deadlock.
 * When every pod still using the claim is an older revision of the Deployment of
 * a gated pod, pvshift records the handover (downtime starts when the old pods
 * have stopped, not at the gate: until then they served) and evicts them through
 * the Eviction API, so a PodDisruptionBudget still has its say.
 */
export function planHandover(w: World, gated: Stored<V1Pod>[], scheduled: Stored<V1Pod>[]): Step | undefined {
  const live = scheduled.filter((p) => !isFinished(p));
  const newer = gated.map(rolloutOf).filter((r) => r !== undefined);
  if (!live.length || !newer.length) return undefined;
  const isOlderRevision = (p: Stored<V1Pod>): boolean => {
    const r = rolloutOf(p);
    return !!r && newer.some((n) => n.deployment === r.deployment && n.revision !== r.revision);
  };
  if (!live.every(isOlderRevision)) return undefined;
  const deployment = newer[0]!.deployment;
  const old = live.map((p) => p.metadata.name);
  const recorded = w.migration.status?.handoverFrom ?? [];
  if (!old.every((name) => recorded.includes(name))) {
    const message =
      `Deployment ${deployment}: new pod ${namesOf(gated)} waits behind pvshift's gate while old pod ` +
      `${old.join(', ')} holds the claim, and the rollout waits for the new pod: evicting the old one to cut over`;
    return {
      kind: 'patchStatus',
      status: { handoverFrom: [...new Set([...recorded, ...old])], message },
      event: normal(Reason.RolloutHandover, message),
    };
  }
  const toEvict = live.filter((p) => !p.metadata.deletionTimestamp);
  if (!toEvict.length) return wait(Reason.RolloutHandover, `waiting for old pod ${old.join(', ')} to stop`, WAIT_SHORT);
  return {
    kind: 'evictPods',
    pods: toEvict.map((p) => p.metadata.name),
    event: normal(Reason.Evicting, `evicting ${namesOf(toEvict)}: the rollout of Deployment ${deployment} hands over`),
  };
}
