// The main job, end to end on the real control plane: claims annotated with a
// target class come back on it, with every byte and attribute, when their pods
// are recreated; the old volume is kept, Released and Retain.
import t, { type Test } from 'tap';
import type { V1PersistentVolume, V1PersistentVolumeClaim, V1Pod } from '@kubernetes/client-node';
import { paths, type Kube } from '../../src/kube.js';
import { ANNOTATION_MIGRATION, LABEL_MANAGED_BY, LABEL_NAMESPACE_ACTIVE, SCHEDULING_GATE } from '../../src/names.js';
import type { VolumeMigration } from '../../src/volume-migration.js';
import { clusterFor, freshNamespace, statefulSet, volumeOf, waitFor, waitForPodReady } from '../helpers/cluster.js';
import { annotateClaim, eventReasonsWith, fillVolume, snapshotTree, waitForPhase } from '../helpers/migration.js';
import { installPvshift } from '../helpers/pvshift.js';

const cluster = await clusterFor(t, { nodes: ['node-1', 'node-2'] });
const { kube } = cluster;
const pvshift = await (await installPvshift(cluster)).start();
t.teardown(() => pvshift.stop());

/** Everything a user checks after a migration of `claimName` from `oldPv`. */
async function assertMigrated(
  t: Test,
  ns: string,
  claimName: string,
  migrationName: string,
  oldPv: V1PersistentVolume,
  before: ReturnType<typeof snapshotTree>,
  targetClass: string,
): Promise<void> {
  const claim = await kube.get<V1PersistentVolumeClaim>(paths.claims(ns, claimName));
  t.equal(claim?.status?.phase, 'Bound', `${claimName} is Bound`);
  t.equal(claim?.spec?.storageClassName, targetClass, `${claimName} is on ${targetClass}`);
  t.same(
    claim?.spec?.dataSourceRef,
    { apiGroup: 'pvshift.io', kind: 'VolumeMigration', name: migrationName },
    'populated from its VolumeMigration',
  );
  const newPv = await kube.get<V1PersistentVolume>(paths.volumes(claim?.spec?.volumeName));
  t.not(newPv?.metadata?.name, oldPv.metadata?.name, 'a new volume');
  t.equal(newPv?.spec?.storageClassName, targetClass);
  t.equal(newPv?.spec?.persistentVolumeReclaimPolicy, 'Delete', "the new volume has its class's reclaim policy back");
  const after = snapshotTree(newPv!.spec!.hostPath!.path);
  t.same(
    Object.fromEntries(after),
    Object.fromEntries(before),
    'the new volume holds the same files, bytes and metadata',
  );
  const old = await kube.get<V1PersistentVolume>(paths.volumes(oldPv.metadata?.name));
  t.equal(old?.status?.phase, 'Released', 'the old volume is Released');
  t.equal(old?.spec?.persistentVolumeReclaimPolicy, 'Retain', 'the old volume is kept (Retain)');
  t.equal(
    old?.metadata?.annotations?.[ANNOTATION_MIGRATION],
    `${ns}/${migrationName}`,
    'the old volume names its migration',
  );
  t.same(
    Object.fromEntries(snapshotTree(oldPv.spec!.hostPath!.path)),
    Object.fromEntries(before),
    'the old volume still holds the data',
  );
  const m = await kube.get<VolumeMigration>(paths.migrations(ns, migrationName));
  t.equal(m?.status?.conditions?.find((c) => c.type === 'Ready')?.status, 'True', 'Ready condition');
  t.ok((m?.status?.downtimeSeconds ?? -1) >= 0, `downtime recorded: ${m?.status?.downtimeSeconds} s`);
  t.equal(m?.status?.targetVolumeName, newPv?.metadata?.name);
  const expected = [
    'SourceRetained',
    'Validated',
    'CutoverStarted',
    'OriginalClaimDeleted',
    'Copied',
    'Binding',
    'GateLifted',
    'Succeeded',
  ];
  const reasons = await eventReasonsWith(kube, ns, migrationName, 'VolumeMigration', expected);
  for (const reason of expected) {
    t.ok(reasons.includes(reason), `event ${reason} on the migration`);
  }
  t.ok(
    (await eventReasonsWith(kube, ns, claimName, 'PersistentVolumeClaim', ['Succeeded'])).includes('Succeeded'),
    'and on the claim',
  );
}

async function assertNothingLeft(t: Test, ns: string): Promise<void> {
  await waitFor('pvshift objects cleaned up', async () => {
    const claims = (
      await kube.list<V1PersistentVolumeClaim>(paths.claims(ns), { labelSelector: `${LABEL_MANAGED_BY}=pvshift` })
    ).items;
    const pods = (await kube.list<V1Pod>(paths.pods(ns), { labelSelector: `${LABEL_MANAGED_BY}=pvshift` })).items;
    return claims.length === 0 && pods.length === 0 ? true : undefined;
  });
  t.pass('no staging or helper claim, no copy pod left');
  await waitFor('namespace label removed', async () => {
    const namespace = await kube.get<{ metadata: { labels?: Record<string, string> } }>(paths.namespaces(ns));
    return namespace?.metadata.labels?.[LABEL_NAMESPACE_ACTIVE] === undefined ? true : undefined;
  });
  t.pass('the namespace is out of the webhooks scope again');
}

async function podOn(kube: Kube, ns: string, name: string, notUid?: string): Promise<V1Pod> {
  return waitFor(
    `pod ${name} Ready${notUid ? ' (new)' : ''}`,
    async () => {
      const pod = await waitForPodReady(kube, ns, name);
      return !notUid || pod.metadata?.uid !== notUid ? pod : undefined;
    },
    120_000,
  );
}

t.test('a 3-replica StatefulSet moves to a WaitForFirstConsumer class, one pod at a time', async (t) => {
  const ns = await freshNamespace(kube);
  await kube.create(paths.statefulSets(ns), statefulSet('web', { replicas: 3 }));
  const old: V1PersistentVolume[] = [];
  const before: ReturnType<typeof snapshotTree>[] = [];
  for (const i of [0, 1, 2]) {
    await waitForPodReady(kube, ns, `web-${i}`);
    const pv = await volumeOf(kube, ns, `data-web-${i}`);
    fillVolume(pv.spec!.hostPath!.path, 2 + i);
    old.push(pv);
    before.push(snapshotTree(pv.spec!.hostPath!.path));
  }
  for (const i of [0, 1, 2]) await annotateClaim(kube, ns, `data-web-${i}`, 'fast');
  for (const i of [0, 1, 2]) await waitForPhase(kube, ns, `data-web-${i}`, ['WaitingForCutover']);
  t.equal(old[0]?.spec?.persistentVolumeReclaimPolicy, 'Delete', 'the source was Delete');
  const retained = await kube.get<V1PersistentVolume>(paths.volumes(old[0]?.metadata?.name));
  t.equal(retained?.spec?.persistentVolumeReclaimPolicy, 'Retain', 'made Retain before anything else happens');

  for (const i of [0, 1, 2]) {
    const pod = await kube.get<V1Pod>(paths.pods(ns, `web-${i}`));
    await kube.delete(paths.pods(ns, `web-${i}`));
    await waitForPhase(kube, ns, `data-web-${i}`, ['Succeeded']);
    const recreated = await podOn(kube, ns, `web-${i}`, pod?.metadata?.uid);
    t.equal(recreated.status?.phase, 'Running', `web-${i} runs again`);
    t.notOk(
      (recreated.spec?.schedulingGates ?? []).some((g) => g.name === SCHEDULING_GATE),
      'its gate is lifted',
    );
    const newPv = await volumeOf(kube, ns, `data-web-${i}`);
    const pinned = newPv.spec?.nodeAffinity?.required?.nodeSelectorTerms?.[0]?.matchExpressions?.[0]?.values;
    t.same(pinned, [recreated.spec?.nodeName], 'the WaitForFirstConsumer volume is on the node the pod runs on');
    await assertMigrated(t, ns, `data-web-${i}`, `data-web-${i}`, old[i]!, before[i]!, 'fast');
  }
  await assertNothingLeft(t, ns);
});

t.test('a Deployment (Recreate) and a bare pod migrate the same way', async (t) => {
  const ns = await freshNamespace(kube);
  for (const name of ['deploy-data', 'solo-data']) {
    await kube.create(paths.claims(ns), {
      metadata: { name },
      spec: {
        accessModes: ['ReadWriteOnce'],
        storageClassName: 'standard',
        resources: { requests: { storage: '1Gi' } },
      },
    });
  }
  const podSpec = (claimName: string) => ({
    terminationGracePeriodSeconds: 1,
    containers: [
      { name: 'app', image: 'registry.example/app:1', volumeMounts: [{ name: 'data', mountPath: '/data' }] },
    ],
    volumes: [{ name: 'data', persistentVolumeClaim: { claimName } }],
  });
  await kube.create(paths.deployments(ns), {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'app' },
    spec: {
      replicas: 1,
      strategy: { type: 'Recreate' },
      selector: { matchLabels: { app: 'app' } },
      template: { metadata: { labels: { app: 'app' } }, spec: podSpec('deploy-data') },
    },
  });
  await kube.create(paths.pods(ns), { metadata: { name: 'solo' }, spec: podSpec('solo-data') });
  const olds = new Map<string, V1PersistentVolume>();
  const befores = new Map<string, ReturnType<typeof snapshotTree>>();
  for (const name of ['deploy-data', 'solo-data']) {
    const pv = await volumeOf(kube, ns, name);
    fillVolume(pv.spec!.hostPath!.path, 1);
    olds.set(name, pv);
    befores.set(name, snapshotTree(pv.spec!.hostPath!.path));
    await annotateClaim(kube, ns, name, 'expandable', { 'pvshift.io/target-size': '2Gi' });
  }
  await waitForPhase(kube, ns, 'deploy-data', ['WaitingForCutover']);
  await waitForPhase(kube, ns, 'solo-data', ['WaitingForCutover']);

  const deploymentPods = (await kube.list<V1Pod>(paths.pods(ns), { labelSelector: 'app=app' })).items;
  for (const pod of deploymentPods) await kube.delete(paths.pods(ns, pod.metadata?.name));
  await waitForPhase(kube, ns, 'deploy-data', ['Succeeded']);
  const replaced = await waitFor('the Deployment pod Ready', async () => {
    const pods = (await kube.list<V1Pod>(paths.pods(ns), { labelSelector: 'app=app' })).items;
    return pods.find(
      (p) =>
        !p.metadata?.deletionTimestamp && p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
    );
  });
  t.ok(replaced, 'the Deployment runs again');
  await assertMigrated(
    t,
    ns,
    'deploy-data',
    'deploy-data',
    olds.get('deploy-data')!,
    befores.get('deploy-data')!,
    'expandable',
  );
  const resized = await kube.get<V1PersistentVolumeClaim>(paths.claims(ns, 'deploy-data'));
  t.equal(resized?.spec?.resources?.requests?.storage, '2Gi', 'the target size from the annotation');

  await kube.delete(paths.pods(ns, 'solo'));
  await waitFor('the bare pod gone', async () => ((await kube.get(paths.pods(ns, 'solo'))) ? undefined : true));
  await kube.create(paths.pods(ns), { metadata: { name: 'solo' }, spec: podSpec('solo-data') });
  await waitForPhase(kube, ns, 'solo-data', ['Succeeded']);
  await podOn(kube, ns, 'solo');
  await assertMigrated(
    t,
    ns,
    'solo-data',
    'solo-data',
    olds.get('solo-data')!,
    befores.get('solo-data')!,
    'expandable',
  );
  await assertNothingLeft(t, ns);
});
