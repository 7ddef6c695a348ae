// Rendering for kubectl-pvshift: pure functions, data in and text out, with
// `now` and colour passed in, so every table is a snapshot test.
import { stringify } from 'yaml';
import { formatBytes } from '../src/quantity.js';
import { isTerminal, phaseOf, type Phase, type VolumeMigration } from '../src/volume-migration.js';
import type { Finding, PlanRow } from './preflight.js';

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
  if (phase === 'Failed' || phase === 'RolledBack' || phase === 'RollingBack') return 'red';
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
  return warnings ? { text: `ok, ${warnings} warning${warnings > 1 ? 's' : ''}`, colour: 'yellow' } : { text: 'ok', colour: 'green' };
}

export function renderPlan(rows: PlanRow[], o: RenderOptions): string {
  if (rows.length === 0) return 'No claims match.\n';
  const headers = [...(o.showNamespace ? ['NAMESPACE'] : []), 'CLAIM', 'CLASS', 'SIZE', 'USED', 'CONSUMERS', 'OWNERS', 'VERDICT'];
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
  progress: { bytesDone: number; bytesTotal: number; filesDone: number; filesTotal: number; percent: number | null; bytesPerSecond: number; etaSeconds: number | null; updatedAt: string } | null;
  downtimeSeconds: number | null;
  sourceVolumeName: string | null;
  targetVolumeName: string | null;
  message: string | null;
  createdAt: string | null;
  completionTime: string | null;
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
  if (s.gatedAt && !isTerminal(phaseOf(m))) return `${formatDuration((now.getTime() - new Date(s.gatedAt).getTime()) / 1000)}+`;
  return '-';
}

export function renderStatus(migrations: VolumeMigration[], o: RenderOptions): string {
  if (migrations.length === 0) return 'No VolumeMigrations found.\n';
  const headers = [...(o.showNamespace ? ['NAMESPACE'] : []), 'NAME', 'CLAIM', 'TARGET', 'PHASE', 'PROGRESS', 'RATE', 'ETA', 'DOWNTIME', 'AGE', 'MESSAGE'];
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
  return table(headers, rows, o.color);
}

/** Exit code of `status`: 1 when any shown migration Failed or RolledBack. */
export function statusExitCode(migrations: VolumeMigration[]): number {
  return migrations.some((m) => ['Failed', 'RolledBack'].includes(phaseOf(m))) ? 1 : 0;
}

// --- cleanup ---------------------------------------------------------------------

export interface RetainedVolume {
  name: string;
  capacity: string;
  /** `namespace/claim` the volume held before its migration. */
  claim: string;
  /** `namespace/name` of the migration that kept it. */
  migration: string;
  reclaimPolicy: string;
  phase: string;
  /** When the migration finished: the volume has been kept since. */
  retainedSince: string | null;
}

export function renderCleanup(volumes: RetainedVolume[], o: RenderOptions): string {
  if (volumes.length === 0) return 'No retained old volumes.\n';
  const rows = volumes.map((v) => [v.name, v.capacity, v.claim, v.migration, v.reclaimPolicy, formatAge(v.retainedSince ?? undefined, o.now)]);
  return table(['VOLUME', 'SIZE', 'CLAIM', 'MIGRATION', 'RECLAIM', 'AGE'], rows, o.color);
}

// --- machine output ---------------------------------------------------------------

export function renderData(data: unknown, format: 'json' | 'yaml'): string {
  return format === 'json' ? `${JSON.stringify(data, null, 2)}\n` : stringify(data);
}
