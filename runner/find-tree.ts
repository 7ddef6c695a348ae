// A tree read by one GNU find process: the pre-scan's totals (tree-totals.ts)
// and the verification's listings (tree-listing.ts) are both built from
// `find -P ROOT -printf FORMAT`, several times faster than lstat from Node
// (find walks the tree in C; Node only parses what it prints: a listing of
// 100,000 files took 0.5-0.9 s of Node CPU through lstat, ~0.15 s this way).
// Names are kept as latin1 strings of their bytes (see tree-diff.ts).
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import type { EntryType, TreeEntry } from './tree-diff.js';
import { nameArgument, type WalkOptions } from './tree-walk.js';

/** find's %y by its byte; anything else (D, a Solaris door) counts as a special file, as entryType() does. */
const FIND_TYPES = new Map<number, EntryType>(
  Object.entries({ f: 'file', d: 'dir', l: 'symlink', p: 'fifo', c: 'char', b: 'block', s: 'socket' } as const).map(
    ([y, type]) => [y.charCodeAt(0), type],
  ),
);

/**
 * One entry of find's -printf output read field by field from its bytes:
 * numbers straight from their digits, strings made only for what is kept
 * (names, dev:ino, symlink targets). Slicing a string into fields and parsing
 * those took half as long again (~170 ms against ~110 ms for a listing of
 * 100,000 entries, the Map included).
 * Every reader returns NaN or undefined for a field that is not what the
 * format prints, so that the caller can refuse the entry.
 */
export class FindFields {
  private at = 0;

  constructor(private readonly bytes: Buffer) {}

  /**
   * The next field, ended by a space, as an unsigned integer in `base` (10,
   * or 8 for %m); NaN when it is empty, holds anything else, or has no space
   * after it. Exact up to 2^53.
   */
  number(base = 10): number {
    const b = this.bytes;
    const from = this.at;
    let value = 0;
    let i = from;
    for (; i < b.length && b[i] !== SPACE; i++) {
      const d = digit(b[i] as number);
      value = d < base ? value * base + d : NaN;
    }
    this.at = i + 1;
    return i === from || i === b.length ? NaN : value;
  }

  /** The next field as an unsigned integer, exact however long (a sparse file on XFS can be 8 EiB). */
  bigint(): bigint | undefined {
    const from = this.at;
    const value = this.number();
    if (Number.isNaN(value)) return undefined;
    // BigInt() of a number is faster than of a string, and exact below 10^15.
    // Small values (block counts, small sizes) recur: one bigint each, not one per entry.
    if (value < SMALL.length) return (SMALL[value] ??= BigInt(value));
    return this.at - 1 - from <= 15 ? BigInt(value) : BigInt(this.bytes.toString('latin1', from, this.at - 1));
  }

  /**
   * %T@ or %C@ in nanoseconds: find prints tv_sec, a dot, then tv_nsec with a
   * trailing zero ("1700000000.1234567890"), exact as integers, not as a
   * float. Before 1970 the seconds are floored and the fraction still counts
   * up from them (-1.5 s prints as "-2.5000000000"), which the sum respects.
   */
  time(): bigint | undefined {
    const b = this.bytes;
    const negative = b[this.at] === MINUS;
    const from = negative ? this.at + 1 : this.at;
    // Seconds up to the dot (or the space: no fraction), then nine digits of
    // nanoseconds from the fraction, padded with zeros; every digit checked.
    let seconds = 0;
    let i = from;
    for (; i < b.length && b[i] !== DOT && b[i] !== SPACE; i++) seconds = seconds * 10 + digit(b[i] as number);
    const secondsEnd = i;
    let nanos = 0;
    let places = 0;
    if (b[i] === DOT) {
      for (i++; i < b.length && b[i] !== SPACE; i++) {
        const d = digit(b[i] as number);
        if (places++ < 9) nanos = nanos * 10 + d;
        else if (Number.isNaN(d)) nanos = NaN;
      }
      if (places === 0) nanos = NaN;
    }
    this.at = i + 1;
    if (secondsEnd === from || i === b.length || Number.isNaN(seconds) || Number.isNaN(nanos)) return undefined;
    for (; places < 9; places++) nanos *= 10;
    const whole = secondsEnd - from <= 15 ? BigInt(seconds) : BigInt(b.toString('latin1', from, secondsEnd));
    return (negative ? -whole : whole) * 1_000_000_000n + BigInt(nanos);
  }

  /** %y, one byte and a space; undefined for anything else. */
  type(): EntryType | undefined {
    const y = this.bytes[this.at];
    if (y === undefined || this.bytes[this.at + 1] !== SPACE) return undefined;
    this.at += 2;
    return FIND_TYPES.get(y) ?? 'socket';
  }

  /** The next field, ended by a space, as text; undefined when no space ends it. */
  word(): string | undefined {
    const end = this.bytes.indexOf(SPACE, this.at);
    if (end < 0) return undefined;
    const text = this.bytes.toString('latin1', this.at, end);
    this.at = end + 1;
    return text;
  }

  /** The next field, ended by a NUL or the end of the entry (a name, a symlink target): a latin1 string of its bytes. */
  text(): string {
    let end = this.bytes.indexOf(0, this.at);
    if (end < 0) end = this.bytes.length;
    const text = this.bytes.toString('latin1', this.at, end);
    this.at = end + 1;
    return text;
  }
}

const [SPACE, ZERO, MINUS, DOT] = [0x20, 0x30, 0x2d, 0x2e];
const SMALL = new Array<bigint | undefined>(1 << 16);

/** A byte's value as a decimal digit; NaN for any other byte (and so for the number it is part of). */
const digit = (byte: number): number => (byte >= ZERO && byte <= ZERO + 9 ? byte - ZERO : NaN);

/** A fnmatch pattern (find -path) that matches `text` only. */
const literalPattern = (text: string): string => text.replace(/[\\*?[]/g, (c) => `\\${c}`);

class FindError extends Error {
  override name = 'FindError';
  constructor(
    message: string,
    /** An errno name when the failure has one (ENOENT: the root is gone), for the runner's classification. */
    readonly code?: string,
  ) {
    super(message);
  }
}

/**
 * What find prints (LC_ALL=C) for an entry it listed and then could not
 * stat or open because it was gone, after its argv[0] ("find", or a path when
 * a wrapper execs it). find quotes the name, newlines included, so each
 * message is one line.
 */
const FIND_VANISHED = /^(?:\S*\/)?find: .*: No such file or directory$/;

/** An entry's fields as find printed them, each undefined (or NaN) where it did not parse. */
export interface FoundFields {
  type: EntryType | undefined;
  mode: number;
  uid: number;
  gid: number;
  size: bigint | undefined;
  mtimeNs: bigint | undefined;
  blocks: bigint | undefined;
  inode: string | undefined;
  nlink: number;
  linkTarget: string;
}

/**
 * The TreeEntry of a listing's fields (both find formats: tree-listing.ts and
 * record-listing.ts), rdev still 0 (find has no directive for it); undefined
 * when any field did not parse.
 */
export function foundEntry(f: FoundFields): TreeEntry | undefined {
  const { type, size, mtimeNs, blocks, inode } = f;
  // NaN in any of the numbers makes their sum NaN: one test, no array per entry.
  if (
    type === undefined ||
    inode === undefined ||
    size === undefined ||
    blocks === undefined ||
    mtimeNs === undefined ||
    Number.isNaN(f.mode + f.uid + f.gid + f.nlink)
  )
    return undefined;
  const entry: TreeEntry = {
    type,
    mode: f.mode,
    uid: f.uid,
    gid: f.gid,
    size: type === 'file' ? size : 0n,
    mtimeNs,
    rdev: 0n,
    blocks,
    inode,
    nlink: f.nlink,
  };
  if (type === 'symlink') entry.linkTarget = f.linkTarget;
  return entry;
}

/**
 * find's -printf format: one for every entry, or one for directories and
 * another for the rest (`( -type d -printf DIR -o -printf OTHER )`), each
 * ending the same number of fields with a NUL.
 */
export type FindFormat = string | { dir: string; other: string };

export interface FindOptions extends WalkOptions {
  /** What the messages call the work: "scanning /src with find failed: ...". */
  verb: string;
}

/**
 * Runs `find -P root -printf format`, pruning `options.skipTopLevel`, and
 * calls `onEntry` with each entry's bytes as they stream in: `format` (each of
 * its two formats, when it has two: FindFormat) ends
 * every one of its `fieldsPerEntry` fields with a NUL (`\0`), the one byte no
 * name and no symlink target can hold, and the entry handed over holds them
 * all, NULs included (read it with FindFields). Its bytes are never written
 * again: a caller may keep the buffer they lie in (record-listing.ts does)
 * instead of copying them. `onEntry` returns false for an entry it cannot parse, which fails
 * the run. Every entry is printed, the root first (its %P is empty), each
 * directory before what it holds.
 *
 * Resolves to the number of entries that vanished under find (only with
 * `allowVanished`; else one fails the run), or to undefined when find cannot
 * do the job: not installed, or a top-level name to skip that cannot be
 * passed to it (nameArgument). The caller then walks the tree in Node.
 */
export function findEntries(
  root: string,
  format: FindFormat,
  fieldsPerEntry: number,
  onEntry: (entry: Buffer) => boolean,
  options: FindOptions,
): Promise<number | undefined> {
  const skip = [...(options.skipTopLevel ?? [])].map(nameArgument);
  if (!skip.every((s) => s !== undefined)) return Promise.resolve(undefined);
  const signal = options.signal;
  signal?.throwIfAborted();
  // A relative root could read as an option or an operator ("-x", "!"); find
  // prints the starting point as given, and -path matches what it prints.
  const start = root.startsWith('/') ? root.replace(/(.)\/+$/, '$1') : `./${root.replace(/\/+$/, '')}`;
  const prefix = start === '/' ? '/' : `${start}/`;
  const prune =
    skip.length === 0
      ? []
      : [
          '(',
          ...skip.flatMap((n, i) => [...(i > 0 ? ['-o'] : []), '-path', literalPattern(prefix + n)]),
          ')',
          '-prune',
          '-o',
        ];
  return new Promise((resolve, reject) => {
    // LC_ALL=C: messages in English (matched below), patterns matched byte by byte.
    const print =
      typeof format === 'string'
        ? ['-printf', format]
        : ['(', '-type', 'd', '-printf', format.dir, '-o', '-printf', format.other, ')'];
    const child = spawn('find', ['-P', start, ...prune, ...print], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, LC_ALL: 'C' },
    });
    let rest: Buffer = Buffer.alloc(0);
    let malformed: string | undefined;
    let stderr = '';
    let errRest = '';
    let vanished = 0;
    let otherErrors = 0;
    let missing = false;
    const stop = (): void => {
      child.kill('SIGTERM');
    };
    signal?.addEventListener('abort', stop, { once: true });
    child.stdout.on('data', (chunk: Buffer) => {
      if (malformed !== undefined) return;
      const buf = rest.length > 0 ? Buffer.concat([rest, chunk]) : chunk;
      // `from`: where the entry being read starts; an entry cut by the chunk's
      // end is read again, whole, with the next chunk.
      let from = 0;
      let fields = 0;
      for (let nul = buf.indexOf(0, from); nul >= 0; nul = buf.indexOf(0, nul + 1)) {
        if (++fields < fieldsPerEntry) continue;
        const entry = buf.subarray(from, nul + 1);
        fields = 0;
        from = nul + 1;
        if (!onEntry(entry)) {
          malformed = entry.toString('latin1', 0, 200);
          child.kill('SIGTERM');
          return;
        }
      }
      // Copied: a slice would keep the whole chunk alive.
      rest = Buffer.from(buf.subarray(from));
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (c: string) => {
      if (stderr.length < 4096) stderr += c;
      const lines = (errRest + c).split('\n');
      errRest = lines.pop() ?? '';
      for (const line of lines) {
        if (FIND_VANISHED.test(line)) vanished++;
        else if (line.trim()) otherErrors++;
      }
    });
    child.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') missing = true;
      else reject(e);
    });
    child.on('close', (code, sig) => {
      signal?.removeEventListener('abort', stop);
      if (missing) resolve(undefined);
      else if (signal?.aborted) reject(signal.reason as Error);
      else if (malformed !== undefined || (code === 0 && rest.length > 0)) {
        reject(
          new FindError(
            `${options.verb} ${root}: unexpected output from find: ${JSON.stringify(malformed ?? rest.toString('latin1', 0, 200))}`,
          ),
        );
      } else if (code === 0) resolve(0);
      else {
        if (errRest.trim()) otherErrors++;
        const failed = `${options.verb} ${root} with find failed: ${stderr.trim().split('\n').slice(0, 3).join('; ') || `exit ${code ?? sig}`}`;
        // The root itself gone (or never there) is terminal, as lstat's ENOENT is
        // to the Node walk; an entry below it that vanished mid-walk is worth a
        // retry, or, with allowVanished, counted (find goes on past it: what it
        // printed is complete but for what vanished). Permission denied below
        // the root is terminal.
        fs.lstat(root).then(
          () => {
            if (options.allowVanished && code === 1 && vanished > 0 && otherErrors === 0) resolve(vanished);
            else reject(new FindError(failed, /Permission denied/.test(stderr) ? 'EACCES' : undefined));
          },
          (e: NodeJS.ErrnoException) => reject(new FindError(failed, e.code)),
        );
      }
    });
  });
}

/**
 * The first entry under `root` whose inode changed (ctime) after `afterNs`
 * (ns since the epoch), from `find -P ROOT -newerct @S.N -printf %P -quit`:
 * its path below the root ("." for the root itself), null when no entry
 * changed since, or undefined when find cannot tell (not installed, or it
 * failed: an entry that vanished under it is a change too). find stats every
 * entry and prints at most one: no listing to parse.
 */
export function findChangedSince(
  root: string,
  afterNs: bigint,
  signal?: AbortSignal,
): Promise<string | null | undefined> {
  const start = root.startsWith('/') ? root.replace(/(.)\/+$/, '$1') : `./${root.replace(/\/+$/, '')}`;
  const whole = afterNs < 0n ? -((-afterNs + 999_999_999n) / 1_000_000_000n) : afterNs / 1_000_000_000n;
  const reference = `@${whole}.${(afterNs - whole * 1_000_000_000n).toString().padStart(9, '0')}`;
  return new Promise((resolve, reject) => {
    signal?.throwIfAborted();
    const child = spawn('find', ['-P', start, '-newerct', reference, '-printf', '%P\\0', '-quit'], {
      stdio: ['ignore', 'pipe', 'ignore'],
      env: { ...process.env, LC_ALL: 'C' },
    });
    const out: Buffer[] = [];
    const stop = (): void => {
      child.kill('SIGTERM');
    };
    signal?.addEventListener('abort', stop, { once: true });
    child.stdout.on('data', (c: Buffer) => out.push(c));
    // Not installed: find cannot tell.
    child.on('error', () => resolve(undefined));
    child.on('close', (code) => {
      signal?.removeEventListener('abort', stop);
      if (signal?.aborted) return reject(signal.reason as Error);
      const printed = Buffer.concat(out);
      if (printed.length > 0) {
        const end = printed.indexOf(0);
        const rel = printed.toString('latin1', 0, end < 0 ? printed.length : end);
        resolve(rel === '' ? '.' : rel);
      } else resolve(code === 0 ? null : undefined);
    });
  });
}
