// The copy pod of each pass, as a pure function of the migration and the world.
// Children are named from the migration's UID, so a rerun finds its pod again.
import type { V1Affinity, V1NodeSelectorTerm, V1PersistentVolume, V1Pod, V1Toleration } from '@kubernetes/client-node';
import { BASELINE_CAPABILITIES, PRIVILEGED_CAPABILITIES } from '../src/pod-security.js';
import {
  ANNOTATION_COPY_ATTEMPT,
  ANNOTATION_SYNC_PASS,
  ANNOTATION_SYNC_REQUEST,
  COMPONENT_COPY,
  LABEL_COMPONENT,
  LABEL_COPY_PASS,
  LABEL_MANAGED_BY,
  LABEL_MIGRATION_UID,
  MANAGED_BY_VALUE,
  copyPodName,
  sourceHelperClaimName,
  stagingClaimName,
} from '../src/names.js';
import { pendingSyncRequest, type VolumeMigration } from '../src/volume-migration.js';
import type { Pass, World } from './world.js';

export const SOURCE_MOUNT = '/mnt/pvshift/source';
export const TARGET_MOUNT = '/mnt/pvshift/target';

export function copyPodNameFor(uid: string, pass: Pass): string {
  return pass === 'measure' ? `pvshift-${uid}-measure` : copyPodName(uid, pass);
}

/** Whether the volume can be mounted on one node only at a time (so a second mount must share its node). */
function isSingleNode(pv: V1PersistentVolume | undefined): boolean {
  const modes = pv?.spec?.accessModes ?? ['ReadWriteOnce'];
  return !modes.includes('ReadWriteMany') && !modes.includes('ReadOnlyMany');
}

/**
 * Where a pass must run. Pre-sync mounts the live source beside its running
 * consumer: for a single-node volume that means the consumer's node. The other
 * passes go through the scheduler, which honours the source PV's node affinity
 * and picks the node of a WaitForFirstConsumer target itself.
 */
export function pinnedNode(w: World, pass: Pass): string | undefined {
  if (pass === 'final') return undefined;
  if (!isSingleNode(w.sourceVolume)) return undefined;
  const running = w.consumers.find((p) => p.spec?.nodeName && !p.metadata?.deletionTimestamp);
  return running?.spec?.nodeName;
}

/** How far before the migration was created a change counts as "since the pre-sync began" (clock skew between nodes and API server). */
export const CHANGED_SINCE_MARGIN_MS = 60_000;

/**
 * The final copy runs where the held pod can run: its nodeSelector, required node
 * affinity and tolerations go on the copy pod, so a WaitForFirstConsumer target is
 * provisioned on a node the application can use (the scheduler picks that node
 * for the copy pod, and the volume follows it).
 */
function heldPodPlacement(w: World): {
  nodeSelector?: Record<string, string>;
  terms?: V1NodeSelectorTerm[];
  tolerations?: V1Toleration[];
} {
  const held = w.consumers.find((p) => (p.spec?.schedulingGates ?? []).length > 0 && !p.metadata?.deletionTimestamp);
  if (!held?.spec) return {};
  const terms = held.spec.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms;
  return {
    ...(held.spec.nodeSelector && Object.keys(held.spec.nodeSelector).length
      ? { nodeSelector: held.spec.nodeSelector }
      : {}),
    ...(terms?.length ? { terms } : {}),
    ...(held.spec.tolerations?.length ? { tolerations: held.spec.tolerations } : {}),
  };
}

export function buildCopyPod(w: World, pass: Pass): V1Pod {
  const m: VolumeMigration = w.migration;
  const uid = m.metadata.uid ?? '';
  const settings = w.settings;
  const node = pinnedNode(w, pass);
  const sourceClaim = pass === 'final' ? sourceHelperClaimName(uid) : m.spec.claimName;
  const held = pass === 'final' ? heldPodPlacement(w) : {};
  const pin: V1NodeSelectorTerm[] | undefined = node
    ? [{ matchExpressions: [{ key: 'kubernetes.io/hostname', operator: 'In', values: [node] }] }]
    : held.terms;
  const affinity: V1Affinity | undefined = pin
    ? { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: pin } } }
    : undefined;
  const nodeSelector = { ...held.nodeSelector, ...settings.copyNodeSelector };
  const tolerations = [...(settings.copyTolerations as V1Toleration[]), ...(held.tolerations ?? [])];
  // What the namespace's Pod Security level admits, read from its labels now (never from status).
  const privileged = w.fidelity.ok && w.fidelity.fidelity.privileged;
  const verify = pass === 'final' ? (m.spec.verify ?? 'metadata') : 'none';
  const runnerArgs = [
    '--mode=runner',
    `--source=${SOURCE_MOUNT}`,
    `--target=${TARGET_MOUNT}`,
    `--verify=${verify}`,
    '--progress-interval=2',
  ];
  if (pass === 'final') {
    // The final pass mirrors: whatever the application deleted since pre-sync goes too.
    runnerArgs.push('--delete');
    // And compares the contents of everything changed since the migration began
    // (ctime, which no one can set back): size and mtime alone can lie.
    const created = Date.parse(String(m.metadata.creationTimestamp ?? ''));
    if (!Number.isNaN(created))
      runnerArgs.push(`--changed-since=${new Date(created - CHANGED_SINCE_MARGIN_MS).toISOString()}`);
  }
  // A live source changes under a pre-sync: files that vanish are the final pass's business.
  if (pass === 'presync') runnerArgs.push('--allow-vanished');
  if (settings.copyBandwidthLimitKiBps > 0) runnerArgs.push(`--bwlimit=${settings.copyBandwidthLimitKiBps}`);
  const measure = pass === 'measure';
  const requested = pendingSyncRequest(m);
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: copyPodNameFor(uid, pass),
      namespace: m.metadata.namespace,
      labels: {
        [LABEL_MANAGED_BY]: MANAGED_BY_VALUE,
        [LABEL_COMPONENT]: COMPONENT_COPY,
        [LABEL_MIGRATION_UID]: uid,
        [LABEL_COPY_PASS]: pass,
      },
      annotations: {
        [ANNOTATION_COPY_ATTEMPT]: String(m.status?.attempts?.[pass] ?? 0),
        ...(pass === 'presync' ? { [ANNOTATION_SYNC_PASS]: String((m.status?.syncPasses ?? 0) + 1) } : {}),
        ...(pass === 'presync' && requested ? { [ANNOTATION_SYNC_REQUEST]: requested } : {}),
      },
      ownerReferences: [
        {
          apiVersion: m.apiVersion,
          kind: m.kind,
          name: m.metadata.name,
          uid,
          controller: true,
          blockOwnerDeletion: false,
        },
      ],
    },
    spec: {
      restartPolicy: 'Never',
      automountServiceAccountToken: false,
      enableServiceLinks: false,
      terminationGracePeriodSeconds: 30,
      ...(Object.keys(nodeSelector).length ? { nodeSelector } : {}),
      ...(tolerations.length ? { tolerations } : {}),
      ...(settings.copyPriorityClassName ? { priorityClassName: settings.copyPriorityClassName } : {}),
      ...(affinity ? { affinity } : {}),
      // Root, so that every owner and mode can be written as it was; the runtime's
      // default seccomp profile always (Pod Security baseline and up require it not be Unconfined).
      securityContext: { runAsUser: 0, runAsGroup: 0, seccompProfile: { type: 'RuntimeDefault' } },
      containers: [
        {
          name: 'copy',
          image: settings.copyImage,
          ...(measure
            ? { command: ['/bin/sh', '-c', `du -sxB1 ${SOURCE_MOUNT} | cut -f1 > /dev/termination-log`] }
            : { args: runnerArgs }),
          ...(settings.copyResources ? { resources: settings.copyResources } : {}),
          terminationMessagePolicy: 'FallbackToLogsOnError',
          securityContext: {
            allowPrivilegeEscalation: false,
            capabilities: {
              drop: ['ALL'],
              add: [...BASELINE_CAPABILITIES, ...(privileged ? PRIVILEGED_CAPABILITIES : [])],
            },
          },
          volumeMounts: [
            { name: 'source', mountPath: SOURCE_MOUNT, readOnly: true },
            ...(measure ? [] : [{ name: 'target', mountPath: TARGET_MOUNT }]),
          ],
        },
      ],
      volumes: [
        { name: 'source', persistentVolumeClaim: { claimName: sourceClaim, readOnly: true } },
        ...(measure ? [] : [{ name: 'target', persistentVolumeClaim: { claimName: stagingClaimName(uid) } }]),
      ],
    },
  };
}
