// The I/O half of src/kube.ts against the real API server of one shared local
// cluster, through a fault-injecting proxy for what the API server will not do
// on demand: a 429 with Retry-After is waited out and sent again (POST too) and
// the object exists; a 5xx arrives as the one error shape with its status; a
// watch cut mid-stream resumes from the last resourceVersion without losing an
// event; an expired watch (410) relists. Waits are recorded, not timed: the
// client's sleep is a test double that logs the delay it was asked for.
import t, { type Test } from 'tap';
import type { V1ConfigMap, V1Pod } from '@kubernetes/client-node';
import { installVolumeMigrationCrd } from '../../cluster/index.js';
import { classifyApiError, TerminalError, TransientError } from '../../src/errors.js';
import { ApiError, Informer, Kube, keyOf, paths, RETRY_AFTER_ATTEMPTS } from '../../src/kube.js';
import { silentLogger } from '../../src/logger.js';
import type { VolumeMigration } from '../../src/volume-migration.js';
import { startMigrationCache } from '../../webhook/migration-cache.js';
import { clusterFor, freshNamespace, waitFor, waitForPodReady } from '../helpers/cluster.js';
import { startFaultProxy, type SeenRequest } from '../helpers/fault-proxy.js';

const cluster = await clusterFor(t);
const admin = cluster.kube;
const proxy = await startFaultProxy(cluster.kubeConfig);
t.teardown(() => proxy.close());

const configMaps = (namespace: string, name?: string): string =>
  `/api/v1/namespaces/${namespace}/configmaps${name ? `/${name}` : ''}`;
// Labelled, so the informers leave out the kube-root-ca.crt every namespace gets.
const LABELS = { 'pvshift.io/test': 'kube-client' };
const SELECTOR = { labelSelector: 'pvshift.io/test=kube-client' };
const configMap = (name: string): V1ConfigMap => ({
  apiVersion: 'v1',
  kind: 'ConfigMap',
  metadata: { name, labels: LABELS },
  data: { made: 'through the proxy' },
});

/** What happened, in order: each request as the proxy answered it, each wait the client asked for. */
let steps: string[] = [];
proxy.onRequest((r) => {
  if (!r.watch) steps.push(`${r.method} ${r.status}`);
});

/** A client through the proxy, a clean proxy, and an empty step log. */
function throughProxy(t: Test): Kube {
  proxy.reset();
  steps = [];
  const kube = new Kube(proxy.kubeConfig(), {
    sleep: async (ms) => {
      steps.push(`sleep ${ms}`);
      await new Promise((resolve) => setTimeout(resolve, ms));
    },
  });
  t.teardown(() => kube.close());
  return kube;
}

/** The requests for `path` from index `from` of the proxy's log, as `list`, `watch` or `watch expired`. */
function requestsFor(path: string, from = 0): SeenRequest[] {
  return proxy.requests.slice(from).filter((r) => r.path === path);
}
/** Polls a synchronous check (the informer's cache, the proxy's log) until it holds. */
const until = <T>(what: string, check: () => T | undefined): Promise<T> =>
  waitFor(what, () => Promise.resolve(check()));
const shape = (r: SeenRequest): string =>
  r.watch ? (r.outcome === 'expired' ? 'watch expired' : 'watch') : r.method === 'GET' ? 'list' : r.method;

const ns = await freshNamespace(admin, 'kube');

void t.test('429 with Retry-After', (t) => {
  void t.test(
    'a create is waited out for as long as the server says and sent again, and the object exists',
    async (t) => {
      const kube = throughProxy(t);
      proxy.tooManyRequests({ method: 'POST', path: configMaps(ns), times: 2 }, 1);
      const created = await kube.create(configMaps(ns), configMap('after-429'));
      t.equal(created.metadata?.name, 'after-429');
      t.same(
        steps,
        ['POST 429', 'sleep 1000', 'POST 429', 'sleep 1000', 'POST 201'],
        "two refusals, each followed by the server's one second, then the create",
      );
      const stored = await admin.get<V1ConfigMap>(configMaps(ns, 'after-429'));
      t.same(stored?.data, { made: 'through the proxy' }, 'it is in the API server');
    },
  );

  void t.test('a read and a patch are retried alike', async (t) => {
    const kube = throughProxy(t);
    proxy.tooManyRequests({ method: 'GET', path: configMaps(ns, 'after-429') }, 0);
    proxy.tooManyRequests({ method: 'PATCH', path: configMaps(ns, 'after-429') }, 1);
    t.ok(await kube.get(configMaps(ns, 'after-429')));
    await kube.patch(configMaps(ns, 'after-429'), { data: { patched: 'yes' } });
    t.same(steps, ['GET 429', 'sleep 0', 'GET 200', 'PATCH 429', 'sleep 1000', 'PATCH 200']);
    t.equal((await admin.get<V1ConfigMap>(configMaps(ns, 'after-429')))?.data?.patched, 'yes');
  });

  void t.test(`it gives up after ${RETRY_AFTER_ATTEMPTS} attempts, with the 429`, async (t) => {
    const kube = throughProxy(t);
    proxy.tooManyRequests({ method: 'POST', path: configMaps(ns), times: RETRY_AFTER_ATTEMPTS }, 0);
    const error = await kube.create(configMaps(ns), configMap('never')).then(
      () => undefined,
      (e: unknown) => e,
    );
    t.ok(error instanceof ApiError && error.code === 429, 'an ApiError 429');
    t.same(
      steps,
      Array.from({ length: RETRY_AFTER_ATTEMPTS }, (_, i) => (i === 0 ? ['POST 429'] : ['sleep 0', 'POST 429'])).flat(),
    );
    t.notOk(await admin.get(configMaps(ns, 'never')), 'nothing was created');
  });

  void t.test(
    'a Retry-After beyond the cap is the caller to wait out: one attempt, the delay on the error',
    async (t) => {
      const kube = throughProxy(t);
      proxy.tooManyRequests({ method: 'POST', path: configMaps(ns) }, 30);
      const error = await kube.create(configMaps(ns), configMap('later')).then(
        () => undefined,
        (e: unknown) => e,
      );
      t.ok(
        error instanceof ApiError && error.code === 429 && error.retryAfterSeconds === 30,
        'an ApiError 429 carrying Retry-After 30',
      );
      t.equal(
        (classifyApiError(error, 'create') as TransientError).retryAfterSeconds,
        30,
        'kept through the classification',
      );
      t.same(steps, ['POST 429']);
    },
  );

  void t.test('a 429 without Retry-After (a PodDisruptionBudget refusing an eviction) is not retried', async (t) => {
    const kube = throughProxy(t);
    proxy.tooManyRequests({ method: 'POST', path: configMaps(ns) });
    const error = await kube.create(configMaps(ns), configMap('refused')).then(
      () => undefined,
      (e: unknown) => e,
    );
    t.ok(error instanceof ApiError && error.code === 429 && error.retryAfterSeconds === undefined);
    t.same(steps, ['POST 429']);
  });

  void t.test(
    'the real thing: a PodDisruptionBudget refusing an eviction is answered at once, for the caller to requeue',
    async (t) => {
      const space = await freshNamespace(admin, 'evict');
      await admin.create<V1Pod>(paths.pods(space), {
        metadata: { name: 'app', labels: { app: 'guarded' } },
        spec: { terminationGracePeriodSeconds: 1, containers: [{ name: 'app', image: 'registry.example/app:1' }] },
      });
      await waitForPodReady(admin, space, 'app');
      const budget = `/apis/policy/v1/namespaces/${space}/poddisruptionbudgets`;
      await admin.create(budget, {
        metadata: { name: 'guard' },
        spec: { minAvailable: 1, selector: { matchLabels: { app: 'guarded' } } },
      });
      await waitFor('the budget observed', async () => {
        const pdb = await admin.get<{ metadata: { generation?: number }; status?: { observedGeneration?: number } }>(
          `${budget}/guard`,
        );
        return pdb?.status?.observedGeneration === pdb?.metadata.generation ? true : undefined;
      });
      const kube = throughProxy(t);
      const error = await kube
        .create(`${paths.pods(space, 'app')}/eviction`, {
          apiVersion: 'policy/v1',
          kind: 'Eviction',
          metadata: { name: 'app', namespace: space },
        })
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      t.ok(error instanceof ApiError && error.code === 429, 'refused with 429');
      t.comment(`Retry-After: ${(error as ApiError).retryAfterSeconds}; ${(error as ApiError).message}`);
      t.same(steps, ['POST 429'], 'one attempt, no wait on the worker');
      t.ok(await admin.get(paths.pods(space, 'app')), 'the pod is still there');
    },
  );
  t.end();
});

void t.test('5xx', (t) => {
  void t.test('a create answered 503 is an ApiError with the code, sent once (it may have been done)', async (t) => {
    const kube = throughProxy(t);
    proxy.serverError({ method: 'POST', path: configMaps(ns) }, 503);
    const error = await kube.create(configMaps(ns), configMap('after-503')).then(
      () => undefined,
      (e: unknown) => e,
    );
    t.ok(error instanceof ApiError, 'the one error shape');
    t.equal((error as ApiError).code, 503);
    t.match((error as ApiError).message, /POST \/api\/v1\/namespaces\/.*\/configmaps: 503 Internal error occurred/);
    t.ok(classifyApiError(error, 'create') instanceof TransientError, 'transient');
    t.same(steps, ['POST 503']);
    t.notOk(await admin.get(configMaps(ns, 'after-503')));
  });

  void t.test('a read answered 500 is an ApiError, not "not found"', async (t) => {
    const kube = throughProxy(t);
    proxy.serverError({ method: 'GET', path: configMaps(ns, 'after-429') });
    const error = await kube.get(configMaps(ns, 'after-429')).then(
      () => undefined,
      (e: unknown) => e,
    );
    t.ok(error instanceof ApiError && error.code === 500);
  });

  void t.test('a watch refused 500 at its opening is an ApiError too', async (t) => {
    const kube = throughProxy(t);
    proxy.serverError({ path: configMaps(ns), watch: true });
    const error = await kube
      .watch(configMaps(ns), {}, () => {})
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    t.ok(error instanceof ApiError && error.code === 500 && error.method === 'WATCH');
  });
  t.end();
});

void t.test('a watch cut mid-stream resumes from the last resourceVersion and loses nothing', async (t) => {
  const kube = throughProxy(t);
  const space = await freshNamespace(admin, 'drop');
  const path = configMaps(space);
  const informer = new Informer<V1ConfigMap>(kube, path, SELECTOR, { minBackoffMs: 50 });
  const events: string[] = [];
  const errors: unknown[] = [];
  informer.on((type, object) => events.push(`${type} ${object.metadata?.name}`)).onWatchError((e) => errors.push(e));
  informer.start();
  t.teardown(() => informer.stop());
  await until('the informer synced', () => (informer.hasSynced ? true : undefined));
  await admin.create(path, configMap('before'));
  await until('the watch delivers "before"', () => informer.get(`${space}/before`));
  const lastSeen = informer.get(`${space}/before`)?.metadata?.resourceVersion ?? '';

  const from = proxy.requests.length;
  t.equal(proxy.dropWatches({ path }), 1, 'one watch cut');
  // Made while the watch is down or just resuming: none of it may be lost.
  await admin.create(path, configMap('after-1'));
  await admin.create(path, configMap('after-2'));
  await admin.delete(configMaps(space, 'before'));
  await until('everything after the cut seen', () => (events.length >= 4 ? true : undefined));

  t.same(events, ['add before', 'add after-1', 'add after-2', 'delete before'], 'each change once, in order');
  t.same(informer.list().map(keyOf).sort(), [`${space}/after-1`, `${space}/after-2`]);
  t.same(informer.listIn(space).map(keyOf).sort(), [`${space}/after-1`, `${space}/after-2`], 'its namespace alike');
  t.same(informer.listIn('elsewhere'), [], 'and no other');
  const after = requestsFor(path, from);
  t.same(after.map(shape), ['watch'], 'a watch again, no relist');
  t.ok(
    BigInt(after[0]?.query.get('resourceVersion') ?? '0') >= BigInt(lastSeen),
    'from the last resourceVersion seen (or a later bookmark)',
  );
  t.same(errors, [], 'a cut is not a failure');
});

void t.test('an expired watch (410 Gone) relists, and the list has what happened meanwhile', async (t) => {
  const kube = throughProxy(t);
  const space = await freshNamespace(admin, 'gone');
  const path = configMaps(space);
  const informer = new Informer<V1ConfigMap>(kube, path, SELECTOR, { minBackoffMs: 50 });
  // One log for the handler's events and the proxy's answers, to check their order.
  const timeline: string[] = [];
  informer.on((type, object) => timeline.push(`${type} ${object.metadata?.name}`));
  informer.start();
  t.teardown(() => informer.stop());
  await until('the informer synced', () => (informer.hasSynced ? true : undefined));
  await admin.create(path, configMap('kept'));
  await admin.create(path, configMap('doomed'));
  await until('both seen', () => (informer.list().length === 2 ? true : undefined));

  proxy.onRequest((r) => {
    if (r.path === path) timeline.push(`request ${shape(r)}`);
  });
  const from = proxy.requests.length;
  // The next watch waits at the proxy while the world changes, then is told its resourceVersion is too old.
  const held = proxy.hold({ path, watch: true });
  proxy.expireWatch({ path });
  t.equal(proxy.dropWatches({ path }), 1);
  await admin.create(path, configMap('born'));
  await admin.delete(configMaps(space, 'doomed'));
  held.release();
  await until('the relist and a new watch', () =>
    requestsFor(path, from).filter((r) => r.watch && r.outcome === 'passed').length > 0 ? true : undefined,
  );

  t.same(requestsFor(path, from).map(shape), ['watch expired', 'list', 'watch']);
  t.same(
    timeline.slice(2),
    ['request watch expired', 'request list', 'add born', 'delete doomed', 'request watch'],
    'the relist, not the new watch, brought the changes',
  );
  t.same(informer.list().map(keyOf).sort(), [`${space}/born`, `${space}/kept`]);
  t.same(
    informer.listIn(space).map(keyOf).sort(),
    [`${space}/born`, `${space}/kept`],
    'the relist kept the namespace index',
  );
  const list = requestsFor(path, from)[1];
  const rewatch = requestsFor(path, from)[2];
  t.ok(
    list &&
      rewatch &&
      rewatch.query.get('resourceVersion') !== requestsFor(path, from)[0]?.query.get('resourceVersion'),
    'the new watch starts from the list, not the expired resourceVersion',
  );
});

void t.test("the webhook's migration cache on the one client", async (t) => {
  await installVolumeMigrationCrd(cluster.kubeConfig);
  const kube = throughProxy(t);
  const space = await freshNamespace(admin, 'cache');
  const path = paths.migrations();
  const cache = startMigrationCache(kube, silentLogger(), { staleGraceMs: 0, minBackoffMs: 50, maxBackoffMs: 200 });
  t.teardown(() => cache.stop());
  await until('the cache synced', () => (cache.isSynced() ? true : undefined));
  t.ok(cache.isSynced());
  const migration = (name: string, claimName: string): VolumeMigration => ({
    apiVersion: 'pvshift.io/v1alpha1',
    kind: 'VolumeMigration',
    metadata: { name, namespace: space },
    spec: { claimName, targetStorageClassName: 'fast' },
  });
  await admin.create(paths.migrations(space), migration('move-a', 'data-a'));
  await until('move-a in the index', () => (cache.migrationsForClaim(space, 'data-a').length === 1 ? true : undefined));

  await until('the watch open', () => (proxy.openWatches({ path }).length > 0 ? true : undefined));
  proxy.dropWatches({ path });
  await admin.create(paths.migrations(space), migration('move-b', 'data-b'));
  await until('move-b in the index after the cut', () =>
    cache.migrationsForClaim(space, 'data-b').length === 1 ? true : undefined,
  );
  t.ok(cache.isSynced(), 'a cut watch that resumed is no failure, even with no grace');

  // The API server answers 500 to every watch: the cache is blind, and says so (no grace here).
  proxy.serverError({ path, watch: true, times: Infinity });
  proxy.dropWatches({ path });
  await until('the cache no longer synced', () => (cache.isSynced() ? undefined : true));
  proxy.reset();
  await admin.create(paths.migrations(space), migration('move-c', 'data-c'));
  await until('synced again once a watch opens', () => (cache.isSynced() ? true : undefined));
  await until('move-c in the index', () => (cache.migrationsForClaim(space, 'data-c').length === 1 ? true : undefined));
  t.same(
    cache.migrationsForClaim(space, 'data-a').map((m) => m.metadata.name),
    ['move-a'],
    'nothing lost on the way',
  );

  // The StatefulSet watch fails alone (the policies a new replica's claim is
  // created by): blind too; and synced again once that watch reopens, though
  // the migrations' watch never broke.
  const sets = paths.statefulSets();
  await until('the StatefulSet watch open', () => (proxy.openWatches({ path: sets }).length > 0 ? true : undefined));
  proxy.serverError({ path: sets, watch: true, times: Infinity });
  proxy.dropWatches({ path: sets });
  await until('the cache no longer synced (StatefulSets)', () => (cache.isSynced() ? undefined : true));
  t.ok(proxy.openWatches({ path }).length > 0, "the migrations' watch stayed open throughout");
  proxy.reset();
  await until('synced again once the StatefulSet watch reopens', () => (cache.isSynced() ? true : undefined));
  t.pass('each watch is judged by its own reopening');
});

void t.test('the real answers classifyApiError sorts', async (t) => {
  const name = 'stale';
  const made = await admin.create<V1ConfigMap>(configMaps(ns), configMap(name));
  await admin.patch(configMaps(ns, name), { data: { moved: 'on' } });
  // A guarded write from a stale view, as reconcile sends them: the API server
  // answers 422 with a generic message and the failed test op in details.causes.
  const guarded = [
    { op: 'test', path: '/metadata/resourceVersion', value: made.metadata?.resourceVersion },
    { op: 'add', path: '/data/late', value: 'x' },
  ];
  const stale = await admin.patch(configMaps(ns, name), guarded, 'json').catch((e: unknown) => e);
  t.ok(stale instanceof ApiError && stale.code === 422, 'a failed test op is a 422');
  t.ok(classifyApiError(stale, 'patch') instanceof TransientError, 'transient: the next pass reads again');
  t.match(
    classifyApiError(stale, 'patch').message,
    /changed since it was read/,
    'and the message says what happened (the server does not)',
  );
  // An object the API server refuses on its merits stays terminal.
  const invalid = await admin
    .patch(configMaps(ns, name), { metadata: { labels: { 'not a label': 'x' } } })
    .catch((e: unknown) => e);
  t.ok(invalid instanceof ApiError && invalid.code === 422, 'an invalid object is a 422 too');
  t.ok(
    classifyApiError(invalid, 'patch') instanceof TerminalError,
    'but terminal: the same request gets the same answer',
  );
});
