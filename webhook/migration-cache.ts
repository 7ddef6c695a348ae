// Where the webhook finds migrations: in memory, never by calling the API
// server per admission request (a webhook that lists on every pod creation adds
// its latency to every pod in the namespace). An informer over all
// VolumeMigrations keeps an index by namespace and claim name.
import {
  CustomObjectsApi,
  makeInformer,
  type KubeConfig,
  type KubernetesListObject,
} from '@kubernetes/client-node';
import type { Logger } from '../src/logger.js';
import { errorMessage } from '../src/errors.js';
import { API_GROUP, API_VERSION, MIGRATION_PLURAL } from '../src/names.js';
import type { VolumeMigration } from '../src/volume-migration.js';

/** What the admission handlers need from the cache. */
export interface MigrationLookup {
  /** False until the first list has landed (and while the watch has been down too long). */
  isSynced(): boolean;
  /** Every VolumeMigration in `namespace` whose spec.claimName is `claimName`. */
  migrationsForClaim(namespace: string, claimName: string): readonly VolumeMigration[];
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

  constructor(migrations: readonly VolumeMigration[] = [], synced = false) {
    for (const m of migrations) this.upsert(m);
    this.synced = synced;
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
export function createMemoryLookup(migrations: readonly VolumeMigration[]): MigrationIndex {
  return new MigrationIndex(migrations, true);
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
 * Starts an informer on /apis/pvshift.io/v1alpha1/volumemigrations in all
 * namespaces. Returns at once; `isSynced()` turns true after the first list.
 * client-node's ListWatch does not restart after a list or watch error (it only
 * calls the error handlers), so this restarts it with backoff.
 */
export function startMigrationCache(kubeConfig: KubeConfig, logger: Logger, options: MigrationCacheOptions = {}): MigrationCache {
  const staleGraceMs = options.staleGraceMs ?? 30_000;
  const minBackoffMs = options.minBackoffMs ?? 1_000;
  const maxBackoffMs = options.maxBackoffMs ?? 30_000;
  const log = logger.child({ component: 'migration-cache' });
  const index = new MigrationIndex();
  const api = kubeConfig.makeApiClient(CustomObjectsApi);
  const path = `/apis/${API_GROUP}/${API_VERSION}/${MIGRATION_PLURAL}`;
  const informer = makeInformer<VolumeMigration>(
    kubeConfig,
    path,
    async () =>
      (await api.listCustomObjectForAllNamespaces({
        group: API_GROUP,
        version: API_VERSION,
        plural: MIGRATION_PLURAL,
      })) as KubernetesListObject<VolumeMigration>,
  );

  let listed = false;
  // When the list or watch last went from working to failing; cleared only by a
  // start that succeeds, so repeated failures do not restart the grace period.
  let brokenSince: number | undefined;
  let failedThisStart = false;
  let stopped = false;
  let backoffMs = minBackoffMs;
  let restartTimer: NodeJS.Timeout | undefined;
  const waiters = new Set<() => void>();

  informer.on('add', (m) => index.upsert(m));
  informer.on('update', (m) => index.upsert(m));
  informer.on('delete', (m) => index.remove(m));
  informer.on('error', (e: unknown) => {
    if (stopped) return;
    failedThisStart = true;
    brokenSince ??= Date.now();
    log.warn({ err: errorMessage(e), retryInMs: backoffMs }, 'VolumeMigration watch failed; restarting');
    clearTimeout(restartTimer);
    restartTimer = setTimeout(() => void start(), backoffMs);
    restartTimer.unref();
    backoffMs = Math.min(backoffMs * 2, maxBackoffMs);
  });

  async function start(): Promise<void> {
    if (stopped) return;
    const brokenBefore = brokenSince;
    failedThisStart = false;
    await informer.start();
    // start() resolves after the list and the opening of the watch; an error in
    // either has already run the error handler above.
    if (!failedThisStart && !stopped) {
      brokenSince = undefined;
      if (!listed) log.info({ migrations: index.size }, 'VolumeMigration cache synced');
      else if (brokenBefore !== undefined) log.info('VolumeMigration watch restored');
      listed = true;
      backoffMs = minBackoffMs;
      for (const wake of waiters) wake();
      waiters.clear();
    }
  }
  void start();

  return {
    isSynced: () => listed && (brokenSince === undefined || Date.now() - brokenSince < staleGraceMs),
    migrationsForClaim: (namespace, claimName) => index.migrationsForClaim(namespace, claimName),
    waitForSync: (signal) =>
      listed
        ? Promise.resolve()
        : new Promise<void>((resolve, reject) => {
            const wake = (): void => resolve();
            waiters.add(wake);
            signal?.addEventListener('abort', () => {
              waiters.delete(wake);
              reject(new Error('stopped waiting for the VolumeMigration cache to sync'));
            });
          }),
    stop: async () => {
      stopped = true;
      clearTimeout(restartTimer);
      await informer.stop();
    },
  };
}
