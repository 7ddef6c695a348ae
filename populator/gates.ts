// pvshift's scheduling gate on a pod. The webhook adds it (webhook/mutate-pod.ts)
// to a pod that mounts a claim being migrated; it is lifted here and nowhere
// else, by the two that may: a migration whose claim is ready for the pod
// again (reconcile's liftGates step), and the controller for a pod gated for a
// migration that is gone (orphans.ts says which). Only pvshift's own gate goes;
// the pod's other gates and its annotations (which migration, since when) stay.
import type { V1Pod } from '@kubernetes/client-node';
import { ApiError, paths, type Kube } from '../src/kube.js';
import { SCHEDULING_GATE } from '../src/names.js';

/**
 * Lifts pvshift's gate from the pod as the cache has it. The patch carries the
 * cached resourceVersion: a pod changed since is a conflict, never a lost gate
 * of someone else's. Returns false when the pod is gone (nothing left to lift).
 */
export async function liftGate(kube: Kube, pod: V1Pod): Promise<boolean> {
  const gates = (pod.spec?.schedulingGates ?? []).filter((g) => g.name !== SCHEDULING_GATE);
  try {
    await kube.patch(
      paths.pods(pod.metadata?.namespace, pod.metadata?.name),
      [
        { op: 'test', path: '/metadata/resourceVersion', value: pod.metadata?.resourceVersion },
        { op: 'replace', path: '/spec/schedulingGates', value: gates },
      ],
      'json',
    );
    return true;
  } catch (e: unknown) {
    if (e instanceof ApiError && e.code === 404) return false;
    throw e;
  }
}
