// Shared by the cluster tests: one local cluster per test file, a namespace per
// test, and waits that poll the real API (never sleeps that hope).
import type { Test } from 'tap';
import type {
  CoreV1Event,
  V1Namespace,
  V1PersistentVolume,
  V1PersistentVolumeClaim,
  V1Pod,
} from '@kubernetes/client-node';
import { startLocalCluster, waitFor, type LocalCluster, type LocalClusterOptions } from '../../cluster/index.js';
import { paths, type Kube } from '../../src/kube.js';

export { waitFor };

/** Starts a cluster for the file's tests and stops it when they are done. */
export async function clusterFor(t: Test, options: LocalClusterOptions = {}): Promise<LocalCluster> {
  const cluster = await startLocalCluster({ ...options, log: options.log ?? ((line) => t.comment(line)) });
  t.teardown(() => cluster.stop());
  return cluster;
}

let counter = 0;
/** A fresh namespace (with its default ServiceAccount) so tests cannot see each other's objects. */
export async function freshNamespace(kube: Kube, prefix = 't'): Promise<string> {
  const name = `${prefix}-${process.pid}-${++counter}`;
  await kube.create<V1Namespace>(paths.namespaces(), { metadata: { name } });
  await waitFor(`ServiceAccount ${name}/default`, () => kube.get(paths.serviceAccounts(name, 'default')), 60_000);
  return name;
}

export function waitForClaimBound(
  kube: Kube,
  namespace: string,
  name: string,
  timeoutMs = 60_000,
): Promise<V1PersistentVolumeClaim> {
  return waitFor(
    `claim ${namespace}/${name} Bound`,
    async () => {
      const claim = await kube.get<V1PersistentVolumeClaim>(paths.claims(namespace, name));
      return claim?.status?.phase === 'Bound' ? claim : undefined;
    },
    timeoutMs,
  );
}

export function waitForPodPhase(
  kube: Kube,
  namespace: string,
  name: string,
  phases: string[],
  timeoutMs = 60_000,
): Promise<V1Pod> {
  return waitFor(
    `pod ${namespace}/${name} in ${phases.join('|')}`,
    async () => {
      const pod = await kube.get<V1Pod>(paths.pods(namespace, name));
      return pod && phases.includes(pod.status?.phase ?? '') && !pod.metadata?.deletionTimestamp ? pod : undefined;
    },
    timeoutMs,
  );
}

export async function waitForPodReady(kube: Kube, namespace: string, name: string, timeoutMs = 60_000): Promise<V1Pod> {
  try {
    return await waitFor(
      `pod ${namespace}/${name} Ready`,
      async () => {
        const pod = await kube.get<V1Pod>(paths.pods(namespace, name));
        const ready = pod?.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
        return ready && !pod?.metadata?.deletionTimestamp ? pod : undefined;
      },
      timeoutMs,
    );
  } catch (e: unknown) {
    // A pod that never got Ready is a scheduler, binder or kubelet story: tell it.
    const state = await describePod(kube, namespace, name).catch((d: unknown) => `(could not describe: ${String(d)})`);
    throw new Error(`${e instanceof Error ? e.message : String(e)}\n${state}`, { cause: e });
  }
}

/** The pod's phase, node, gates, conditions and claims, and the namespace's events: what `kubectl describe` would show. */
export async function describePod(kube: Kube, namespace: string, name: string): Promise<string> {
  const pod = await kube.get<V1Pod>(paths.pods(namespace, name));
  const lines: string[] = [];
  if (!pod) lines.push(`pod ${namespace}/${name}: not found`);
  else {
    lines.push(
      `pod ${namespace}/${name}: phase ${pod.status?.phase ?? '-'}, node ${pod.spec?.nodeName ?? '-'}, gates [${(pod.spec?.schedulingGates ?? []).map((g) => g.name).join(', ')}]${pod.metadata?.deletionTimestamp ? ', terminating' : ''}`,
    );
    for (const c of pod.status?.conditions ?? [])
      lines.push(
        `  condition ${c.type}=${c.status} ${c.reason ?? ''} ${c.message ?? ''} (${String(c.lastTransitionTime ?? '')})`,
      );
    for (const v of pod.spec?.volumes ?? []) {
      const claimName = v.persistentVolumeClaim?.claimName;
      if (!claimName) continue;
      const claim = await kube.get<V1PersistentVolumeClaim>(paths.claims(namespace, claimName));
      lines.push(
        `  claim ${claimName}: ${claim ? `${claim.status?.phase ?? '-'} on ${claim.spec?.volumeName || '-'}, class ${claim.spec?.storageClassName ?? '-'}, uid ${claim.metadata?.uid}` : 'not found'}`,
      );
    }
  }
  const events = (await kube.list<CoreV1Event>(paths.events(namespace))).items;
  for (const ev of events.slice(-30)) {
    lines.push(
      `  event ${ev.involvedObject.kind}/${ev.involvedObject.name} ${ev.type ?? ''} ${ev.reason ?? ''}: ${ev.message ?? ''} (x${ev.count ?? 1}, ${String(ev.lastTimestamp ?? ev.eventTime ?? '')})`,
    );
  }
  return lines.join('\n');
}

export function waitForGone(kube: Kube, path: string, timeoutMs = 60_000): Promise<true> {
  return waitFor(`${path} gone`, async () => ((await kube.get(path)) ? undefined : true), timeoutMs);
}

export async function volumeOf(kube: Kube, namespace: string, claimName: string): Promise<V1PersistentVolume> {
  const claim = await waitForClaimBound(kube, namespace, claimName);
  const pv = await kube.get<V1PersistentVolume>(paths.volumes(claim.spec?.volumeName));
  if (!pv)
    throw new Error(`claim ${namespace}/${claimName} is bound to ${claim.spec?.volumeName}, which does not exist`);
  return pv;
}

/** A StatefulSet whose pods mount one claim template at /data. */
export function statefulSet(
  name: string,
  options: { replicas?: number; storageClassName?: string; size?: string; labels?: Record<string, string> } = {},
) {
  const labels = { app: name, ...options.labels };
  return {
    apiVersion: 'apps/v1',
    kind: 'StatefulSet',
    metadata: { name },
    spec: {
      serviceName: name,
      replicas: options.replicas ?? 1,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels },
        spec: {
          terminationGracePeriodSeconds: 1,
          containers: [
            { name: 'app', image: 'registry.example/app:1', volumeMounts: [{ name: 'data', mountPath: '/data' }] },
          ],
        },
      },
      volumeClaimTemplates: [
        {
          metadata: { name: 'data' },
          spec: {
            accessModes: ['ReadWriteOnce'],
            storageClassName: options.storageClassName ?? 'standard',
            resources: { requests: { storage: options.size ?? '1Gi' } },
          },
        },
      ],
    },
  };
}
