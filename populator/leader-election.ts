// Leader election on a coordination.k8s.io Lease, so that two replicas never
// reconcile at once. The holder renews every `renewMs`; a candidate takes the
// Lease once it has seen no change to it for `leaseDurationMs`. Writes carry the
// Lease's resourceVersion, so two candidates cannot both win.
//
// Expiry is measured on this replica's own clock, from when it observed the
// record change, never by comparing the holder's `renewTime` with the local
// time (client-go's leaderelection.go does the same: observedRecord and
// observedTime). `renewTime` is written by another machine's clock: one that
// runs an hour behind would make its live Lease look expired to everyone else,
// and one that runs ahead would keep a dead holder's Lease alive. Only the
// change itself is trusted; when it was made is read locally.
import { ApiError, paths, type Kube } from '../src/kube.js';
import { errorMessage } from '../src/errors.js';
import type { Logger } from '../src/logger.js';

export interface LeaseSpec {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions?: number;
}

export interface Lease {
  apiVersion: 'coordination.k8s.io/v1';
  kind: 'Lease';
  metadata: { name: string; namespace: string; resourceVersion?: string };
  spec: LeaseSpec;
}

export interface LeaderElectionOptions {
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs: number;
  renewMs: number;
  retryMs: number;
}

/** The local time source; tests pass a fake one. */
export type Clock = () => Date;

/** A Lease's MicroTime, as client-go writes it. */
export function microTime(date: Date): string {
  return date.toISOString().replace(/Z$/, '000Z');
}

/** The record as the replicas see it: any change to it (a renewal included) restarts the expiry. */
function recordOf(spec: LeaseSpec | undefined): string {
  const s = spec ?? {};
  return JSON.stringify([
    s.holderIdentity ?? '',
    s.leaseDurationSeconds ?? 0,
    s.acquireTime ?? '',
    s.renewTime ?? '',
    s.leaseTransitions ?? 0,
  ]);
}

export class LeaderElector {
  private stopped = false;
  private leading = false;
  private timer: NodeJS.Timeout | undefined;
  /** The last record this replica saw, and its local time when it first saw it. */
  private observed: { record: string; atMs: number } | undefined;

  constructor(
    private readonly kube: Kube,
    private readonly options: LeaderElectionOptions,
    private readonly logger: Logger,
    private readonly clock: Clock = () => new Date(),
  ) {}

  get isLeader(): boolean {
    return this.leading;
  }

  /** Resolves once this process leads (true), or when it was released first (false). Never rejects. */
  async acquire(onLost: () => void): Promise<boolean> {
    while (!this.stopped) {
      if (await this.tryAcquireOrRenew()) {
        // release() came while the write was in flight: hand the Lease straight back.
        if (this.stopped) {
          await this.giveBack();
          return false;
        }
        this.leading = true;
        this.logger.info(
          { lease: `${this.options.namespace}/${this.options.name}`, identity: this.options.identity },
          'became leader',
        );
        this.keepRenewing(onLost);
        return true;
      }
      await new Promise((resolve) => setTimeout(resolve, this.options.retryMs));
    }
    return false;
  }

  private keepRenewing(onLost: () => void): void {
    const deadline = () => this.clock().getTime() + this.options.leaseDurationMs;
    let renewBy = deadline();
    const tick = async () => {
      if (this.stopped) return;
      const ok = await this.tryAcquireOrRenew();
      if (this.stopped) return;
      if (ok) renewBy = deadline();
      else if (this.clock().getTime() > renewBy - this.options.renewMs) {
        this.leading = false;
        this.logger.error('lost the leader lease');
        onLost();
        return;
      }
      this.timer = setTimeout(() => void tick(), this.options.renewMs);
    };
    this.timer = setTimeout(() => void tick(), this.options.renewMs);
  }

  /**
   * One attempt to take or renew the Lease: true when this replica holds it
   * afterwards. Never throws: an API server that cannot be reached, a 5xx or a
   * lost race (409) all mean "not now, try again" (client-go answers a failed
   * Get the same way).
   */
  async tryAcquireOrRenew(): Promise<boolean> {
    try {
      return await this.attempt();
    } catch (e: unknown) {
      if (e instanceof ApiError && e.code === 409) return false;
      this.logger.warn(
        { lease: `${this.options.namespace}/${this.options.name}`, err: errorMessage(e) },
        'leader lease: read or write failed; will retry',
      );
      return false;
    }
  }

  private async attempt(): Promise<boolean> {
    const { namespace, name, identity } = this.options;
    const now = this.clock();
    const path = paths.leases(namespace, name);
    const current = await this.kube.get<Lease>(path);
    const spec = {
      holderIdentity: identity,
      leaseDurationSeconds: Math.ceil(this.options.leaseDurationMs / 1000),
      renewTime: microTime(now),
    };
    if (!current) {
      const created = await this.kube.create<Lease>(paths.leases(namespace), {
        apiVersion: 'coordination.k8s.io/v1',
        kind: 'Lease',
        metadata: { name, namespace },
        spec: { ...spec, acquireTime: microTime(now), leaseTransitions: 0 },
      });
      this.observe(created.spec, now);
      return true;
    }
    this.observe(current.spec, now);
    const held = current.spec.holderIdentity;
    if (held && held !== identity && !this.isObservedExpired(current.spec, now)) return false;
    const transitions = (current.spec.leaseTransitions ?? 0) + (held === identity ? 0 : 1);
    const replaced = await this.kube.replace<Lease>(path, {
      ...current,
      spec: {
        ...current.spec,
        ...spec,
        leaseTransitions: transitions,
        ...(held === identity ? {} : { acquireTime: microTime(now) }),
      },
    });
    this.observe(replaced.spec, now);
    return true;
  }

  /** Remembers the record with the local time it was first seen; an unchanged record keeps its first time. */
  private observe(spec: LeaseSpec | undefined, now: Date): void {
    const record = recordOf(spec);
    if (this.observed?.record !== record) this.observed = { record, atMs: now.getTime() };
  }

  /** Whether the holder's leaseDuration has passed on the local clock since the record last changed. */
  private isObservedExpired(spec: LeaseSpec, now: Date): boolean {
    const durationMs =
      spec.leaseDurationSeconds !== undefined ? spec.leaseDurationSeconds * 1000 : this.options.leaseDurationMs;
    const since = this.observed?.atMs ?? now.getTime();
    return now.getTime() - since >= durationMs;
  }

  /** Gives the Lease up (so a successor need not wait it out), and stops renewing. */
  async release(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (!this.leading) return;
    this.leading = false;
    await this.giveBack();
  }

  private async giveBack(): Promise<void> {
    const path = paths.leases(this.options.namespace, this.options.name);
    try {
      const current = await this.kube.get<Lease>(path);
      if (current?.spec.holderIdentity === this.options.identity) {
        await this.kube.replace(path, {
          ...current,
          spec: { ...current.spec, holderIdentity: '', renewTime: microTime(new Date(0)) },
        });
      }
    } catch (e: unknown) {
      this.logger.warn({ err: e }, 'could not release the leader lease');
    }
  }
}
