// Reading a tree from disk: lstat (bigint, for nanosecond times and 64-bit
// inodes), readlink, xattrs and ACLs (one getfattr process per tree), sha256.
// Names are read as bytes and kept as latin1 strings (see tree-diff.ts).
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import type { BigIntStats } from 'node:fs';
import type { EntryType, TreeListing } from './tree-diff.js';
import { parseXattrDump } from './xattr-dump.js';

const bytes = (p: string): Buffer => Buffer.from(p, 'latin1');
const join = (dir: string, name: string): string => (dir === '.' ? name : `${dir}/${name}`);

export function entryType(st: BigIntStats): EntryType {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isFIFO()) return 'fifo';
  if (st.isCharacterDevice()) return 'char';
  if (st.isBlockDevice()) return 'block';
  return 'socket';
}

export interface WalkOptions {
  /** Top-level names left out (the runner's own temp dir). */
  skipTopLevel?: ReadonlySet<string>;
  signal?: AbortSignal;
}

/**
 * Calls visit for every entry, root (".") first, parents before children.
 * Directories are read a few at a time and their entries lstat'ed together:
 * on a 100k-file tree that is several times faster than one await per file.
 */
export async function walkTree(
  root: string,
  visit: (relPath: string, st: BigIntStats) => void | Promise<void>,
  options: WalkOptions = {},
): Promise<void> {
  const rootBytes = bytes(root);
  const rootStats = await fs.lstat(rootBytes, { bigint: true });
  await visit('.', rootStats);
  if (!rootStats.isDirectory()) return;
  const queue: string[] = ['.'];
  let active = 0;
  let failure: Error | undefined;
  await new Promise<void>((resolve) => {
    const pump = (): void => {
      if (failure !== undefined || (queue.length === 0 && active === 0)) {
        if (active === 0) resolve();
        return;
      }
      while (active < 8 && queue.length > 0 && failure === undefined) {
        const dir = queue.shift() ?? '.';
        active++;
        readOne(dir)
          .catch((e: unknown) => {
            failure ??= e instanceof Error ? e : new Error('reading the tree failed', { cause: e });
          })
          .finally(() => {
            active--;
            pump();
          });
      }
    };
    const readOne = async (dir: string): Promise<void> => {
      options.signal?.throwIfAborted();
      const abs = dir === '.' ? rootBytes : Buffer.concat([rootBytes, Buffer.from('/'), bytes(dir)]);
      const names = await fs.readdir(abs, { encoding: 'buffer' });
      const rels = names
        .map((n) => n.toString('latin1'))
        .filter((n) => !(dir === '.' && options.skipTopLevel?.has(n)))
        .map((n) => join(dir, n));
      for (let i = 0; i < rels.length; i += 256) {
        const chunk = rels.slice(i, i + 256);
        const stats = await Promise.all(
          chunk.map((r) => fs.lstat(Buffer.concat([rootBytes, Buffer.from('/'), bytes(r)]), { bigint: true })),
        );
        for (let j = 0; j < chunk.length; j++) {
          const rel = chunk[j] as string;
          const st = stats[j] as BigIntStats;
          await visit(rel, st);
          if (st.isDirectory()) queue.push(rel);
        }
      }
    };
    pump();
  });
  if (failure !== undefined) throw failure;
}

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
   * Pairs of top-level names that share a hard-linked inode: rsync -H only
   * links what one process sees, so such names must go to the same rsync.
   */
  linkedTopLevels: [string, string][];
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
});

const topName = (rel: string): string => {
  const slash = rel.indexOf('/');
  return slash < 0 ? rel : rel.slice(0, slash);
};

/**
 * Streaming totals, one lstat per entry: only multiply-linked inodes are
 * remembered (with the top-level name they were first seen under), so memory
 * stays small.
 */
export async function scanTotals(root: string, options: WalkOptions = {}): Promise<TreeTotals> {
  const totals = emptyTotals();
  const seenLinked = new Map<string, string>();
  const linkedPairs = new Set<string>();
  await walkTree(
    root,
    (rel, st) => {
      if (st.mtimeNs > totals.newestMtimeNs) totals.newestMtimeNs = st.mtimeNs;
      if (!st.isFile() && !st.isSymbolicLink() && st.mtimeNs > totals.newestSpecialMtimeNs) {
        totals.newestSpecialMtimeNs = st.mtimeNs;
      }
      const top = rel === '.' ? undefined : topName(rel);
      if (top !== undefined) {
        totals.files++;
        const t = totals.topLevel.get(top) ?? { files: 0, bytes: 0 };
        t.files++;
        if (st.isFile()) t.bytes += Number(st.size);
        totals.topLevel.set(top, t);
      }
      if (st.nlink > 1n && !st.isDirectory()) {
        const key = `${st.dev}:${st.ino}`;
        const firstTop = seenLinked.get(key);
        if (firstTop !== undefined) {
          if (top !== undefined && top !== firstTop) {
            const pair = JSON.stringify([firstTop, top]);
            if (!linkedPairs.has(pair)) {
              linkedPairs.add(pair);
              totals.linkedTopLevels.push([firstTop, top]);
            }
          }
          return;
        }
        seenLinked.set(key, top ?? '.');
      }
      totals.inodes++;
      totals.allocatedBytes += Number(st.blocks) * 512;
      if (st.isFile()) {
        totals.bytes += Number(st.size);
        totals.largestFile = Math.max(totals.largestFile, Number(st.size));
      }
    },
    options,
  );
  return totals;
}

export interface ListingOptions extends WalkOptions {
  xattrs: boolean;
  acls: boolean;
  content: boolean;
  /** Warnings (e.g. getfattr missing) go here instead of failing the verification. */
  warn: (message: string) => void;
}

export async function readListing(root: string, options: ListingOptions): Promise<TreeListing> {
  const listing: TreeListing = new Map();
  const symlinks: string[] = [];
  await walkTree(
    root,
    (rel, st) => {
      const type = entryType(st);
      listing.set(rel, {
        type,
        mode: Number(st.mode) & 0o7777,
        uid: Number(st.uid),
        gid: Number(st.gid),
        size: type === 'file' ? st.size : 0n,
        mtimeNs: st.mtimeNs,
        rdev: type === 'char' || type === 'block' ? st.rdev : 0n,
        blocks: st.blocks,
        inode: `${st.dev}:${st.ino}`,
      });
      if (type === 'symlink') symlinks.push(rel);
    },
    options,
  );
  for (let i = 0; i < symlinks.length; i += 256) {
    await Promise.all(
      symlinks.slice(i, i + 256).map(async (rel) => {
        const target = await fs.readlink(Buffer.concat([bytes(root), Buffer.from('/'), bytes(rel)]), { encoding: 'buffer' });
        const e = listing.get(rel);
        if (e) e.linkTarget = target.toString('latin1');
      }),
    );
  }
  if (options.xattrs || options.acls) await addXattrs(root, listing, options);
  if (options.content) await addHashes(root, listing, options.signal);
  return listing;
}

async function addXattrs(root: string, listing: TreeListing, options: ListingOptions): Promise<void> {
  const dump = await new Promise<string | undefined>((resolve, reject) => {
    // -h: the link itself, -m -: every namespace (user, trusted, security, system ACLs).
    const child = spawn('getfattr', ['-R', '-d', '-h', '-m', '-', '-e', 'hex', '.'], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => (err += c.toString('utf8')));
    child.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') {
        options.warn('getfattr is not installed: xattrs and ACLs are not verified');
        resolve(undefined);
      } else reject(e);
    });
    child.on('close', (code) => {
      // Non-zero when some file could not be read: stderr says which.
      if (code !== 0 && err.trim()) options.warn(`getfattr: ${err.trim().split('\n').slice(0, 3).join('; ')}`);
      resolve(Buffer.concat(out).toString('latin1'));
    });
  });
  if (dump === undefined) return;
  const parsed = parseXattrDump(dump);
  for (const [rel, e] of listing) {
    const found = parsed.get(rel);
    // getfattr lists only files that have attributes; the rest have none.
    if (options.xattrs) e.xattrs = found?.xattrs ?? {};
    if (options.acls) e.acls = found?.acls ?? {};
    // Symlinks inside the tree are skipped by getfattr -R: compare nothing there.
    if (e.type === 'symlink') {
      delete e.xattrs;
      delete e.acls;
    }
  }
}

export async function sha256File(file: Buffer, signal?: AbortSignal): Promise<string> {
  const hash = createHash('sha256');
  const stream = createReadStream(file, { highWaterMark: 1 << 20, signal });
  for await (const chunk of stream) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Each inode hashed once; four at a time keeps a disk busy without thrashing it. */
async function addHashes(root: string, listing: TreeListing, signal?: AbortSignal): Promise<void> {
  const byInode = new Map<string, string[]>();
  for (const [rel, e] of listing) {
    if (e.type !== 'file') continue;
    const paths = byInode.get(e.inode) ?? [];
    paths.push(rel);
    byInode.set(e.inode, paths);
  }
  const groups = [...byInode.values()];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < groups.length) {
      const group = groups[next++] ?? [];
      const first = group[0];
      if (first === undefined) continue;
      const digest = await sha256File(Buffer.concat([bytes(root), Buffer.from('/'), bytes(first)]), signal);
      for (const rel of group) {
        const e = listing.get(rel);
        if (e) e.sha256 = digest;
      }
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
}
