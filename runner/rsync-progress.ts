// Parsing rsync's output, and turning it into the runner's progress lines.
//
// Why --info=progress2 (with --no-inc-recursive) and not --out-format per file:
// progress2 reports bytes as they are written, so a single 2 GiB file shows
// progress within the file, where a per-file line would sit at 0 until the file
// is done. With --no-inc-recursive the whole file list is built first, so the
// "to-chk=N/M" counter is exact: M is every item (the root "." included) and N
// those not yet checked, unchanged items included; so filesDone moves on a
// rerun too, where almost no bytes move. The byte counter only counts data
// actually sent (hard-linked data once, up-to-date files not at all), so at the
// end of a successful run bytesDone is set to bytesTotal. --stats gives the
// exact transferred figures for the summary.
import type { ProgressRecord } from '../src/runner-protocol.js';

export interface RsyncProgressLine {
  bytes: number;
  percent: number;
  /** Items still to check and total items, when rsync printed them. */
  toCheck?: number;
  totalItems?: number;
}

const PROGRESS_RE =
  /^\s*([\d,]+)\s+(\d+)%\s+\S+\s+\d+:\d{2}:\d{2}(?:\s+\(xfr#\d+,\s+(?:to|ir)-chk=(\d+)\/(\d+)\))?\s*$/;

export function parseProgressLine(line: string): RsyncProgressLine | undefined {
  const m = PROGRESS_RE.exec(line);
  if (!m) return undefined;
  const parsed: RsyncProgressLine = { bytes: Number((m[1] ?? '0').replace(/,/g, '')), percent: Number(m[2]) };
  if (m[3] !== undefined && m[4] !== undefined) {
    parsed.toCheck = Number(m[3]);
    parsed.totalItems = Number(m[4]);
  }
  return parsed;
}

/** rsync separates progress updates with \r and everything else with \n. */
export function splitRsyncOutput(buffered: string): { lines: string[]; rest: string } {
  const parts = buffered.split(/[\r\n]/);
  const rest = parts.pop() ?? '';
  return { lines: parts.filter((l) => l.trim() !== ''), rest };
}

export interface RsyncStats {
  filesTransferred: number;
  bytesTransferred: number;
  deleted: number;
}

function statNumber(text: string, label: string): number | undefined {
  const m = new RegExp(`^${label}:\\s*([\\d,]+)`, 'm').exec(text);
  return m?.[1] === undefined ? undefined : Number(m[1].replace(/,/g, ''));
}

/** The --stats block: "Number of regular files transferred: 2", "Total transferred file size: 60 bytes". */
export function parseRsyncStats(text: string): RsyncStats | undefined {
  const filesTransferred = statNumber(text, 'Number of regular files transferred');
  const bytesTransferred = statNumber(text, 'Total transferred file size');
  if (filesTransferred === undefined || bytesTransferred === undefined) return undefined;
  return { filesTransferred, bytesTransferred, deleted: statNumber(text, 'Number of deleted files') ?? 0 };
}

export function sumStats(all: readonly RsyncStats[]): RsyncStats {
  return all.reduce(
    (a, b) => ({
      filesTransferred: a.filesTransferred + b.filesTransferred,
      bytesTransferred: a.bytesTransferred + b.bytesTransferred,
      deleted: a.deleted + b.deleted,
    }),
    { filesTransferred: 0, bytesTransferred: 0, deleted: 0 },
  );
}

/**
 * Folds rsync progress lines (from one or more rsync processes) into
 * monotonic, clamped totals. Time comes in as an argument so it is testable.
 */
export class ProgressTracker {
  private readonly bytesBy = new Map<number, number>();
  private readonly itemsBy = new Map<number, number>();
  private bytesDone = 0;
  private filesDone = 0;
  private readonly samples: { t: number; bytes: number }[] = [];

  constructor(
    readonly bytesTotal: number,
    readonly filesTotal: number,
    private readonly startMs: number,
    /** Items each rsync counts that are not files of the tree (its "." root). */
    private readonly extraItemsPerProcess = 1,
  ) {}

  update(line: RsyncProgressLine, process = 0): void {
    this.bytesBy.set(process, Math.max(this.bytesBy.get(process) ?? 0, line.bytes));
    if (line.toCheck !== undefined && line.totalItems !== undefined) {
      const checked = Math.max(0, line.totalItems - line.toCheck - this.extraItemsPerProcess);
      this.itemsBy.set(process, Math.max(this.itemsBy.get(process) ?? 0, checked));
    }
    let bytes = 0;
    for (const b of this.bytesBy.values()) bytes += b;
    let items = 0;
    for (const n of this.itemsBy.values()) items += n;
    this.bytesDone = Math.max(this.bytesDone, Math.min(this.bytesTotal, bytes));
    this.filesDone = Math.max(this.filesDone, Math.min(this.filesTotal, items));
  }

  /** rsync finished without error: everything is in place, whatever it had to move. */
  complete(): void {
    this.bytesDone = this.bytesTotal;
    this.filesDone = this.filesTotal;
  }

  /** The rate is over the last 30 s, so a slow start or a skipped prefix fades out of the ETA. */
  snapshot(nowMs: number): ProgressRecord {
    this.samples.push({ t: nowMs, bytes: this.bytesDone });
    while (this.samples.length > 2 && nowMs - (this.samples[1]?.t ?? nowMs) >= 30_000) this.samples.shift();
    const first = this.samples[0] ?? { t: this.startMs, bytes: 0 };
    const base = this.samples.length > 1 ? first : { t: this.startMs, bytes: 0 };
    const dt = (nowMs - base.t) / 1000;
    const rate = dt > 0 ? Math.max(0, Math.round((this.bytesDone - base.bytes) / dt)) : 0;
    const remaining = this.bytesTotal - this.bytesDone;
    return {
      type: 'progress',
      bytesDone: this.bytesDone,
      bytesTotal: this.bytesTotal,
      filesDone: this.filesDone,
      filesTotal: this.filesTotal,
      bytesPerSecond: rate,
      etaSeconds: remaining === 0 ? 0 : rate > 0 ? Math.ceil(remaining / rate) : null,
      elapsedSeconds: Math.round((nowMs - this.startMs) / 100) / 10,
    };
  }
}
