// --changed-since: the contents of every regular file whose ctime is at or
// after an instant are copied again, whatever its size and mtime say.
//
// Why: rsync's quick check skips a file whose size and mtime match the
// target's. A file rewritten in place with the same size whose mtime was put
// back (`touch -d`, tar -x, a database writing through mmap, a filesystem with
// coarse timestamps) passes that check with stale contents on the target. The
// inode's ctime cannot be set back by anyone (utimensat(2) sets it to now), so
// "ctime >= the moment the pre-sync began, minus clock skew" lists every file
// that may have changed since the pre-sync read it.
//
// How: the pre-scan (find's %C@, or lstat in the Node walk) lists those files.
// Of them, the ones whose target copy has the source's size and mtime (those
// rsync's quick check would skip; the rest it sends anyway) go through one
// rsync pass of their own before the main one, with --checksum over a
// --files-from list: rsync reads both copies, and sends, through the temp dir
// like any transfer, exactly those whose contents differ. Comparing instead of
// sending again matters for the final pass's downtime: every file the
// application wrote since the migration began has a new ctime, most of them
// already copied right by the pre-sync, and rewriting a small file costs far
// more than reading it twice (README.md, "--changed-since"). Hard links: every
// path of a changed inode is listed (they share its ctime), so rsync -H sees
// the whole link group.
import type { BigIntStats } from 'node:fs';
import fs from 'node:fs/promises';

/**
 * An RFC 3339 timestamp ("2026-12-02T15:38:33.123456789Z", "...+01:00") as
 * nanoseconds since the epoch, or undefined when it is not one. Date.parse
 * keeps milliseconds and accepts much more than RFC 3339; this keeps every
 * digit of the fraction and accepts only the RFC's form (section 5.6).
 */
export function parseRfc3339Ns(text: string): bigint | undefined {
  const m = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})$/.exec(text);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s, frac, zone] = m as unknown as [
    string,
    string,
    string,
    string,
    string,
    string,
    string,
    string | undefined,
    string,
  ];
  const [year, month, day, hour, minute, second] = [y, mo, d, h, mi, s].map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  // 60: a leap second, which the RFC allows; POSIX time counts it as the next second's start.
  if (month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 60) return undefined;
  const ms = Date.UTC(year, month - 1, day, hour, minute, 0);
  // Date.UTC rolls 31 February over into March: a day that does not exist is refused.
  if (new Date(ms).getUTCDate() !== day) return undefined;
  let offsetMinutes = 0;
  if (zone !== 'Z' && zone !== 'z') {
    const oh = Number(zone.slice(1, 3));
    const om = Number(zone.slice(4, 6));
    if (oh > 23 || om > 59) return undefined;
    offsetMinutes = (zone.startsWith('-') ? -1 : 1) * (oh * 60 + om);
  }
  const seconds = BigInt(ms / 1000) + BigInt(second) - BigInt(offsetMinutes * 60);
  return seconds * 1_000_000_000n + BigInt((frac ?? '').padEnd(9, '0'));
}

/** A nanosecond timestamp as RFC 3339 in UTC, every digit kept (for messages). */
export function formatRfc3339Ns(ns: bigint): string {
  const seconds = ns / 1_000_000_000n - (ns < 0n && ns % 1_000_000_000n !== 0n ? 1n : 0n);
  const nanos = ns - seconds * 1_000_000_000n;
  const base = new Date(Number(seconds) * 1000).toISOString().slice(0, 19);
  return `${base}.${nanos.toString().padStart(9, '0')}Z`;
}

/** A regular file of the source whose ctime is at or after --changed-since, as the pre-scan saw it. */
export interface ChangedFile {
  /** Path below the root, bytes as latin1 (see tree-diff.ts). */
  rel: string;
  size: number;
  mtimeNs: bigint;
}

export interface ComparePlan {
  /**
   * Changed paths whose target copy is a regular file with the source's size
   * and mtime: the ones rsync's quick check would skip, so their contents
   * must be compared.
   */
  paths: string[];
  /** Changed paths the target lacks, or holds with another type, size or mtime: the main pass sends them anyway. */
  sentAnyway: number;
}

/** lstat of each changed file's target copy (never following a symlink there), a few at a time. */
export async function planComparison(
  target: string,
  files: readonly ChangedFile[],
  signal?: AbortSignal,
): Promise<ComparePlan> {
  const root = Buffer.from(target, 'latin1');
  const plan: ComparePlan = { paths: [], sentAnyway: 0 };
  const one = async (f: ChangedFile): Promise<boolean> => {
    // Names as bytes: one that is not valid UTF-8 does not survive a string.
    const p = Buffer.concat([root, Buffer.from('/'), Buffer.from(f.rel, 'latin1')]);
    let st: BigIntStats;
    try {
      st = await fs.lstat(p, { bigint: true });
    } catch (e: unknown) {
      const code = typeof e === 'object' && e !== null && 'code' in e ? e.code : undefined;
      if (code === 'ENOENT' || code === 'ENOTDIR') return false;
      throw e;
    }
    return st.isFile() && st.size === BigInt(f.size) && st.mtimeNs === f.mtimeNs;
  };
  for (let i = 0; i < files.length; i += 64) {
    signal?.throwIfAborted();
    const chunk = files.slice(i, i + 64);
    const same = await Promise.all(chunk.map(one));
    chunk.forEach((f, j) => {
      if (same[j]) plan.paths.push(f.rel);
      else plan.sentAnyway++;
    });
  }
  return plan;
}

/** Paths (latin1 strings of their bytes) as an rsync --files-from list read with --from0: any byte but NUL is safe. */
export function filesFromList(paths: readonly string[]): Buffer {
  return Buffer.from(paths.map((p) => `${p}\0`).join(''), 'latin1');
}
