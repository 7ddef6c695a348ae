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
  /**
   * Links to the inode (st_nlink). 1: no other path shares it, so it needs no
   * hard-link group (on 100,000 files, grouping every inode was a good part
   * of a comparison's time). Undefined: not known, grouped like any other.
   */
  nlink?: number;
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
 * The name of each hard-link group in `listing` by inode: its smallest path
 * (among `only`, a Set or a listing's Map, when given). Entries with a single
 * link are their own group and left out: groupName() answers for them.
 */
function groupNames(listing: TreeListing, only?: { has(path: string): boolean }): Map<string, string> {
  const names = new Map<string, string>();
  for (const [p, e] of listing) {
    if (e.type === 'dir' || e.nlink === 1 || (only && !only.has(p))) continue;
    const name = names.get(e.inode);
    if (name === undefined || p < name) names.set(e.inode, p);
  }
  return names;
}

const groupName = (names: Map<string, string>, p: string, e: TreeEntry): string =>
  e.nlink === 1 ? p : (names.get(e.inode) ?? p);

/**
 * Each path of a non-directory mapped to its hard-link group's name: the
 * smallest path sharing its inode. Two trees have the same link structure
 * exactly when every path maps to the same name on both sides (what
 * compareTrees checks, path by path).
 */
export function linkGroups(listing: TreeListing, only?: { has(path: string): boolean }): Map<string, string> {
  const names = groupNames(listing, only);
  const result = new Map<string, string>();
  for (const [p, e] of listing) if (e.type !== 'dir' && (!only || only.has(p))) result.set(p, groupName(names, p, e));
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

/** The names whose values differ between two attribute records (comma-separated), or undefined when none do. */
export function sameRecord(
  a: Record<string, string> | undefined,
  b: Record<string, string> | undefined,
): string | undefined {
  const left = a ?? {};
  const right = b ?? {};
  // Most entries have none on either side: no sets and sorts for them.
  if (left === right || (Object.keys(left).length === 0 && Object.keys(right).length === 0)) return undefined;
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
  // Walked in the listings' order; only what differs is sorted, so that the
  // first `limit` reported are the first by path, as before.
  const found: [string, string][] = [];
  const sourceGroups = groupNames(source);
  // Without --delete, target-only paths are left alone and kept out of the groups.
  const targetGroups = groupNames(target, options.mirror ? undefined : source);

  for (const [p, s] of source) {
    const t = target.get(p);
    if (!t) {
      found.push([p, 'missing on target']);
      continue;
    }
    const what = compareEntries(s, t, options);
    if (s.type !== 'dir' && s.type === t.type) {
      const sourceGroup = groupName(sourceGroups, p, s);
      const targetGroup = groupName(targetGroups, p, t);
      if (sourceGroup !== targetGroup) {
        what.push(
          `hard links: linked with ${JSON.stringify(displayPath(sourceGroup))} on source, ${JSON.stringify(displayPath(targetGroup))} on target`,
        );
      }
    }
    if (what.length) found.push([p, what.join('; ')]);
  }
  const byPath = (a: [string, string], b: [string, string]): number => (a[0] < b[0] ? -1 : 1);
  found.sort(byPath);
  if (options.mirror) {
    const extra: [string, string][] = [];
    for (const p of target.keys()) if (!source.has(p)) extra.push([p, 'only on target']);
    for (const e of extra.sort(byPath)) found.push(e);
  }
  return {
    count: found.length,
    differences: found.slice(0, options.limit ?? 20).map(([p, what]) => ({ path: displayPath(p), what })),
  };
}
