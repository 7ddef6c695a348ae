// The plan's preflight: what `kubectl pvshift plan` says about each claim, as a
// pure function (facts read from the cluster in, one row with its findings out).
// The rules are the controller's (populator/plan.ts `validate()`, the shrink
// check, and src/pod-security.ts for what the namespace's Pod Security level
// lets a copy keep), said before anything is created: a refusal the user can
// read in the plan is one they never meet as a Failed migration.
import type { V1PersistentVolume, V1PersistentVolumeClaim } from '@kubernetes/client-node';
import { ANNOTATION_MIGRATION, LABEL_MANAGED_BY, MANAGED_BY_VALUE, migrationNameForClaim } from '../src/names.js';
import { copyFidelityFor } from '../src/pod-security.js';
import { formatBytes, parseQuantity } from '../src/quantity.js';
import { isTerminal, phaseOf, type Phase, type VolumeMigration } from '../src/volume-migration.js';

/**
 * The controller's headroom when it checks that measured data fits a smaller
 * target (`sizeHeadroom` in src/services.ts and populator/controller.ts).
 */
export const SIZE_HEADROOM = 0.1;

/** `blocking`: migrate skips the claim. `warning`: it moves, with a caveat. `info`: worth knowing. */
export type Severity = 'blocking' | 'warning' | 'info';

export interface Finding {
  severity: Severity;
  /** Stable for scripts; the controller's reason where it has one. */
  code: string;
  message: string;
}

/** What the CLI read about one claim. */
export interface ClaimFacts {
  claim: V1PersistentVolumeClaim;
  /** The bound PV, where the claim is bound and it exists. */
  volume?: V1PersistentVolume;
  /** Pods (names) that mount the claim. */
  consumers: string[];
  /** Controllers of those pods: `StatefulSet/web`, `Deployment/app`. */
  owners: string[];
  /** Every VolumeMigration in the claim's namespace (of any claim). */
  migrations: VolumeMigration[];
  /** Labels of the claim's namespace (its Pod Security level); absent when they could not be read. */
  namespaceLabels?: Record<string, string>;
}

export interface PlanRequest {
  targetStorageClassName: string;
  targetSize?: string;
  /** Whether the target StorageClass exists. */
  targetClassExists: boolean;
  noPresync?: boolean;
}

export interface PlanRow {
  namespace: string;
  claim: string;
  storageClass: string;
  targetStorageClass: string;
  size: string;
  targetSize: string;
  /** The bound PV's capacity (what the claim can hold at most). */
  capacity?: string;
  volumeName?: string;
  /** Bytes in use, where an earlier migration of the claim counted them; else undefined. */
  usedBytes?: number;
  /** Where usedBytes came from: a finished migration, or nowhere. */
  usedFrom: 'migration' | 'unknown';
  consumers: string[];
  owners: string[];
  findings: Finding[];
  /** No blocking finding: migrate would create its VolumeMigration. */
  ready: boolean;
  /** The finished VolumeMigration of the same name that migrate deletes before it creates the new one. */
  replaces?: { name: string; phase: Phase; uid?: string };
}

function requestOf(claim: V1PersistentVolumeClaim): string | undefined {
  const value = claim.spec?.resources?.requests?.storage as string | number | undefined;
  return value === undefined ? undefined : String(value);
}

function classOf(claim: V1PersistentVolumeClaim, volume?: V1PersistentVolume): string {
  return claim.spec?.storageClassName ?? volume?.spec?.storageClassName ?? '';
}

/** Bytes the last Succeeded migration of this claim counted (measure, or its final copy). */
export function usedBytesFromMigrations(claimName: string, migrations: VolumeMigration[]): number | undefined {
  const done = migrations
    .filter((m) => m.spec.claimName === claimName && phaseOf(m) === 'Succeeded')
    .sort((a, b) => String(b.status?.completionTime ?? '').localeCompare(String(a.status?.completionTime ?? '')));
  for (const m of done) {
    const final = (m.status?.copies ?? []).find((c) => c.pass === 'final');
    const bytes = m.status?.usedBytes ?? final?.bytes;
    if (bytes !== undefined) return bytes;
  }
  return undefined;
}

/** True for claims pvshift made itself (staging, source helper): never candidates. */
export function isPvshiftClaim(claim: V1PersistentVolumeClaim): boolean {
  return claim.metadata?.labels?.[LABEL_MANAGED_BY] === MANAGED_BY_VALUE;
}

export function preflight(facts: ClaimFacts, request: PlanRequest): PlanRow {
  const { claim, volume } = facts;
  const namespace = claim.metadata?.namespace ?? '';
  const name = claim.metadata?.name ?? '';
  const size = requestOf(claim) ?? '';
  const targetSize = request.targetSize ?? size;
  const storageClass = classOf(claim, volume);
  const capacityText = volume?.spec?.capacity?.storage;
  const usedBytes = usedBytesFromMigrations(name, facts.migrations);
  const findings: Finding[] = [];
  const block = (code: string, message: string) => findings.push({ severity: 'blocking', code, message });
  const warn = (code: string, message: string) => findings.push({ severity: 'warning', code, message });
  const info = (code: string, message: string) => findings.push({ severity: 'info', code, message });

  // Already under migration: by a migration of any name (the annotation shortcut
  // makes one named after the claim), or the name a new one would take is used.
  // A finished record of that name is only history: migrate replaces it.
  const active = facts.migrations.find((m) => m.spec.claimName === name && !isTerminal(phaseOf(m)));
  const sameName = facts.migrations.find((m) => m.metadata.name === migrationNameForClaim(name));
  const finished = !active && sameName && isTerminal(phaseOf(sameName)) ? sameName : undefined;
  if (active) {
    block(
      'AlreadyMigrating',
      `already being migrated by VolumeMigration ${active.metadata.name} (${phaseOf(active)}); see kubectl pvshift status ${active.metadata.name} -n ${namespace}`,
    );
  } else if (sameName && !isTerminal(phaseOf(sameName))) {
    block(
      'MigrationExists',
      `VolumeMigration ${sameName.metadata.name} (${phaseOf(sameName)}, for claim ${sameName.spec.claimName}) holds the name and has not finished; wait for it (kubectl pvshift status ${sameName.metadata.name} -n ${namespace}) or abort it`,
    );
  } else if (finished) {
    const kept = finished.status?.keptVolumes ?? [];
    const text = `VolumeMigration ${finished.metadata.name} has finished (${phaseOf(finished)}); migrate replaces it: deletes that record, waits until it is gone, then creates the new one`;
    if (kept.length) {
      warn(
        'ReplacesFinished',
        `${text}; the volumes it kept (${kept.map((k) => `${k.name} ${k.role}`).join(', ')}) stay, listed by kubectl pvshift cleanup, but its notes on them go with the record: read them first (kubectl pvshift status ${finished.metadata.name} -n ${namespace})`,
      );
    } else {
      info(
        'ReplacesFinished',
        `${text}${phaseOf(finished) === 'Succeeded' ? '; the old volume it kept stays, listed by kubectl pvshift cleanup' : ''}`,
      );
    }
  }
  if (claim.status?.phase !== 'Bound' || !claim.spec?.volumeName) {
    block('ClaimNotBound', `claim is ${claim.status?.phase ?? 'Pending'}, not Bound: there is no volume to copy from`);
  } else if (!volume) {
    block('VolumeNotFound', `claim is bound to ${claim.spec.volumeName}, which does not exist`);
  }
  if ((claim.spec?.volumeMode ?? 'Filesystem') === 'Block') {
    block('BlockVolumeUnsupported', 'volumeMode Block is not supported: pvshift copies files, Filesystem volumes only');
  }
  if (!request.targetClassExists) {
    block(
      'StorageClassNotFound',
      `target StorageClass ${request.targetStorageClassName} does not exist; see kubectl get storageclass`,
    );
  }
  if ((claim.spec?.accessModes ?? []).includes('ReadWriteOncePod')) {
    warn(
      'NoPreSync',
      'ReadWriteOncePod: no pre-sync (a copy pod cannot mount it while the application runs), so the whole copy is downtime',
    );
  }
  const target = parseQuantity(targetSize);
  const capacity = parseQuantity(capacityText ?? claim.status?.capacity?.storage);
  if (storageClass === request.targetStorageClassName && target !== undefined && target === parseQuantity(size)) {
    block('NothingToChange', `already on StorageClass ${storageClass} with size ${size}; give another --to or --size`);
  }
  if (target !== undefined && capacity !== undefined && target < capacity) {
    if (usedBytes !== undefined) {
      const needed = Math.ceil(usedBytes * (1 + SIZE_HEADROOM));
      if (needed > target) {
        block(
          'TargetTooSmall',
          `the claim held ${formatBytes(usedBytes)} at its last migration; with ${Math.round(SIZE_HEADROOM * 100)}% headroom the target needs ${formatBytes(needed)}, but the target size is ${formatBytes(target)}`,
        );
      } else {
        warn(
          'Shrink',
          `target ${formatBytes(target)} is below the volume's capacity ${formatBytes(capacity)}: the data will be measured; refused if the data does not fit`,
        );
      }
    } else {
      warn(
        'Shrink',
        `target ${formatBytes(target)} is below the volume's capacity ${formatBytes(capacity)}: the data will be measured; refused if the data does not fit`,
      );
    }
  }
  if (claim.metadata?.annotations?.[ANNOTATION_MIGRATION] && !active) {
    info('MigratedBefore', `came from VolumeMigration ${claim.metadata.annotations[ANNOTATION_MIGRATION]}`);
  }
  // What the namespace's Pod Security level costs, said before anything starts
  // (the controller decides the copy pods with the same rule).
  if (facts.namespaceLabels === undefined) {
    info(
      'PodSecurityUnknown',
      `could not read namespace ${namespace}: its Pod Security level (and what the copy may keep) is checked when the migration starts`,
    );
  } else {
    const fidelity = copyFidelityFor(namespace, facts.namespaceLabels);
    if (!fidelity.ok) block(fidelity.reason, fidelity.message);
    else if (fidelity.fidelity.dropped.length) warn('CopyFidelity', fidelity.note);
  }
  if (facts.consumers.length === 0 && findings.every((f) => f.severity !== 'blocking')) {
    info('NoConsumer', 'no pod mounts it: cutover starts when a pod that mounts it is created');
  }
  return {
    namespace,
    claim: name,
    storageClass,
    targetStorageClass: request.targetStorageClassName,
    size,
    targetSize,
    ...(capacityText !== undefined ? { capacity: capacityText } : {}),
    ...(claim.spec?.volumeName ? { volumeName: claim.spec.volumeName } : {}),
    ...(usedBytes !== undefined ? { usedBytes } : {}),
    usedFrom: usedBytes !== undefined ? 'migration' : 'unknown',
    consumers: [...facts.consumers].sort(),
    owners: [...new Set(facts.owners)].sort(),
    findings,
    ready: findings.every((f) => f.severity !== 'blocking'),
    ...(finished
      ? {
          replaces: {
            name: finished.metadata.name,
            phase: phaseOf(finished),
            ...(finished.metadata.uid ? { uid: finished.metadata.uid } : {}),
          },
        }
      : {}),
  };
}
