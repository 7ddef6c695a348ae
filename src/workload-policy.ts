// The standing policy of an annotated StatefulSet: `pvshift.io/target-storage-class`
// (and optionally `pvshift.io/target-size`, `pvshift.io/volume-claim-templates`) on
// the StatefulSet stands for the claims of all its replicas. Existing claims get a
// VolumeMigration each (populator/shortcut.ts); a claim the StatefulSet controller
// creates later (scale-up, a claim recreated) is created on the target directly by
// the webhook (webhook/mutate-claim.ts). Removing the annotation ends the policy.
// volumeClaimTemplates are immutable (KEP-4650 is still open): this is how a
// StatefulSet's new replicas land on the new class. Pure: shared by both.
import type { V1Deployment, V1ObjectMeta, V1PersistentVolumeClaim, V1StatefulSet } from '@kubernetes/client-node';
import {
  ANNOTATION_CUTOVER,
  ANNOTATION_TARGET_CLASS,
  ANNOTATION_TARGET_SIZE,
  ANNOTATION_VOLUME_CLAIM_TEMPLATES,
} from './names.js';
import { parseQuantity } from './quantity.js';

export interface WorkloadPolicy {
  /** `StatefulSet/<name>` or `Deployment/<name>`, for messages and the migration's annotation. */
  workload: string;
  /**
   * A StatefulSet's policy stands for claims not made yet (the webhook creates
   * them on the target); a Deployment's claims are the ones its pods mount today.
   */
  standing: boolean;
  /** The volumeClaimTemplate the claim was made from (a StatefulSet's). */
  template?: string;
  targetStorageClassName: string;
  targetSize?: string;
  /** `Evict`: pvshift rolls the cutover itself, one replica at a time. */
  cutover?: 'Evict';
}

/**
 * The target a workload's annotations ask for, if they ask for one it can act on:
 * a class, and a size that is a quantity greater than zero where one is given.
 * A workload being deleted asks for nothing.
 */
function annotatedTarget(
  meta: V1ObjectMeta | undefined,
): { targetStorageClassName: string; targetSize?: string } | undefined {
  const annotations = meta?.annotations ?? {};
  const target = annotations[ANNOTATION_TARGET_CLASS];
  if (!target || !meta?.name || meta.deletionTimestamp) return undefined;
  const size = annotations[ANNOTATION_TARGET_SIZE];
  if (size !== undefined && !((parseQuantity(size) ?? 0) > 0)) return undefined;
  return { targetStorageClassName: target, ...(size ? { targetSize: size } : {}) };
}

/**
 * What is wrong with a workload's policy annotations, in words for an Event on
 * it, or undefined when nothing is (or it has no policy). A class that does not
 * exist (as far as `classExists` knows) stops every migration; a wrong size makes
 * the policy cover nothing; a wrong cutover value means OnPodRecreate; templates
 * named that the StatefulSet does not have are left out. Each silently, but
 * for this.
 */
export function policyProblem(
  kind: 'StatefulSet' | 'Deployment',
  w: V1StatefulSet | V1Deployment,
  classExists: (name: string) => boolean = () => true,
): string | undefined {
  const annotations = w.metadata?.annotations ?? {};
  const target = annotations[ANNOTATION_TARGET_CLASS];
  if (!target || w.metadata?.deletionTimestamp) return undefined;
  const problems: string[] = [];
  if (!classExists(target))
    problems.push(
      `${ANNOTATION_TARGET_CLASS} "${target}" names no StorageClass: the migrations of existing claims fail, ` +
        `and a new replica's claim would wait for that class`,
    );
  const size = annotations[ANNOTATION_TARGET_SIZE];
  if (size !== undefined && !((parseQuantity(size) ?? 0) > 0))
    problems.push(
      `${ANNOTATION_TARGET_SIZE} "${size}" is not a size such as 20Gi: the policy moves no claim until it is fixed or removed`,
    );
  const cutover = annotations[ANNOTATION_CUTOVER];
  if (cutover !== undefined && cutover !== 'Evict' && cutover !== 'OnPodRecreate')
    problems.push(
      `${ANNOTATION_CUTOVER} "${cutover}" is neither Evict nor OnPodRecreate: replicas are cut over only when their pods are recreated`,
    );
  const named = annotations[ANNOTATION_VOLUME_CLAIM_TEMPLATES];
  if (kind === 'StatefulSet' && named !== undefined) {
    const have = new Set(((w as V1StatefulSet).spec?.volumeClaimTemplates ?? []).map((t) => t.metadata?.name));
    const unknown = named
      .split(',')
      .map((n) => n.trim())
      .filter((n) => !have.has(n));
    if (unknown.length)
      problems.push(
        `${ANNOTATION_VOLUME_CLAIM_TEMPLATES} names ${unknown.map((n) => `"${n}"`).join(', ')}, ` +
          `not a volumeClaimTemplate of this StatefulSet (it has ${[...have].join(', ') || 'none'}): left out`,
      );
  }
  return problems.length ? problems.join('; ') : undefined;
}

/** The templates an annotated StatefulSet's policy covers (all, unless the annotation names some). */
function templatesOf(set: V1StatefulSet): string[] {
  const all = (set.spec?.volumeClaimTemplates ?? []).map((t) => t.metadata?.name ?? '').filter(Boolean);
  const named = set.metadata?.annotations?.[ANNOTATION_VOLUME_CLAIM_TEMPLATES];
  if (named === undefined) return all;
  const wanted = new Set(named.split(',').map((n) => n.trim()));
  return all.filter((n) => wanted.has(n));
}

/**
 * The policy that covers `claim`, if an annotated StatefulSet of its namespace
 * made it: the StatefulSet controller names a replica's claim
 * `<template>-<statefulset>-<ordinal>` and labels it with the selector's labels
 * (both checked, so a claim that merely looks like one is left alone). A set
 * being deleted, or whose target size is no quantity, covers nothing.
 */
export function workloadPolicyOf(
  claim: V1PersistentVolumeClaim,
  sets: readonly V1StatefulSet[],
): WorkloadPolicy | undefined {
  const name = claim.metadata?.name ?? '';
  const namespace = claim.metadata?.namespace;
  const labels = claim.metadata?.labels ?? {};
  for (const set of sets) {
    const annotations = set.metadata?.annotations ?? {};
    const target = annotatedTarget(set.metadata);
    const setName = set.metadata?.name;
    if (!target || !setName) continue;
    if (namespace && set.metadata?.namespace !== namespace) continue;
    const selector = set.spec?.selector?.matchLabels ?? {};
    if (!Object.entries(selector).every(([k, v]) => labels[k] === v)) continue;
    for (const template of templatesOf(set)) {
      const prefix = `${template}-${setName}-`;
      if (name.startsWith(prefix) && /^\d+$/.test(name.slice(prefix.length))) {
        return {
          ...(annotations[ANNOTATION_CUTOVER] === 'Evict' ? { cutover: 'Evict' as const } : {}),
          workload: `StatefulSet/${setName}`,
          standing: true,
          template,
          ...target,
        };
      }
    }
  }
  return undefined;
}

/**
 * The policy of an annotated Deployment whose pod template mounts `claim` (the
 * claims its pods mount: a Deployment makes none of its own). Its rollout cuts
 * them over: with RollingUpdate, pvshift hands the old pod over (populator/plan/cutover.ts).
 */
export function deploymentPolicyOf(
  claim: V1PersistentVolumeClaim,
  deployments: readonly V1Deployment[],
): WorkloadPolicy | undefined {
  const name = claim.metadata?.name ?? '';
  const namespace = claim.metadata?.namespace;
  for (const d of deployments) {
    const target = annotatedTarget(d.metadata);
    if (!target || (namespace && d.metadata?.namespace !== namespace)) continue;
    const mounts = (d.spec?.template?.spec?.volumes ?? []).some((v) => v.persistentVolumeClaim?.claimName === name);
    if (!mounts) continue;
    return {
      workload: `Deployment/${d.metadata?.name}`,
      standing: false,
      ...target,
    };
  }
  return undefined;
}

/** Whether a claim already is what the policy asks: on the target class, with at least the target size. */
export function isOnPolicyTarget(claim: V1PersistentVolumeClaim, policy: WorkloadPolicy): boolean {
  if (claim.spec?.storageClassName !== policy.targetStorageClassName) return false;
  if (!policy.targetSize) return true;
  const requested = parseQuantity(claim.spec?.resources?.requests?.storage ?? '');
  return requested !== undefined && requested >= (parseQuantity(policy.targetSize) ?? Infinity);
}

/**
 * A claim being created under the policy, as it must be created: the target
 * class, and the target size where one is set. Any dataSource the StatefulSet
 * controller copied from the template is left as it is (a new replica's claim
 * has nothing to copy: there is no old volume).
 */
export function claimUnderPolicy(claim: V1PersistentVolumeClaim, policy: WorkloadPolicy): V1PersistentVolumeClaim {
  const resources = policy.targetSize
    ? { ...claim.spec?.resources, requests: { ...claim.spec?.resources?.requests, storage: policy.targetSize } }
    : claim.spec?.resources;
  return {
    ...claim,
    spec: { ...claim.spec, storageClassName: policy.targetStorageClassName, ...(resources ? { resources } : {}) },
  };
}
