// Pure decisions of the commands that change things: whether `abort` or
// `rollback` may set spec.abort in a phase (and what to say either way), the
// VolumeMigration `migrate` creates, and which PVs `cleanup` may release.
import type { V1PersistentVolume } from '@kubernetes/client-node';
import { ANNOTATION_MIGRATION, API_GROUP_VERSION, MIGRATION_KIND, migrationNameForClaim } from '../src/names.js';
import { isTerminal, phaseOf, type VolumeMigration } from '../src/volume-migration.js';
import type { CutoverFlag, VerifyFlag } from './args.js';
import type { RetainedVolume } from './render.js';

export type Decision = { act: true; message: string } | { act: false; ok: boolean; message: string };

function key(m: VolumeMigration): string {
  return `${m.metadata.namespace}/${m.metadata.name}`;
}

/** `kubectl pvshift abort`: set spec.abort, or refuse and say why. */
export function decideAbort(m: VolumeMigration): Decision {
  const phase = phaseOf(m);
  if (isTerminal(phase)) return { act: false, ok: false, message: `VolumeMigration ${key(m)} has already finished (${phase}); there is nothing to abort` };
  if (phase === 'Binding') {
    return { act: false, ok: false, message: `VolumeMigration ${key(m)} is Binding: the copy is verified and the new volume is being handed to the claim; too late to abort, it will finish` };
  }
  if (phase === 'RollingBack') return { act: false, ok: true, message: `VolumeMigration ${key(m)} is already rolling back to the original volume` };
  if (m.spec.abort) return { act: false, ok: true, message: `abort of VolumeMigration ${key(m)} was already requested (${phase})` };
  if (phase === 'CuttingOver' || phase === 'Populating') {
    return { act: true, message: `abort requested: VolumeMigration ${key(m)} was ${phase}; pvshift rolls claim ${m.spec.claimName} back to its original volume${m.status?.sourceVolumeName ? ` ${m.status.sourceVolumeName}` : ''}` };
  }
  return { act: true, message: `abort requested: VolumeMigration ${key(m)} was ${phase}, before cutover; pvshift cleans up and nothing of yours changes` };
}

/** `kubectl pvshift rollback`: only during cutover; the other phases get the command that fits. */
export function decideRollback(m: VolumeMigration): Decision {
  const phase = phaseOf(m);
  const ns = m.metadata.namespace;
  switch (phase) {
    case 'CuttingOver':
    case 'Populating':
      if (m.spec.abort) return { act: false, ok: true, message: `rollback of VolumeMigration ${key(m)} was already requested (${phase})` };
      return { act: true, message: `rollback requested: VolumeMigration ${key(m)} was ${phase}; claim ${m.spec.claimName} goes back to its original volume${m.status?.sourceVolumeName ? ` ${m.status.sourceVolumeName}` : ''}` };
    case 'Pending':
    case 'PreSyncing':
    case 'WaitingForCutover':
      return { act: false, ok: false, message: `VolumeMigration ${key(m)} is ${phase}: nothing has been cut over, so there is nothing to roll back; use kubectl pvshift abort ${m.metadata.name} -n ${ns}` };
    case 'Binding':
      return { act: false, ok: false, message: `VolumeMigration ${key(m)} is Binding: the copy is verified and the new volume is being handed to the claim; too late to roll back, it will finish` };
    case 'RollingBack':
      return { act: false, ok: true, message: `VolumeMigration ${key(m)} is already rolling back` };
    case 'Succeeded':
      return {
        act: false,
        ok: false,
        message: `VolumeMigration ${key(m)} has Succeeded; rolling back a finished migration is not supported yet (the old volume ${m.status?.sourceVolumeName ?? '<unknown>'} is kept, Released with reclaim policy Retain, holding the data as it was at cutover)`,
      };
    default:
      return { act: false, ok: false, message: `VolumeMigration ${key(m)} has already finished (${phase}); there is nothing to roll back` };
  }
}

export interface MigrateFlags {
  targetStorageClassName: string;
  targetSize?: string;
  noPresync?: boolean;
  verify?: VerifyFlag;
  cutover?: CutoverFlag;
}

/** The VolumeMigration for a claim, named after it (as the annotation shortcut names it). */
export function migrationFor(namespace: string, claimName: string, f: MigrateFlags): VolumeMigration {
  return {
    apiVersion: API_GROUP_VERSION,
    kind: MIGRATION_KIND,
    metadata: { name: migrationNameForClaim(claimName), namespace, labels: { 'app.kubernetes.io/created-by': 'kubectl-pvshift' } },
    spec: {
      claimName,
      targetStorageClassName: f.targetStorageClassName,
      ...(f.targetSize ? { targetSize: f.targetSize } : {}),
      ...(f.noPresync ? { preSync: false } : {}),
      ...(f.verify ? { verify: f.verify } : {}),
      ...(f.cutover ? { cutover: f.cutover === 'evict' ? 'Evict' : 'OnPodRecreate' } : {}),
    },
  };
}

/**
 * The old volumes that Succeeded migrations kept: annotated with their
 * migration, still Retain, and named as the migration's source. A volume whose
 * migration is gone or unfinished is not offered: nothing then says its data is
 * safe elsewhere.
 */
export function findRetained(volumes: V1PersistentVolume[], migrations: VolumeMigration[], namespace: string | undefined): RetainedVolume[] {
  const byKey = new Map(migrations.map((m) => [key(m), m]));
  const out: RetainedVolume[] = [];
  for (const pv of volumes) {
    const owner = pv.metadata?.annotations?.[ANNOTATION_MIGRATION];
    if (!owner || !owner.includes('/')) continue;
    const [ns] = owner.split('/');
    if (namespace !== undefined && ns !== namespace) continue;
    const m = byKey.get(owner);
    if (!m || phaseOf(m) !== 'Succeeded' || m.status?.sourceVolumeName !== pv.metadata?.name) continue;
    if (pv.spec?.persistentVolumeReclaimPolicy !== 'Retain') continue;
    out.push({
      name: pv.metadata?.name ?? '',
      capacity: String(pv.spec?.capacity?.storage ?? ''),
      claim: `${m.metadata.namespace}/${m.spec.claimName}`,
      migration: owner,
      reclaimPolicy: pv.spec?.persistentVolumeReclaimPolicy ?? '',
      phase: pv.status?.phase ?? '',
      retainedSince: m.status?.completionTime ?? null,
    });
  }
  return out.sort((a, b) => a.migration.localeCompare(b.migration) || a.name.localeCompare(b.name));
}
