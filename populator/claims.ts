// The claims of pvshift's own that the planner creates (staging and source
// helper), and the snapshot of the user's claim it records before cutover. The
// claims under the user's name (replacement, restored original) are built in
// src/replacement-claim.ts, which the webhook shares.
import type { V1PersistentVolume, V1PersistentVolumeClaim, V1PersistentVolumeClaimSpec } from '@kubernetes/client-node';
import {
  ANNOTATION_MIGRATION,
  COMPONENT_SOURCE_HELPER,
  COMPONENT_STAGING,
  LABEL_COMPONENT,
  LABEL_MANAGED_BY,
  LABEL_MIGRATION_UID,
  MANAGED_BY_VALUE,
  sourceHelperClaimName,
  stagingClaimName,
} from '../src/names.js';
import type { ClaimSnapshot, VolumeMigration } from '../src/volume-migration.js';

function managedLabels(m: VolumeMigration, component: string): Record<string, string> {
  return {
    [LABEL_MANAGED_BY]: MANAGED_BY_VALUE,
    [LABEL_COMPONENT]: component,
    [LABEL_MIGRATION_UID]: m.metadata.uid ?? '',
  };
}

function ownerReference(m: VolumeMigration) {
  return [
    {
      apiVersion: m.apiVersion,
      kind: m.kind,
      name: m.metadata.name,
      uid: m.metadata.uid ?? '',
      controller: true,
      blockOwnerDeletion: false,
    },
  ];
}

/** A claim of pvshift's own: labelled, owned by the migration, excluded from the claim webhook. */
function managedClaim(
  m: VolumeMigration,
  component: string,
  name: string,
  spec: V1PersistentVolumeClaimSpec,
): V1PersistentVolumeClaim {
  return {
    apiVersion: 'v1',
    kind: 'PersistentVolumeClaim',
    metadata: {
      name,
      namespace: m.metadata.namespace,
      labels: managedLabels(m, component),
      annotations: { [ANNOTATION_MIGRATION]: m.metadata.name },
      ownerReferences: ownerReference(m),
    },
    spec,
  };
}

/** Where the copy lands: `target` is targetSpecOf's, so the volume provisioned for it fits the replacement it is handed to. */
export function stagingClaim(m: VolumeMigration, target: V1PersistentVolumeClaimSpec): V1PersistentVolumeClaim {
  return managedClaim(m, COMPONENT_STAGING, stagingClaimName(m.metadata.uid ?? ''), structuredClone(target));
}

/** Binds the retained source PV (claimRef moved to it) so a copy pod can mount it. */
export function helperClaim(m: VolumeMigration, source: V1PersistentVolume): V1PersistentVolumeClaim {
  return managedClaim(m, COMPONENT_SOURCE_HELPER, sourceHelperClaimName(m.metadata.uid ?? ''), {
    storageClassName: source.spec?.storageClassName ?? '',
    accessModes: source.spec?.accessModes ?? ['ReadWriteOnce'],
    volumeMode: source.spec?.volumeMode ?? 'Filesystem',
    volumeName: source.metadata?.name,
    resources: { requests: { storage: String(source.spec?.capacity?.storage ?? '1Gi') } },
  });
}

/** What status.originalClaim records of the user's claim: enough to tell it from a replacement and to restore it. */
export function snapshotOf(claim: V1PersistentVolumeClaim): ClaimSnapshot {
  const spec = structuredClone(claim.spec ?? {});
  return {
    ...(claim.metadata?.labels ? { labels: { ...claim.metadata.labels } } : {}),
    ...(claim.metadata?.annotations ? { annotations: { ...claim.metadata.annotations } } : {}),
    spec,
    ...(claim.metadata?.uid ? { uid: claim.metadata.uid } : {}),
  };
}
