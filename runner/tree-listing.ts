// A tree as verification compares it (tree-diff.ts): every entry's metadata
// and symlink target from one GNU find process (find-tree.ts; the lstat walk of
// tree-walk.ts where find cannot run), xattrs and ACLs from one getfattr
// process, both run at once, and, for --verify=checksum, each file's sha256.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import type { Difference } from '../src/runner-protocol.js';
import { FindFields, findChangedSince, findEntries, foundEntry } from './find-tree.js';
import { RECORD_FIELDS, RECORD_FORMAT, RecordListing, TargetRecords, compareRecords } from './record-listing.js';
import type { FeatureProbe } from './target-probe.js';
import { compareTrees, displayPath, type CompareOptions, type TreeEntry, type TreeListing } from './tree-diff.js';
import { entryPath, entryType, walkTree, type WalkOptions } from './tree-walk.js';
import { parseXattrDump, type XattrDumpEntry } from './xattr-dump.js';

export interface ListingOptions extends WalkOptions {
  xattrs: boolean;
  /** CAP_SYS_ADMIN: security.* is compared too (isCopiedXattr). */
  adminXattrs: boolean;
  acls: boolean;
  content: boolean;
  /** Warnings (e.g. getfattr missing) go here instead of failing the verification. */
  warn: (message: string) => void;
  /**
   * Who reads the entries: 'find' (the default) falls back to 'node' when find
   * cannot run; 'node' is the lstat walk alone (tests and hack/bench-verify.ts
   * hold the two side by side).
   */
  lister?: 'find' | 'node';
}

export async function readListing(root: string, options: ListingOptions): Promise<TreeListing> {
  // getfattr walks the tree on its own: it runs while find (or the walk) does.
  const [found, attributes] = await Promise.all([
    options.lister === 'node' ? undefined : listWithFind(root, options),
    options.xattrs || options.acls ? dumpXattrs(root, options.warn, options.adminXattrs) : undefined,
  ]);
  const listing = found ?? (await listWithNode(root, options));
  if (attributes !== undefined) addXattrs(listing, attributes, options);
  if (options.content) await addHashes(root, listing, options.signal);
  return listing;
}

export interface VerifyOptions {
  /** What the target can hold (target-probe.ts): what it cannot is not compared. */
  features: Pick<FeatureProbe, 'xattrs' | 'acls' | 'adminXattrs'>;
  /** --verify=checksum: contents are hashed and compared too. */
  content: boolean;
  /** --delete: paths only the target has are differences. */
  mirror: boolean;
  /** Top-level names of the target left out (the runner's temp dir). */
  targetSkip?: ReadonlySet<string>;
  warn: (message: string) => void;
  /** What the verification did with an early source listing (used, or why not). */
  info?: (message: string) => void;
  signal?: AbortSignal;
  lister?: ListingOptions['lister'];
  /**
   * The source listed while the copy ran (listSourceEarly): used if no source
   * entry changed since it began, else the source is listed again.
   */
  early?: EarlySourceListing;
}

type Verdict = { count: number; differences: Difference[] };

const listingOptionsOf = (options: VerifyOptions): ListingOptions => ({
  xattrs: options.features.xattrs,
  adminXattrs: options.features.adminXattrs,
  acls: options.features.acls,
  content: options.content,
  warn: options.warn,
  signal: options.signal,
  lister: options.lister,
});

const compareOptionsOf = (options: VerifyOptions): CompareOptions => ({
  mirror: options.mirror,
  compareXattrs: options.features.xattrs,
  compareAcls: options.features.acls,
  compareContent: options.content,
});

/**
 * The runner's verification: both trees listed at once (two find and two
 * getfattr processes), then compared as bytes (record-listing.ts): only the
 * entries whose bytes differ are parsed. With `early`, the source's listing
 * was made while the copy ran: only the target is listed now, beside one find
 * that stats the source for anything changed since that listing began.
 * --verify=checksum, the lstat walk (lister 'node') and a tree find cannot
 * list are read into TreeListings and compared by compareTrees, as before.
 */
export async function verifyCopy(source: string, target: string, options: VerifyOptions): Promise<Verdict> {
  if (!options.content && options.lister !== 'node') {
    if (options.early !== undefined) {
      const verdict = await verifyWithEarly(source, target, options, options.early);
      if (verdict !== undefined) return verdict;
    }
    const verdict = await verifyRecords(source, target, options, listSourceRecords(source, listingOptionsOf(options)));
    if (verdict !== undefined) return verdict;
  }
  const listingOptions = listingOptionsOf(options);
  const [sourceListing, targetListing] = await Promise.all([
    readListing(source, listingOptions),
    readListing(target, { ...listingOptions, skipTopLevel: options.targetSkip }),
  ]);
  return compareTrees(sourceListing, targetListing, compareOptionsOf(options));
}

/** A source's records and attributes, as listSourceRecords reads them. */
export interface SourceRecords {
  records: RecordListing;
  attributes: Map<string, XattrDumpEntry> | undefined;
}

/** find and getfattr side by side; undefined when find cannot run. */
async function listSourceRecords(root: string, options: ListingOptions): Promise<SourceRecords | undefined> {
  const records = new RecordListing();
  const [found, attributes] = await Promise.all([
    findEntries(root, RECORD_FORMAT, RECORD_FIELDS, (r) => records.add(r), { ...options, verb: 'listing' }),
    options.xattrs || options.acls ? dumpXattrs(root, options.warn, options.adminXattrs) : undefined,
  ]);
  return found === undefined ? undefined : { records, attributes };
}

/**
 * The target listed and matched against the source's records as find prints
 * it (once `sourceRecords` is there), then compared. Undefined when find
 * cannot list either tree, or when `ready` (the early listing's check) says
 * the source's records cannot be used: the caller falls back.
 */
async function verifyRecords(
  source: string,
  target: string,
  options: VerifyOptions,
  sourceRecords: Promise<SourceRecords | undefined>,
  ready?: Promise<boolean>,
): Promise<Verdict | undefined> {
  const listingOptions = listingOptionsOf(options);
  const targetRecords = new TargetRecords(options.mirror);
  const [sourceSide, targetFound, targetAttributes, usable] = await Promise.all([
    sourceRecords.then((s) => {
      if (s !== undefined) targetRecords.attach(s.records);
      return s;
    }),
    findEntries(target, RECORD_FORMAT, RECORD_FIELDS, (r) => targetRecords.add(r), {
      ...listingOptions,
      skipTopLevel: options.targetSkip,
      verb: 'listing',
    }),
    listingOptions.xattrs || listingOptions.acls
      ? dumpXattrs(target, options.warn, listingOptions.adminXattrs)
      : undefined,
    ready ?? true,
  ]);
  if (sourceSide === undefined || targetFound === undefined || !usable) return undefined;
  return compareRecords(
    sourceSide.records,
    targetRecords,
    {
      source: { root: source, attributes: sourceSide.attributes },
      target: { root: target, attributes: targetAttributes },
    },
    compareOptionsOf(options),
  );
}

/**
 * How long before the early listing began a change still counts as after it:
 * inode times come from the kernel's coarse clock (up to a tick, a few ms,
 * behind the time Node reads), and Date.now() has whole milliseconds. A source
 * entry changed less than this before the listing began sends the
 * verification back to listing the source after the copy: safe, only slower.
 */
export const EARLY_LISTING_MARGIN_MS = 1000;

/**
 * Filesystems whose inode times come from this kernel's clock (statfs
 * f_type): the clock Node reads. On a network filesystem (NFS, CephFS, SMB)
 * or FUSE the server sets ctime by its own clock, and another client may
 * write: the source is listed after the copy there, as before.
 */
const LOCAL_FILESYSTEMS: ReadonlyMap<number, string> = new Map([
  [0xef53, 'ext2/3/4'],
  [0x58465342, 'xfs'],
  [0x9123683e, 'btrfs'],
  [0x01021994, 'tmpfs'],
  [0xf2f52010, 'f2fs'],
  [0x2fc12fc1, 'zfs'],
]);

/** The source listed while the copy runs (listSourceEarly). */
export interface EarlySourceListing {
  /** Date.now() and process.hrtime.bigint() just before the listing began. */
  readonly startedMs: number;
  readonly startedMono: bigint;
  /** The listing; undefined (never a rejection) when there is none: `why` says why. */
  readonly listing: Promise<{ records?: SourceRecords; why?: string }>;
}

/**
 * Starts listing the source (find and getfattr, as verifyCopy would after the
 * copy) now, while the copy runs, so that verification after the copy has
 * only the target to list. A source that changes after this began makes the
 * listing useless: verifyCopy checks for that (any entry whose ctime is after
 * the start, less EARLY_LISTING_MARGIN_MS) and lists the source again if so.
 * Only for --verify metadata on a local filesystem (LOCAL_FILESYSTEMS).
 */
export function listSourceEarly(source: string, options: VerifyOptions): EarlySourceListing {
  const startedMs = Date.now();
  const startedMono = process.hrtime.bigint();
  const listing = (async (): Promise<{ records?: SourceRecords; why?: string }> => {
    if (options.content || options.lister === 'node') return { why: 'not for this verification' };
    const type = (await fs.statfs(source)).type;
    if (!LOCAL_FILESYSTEMS.has(type))
      return {
        why: `the source's filesystem (type 0x${type.toString(16)}) is not one whose ctimes this node's clock sets`,
      };
    const records = await listSourceRecords(source, listingOptionsOf(options));
    return records === undefined ? { why: 'find cannot list it' } : { records };
  })().catch((e: unknown) => ({ why: `listing it failed: ${e instanceof Error ? e.message : String(e)}` }));
  return { startedMs, startedMono, listing };
}

/**
 * The ctime (ns since the epoch) after which a change to the source voids an
 * early listing: its start, less the margin, less any step back of the wall
 * clock since (what the monotonic clock counted beyond the wall clock).
 */
export function changedAfterNs(
  early: Pick<EarlySourceListing, 'startedMs' | 'startedMono'>,
  nowMs: number,
  nowMono: bigint,
): bigint {
  const monoMs = Number((nowMono - early.startedMono) / 1_000_000n);
  const steppedBackMs = Math.max(0, monoMs - (nowMs - early.startedMs));
  return BigInt(Math.floor(early.startedMs - EARLY_LISTING_MARGIN_MS - steppedBackMs)) * 1_000_000n;
}

/**
 * verifyCopy with the source listed early: the target listed and matched as
 * find prints it, while one find stats the source for any entry changed
 * since the early listing began. Undefined (list the source again) when there
 * is no early listing or something changed.
 */
async function verifyWithEarly(
  source: string,
  target: string,
  options: VerifyOptions,
  early: EarlySourceListing,
): Promise<Verdict | undefined> {
  const info = options.info ?? ((): void => undefined);
  const after = changedAfterNs(early, Date.now(), process.hrtime.bigint());
  // Done by now, as a rule: it ran while the copy did.
  const listed = await early.listing;
  if (listed.records === undefined) {
    info(`the source is listed after the copy: ${listed.why ?? 'no early listing'}`);
    return undefined;
  }
  let why: string | undefined;
  const unchanged = findChangedSince(source, after, options.signal).then((changed) => {
    if (changed === undefined) why = 'find cannot tell whether it changed since the listing began';
    else if (changed !== null) why = `${JSON.stringify(displayPath(changed))} changed (ctime) since the listing began`;
    return why === undefined;
  });
  // The target is matched against the early listing as it comes; used only if nothing changed.
  const verdict = await verifyRecords(source, target, options, Promise.resolve(listed.records), unchanged);
  if (verdict !== undefined) info('the source was listed while the copy ran and has not changed since');
  else info(`the source is listed again after the copy: ${why ?? 'find cannot list the target'}`);
  return verdict;
}

/**
 * Type, permission bits (octal, set-id and sticky included), uid, gid, size,
 * 512-byte blocks, dev:ino, links and mtime, then two NUL-terminated fields: the path
 * below the starting point (empty for the root; it may hold spaces and
 * newlines) and the symlink's target (empty for anything else). find has no
 * directive for st_rdev: devices are lstat'ed (listWithFind).
 */
const LISTING_FORMAT = '%y %m %U %G %s %b %D:%i %n %T@ %P\\0%l\\0';

/** One entry of LISTING_FORMAT, both its NUL-terminated fields, names as latin1 strings of their bytes. Undefined when malformed. */
export function parseListingEntry(record: Buffer): { rel: string; entry: TreeEntry } | undefined {
  const fields = new FindFields(record);
  const type = fields.type();
  const mode = fields.number(8);
  const uid = fields.number();
  const gid = fields.number();
  const size = fields.bigint();
  const blocks = fields.bigint();
  const inode = fields.word();
  const nlink = fields.number();
  const mtimeNs = fields.time();
  const rel = fields.text();
  const linkTarget = fields.text();
  const entry = foundEntry({ type, mode, uid, gid, size, mtimeNs, blocks, inode, nlink, linkTarget });
  return entry && { rel: rel === '' ? '.' : rel, entry };
}

/** Undefined when find cannot run (findEntries): the caller walks the tree in Node. */
async function listWithFind(root: string, options: ListingOptions): Promise<TreeListing | undefined> {
  const listing: TreeListing = new Map();
  const devices: string[] = [];
  const add = (record: Buffer): boolean => {
    const parsed = parseListingEntry(record);
    if (parsed === undefined) return false;
    listing.set(parsed.rel, parsed.entry);
    if (parsed.entry.type === 'char' || parsed.entry.type === 'block') devices.push(parsed.rel);
    return true;
  };
  const found = await findEntries(root, LISTING_FORMAT, 2, add, { ...options, verb: 'listing' });
  if (found === undefined) return undefined;
  for (const rel of devices) {
    const e = listing.get(rel);
    if (e) e.rdev = (await fs.lstat(entryPath(root, rel), { bigint: true })).rdev;
  }
  return listing;
}

/** The lstat walk (tree-walk.ts), then each symlink's target. */
async function listWithNode(root: string, options: ListingOptions): Promise<TreeListing> {
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
        nlink: Number(st.nlink),
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
  return listing;
}

/** Every file's xattrs and ACLs from one getfattr process; undefined when getfattr is not installed. */
async function dumpXattrs(
  root: string,
  warn: (message: string) => void,
  admin: boolean,
): Promise<Map<string, XattrDumpEntry> | undefined> {
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
    let spawnFailed = false;
    child.on('error', (e: NodeJS.ErrnoException) => {
      spawnFailed = true;
      if (e.code !== 'ENOENT') reject(e);
      // A missing cwd fails the spawn with ENOENT too: a root that is gone is
      // the listing's failure to report, not a missing getfattr.
      else
        fs.stat(root).then(
          () => {
            warn('getfattr is not installed: xattrs and ACLs are not verified');
            resolve(undefined);
          },
          () => resolve(undefined),
        );
    });
    child.on('close', (code) => {
      if (spawnFailed) return;
      // Non-zero when some file could not be read: stderr says which.
      if (code !== 0 && err.trim()) warn(`getfattr: ${err.trim().split('\n').slice(0, 3).join('; ')}`);
      resolve(Buffer.concat(out).toString('latin1'));
    });
  });
  return dump === undefined ? undefined : parseXattrDump(dump, admin);
}

const NONE: Readonly<Record<string, string>> = Object.freeze({});

function addXattrs(listing: TreeListing, parsed: Map<string, XattrDumpEntry>, options: ListingOptions): void {
  for (const [rel, e] of listing) {
    const found = parsed.get(rel);
    // getfattr lists only files that have attributes; the rest have none
    // (one frozen empty record for all of them: 100,000s of objects fewer).
    if (options.xattrs) e.xattrs = found?.xattrs ?? NONE;
    if (options.acls) e.acls = found?.acls ?? NONE;
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
