// A StatefulSet as one subject of plan, migrate and status (`sts/NAME`): its
// replica claims, what the rollout that cuts them over will meet, the
// annotations that make pvshift's standing policy (src/workload-policy.ts), and
// the one-line summary of where its replicas are. Pure: objects in, findings,
// patches and summaries out; the I/O is in inventory.ts and commands.ts.
import type {
  V1LabelSelector,
  V1Node,
  V1PersistentVolumeClaim,
  V1Pod,
  V1PodDisruptionBudget,
  V1StatefulSet,
  V1StorageClass,
} from '@kubernetes/client-node';
import {
  ANNOTATION_TARGET_CLASS,
  ANNOTATION_TARGET_SIZE,
  ANNOTATION_VOLUME_CLAIM_TEMPLATES,
  LABEL_POD_SECURITY_ENFORCE,
} from '../src/names.js';
import { copyFidelityFor } from '../src/pod-security.js';
import { isTerminal, phaseOf, type VolumeMigration } from '../src/volume-migration.js';
import { ANNOTATION_WORKLOAD } from '../src/names.js';
import type { Finding, PlanRow } from './preflight.js';
import { formatDuration, statusItem } from './render.js';

/** One replica claim: `<template>-<set>-<ordinal>`, as the StatefulSet controller names it. */
export interface ReplicaClaim {
  ordinal: number;
  template: string;
  name: string;
}

/** `StatefulSet/<name>`: how the controller names the workload on its migrations (ANNOTATION_WORKLOAD). */
export function workloadKey(setName: string): string {
  return `StatefulSet/${setName}`;
}

export function templateNames(set: V1StatefulSet): string[] {
  return (set.spec?.volumeClaimTemplates ?? []).map((t) => t.metadata?.name ?? '').filter(Boolean);
}

/**
 * The templates in scope: those asked for (each must be one of the set's), else
 * all. Returns the names, or the message of the first unknown one.
 */
export function templatesInScope(
  set: V1StatefulSet,
  wanted: string[] | undefined,
): { ok: true; templates: string[] } | { ok: false; message: string } {
  const all = templateNames(set);
  const name = set.metadata?.name ?? '';
  if (all.length === 0)
    return { ok: false, message: `StatefulSet ${name} has no volumeClaimTemplates: it has no replica claims to move` };
  if (wanted === undefined) return { ok: true, templates: all };
  const unknown = wanted.find((w) => !all.includes(w));
  if (unknown !== undefined)
    return {
      ok: false,
      message: `StatefulSet ${name} has no volumeClaimTemplate "${unknown}"; its templates: ${all.join(', ')}`,
    };
  return { ok: true, templates: wanted };
}

/** The replica claims the set's spec implies: every template in scope for ordinals 0..replicas-1. */
export function replicaClaims(set: V1StatefulSet, templates: string[]): ReplicaClaim[] {
  const name = set.metadata?.name ?? '';
  // spec.replicas defaults to 1 (apps/v1); the StatefulSet controller starts at ordinal 0
  // unless spec.ordinals.start says otherwise.
  const replicas = set.spec?.replicas ?? 1;
  const start = set.spec?.ordinals?.start ?? 0;
  const out: ReplicaClaim[] = [];
  for (let i = 0; i < replicas; i++)
    for (const template of templates)
      out.push({ ordinal: start + i, template, name: `${template}-${name}-${start + i}` });
  return out;
}

/**
 * Whether a label selector selects `labels`: matchLabels, and matchExpressions
 * with In, NotIn, Exists and DoesNotExist (all the operators a LabelSelector has).
 * An empty selector selects everything; an absent one, nothing (policy/v1 PDBs).
 */
export function selectorMatches(selector: V1LabelSelector | undefined, labels: Record<string, string>): boolean {
  if (!selector) return false;
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of selector.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, e.key);
    const values = e.values ?? [];
    switch (e.operator) {
      case 'In':
        if (!has || !values.includes(labels[e.key]!)) return false;
        break;
      case 'NotIn':
        if (has && values.includes(labels[e.key]!)) return false;
        break;
      case 'Exists':
        if (!has) return false;
        break;
      case 'DoesNotExist':
        if (has) return false;
        break;
      default:
        // The API server refuses other operators; a selector we cannot read selects nothing we claim to know.
        return false;
    }
  }
  return true;
}

/** What the CLI read about a StatefulSet for its plan (beside each claim's ClaimFacts). */
export interface WorkloadFacts {
  set: V1StatefulSet;
  templates: string[];
  /** Replica claims the spec implies, with the claim where it exists. */
  claims: (ReplicaClaim & { claim?: V1PersistentVolumeClaim })[];
  /** The set's pods (`<set>-<ordinal>`, controlled by it). */
  pods: V1Pod[];
  /** PodDisruptionBudgets of the namespace (policy/v1). */
  budgets: V1PodDisruptionBudget[];
  /** Nodes by name; undefined where they could not be read (no right to list nodes). */
  nodes?: Map<string, V1Node>;
  /** The target StorageClass, where it exists. */
  targetClass?: V1StorageClass;
  /** Labels of the namespace (its Pod Security level); undefined where it could not be read. */
  namespaceLabels?: Record<string, string>;
}

function budgetAllowsNone(pdb: V1PodDisruptionBudget, replicas: number): { none: boolean; observed: boolean } {
  const status = pdb.status;
  const observed =
    status !== undefined &&
    (status.observedGeneration === undefined || status.observedGeneration >= (pdb.metadata?.generation ?? 0));
  if (observed) return { none: status.disruptionsAllowed === 0, observed };
  // Not computed yet by the disruption controller: what the spec alone says.
  const { maxUnavailable, minAvailable } = pdb.spec ?? {};
  if (maxUnavailable !== undefined)
    return { none: String(maxUnavailable) === '0' || maxUnavailable === '0%', observed };
  if (minAvailable !== undefined)
    return {
      none: minAvailable === '100%' || (typeof minAvailable === 'number' && minAvailable >= replicas),
      observed,
    };
  return { none: false, observed };
}

/** Whether a node's labels satisfy one of the class's allowedTopologies terms (none: every node). */
function nodeAllowed(node: V1Node, targetClass: V1StorageClass): boolean {
  const terms = targetClass.allowedTopologies ?? [];
  if (terms.length === 0) return true;
  const labels = node.metadata?.labels ?? {};
  return terms.some((term) =>
    (term.matchLabelExpressions ?? []).every((e) => labels[e.key] !== undefined && e.values.includes(labels[e.key]!)),
  );
}

function topologyText(targetClass: V1StorageClass): string {
  return (targetClass.allowedTopologies ?? [])
    .map((t) => (t.matchLabelExpressions ?? []).map((e) => `${e.key} in (${e.values.join(', ')})`).join(' and '))
    .join(' or ');
}

/**
 * What the rollout that cuts the replicas over will meet, said once for the
 * StatefulSet (each claim's own findings come from preflight()).
 */
export function workloadFindings(facts: WorkloadFacts, request: { targetStorageClassName: string }): Finding[] {
  const { set } = facts;
  const name = set.metadata?.name ?? '';
  const namespace = set.metadata?.namespace ?? '';
  const replicas = set.spec?.replicas ?? 1;
  const podLabels = set.spec?.template?.metadata?.labels ?? {};
  const findings: Finding[] = [];
  const block = (code: string, message: string) => findings.push({ severity: 'blocking', code, message });
  const warn = (code: string, message: string) => findings.push({ severity: 'warning', code, message });
  const info = (code: string, message: string) => findings.push({ severity: 'info', code, message });

  const missing = facts.claims.filter((c) => !c.claim);
  if (facts.claims.length > 0 && missing.length === facts.claims.length) {
    warn(
      'NoReplicaClaims',
      `none of the replica claims exists yet (${missing.map((c) => c.name).join(', ')}): nothing to copy; claims created under the policy are created on ${request.targetStorageClassName} directly`,
    );
  } else if (missing.length) {
    info(
      'ReplicaClaimMissing',
      `${missing.map((c) => c.name).join(', ')} ${missing.length > 1 ? 'do' : 'does'} not exist yet: created under the policy, ${missing.length > 1 ? 'they are' : 'it is'} created on ${request.targetStorageClassName} directly`,
    );
  }

  // A rollout is what cuts over: how the StatefulSet controller will do it.
  const strategy = set.spec?.updateStrategy;
  if (strategy?.type === 'OnDelete') {
    warn(
      'OnDeleteStrategy',
      `updateStrategy OnDelete: kubectl rollout restart replaces no pod; each replica cuts over when you delete its pod`,
    );
  } else {
    const partition = strategy?.rollingUpdate?.partition ?? 0;
    if (partition > 0)
      warn(
        'RolloutPartition',
        `rollingUpdate.partition is ${partition}: a rollout replaces only ordinals >= ${partition}; the replicas below cut over when their pods are deleted`,
      );
  }

  // The StatefulSet controller deletes pods directly (no Eviction API), so a
  // budget does not stop its rollout; it does refuse evictions: node drains,
  // and pvshift's own with cutover Evict.
  for (const pdb of facts.budgets) {
    if (!selectorMatches(pdb.spec?.selector, podLabels)) continue;
    const { none, observed } = budgetAllowsNone(pdb, replicas);
    if (!none) continue;
    warn(
      'DisruptionBudget',
      `PodDisruptionBudget ${pdb.metadata?.name} selects the pods of StatefulSet ${name} and allows no disruption ${observed ? '(status.disruptionsAllowed 0)' : `(by its spec: ${pdb.spec?.maxUnavailable !== undefined ? `maxUnavailable ${pdb.spec.maxUnavailable}` : `minAvailable ${pdb.spec?.minAvailable}`})`}: kubectl rollout restart deletes pods without asking it, so each replica's cutover downtime breaks the budget; evictions (node drains) are refused throughout`,
    );
  }

  // RWO volumes are mounted on one node: each replica's copy runs on its pod's node.
  const rwo = facts.claims.filter((c) =>
    (c.claim?.spec?.accessModes ?? []).some((m) => m === 'ReadWriteOnce' || m === 'ReadWriteOncePod'),
  );
  const podOf = (ordinal: number) => facts.pods.find((p) => p.metadata?.name === `${name}-${ordinal}`);
  const nodeOf = new Map(
    rwo.flatMap((c) =>
      podOf(c.ordinal)?.spec?.nodeName ? [[c.ordinal, podOf(c.ordinal)!.spec!.nodeName!] as const] : [],
    ),
  );
  const nodes = [...new Set(nodeOf.values())].sort();
  if (nodes.length > 1)
    info(
      'ReadWriteOnceNodes',
      `RWO claims on ${nodes.length} nodes (${nodes.join(', ')}): each replica's copy runs on its pod's node, so the target class must provision on every one of them`,
    );
  if (facts.targetClass?.allowedTopologies?.length) {
    if (facts.nodes === undefined) {
      if (nodes.length)
        info(
          'TopologyUnknown',
          `could not read the nodes: whether ${nodes.join(', ')} lie within the allowedTopologies of StorageClass ${request.targetStorageClassName} is not checked`,
        );
    } else {
      for (const node of nodes) {
        const n = facts.nodes.get(node);
        if (!n || nodeAllowed(n, facts.targetClass)) continue;
        const on = [...nodeOf].filter(([, v]) => v === node).map(([o]) => `${name}-${o}`);
        warn(
          'TopologyMismatch',
          `${on.join(', ')} ${on.length > 1 ? 'run' : 'runs'} on node ${node}, outside the allowedTopologies of StorageClass ${request.targetStorageClassName} (${topologyText(facts.targetClass)}): no target volume can be provisioned there for an RWO copy`,
        );
      }
    }
  }

  // Said once for the set; each claim's row carries the same rule's verdict.
  if (facts.namespaceLabels === undefined) {
    info(
      'PodSecurityUnknown',
      `could not read namespace ${namespace}: its Pod Security level is checked when the migrations start`,
    );
  } else {
    const level = facts.namespaceLabels[LABEL_POD_SECURITY_ENFORCE] ?? 'privileged (unset)';
    const fidelity = copyFidelityFor(namespace, facts.namespaceLabels);
    if (!fidelity.ok) block(fidelity.reason, fidelity.message);
    else
      info(
        'PodSecurityLevel',
        `namespace ${namespace} enforces Pod Security ${level}: the rollout's new pods and pvshift's copy pods are admitted under it; ${fidelity.note}`,
      );
  }
  return findings;
}

/** The StatefulSet's pvshift annotations as they stand. */
export interface WorkloadPolicyAnnotations {
  target?: string;
  size?: string;
  templates?: string;
}

export function policyOf(set: V1StatefulSet): WorkloadPolicyAnnotations {
  const a = set.metadata?.annotations ?? {};
  return {
    ...(a[ANNOTATION_TARGET_CLASS] ? { target: a[ANNOTATION_TARGET_CLASS] } : {}),
    ...(a[ANNOTATION_TARGET_SIZE] ? { size: a[ANNOTATION_TARGET_SIZE] } : {}),
    ...(a[ANNOTATION_VOLUME_CLAIM_TEMPLATES] ? { templates: a[ANNOTATION_VOLUME_CLAIM_TEMPLATES] } : {}),
  };
}

/**
 * The merge patch that makes the policy `migrate sts/NAME` states: the whole
 * policy, so a size or template list from an earlier policy is removed (null)
 * when not given now. Undefined when the annotations already say exactly this.
 */
export function policyPatch(
  set: V1StatefulSet,
  wanted: { target: string; size?: string; templates?: string[] },
): { metadata: { annotations: Record<string, string | null> } } | undefined {
  const now = policyOf(set);
  const templates = wanted.templates?.join(',');
  if (now.target === wanted.target && now.size === wanted.size && now.templates === templates) return undefined;
  return {
    metadata: {
      annotations: {
        [ANNOTATION_TARGET_CLASS]: wanted.target,
        [ANNOTATION_TARGET_SIZE]: wanted.size ?? null,
        [ANNOTATION_VOLUME_CLAIM_TEMPLATES]: templates ?? null,
      },
    },
  };
}

/**
 * The migrations of the set: those the controller made for its policy (of a
 * claim of a template in scope), and those of one of its replica claims (made
 * by the plugin, or by hand).
 */
export function migrationsOfWorkload(
  setName: string,
  templates: string[],
  claimNames: ReadonlySet<string>,
  migrations: VolumeMigration[],
): VolumeMigration[] {
  const ofTemplate = (claim: string) =>
    templates.some(
      (t) => claim.startsWith(`${t}-${setName}-`) && /^\d+$/.test(claim.slice(t.length + setName.length + 2)),
    );
  return migrations
    .filter(
      (m) =>
        claimNames.has(m.spec.claimName) ||
        (m.metadata.annotations?.[ANNOTATION_WORKLOAD] === workloadKey(setName) && ofTemplate(m.spec.claimName)),
    )
    .sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
}

/** Codes of a claim's blocking findings that do not stop a StatefulSet's policy: the controller leaves such a claim alone. */
const POLICY_TOLERATES: ReadonlySet<string> = new Set(['NothingToChange', 'AlreadyMigrating']);

/**
 * What stops `migrate sts/NAME`: the policy covers every replica claim, so
 * unlike claims given by name, none can be skipped. A replica already on the
 * target, or already under a migration, is left alone by the controller
 * (populator/shortcut.ts), so those findings do not count.
 */
export function workloadBlockers(rows: PlanRow[], findings: Finding[]): string[] {
  return [
    ...findings.filter((f) => f.severity === 'blocking').map((f) => `${f.code}: ${f.message}`),
    ...rows.flatMap((r) =>
      r.findings
        .filter((f) => f.severity === 'blocking' && !POLICY_TOLERATES.has(f.code))
        .map((f) => `${r.claim}: ${f.code}: ${f.message}`),
    ),
  ];
}

/** Per claim, the migration that speaks for it now: the unfinished one, else the newest. */
export function latestPerClaim(migrations: VolumeMigration[]): VolumeMigration[] {
  const by = new Map<string, VolumeMigration>();
  const created = (m: VolumeMigration) => String(m.metadata.creationTimestamp ?? '');
  for (const m of migrations) {
    const before = by.get(m.spec.claimName);
    const better =
      !before ||
      (isTerminal(phaseOf(before)) && !isTerminal(phaseOf(m))) ||
      (isTerminal(phaseOf(before)) === isTerminal(phaseOf(m)) && created(m) > created(before));
    if (better) by.set(m.spec.claimName, m);
  }
  return [...by.values()].sort((a, b) => a.spec.claimName.localeCompare(b.spec.claimName));
}

/** The stable, script-facing view of a StatefulSet's migration (`status sts/NAME -o json|yaml`). */
export interface WorkloadStatus {
  workload: string;
  namespace: string;
  /** The policy's target class; else the target of its latest migration; null when neither says. */
  target: string | null;
  targetSize: string | null;
  replicas: number;
  /** Replicas whose every claim in scope is on the target class. */
  onTarget: number;
  summary: string;
  migrations: ReturnType<typeof statusItem>[];
}

/** What one migration that has not brought its claim over is doing, in a few words. */
function doingText(m: VolumeMigration): string {
  const phase = phaseOf(m);
  const item = statusItem(m);
  const percent = item.progress?.percent ?? Number(/\((\d+)%\)/.exec(m.status?.progressText ?? '')?.[1] ?? NaN);
  const eta = item.progress?.etaSeconds;
  switch (phase) {
    case 'PreSyncing':
    case 'Populating':
      return `${m.spec.claimName} ${phase === 'Populating' ? 'final copy' : 'copying'}${Number.isFinite(percent) ? ` ${percent}%` : ''}${eta !== null && eta !== undefined ? `, ETA ${formatDuration(eta)}` : ''}`;
    case 'WaitingForCutover':
      return `${m.spec.claimName} waiting for cutover`;
    case 'CuttingOver':
    case 'Binding':
      return `${m.spec.claimName} cutting over`;
    default:
      return `${m.spec.claimName} ${phase}`;
  }
}

export function workloadStatus(
  set: V1StatefulSet,
  claims: (ReplicaClaim & { claim?: V1PersistentVolumeClaim })[],
  migrations: VolumeMigration[],
): WorkloadStatus {
  const name = set.metadata?.name ?? '';
  const policy = policyOf(set);
  const latest = latestPerClaim(migrations);
  const newest = [...latest].sort((a, b) =>
    String(b.metadata.creationTimestamp ?? '').localeCompare(String(a.metadata.creationTimestamp ?? '')),
  )[0];
  const target = policy.target ?? newest?.spec.targetStorageClassName ?? null;
  const targetSize = policy.target ? (policy.size ?? null) : (newest?.spec.targetSize ?? null);
  const replicas = set.spec?.replicas ?? 1;
  const ordinals = [...new Set(claims.map((c) => c.ordinal))];
  const onTarget =
    target === null
      ? 0
      : ordinals.filter((o) =>
          claims.filter((c) => c.ordinal === o).every((c) => c.claim?.spec?.storageClassName === target),
        ).length;
  const onTargetClaims = new Set(
    claims.filter((c) => target !== null && c.claim?.spec?.storageClassName === target).map((c) => c.name),
  );
  // Succeeded is said by the count; an ended migration of a claim on the target (an earlier attempt) too.
  const doing = latest
    .filter((m) => phaseOf(m) !== 'Succeeded' && !(isTerminal(phaseOf(m)) && onTargetClaims.has(m.spec.claimName)))
    .map(doingText);
  const head =
    target === null
      ? `StatefulSet ${name} has no pvshift policy and no migrations (start one: kubectl pvshift migrate sts/${name} --to CLASS)`
      : `${onTarget}/${replicas} replica${replicas === 1 ? '' : 's'} on ${target}`;
  return {
    workload: workloadKey(name),
    namespace: set.metadata?.namespace ?? '',
    target,
    targetSize,
    replicas,
    onTarget,
    summary: [head, ...doing].join(', '),
    migrations: migrations.map(statusItem),
  };
}

/**
 * Whether `status sts/NAME --watch` is done: every migration ended, and the
 * replicas are on the target or one ended otherwise (then it waits for you).
 */
export function isWorkloadSettled(s: WorkloadStatus, migrations: VolumeMigration[]): boolean {
  const latest = latestPerClaim(migrations);
  if (!latest.every((m) => isTerminal(phaseOf(m)))) return false;
  return s.target === null || s.onTarget >= s.replicas || latest.some((m) => phaseOf(m) !== 'Succeeded');
}
