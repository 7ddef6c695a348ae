// The real-node tier, what operators meet after the first migration: a namespace
// enforcing Pod Security `baseline`, a target too small for the data on a real
// filesystem, the controller's pod force-deleted mid-copy, `helm upgrade` while a
// migration runs, and `helm uninstall` once everything is idle.
import { execFileSync } from 'node:child_process';
import t, { type Test } from 'tap';
import type {
  V1CustomResourceDefinition,
  V1Lease,
  V1MutatingWebhookConfiguration,
  V1Pod,
  V1PersistentVolumeClaim,
} from '@kubernetes/client-node';
import { paths, type Kube } from '../../src/kube.js';
import {
  COMPONENT_COPY,
  LABEL_COMPONENT,
  LABEL_POD_SECURITY_ENFORCE,
  MIGRATION_CRD_NAME,
  migrationNameForClaim,
  stagingClaimName,
} from '../../src/names.js';
import { LEADER_ELECTION_LEASE } from '../../src/permissions.js';
import type { VolumeMigration } from '../../src/volume-migration.js';
import { freshNamespace, waitFor } from '../helpers/cluster.js';
import { createMigration, waitForPhase } from '../helpers/migration.js';
import { snapshotTree } from '../runner/fixtures/trees.js';
import {
  diagnoseOnFailure,
  helm,
  installChart,
  kubectlOk,
  PVSHIFT_NAMESPACE,
  RELEASE,
  realClusterFor,
  statefulSet,
  volumeOfClaim,
  waitForRollout,
} from './helpers.js';
import type { RealNodeCluster } from '../../cluster/real-node-cluster.js';

t.setTimeout(30 * 60_000);
const cluster = await realClusterFor(t);
const { kube } = cluster;
/** Every xattr root sees for a privileged copy; without CAP_SYS_ADMIN only user.* and file capabilities are copied. */
const compare = (root: string, privileged: boolean) =>
  snapshotTree(root, { xattrMatch: privileged ? '-' : '^(user\\.|security\\.capability$)', skip: ['log'] });

const install = await installChart(cluster);
if (install.code !== 0) throw new Error(`helm install failed: ${install.stderr}`);

/** A one-replica StatefulSet `name` in `ns` on ext4, Ready with its tree and `megabytes` of bulk data. */
async function app(ns: string, name: string, megabytes: number, privileged = true): Promise<string> {
  await kube.create(
    `/apis/apps/v1/namespaces/${ns}/statefulsets`,
    statefulSet(cluster.images.app.ref, name, {
      replicas: 1,
      storageClass: 'standard',
      size: '1Gi',
      privileged,
      megabytes,
    }),
  );
  await waitForRollout(kube, ns, name);
  return `data-${name}-0`;
}

/** Annotates, waits for the pre-sync, restarts the app and waits for Succeeded; returns the migration. */
async function migrateByRestart(
  t: Test,
  c: RealNodeCluster,
  ns: string,
  name: string,
  beforeRestart?: (m: VolumeMigration) => Promise<void>,
): Promise<VolumeMigration> {
  const claim = `data-${name}-0`;
  const waiting = await waitForPhase(kube, ns, migrationNameForClaim(claim), ['WaitingForCutover'], 300_000);
  await beforeRestart?.(waiting);
  await kubectlOk(t, c, ['rollout', 'restart', `statefulset/${name}`, '-n', ns]);
  const done = await waitForPhase(kube, ns, migrationNameForClaim(claim), ['Succeeded'], 600_000);
  await waitForRollout(kube, ns, name);
  return done;
}

async function expectIdentical(t: Test, ns: string, migration: VolumeMigration): Promise<void> {
  const { path } = await volumeOfClaim(kube, ns, migration.spec.claimName);
  const old = await kube.get<{ spec?: { local?: { path: string } } }>(
    paths.volumes(migration.status!.sourceVolumeName),
  );
  const privileged = migration.status?.copyFidelity?.privileged ?? false;
  t.same(
    compare(path, privileged),
    compare(old!.spec!.local!.path, privileged),
    `${migration.spec.claimName}: the copy on xfs is identical to the ext4 original`,
  );
}

async function leaderPod(k: Kube): Promise<string> {
  return waitFor('the controller leader', async () => {
    const lease = await k.get<V1Lease>(
      `/apis/coordination.k8s.io/v1/namespaces/${PVSHIFT_NAMESPACE}/leases/${LEADER_ELECTION_LEASE}`,
    );
    // The identity is `<pod name>_<process id>`: a restarted container is a new holder.
    const holder = lease?.spec?.holderIdentity?.replace(/_[^_]*$/, '');
    return holder && (await k.get(paths.pods(PVSHIFT_NAMESPACE, holder))) ? holder : undefined;
  });
}

async function copyPodRunning(ns: string): Promise<V1Pod> {
  return waitFor(
    'a copy pod copying',
    async () => {
      const pods =
        (
          await kube.get<{ items: V1Pod[] }>(
            `${paths.pods(ns)}?labelSelector=${encodeURIComponent(`${LABEL_COMPONENT}=${COMPONENT_COPY}`)}`,
          )
        )?.items ?? [];
      return pods.find((p) => p.status?.phase === 'Running');
    },
    120_000,
  );
}

t.test(
  'in a namespace enforcing Pod Security baseline: admitted, identical but for trusted.* xattrs, and the status says so',
  async (t) => {
    const ns = await freshNamespace(kube, 'baseline');
    diagnoseOnFailure(t, cluster, () => ns);
    await kube.patch(
      paths.namespaces(ns),
      { metadata: { labels: { [LABEL_POD_SECURITY_ENFORCE]: 'baseline' } } },
      'merge',
    );
    const claim = await app(ns, 'web', 8, false);
    await kubectlOk(t, cluster, ['annotate', 'pvc', '-n', ns, claim, 'pvshift.io/target-storage-class=fast']);
    const done = await migrateByRestart(t, cluster, ns, 'web');
    t.same(
      done.status?.copyFidelity,
      { level: 'baseline', privileged: false, dropped: ['trusted xattrs', 'security xattrs'] },
      'the cost of the level is on the migration',
    );
    const validated = done.status?.conditions?.find((c) => c.type === 'Validated');
    t.match(validated?.message, /trusted/, 'and in its Validated condition');
    await expectIdentical(t, ns, done);
  },
);

t.test(
  'a target too small for the data on a real filesystem is refused before cutover, naming both sizes',
  async (t) => {
    const ns = await freshNamespace(kube, 'small');
    diagnoseOnFailure(t, cluster, () => ns);
    const claim = await app(ns, 'big', 400);
    const { pv } = await volumeOfClaim(kube, ns, claim);
    await createMigration(kube, ns, 'shrink', {
      claimName: claim,
      targetStorageClassName: 'fast',
      targetSize: '300Mi',
    });
    const failed = await waitForPhase(kube, ns, 'shrink', ['Failed'], 300_000);
    // The runner measures both on the real filesystems: the target's free space (an
    // XFS of 300 MiB keeps some for itself) and the source's allocated bytes.
    t.match(
      failed.status?.message,
      /target too small: the target has \d+ bytes \(2\d\d\.\d MiB\) free, the source needs \d+ bytes \(4\d\d\.\d MiB/,
      `both sizes named: ${failed.status?.message}`,
    );
    const after = await kube.get<V1PersistentVolumeClaim>(paths.claims(ns, claim));
    t.equal(after?.spec?.volumeName, pv.metadata?.name, 'the claim still on its volume');
    // Restored by the reconcile after the one that set Failed.
    const policy = await waitFor('the reclaim policy restored', async () => {
      const volume = await kube.get<{ spec?: { persistentVolumeReclaimPolicy?: string } }>(
        paths.volumes(pv.metadata!.name),
      );
      return volume?.spec?.persistentVolumeReclaimPolicy === 'Delete' ? 'Delete' : undefined;
    });
    t.equal(policy, 'Delete', 'its reclaim policy restored');
    t.notOk(await kube.get(paths.claims(ns, stagingClaimName(failed.metadata.uid!))), 'no staging claim left');
  },
);

t.test('the controller pod force-deleted mid-copy: the migration finishes, the data identical', async (t) => {
  // Slow copies (rsync --bwlimit) so there is a copy in flight to crash into.
  const upgrade = await installChart(cluster, 'upgrade', ['copy.bandwidthLimitKiBps=4096']);
  t.equal(upgrade.code, 0, upgrade.stderr.trim());
  const ns = await freshNamespace(kube, 'crash');
  diagnoseOnFailure(t, cluster, () => ns);
  const claim = await app(ns, 'db', 96);
  await kubectlOk(t, cluster, ['annotate', 'pvc', '-n', ns, claim, 'pvshift.io/target-storage-class=fast']);
  await copyPodRunning(ns);
  const leader = await leaderPod(kube);
  await kubectlOk(t, cluster, ['delete', 'pod', '-n', PVSHIFT_NAMESPACE, leader, '--force', '--grace-period=0']);
  t.comment(`force-deleted the leader ${leader} mid-copy`);
  const done = await migrateByRestart(t, cluster, ns, 'db');
  t.not(await leaderPod(kube), leader, 'another pod leads now');
  await expectIdentical(t, ns, done);
});

t.test('helm upgrade during a migration: the migration finishes', async (t) => {
  const ns = await freshNamespace(kube, 'upgrade');
  diagnoseOnFailure(t, cluster, () => ns);
  const claim = await app(ns, 'db', 96);
  await kubectlOk(t, cluster, ['annotate', 'pvc', '-n', ns, claim, 'pvshift.io/target-storage-class=fast']);
  await copyPodRunning(ns);
  const upgrade = await installChart(cluster, 'upgrade', [
    'copy.bandwidthLimitKiBps=4096',
    'podAnnotations.e2e=upgraded',
  ]);
  t.equal(upgrade.code, 0, upgrade.stderr.trim());
  t.match(upgrade.stdout, /REVISION: 3/, 'a new revision rolled out mid-copy');
  const done = await migrateByRestart(t, cluster, ns, 'db');
  await expectIdentical(t, ns, done);
  // The app ran privileged and labelled a file security.*; the namespace did not
  // opt in to privileged copies, and only CAP_SYS_ADMIN may write that label:
  // dropped, as the migration said, instead of failing the copy on EPERM.
  t.same(
    done.status?.copyFidelity?.dropped,
    ['trusted xattrs', 'security xattrs'],
    'what the copy could not keep is on the migration',
  );
  const { path } = await volumeOfClaim(kube, ns, claim);
  const label = (root: string) =>
    execFileSync('getfattr', ['--absolute-names', '-m', '^security\\.pvshift$', '-d', `${root}/a/h1`], {
      encoding: 'utf8',
    });
  const old = await kube.get<{ spec?: { local?: { path: string } } }>(paths.volumes(done.status!.sourceVolumeName));
  t.match(label(old!.spec!.local!.path), /security\.pvshift="e2e"/, 'the original keeps its security label');
  t.equal(label(path), '', 'the copy has none');
});

t.test('helm uninstall while idle leaves no webhook, no gated pod, no stuck claim, and keeps the CRD', async (t) => {
  const uninstall = await helm(cluster, ['uninstall', RELEASE, '--namespace', PVSHIFT_NAMESPACE, '--wait']);
  t.equal(uninstall.code, 0, uninstall.stderr.trim());
  const webhooks = await kube.get<{ items: V1MutatingWebhookConfiguration[] }>(
    '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations',
  );
  t.same(
    webhooks?.items.map((w) => w.metadata?.name),
    [],
    'no mutating webhook configuration left',
  );
  const pods = (await kube.get<{ items: V1Pod[] }>(paths.pods()))?.items ?? [];
  t.same(
    pods.filter((p) => p.spec?.schedulingGates?.length).map((p) => p.metadata?.name),
    [],
    'no gated pod',
  );
  const claims = (await kube.get<{ items: V1PersistentVolumeClaim[] }>(paths.claims()))?.items ?? [];
  t.same(
    claims.filter((c) => c.status?.phase !== 'Bound').map((c) => `${c.metadata?.namespace}/${c.metadata?.name}`),
    [],
    'every claim Bound',
  );
  const migrations = (await kube.get<{ items: VolumeMigration[] }>(paths.migrations()))?.items ?? [];
  t.ok(migrations.length >= 4, 'the records stay');
  t.same(
    migrations.filter((m) => m.metadata.finalizers?.length).map((m) => m.metadata.name),
    [],
    'none keeps a finalizer',
  );
  t.ok(
    await kube.get<V1CustomResourceDefinition>(
      `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${MIGRATION_CRD_NAME}`,
    ),
    'the CRD stays',
  );
  // The apps keep running on their new volumes without pvshift: a restart works.
  await kubectlOk(t, cluster, [
    'rollout',
    'restart',
    'statefulset/db',
    '-n',
    (migrations.find((m) => m.metadata.namespace.startsWith('upgrade')) ?? migrations[0]!).metadata.namespace,
  ]);
  // The README's way to remove the CRD and every record, and namespaces delete cleanly.
  await kubectlOk(t, cluster, ['delete', 'crd', MIGRATION_CRD_NAME, '--wait=true', '--timeout=120s']);
  const ns = migrations[0]!.metadata.namespace;
  await kubectlOk(t, cluster, ['delete', 'namespace', ns, '--wait=true', '--timeout=180s']);
  t.notOk(await kube.get(paths.namespaces(ns)), `namespace ${ns} deleted, nothing stuck`);
});
