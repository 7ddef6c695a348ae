// Copy slots: how many copy pods may run at once (--max-concurrent-copies) and
// per node (--max-copies-per-node), and which of them give way to whom.
//
// Who holds a slot is the union, by pod, of two sets:
//   - pvshift's own unfinished copy pods in the informer: owned (controller
//     ownerReference) by a migration in the cache, labelled with that
//     migration's uid, named as that migration's copy pod of some pass. Labels
//     alone prove nothing: anyone who may create pods can label them, and a
//     tenant must not be able to stall every migration of the cluster;
//   - this process's reservations for pods not seen in the informer yet: a pod
//     just created by another worker reaches the cache only when its watch event
//     does, and counting from the cache alone let a cap of 4 run 7 copies.
// Checking and reserving happen in one synchronous call: Node runs it to the
// end before any other worker's code, so that call is the lock.
//
// A final copy runs while the application is held by its scheduling gate
// (downtime); a pre-sync is resumable. So a final may start while the finals
// running are fewer than the cap (pre-syncs do not count against it), and the
// most recently started pre-syncs yield their slots when the cap is exceeded.
import type { V1Pod } from '@kubernetes/client-node';
import { LABEL_MIGRATION_UID, MIGRATION_KIND } from '../src/names.js';
import { isPreSyncEnabled, type VolumeMigration } from '../src/volume-migration.js';
import { copyPodNameFor } from './copy-pod.js';
import { isFinished } from './plan.js';
import { msUntilResync } from './plan/resync.js';
import { PASSES, type Pass, type World } from './world.js';

export interface SlotLimits {
  maxConcurrent: number;
  maxPerNode: number;
}

/** A copy pod that holds a slot, or will (a reservation). */
export interface SlotHolder {
  /** `namespace/name` of the pod. */
  key: string;
  pass: Pass;
  /** The node it runs on, or is pinned to; unknown for an unpinned pod not scheduled yet. */
  node?: string;
  /** When it started (the pod's creation) or was reserved, in ms. */
  since: number;
  /** Being deleted: it leaves by itself, so it is the first to count as yielded. */
  terminating: boolean;
}

/** One of pvshift's own copy pods as the informer shows it. */
export interface CopyPodState extends SlotHolder {
  finished: boolean;
}

export interface SlotRequest {
  key: string;
  /** `namespace/name` of the migration asking. */
  migration: string;
  pass: Pass;
  node?: string;
}

/** A reservation neither used nor seen in this long is dropped (a worker that died mid-step, a pod never seen). */
const RESERVATION_TTL_MS = 60_000;
/**
 * A final that was refused a slot counts as waiting this long: a waiting
 * migration asks again every 2 s (plan's WAIT_COPY), so one that stops asking
 * (aborted, deleted) stops holding pre-syncs back soon after.
 */
const WAITING_TTL_MS = 10_000;

/**
 * The pass of a copy pod pvshift made, as far as the pod itself can prove it: a
 * controller ownerReference to a VolumeMigration, the same uid in the
 * migration-uid label, and the name of that migration's copy pod of a pass.
 * Whether the owner exists is for the caller, who has the cache.
 */
export function copyPassOf(pod: V1Pod): Pass | undefined {
  const owner = (pod.metadata?.ownerReferences ?? []).find((r) => r.controller === true);
  if (!owner || owner.kind !== MIGRATION_KIND || !owner.uid) return undefined;
  if (pod.metadata?.labels?.[LABEL_MIGRATION_UID] !== owner.uid) return undefined;
  return PASSES.find((pass) => copyPodNameFor(owner.uid, pass) === pod.metadata?.name);
}

/** The node a pod runs on, else the one node its required affinity pins it to (as buildCopyPod pins). */
function nodeOf(pod: V1Pod): string | undefined {
  if (pod.spec?.nodeName) return pod.spec.nodeName;
  const terms =
    pod.spec?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms ?? [];
  if (terms.length !== 1) return undefined;
  const match = (terms[0]!.matchExpressions ?? []).find(
    (e) => e.key === 'kubernetes.io/hostname' && e.operator === 'In',
  );
  return match?.values?.length === 1 ? match.values[0] : undefined;
}

function millis(value: Date | string | undefined): number {
  const ms = value === undefined ? NaN : new Date(value).getTime();
  return Number.isNaN(ms) ? 0 : ms;
}

/** pvshift's own copy pods among `pods`: owned by a migration of the cache, in its namespace. */
export function copySlotPods(pods: V1Pod[], migrations: VolumeMigration[]): CopyPodState[] {
  const namespaceOf = new Map(migrations.map((m) => [m.metadata.uid ?? '', m.metadata.namespace]));
  const out: CopyPodState[] = [];
  for (const pod of pods) {
    const pass = copyPassOf(pod);
    if (!pass) continue;
    const uid = pod.metadata?.labels?.[LABEL_MIGRATION_UID] ?? '';
    const namespace = namespaceOf.get(uid);
    if (!uid || namespace === undefined || namespace !== pod.metadata?.namespace) continue;
    const node = nodeOf(pod);
    out.push({
      key: `${namespace}/${pod.metadata?.name}`,
      pass,
      ...(node ? { node } : {}),
      since: millis(pod.metadata?.creationTimestamp),
      terminating: !!pod.metadata?.deletionTimestamp,
      finished: isFinished(pod),
    });
  }
  return out;
}

/**
 * The copy plan would start next for this migration, if it has none running:
 * the one pass observe reserves a slot for. Narrower than "any phase that
 * copies" so that a migration busy with other steps holds no slot; if plan
 * starts another pass after all, reconcile reserves for it before creating.
 */
export function passAboutToStart(w: World): Pass | undefined {
  const m = w.migration;
  const status = m.status ?? {};
  if (m.spec.abort || m.metadata.deletionTimestamp) return undefined;
  const recorded = (pass: Pass) => (status.copies ?? []).some((c) => c.pass === pass);
  switch (status.phase ?? 'Pending') {
    case 'Pending':
      return status.originalClaim && status.usedBytes === undefined && !isPreSyncEnabled(m, status.originalClaim)
        ? 'measure'
        : undefined;
    case 'PreSyncing':
      return w.stagingClaim && !recorded('presync') ? 'presync' : undefined;
    case 'WaitingForCutover': {
      const until = msUntilResync(w);
      return until !== undefined && until <= 0 ? 'presync' : undefined;
    }
    case 'Populating':
      return w.helperClaim?.status?.phase === 'Bound' && !recorded('final') ? 'final' : undefined;
    default:
      return undefined;
  }
}

/**
 * Whether a copy may start beside `holders`. A final counts only finals (the
 * pre-syncs it displaces yield); anything else counts everything and waits
 * while a final waits for a slot.
 */
export function mayStart(
  request: Pick<SlotHolder, 'pass' | 'node'>,
  holders: SlotHolder[],
  finalsWaiting: number,
  limits: SlotLimits,
): boolean {
  const counted = request.pass === 'final' ? holders.filter((h) => h.pass === 'final') : holders;
  if (request.pass !== 'final' && finalsWaiting > 0) return false;
  if (counted.length >= limits.maxConcurrent) return false;
  if (request.node !== undefined && counted.filter((h) => h.node === request.node).length >= limits.maxPerNode)
    return false;
  return true;
}

/** Pre-syncs in the order they give way: those already going first, then the most recently started. */
function yieldOrder(presyncs: SlotHolder[]): SlotHolder[] {
  return [...presyncs].sort(
    (a, b) =>
      Number(b.terminating) - Number(a.terminating) ||
      b.since - a.since ||
      (a.key < b.key ? 1 : a.key > b.key ? -1 : 0),
  );
}

/**
 * The pre-syncs that must give their slots up: as many as the holders exceed the
 * cap (all of them while a final waits), the most recently started first. On a
 * node, only a final there displaces pre-syncs: unpinned pre-syncs the
 * scheduler put together would otherwise be stopped and land there again.
 * Measures are short and are never asked to yield.
 */
export function yielding(holders: SlotHolder[], finalsWaiting: number, limits: SlotLimits): Set<string> {
  const out = new Set<string>();
  const presyncs = holders.filter((h) => h.pass === 'presync');
  const globalExcess = finalsWaiting > 0 ? presyncs.length : Math.max(0, holders.length - limits.maxConcurrent);
  for (const h of yieldOrder(presyncs).slice(0, globalExcess)) out.add(h.key);
  const nodes = new Set(holders.map((h) => h.node).filter((n): n is string => n !== undefined));
  for (const node of nodes) {
    const here = holders.filter((h) => h.node === node);
    const finalsHere = here.filter((h) => h.pass === 'final').length;
    let need = Math.min(Math.max(0, here.length - limits.maxPerNode), finalsHere);
    const candidates = yieldOrder(here.filter((h) => h.pass === 'presync'));
    need -= candidates.filter((h) => out.has(h.key)).length;
    for (const h of candidates) {
      if (need <= 0) break;
      if (out.has(h.key)) continue;
      out.add(h.key);
      need -= 1;
    }
  }
  return out;
}

interface Reservation {
  request: SlotRequest;
  since: number;
  /** When the pod was created (kept until the informer shows it); unset while only asked for. */
  createdAt?: number;
}

/** The slot table of one controller process. Every method is synchronous. */
export class CopySlots {
  private readonly reservations = new Map<string, Reservation>();
  /** Finals refused a slot: pod key → when they last asked. */
  private readonly waiting = new Map<string, number>();

  constructor(private readonly limits: SlotLimits) {}

  /**
   * Who holds a slot now: the unfinished pods, and the reservations of pods the
   * informer does not show. A created pod's reservation ends once the informer
   * shows the pod: from then on the informer speaks for it.
   */
  holders(pods: CopyPodState[], now: number): SlotHolder[] {
    const present = new Set(pods.map((p) => p.key));
    for (const [key, r] of this.reservations) {
      const expired = now - (r.createdAt ?? r.since) > RESERVATION_TTL_MS;
      if (expired || (r.createdAt !== undefined && present.has(key))) this.reservations.delete(key);
    }
    const out: SlotHolder[] = pods.filter((p) => !p.finished).map(({ finished: _finished, ...holder }) => holder);
    for (const [key, r] of this.reservations) {
      if (present.has(key)) continue;
      out.push({
        key,
        pass: r.request.pass,
        ...(r.request.node !== undefined ? { node: r.request.node } : {}),
        since: r.since,
        terminating: false,
      });
    }
    return out;
  }

  private finalsWaiting(now: number, except?: string): number {
    let n = 0;
    for (const [key, at] of this.waiting) {
      if (now - at > WAITING_TTL_MS) this.waiting.delete(key);
      else if (key !== except) n += 1;
    }
    return n;
  }

  /** Checks for a free slot and takes it, in one synchronous call. Asking again for a reserved pod is a yes. */
  tryReserve(request: SlotRequest, pods: CopyPodState[], now: number): boolean {
    const holders = this.holders(pods, now).filter((h) => h.key !== request.key);
    if (this.reservations.has(request.key)) return true;
    if (!mayStart(request, holders, this.finalsWaiting(now, request.key), this.limits)) {
      if (request.pass === 'final') this.waiting.set(request.key, now);
      return false;
    }
    this.waiting.delete(request.key);
    this.reservations.set(request.key, { request, since: now });
    return true;
  }

  isReserved(key: string): boolean {
    return this.reservations.has(key);
  }

  /** The pod was created (or found existing): hold its slot until the informer shows it. */
  created(key: string, now: number): void {
    const r = this.reservations.get(key);
    if (r) r.createdAt = now;
  }

  /** The informer showed the pod (an event of any kind): a created pod's reservation has done its job. */
  seen(key: string): void {
    if (this.reservations.get(key)?.createdAt !== undefined) this.reservations.delete(key);
  }

  release(key: string): void {
    this.reservations.delete(key);
  }

  /** After a migration's step: what it reserved and did not create is free again. */
  releaseUnused(migration: string): void {
    for (const [key, r] of this.reservations)
      if (r.request.migration === migration && r.createdAt === undefined) this.reservations.delete(key);
  }

  /** Whether the pre-sync pod `key` must give its slot up now. */
  mustYield(key: string, pods: CopyPodState[], now: number): boolean {
    return yielding(this.holders(pods, now), this.finalsWaiting(now), this.limits).has(key);
  }
}
