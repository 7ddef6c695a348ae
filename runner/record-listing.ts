// The verification's comparison of two find listings kept as find printed
// them (issue 12). Each entry's compared fields are one run of bytes; the two
// trees' runs are compared as bytes, path by path, and only the entries whose
// bytes differ (or whose xattrs, ACLs or hard-link groups differ, or that are
// devices, whose numbers find cannot print) are parsed and compared field by
// field by compareEntries (tree-diff.ts), exactly as compareTrees does: the
// same differences, the same messages. Equal bytes mean equal type, mode,
// owner, size, mtime to the nanosecond and symlink target, which is all
// compareEntries looks at but for device numbers, xattrs and ACLs.
//
// Parsing every entry into an object (numbers, bigints, strings) cost ~0.14 s
// of CPU per 100,000 entries and tree; here an entry costs its path as a
// string, one Map operation and a memcmp of ~50 bytes. The source's listing
// can be made before the target's (listed while rsync copies, see
// tree-listing.ts): the target's entries are then matched as find prints them.
// Names are latin1 strings of their bytes (see tree-diff.ts).
import fs from 'node:fs/promises';
import type { Difference } from '../src/runner-protocol.js';
import { FindFields, foundEntry, type FindFormat } from './find-tree.js';
import {
  compareEntries,
  displayPath,
  sameRecord,
  type CompareOptions,
  type TreeEntry,
  type TreeListing,
} from './tree-diff.js';
import { entryPath } from './tree-walk.js';
import type { XattrDumpEntry } from './xattr-dump.js';

/**
 * Four NUL-terminated fields: the path below the starting point (empty for
 * the root); what is compared byte for byte (type, permission bits, uid, gid,
 * mtime, size: "-" for a directory, whose size depends on the filesystem and
 * is not compared), the symlink's target (empty for anything else); then what
 * is not compared as bytes: links, dev:ino (hard-link groups), 512-byte
 * blocks. Every number ends with a space. find has no directive for st_rdev:
 * devices are lstat'ed.
 */
export const RECORD_FORMAT: FindFormat = {
  dir: '%P\\0%y %m %U %G %T@ - \\0%l\\0%n %D:%i %b \\0',
  other: '%P\\0%y %m %U %G %T@ %s \\0%l\\0%n %D:%i %b \\0',
};
export const RECORD_FIELDS = 4;

const [SPACE, ONE, DIR, CHAR, BLOCK] = [0x20, 0x31, 0x64, 0x63, 0x62];

/**
 * The buffers find's output arrived in, kept: a record is known by the buffer
 * it lies in and its offsets there, never copied (copying each record cost
 * more than comparing it). Node never writes to a chunk it has handed over,
 * nor find-tree.ts to one it has passed to onEntry.
 */
class Chunks {
  readonly views: Buffer[] = [];
  private last: ArrayBufferLike | undefined;

  /** The index of the buffer `record` lies in (its offset there is record.byteOffset). */
  of(record: Buffer): number {
    if (record.buffer !== this.last) {
      this.last = record.buffer;
      this.views.push(Buffer.from(record.buffer));
    }
    return this.views.length - 1;
  }
}

/** Where a record's fields end (its NULs), or undefined when it is not one of RECORD_FORMAT. */
function fieldEnds(b: Buffer, from: number, to: number): [number, number, number] | undefined {
  const path = b.indexOf(0, from);
  const compared = path < 0 ? -1 : b.indexOf(0, path + 1);
  const link = compared < 0 ? -1 : b.indexOf(0, compared + 1);
  // A type byte and its space, and the last field ending the record.
  if (link < 0 || link + 1 >= to || b[path + 2] !== SPACE || b[to - 1] !== 0) return undefined;
  return [path, compared, link];
}

/** dev:ino of the last field, if the entry is a non-directory with more than one link (else undefined). */
function linkedInode(b: Buffer, type: number | undefined, extra: number, to: number): string | undefined {
  if (type === DIR || (b[extra] === ONE && b[extra + 1] === SPACE)) return undefined;
  const from = b.indexOf(SPACE, extra) + 1;
  const end = b.indexOf(SPACE, from);
  return from <= 0 || end < 0 || end >= to ? undefined : b.toString('latin1', from, end);
}

/** One tree's listing as bytes: path -> its record (without the path). */
export class RecordListing {
  readonly paths: string[] = [];
  readonly index = new Map<string, number>();
  readonly chunks = new Chunks();
  /** Per entry: the chunk it lies in, where its record (past the path) starts, its compared bytes end, it ends. */
  readonly chunk: number[] = [];
  readonly starts: number[] = [];
  readonly comparedEnds: number[] = [];
  readonly ends: number[] = [];
  /** Non-directories with more than one link: path -> dev:ino. */
  readonly linked = new Map<string, string>();

  /** One record of RECORD_FORMAT, as find-tree's onEntry: false when malformed. */
  add(record: Buffer): boolean {
    const c = this.chunks.of(record);
    const b = this.chunks.views[c] as Buffer;
    const from = record.byteOffset;
    const to = from + record.length;
    const ends = fieldEnds(b, from, to);
    if (ends === undefined) return false;
    const [path, , link] = ends;
    const rel = path === from ? '.' : b.toString('latin1', from, path);
    this.index.set(rel, this.paths.length);
    this.paths.push(rel);
    this.chunk.push(c);
    this.starts.push(path + 1);
    this.comparedEnds.push(link);
    this.ends.push(to);
    const inode = linkedInode(b, b[path + 1], link + 1, to);
    if (inode !== undefined) this.linked.set(rel, inode);
    return true;
  }

  get size(): number {
    return this.paths.length;
  }

  /** Entry `i` parsed (TreeEntry; rdev still 0); undefined when malformed. */
  entry(i: number): TreeEntry | undefined {
    return parseRecord((this.chunks.views[this.chunk[i] as number] as Buffer).subarray(this.starts[i], this.ends[i]));
  }
}

/**
 * One record (without its path) parsed: what compareEntries needs.
 * Undefined when malformed.
 */
export function parseRecord(record: Buffer): TreeEntry | undefined {
  const fields = new FindFields(record);
  const type = fields.type();
  const mode = fields.number(8);
  const uid = fields.number();
  const gid = fields.number();
  const mtimeNs = fields.time();
  const size = type === 'dir' ? (fields.word() === '-' ? 0n : undefined) : fields.bigint();
  if (fields.text() !== '') return undefined;
  const linkTarget = fields.text();
  const nlink = fields.number();
  const inode = fields.word();
  const blocks = fields.bigint();
  if (fields.text() !== '') return undefined;
  return foundEntry({ type, mode, uid, gid, size, mtimeNs, blocks, inode, nlink, linkTarget });
}

/**
 * The target's records matched against the source's as they come: only the
 * target's records the source has a path for are kept (by reference). Records
 * that come before the source's listing is complete wait until it is.
 */
export class TargetRecords {
  private source: RecordListing | undefined;
  private readonly chunks = new Chunks();
  private seen = new Uint8Array(0);
  private chunk = new Int32Array(0);
  private starts = new Int32Array(0);
  private ends = new Int32Array(0);
  /** Records that came before the source's listing: chunk, start, end of each. */
  private waiting: number[] = [];
  /** Source entries (indices) whose compared bytes differ, or that are devices. */
  readonly candidates = new Set<number>();
  /** Paths only the target has (kept with `mirror` only). */
  readonly onlyTarget: string[] = [];
  /** Non-directories with more than one link: path -> dev:ino (without `mirror`, only paths the source has). */
  readonly linked = new Map<string, string>();

  constructor(private readonly mirror: boolean) {}

  /** One record of RECORD_FORMAT, as find-tree's onEntry: false when malformed. */
  add(record: Buffer): boolean {
    const c = this.chunks.of(record);
    const from = record.byteOffset;
    const to = from + record.length;
    if (this.source !== undefined) return this.match(c, from, to);
    if (fieldEnds(this.chunks.views[c] as Buffer, from, to) === undefined) return false;
    this.waiting.push(c, from, to);
    return true;
  }

  /** The source's listing, complete: what waited is matched now, the rest as it comes. */
  attach(source: RecordListing): void {
    this.source = source;
    this.seen = new Uint8Array(source.size);
    this.chunk = new Int32Array(source.size);
    this.starts = new Int32Array(source.size);
    this.ends = new Int32Array(source.size);
    const w = this.waiting;
    for (let k = 0; k < w.length; k += 3) this.match(w[k] as number, w[k + 1] as number, w[k + 2] as number);
    this.waiting = [];
  }

  private match(c: number, from: number, to: number): boolean {
    const source = this.source as RecordListing;
    const b = this.chunks.views[c] as Buffer;
    const ends = fieldEnds(b, from, to);
    if (ends === undefined) return false;
    const [path, , link] = ends;
    const rel = path === from ? '.' : b.toString('latin1', from, path);
    const type = b[path + 1];
    const i = source.index.get(rel);
    if (i === undefined) {
      if (this.mirror) {
        this.onlyTarget.push(rel);
        const inode = linkedInode(b, type, link + 1, to);
        if (inode !== undefined) this.linked.set(rel, inode);
      }
      return true;
    }
    this.seen[i] = 1;
    this.chunk[i] = c;
    this.starts[i] = path + 1;
    this.ends[i] = to;
    const s = source.chunks.views[source.chunk[i] as number] as Buffer;
    if (type === CHAR || type === BLOCK || b.compare(s, source.starts[i], source.comparedEnds[i], path + 1, link) !== 0)
      this.candidates.add(i);
    const inode = linkedInode(b, type, link + 1, to);
    if (inode !== undefined) this.linked.set(rel, inode);
    return true;
  }

  has(i: number): boolean {
    return this.seen[i] === 1;
  }

  /** The target's entry at the source's index `i` (which it has: has(i)); undefined when malformed. */
  entry(i: number): TreeEntry | undefined {
    return parseRecord((this.chunks.views[this.chunk[i] as number] as Buffer).subarray(this.starts[i], this.ends[i]));
  }
}

/** Each hard-link group's name by dev:ino: its smallest path (as groupNames in tree-diff.ts). */
function groupNamesOf(linked: Map<string, string>): Map<string, string> {
  const names = new Map<string, string>();
  for (const [p, inode] of linked) {
    const name = names.get(inode);
    if (name === undefined || p < name) names.set(inode, p);
  }
  return names;
}

const NONE: Readonly<Record<string, string>> = Object.freeze({});

export interface RecordSides {
  root: string;
  attributes: Map<string, XattrDumpEntry> | undefined;
}

/** What getfattr found for an entry, as tree-listing's addXattrs sets it. */
function addAttributes(e: TreeEntry, found: XattrDumpEntry | undefined, options: CompareOptions): void {
  if (options.compareXattrs) e.xattrs = found?.xattrs ?? NONE;
  if (options.compareAcls) e.acls = found?.acls ?? NONE;
  if (e.type === 'symlink') {
    delete e.xattrs;
    delete e.acls;
  }
}

/**
 * compareTrees (tree-diff.ts) on two record listings: the same count and the
 * same differences. `options.compareContent` is not supported (no hashes).
 */
export async function compareRecords(
  source: RecordListing,
  target: TargetRecords,
  sides: { source: RecordSides; target: RecordSides },
  options: CompareOptions,
): Promise<{ count: number; differences: Difference[] }> {
  const candidates = new Set(target.candidates);
  const found: [string, string][] = [];
  for (let i = 0; i < source.size; i++)
    if (!target.has(i)) found.push([source.paths[i] as string, 'missing on target']);

  // Hard links: the paths whose group's name is not the same on both sides.
  const sourceNames = groupNamesOf(source.linked);
  const targetNames = groupNamesOf(target.linked);
  const sourceGroup = (p: string): string => {
    const inode = source.linked.get(p);
    return inode === undefined ? p : (sourceNames.get(inode) ?? p);
  };
  const targetGroup = (p: string): string => {
    const inode = target.linked.get(p);
    return inode === undefined ? p : (targetNames.get(inode) ?? p);
  };
  for (const p of [...source.linked.keys(), ...target.linked.keys()]) {
    const i = source.index.get(p);
    if (i !== undefined && target.has(i) && sourceGroup(p) !== targetGroup(p)) candidates.add(i);
  }
  // Attributes: getfattr lists only the entries that have some.
  const sa = sides.source.attributes;
  const ta = sides.target.attributes;
  if (sa !== undefined || ta !== undefined) {
    for (const p of new Set([...(sa?.keys() ?? []), ...(ta?.keys() ?? [])])) {
      const i = source.index.get(p);
      if (i === undefined || !target.has(i) || candidates.has(i)) continue;
      const s = sa?.get(p);
      const t = ta?.get(p);
      if (
        (options.compareXattrs && sameRecord(s?.xattrs ?? NONE, t?.xattrs ?? NONE) !== undefined) ||
        (options.compareAcls && sameRecord(s?.acls ?? NONE, t?.acls ?? NONE) !== undefined)
      )
        candidates.add(i);
    }
  }

  // Each candidate compared field by field, as compareTrees compares every entry.
  const malformed = (root: string, p: string): Error =>
    new Error(`listing ${root}: unexpected output from find for ${JSON.stringify(displayPath(p))}`);
  for (const i of candidates) {
    const p = source.paths[i] as string;
    const s = source.entry(i);
    const t = target.entry(i);
    if (s === undefined) throw malformed(sides.source.root, p);
    if (t === undefined) throw malformed(sides.target.root, p);
    addAttributes(s, sa?.get(p), options);
    addAttributes(t, ta?.get(p), options);
    if (s.type === 'char' || s.type === 'block')
      s.rdev = (await fs.lstat(entryPath(sides.source.root, p), { bigint: true })).rdev;
    if (t.type === 'char' || t.type === 'block')
      t.rdev = (await fs.lstat(entryPath(sides.target.root, p), { bigint: true })).rdev;
    const what = compareEntries(s, t, options);
    if (s.type !== 'dir' && s.type === t.type) {
      const sg = s.nlink === 1 ? p : sourceGroup(p);
      const tg = t.nlink === 1 ? p : targetGroup(p);
      if (sg !== tg) {
        what.push(
          `hard links: linked with ${JSON.stringify(displayPath(sg))} on source, ${JSON.stringify(displayPath(tg))} on target`,
        );
      }
    }
    if (what.length) found.push([p, what.join('; ')]);
  }
  const byPath = (a: [string, string], b: [string, string]): number => (a[0] < b[0] ? -1 : 1);
  found.sort(byPath);
  if (options.mirror) for (const p of [...target.onlyTarget].sort()) found.push([p, 'only on target']);
  return {
    count: found.length,
    differences: found.slice(0, options.limit ?? 20).map(([p, what]) => ({ path: displayPath(p), what })),
  };
}

/** A record listing as a TreeListing (every entry parsed, devices lstat'ed), for compareTrees. */
export async function toTreeListing(records: RecordListing, root: string): Promise<TreeListing | undefined> {
  const listing: TreeListing = new Map();
  for (let i = 0; i < records.size; i++) {
    const e = records.entry(i);
    if (e === undefined) return undefined;
    const p = records.paths[i] as string;
    if (e.type === 'char' || e.type === 'block') e.rdev = (await fs.lstat(entryPath(root, p), { bigint: true })).rdev;
    listing.set(p, e);
  }
  return listing;
}
