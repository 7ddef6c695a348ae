// A tree listing in memory and the comparison of two of them. Pure:
// tree-listing.ts fills listings from disk; this decides what "identical" means.
//
// Paths are byte strings: each char is one byte of the on-disk name (latin1), so
// names that are not valid UTF-8 survive the round trip. displayPath() decodes
// them as UTF-8 for messages.
import type { Difference } from '../src/runner-protocol.js';

export type EntryType = 'file' | 'dir' | 'symlink' | 'fifo' | 'char' | 'block' | 'socket';

export interface TreeEntry {
  type: EntryType;
  /** Permission bits including setuid, setgid and sticky (st_mode & 0o7777). */
  mode: number;
  uid: number;
  gid: number;
  /** Regular files only; a directory's size depends on the filesystem. */
  size: bigint;
  mtimeNs: bigint;
  /** st_rdev, for char and block devices. */
  rdev: bigint;
  /** 512-byte blocks allocated: for the space check, never compared. */
  blocks: bigint;
  /** dev:ino, to find hard-link groups; never compared across trees. */
  inode: string;
  linkTarget?: string;
  /** Non-ACL xattrs, name -> hex value; undefined when not read. */
  xattrs?: Record<string, string>;
  /** system.posix_acl_access / _default, hex; undefined when not read. */
  acls?: Record<string, string>;
  sha256?: string;
}

/** Relative path ("." for the root) -> entry. */
export type TreeListing = Map<string, TreeEntry>;

export function displayPath(bytePath: string): string {
  return Buffer.from(bytePath, 'latin1').toString('utf8');
}

/**
 * Each path of a non-directory mapped to its hard-link group's name: the
 * smallest path sharing its inode. Two trees have the same link structure
 * exactly when every path maps to the same name on both sides.
 */
export function linkGroups(listing: TreeListing, only?: ReadonlySet<string>): Map<string, string> {
  const first = new Map<string, string>();
  const paths = [...listing.keys()].filter((p) => !only || only.has(p)).sort();
  const result = new Map<string, string>();
  for (const p of paths) {
    const e = listing.get(p);
    if (!e || e.type === 'dir') continue;
    const leader = first.get(e.inode);
    if (leader === undefined) first.set(e.inode, p);
    result.set(p, leader ?? p);
  }
  return result;
}

export interface CompareOptions {
  /** Extra target paths are differences only when the target must be a mirror. */
  mirror: boolean;
  compareXattrs: boolean;
  compareAcls: boolean;
  compareContent: boolean;
  /** How many differences to return; the count is always complete. */
  limit?: number;
}

const octal = (mode: number): string => mode.toString(8).padStart(4, '0');

/**
 * Nanoseconds count where both sides have them: a filesystem that stores only
 * seconds (or a copy tool that drops the fraction on one side) makes the
 * comparison fall back to whole seconds rather than fail on what cannot be kept.
 */
export function sameMtime(a: bigint, b: bigint): boolean {
  if (a === b) return true;
  const second = 1_000_000_000n;
  const aFrac = a % second;
  const bFrac = b % second;
  if (aFrac === 0n || bFrac === 0n) return a / second === b / second;
  return false;
}

function sameRecord(a: Record<string, string> | undefined, b: Record<string, string> | undefined): string | undefined {
  const left = a ?? {};
  const right = b ?? {};
  const names = [...new Set([...Object.keys(left), ...Object.keys(right)])].sort();
  const differing = names.filter((n) => left[n] !== right[n]);
  return differing.length ? differing.join(',') : undefined;
}

export function compareEntries(s: TreeEntry, t: TreeEntry, options: CompareOptions): string[] {
  const what: string[] = [];
  if (s.type !== t.type) return [`type ${s.type} != ${t.type}`];
  if (s.mode !== t.mode) what.push(`mode ${octal(s.mode)} != ${octal(t.mode)}`);
  if (s.uid !== t.uid || s.gid !== t.gid) what.push(`owner ${s.uid}:${s.gid} != ${t.uid}:${t.gid}`);
  if (s.type === 'file' && s.size !== t.size) what.push(`size ${s.size} != ${t.size}`);
  if (!sameMtime(s.mtimeNs, t.mtimeNs)) what.push(`mtime ${s.mtimeNs}ns != ${t.mtimeNs}ns`);
  if (s.type === 'symlink' && s.linkTarget !== t.linkTarget) {
    what.push(
      `symlink target ${JSON.stringify(displayPath(s.linkTarget ?? ''))} != ${JSON.stringify(displayPath(t.linkTarget ?? ''))}`,
    );
  }
  if ((s.type === 'char' || s.type === 'block') && s.rdev !== t.rdev) what.push(`device ${s.rdev} != ${t.rdev}`);
  if (options.compareXattrs) {
    const d = sameRecord(s.xattrs, t.xattrs);
    if (d) what.push(`xattrs ${d}`);
  }
  if (options.compareAcls) {
    const d = sameRecord(s.acls, t.acls);
    if (d) what.push(`acls ${d.replace(/system\.posix_acl_/g, '')}`);
  }
  if (options.compareContent && s.type === 'file' && s.sha256 !== t.sha256) what.push('content (sha256)');
  return what;
}

export function compareTrees(
  source: TreeListing,
  target: TreeListing,
  options: CompareOptions,
): { count: number; differences: Difference[] } {
  const limit = options.limit ?? 20;
  const differences: Difference[] = [];
  let count = 0;
  const add = (p: string, what: string): void => {
    count++;
    if (differences.length < limit) differences.push({ path: displayPath(p), what });
  };

  const sourcePaths = [...source.keys()].sort();
  const sourceSet = new Set(sourcePaths);
  const sourceGroups = linkGroups(source);
  // Without --delete, target-only paths are left alone and kept out of the groups.
  const targetGroups = linkGroups(target, options.mirror ? undefined : sourceSet);

  for (const p of sourcePaths) {
    const s = source.get(p);
    const t = target.get(p);
    if (!s) continue;
    if (!t) {
      add(p, 'missing on target');
      continue;
    }
    const what = compareEntries(s, t, options);
    if (s.type !== 'dir' && s.type === t.type && sourceGroups.get(p) !== targetGroups.get(p)) {
      what.push(
        `hard links: linked with ${JSON.stringify(displayPath(sourceGroups.get(p) ?? p))} on source, ${JSON.stringify(displayPath(targetGroups.get(p) ?? p))} on target`,
      );
    }
    if (what.length) add(p, what.join('; '));
  }
  if (options.mirror) {
    for (const p of [...target.keys()].sort()) if (!sourceSet.has(p)) add(p, 'only on target');
  }
  return { count, differences };
}
