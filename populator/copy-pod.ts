// The copy pod of each pass, as a pure function of the migration and the world.
// Children are named from the migration's UID, so a rerun finds its pod again.
import type { V1Affinity, V1PersistentVolume, V1Pod, V1Toleration } from '@kubernetes/client-node';
import { ANNOTATION_COPY_ATTEMPT, COMPONENT_COPY, LABEL_COMPONENT, LABEL_MANAGED_BY, LABEL_MIGRATION_UID, MANAGED_BY_VALUE, copyPodName, sourceHelperClaimName, stagingClaimName } from '../src/names.js';
import type { VolumeMigration } from '../src/volume-migration.js';
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

export function buildCopyPod(w: World, pass: Pass): V1Pod {
  const m: VolumeMigration = w.migration;
  const uid = m.metadata.uid ?? '';
  const settings = w.settings;
  const node = pinnedNode(w, pass);
  const sourceClaim = pass === 'final' ? sourceHelperClaimName(uid) : m.spec.claimName;
  const affinity: V1Affinity | undefined = node
    ? { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: 'kubernetes.io/hostname', operator: 'In', values: [node] }] }] } } }
    : undefined;
  const verify = pass === 'final' ? (m.spec.verify ?? 'metadata') : 'none';
  const runnerArgs = ['--mode=runner', `--source=${SOURCE_MOUNT}`, `--target=${TARGET_MOUNT}`, `--verify=${verify}`, '--progress-interval=2'];
  // The final pass mirrors: whatever the application deleted since pre-sync goes too.
  if (pass === 'final') runnerArgs.push('--delete');
  if (settings.copyBandwidthLimitKiBps > 0) runnerArgs.push(`--bwlimit=${settings.copyBandwidthLimitKiBps}`);
  const measure = pass === 'measure';
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: copyPodNameFor(uid, pass),
      namespace: m.metadata.namespace,
      labels: { [LABEL_MANAGED_BY]: MANAGED_BY_VALUE, [LABEL_COMPONENT]: COMPONENT_COPY, [LABEL_MIGRATION_UID]: uid, 'pvshift.io/pass': pass },
      annotations: { [ANNOTATION_COPY_ATTEMPT]: String(m.status?.attempts?.[pass] ?? 0) },
      ownerReferences: [{ apiVersion: m.apiVersion, kind: m.kind, name: m.metadata.name, uid, controller: true, blockOwnerDeletion: false }],
    },
    spec: {
      restartPolicy: 'Never',
      automountServiceAccountToken: false,
      enableServiceLinks: false,
      terminationGracePeriodSeconds: 30,
      ...(Object.keys(settings.copyNodeSelector).length ? { nodeSelector: settings.copyNodeSelector } : {}),
      ...(settings.copyTolerations.length ? { tolerations: settings.copyTolerations as V1Toleration[] } : {}),
      ...(settings.copyPriorityClassName ? { priorityClassName: settings.copyPriorityClassName } : {}),
      ...(affinity ? { affinity } : {}),
      // Root, so that every owner and mode can be written as it was.
      securityContext: { runAsUser: 0, runAsGroup: 0 },
      containers: [
        {
          name: 'copy',
          image: settings.copyImage,
          ...(measure
            ? { command: ['/bin/sh', '-c', `du -sxB1 ${SOURCE_MOUNT} | cut -f1 > /dev/termination-log`] }
            : { args: runnerArgs }),
          ...(settings.copyResources ? { resources: settings.copyResources } : {}),
          terminationMessagePolicy: 'FallbackToLogsOnError',
          securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'], add: ['CHOWN', 'DAC_OVERRIDE', 'DAC_READ_SEARCH', 'FOWNER', 'FSETID', 'MKNOD', 'SETFCAP', 'SYS_ADMIN'] } },
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
