// pvshift under the chart's own RBAC and admission policy, on the real API
// server (installPvshift renders both from the chart and runs pvshift as the
// chart's ServiceAccount):
// - the annotation shortcut's replace path: a finished migration of a claim
//   annotated with a new target is deleted and a new one made (`delete` on
//   volumemigrations, which the ClusterRole once lacked: a 403 in every real
//   install, hidden while the tests ran pvshift as system:masters);
// - the ValidatingAdmissionPolicy: a tenant who may do anything in their
//   namespace cannot write a VolumeMigration's status, nobody but pvshift
//   (cluster admins included) can set, change or remove pvshift's PV
//   annotations, and pvshift's own writes go through.
import { readFile } from 'node:fs/promises';
import t from 'tap';
import type { V1PersistentVolume } from '@kubernetes/client-node';
import { ApiError, Kube, paths } from '../../src/kube.js';
import {
  ANNOTATION_MIGRATION,
  ANNOTATION_MIGRATION_UID,
  ANNOTATION_ORIGINAL_RECLAIM_POLICY,
  ANNOTATION_TARGET_CLASS,
} from '../../src/names.js';
import type { VolumeMigration } from '../../src/volume-migration.js';
import { clusterFor, freshNamespace, statefulSet, volumeOf, waitFor, waitForPodReady } from '../helpers/cluster.js';
import { annotateClaim, createMigration, migrationOf, waitForPhase } from '../helpers/migration.js';
import { installPvshift, PVSHIFT_NAMESPACE } from '../helpers/pvshift.js';

const cluster = await clusterFor(t);
const { kube } = cluster;
const installation = await installPvshift(cluster);
const pvshift = await installation.start();
t.teardown(() => pvshift.stop());
const PVSHIFT_USER = `system:serviceaccount:${PVSHIFT_NAMESPACE}:pvshift`;
const STATUS_DENIED = new RegExp(`only pvshift \\(${PVSHIFT_USER}\\) may write the status of a VolumeMigration`);

/** The API error a request fails with (the test fails if it succeeds). */
async function refusal(request: Promise<unknown>): Promise<ApiError> {
  try {
    await request;
  } catch (e: unknown) {
    if (e instanceof ApiError) return e;
    throw e;
  }
  throw new Error('the request was allowed');
}

/** The message of an API error's Status. */
function messageOf(e: ApiError): string {
  return (e.body as { message?: string } | undefined)?.message ?? e.message;
}

t.test('pvshift runs as its ServiceAccount, not as an admin', async (t) => {
  t.equal(installation.user, PVSHIFT_USER);
  const asPvshift = new Kube(
    (
      await cluster.kubeconfigFor(PVSHIFT_USER, [
        'system:serviceaccounts',
        `system:serviceaccounts:${PVSHIFT_NAMESPACE}`,
      ])
    ).kubeConfig,
  );
  t.teardown(() => asPvshift.close());
  const denied = await refusal(asPvshift.list(paths.secrets('default')));
  t.equal(denied.code, 403, 'its identity cannot read Secrets outside its namespace');
  t.ok(await asPvshift.list(paths.migrations()), 'and can list VolumeMigrations, as the chart grants');
});

t.test('annotation shortcut: a finished migration is replaced by one for the new target', async (t) => {
  const ns = await freshNamespace(kube);
  await kube.create(paths.statefulSets(ns), statefulSet('web'));
  await waitForPodReady(kube, ns, 'web-0');
  const source = await volumeOf(kube, ns, 'data-web-0');
  await annotateClaim(kube, ns, 'data-web-0', 'fast');
  const first = await waitForPhase(kube, ns, 'data-web-0', ['WaitingForCutover']);
  // Removing the annotation before cutover withdraws the migration: Aborted, finished.
  await kube.patch(paths.claims(ns, 'data-web-0'), { metadata: { annotations: { [ANNOTATION_TARGET_CLASS]: null } } });
  const aborted = await waitForPhase(kube, ns, 'data-web-0', ['Aborted']);
  t.equal(aborted.metadata.uid, first.metadata.uid, 'the first migration ended Aborted');

  await annotateClaim(kube, ns, 'data-web-0', 'expandable');
  const second = await waitFor(
    'a new VolumeMigration for the new target',
    async () => {
      const m = await migrationOf(kube, ns, 'data-web-0');
      return m && m.metadata.uid !== first.metadata.uid && m.spec.targetStorageClassName === 'expandable'
        ? m
        : undefined;
    },
    90_000,
  );
  t.not(second.metadata.uid, first.metadata.uid, 'the finished record was deleted and a new one made');
  t.equal(second.spec.claimName, 'data-web-0');
  const ready = await waitForPhase(kube, ns, 'data-web-0', ['WaitingForCutover']);
  t.equal(ready.metadata.uid, second.metadata.uid, 'and the new one runs (pvshift writes its status)');
  const retained = await kube.get<V1PersistentVolume>(paths.volumes(source.metadata?.name));
  t.equal(
    retained?.spec?.persistentVolumeReclaimPolicy,
    'Retain',
    'the source is retained again, by the new migration',
  );
});

t.test("a tenant who may do anything in their namespace cannot write a VolumeMigration's status", async (t) => {
  const ns = await freshNamespace(kube, 'tenant');
  await kube.create(`/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/roles`, {
    metadata: { name: 'namespace-admin' },
    rules: [{ apiGroups: ['*'], resources: ['*'], verbs: ['*'] }],
  });
  await kube.create(`/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/rolebindings`, {
    metadata: { name: 'tenant' },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'namespace-admin' },
    subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: 'tenant' }],
  });
  const tenant = new Kube((await cluster.kubeconfigFor('tenant')).kubeConfig);
  t.teardown(() => tenant.close());
  // RBAC lets the tenant create one (once the RoleBinding reached the authorizer's cache).
  const created = await waitFor('the tenant may create a VolumeMigration', async () => {
    try {
      return await createMigration(tenant, ns, 'mine', { claimName: 'no-such-claim', targetStorageClassName: 'fast' });
    } catch (e: unknown) {
      if (e instanceof ApiError && e.code === 403) return undefined;
      throw e;
    }
  });
  t.ok(created.metadata.uid, 'created by the tenant');
  const path = paths.migrations(ns, 'mine');
  await tenant.patch(path, { metadata: { labels: { team: 'a' } } });
  t.pass('the tenant may change the object itself');

  const merge = await refusal(
    tenant.patch(`${path}/status`, { status: { phase: 'Succeeded', message: 'forged' } }, 'merge'),
  );
  t.equal(merge.code, 403, 'a merge patch of status: Forbidden');
  t.match(messageOf(merge), STATUS_DENIED, "with the policy's message");
  // A PUT needs the current resourceVersion, and pvshift is writing the object
  // too: a conflict (409) is checked before admission, so read and try again.
  const put = await waitFor('a PUT of status answered by admission', async () => {
    const current = await tenant.get<VolumeMigration>(path);
    const e = await refusal(tenant.replace(`${path}/status`, { ...current!, status: { phase: 'Succeeded' } }));
    return e.code === 409 ? undefined : e;
  });
  t.equal(put.code, 403, 'a PUT of status: Forbidden');
  t.match(messageOf(put), STATUS_DENIED);
  const admin = await refusal(kube.patch(`${path}/status`, { status: { message: 'forged' } }, 'merge'));
  t.match(messageOf(admin), STATUS_DENIED, 'a cluster admin neither');

  // pvshift's own status writes go through: it tells the tenant the claim is missing.
  const answered = await waitForPhase(kube, ns, 'mine', ['Failed'], 60_000);
  t.match(
    answered.status?.message,
    /claim .*no-such-claim does not exist/,
    `pvshift's message: ${answered.status?.message}`,
  );
});

t.test("nobody but pvshift sets, changes or removes pvshift's PV annotations", async (t) => {
  const asPvshift = new Kube(
    (
      await cluster.kubeconfigFor(PVSHIFT_USER, [
        'system:serviceaccounts',
        `system:serviceaccounts:${PVSHIFT_NAMESPACE}`,
      ])
    ).kubeConfig,
  );
  t.teardown(() => asPvshift.close());
  const name = `pv-records-${process.pid}`;
  const pv = (annotations: Record<string, string> = {}, pvName = name) => ({
    metadata: { name: pvName, annotations },
    spec: {
      capacity: { storage: '1Gi' },
      accessModes: ['ReadWriteOnce'],
      persistentVolumeReclaimPolicy: 'Retain',
      storageClassName: 'manual',
      hostPath: { path: `/tmp/${pvName}` },
    },
  });
  t.teardown(async () => {
    await kube.delete(paths.volumes(name));
  });
  await kube.create(paths.volumes(), pv({ 'example.com/owner': 'storage-team' }));

  const keys = [ANNOTATION_MIGRATION_UID, ANNOTATION_ORIGINAL_RECLAIM_POLICY, ANNOTATION_MIGRATION];
  for (const key of keys) {
    const set = await refusal(kube.patch(paths.volumes(name), { metadata: { annotations: { [key]: 'forged' } } }));
    t.equal(set.code, 403, `an admin setting ${key}: Forbidden`);
    t.match(
      messageOf(set),
      new RegExp(`only pvshift \\(${PVSHIFT_USER}\\) may set, change or remove ${key} on a PersistentVolume`),
    );
  }
  const created = await refusal(
    kube.create(paths.volumes(), pv({ [ANNOTATION_MIGRATION_UID]: 'forged' }, `${name}-forged`)),
  );
  t.equal(created.code, 403, 'creating a PV that carries one: Forbidden');

  // pvshift's patch (it may patch PVs, and the policy lets it through).
  const stamped = {
    [ANNOTATION_MIGRATION_UID]: 'uid-1',
    [ANNOTATION_ORIGINAL_RECLAIM_POLICY]: 'Delete',
    [ANNOTATION_MIGRATION]: 'ns/m',
  };
  await asPvshift.patch(paths.volumes(name), { metadata: { annotations: stamped } });
  t.pass('pvshift stamps its annotations');

  const changed = await refusal(
    kube.patch(paths.volumes(name), { metadata: { annotations: { [ANNOTATION_MIGRATION_UID]: 'uid-2' } } }),
  );
  t.match(
    messageOf(changed),
    new RegExp(`may set, change or remove ${ANNOTATION_MIGRATION_UID} on`),
    'an admin changing one: Forbidden',
  );
  const removed = await refusal(
    kube.patch(paths.volumes(name), {
      metadata: { annotations: { [ANNOTATION_ORIGINAL_RECLAIM_POLICY]: null, [ANNOTATION_MIGRATION]: null } },
    }),
  );
  t.match(
    messageOf(removed),
    new RegExp(`may set, change or remove ${ANNOTATION_ORIGINAL_RECLAIM_POLICY}, ${ANNOTATION_MIGRATION} on`),
    'removing two: Forbidden, both named',
  );
  const current = await kube.get<V1PersistentVolume>(paths.volumes(name));
  const viaStatus = await refusal(
    kube.replace(`${paths.volumes(name)}/status`, { ...current!, metadata: { ...current!.metadata, annotations: {} } }),
  );
  t.equal(viaStatus.code, 403, 'nor through the status subresource');

  await kube.patch(paths.volumes(name), {
    metadata: { annotations: { 'example.com/owner': 'platform-team' }, labels: { tier: 'gold' } },
  });
  t.pass("everything else on the PV stays the admin's to change");
  const after = await kube.get<V1PersistentVolume>(paths.volumes(name));
  t.match(after?.metadata?.annotations, stamped, "pvshift's annotations as pvshift wrote them");
  await asPvshift.patch(paths.volumes(name), {
    metadata: { annotations: { [ANNOTATION_ORIGINAL_RECLAIM_POLICY]: null } },
  });
  t.pass('and pvshift removes its own');
});

t.test('pvshift was never refused by the API server', async (t) => {
  const log = await readFile(pvshift.logPath, 'utf8');
  const refused = log.split('\n').filter((line) => /forbidden|\b403\b/i.test(line));
  t.strictSame(refused, [], 'no 403 in its log');
});
