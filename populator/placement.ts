// Whether a pod can reach a volume, as far as the two objects alone can tell:
// the volume's required node affinity against the pod's nodeSelector and
// required node affinity. Pure; no Node objects (pvshift has no right to read
// them), so only a contradiction between the two is found, which is exactly the
// failure seen: a target provisioned on node-1 for a pod pinned to node-2.
import type { V1NodeSelectorRequirement, V1NodeSelectorTerm, V1PersistentVolume, V1Pod } from '@kubernetes/client-node';

/** The values a key may take under one requirement, or undefined where the requirement does not pin them. */
function allowedValues(r: V1NodeSelectorRequirement): Set<string> | undefined {
  return r.operator === 'In' ? new Set(r.values ?? []) : undefined;
}

/** Per key, the values a term allows (intersection of its In requirements). */
function pinnedKeys(terms: V1NodeSelectorTerm): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  for (const r of terms.matchExpressions ?? []) {
    const allowed = allowedValues(r);
    if (!allowed) continue;
    const before = out.get(r.key);
    out.set(r.key, before ? new Set([...before].filter((v) => allowed.has(v))) : allowed);
  }
  return out;
}

/** The pod's constraints as alternatives (OR of terms), each with its nodeSelector folded in (AND). */
function podTerms(pod: V1Pod): Map<string, Set<string>>[] {
  const selector = pod.spec?.nodeSelector ?? {};
  const required =
    pod.spec?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms ?? [];
  const base = required.length ? required.map(pinnedKeys) : [new Map<string, Set<string>>()];
  return base.map((term) => {
    const merged = new Map(term);
    for (const [key, value] of Object.entries(selector)) {
      const before = merged.get(key);
      merged.set(key, before ? new Set([...before].filter((v) => v === value)) : new Set([value]));
    }
    return merged;
  });
}

function compatible(a: Map<string, Set<string>>, b: Map<string, Set<string>>): boolean {
  for (const [key, values] of a) {
    const other = b.get(key);
    if (other && ![...values].some((v) => other.has(v))) return false;
    if (values.size === 0) return false;
  }
  for (const values of b.values()) if (values.size === 0) return false;
  return true;
}

/** Why `pod` can never run where `pv` is (a message), or undefined when nothing says so. */
export function placementConflict(pod: V1Pod, pv: V1PersistentVolume): string | undefined {
  const pvTerms = pv.spec?.nodeAffinity?.required?.nodeSelectorTerms ?? [];
  if (pvTerms.length === 0) return undefined;
  const volume = pvTerms.map(pinnedKeys);
  const wanted = podTerms(pod);
  if (wanted.some((p) => volume.some((v) => compatible(p, v)))) return undefined;
  const where = volume
    .map((v) => [...v].map(([k, vals]) => `${k} in (${[...vals].join(', ')})`).join(' and '))
    .join(' or ');
  return `pod ${pod.metadata?.name} cannot run where volume ${pv.metadata?.name} is (${where}): its nodeSelector or node affinity rules that out`;
}
