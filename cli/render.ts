// Rendering for kubectl-pvshift: pure functions, data in and text out, with
// `now` and colour passed in, so every table is a snapshot test.
import { stringify } from 'yaml';
import { formatBytes } from '../src/quantity.js';
import { LABEL_PRIVILEGED_COPY } from '../src/names.js';
import {
  isTerminal,
  phaseOf,
  type CopyFidelity,
  type KeptVolume,
  type Phase,
  type SyncDelta,
  type VolumeMigration,
  type VolumeMigrationStatus,
} from '../src/volume-migration.js';
import type { Finding, PlanRow } from './preflight.js';
import type { WorkloadStatus } from './workload.js';

export interface RenderOptions {
  /** ANSI colours: only when stdout is a terminal and NO_COLOR is unset. */
  color: boolean;
  /** Show the NAMESPACE column (-A, or rows from several namespaces). */
  showNamespace: boolean;
  now: Date;
}

const ANSI = { red: 31, green: 32, yellow: 33, blue: 34, dim: 2, bold: 1 } as const;
type Colour = keyof typeof ANSI;

export function paint(text: string, colour: Colour | undefined, enabled: boolean): string {
  return enabled && colour && text ? `\x1b[${ANSI[colour]}m${text}\x1b[0m` : text;
}

export interface Cell {
  text: string;
  colour?: Colour;
}

/** kubectl-style columns: upper-case headers, two spaces apart, the last column unpadded. */
export function table(headers: string[], rows: (string | Cell)[][], color = false): string {
  const cells = rows.map((row) => row.map((c) => (typeof c === 'string' ? { text: c } : c)));
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => r[i]?.text.length ?? 0)));
  const line = (row: Cell[]) =>
    row
      .map((c, i) => {
        const text = i === row.length - 1 ? c.text : c.text.padEnd(widths[i] ?? 0);
        // Colour after padding, so escape codes never count as width.
        return paint(text, c.colour, color);
      })
      .join('  ')
      .trimEnd();
  return [line(headers.map((h) => ({ text: h }))), ...cells.map(line)].join('\n') + '\n';
}

/** `[########------------]  40%`; empty brackets when the total is unknown. */
export function progressBar(done: number, total: number, width = 20): string {
  if (!(total > 0)) return `[${' '.repeat(width)}]    ?`;
  const fraction = Math.min(1, Math.max(0, done / total));
  const filled = Math.floor(fraction * width);
  const percent = Math.floor(fraction * 100);
  return `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${String(percent).padStart(3)}%`;
}

/** `45s`, `3m05s`, `2h04m`: short and sortable by eye. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  const h = Math.floor(s / 3600);
  if (h < 48) return `${h}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(h / 24)}d`;
}

/** kubectl's AGE: `12s`, `5m`, `3h`, `4d`. */
export function formatAge(from: string | Date | undefined, now: Date): string {
  if (from === undefined) return '<unknown>';
  const seconds = Math.max(0, Math.floor((now.getTime() - new Date(from).getTime()) / 1000));
  if (!Number.isFinite(seconds)) return '<unknown>';
  if (seconds < 120) return `${seconds}s`;
  if (seconds < 3600 * 2) return `${Math.floor(seconds / 60)}m`;
  if (seconds < 86400 * 2) return `${Math.floor(seconds / 3600)}h`;
  return `${Math.floor(seconds / 86400)}d`;
}

function phaseColour(phase: Phase): Colour | undefined {
  if (phase === 'Succeeded') return 'green';
  if (phase === 'Failed' || phase === 'RolledBack' || phase === 'RollingBack' || phase === 'Held') return 'red';
  if (phase === 'Aborted') return 'yellow';
  return 'blue';
}

const SEVERITY_COLOUR: Record<Finding['severity'], Colour> = { blocking: 'red', warning: 'yellow', info: 'dim' };

function list(items: string[]): string {
  return items.length ? items.join(',') : '<none>';
}

// --- plan ---------------------------------------------------------------------

export function usedText(row: PlanRow): string {
  if (row.usedBytes !== undefined) return formatBytes(row.usedBytes);
  return row.capacity ? `unknown (<= ${row.capacity})` : 'unknown';
}

function verdict(row: PlanRow): Cell {
  if (!row.ready) return { text: 'blocked', colour: 'red' };
  const warnings = row.findings.filter((f) => f.severity === 'warning').length;
  return warnings
    ? { text: `ok, ${warnings} warning${warnings > 1 ? 's' : ''}`, colour: 'yellow' }
    : { text: 'ok', colour: 'green' };
}

export function renderPlan(rows: PlanRow[], o: RenderOptions): string {
  if (rows.length === 0) return 'No claims match.\n';
  const headers = [
    ...(o.showNamespace ? ['NAMESPACE'] : []),
    'CLAIM',
    'CLASS',
    'SIZE',
    'USED',
    'CONSUMERS',
    'OWNERS',
    'VERDICT',
  ];
  const body = rows.map((r) => [
    ...(o.showNamespace ? [r.namespace] : []),
    r.claim,
    `${r.storageClass || '<none>'} -> ${r.targetStorageClass}`,
    r.size === r.targetSize ? r.size || '<none>' : `${r.size || '<none>'} -> ${r.targetSize}`,
    usedText(r),
    list(r.consumers),
    list(r.owners),
    verdict(r),
  ]);
  let text = table(headers, body, o.color);
  const noted = rows.filter((r) => r.findings.length);
  if (noted.length) {
    text += '\nFindings:\n';
    for (const r of noted) {
      for (const f of r.findings) {
        text += `  ${o.showNamespace ? `${r.namespace}/` : ''}${r.claim}: ${paint(f.severity, SEVERITY_COLOUR[f.severity], o.color)} ${f.code}: ${f.message}\n`;
      }
    }
  }
  const ready = rows.filter((r) => r.ready).length;
  text += `\n${ready} of ${rows.length} claim${rows.length > 1 ? 's' : ''} would move${ready < rows.length ? `; ${rows.length - ready} blocked` : ''}.\n`;
  return text;
}

/** A StatefulSet's plan: what `plan sts/NAME` prints and `-o json|yaml` gives. */
export interface WorkloadPlanView {
  workload: { name: string; namespace: string; replicas: number; templates: string[] };
  target: string;
  /** What stops `migrate sts/NAME` (each finding as `claim: CODE: message`); empty: it would annotate the set. */
  blockers: string[];
  /** What the rollout will meet, said once for the StatefulSet. */
  findings: Finding[];
  items: PlanRow[];
}

export function renderWorkloadPlan(view: WorkloadPlanView, o: RenderOptions): string {
  const { name, namespace, replicas, templates } = view.workload;
  let text = `StatefulSet ${name}: ${replicas} replica${replicas === 1 ? '' : 's'}, template${templates.length > 1 ? 's' : ''} ${templates.join(', ')}\n\n`;
  text += renderPlan(view.items, o);
  if (view.findings.length) {
    text += `\nRollout of StatefulSet ${name}:\n`;
    for (const f of view.findings)
      text += `  ${paint(f.severity, SEVERITY_COLOUR[f.severity], o.color)} ${f.code}: ${f.message}\n`;
  }
  text += view.blockers.length
    ? `\nmigrate sts/${name} would refuse: ${view.blockers.length} blocking finding${view.blockers.length > 1 ? 's' : ''} (a replica already on ${view.target}, or already migrating, does not count).\n`
    : `\nmigrate sts/${name} --to ${view.target} annotates the StatefulSet; then run kubectl rollout restart statefulset/${name} -n ${namespace} to cut over one replica at a time.\n`;
  return text;
}

// --- status ---------------------------------------------------------------------

/** The stable, script-facing view of one migration (-o json|yaml). */
export interface StatusItem {
  namespace: string;
  name: string;
  claim: string;
  sourceStorageClass: string | null;
  targetStorageClass: string;
  targetSize: string | null;
  phase: Phase;
  terminal: boolean;
  abortRequested: boolean;
  progress: {
    bytesDone: number;
    bytesTotal: number;
    filesDone: number;
    filesTotal: number;
    percent: number | null;
    bytesPerSecond: number;
    etaSeconds: number | null;
    updatedAt: string;
  } | null;
  downtimeSeconds: number | null;
  sourceVolumeName: string | null;
  targetVolumeName: string | null;
  message: string | null;
  createdAt: string | null;
  completionTime: string | null;
  /** Volumes pvshift keeps on purpose (Held, or after a failure), with what the user can do with each. */
  keptVolumes: KeptVolume[];
  /** What the copy may keep under the namespace's Pod Security level; null until the controller decided. */
  copyFidelity: CopyFidelity | null;
}

const COPYING: ReadonlySet<Phase> = new Set(['PreSyncing', 'Populating']);

function iso(value: string | Date | undefined): string | null {
  return value === undefined ? null : new Date(value).toISOString();
}

export function statusItem(m: VolumeMigration): StatusItem {
  const s = m.status ?? {};
  const p = s.progress;
  return {
    namespace: m.metadata.namespace,
    name: m.metadata.name,
    claim: m.spec.claimName,
    sourceStorageClass: s.sourceStorageClassName ?? null,
    targetStorageClass: m.spec.targetStorageClassName,
    targetSize: m.spec.targetSize ?? null,
    phase: phaseOf(m),
    terminal: isTerminal(phaseOf(m)),
    abortRequested: !!m.spec.abort,
    progress: p
      ? {
          bytesDone: p.bytesDone,
          bytesTotal: p.bytesTotal,
          filesDone: p.filesDone,
          filesTotal: p.filesTotal,
          percent: p.bytesTotal > 0 ? Math.floor((Math.min(p.bytesDone, p.bytesTotal) / p.bytesTotal) * 100) : null,
          bytesPerSecond: p.bytesPerSecond,
          etaSeconds: p.etaSeconds ?? null,
          updatedAt: p.updatedAt,
        }
      : null,
    downtimeSeconds: s.downtimeSeconds ?? null,
    sourceVolumeName: s.sourceVolumeName ?? null,
    targetVolumeName: s.targetVolumeName ?? null,
    message: s.message ?? null,
    createdAt: iso(m.metadata.creationTimestamp),
    completionTime: s.completionTime ?? null,
    keptVolumes: s.keptVolumes ?? [],
    copyFidelity: s.copyFidelity ?? null,
  };
}

function progressCell(m: VolumeMigration): string {
  const phase = phaseOf(m);
  const p = m.status?.progress;
  if (phase === 'Succeeded') return progressBar(1, 1);
  if (p && (COPYING.has(phase) || p.bytesDone > 0)) return progressBar(p.bytesDone, p.bytesTotal);
  return '-';
}

function rateCell(m: VolumeMigration): string {
  const p = m.status?.progress;
  return p && COPYING.has(phaseOf(m)) && p.bytesPerSecond > 0 ? `${formatBytes(p.bytesPerSecond)}/s` : '-';
}

function etaCell(m: VolumeMigration): string {
  const p = m.status?.progress;
  return p?.etaSeconds !== undefined && COPYING.has(phaseOf(m)) ? formatDuration(p.etaSeconds) : '-';
}

/** Recorded downtime; while pods are gated, the time so far (marked `+`). */
function downtimeCell(m: VolumeMigration, now: Date): string {
  const s = m.status ?? {};
  if (s.downtimeSeconds !== undefined) return formatDuration(s.downtimeSeconds);
  if (s.gatedAt && !isTerminal(phaseOf(m)))
    return `${formatDuration((now.getTime() - new Date(s.gatedAt).getTime()) / 1000)}+`;
  return '-';
}

export function renderStatus(migrations: VolumeMigration[], o: RenderOptions): string {
  if (migrations.length === 0) return 'No VolumeMigrations found.\n';
  const headers = [
    ...(o.showNamespace ? ['NAMESPACE'] : []),
    'NAME',
    'CLAIM',
    'TARGET',
    'PHASE',
    'PROGRESS',
    'RATE',
    'ETA',
    'DOWNTIME',
    'AGE',
    'MESSAGE',
  ];
  const rows = migrations.map((m) => {
    const phase = phaseOf(m);
    const abort = m.spec.abort && !isTerminal(phase) ? '(abort requested)' : '';
    return [
      ...(o.showNamespace ? [m.metadata.namespace] : []),
      m.metadata.name,
      m.spec.claimName,
      m.spec.targetStorageClassName + (m.spec.targetSize ? ` ${m.spec.targetSize}` : ''),
      { text: phase, colour: phaseColour(phase) },
      progressCell(m),
      rateCell(m),
      etaCell(m),
      downtimeCell(m, o.now),
      formatAge(m.metadata.creationTimestamp, o.now),
      [m.status?.message, abort].filter(Boolean).join(' '),
    ];
  });
  return table(headers, rows, o.color) + statusDetails(migrations, o);
}

/** `status sts/NAME`: the StatefulSet's one line, then the table of its migrations. */
export function renderWorkloadStatus(s: WorkloadStatus, migrations: VolumeMigration[], o: RenderOptions): string {
  return `${s.summary}\n\n${renderStatus(migrations, o)}`;
}

/** `not copied: trusted xattrs (Pod Security baseline)`; undefined for a full copy. */
export function droppedText(f: CopyFidelity | undefined): string | undefined {
  if (!f?.dropped.length) return undefined;
  // At the privileged level what is missing is the namespace's opt-in, not the level.
  const why =
    f.level === 'privileged'
      ? `Pod Security privileged without ${LABEL_PRIVILEGED_COPY}=true`
      : `Pod Security ${f.level}`;
  return `not copied: ${f.dropped.join(', ')} (${why})`;
}

/** What the latest pre-sync pass moved, and what it says of the final copy. */
function deltaText(s: VolumeMigrationStatus, d: SyncDelta): string {
  const estimate =
    s.finalCopyEstimateSeconds === undefined
      ? ''
      : `; final copy estimated ${formatDuration(s.finalCopyEstimateSeconds)}`;
  return `moved ${formatBytes(d.bytesTransferred)} (${d.filesTransferred} files) in ${formatDuration(d.seconds)}${estimate}`;
}

/** While waiting for cutover: the latest pre-sync pass (continuous sync) and what it says of the final copy. */
export function syncText(m: VolumeMigration, now: Date): string | undefined {
  const s = m.status ?? {};
  if (phaseOf(m) !== 'WaitingForCutover' || !s.lastSyncTime || !s.lastSync) return undefined;
  return `synced ${formatAge(s.lastSyncTime, now)} ago (pass ${s.syncPasses ?? 1}): ${deltaText(s, s.lastSync)}`;
}

/** Where a requested re-sync (`kubectl pvshift sync`) stands: still to come, answered, or overtaken by the cutover. */
export interface SyncOutcome {
  settled: boolean;
  failed: boolean;
  text: string;
}

export function syncOutcome(m: VolumeMigration, request: string): SyncOutcome {
  const s = m.status ?? {};
  const name = m.metadata.name;
  if (s.syncRequestServed === request) {
    const failure = s.lastSyncFailure;
    // The pass that answered is the later of the last success and the last failure.
    if (failure && (!s.lastSyncTime || failure.time >= s.lastSyncTime))
      return { settled: true, failed: true, text: `${name}: re-sync failed: ${failure.message}` };
    const moved = s.lastSync ? `: ${deltaText(s, s.lastSync)}` : '';
    return { settled: true, failed: false, text: `${name}: re-sync done (pass ${s.syncPasses ?? 1})${moved}` };
  }
  const phase = phaseOf(m);
  if (phase !== 'WaitingForCutover')
    return {
      settled: true,
      failed: false,
      text: `${name}: ${phase} before the re-sync ran: the cutover's final copy brings everything over`,
    };
  const running = /^re-sync \d+ running/.test(s.message ?? '');
  return {
    settled: false,
    failed: false,
    text: `${name}: ${running ? `${s.message}: ${s.progressText ?? ''}`.trim() : (s.message ?? 'waiting')}`,
  };
}

/** Phases whose record says where the data is: what was kept, and what the user can do. */
const TELLS_KEPT: ReadonlySet<Phase> = new Set(['Held', 'Failed', 'RolledBack']);

/**
 * Below the table, for each migration that has more to say than a row holds:
 * a Held migration (or a Failed or RolledBack one that kept volumes) with its
 * message and every kept volume, and what the copy could not keep.
 */
function statusDetails(migrations: VolumeMigration[], o: RenderOptions): string {
  const blocks: string[] = [];
  for (const m of migrations) {
    const phase = phaseOf(m);
    const kept = m.status?.keptVolumes ?? [];
    const lines: string[] = [];
    if (TELLS_KEPT.has(phase) && (phase === 'Held' || kept.length)) {
      lines.push(`${paint(phase, phaseColour(phase), o.color)}: ${m.status?.message ?? 'no message'}`);
      for (const k of kept) lines.push(`  kept ${k.name} (${k.role}): ${k.message}`);
      // Deleting the migration is the way out of Held; the kept volumes stay.
      if (phase === 'Held')
        lines.push(
          `  to release the held pods: kubectl delete volumemigration ${m.metadata.name} -n ${m.metadata.namespace} (the kept volumes stay)`,
        );
    }
    const sync = syncText(m, o.now);
    if (sync) lines.push(lines.length ? `  ${sync}` : sync);
    const dropped = droppedText(m.status?.copyFidelity);
    if (dropped) lines.push(lines.length ? `  ${dropped}` : dropped);
    if (!lines.length) continue;
    const name = o.showNamespace ? `${m.metadata.namespace}/${m.metadata.name}` : m.metadata.name;
    blocks.push(
      `${name}: ${lines[0]}\n${lines
        .slice(1)
        .map((l) => `${l}\n`)
        .join('')}`,
    );
  }
  return blocks.length ? `\n${blocks.join('')}` : '';
}

/** Exit code of `status`: 1 when any shown migration is Held (it waits for you), Failed or RolledBack. */
export function statusExitCode(migrations: VolumeMigration[]): number {
  return migrations.some((m) => ['Held', 'Failed', 'RolledBack'].includes(phaseOf(m))) ? 1 : 0;
}

// --- cleanup ---------------------------------------------------------------------

export interface RetainedVolume {
  name: string;
  capacity: string;
  /** `namespace/claim` the volume held before its migration; `<unknown>` when nothing says. */
  claim: string;
  /** `namespace/name` of the migration that kept it; `<unknown>` when only its UID is known. */
  migration: string;
  /** The UID of that migration, where the volume or the record says it. */
  migrationUid: string | null;
  /** The record's phase, or `record deleted`. */
  record: string;
  reclaimPolicy: string;
  /** The volume's phase: Released, Available, Bound... */
  phase: string;
  /** When the migration finished: the volume has been kept since. */
  retainedSince: string | null;
  /** What the record says it keeps the volume for (status.keptVolumes). */
  kept?: { role: 'source' | 'copy'; message: string };
  /** `cleanup --yes` sets its reclaim policy to Delete. */
  releasable: boolean;
  /** Why it is not released, when it is not. */
  reason: string | null;
}

export function renderCleanup(volumes: RetainedVolume[], o: RenderOptions): string {
  if (volumes.length === 0) return 'No retained old volumes.\n';
  const rows = volumes.map((v) => [
    v.name,
    v.capacity,
    v.claim,
    v.migration,
    {
      text: v.record,
      ...(v.record === 'record deleted' ? { colour: 'dim' as const } : { colour: phaseColour(v.record as Phase) }),
    },
    v.phase,
    v.retainedSince ? formatAge(v.retainedSince, o.now) : '-',
    v.releasable ? { text: 'yes', colour: 'green' as const } : { text: `no: ${v.reason}`, colour: 'yellow' as const },
  ]);
  return table(['VOLUME', 'SIZE', 'CLAIM', 'MIGRATION', 'RECORD', 'PHASE', 'AGE', 'RELEASE'], rows, o.color);
}

// --- machine output ---------------------------------------------------------------

export function renderData(data: unknown, format: 'json' | 'yaml'): string {
  return format === 'json' ? `${JSON.stringify(data, null, 2)}\n` : stringify(data);
}
