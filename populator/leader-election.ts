// Leader election on a coordination.k8s.io Lease, so that two replicas never
// reconcile at once. The holder renews every `renewMs`; a candidate takes the
// Lease once it has not been renewed for `leaseDurationMs`. Writes carry the
// Lease's resourceVersion, so two candidates cannot both win.
import { ApiError, paths, type Kube } from '../src/kube.js';
import type { Logger } from '../src/logger.js';

interface Lease {
  apiVersion: 'coordination.k8s.io/v1';
  kind: 'Lease';
  metadata: { name: string; namespace: string; resourceVersion?: string };
  spec: { holderIdentity?: string; leaseDurationSeconds?: number; acquireTime?: string; renewTime?: string; leaseTransitions?: number };
}

export interface LeaderElectionOptions {
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs: number;
  renewMs: number;
  retryMs: number;
}

function microTime(date: Date): string {
  return date.toISOString().replace(/Z$/, '000Z');
}

export class LeaderElector {
  private stopped = false;
  private leading = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly kube: Kube,
    private readonly options: LeaderElectionOptions,
    private readonly logger: Logger,
  ) {}

  get isLeader(): boolean {
    return this.leading;
  }

  /** Resolves once this process leads; `onLost` is called if it stops leading. */
  async acquire(onLost: () => void): Promise<boolean> {
    while (!this.stopped) {
      if (await this.tryAcquireOrRenew()) {
        this.leading = true;
        this.logger.info({ lease: `${this.options.namespace}/${this.options.name}`, identity: this.options.identity }, 'became leader');
        this.keepRenewing(onLost);
        return true;
      }
      await new Promise((resolve) => setTimeout(resolve, this.options.retryMs));
    }
    return false;
  }

  private keepRenewing(onLost: () => void): void {
    const deadline = () => Date.now() + this.options.leaseDurationMs;
    let renewBy = deadline();
    const tick = async () => {
      if (this.stopped) return;
      const ok = await this.tryAcquireOrRenew().catch(() => false);
      if (ok) renewBy = deadline();
      else if (Date.now() > renewBy - this.options.renewMs) {
        this.leading = false;
        this.logger.error('lost the leader lease');
        onLost();
        return;
      }
      this.timer = setTimeout(() => void tick(), this.options.renewMs);
    };
    this.timer = setTimeout(() => void tick(), this.options.renewMs);
  }

  private async tryAcquireOrRenew(): Promise<boolean> {
    const { namespace, name, identity } = this.options;
    const now = new Date();
    const path = paths.leases(namespace, name);
    const current = await this.kube.get<Lease>(path);
    const spec = { holderIdentity: identity, leaseDurationSeconds: Math.ceil(this.options.leaseDurationMs / 1000), renewTime: microTime(now) };
    try {
      if (!current) {
        await this.kube.create(paths.leases(namespace), {
          apiVersion: 'coordination.k8s.io/v1',
          kind: 'Lease',
          metadata: { name, namespace },
          spec: { ...spec, acquireTime: microTime(now), leaseTransitions: 0 },
        } satisfies Lease);
        return true;
      }
      const held = current.spec.holderIdentity;
      const renewed = current.spec.renewTime ? Date.parse(current.spec.renewTime) : 0;
      const expired = now.getTime() - renewed > (current.spec.leaseDurationSeconds ?? 15) * 1000;
      if (held && held !== identity && !expired) return false;
      const transitions = (current.spec.leaseTransitions ?? 0) + (held === identity ? 0 : 1);
      await this.kube.replace(path, {
        ...current,
        spec: { ...current.spec, ...spec, leaseTransitions: transitions, ...(held === identity ? {} : { acquireTime: microTime(now) }) },
      });
      return true;
    } catch (e: unknown) {
      if (e instanceof ApiError && e.code === 409) return false;
      throw e;
    }
  }

  /** Gives the Lease up (so a successor need not wait it out), and stops renewing. */
  async release(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (!this.leading) return;
    this.leading = false;
    const path = paths.leases(this.options.namespace, this.options.name);
    try {
      const current = await this.kube.get<Lease>(path);
      if (current?.spec.holderIdentity === this.options.identity) {
        await this.kube.replace(path, { ...current, spec: { ...current.spec, holderIdentity: '', renewTime: microTime(new Date(0)) } });
      }
    } catch (e: unknown) {
      this.logger.warn({ err: e }, 'could not release the leader lease');
    }
  }
}
