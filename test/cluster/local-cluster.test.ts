// The local cluster itself: real control plane, fake kubelet, hostPath
// provisioner. Everything pvshift's cluster tests stand on is asserted here.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import type {
  CoreV1Event as V1Event,
  V1PersistentVolume,
  V1PersistentVolumeClaim,
  V1Pod,
} from '@kubernetes/client-node';
import { freePort } from '../../cluster/index.js';
import { FakeKubelet } from '../../cluster/fake-kubelet.js';
import { createClusterPki } from '../../cluster/pki.js';
import { Kube, paths } from '../../src/kube.js';
import { COMPONENT_COPY, LABEL_COMPONENT, LABEL_MANAGED_BY, MANAGED_BY_VALUE } from '../../src/names.js';
import {
  clusterFor,
  freshNamespace,
  statefulSet,
  volumeOf,
  waitFor,
  waitForClaimBound,
  waitForGone,
  waitForPodPhase,
  waitForPodReady,
} from '../helpers/cluster.js';
import { startFaultProxy } from '../helpers/fault-proxy.js';

const execFileAsync = promisify(execFile);
const cluster = await clusterFor(t, { nodes: ['node-1', 'node-2'] });
const { kube } = cluster;

function claim(
  name: string,
  storageClassName: string,
  extra: Partial<V1PersistentVolumeClaim['spec']> = {},
): V1PersistentVolumeClaim {
  return {
    metadata: { name },
    spec: { accessModes: ['ReadWriteOnce'], storageClassName, resources: { requests: { storage: '1Gi' } }, ...extra },
  };
}

function copyPod(name: string, claimName: string, script: string): V1Pod {
  return {
    metadata: { name, labels: { [LABEL_MANAGED_BY]: MANAGED_BY_VALUE, [LABEL_COMPONENT]: COMPONENT_COPY } },
    spec: {
      restartPolicy: 'Never',
      containers: [
        {
          name: 'copy',
          image: 'registry.example/shell:1',
          command: ['/bin/sh', '-c', script],
          volumeMounts: [{ name: 'data', mountPath: '/mnt/pvshift-test/data' }],
        },
      ],
      volumes: [{ name: 'data', persistentVolumeClaim: { claimName } }],
    },
  };
}

t.test('a StatefulSet gets Running pods with Bound claims whose directories exist', async (t) => {
  const ns = await freshNamespace(kube);
  await kube.create(paths.statefulSets(ns), statefulSet('web', { replicas: 2 }));
  for (const ordinal of [0, 1]) {
    const pod = await waitForPodReady(kube, ns, `web-${ordinal}`);
    t.equal(pod.status?.phase, 'Running', `web-${ordinal} is Running`);
    const pv = await volumeOf(kube, ns, `data-web-${ordinal}`);
    t.equal(pv.spec?.storageClassName, 'standard');
    t.ok(pv.spec?.hostPath?.path && existsSync(pv.spec.hostPath.path), `the directory of ${pv.metadata?.name} exists`);
    t.ok(pv.spec?.hostPath?.path?.startsWith(cluster.storageRoot), 'the volume lives under the storage root');
  }
});

t.test('a deleted pod comes back on the same claim; scaling to 0 and back keeps the claims', async (t) => {
  const ns = await freshNamespace(kube);
  await kube.create(paths.statefulSets(ns), statefulSet('db'));
  const first = await waitForPodReady(kube, ns, 'db-0');
  const pvBefore = await volumeOf(kube, ns, 'data-db-0');

  await kube.delete(paths.pods(ns, 'db-0'));
  const second = await waitFor('db-0 recreated and Ready', async () => {
    const pod = await waitForPodReady(kube, ns, 'db-0');
    return pod.metadata?.uid !== first.metadata?.uid ? pod : undefined;
  });
  t.not(second.metadata?.uid, first.metadata?.uid, 'a new pod');
  t.equal((await volumeOf(kube, ns, 'data-db-0')).metadata?.name, pvBefore.metadata?.name, 'on the same volume');

  await kube.patch(paths.statefulSets(ns, 'db'), { spec: { replicas: 0 } });
  await waitForGone(kube, paths.pods(ns, 'db-0'));
  t.ok(await kube.get(paths.claims(ns, 'data-db-0')), 'the claim stays while scaled to 0');
  await kube.patch(paths.statefulSets(ns, 'db'), { spec: { replicas: 1 } });
  await waitForPodReady(kube, ns, 'db-0');
  t.equal(
    (await volumeOf(kube, ns, 'data-db-0')).metadata?.name,
    pvBefore.metadata?.name,
    'still the same volume after scaling back',
  );
});

t.test('deleting a claim: Delete removes the directory, Retain keeps it and the PV goes Released', async (t) => {
  const ns = await freshNamespace(kube);
  await kube.create(paths.claims(ns), claim('gone', 'standard'));
  await kube.create(paths.claims(ns), claim('kept', 'retained'));
  const gone = await volumeOf(kube, ns, 'gone');
  const kept = await volumeOf(kube, ns, 'kept');
  t.equal(kept.spec?.persistentVolumeReclaimPolicy, 'Retain');

  await kube.delete(paths.claims(ns, 'gone'));
  await kube.delete(paths.claims(ns, 'kept'));
  await waitForGone(kube, paths.volumes(gone.metadata?.name));
  t.notOk(existsSync(gone.spec!.hostPath!.path), 'the Delete volume directory is removed');
  const released = await waitFor('the Retain volume Released', async () => {
    const pv = await kube.get<V1PersistentVolume>(paths.volumes(kept.metadata?.name));
    return pv?.status?.phase === 'Released' ? pv : undefined;
  });
  t.equal(released.status?.phase, 'Released');
  t.ok(existsSync(kept.spec!.hostPath!.path), 'the Retain volume directory is kept');
});

t.test('a WaitForFirstConsumer claim binds only once its pod is scheduled, on that node', async (t) => {
  const ns = await freshNamespace(kube);
  await kube.create(paths.claims(ns), claim('wffc', 'fast'));
  const waiting = await waitFor('the WaitForFirstConsumer event', async () => {
    const events = await kube.list<V1Event>(paths.events(ns), { fieldSelector: 'involvedObject.name=wffc' });
    return events.items.find((e) => e.reason === 'WaitForFirstConsumer');
  });
  t.ok(waiting, 'the PV controller says it waits for a consumer');
  t.equal(
    (await kube.get<V1PersistentVolumeClaim>(paths.claims(ns, 'wffc')))?.status?.phase,
    'Pending',
    'still Pending with no pod',
  );
  t.equal(
    (await kube.list(paths.volumes())).items.filter((pv) => (pv as V1PersistentVolume).spec?.claimRef?.namespace === ns)
      .length,
    0,
    'no volume made for it',
  );

  await kube.create(paths.pods(ns), {
    metadata: { name: 'consumer' },
    spec: {
      nodeSelector: { 'kubernetes.io/hostname': 'node-2' },
      containers: [
        { name: 'app', image: 'registry.example/app:1', volumeMounts: [{ name: 'data', mountPath: '/data' }] },
      ],
      volumes: [{ name: 'data', persistentVolumeClaim: { claimName: 'wffc' } }],
    },
  });
  const pod = await waitForPodReady(kube, ns, 'consumer');
  t.equal(pod.spec?.nodeName, 'node-2');
  const pv = await volumeOf(kube, ns, 'wffc');
  const terms = pv.spec?.nodeAffinity?.required?.nodeSelectorTerms ?? [];
  t.same(terms[0]?.matchExpressions?.[0]?.values, ['node-2'], 'the volume is pinned to the node the scheduler chose');
});

t.test('a copy pod really runs: its files land in the volume, its failure is reported like a kubelet', async (t) => {
  const ns = await freshNamespace(kube);
  await kube.create(paths.claims(ns), claim('work', 'standard'));
  const pv = await volumeOf(kube, ns, 'work');

  await kube.create(
    paths.pods(ns),
    copyPod(
      'writer',
      'work',
      'echo "hello from $(hostname)" > /mnt/pvshift-test/data/hello.txt && echo wrote it && printf done > /dev/termination-log',
    ),
  );
  const done = await waitForPodPhase(kube, ns, 'writer', ['Succeeded', 'Failed']);
  t.equal(done.status?.phase, 'Succeeded');
  const terminated = done.status?.containerStatuses?.[0]?.state?.terminated;
  t.equal(terminated?.exitCode, 0);
  t.equal(terminated?.message, 'done', 'the termination message is reported');
  t.equal(
    await readFile(join(pv.spec!.hostPath!.path, 'hello.txt'), 'utf8'),
    'hello from writer\n',
    'the file is in the PV directory',
  );
  const logs = await kube.raw('GET', `${paths.pods(ns, 'writer')}/log?container=copy`);
  t.equal(logs.status, 200, 'the API server serves the pod log');
  t.equal(logs.body, 'wrote it\n', 'through the kubelet log path');

  await kube.create(paths.pods(ns), copyPod('failing', 'work', 'echo "no space left" >&2; exit 7'));
  const failed = await waitForPodPhase(kube, ns, 'failing', ['Succeeded', 'Failed']);
  t.equal(failed.status?.phase, 'Failed');
  t.equal(failed.status?.containerStatuses?.[0]?.state?.terminated?.exitCode, 7, 'the exit code is reported');

  const readOnly = copyPod('readonly', 'work', 'touch /mnt/pvshift-test/data/nope');
  readOnly.spec!.containers[0]!.volumeMounts![0]!.readOnly = true;
  await kube.create(paths.pods(ns), readOnly);
  const refused = await waitForPodPhase(kube, ns, 'readonly', ['Succeeded', 'Failed']);
  t.equal(refused.status?.phase, 'Failed', 'a readOnly mount cannot be written');
  t.notOk(existsSync(join(pv.spec!.hostPath!.path, 'nope')));
});

t.test('a terminating pod is deleted by the kubelet, a running copy process is stopped', async (t) => {
  const ns = await freshNamespace(kube);
  await kube.create(paths.claims(ns), claim('work', 'standard'));
  await volumeOf(kube, ns, 'work');
  await kube.create(paths.pods(ns), copyPod('sleeper', 'work', 'sleep 300'));
  await waitForPodPhase(kube, ns, 'sleeper', ['Running']);
  await waitFor('the copy process started', () => Promise.resolve(cluster.kubelet.runningCount > 0 ? true : undefined));
  await kube.delete(paths.pods(ns, 'sleeper'));
  await waitForGone(kube, paths.pods(ns, 'sleeper'), 20_000);
  await waitFor(
    'the copy process stopped',
    () => Promise.resolve(cluster.kubelet.runningCount === 0 ? true : undefined),
    10_000,
  );
  t.pass('gone');
});

t.test('the real kubectl works against the written kubeconfig', async (t) => {
  const { stdout } = await execFileAsync(cluster.binaries.kubectl, [
    '--kubeconfig',
    cluster.kubeconfigPath,
    'get',
    'pods,pvc,pv',
    '-A',
  ]);
  t.match(stdout, /persistentvolumeclaim\/data-web-0/, 'lists the claims');
  t.match(stdout, /pod\/web-0 +1\/1 +Running/, 'lists the pods as Running');
  const nodes = await execFileAsync(cluster.binaries.kubectl, ['--kubeconfig', cluster.kubeconfigPath, 'get', 'nodes']);
  t.match(nodes.stdout, /node-1 +Ready/);
});

t.test('a claim whose dataSourceRef names an unknown kind stays Pending', async (t) => {
  const ns = await freshNamespace(kube);
  await kube.create(
    paths.claims(ns),
    claim('populated', 'standard', { dataSourceRef: { apiGroup: 'example.com', kind: 'Widget', name: 'w' } }),
  );
  // The PV controller hands it over to the provisioner at once...
  await waitFor('the claim handed to the provisioner', async () => {
    const c = await kube.get<V1PersistentVolumeClaim>(paths.claims(ns, 'populated'));
    return c?.metadata?.annotations?.['volume.kubernetes.io/storage-provisioner'] ? c : undefined;
  });
  // ...and the provisioner resyncs every 2 s: three resyncs later it must still have made nothing.
  await new Promise((r) => setTimeout(r, 6000));
  const current = await kube.get<V1PersistentVolumeClaim>(paths.claims(ns, 'populated'));
  t.equal(current?.status?.phase, 'Pending');
  t.same(
    current?.spec?.dataSourceRef,
    { apiGroup: 'example.com', kind: 'Widget', name: 'w' },
    'the API server kept the dataSourceRef',
  );
  const volumes = (await kube.list<V1PersistentVolume>(paths.volumes())).items.filter(
    (pv) => pv.spec?.claimRef?.namespace === ns,
  );
  t.equal(volumes.length, 0, 'no volume was provisioned');
  // While the same claim without the reference is provisioned.
  await kube.create(paths.claims(ns), claim('plain', 'standard'));
  await waitForClaimBound(kube, ns, 'plain');
});

t.test("a pod whose final DELETE failed is deleted on the kubelet's next resync", async (t) => {
  // A kubelet of its own, for one more node, talking through a fault proxy: the
  // API server will not fail a DELETE on demand. Its Node goes at the end, so no
  // later pod is scheduled onto a node nobody runs.
  const proxy = await startFaultProxy(cluster.kubeConfig);
  t.teardown(() => proxy.close());
  const node = 'node-flaky';
  const kubelet = new FakeKubelet(new Kube(proxy.kubeConfig()), {
    nodes: [node],
    dir: join(cluster.dir, 'kubelet-flaky'),
    images: {},
    tls: createClusterPki().kubelet,
    port: await freePort(),
    log: (line) => t.comment(line),
    kubeletVersion: 'v1.34.4',
  });
  await kubelet.start();
  t.teardown(async () => {
    await kubelet.stop();
    await kube.delete(paths.nodes(node));
  });
  const ns = await freshNamespace(kube);
  await kube.create(paths.pods(ns), {
    metadata: { name: 'app' },
    spec: {
      nodeSelector: { 'kubernetes.io/hostname': node },
      containers: [{ name: 'app', image: 'registry.example/app:1' }],
    },
  });
  await waitForPodReady(kube, ns, 'app');

  const podPath = paths.pods(ns, 'app');
  proxy.serverError({ method: 'DELETE', path: podPath }, 503);
  await kube.delete(podPath);
  await waitForGone(kube, podPath, 30_000);
  const deletes = proxy.requests.filter((r) => r.method === 'DELETE' && r.path === podPath);
  // (A resync may race the watch's DELETED event and send one more, answered 404.)
  t.same(
    deletes.slice(0, 2).map((r) => r.status),
    [503, 200],
    "the kubelet's first DELETE got a 503; the resync sent it again",
  );
});
