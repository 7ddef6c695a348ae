// Item 13 of the safety review: with two nodes and an application pinned to
// node-2, the final copy (and so a WaitForFirstConsumer target) went to node-1,
// the migration said Succeeded, and the application stayed Pending for good.
// The target must land where the held pod can run.
import t from 'tap';
import type { V1PersistentVolume } from '@kubernetes/client-node';
import { paths } from '../../src/kube.js';
import { appWithData, recreateApp } from '../helpers/app.js';
import { clusterFor, freshNamespace, waitForClaimBound, waitForPodReady } from '../helpers/cluster.js';
import { createMigration, snapshotTree, waitForPhase } from '../helpers/migration.js';
import { installPvshift } from '../helpers/pvshift.js';

const cluster = await clusterFor(t, { nodes: ['node-1', 'node-2'] });
const { kube } = cluster;
const installation = await installPvshift(cluster);
const pvshift = await installation.start();
t.teardown(() => pvshift.stop());

t.test('the final copy and the new volume go where the held pod can run (item 13)', async (t) => {
  const ns = await freshNamespace(kube);
  const pinned = { nodeSelector: { 'kubernetes.io/hostname': 'node-2' } };
  // Three claims, as in the report: each copy pod alone could land on node-2 by chance.
  const apps = ['a', 'b', 'c'];
  const before = new Map<string, ReturnType<typeof snapshotTree>>();
  for (const name of apps) before.set(name, (await appWithData(kube, ns, name, 1, pinned)).before);
  for (const name of apps)
    await createMigration(kube, ns, name, { claimName: name, targetStorageClassName: 'fast', preSync: false });
  for (const name of apps) await waitForPhase(kube, ns, name, ['WaitingForCutover']);
  for (const name of apps) await recreateApp(kube, ns, name, pinned);
  for (const name of apps) {
    await waitForPhase(kube, ns, name, ['Succeeded']);
    const pod = await waitForPodReady(kube, ns, `${name}-app`);
    t.equal(pod.spec?.nodeName, 'node-2', `${name}: the application runs on node-2`);
    const claim = await waitForClaimBound(kube, ns, name);
    const pv = await kube.get<V1PersistentVolume>(paths.volumes(claim.spec?.volumeName));
    t.same(
      pv?.spec?.nodeAffinity?.required?.nodeSelectorTerms?.[0]?.matchExpressions?.[0]?.values,
      ['node-2'],
      `${name}: its new volume was provisioned on node-2`,
    );
    t.same(
      Object.fromEntries(snapshotTree(pv!.spec!.hostPath!.path)),
      Object.fromEntries(before.get(name)!),
      `${name}: with every byte`,
    );
  }
});
