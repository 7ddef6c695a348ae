// What the reconciler observes when its cache and the API server disagree, on
// the real API server. A staging claim missing from the claims cache while the
// final copy runs used to read as "deleted" and roll the migration back (seen
// once in the real-node tier under load): the reconciler now asks the API
// server before plan sees the miss.
import t from 'tap';
import { Registry } from 'prom-client';
import type { V1PersistentVolumeClaim } from '@kubernetes/client-node';
import { EventRecorder } from '../../populator/events.js';
import { createControllerMetrics } from '../../populator/metrics.js';
import { createCaches, Reconciler } from '../../populator/reconcile.js';
import { Kube, paths } from '../../src/kube.js';
import { silentLogger } from '../../src/logger.js';
import { FINALIZER, stagingClaimName } from '../../src/names.js';
import type { VolumeMigration } from '../../src/volume-migration.js';
import { clusterFor, freshNamespace } from '../helpers/cluster.js';
import { createMigration } from '../helpers/migration.js';
import { installPvshift } from '../helpers/pvshift.js';
import { SETTINGS } from '../populator/fixtures/world.js';

const cluster = await clusterFor(t);
const { kube } = cluster;
// The reconciler runs as pvshift does: the chart's ServiceAccount and RBAC.
const installation = await installPvshift(cluster, { admissionPolicy: false });
const asPvshift = Kube.fromDefault(installation.kubeconfigPath);

/** A reconciler whose caches were never started: every lookup misses, as a lagging cache would. */
function reconciler(): Reconciler {
  const logger = silentLogger();
  return new Reconciler(
    asPvshift,
    createCaches(asPvshift),
    SETTINGS,
    new EventRecorder(asPvshift, logger, 'test'),
    createControllerMetrics(new Registry(), () => []),
    logger,
  );
}

async function migrationIn(
  phase: 'Populating' | 'WaitingForCutover',
): Promise<{ migration: VolumeMigration; staging: V1PersistentVolumeClaim }> {
  const ns = await freshNamespace(kube, 'observe');
  const created = await createMigration(kube, ns, 'data', { claimName: 'data', targetStorageClassName: 'fast' });
  const staging = await kube.create<V1PersistentVolumeClaim>(paths.claims(ns), {
    metadata: { name: stagingClaimName(created.metadata.uid!) },
    spec: { accessModes: ['ReadWriteOnce'], storageClassName: 'fast', resources: { requests: { storage: '1Gi' } } },
  });
  await kube.patch(paths.migrations(ns, 'data'), { metadata: { finalizers: [FINALIZER] } }, 'merge');
  const migration = await kube.patch<VolumeMigration>(
    `${paths.migrations(ns, 'data')}/status`,
    { status: { phase } },
    'merge',
  );
  return { migration, staging };
}

void t.test('while the final copy runs, a staging claim the cache lacks is read from the API server', async (t) => {
  const { migration, staging } = await migrationIn('Populating');
  const world = await reconciler().observe(migration);
  // A miss here is what plan reads as StagingClaimLost (plan.test.ts).
  t.equal(world.stagingClaim?.metadata?.uid, staging.metadata?.uid, 'the live staging claim, not a miss');
});

void t.test('before cutover a cache miss stays a miss: no API call for a claim not made yet', async (t) => {
  const { migration } = await migrationIn('WaitingForCutover');
  const world = await reconciler().observe(migration);
  t.equal(world.stagingClaim, undefined, 'the cache decides outside the copy and bind phases');
});
