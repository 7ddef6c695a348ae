// Leader election step by step against the real API server, each replica with
// its own fake clock: a Lease expires when leaseDuration has passed on the
// candidate's clock since it saw the record change, whatever the holder's
// renewTime says (the holder's clock may be an hour off); and a read that fails
// is "not acquired, try again", never a rejection.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import t, { type Test } from 'tap';
import {
  LeaderElector,
  microTime,
  type Lease,
  type LeaseSpec,
  type LeaderElectionOptions,
} from '../../populator/leader-election.js';
import { freePort } from '../../cluster/index.js';
import { Kube, KubeConfig, paths } from '../../src/kube.js';
import { silentLogger } from '../../src/logger.js';
import { clusterFor, waitFor } from '../helpers/cluster.js';

const SECOND = 1000;
const HOUR = 3600 * SECOND;
const LEASE_SECONDS = 10;
const NAMESPACE = 'default';

interface FakeClock {
  now: () => Date;
  advance: (ms: number) => void;
}

function fakeClock(startMs: number): FakeClock {
  let nowMs = startMs;
  return { now: () => new Date(nowMs), advance: (ms) => void (nowMs += ms) };
}

let counter = 0;
const leaseName = (prefix: string) => `${prefix}-${process.pid}-${++counter}`;

function options(name: string, identity: string): LeaderElectionOptions {
  return {
    namespace: NAMESPACE,
    name,
    identity,
    leaseDurationMs: LEASE_SECONDS * SECOND,
    renewMs: 2 * SECOND,
    retryMs: 50,
  };
}

const cluster = await clusterFor(t);
const { kube } = cluster;

/**
 * Another replica, as the API server sees it: it writes the Lease with times
 * from its own clock. Written directly, so that its clock is whatever the test
 * says, independent of the code under test.
 */
async function otherHolder(name: string, identity: string, clock: FakeClock): Promise<{ renew: () => Promise<void> }> {
  await kube.create<Lease>(paths.leases(NAMESPACE), {
    apiVersion: 'coordination.k8s.io/v1',
    kind: 'Lease',
    metadata: { name, namespace: NAMESPACE },
    spec: {
      holderIdentity: identity,
      leaseDurationSeconds: LEASE_SECONDS,
      acquireTime: microTime(clock.now()),
      renewTime: microTime(clock.now()),
      leaseTransitions: 0,
    },
  });
  return {
    renew: async () => {
      const lease = (await kube.get<Lease>(paths.leases(NAMESPACE, name)))!;
      await kube.replace(paths.leases(NAMESPACE, name), {
        ...lease,
        spec: { ...lease.spec, renewTime: microTime(clock.now()) },
      });
    },
  };
}

async function leaseOf(name: string): Promise<LeaseSpec | undefined> {
  return (await kube.get<Lease>(paths.leases(NAMESPACE, name)))?.spec;
}

void t.test(
  'a holder that keeps renewing is never taken over, its renewTime an hour in the past by the candidate clock',
  async (t) => {
    const name = leaseName('renewing');
    const local = fakeClock(Date.now());
    const holderClock = fakeClock(Date.now() - HOUR);
    const holder = await otherHolder(name, 'other', holderClock);
    const candidate = new LeaderElector(kube, options(name, 'candidate'), silentLogger(), local.now);

    // Eight rounds of 5 s: four lease durations on the candidate's clock, with a renewal in each.
    const results: boolean[] = [];
    for (let round = 0; round < 8; round++) {
      results.push(await candidate.tryAcquireOrRenew());
      local.advance(5 * SECOND);
      holderClock.advance(5 * SECOND);
      await holder.renew();
    }
    t.same(results, Array<boolean>(8).fill(false), 'not acquired in any round');
    t.equal((await leaseOf(name))?.holderIdentity, 'other', 'the Lease still names the holder');
    t.equal((await leaseOf(name))?.leaseTransitions, 0);
  },
);

const skews: { name: string; skewMs: number }[] = [
  { name: 'an hour behind', skewMs: -HOUR },
  { name: 'in step', skewMs: 0 },
  { name: 'an hour ahead', skewMs: HOUR },
];
for (const skew of skews) {
  void t.test(
    `a holder whose clock is ${skew.name} stops renewing: taken over once leaseDuration has passed on the candidate clock`,
    async (t) => {
      const name = leaseName('stopped');
      const local = fakeClock(Date.now());
      await otherHolder(name, 'other', fakeClock(Date.now() + skew.skewMs));
      const candidate = new LeaderElector(kube, options(name, 'candidate'), silentLogger(), local.now);

      t.equal(await candidate.tryAcquireOrRenew(), false, 'first seen: held');
      local.advance(LEASE_SECONDS * SECOND - 1);
      t.equal(await candidate.tryAcquireOrRenew(), false, '1 ms before leaseDuration: still held');
      local.advance(1);
      t.equal(await candidate.tryAcquireOrRenew(), true, 'at leaseDuration since it was seen: acquired');
      const lease = await leaseOf(name);
      t.equal(lease?.holderIdentity, 'candidate');
      t.equal(lease?.leaseTransitions, 1);
      t.equal(lease?.renewTime, microTime(local.now()), 'renewTime from the new holder clock');
    },
  );
}

void t.test('a renewal seen late still restarts the wait', async (t) => {
  const name = leaseName('late');
  const local = fakeClock(Date.now());
  const holderClock = fakeClock(Date.now() - HOUR);
  const holder = await otherHolder(name, 'other', holderClock);
  const candidate = new LeaderElector(kube, options(name, 'candidate'), silentLogger(), local.now);
  t.equal(await candidate.tryAcquireOrRenew(), false);
  local.advance(LEASE_SECONDS * SECOND - 1);
  holderClock.advance(LEASE_SECONDS * SECOND - 1);
  await holder.renew();
  local.advance(2);
  t.equal(await candidate.tryAcquireOrRenew(), false, 'the record changed: the wait starts again from now');
  local.advance(LEASE_SECONDS * SECOND);
  t.equal(await candidate.tryAcquireOrRenew(), true, 'no change for a whole leaseDuration: acquired');
});

void t.test('the holder renews its own Lease; a released Lease is taken at once', async (t) => {
  const name = leaseName('release');
  const first = new LeaderElector(kube, options(name, 'first'), silentLogger(), fakeClock(Date.now()).now);
  t.equal(await first.acquire(() => t.fail('first lost the Lease')), true);
  t.equal(first.isLeader, true);
  t.equal(await first.tryAcquireOrRenew(), true, 'renewed');
  t.equal((await leaseOf(name))?.leaseTransitions, 0, 'a renewal is no transition');
  await first.release();
  t.equal((await leaseOf(name))?.holderIdentity, '', 'released');
  const second = new LeaderElector(kube, options(name, 'second'), silentLogger(), fakeClock(Date.now()).now);
  t.equal(await second.tryAcquireOrRenew(), true, 'taken without waiting');
  t.equal((await leaseOf(name))?.holderIdentity, 'second');
});

void t.test('two candidates for a Lease nobody holds yet: exactly one wins', async (t) => {
  const name = leaseName('race');
  const a = new LeaderElector(kube, options(name, 'a'), silentLogger(), fakeClock(Date.now()).now);
  const b = new LeaderElector(kube, options(name, 'b'), silentLogger(), fakeClock(Date.now()).now);
  const results = await Promise.all([a.tryAcquireOrRenew(), b.tryAcquireOrRenew()]);
  t.same([...results].sort(), [false, true]);
  t.equal((await leaseOf(name))?.holderIdentity, results[0] ? 'a' : 'b');
});

/** A Kube talking plain HTTP to `server`. */
function kubeAt(t: Test, server: string): Kube {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    // client-node refuses plain HTTP unless TLS verification is declared off.
    clusters: [{ name: 'c', server, skipTLSVerify: true }],
    users: [{ name: 'u' }],
    contexts: [{ name: 'c', cluster: 'c', user: 'u' }],
    currentContext: 'c',
  });
  const kube = new Kube(kc);
  t.teardown(() => kube.close());
  return kube;
}

/** An "API server" that answers every request with 500, counting them. */
async function failingServer(t: Test): Promise<{ url: string; requests: () => number }> {
  let requests = 0;
  const server = createServer((req, res) => {
    requests++;
    req.resume();
    res.writeHead(500, { 'Content-Type': 'application/json' });
    res.end(
      JSON.stringify({
        kind: 'Status',
        apiVersion: 'v1',
        status: 'Failure',
        message: 'etcdserver: request timed out',
        reason: 'InternalError',
        code: 500,
      }),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests: () => requests };
}

void t.test('a failing read at start is "not acquired, try again", never a rejection', async (t) => {
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => void unhandled.push(reason);
  process.on('unhandledRejection', onUnhandled);
  t.teardown(() => void process.off('unhandledRejection', onUnhandled));

  await t.test('the API server answers 500', async (t) => {
    const server = await failingServer(t);
    const elector = new LeaderElector(
      kubeAt(t, server.url),
      options('failing', 'candidate'),
      silentLogger(),
      fakeClock(Date.now()).now,
    );
    t.equal(await elector.tryAcquireOrRenew(), false, 'one attempt: not acquired');
    const acquiring = elector.acquire(() => t.fail('never led'));
    const before = server.requests();
    await waitFor(
      'three more attempts',
      () => Promise.resolve(server.requests() >= before + 3 ? true : undefined),
      10_000,
      20,
    );
    t.equal(elector.isLeader, false);
    await elector.release();
    t.equal(await acquiring, false, 'acquire() resolves false once released');
  });

  await t.test('nothing listens where the API server should be', async (t) => {
    const port = await freePort();
    const unreachable = kubeAt(t, `http://127.0.0.1:${port}`);
    await t.rejects(
      unreachable.get(paths.leases(NAMESPACE, 'unreachable')),
      { code: 'ECONNREFUSED' },
      'the set-up: a read is refused',
    );
    const elector = new LeaderElector(
      unreachable,
      options('unreachable', 'candidate'),
      silentLogger(),
      fakeClock(Date.now()).now,
    );
    t.equal(await elector.tryAcquireOrRenew(), false, 'one attempt: not acquired');
    const acquiring = elector.acquire(() => t.fail('never led'));
    await new Promise((resolve) => setTimeout(resolve, 300));
    await elector.release();
    t.equal(await acquiring, false, 'acquire() resolves false once released');
  });

  t.same(unhandled.map(String), [], 'no unhandled rejection');
});
