// A Deployment with the default RollingUpdate strategy and one RWO claim: the
// rollout creates the new pod first (pvshift gates it) and removes the old one
// only once the new one is Ready. Without a handover that waits for ever; pvshift
// evicts the old pod, cuts over, and the rollout completes on the new class.
import t from 'tap';
import type { V1Deployment, V1PersistentVolumeClaim, V1Pod } from '@kubernetes/client-node';
import { paths } from '../../src/kube.js';
import { ANNOTATION_GATED_AT, ANNOTATION_TARGET_CLASS, ANNOTATION_WORKLOAD } from '../../src/names.js';
import type { Phase } from '../../src/volume-migration.js';
import { claimSpec } from '../helpers/app.js';
import { clusterFor, freshNamespace, volumeOf, waitFor } from '../helpers/cluster.js';
import {
  createMigration,
  eventReasonsWith,
  fillVolume,
  migrationOf,
  snapshotTree,
  waitForPhase,
} from '../helpers/migration.js';
import { installPvshift } from '../helpers/pvshift.js';

const cluster = await clusterFor(t);
const { kube } = cluster;
const installation = await installPvshift(cluster);
const pvshift = await installation.start();
t.teardown(() => pvshift.stop());

function deployment(claimName: string): V1Deployment {
  const labels = { app: 'web' };
  return {
    metadata: { name: 'web' },
    spec: {
      replicas: 1,
      selector: { matchLabels: labels },
      // The default, spelled out: the new pod first, the old one gone once it is Ready.
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: '25%', maxUnavailable: '25%' } },
      template: {
        metadata: { labels },
        spec: {
          terminationGracePeriodSeconds: 1,
          containers: [
            { name: 'app', image: 'registry.example/web:1', volumeMounts: [{ name: 'data', mountPath: '/data' }] },
          ],
          volumes: [{ name: 'data', persistentVolumeClaim: { claimName } }],
        },
      },
    },
  };
}

const podsOf = async (ns: string): Promise<V1Pod[]> =>
  (await kube.list<V1Pod>(paths.pods(ns), { labelSelector: 'app=web' })).items;
const isReady = (p: V1Pod): boolean =>
  !p.metadata?.deletionTimestamp && (p.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');

t.test('RollingUpdate Deployment, RWO claim: the old pod is handed over, the rollout completes', async (t) => {
  const ns = await freshNamespace(kube);
  await kube.create(paths.claims(ns), { metadata: { name: 'data' }, spec: claimSpec() });
  await kube.create(paths.deployments(ns), deployment('data'));
  const [oldPod] = await waitFor('the first pod Ready', async () => {
    const ready = (await podsOf(ns)).filter(isReady);
    return ready.length === 1 ? ready : undefined;
  });
  const source = await volumeOf(kube, ns, 'data');
  fillVolume(source.spec!.hostPath!.path, 8);
  const before = snapshotTree(source.spec!.hostPath!.path);

  await createMigration(kube, ns, 'data', { claimName: 'data', targetStorageClassName: 'fast', preSync: false });
  await waitForPhase(kube, ns, 'data', ['WaitingForCutover']);

  // Watch every pod of the Deployment: none may be scheduled onto the claim before its data is in place.
  const scheduledIn = new Map<string, Phase>();
  let watching = true;
  const watcher = (async () => {
    while (watching) {
      for (const p of await podsOf(ns)) {
        const name = p.metadata!.name!;
        if (!p.spec?.nodeName || scheduledIn.has(name) || name === oldPod!.metadata!.name) continue;
        scheduledIn.set(name, (await migrationOf(kube, ns, 'data'))?.status?.phase ?? 'Pending');
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  })();
  t.teardown(() => {
    watching = false;
  });

  // `kubectl rollout restart deployment/web`.
  const restartedAt = new Date().toISOString();
  await kube.patch(paths.deployments(ns, 'web'), {
    spec: { template: { metadata: { annotations: { 'kubectl.kubernetes.io/restartedAt': restartedAt } } } },
  });
  const done = await waitForPhase(kube, ns, 'data', ['Succeeded'], 180_000);
  t.same(done.status?.handoverFrom, [oldPod!.metadata!.name], 'the old pod is named as handed over');
  const reasons = await eventReasonsWith(kube, ns, 'data', 'VolumeMigration', ['RolloutHandover', 'Evicting']);
  t.ok(reasons.includes('RolloutHandover') && reasons.includes('Evicting'), 'events say so');

  const rolledOut = await waitFor('the rollout complete', async () => {
    const d = await kube.get<V1Deployment>(paths.deployments(ns, 'web'));
    const ready = (await podsOf(ns)).filter(isReady);
    const complete = d?.status?.updatedReplicas === 1 && d.status.availableReplicas === 1 && d.status.replicas === 1;
    return complete && ready.length === 1 ? ready[0] : undefined;
  });
  watching = false;
  await watcher;
  t.not(rolledOut.metadata?.name, oldPod!.metadata?.name, 'a new pod serves');
  t.same(
    [...scheduledIn.entries()].filter(([, phase]) => phase !== 'Binding' && phase !== 'Succeeded'),
    [],
    'no new pod was scheduled before the data was in place',
  );

  const claim = await kube.get<V1PersistentVolumeClaim>(paths.claims(ns, 'data'));
  t.equal(claim?.spec?.storageClassName, 'fast', 'the claim is on the new class');
  const target = await volumeOf(kube, ns, 'data');
  t.same(
    Object.fromEntries(snapshotTree(target.spec!.hostPath!.path)),
    Object.fromEntries(before),
    'every byte copied',
  );

  // Downtime counts from the old pod's stop, not from the gate: the old pod served until the handover.
  const gatedAt = Date.parse(rolledOut.metadata?.annotations?.[ANNOTATION_GATED_AT] ?? '');
  t.ok(Number.isFinite(gatedAt), 'the new pod was gated');
  t.ok(Date.parse(done.status?.gatedAt ?? '') > gatedAt, 'downtime starts after the gate, when the old pod had gone');
  t.ok((done.status?.downtimeSeconds ?? -1) >= 0, `downtime recorded: ${done.status?.downtimeSeconds} s`);
});

t.test('the annotation on a Deployment migrates the claims its pods mount; its rollout cuts them over', async (t) => {
  const ns = await freshNamespace(kube);
  await kube.create(paths.claims(ns), { metadata: { name: 'data' }, spec: claimSpec() });
  await kube.create(paths.deployments(ns), deployment('data'));
  await waitFor('the first pod Ready', async () =>
    (await podsOf(ns)).filter(isReady).length === 1 ? true : undefined,
  );
  const source = await volumeOf(kube, ns, 'data');
  fillVolume(source.spec!.hostPath!.path, 4);
  const before = snapshotTree(source.spec!.hostPath!.path);

  await kube.patch(paths.deployments(ns, 'web'), { metadata: { annotations: { [ANNOTATION_TARGET_CLASS]: 'fast' } } });
  const made = await waitForPhase(kube, ns, 'data', ['WaitingForCutover']);
  t.equal(made.metadata.annotations?.[ANNOTATION_WORKLOAD], 'Deployment/web', 'a migration for the Deployment');
  await kube.patch(paths.deployments(ns, 'web'), {
    spec: {
      template: { metadata: { annotations: { 'kubectl.kubernetes.io/restartedAt': new Date().toISOString() } } },
    },
  });
  await waitForPhase(kube, ns, 'data', ['Succeeded'], 180_000);
  await waitFor('the rollout complete', async () => {
    const d = await kube.get<V1Deployment>(paths.deployments(ns, 'web'));
    return d?.status?.updatedReplicas === 1 && d.status.availableReplicas === 1 && d.status.replicas === 1
      ? true
      : undefined;
  });
  t.equal((await kube.get<V1PersistentVolumeClaim>(paths.claims(ns, 'data')))?.spec?.storageClassName, 'fast');
  const target = await volumeOf(kube, ns, 'data');
  t.same(
    Object.fromEntries(snapshotTree(target.spec!.hostPath!.path)),
    Object.fromEntries(before),
    'every byte copied',
  );
  t.equal(
    (await kube.list(paths.migrations(ns))).items.length,
    1,
    'one migration, not a second one for the replacement',
  );
});
