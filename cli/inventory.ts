// What the CLI reads from the cluster, through the narrow client: the selected
// claims with their volumes, consumer pods, owners, migrations and their
// namespace's labels, shaped as the pure preflight's input. One list per kind,
// never a request per claim.
import type {
  V1Namespace,
  V1Node,
  V1PersistentVolume,
  V1PersistentVolumeClaim,
  V1Pod,
  V1PodDisruptionBudget,
  V1StatefulSet,
  V1StorageClass,
} from '@kubernetes/client-node';
import { ApiError, paths, type Kube, type ObjectMeta } from '../src/kube.js';
import { LABEL_MANAGED_BY, MANAGED_BY_VALUE } from '../src/names.js';
import type { VolumeMigration } from '../src/volume-migration.js';
import { CliError } from './connect.js';
import { isPvshiftClaim, type ClaimFacts } from './preflight.js';
import { replicaClaims, templatesInScope, type ReplicaClaim, type WorkloadFacts } from './workload.js';

export interface Selection {
  /** undefined: every namespace. */
  namespace: string | undefined;
  names: string[];
  /** Claims already read (a StatefulSet's replica claims): taken as they are. */
  claims?: V1PersistentVolumeClaim[];
  selector?: string;
  fromClass?: string;
}

interface ReplicaSet {
  metadata?: ObjectMeta;
}

const replicaSetsPath = (namespace?: string) =>
  `/apis/apps/v1${namespace ? `/namespaces/${encodeURIComponent(namespace)}` : ''}/replicasets`;

/** Migrations in scope; a missing CRD is said as such. */
export async function listMigrations(kube: Kube, namespace: string | undefined): Promise<VolumeMigration[]> {
  const items = await listMigrationsIfInstalled(kube, namespace);
  if (items === undefined)
    throw new CliError(
      'the VolumeMigration API (pvshift.io/v1alpha1) is not installed in this cluster; install pvshift first (helm install pvshift charts/pvshift)',
    );
  return items;
}

/**
 * Migrations in scope, or undefined where the VolumeMigration API is not
 * installed (pvshift uninstalled): the volumes it kept outlive it, and cleanup
 * must still list and release them.
 */
export async function listMigrationsIfInstalled(
  kube: Kube,
  namespace: string | undefined,
): Promise<VolumeMigration[] | undefined> {
  try {
    return (await kube.list<VolumeMigration>(paths.migrations(namespace))).items;
  } catch (e: unknown) {
    if (e instanceof ApiError && e.code === 404) return undefined;
    throw e;
  }
}

export async function storageClassExists(kube: Kube, name: string): Promise<boolean> {
  return (await kube.get<V1StorageClass>(paths.storageClasses(name))) !== undefined;
}

async function selectClaims(kube: Kube, s: Selection): Promise<V1PersistentVolumeClaim[]> {
  if (s.claims) return s.claims;
  if (s.names.length) {
    const claims: V1PersistentVolumeClaim[] = [];
    for (const name of s.names) {
      const claim = await kube.get<V1PersistentVolumeClaim>(paths.claims(s.namespace, name));
      if (!claim)
        throw new CliError(
          `claim "${name}" not found in namespace "${s.namespace}"; see kubectl get pvc -n ${s.namespace}`,
        );
      claims.push(claim);
    }
    return claims;
  }
  const query = s.selector ? { labelSelector: s.selector } : undefined;
  try {
    return (await kube.list<V1PersistentVolumeClaim>(paths.claims(s.namespace), query)).items.filter(
      (c) => !isPvshiftClaim(c),
    );
  } catch (e: unknown) {
    if (e instanceof ApiError && e.code === 400 && s.selector)
      throw new CliError(`invalid label selector "${s.selector}"; use key=value,key!=value,key in (a,b)`);
    throw e;
  }
}

/**
 * Labels of the namespaces in scope (their Pod Security level), by name. A user
 * who may not read namespaces gets an empty map: plan then says the level is
 * checked when the migration starts, instead of failing.
 */
async function namespaceLabels(
  kube: Kube,
  namespace: string | undefined,
): Promise<Map<string, Record<string, string>>> {
  try {
    const items =
      namespace !== undefined
        ? [await kube.get<V1Namespace>(paths.namespaces(namespace))].filter((n) => n !== undefined)
        : (await kube.list<V1Namespace>(paths.namespaces())).items;
    return new Map(items.map((n) => [n.metadata?.name ?? '', n.metadata?.labels ?? {}]));
  } catch (e: unknown) {
    if (e instanceof ApiError && e.code === 403) return new Map();
    throw e;
  }
}

/** `StatefulSet/web`, `Deployment/app` (through its ReplicaSet), `Job/x`; nothing for a bare pod. */
export function ownerOf(pod: V1Pod, replicaSets: Map<string, ReplicaSet>): string | undefined {
  const ref = pod.metadata?.ownerReferences?.find((r) => r.controller) ?? pod.metadata?.ownerReferences?.[0];
  if (!ref) return undefined;
  if (ref.kind === 'ReplicaSet') {
    const rs = replicaSets.get(`${pod.metadata?.namespace}/${ref.name}`);
    const up = rs?.metadata?.ownerReferences?.find((r) => r.controller);
    if (up) return `${up.kind}/${up.name}`;
  }
  return `${ref.kind}/${ref.name}`;
}

export async function gatherClaimFacts(kube: Kube, s: Selection): Promise<ClaimFacts[]> {
  let claims = await selectClaims(kube, s);
  const needsVolumes = claims.some((c) => c.spec?.volumeName);
  const volumes = new Map<string, V1PersistentVolume>();
  if (needsVolumes)
    for (const v of (await kube.list<V1PersistentVolume>(paths.volumes())).items)
      volumes.set(v.metadata?.name ?? '', v);
  if (s.fromClass !== undefined) {
    claims = claims.filter(
      (c) =>
        (c.spec?.storageClassName ?? volumes.get(c.spec?.volumeName ?? '')?.spec?.storageClassName ?? '') ===
        s.fromClass,
    );
  }
  if (claims.length === 0) return [];
  const [pods, replicaSetList, migrations, labels] = await Promise.all([
    kube.list<V1Pod>(paths.pods(s.namespace)),
    kube.list<ReplicaSet>(replicaSetsPath(s.namespace)),
    listMigrations(kube, s.namespace),
    namespaceLabels(kube, s.namespace),
  ]);
  const replicaSets = new Map(replicaSetList.items.map((rs) => [`${rs.metadata?.namespace}/${rs.metadata?.name}`, rs]));
  const appPods = pods.items.filter((p) => p.metadata?.labels?.[LABEL_MANAGED_BY] !== MANAGED_BY_VALUE);
  return claims
    .map((claim) => {
      const ns = claim.metadata?.namespace;
      const name = claim.metadata?.name;
      const consumers = appPods.filter(
        (p) =>
          p.metadata?.namespace === ns &&
          (p.spec?.volumes ?? []).some((v) => v.persistentVolumeClaim?.claimName === name),
      );
      const volume = claim.spec?.volumeName ? volumes.get(claim.spec.volumeName) : undefined;
      const nsLabels = labels.get(ns ?? '');
      return {
        claim,
        ...(volume ? { volume } : {}),
        ...(nsLabels ? { namespaceLabels: nsLabels } : {}),
        consumers: consumers.map((p) => p.metadata?.name ?? ''),
        owners: consumers.flatMap((p) => ownerOf(p, replicaSets) ?? []),
        migrations: migrations.filter((m) => m.metadata.namespace === ns),
      };
    })
    .sort((a, b) =>
      `${a.claim.metadata?.namespace}/${a.claim.metadata?.name}`.localeCompare(
        `${b.claim.metadata?.namespace}/${b.claim.metadata?.name}`,
      ),
    );
}

const budgetsPath = (namespace: string) =>
  `/apis/policy/v1/namespaces/${encodeURIComponent(namespace)}/poddisruptionbudgets`;

/** A StatefulSet named as a subject (`sts/NAME`), its templates in scope and its replica claims. */
export interface WorkloadSubject {
  set: V1StatefulSet;
  templates: string[];
  claims: (ReplicaClaim & { claim?: V1PersistentVolumeClaim })[];
}

/**
 * Reads the StatefulSet and its replica claims (one list of the namespace's
 * claims): `<template>-<set>-<ordinal>` for ordinals 0..replicas-1, with the
 * claim where it exists.
 */
export async function resolveWorkload(
  kube: Kube,
  namespace: string,
  name: string,
  templates: string[] | undefined,
): Promise<WorkloadSubject> {
  const set = await kube.get<V1StatefulSet>(paths.statefulSets(namespace, name));
  if (!set)
    throw new CliError(
      `StatefulSet "${name}" not found in namespace "${namespace}"; see kubectl get statefulsets -n ${namespace}`,
    );
  const scope = templatesInScope(set, templates);
  if (!scope.ok) throw new CliError(scope.message);
  const existing = new Map(
    (await kube.list<V1PersistentVolumeClaim>(paths.claims(namespace))).items.map((c) => [c.metadata?.name ?? '', c]),
  );
  const claims = replicaClaims(set, scope.templates).map((r) => {
    const claim = existing.get(r.name);
    return { ...r, ...(claim ? { claim } : {}) };
  });
  return { set, templates: scope.templates, claims };
}

/** Nodes by name, or undefined for a user who may not list them (plan then says topology is not checked). */
async function readNodes(kube: Kube): Promise<Map<string, V1Node> | undefined> {
  try {
    return new Map((await kube.list<V1Node>(paths.nodes())).items.map((n) => [n.metadata?.name ?? '', n]));
  } catch (e: unknown) {
    if (e instanceof ApiError && e.code === 403) return undefined;
    throw e;
  }
}

/** What plan needs to know of a StatefulSet beside its claims: pods, budgets, nodes, target class, namespace. */
export async function gatherWorkloadFacts(
  kube: Kube,
  subject: WorkloadSubject,
  targetStorageClassName: string,
): Promise<WorkloadFacts> {
  const namespace = subject.set.metadata?.namespace ?? '';
  const name = subject.set.metadata?.name ?? '';
  const uid = subject.set.metadata?.uid;
  const [pods, budgets, nodes, targetClass, labels] = await Promise.all([
    kube.list<V1Pod>(paths.pods(namespace)),
    kube.list<V1PodDisruptionBudget>(budgetsPath(namespace)),
    readNodes(kube),
    kube.get<V1StorageClass>(paths.storageClasses(targetStorageClassName)),
    namespaceLabels(kube, namespace),
  ]);
  const own = pods.items.filter(
    (p) =>
      p.metadata?.name?.startsWith(`${name}-`) &&
      (p.metadata.ownerReferences ?? []).some(
        (r) => r.kind === 'StatefulSet' && (uid ? r.uid === uid : r.name === name),
      ),
  );
  const nsLabels = labels.get(namespace);
  return {
    ...subject,
    pods: own,
    budgets: budgets.items,
    ...(nodes ? { nodes } : {}),
    ...(targetClass ? { targetClass } : {}),
    ...(nsLabels ? { namespaceLabels: nsLabels } : {}),
  };
}
