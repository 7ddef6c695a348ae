// Builders of the objects the CLI unit tests feed its pure functions.
import type { V1ObjectReference, V1PersistentVolume, V1PersistentVolumeClaim } from '@kubernetes/client-node';
import type { Phase, VolumeMigration, VolumeMigrationStatus } from '../../src/volume-migration.js';

export const NOW = new Date('2025-03-04T12:00:00Z');
export const ago = (seconds: number) => new Date(NOW.getTime() - seconds * 1000).toISOString();

export function pvc(
  name: string,
  o: {
    ns?: string;
    cls?: string;
    size?: string;
    phase?: string;
    volume?: string;
    mode?: string;
    access?: string[];
    annotations?: Record<string, string>;
  } = {},
): V1PersistentVolumeClaim {
  const phase = o.phase ?? 'Bound';
  return {
    metadata: { name, namespace: o.ns ?? 'shop', ...(o.annotations ? { annotations: o.annotations } : {}) },
    spec: {
      storageClassName: o.cls ?? 'standard',
      accessModes: o.access ?? ['ReadWriteOnce'],
      resources: { requests: { storage: o.size ?? '10Gi' } },
      ...(o.mode ? { volumeMode: o.mode } : {}),
      ...(phase === 'Bound' ? { volumeName: o.volume ?? `pv-${name}` } : {}),
    },
    status: { phase },
  };
}

/** Namespace labels under which copy pods keep everything (privileged, with pvshift's opt-in). */
export const FULL_FIDELITY: Record<string, string> = {
  'pod-security.kubernetes.io/enforce': 'privileged',
  'pvshift.io/privileged-copy': 'true',
};

export function pv(
  name: string,
  o: {
    capacity?: string;
    cls?: string;
    policy?: string;
    phase?: string;
    annotations?: Record<string, string>;
    claimRef?: V1ObjectReference;
  } = {},
): V1PersistentVolume {
  return {
    metadata: { name, ...(o.annotations ? { annotations: o.annotations } : {}) },
    spec: {
      capacity: { storage: o.capacity ?? '10Gi' },
      storageClassName: o.cls ?? 'standard',
      persistentVolumeReclaimPolicy: o.policy ?? 'Delete',
      ...(o.claimRef ? { claimRef: o.claimRef } : {}),
    },
    status: { phase: o.phase ?? 'Bound' },
  };
}

export function vm(
  name: string,
  phase: Phase | undefined,
  o: {
    ns?: string;
    claim?: string;
    to?: string;
    size?: string;
    abort?: boolean;
    created?: number;
    status?: VolumeMigrationStatus;
  } = {},
): VolumeMigration {
  return {
    apiVersion: 'pvshift.io/v1alpha1',
    kind: 'VolumeMigration',
    metadata: {
      name,
      namespace: o.ns ?? 'shop',
      creationTimestamp: ago(o.created ?? 600) as unknown as Date,
      resourceVersion: '1',
    },
    spec: {
      claimName: o.claim ?? name,
      targetStorageClassName: o.to ?? 'fast',
      ...(o.size ? { targetSize: o.size } : {}),
      ...(o.abort ? { abort: true } : {}),
    },
    ...(phase || o.status ? { status: { ...(phase ? { phase } : {}), ...o.status } } : {}),
  };
}
