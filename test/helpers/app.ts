// An application the migration tests move: a claim on `standard`, a pod that
// mounts it (the fake kubelet marks it Running and Ready), data a user would
// care about, and a recreation as its controller would do it.
import type { V1PersistentVolume, V1PersistentVolumeClaim, V1Pod } from '@kubernetes/client-node';
import { paths, type Kube } from '../../src/kube.js';
import { volumeOf, waitFor, waitForPodReady } from './cluster.js';
import { fillVolume, snapshotTree } from './migration.js';

export function claimSpec(extra: Partial<V1PersistentVolumeClaim['spec']> = {}): V1PersistentVolumeClaim['spec'] {
  return {
    accessModes: ['ReadWriteOnce'],
    storageClassName: 'standard',
    resources: { requests: { storage: '1Gi' } },
    ...extra,
  };
}

export function appPod(claimName: string, spec: Partial<V1Pod['spec']> = {}): V1Pod {
  return {
    metadata: { name: `${claimName}-app` },
    spec: {
      terminationGracePeriodSeconds: 1,
      containers: [
        { name: 'app', image: 'registry.example/app:1', volumeMounts: [{ name: 'data', mountPath: '/data' }] },
      ],
      volumes: [{ name: 'data', persistentVolumeClaim: { claimName } }],
      ...spec,
    },
  };
}

/** A claim `name` with its app pod Ready and `megabytes` of data (see fillVolume) on its volume. */
export async function appWithData(
  kube: Kube,
  ns: string,
  name: string,
  megabytes: number,
  pod: Partial<V1Pod['spec']> = {},
): Promise<{ pv: V1PersistentVolume; before: ReturnType<typeof snapshotTree> }> {
  await kube.create(paths.claims(ns), { metadata: { name }, spec: claimSpec() });
  await kube.create(paths.pods(ns), appPod(name, pod));
  await waitForPodReady(kube, ns, `${name}-app`);
  const pv = await volumeOf(kube, ns, name);
  fillVolume(pv.spec!.hostPath!.path, megabytes);
  return { pv, before: snapshotTree(pv.spec!.hostPath!.path) };
}

/** Deletes the app pod and creates it again, as its controller would. */
export async function recreateApp(
  kube: Kube,
  ns: string,
  claimName: string,
  pod: Partial<V1Pod['spec']> = {},
): Promise<void> {
  await kube.delete(paths.pods(ns, `${claimName}-app`));
  await waitFor('old app pod gone', async () =>
    (await kube.get(paths.pods(ns, `${claimName}-app`))) ? undefined : true,
  );
  await kube.create(paths.pods(ns), appPod(claimName, pod));
}
