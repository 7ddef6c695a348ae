// Pure decisions of the commands that change things: whether `abort` or
// `rollback` may set spec.abort in a phase (and what to say either way), whether
// `sync` may ask for a re-sync, the
// VolumeMigration `migrate` creates, and which PVs `cleanup` may release.
import type { V1PersistentVolume } from '@kubernetes/client-node';
import {
  ANNOTATION_MIGRATION,
  ANNOTATION_MIGRATION_UID,
  API_GROUP_VERSION,
  CREATED_BY_PLUGIN,
  LABEL_CREATED_BY,
  MIGRATION_KIND,
  migrationNameForClaim,
} from '../src/names.js';
import {
  isPreSyncEnabled,
  isTerminal,
  pendingSyncRequest,
  phaseOf,
  type VolumeMigration,
} from '../src/volume-migration.js';
import type { CutoverFlag, VerifyFlag } from './args.js';
import type { RetainedVolume } from './render.js';

export type Decision = { act: true; message: string } | { act: false; ok: boolean; message: string };

function key(m: VolumeMigration): string {
  return `${m.metadata.namespace}/${m.metadata.name}`;
}

function keptText(m: VolumeMigration): string {
  const kept = m.status?.keptVolumes ?? [];
  return kept.length ? kept.map((k) => `${k.name} (${k.role})`).join(', ') : 'none';
}

/** `kubectl pvshift abort`: set spec.abort, or refuse and say why. */
export function decideAbort(m: VolumeMigration): Decision {
  const phase = phaseOf(m);
  if (isTerminal(phase))
    return {
      act: false,
      ok: false,
      message: `VolumeMigration ${key(m)} has already finished (${phase}); there is nothing to abort`,
    };
  if (phase === 'RollingBack')
    return {
      act: false,
      ok: true,
      message: `VolumeMigration ${key(m)} is already rolling back to the original volume`,
    };
  // spec.abort usually started the rollback that could not finish, so it cannot also mean "let go": deletion does.
  if (phase === 'Held') return { act: false, ok: false, message: heldRelease(m) };
  if (m.spec.abort)
    return { act: false, ok: true, message: `abort of VolumeMigration ${key(m)} was already requested (${phase})` };
  const source = m.status?.sourceVolumeName ? ` ${m.status.sourceVolumeName}` : '';
  switch (phase) {
    case 'CuttingOver':
    case 'Populating':
      return {
        act: true,
        message: `abort requested: VolumeMigration ${key(m)} was ${phase}; pvshift rolls claim ${m.spec.claimName} back to its original volume${source}`,
      };
    case 'Binding':
      // The controller rolls back until the replacement claim is bound to the copy; from then on, finishing is the safe way out.
      return {
        act: true,
        message: `abort requested: VolumeMigration ${key(m)} was Binding; pvshift rolls claim ${m.spec.claimName} back to its original volume${source}, unless the claim is already bound to the new volume: then the migration finishes`,
      };
    default:
      return {
        act: true,
        message: `abort requested: VolumeMigration ${key(m)} was ${phase}, before cutover; pvshift cleans up and nothing of yours changes`,
      };
  }
}

/**
 * `kubectl pvshift sync`: a re-sync pass can be asked for only while the
 * migration waits for its cutover with pre-sync on; before, the first pre-sync
 * copies everything anyway, and after, the final copy does.
 */
export function decideSync(m: VolumeMigration): Decision {
  const phase = phaseOf(m);
  if (isTerminal(phase))
    return {
      act: false,
      ok: false,
      message: `VolumeMigration ${key(m)} has finished (${phase}); there is nothing to sync`,
    };
  switch (phase) {
    case 'Pending':
    case 'PreSyncing':
      return {
        act: false,
        ok: false,
        message: `VolumeMigration ${key(m)} is ${phase}: its first pre-sync copies everything; ask again once it waits for cutover`,
      };
    case 'WaitingForCutover':
      break;
    default:
      return {
        act: false,
        ok: false,
        message: `VolumeMigration ${key(m)} is ${phase}: the cutover has started, and its final copy brings everything over`,
      };
  }
  if (!isPreSyncEnabled(m, m.status?.originalClaim))
    return {
      act: false,
      ok: false,
      message: `VolumeMigration ${key(m)} does not pre-sync (spec.preSync, or a ReadWriteOncePod claim): there is no pass to repeat; the final copy copies everything at cutover`,
    };
  if (pendingSyncRequest(m))
    return { act: false, ok: true, message: `a re-sync of VolumeMigration ${key(m)} was already requested` };
  return { act: true, message: `re-sync requested: VolumeMigration ${key(m)}` };
}

/** The way out of Held: deleting the record releases the pods; what it kept stays. */
export function heldRelease(m: VolumeMigration): string {
  return `VolumeMigration ${key(m)} is Held: it can neither roll back nor finish (${m.status?.message ?? 'see its status'}); kept volumes: ${keptText(m)}; to release the held pods, delete it: kubectl delete volumemigration ${m.metadata.name} -n ${m.metadata.namespace} (the kept volumes stay, Retain, owned by nothing)`;
}

/** `kubectl pvshift rollback`: only after cutover, while the original volume is one step away; the other phases get the command that fits. */
export function decideRollback(m: VolumeMigration): Decision {
  const phase = phaseOf(m);
  const ns = m.metadata.namespace;
  const source = m.status?.sourceVolumeName ? ` ${m.status.sourceVolumeName}` : '';
  switch (phase) {
    case 'CuttingOver':
    case 'Populating':
      if (m.spec.abort)
        return {
          act: false,
          ok: true,
          message: `rollback of VolumeMigration ${key(m)} was already requested (${phase})`,
        };
      return {
        act: true,
        message: `rollback requested: VolumeMigration ${key(m)} was ${phase}; claim ${m.spec.claimName} goes back to its original volume${source}`,
      };
    case 'Binding':
      if (m.spec.abort)
        return {
          act: false,
          ok: true,
          message: `rollback of VolumeMigration ${key(m)} was already requested (${phase})`,
        };
      return {
        act: true,
        message: `rollback requested: VolumeMigration ${key(m)} was Binding; claim ${m.spec.claimName} goes back to its original volume${source}, unless it is already bound to the new volume: then the migration finishes (see kubectl pvshift status ${m.metadata.name} -n ${ns})`,
      };
    case 'Held':
      return {
        act: false,
        ok: false,
        message: heldRelease(m),
      };
    case 'Pending':
    case 'PreSyncing':
    case 'WaitingForCutover':
      return {
        act: false,
        ok: false,
        message: `VolumeMigration ${key(m)} is ${phase}: nothing has been cut over, so there is nothing to roll back; use kubectl pvshift abort ${m.metadata.name} -n ${ns}`,
      };
    case 'RollingBack':
      return { act: false, ok: true, message: `VolumeMigration ${key(m)} is already rolling back` };
    case 'Succeeded':
      return {
        act: false,
        ok: false,
        message: `VolumeMigration ${key(m)} has Succeeded; rolling back a finished migration is not supported yet (the old volume ${m.status?.sourceVolumeName ?? '<unknown>'} is kept, Released with reclaim policy Retain, holding the data as it was at cutover)`,
      };
    default:
      return {
        act: false,
        ok: false,
        message: `VolumeMigration ${key(m)} has already finished (${phase}); there is nothing to roll back`,
      };
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
    metadata: { name: migrationNameForClaim(claimName), namespace, labels: { [LABEL_CREATED_BY]: CREATED_BY_PLUGIN } },
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

/** Why a volume may not be released, or undefined when it may. */
function whyKept(
  pv: V1PersistentVolume,
  record: VolumeMigration | undefined,
  sameKeyUnfinished: VolumeMigration | undefined,
  claimUids: ReadonlySet<string>,
): string | undefined {
  const ref = pv.spec?.claimRef;
  const phase = pv.status?.phase ?? 'Pending';
  // Bound again (by the user, to get the data back, or as a migration's new
  // volume): Delete would take the data with the claim's deletion.
  if (phase === 'Bound') return `bound to claim ${ref?.namespace}/${ref?.name}: in use`;
  if (ref?.uid && claimUids.has(ref.uid)) return `claim ${ref.namespace}/${ref.name} holds it: in use`;
  if (!(phase === 'Released' || (phase === 'Available' && !ref))) {
    return phase === 'Available' ? `reserved for claim ${ref?.namespace}/${ref?.name}` : `volume is ${phase}`;
  }
  const holder = record && !isTerminal(phaseOf(record)) ? record : sameKeyUnfinished;
  if (holder)
    return `VolumeMigration ${key(holder)} is ${phaseOf(holder)}, not finished; see kubectl pvshift status ${holder.metadata.name} -n ${holder.metadata.namespace}`;
  // Kept on purpose after a failure (possibly the only full copy): the record
  // says what it holds; releasing it is a decision made by deleting the record.
  const kept = record?.status?.keptVolumes?.find((k) => k.name === pv.metadata?.name);
  if (record && kept) {
    return `VolumeMigration ${key(record)} (${phaseOf(record)}) keeps it on purpose (${kept.role}); see kubectl pvshift status ${record.metadata.name} -n ${record.metadata.namespace}, and delete that record once you no longer need the data`;
  }
  return undefined;
}

/** The claims pvshift makes for itself (`pvshift-<uid>-source|target`): a claimRef to one says nothing to the user. */
const PVSHIFT_CLAIM = /^pvshift-[0-9a-f-]{36}-(source|target)$/;

/** Whether the record names the volume as one of its own. */
function names(m: VolumeMigration, volumeName: string): boolean {
  const s = m.status;
  return (
    s?.sourceVolumeName === volumeName ||
    s?.targetVolumeName === volumeName ||
    (s?.keptVolumes ?? []).some((k) => k.name === volumeName)
  );
}

/**
 * Every volume pvshift retained (annotated with its migration or the
 * migration's UID, reclaim policy still Retain), whatever became of its
 * VolumeMigration: a record deleted by hand or replaced by a new migration of
 * the claim must not make a volume, and the storage behind it, invisible.
 * Each says whether `cleanup --yes` may release it: only a volume no claim
 * uses (Released, or Available and claimed by nothing) and that no unfinished
 * migration may still need.
 *
 * `claimUids`: the UIDs of the claims that exist (a Released volume whose
 * claimRef names one is about to be bound again).
 */
export function findRetained(
  volumes: V1PersistentVolume[],
  migrations: VolumeMigration[],
  claimUids: ReadonlySet<string>,
  namespace: string | undefined,
): RetainedVolume[] {
  const byUid = new Map(migrations.flatMap((m) => (m.metadata.uid ? [[m.metadata.uid, m] as const] : [])));
  const byKey = new Map(migrations.map((m) => [key(m), m]));
  const out: RetainedVolume[] = [];
  for (const pv of volumes) {
    const annotations = pv.metadata?.annotations ?? {};
    const owner = annotations[ANNOTATION_MIGRATION];
    const ownerUid = annotations[ANNOTATION_MIGRATION_UID];
    if (!owner && !ownerUid) continue;
    if (pv.spec?.persistentVolumeReclaimPolicy !== 'Retain') continue;
    const name = pv.metadata?.name ?? '';
    const sameKey = owner ? byKey.get(owner) : undefined;
    // The UID says which record is the volume's own; a volume stamped before
    // UIDs counts as a record's only when the record names it (a record of the
    // same name may be a later migration of the claim).
    const record = ownerUid ? byUid.get(ownerUid) : sameKey && names(sameKey, name) ? sameKey : undefined;
    const sameKeyUnfinished = !ownerUid && sameKey && !isTerminal(phaseOf(sameKey)) ? sameKey : undefined;
    const ref = pv.spec?.claimRef;
    const ns = record?.metadata.namespace ?? (owner?.includes('/') ? owner.split('/')[0] : undefined) ?? ref?.namespace;
    if (namespace !== undefined && ns !== namespace) continue;
    // Before cutover the claimRef is the user's claim; after it, pvshift's helper claim.
    const claim = record
      ? `${record.metadata.namespace}/${record.spec.claimName}`
      : ref?.name && !PVSHIFT_CLAIM.test(ref.name)
        ? `${ref.namespace}/${ref.name}`
        : '<unknown>';
    const reason = whyKept(pv, record, sameKeyUnfinished, claimUids);
    const kept = record?.status?.keptVolumes?.find((k) => k.name === name);
    out.push({
      name,
      capacity: String(pv.spec?.capacity?.storage ?? ''),
      claim,
      migration: record ? key(record) : (owner ?? '<unknown>'),
      migrationUid: ownerUid ?? record?.metadata.uid ?? null,
      record: record ? phaseOf(record) : 'record deleted',
      reclaimPolicy: pv.spec?.persistentVolumeReclaimPolicy ?? '',
      phase: pv.status?.phase ?? '',
      retainedSince: record?.status?.completionTime ?? null,
      ...(kept ? { kept: { role: kept.role, message: kept.message } } : {}),
      releasable: reason === undefined,
      reason: reason ?? null,
    });
  }
  return out.sort((a, b) => a.migration.localeCompare(b.migration) || a.name.localeCompare(b.name));
}
