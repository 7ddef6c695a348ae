// A tree as verification compares it (tree-diff.ts): every entry's metadata
// from the walk (tree-walk.ts), symlink targets, xattrs and ACLs (one getfattr
// process per tree) and, for --verify=checksum, each file's sha256.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import type { TreeListing } from './tree-diff.js';
import { entryPath, entryType, walkTree, type WalkOptions } from './tree-walk.js';
import { parseXattrDump } from './xattr-dump.js';

export interface ListingOptions extends WalkOptions {
  xattrs: boolean;
  /** CAP_SYS_ADMIN: security.* is compared too (isCopiedXattr). */
  adminXattrs: boolean;
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
        const target = await fs.readlink(entryPath(root, rel), { encoding: 'buffer' });
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
  const parsed = parseXattrDump(dump, options.adminXattrs);
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
      const digest = await sha256File(entryPath(root, first), signal);
      for (const rel of group) {
        const e = listing.get(rel);
        if (e) e.sha256 = digest;
      }
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
}
