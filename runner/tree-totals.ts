// The pre-scan: what the copy will move (entries, bytes, allocated space,
// inodes, hard links across top-level names, changed files), from one GNU find
// process, or from the Node walk (tree-walk.ts) where find cannot do it.
// Names are kept as latin1 strings of their bytes (see tree-diff.ts).
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import type { ChangedFile } from './changed-since.js';
import type { EntryType } from './tree-diff.js';
import { entryType, nameArgument, walkTree, type WalkOptions } from './tree-walk.js';

export interface TreeTotals {
  /** Entries below the root, every type, each path counted (as rsync counts). */
  files: number;
  /** Apparent size of regular files, each inode once (hard links are not data twice). */
  bytes: number;
  /** Allocated bytes (st_blocks * 512) of every entry, each inode once: what the target must hold. */
  allocatedBytes: number;
  /** Distinct inodes, root included: what the target's inode table must hold. */
  inodes: number;
  /** Largest regular file: rsync writes it to a temp file before the old one goes. */
  largestFile: number;
  /** Newest mtime (ns) of any entry, root included. */
  newestMtimeNs: bigint;
  /**
   * Newest mtime (ns) of what rsync sets at whole-second granularity when it
   * creates it (directories, FIFOs, devices, sockets, root included); see
   * waitOutSecond in run.ts. Regular files and symlinks are not affected.
   */
  newestSpecialMtimeNs: bigint;
  /** Entries and bytes under each top-level name: what a split into parallel rsyncs balances. */
  topLevel: Map<string, { files: number; bytes: number }>;
  /**
   * Top-level names tied by hard-linked inodes (directly or through other
   * names), each paired with the smallest name it is tied to: rsync -H only
   * links what one process sees, so such names must go to the same rsync.
   */
  linkedTopLevels: [string, string][];
  /**
   * Regular files whose ctime is at or after ScanOptions.changedSinceNs, every
   * path of a hard-linked inode (see changed-since.ts); empty when not asked.
   */
  changedFiles: ChangedFile[];
  /** Entries that vanished under the scan (ScanOptions.allowVanished). */
  vanished: number;
}

export const emptyTotals = (): TreeTotals => ({
  files: 0,
  bytes: 0,
  allocatedBytes: 0,
  inodes: 0,
  largestFile: 0,
  newestMtimeNs: 0n,
  newestSpecialMtimeNs: 0n,
  topLevel: new Map(),
  linkedTopLevels: [],
  changedFiles: [],
  vanished: 0,
});

const topName = (rel: string): string => {
  const slash = rel.indexOf('/');
  return slash < 0 ? rel : rel.slice(0, slash);
};

/** What the totals need of one entry, from lstat (scanTotalsNode) or from find's -printf (scanTotals). */
export interface ScanEntry {
  type: EntryType;
  size: number;
  /** 512-byte blocks. */
  blocks: number;
  nlink: number;
  /** dev:ino, to count a hard-linked inode once. */
  inode: string;
  mtimeNs: bigint;
  /** Inode change time (ns): set to now by every write, chmod, link or utimes; no one can set it back. */
  ctimeNs: bigint;
}

/** Top-level names that share a hard-linked inode end up in one component. */
export function linkComponents(names: readonly string[], pairs: readonly [string, string][]): string[][] {
  const parent = new Map<string, string>(names.map((n) => [n, n]));
  const find = (n: string): string => {
    let r = n;
    while (parent.get(r) !== r && parent.get(r) !== undefined) r = parent.get(r) as string;
    parent.set(n, r);
    return r;
  };
  for (const [a, b] of pairs) {
    if (!parent.has(a) || !parent.has(b)) continue;
    const ra = find(a);
    const rb = find(b);
    if (ra !== rb) parent.set(rb, ra);
  }
  const byRoot = new Map<string, string[]>();
  for (const n of names) {
    const r = find(n);
    byRoot.set(r, [...(byRoot.get(r) ?? []), n]);
  }
  return [...byRoot.values()];
}

/**
 * Totals fed one entry at a time: only multiply-linked inodes are remembered
 * (with the top-level name they were first seen under), so memory stays small.
 */
class TotalsBuilder {
  private readonly totals = emptyTotals();
  private readonly seenLinked = new Map<string, string>();
  /** Pairs of top-level names seen sharing an inode, each once (keyed "a\0b", a < b). */
  private readonly tied = new Map<string, [string, string]>();

  constructor(private readonly changedSinceNs?: bigint) {}

  /** `rel` is "." for the root. */
  add(rel: string, e: ScanEntry): void {
    const totals = this.totals;
    // Before the hard-link early return below: every path of a changed inode is listed.
    if (this.changedSinceNs !== undefined && e.type === 'file' && e.ctimeNs >= this.changedSinceNs) {
      totals.changedFiles.push({ rel, size: e.size, mtimeNs: e.mtimeNs });
    }
    if (e.mtimeNs > totals.newestMtimeNs) totals.newestMtimeNs = e.mtimeNs;
    if (e.type !== 'file' && e.type !== 'symlink' && e.mtimeNs > totals.newestSpecialMtimeNs) {
      totals.newestSpecialMtimeNs = e.mtimeNs;
    }
    const top = rel === '.' ? undefined : topName(rel);
    if (top !== undefined) {
      totals.files++;
      const t = totals.topLevel.get(top) ?? { files: 0, bytes: 0 };
      t.files++;
      if (e.type === 'file') t.bytes += e.size;
      totals.topLevel.set(top, t);
    }
    if (e.nlink > 1 && e.type !== 'dir') {
      const firstTop = this.seenLinked.get(e.inode);
      if (firstTop !== undefined) {
        if (top !== undefined && top !== firstTop) this.tie(firstTop, top);
        return;
      }
      this.seenLinked.set(e.inode, top ?? '.');
    }
    totals.inodes++;
    totals.allocatedBytes += e.blocks * 512;
    if (e.type === 'file') {
      totals.bytes += e.size;
      totals.largestFile = Math.max(totals.largestFile, e.size);
    }
  }

  private tie(a: string, b: string): void {
    const pair: [string, string] = a < b ? [a, b] : [b, a];
    this.tied.set(`${pair[0]}\0${pair[1]}`, pair);
  }

  /**
   * Each tied name paired with the smallest name of its component: the same
   * pairs whatever order the walk met the links in (find and the Node walk
   * differ), and all copy-plan.ts needs to keep a component together.
   */
  finish(vanished = 0): TreeTotals {
    this.totals.vanished = vanished;
    const pairs = [...this.tied.values()];
    const names = [...new Set(pairs.flat())];
    this.totals.linkedTopLevels = linkComponents(names, pairs)
      .flatMap((component) => {
        const [smallest, ...rest] = [...component].sort();
        return rest.map((n): [string, string] => [smallest as string, n]);
      })
      .sort(([a1, b1], [a2, b2]) => (a1 === a2 ? (b1 < b2 ? -1 : 1) : a1 < a2 ? -1 : 1));
    return this.totals;
  }
}

export interface ScanOptions extends WalkOptions {
  /** List the regular files whose ctime is at or after this instant (ns since the epoch) in TreeTotals.changedFiles. */
  changedSinceNs?: bigint;
}

/**
 * Totals from GNU find, several times faster than lstat from Node (0.2 s
 * against 0.8 s on 100,000 files): one process walks the tree and prints one
 * NUL-terminated record per entry, parsed as it streams in. Without find in
 * the image, or with a top-level name to skip that cannot be passed to it,
 * the Node walk does the job.
 */
export async function scanTotals(root: string, options: ScanOptions = {}): Promise<TreeTotals> {
  const skip = [...(options.skipTopLevel ?? [])].map(nameArgument);
  const found = skip.every((s) => s !== undefined) ? await scanWithFind(root, skip, options) : undefined;
  return found ?? scanTotalsNode(root, options);
}

/** Streaming totals, one lstat per entry (walkTree). */
export async function scanTotalsNode(root: string, options: ScanOptions = {}): Promise<TreeTotals> {
  const builder = new TotalsBuilder(options.changedSinceNs);
  const vanished = await walkTree(
    root,
    (rel, st) =>
      builder.add(rel, {
        type: entryType(st),
        size: Number(st.size),
        blocks: Number(st.blocks),
        nlink: Number(st.nlink),
        inode: `${st.dev}:${st.ino}`,
        mtimeNs: st.mtimeNs,
        ctimeNs: st.ctimeNs,
      }),
    options,
  );
  return builder.finish(vanished);
}

/**
 * Type, size, 512-byte blocks, dev:ino, links, mtime, ctime, path below the
 * starting point (empty for the root). The path comes last: it may hold
 * spaces and newlines, never a NUL.
 */
const FIND_FORMAT = '%y %s %b %D:%i %n %T@ %C@ %P\\0';

const FIND_TYPES: Readonly<Record<string, EntryType>> = {
  f: 'file',
  d: 'dir',
  l: 'symlink',
  p: 'fifo',
  c: 'char',
  b: 'block',
  s: 'socket',
};

/**
 * find prints %T@ (and %C@) as tv_sec, a dot, then tv_nsec with a trailing zero
 * ("1700000000.1234567890"): exact as integers, not as a float. Before 1970
 * the seconds are floored and the fraction still counts up from them (-1.5 s
 * prints as "-2.5000000000"), which the sum below respects.
 */
function findTimeNs(text: string): bigint | undefined {
  const m = /^(-?\d+)(?:\.(\d+))?$/.exec(text);
  if (!m) return undefined;
  return BigInt(m[1] ?? '0') * 1_000_000_000n + BigInt((m[2] ?? '').padEnd(9, '0').slice(0, 9));
}

/** One record of FIND_FORMAT, without its NUL, path bytes as latin1. Undefined when malformed. */
export function parseFindRecord(record: string): { rel: string; entry: ScanEntry } | undefined {
  const fields: string[] = [];
  let at = 0;
  for (let i = 0; i < 7; i++) {
    const space = record.indexOf(' ', at);
    if (space < 0) return undefined;
    fields.push(record.slice(at, space));
    at = space + 1;
  }
  const [type, size, blocks, inode, nlink, mtime, ctime] = fields as [
    string,
    string,
    string,
    string,
    string,
    string,
    string,
  ];
  const mtimeNs = findTimeNs(mtime);
  const ctimeNs = findTimeNs(ctime);
  const numbers = [size, blocks, nlink].map((n) => (/^\d+$/.test(n) ? Number(n) : NaN));
  if (mtimeNs === undefined || ctimeNs === undefined || numbers.some((n) => Number.isNaN(n))) return undefined;
  const rel = record.slice(at);
  return {
    rel: rel === '' ? '.' : rel,
    // Anything else (D, a Solaris door) counts as a special file, as entryType() does.
    entry: {
      type: FIND_TYPES[type] ?? 'socket',
      size: numbers[0] ?? 0,
      blocks: numbers[1] ?? 0,
      nlink: numbers[2] ?? 0,
      inode,
      mtimeNs,
      ctimeNs,
    },
  };
}

/** A fnmatch pattern (find -path) that matches `text` only. */
const literalPattern = (text: string): string => text.replace(/[\\*?[]/g, (c) => `\\${c}`);

class ScanError extends Error {
  override name = 'ScanError';
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

/**
 * find over `root`, pruning the top-level names in `skip` (as arguments).
 * Resolves undefined when find is not installed.
 */
function scanWithFind(root: string, skip: readonly string[], options: ScanOptions): Promise<TreeTotals | undefined> {
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
    const child = spawn('find', ['-P', start, ...prune, '-printf', FIND_FORMAT], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, LC_ALL: 'C' },
    });
    const builder = new TotalsBuilder(options.changedSinceNs);
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
      let from = 0;
      for (let nul = buf.indexOf(0, from); nul >= 0; nul = buf.indexOf(0, from)) {
        const record = buf.toString('latin1', from, nul);
        from = nul + 1;
        const parsed = parseFindRecord(record);
        if (parsed === undefined) {
          malformed = record.slice(0, 200);
          child.kill('SIGTERM');
          return;
        }
        builder.add(parsed.rel, parsed.entry);
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
          new ScanError(
            `scanning ${root}: unexpected output from find: ${JSON.stringify(malformed ?? rest.toString('latin1', 0, 200))}`,
          ),
        );
      } else if (code === 0) resolve(builder.finish());
      else {
        if (errRest.trim()) otherErrors++;
        const failed = `scanning ${root} with find failed: ${stderr.trim().split('\n').slice(0, 3).join('; ') || `exit ${code ?? sig}`}`;
        // The root itself gone (or never there) is terminal, as lstat's ENOENT is
        // to the Node walk; an entry below it that vanished mid-scan is worth a
        // retry, or, with allowVanished, counted (find goes on past it: the
        // totals are complete but for what vanished). Permission denied below
        // the root is terminal, as it was before.
        fs.lstat(root).then(
          () => {
            if (options.allowVanished && code === 1 && vanished > 0 && otherErrors === 0)
              resolve(builder.finish(vanished));
            else reject(new ScanError(failed, /Permission denied/.test(stderr) ? 'EACCES' : undefined));
          },
          (e: NodeJS.ErrnoException) => reject(new ScanError(failed, e.code)),
        );
      }
    });
  });
}
