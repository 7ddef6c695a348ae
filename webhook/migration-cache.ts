// Where the webhook finds migrations: in memory, never by calling the API
// server per admission request (a webhook that lists on every pod creation adds
// its latency to every pod in the namespace). An informer over all
// VolumeMigrations keeps an index by namespace and claim name.
import type { Logger } from '../src/logger.js';
import { errorMessage } from '../src/errors.js';
import { Informer, Kube, KubeConfig, paths } from '../src/kube.js';
import type { V1StatefulSet } from '@kubernetes/client-node';
import { ANNOTATION_TARGET_CLASS } from '../src/names.js';
import type { VolumeMigration } from '../src/volume-migration.js';

/** What the admission handlers need from the cache. */
export interface MigrationLookup {
  /** False until the first list has landed (and while the watch has been down too long). */
  isSynced(): boolean;
  /** Every VolumeMigration in `namespace` whose spec.claimName is `claimName`. */
  migrationsForClaim(namespace: string, claimName: string): readonly VolumeMigration[];
  /** The StatefulSets of `namespace` with a pvshift policy annotation (src/workload-policy.ts). */
  policiesIn(namespace: string): readonly V1StatefulSet[];
}

const EMPTY: readonly VolumeMigration[] = Object.freeze([]);

/** An index of migrations by namespace and claim name; the informer feeds it. */
export class MigrationIndex implements MigrationLookup {
  // `${namespace}/${claimName}` -> migration name -> migration. Claim names and
  // namespaces are DNS names, so `/` cannot occur inside either part.
  private readonly byClaim = new Map<string, Map<string, VolumeMigration>>();
  // `${namespace}/${name}` -> the claim key it was indexed under, so an update
  // that changed spec.claimName (the CRD forbids it; a replaced CRD might not)
  // leaves nothing behind.
  private readonly claimKeyOf = new Map<string, string>();
  private synced = false;
  // `${namespace}/${name}` -> an annotated StatefulSet; only those with the policy annotation are kept.
  private readonly policies = new Map<string, V1StatefulSet>();

  constructor(
    migrations: readonly VolumeMigration[] = [],
    synced = false,
    statefulSets: readonly V1StatefulSet[] = [],
  ) {
    for (const m of migrations) this.upsert(m);
    for (const s of statefulSets) this.upsertStatefulSet(s);
    this.synced = synced;
  }

  policiesIn(namespace: string): readonly V1StatefulSet[] {
    return [...this.policies.values()].filter((s) => s.metadata?.namespace === namespace);
  }

  /** Keeps a StatefulSet while it carries the policy annotation; drops it when it no longer does. */
  upsertStatefulSet(set: V1StatefulSet): void {
    const key = `${set.metadata?.namespace}/${set.metadata?.name}`;
    if (set.metadata?.annotations?.[ANNOTATION_TARGET_CLASS]) this.policies.set(key, set);
    else this.policies.delete(key);
  }

  removeStatefulSet(set: V1StatefulSet): void {
    this.policies.delete(`${set.metadata?.namespace}/${set.metadata?.name}`);
  }

  isSynced(): boolean {
    return this.synced;
  }

  markSynced(synced: boolean): void {
    this.synced = synced;
  }

  migrationsForClaim(namespace: string, claimName: string): readonly VolumeMigration[] {
    const found = this.byClaim.get(`${namespace}/${claimName}`);
    return found ? [...found.values()] : EMPTY;
  }

  upsert(migration: VolumeMigration): void {
    const namespace = migration.metadata.namespace;
    const name = migration.metadata.name;
    if (!namespace || !name || !migration.spec?.claimName) return;
    this.remove(migration);
    const claimKey = `${namespace}/${migration.spec.claimName}`;
    let bucket = this.byClaim.get(claimKey);
    if (!bucket) this.byClaim.set(claimKey, (bucket = new Map<string, VolumeMigration>()));
    bucket.set(name, migration);
    this.claimKeyOf.set(`${namespace}/${name}`, claimKey);
  }

  remove(migration: Pick<VolumeMigration, 'metadata'>): void {
    const objectKey = `${migration.metadata.namespace}/${migration.metadata.name}`;
    const claimKey = this.claimKeyOf.get(objectKey);
    if (claimKey === undefined) return;
    this.claimKeyOf.delete(objectKey);
    const bucket = this.byClaim.get(claimKey);
    bucket?.delete(migration.metadata.name);
    if (bucket?.size === 0) this.byClaim.delete(claimKey);
  }

  get size(): number {
    return this.claimKeyOf.size;
  }
}

/** A lookup over a fixed set of migrations, synced from the start: for tests and the benchmark. */
export function createMemoryLookup(
  migrations: readonly VolumeMigration[],
  statefulSets: readonly V1StatefulSet[] = [],
): MigrationIndex {
  return new MigrationIndex(migrations, true, statefulSets);
}

export interface MigrationCache extends MigrationLookup {
  /** Resolves once the first list has landed. */
  waitForSync(signal?: AbortSignal): Promise<void>;
  stop(): Promise<void>;
}

export interface MigrationCacheOptions {
  /**
   * How long the cache still counts as synced after its watch broke. A short
   * reconnect should not take every replica out of the Service (that would fail
   * every claim creation in active namespaces), but a cache that has been blind
   * for longer must not answer: a migration may have entered cutover meanwhile.
   */
  staleGraceMs?: number;
  /** First and largest delay between restarts of a failed list or watch. */
  minBackoffMs?: number;
  maxBackoffMs?: number;
}

/**
 * Starts informers on VolumeMigrations and StatefulSets (their policies) in all
 * namespaces. Returns at once; `isSynced()` turns true after the first list.
 * The informer (src/kube.ts) restarts a failed list or watch itself, with
 * backoff; this tracks how long it has been blind. Given a KubeConfig rather
 * than the process's Kube, it makes a client of its own and closes it on stop.
 */
export function startMigrationCache(
  client: Kube | KubeConfig,
  logger: Logger,
  options: MigrationCacheOptions = {},
): MigrationCache {
  const staleGraceMs = options.staleGraceMs ?? 30_000;
  const log = logger.child({ component: 'migration-cache' });
  const index = new MigrationIndex();
  const owned = client instanceof KubeConfig;
  const kube = client instanceof KubeConfig ? new Kube(client) : client;
  const backoff = { minBackoffMs: options.minBackoffMs ?? 1_000, maxBackoffMs: options.maxBackoffMs ?? 30_000 };
  let stopped = false;
  /**
   * Follows one informer's watch: when it went from working to failing, cleared
   * only by a watch the server accepted, so repeated failures (a list that works
   * and a watch that does not) do not restart the grace period. Each informer
   * has its own: one watch reopening says nothing of the other.
   */
  const watched = <T extends { metadata?: { namespace?: string; name?: string } }>(
    path: string,
    kind: string,
  ): { informer: Informer<T>; brokenSince: () => number | undefined } => {
    const informer = new Informer<T>(kube, path, {}, backoff);
    let brokenSince: number | undefined;
    informer.onWatchError((e: unknown) => {
      if (stopped) return;
      brokenSince ??= Date.now();
      log.warn({ err: errorMessage(e) }, `${kind} watch failed; restarting`);
    });
    informer.onWatchOpen(() => {
      if (brokenSince === undefined) return;
      brokenSince = undefined;
      log.info(`${kind} watch restored`);
    });
    return { informer, brokenSince: () => brokenSince };
  };

  const migrations = watched<VolumeMigration>(paths.migrations(), 'VolumeMigration');
  const informer = migrations.informer;
  informer.on((type, m) => {
    if (type === 'delete') index.remove(m);
    else index.upsert(m);
  });
  // StatefulSets: only their policy annotation matters (a few hundred bytes kept per annotated set).
  const statefulSets = watched<V1StatefulSet>(paths.statefulSets(), 'StatefulSet');
  const sets = statefulSets.informer;
  sets.on((type, s) => {
    if (type === 'delete') index.removeStatefulSet(s);
    else index.upsertStatefulSet(s);
  });
  let listed = false;
  void Promise.all([informer.waitForSync(), sets.waitForSync()]).then(() => {
    if (stopped) return;
    listed = true;
    log.info({ migrations: index.size }, 'VolumeMigration cache synced');
  });
  const fresh = (brokenSince: number | undefined) =>
    brokenSince === undefined || Date.now() - brokenSince < staleGraceMs;
  informer.start();
  sets.start();

  return {
    isSynced: () => listed && fresh(migrations.brokenSince()) && fresh(statefulSets.brokenSince()),
    migrationsForClaim: (namespace, claimName) => index.migrationsForClaim(namespace, claimName),
    policiesIn: (namespace) => index.policiesIn(namespace),
    waitForSync: (signal) =>
      listed
        ? Promise.resolve()
        : new Promise<void>((resolve, reject) => {
            void Promise.all([informer.waitForSync(), sets.waitForSync()]).then(() => resolve());
            signal?.addEventListener('abort', () =>
              reject(new Error('stopped waiting for the VolumeMigration cache to sync')),
            );
          }),
    stop: () => {
      stopped = true;
      informer.stop();
      sets.stop();
      if (owned) kube.close();
      return Promise.resolve();
    },
  };
}
