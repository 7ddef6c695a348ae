// The verification's listings: GNU find (readListing) and the lstat walk it
// falls back to (lister 'node', how the listing was read before) against the
// test's own lstat of every entry, on a tree with every kind of entry; then
// what a verification of a copy catches.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { Summary } from '../../src/runner-protocol.js';
import type { EntryType, TreeEntry, TreeListing } from '../../runner/tree-diff.js';
import {
  EARLY_LISTING_MARGIN_MS,
  changedAfterNs,
  listSourceEarly,
  parseListingEntry,
  readListing,
  verifyCopy,
  type ListingOptions,
} from '../../runner/tree-listing.js';
import { binWithout, runInProcess, sh, which, workspace } from './fixtures/trees.js';

/** A latin1 string of the bytes ff fe: a name that is not valid UTF-8. */
const NOT_UTF8 = Buffer.from([0xff, 0xfe]).toString('latin1');
const LONG_DIR_FILES = 1000;

/** Every kind of entry, owners, set-id and sticky bits, ns and pre-1970 mtimes, names find and a shell make hard. */
function buildTree(src: string): void {
  sh(
    [
      'mkdir -p a b empty "with space" $\'new\\nline\' $\'\\xff\\xfe\' "[x]*?" skipped/inner many',
      // One inode under three names, one of them not UTF-8.
      "printf linked > a/h1 && ln a/h1 b/h2 && ln a/h1 $'\\xff\\xfe/h3'",
      "printf odd > $'\\xff\\xfe/\\x80\\x81' && printf n > $'new\\nline/file\\nname' && printf s > \"with space/file name\"",
      "printf b > 'back\\slash' && printf g > '[x]*?/glob'",
      // Symlinks: relative, dangling, and one whose target holds a newline, a space and a byte that is not UTF-8.
      "ln -s ../a/h1 b/rel && ln -s /nowhere dangling && ln -s $'tar\\nget \\xff' odd-target",
      'mkfifo fifo && mknod cdev c 1 3 && mknod bdev b 7 200',
      'truncate -s 10M sparse && printf middle | dd of=sparse bs=1 seek=5242880 conv=notrunc status=none',
      'printf owned > a/owned && chown 1234:5678 a/owned && chown -h 2345:6789 b/rel && chown 1234:5678 "with space"',
      'printf suid > a/suid && chmod 4755 a/suid && chmod 2775 b && chmod 1777 empty && printf z > zero && chmod 000 zero',
      `printf long > ${'L'.repeat(255)}`,
      'printf skip > skipped/inner/file',
      // Enough output (~150 KiB) that find's records cross the pipe's 64 KiB chunks.
      `for i in $(seq 1 ${LONG_DIR_FILES}); do : > "many/$i-${'n'.repeat(140)}"; done`,
      'setfattr -n user.color -v blue a/owned',
      // Times last: making entries in a directory sets its mtime.
      'printf old > a/old && touch -d @-1.5 a/old',
      'touch -d @1700000000.123456789 a/owned && touch -h -d @1600000000.987654321 b/rel && touch -d @4000000000.000000001 empty',
    ].join('\n'),
    src,
  );
  // A socket: Node leaves its file behind when the process exits without closing the server.
  const made = spawnSync(process.execPath, [
    '-e',
    "require('net').createServer().listen(process.argv[1], () => process.exit(0))",
    path.join(src, 'sock'),
  ]);
  if (made.status !== 0) throw new Error(`making a socket failed: ${made.stderr.toString()}`);
}

function kind(st: fs.BigIntStats): EntryType {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isFIFO()) return 'fifo';
  if (st.isCharacterDevice()) return 'char';
  if (st.isBlockDevice()) return 'block';
  return 'socket';
}

/** The listing as the test reads the tree: lstat and readlink of every entry, names as bytes. */
function lstatListing(root: string, skipTopLevel: readonly string[] = []): TreeListing {
  const listing: TreeListing = new Map();
  const visit = (rel: string): void => {
    const abs =
      rel === '.'
        ? Buffer.from(root)
        : Buffer.concat([Buffer.from(root), Buffer.from('/'), Buffer.from(rel, 'latin1')]);
    const st = fs.lstatSync(abs, { bigint: true });
    const type = kind(st);
    const entry: TreeEntry = {
      type,
      mode: Number(st.mode & 0o7777n),
      uid: Number(st.uid),
      gid: Number(st.gid),
      size: type === 'file' ? st.size : 0n,
      mtimeNs: st.mtimeNs,
      rdev: type === 'char' || type === 'block' ? st.rdev : 0n,
      blocks: st.blocks,
      inode: `${st.dev}:${st.ino}`,
      nlink: Number(st.nlink),
    };
    if (type === 'symlink') entry.linkTarget = fs.readlinkSync(abs, { encoding: 'buffer' }).toString('latin1');
    listing.set(rel, entry);
    if (type !== 'dir') return;
    for (const raw of fs.readdirSync(abs, { encoding: 'buffer' })) {
      const name = raw.toString('latin1');
      if (rel === '.' && skipTopLevel.includes(name)) continue;
      visit(rel === '.' ? name : `${rel}/${name}`);
    }
  };
  visit('.');
  return listing;
}

/** Entries sorted by path: the walks meet them in different orders. */
const sorted = (listing: TreeListing): [string, TreeEntry][] => [...listing].sort(([a], [b]) => (a < b ? -1 : 1));

const metadataOnly: ListingOptions = {
  xattrs: false,
  adminXattrs: true,
  acls: false,
  content: false,
  warn: (m) => t.fail(`unexpected warning: ${m}`),
};

void t.test('find lists every entry as lstat sees it, and as the lstat walk did', async (t) => {
  const { work, src } = workspace(t, 'pvshift-listing-');
  buildTree(src);
  const expected = lstatListing(src);

  // find on PATH through a wrapper that leaves a mark: the listing is find's, not a silent fallback's.
  const bin = path.join(work, 'bin');
  fs.mkdirSync(bin);
  fs.writeFileSync(path.join(bin, 'find'), `#!/bin/sh\ntouch ${work}/find-ran\nexec ${which('find')} "$@"\n`, {
    mode: 0o755,
  });
  const savedPath = process.env.PATH;
  process.env.PATH = `${bin}:${savedPath ?? ''}`;
  t.teardown(() => (process.env.PATH = savedPath));
  const found = await readListing(src, metadataOnly);
  t.ok(fs.existsSync(path.join(work, 'find-ran')), 'find did the listing');
  process.env.PATH = savedPath;
  t.strictSame(sorted(found), sorted(expected), 'find: every entry, every field');
  t.strictSame(
    sorted(await readListing(src, { ...metadataOnly, lister: 'node' })),
    sorted(expected),
    'the lstat walk: the same',
  );

  // Spot checks on what the expectation holds, so that a wrong test cannot pass quietly.
  t.equal(found.size, 33 + LONG_DIR_FILES, 'every entry, the root included');
  t.match(found.get('a/owned'), { type: 'file', uid: 1234, gid: 5678, mtimeNs: 1_700_000_000_123_456_789n, size: 5n });
  t.equal(found.get('a/old')?.mtimeNs, -1_500_000_000n, 'before 1970');
  t.match(found.get('empty'), { type: 'dir', mode: 0o1777, mtimeNs: 4_000_000_000_000_000_001n });
  t.equal(found.get('a/suid')?.mode, 0o4755);
  t.equal(found.get('b')?.mode, 0o2775);
  t.equal(found.get('zero')?.mode, 0);
  t.match(found.get('b/rel'), {
    type: 'symlink',
    linkTarget: '../a/h1',
    uid: 2345,
    gid: 6789,
    mtimeNs: 1_600_000_000_987_654_321n,
  });
  t.match(found.get('dangling'), { type: 'symlink', linkTarget: '/nowhere' });
  t.equal(
    found.get('odd-target')?.linkTarget,
    'tar\nget \xff',
    'a symlink target with a newline and a byte that is not UTF-8',
  );
  t.equal(
    found.get('cdev')?.rdev,
    fs.lstatSync(path.join(src, 'cdev'), { bigint: true }).rdev,
    'a character device: its numbers',
  );
  t.match(found.get('bdev'), { type: 'block', rdev: fs.lstatSync(path.join(src, 'bdev'), { bigint: true }).rdev });
  t.equal(found.get('fifo')?.type, 'fifo');
  t.equal(found.get('sock')?.type, 'socket');
  t.equal(found.get('b/h2')?.inode, found.get('a/h1')?.inode, 'hard links: one inode');
  t.equal(found.get(`${NOT_UTF8}/h3`)?.inode, found.get('a/h1')?.inode, 'under a name that is not UTF-8 too');
  t.equal(found.get('a/h1')?.nlink, 3);
  t.ok(found.has(`${NOT_UTF8}/\x80\x81`), 'names that are not UTF-8, as latin1 bytes');
  t.ok(found.has('new\nline/file\nname') && found.has('with space/file name') && found.has('back\\slash'));
  t.ok(found.has('L'.repeat(255)));
  const sparse = found.get('sparse');
  t.ok(sparse !== undefined && sparse.blocks * 512n < sparse.size, 'a sparse file: blocks, not its size');

  const skip = ['skipped', '[x]*?'];
  t.strictSame(
    sorted(await readListing(src, { ...metadataOnly, skipTopLevel: new Set(skip) })),
    sorted(lstatListing(src, skip)),
    'skipTopLevel, a name with glob characters included',
  );
  const oddSkip = { ...metadataOnly, skipTopLevel: new Set([NOT_UTF8]) };
  t.strictSame(
    sorted(await readListing(src, oddSkip)),
    sorted(lstatListing(src, [NOT_UTF8])),
    'a skipped name find cannot be given: the lstat walk',
  );

  process.env.PATH = binWithout(path.join(work, 'no-find'), ['find']);
  t.strictSame(
    sorted(await readListing(src, metadataOnly)),
    sorted(expected),
    'without find in the image: the lstat walk',
  );
});

void t.test('a verification catches a changed mode, mtime and symlink target, with either lister', async (t) => {
  const { src, dst, log } = workspace(t, 'pvshift-verify-');
  buildTree(src);
  const run = await runInProcess(['--source', src, '--target', dst, '--verify', 'metadata', '--termination-log', log]);
  t.equal(run.code, 0, run.stderr.join('\n'));
  t.match(
    JSON.parse(run.stdout.at(-1) ?? '{}') as Summary,
    { ok: true, verified: 'metadata' },
    "the runner's copy verifies",
  );

  const warnings: string[] = [];
  const options = {
    features: { xattrs: true, acls: true, adminXattrs: true },
    content: false,
    mirror: true,
    warn: (m: string) => void warnings.push(m),
  };
  t.strictSame(await verifyCopy(src, dst, options), { count: 0, differences: [] }, 'identical');

  // b's mtime is put back after the symlink is replaced in it: only the three changes differ.
  const bMtime = fs.lstatSync(path.join(src, 'b'), { bigint: true }).mtimeNs;
  const at = (ns: bigint): string => `@${ns / 1_000_000_000n}.${(ns % 1_000_000_000n).toString().padStart(9, '0')}`;
  sh(
    [
      'chmod 0755 a/suid',
      'touch -d @1700000000.123456788 a/owned',
      'ln -sfn ../b/h2 b/rel && chown -h 2345:6789 b/rel && touch -h -d @1600000000.987654321 b/rel',
      `touch -d ${at(bMtime)} b`,
    ].join('\n'),
    dst,
  );
  for (const lister of ['find', 'node'] as const) {
    const diff = await verifyCopy(src, dst, { ...options, lister });
    t.strictSame(
      diff.differences.map((d) => `${d.path}: ${d.what}`),
      [
        'a/owned: mtime 1700000000123456789ns != 1700000000123456788ns',
        'a/suid: mode 4755 != 0755',
        'b/rel: symlink target "../a/h1" != "../b/h2"',
      ],
      `${lister}: one nanosecond of mtime, the setuid bit, the target`,
    );
    t.equal(diff.count, 3);
  }
  t.strictSame(warnings, [], 'no warnings');
});

void t.test('a listing that cannot be read', async (t) => {
  const { work } = workspace(t, 'pvshift-listing-fail-');
  const warnings: string[] = [];
  const options: ListingOptions = {
    xattrs: true,
    adminXattrs: true,
    acls: true,
    content: false,
    warn: (m) => void warnings.push(m),
  };
  await t.rejects(
    readListing(path.join(work, 'missing'), options),
    { code: 'ENOENT', message: /listing .*missing with find failed: .*No such file or directory/ },
    'a missing root: ENOENT',
  );
  t.strictSame(warnings, [], 'getfattr, which could not start there, does not claim to be missing');
});

void t.test("find's listing entries", (t) => {
  const entry = (text: string): Buffer => Buffer.from(text, 'latin1');
  t.match(parseListingEntry(entry('f 4755 1234 5678 12 8 2049:77 2 1700000000.1234567890 dir/a b\nc\0\0')), {
    rel: 'dir/a b\nc',
    entry: {
      type: 'file',
      mode: 0o4755,
      uid: 1234,
      gid: 5678,
      size: 12n,
      blocks: 8n,
      inode: '2049:77',
      nlink: 2,
      mtimeNs: 1_700_000_000_123_456_789n,
    },
  });
  t.match(
    parseListingEntry(entry('d 755 0 0 4096 8 2049:2 3 1.0000000000 \0\0')),
    { rel: '.', entry: { type: 'dir', size: 0n } },
    'the root: an empty path; a directory has no size',
  );
  t.match(parseListingEntry(entry('l 777 0 0 5 0 1:1 1 5.5 link\0a\nb \xff\0')), {
    rel: 'link',
    entry: { type: 'symlink', linkTarget: 'a\nb \xff', mtimeNs: 5_500_000_000n },
  });
  t.equal(
    parseListingEntry(entry('f 644 0 0 0 0 1:1 1 -2.5000000000 old\0\0'))?.entry.mtimeNs,
    -1_500_000_000n,
    'before 1970: floored seconds plus nanoseconds',
  );
  t.equal(
    parseListingEntry(entry('f 644 0 0 9007199254740993 0 1:1 1 1.0 huge\0\0'))?.entry.size,
    9_007_199_254_740_993n,
    'a size past 2^53, exact',
  );
  t.equal(
    parseListingEntry(entry('D 644 0 0 0 0 1:1 1 5.0 door\0\0'))?.entry.type,
    'socket',
    'a door counts as a special file',
  );
  t.equal(parseListingEntry(entry('f 648 0 0 0 0 1:1 1 5.0 bad-mode\0\0')), undefined, 'a mode that is not octal');
  t.equal(parseListingEntry(entry('f 644 x 0 0 0 1:1 1 5.0 a\0\0')), undefined, 'a uid that is not a number');
  t.equal(parseListingEntry(entry('f 644 0 0 0 0 1:1 1 5. a\0\0')), undefined, 'a dot and no fraction');
  t.equal(parseListingEntry(entry('f 644 0 0 0 0 1:1 1 1700000000.5')), undefined, 'no path field');
  t.end();
});

/** `touch -r`: the entry's times (ns) as the other tree's same path has them, so that only what a test changed differs. */
const sameTimes = (from: string, to: string, rels: string[]): string =>
  rels.map((r) => `touch -h -r ${from}/${r} ${to}/${r}`).join('\n');

void t.test('the comparison as bytes finds what the field-by-field comparison finds', async (t) => {
  const { src, dst, log } = workspace(t, 'pvshift-verify-bytes-');
  buildTree(src);
  const run = await runInProcess(['--source', src, '--target', dst, '--verify', 'metadata', '--termination-log', log]);
  t.equal(run.code, 0, run.stderr.join('\n'));
  const many = `many/1-${'n'.repeat(140)}`;
  const manySeconds = fs.lstatSync(path.join(src, many), { bigint: true }).mtimeNs / 1_000_000_000n;
  sh(
    [
      'chmod 0755 a/suid',
      'touch -d @1700000000.123456788 a/owned',
      'ln -sfn ../b/h2 b/rel && chown -h 2345:6789 b/rel',
      'chown 4321 "with space/file name"',
      "truncate -s 100 'back\\slash'",
      'rm fifo && touch fifo',
      "rm '[x]*?/glob'",
      'printf x > empty/extra',
      // A hard link broken: b/h2 its own inode now, with the same contents and times.
      'cp -a a/h1 b/h2.new && mv b/h2.new b/h2',
      // A hard link made: zero now shares a/owned's inode.
      'ln -f a/owned zero',
      'setfattr -n user.color -v red a/owned && setfattr -n user.new -v 1 sparse',
      'setfacl -m u:1234:r "with space/file name"',
      'rm cdev && mknod cdev c 1 5',
      "chmod 0700 $'new\\nline'",
      // Whole seconds on the target where the source has nanoseconds: not a difference.
      `touch -d @${manySeconds} ${many}`,
      sameTimes(src, '.', [
        'b/rel',
        "'back\\slash'",
        'fifo',
        'cdev',
        "'[x]*?'",
        'empty',
        'b/h2',
        'b',
        "$'new\\nline'",
        '.',
      ]),
    ].join('\n'),
    dst,
  );
  const options = {
    features: { xattrs: true, acls: true, adminXattrs: true },
    content: false,
    warn: (m: string) => t.fail(`unexpected warning: ${m}`),
  };
  for (const mirror of [true, false]) {
    const bytes = await verifyCopy(src, dst, { ...options, mirror, lister: 'find' });
    const fields = await verifyCopy(src, dst, { ...options, mirror, lister: 'node' });
    t.strictSame(bytes, fields, `mirror ${mirror}: the same differences, the same messages`);
    const found = bytes.differences.map((d) => `${d.path}: ${d.what}`);
    for (const expected of [
      'a/suid: mode 4755 != 0755',
      'a/owned: mtime 1700000000123456789ns != 1700000000123456788ns; xattrs user.color',
      'b/rel: symlink target "../a/h1" != "../b/h2"',
      'with space/file name: owner 0:0 != 4321:0; acls access',
      'back\\slash: size 1 != 100',
      'fifo: type fifo != file',
      '[x]*?/glob: missing on target',
      'sparse: xattrs user.new',
      'cdev: device',
      'new\nline: mode 0755 != 0700',
      'b/h2: hard links: linked with "a/h1" on source, "b/h2" on target',
      'zero: mode 0000 != 0644',
    ])
      t.ok(
        found.some((f) => f.startsWith(expected)),
        `mirror ${mirror}: ${JSON.stringify(expected)}`,
      );
    t.equal(found.includes('empty/extra: only on target'), mirror, 'an extra path counts with --delete only');
    t.notOk(
      found.some((f) => f.startsWith(many)),
      'whole seconds on one side: the same mtime',
    );
  }
});

const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

void t.test('a source listed while the copy ran, then checked for changes', async (t) => {
  const { src, dst, log } = workspace(t, 'pvshift-verify-early-');
  buildTree(src);
  const run = await runInProcess(['--source', src, '--target', dst, '--verify', 'none', '--termination-log', log]);
  t.equal(run.code, 0, run.stderr.join('\n'));
  const infos: string[] = [];
  const options: Parameters<typeof verifyCopy>[2] = {
    features: { xattrs: true, acls: true, adminXattrs: true },
    content: false,
    mirror: true,
    warn: (m: string) => t.fail(`unexpected warning: ${m}`),
    info: (m: string) => void infos.push(m),
  };
  // Listed early, and a change to the source after the listing began: the
  // listing holds what the target holds (the copy read the source before it
  // changed), and only the check sees the change.
  const changedAfter = async (name: string, change: string, expected: string): Promise<void> => {
    await pause(EARLY_LISTING_MARGIN_MS + 100);
    const early = listSourceEarly(src, options);
    const listed = await early.listing;
    t.ok(listed.records, `${name}: listed early`);
    sh(change, src);
    infos.length = 0;
    const diff = await verifyCopy(src, dst, { ...options, early });
    t.match(infos, [/^the source is listed again after the copy: .* changed \(ctime\) since the listing began$/], name);
    t.ok(
      diff.differences.some((d) => `${d.path}: ${d.what}`.startsWith(expected)),
      `${name}: ${JSON.stringify(expected)} in ${JSON.stringify(diff.differences)}`,
    );
    t.strictSame(diff, await verifyCopy(src, dst, options), `${name}: what a listing after the copy finds`);
    sh(`rm -rf ${dst} && mkdir ${dst}`);
    const again = await runInProcess(['--source', src, '--target', dst, '--verify', 'none', '--termination-log', log]);
    t.equal(again.code, 0, again.stderr.join('\n'));
  };

  await pause(EARLY_LISTING_MARGIN_MS + 100);
  const early = listSourceEarly(src, options);
  t.ok((await early.listing).records, 'listed early');
  t.strictSame(await verifyCopy(src, dst, { ...options, early }), { count: 0, differences: [] }, 'identical');
  t.strictSame(infos, ['the source was listed while the copy ran and has not changed since'], 'the early listing used');

  // The setuid bit: only the file's ctime moves.
  await changedAfter('a lost setuid bit', 'chmod 0755 a/suid', 'a/suid: mode 0755 != 4755');
  await changedAfter(
    'one nanosecond of mtime',
    'touch -d @1700000000.123456788 a/owned',
    'a/owned: mtime 1700000000123456788ns != 1700000000123456789ns',
  );
  await changedAfter('a symlink target', 'ln -sfn ../b/h2 b/rel', 'b/rel: ');
  await changedAfter('an xattr', 'setfattr -n user.color -v green a/owned', 'a/owned: xattrs user.color');
  await changedAfter('a deleted file', 'rm zero', 'zero: only on target');
  await changedAfter('a new hard link', "ln 'with space/file name' b/h4", 'b/h4: missing on target');

  // A change just before the listing began (within the margin) sends it back too.
  sh('chmod 4755 a/suid', src);
  const late = listSourceEarly(src, options);
  await late.listing;
  infos.length = 0;
  t.match((await verifyCopy(src, dst, { ...options, early: late })).differences, [
    { path: 'a/suid', what: 'mode 4755 != 0755' },
  ]);
  // (b changed within the margin too, in the last case above: whichever find meets first.)
  t.match(infos, [/^the source is listed again after the copy: ".*" changed \(ctime\)/], 'a change within the margin');
});

void t.test('the ctime after which a change voids an early listing', (t) => {
  const early = { startedMs: 10_000, startedMono: 5_000_000_000n };
  t.equal(changedAfterNs(early, 12_000, 7_000_000_000n), 9_000_000_000n, 'its start, less the margin');
  t.equal(changedAfterNs(early, 12_500, 7_000_000_000n), 9_000_000_000n, 'a clock stepped forward: the same');
  t.equal(changedAfterNs(early, 7_000, 7_000_000_000n), 4_000_000_000n, 'a clock stepped back 5 s since: 5 s earlier');
  t.end();
});
