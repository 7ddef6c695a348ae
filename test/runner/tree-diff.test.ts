import t from 'tap';
import { compareTrees, linkGroups, sameMtime, type TreeEntry, type TreeListing } from '../../runner/tree-diff.js';
import { parseXattrDump } from '../../runner/xattr-dump.js';
import { checkCapacity } from '../../runner/target-probe.js';

function entry(over: Partial<TreeEntry> = {}): TreeEntry {
  return {
    type: 'file',
    mode: 0o644,
    uid: 0,
    gid: 0,
    size: 1n,
    mtimeNs: 1_000_000_001n,
    rdev: 0n,
    blocks: 8n,
    inode: 'x',
    ...over,
  };
}
function listing(entries: Record<string, Partial<TreeEntry>>): TreeListing {
  let n = 0;
  return new Map(Object.entries(entries).map(([p, e]) => [p, entry({ inode: `i${n++}`, ...e })]));
}
const opts = { mirror: false, compareXattrs: true, compareAcls: true, compareContent: true };

void t.test('tree comparison', (t) => {
  const src = listing({ '.': { type: 'dir', mode: 0o755 }, a: {}, b: { type: 'symlink', linkTarget: 'a' } });
  const cases: [string, Record<string, Partial<TreeEntry>>, { mirror?: boolean }, string[]][] = [
    ['identical', { '.': { type: 'dir', mode: 0o755 }, a: {}, b: { type: 'symlink', linkTarget: 'a' } }, {}, []],
    [
      'missing file',
      { '.': { type: 'dir', mode: 0o755 }, b: { type: 'symlink', linkTarget: 'a' } },
      {},
      ['a: missing on target'],
    ],
    [
      'setuid lost',
      { '.': { type: 'dir', mode: 0o755 }, a: { mode: 0o4644 }, b: { type: 'symlink', linkTarget: 'a' } },
      {},
      ['a: mode 0644 != 4644'],
    ],
    [
      'owner',
      { '.': { type: 'dir', mode: 0o755 }, a: { uid: 1234 }, b: { type: 'symlink', linkTarget: 'a' } },
      {},
      ['a: owner 0:0 != 1234:0'],
    ],
    [
      'root dir mtime',
      { '.': { type: 'dir', mode: 0o755, mtimeNs: 5n }, a: {}, b: { type: 'symlink', linkTarget: 'a' } },
      {},
      ['.: mtime 1000000001ns != 5ns'],
    ],
    [
      'symlink target',
      { '.': { type: 'dir', mode: 0o755 }, a: {}, b: { type: 'symlink', linkTarget: '/a' } },
      {},
      ['b: symlink target "a" != "/a"'],
    ],
    [
      'type',
      { '.': { type: 'dir', mode: 0o755 }, a: { type: 'fifo' }, b: { type: 'symlink', linkTarget: 'a' } },
      {},
      ['a: type file != fifo'],
    ],
    [
      'extra without --delete',
      { '.': { type: 'dir', mode: 0o755 }, a: {}, b: { type: 'symlink', linkTarget: 'a' }, c: {} },
      {},
      [],
    ],
    [
      'extra with --delete',
      { '.': { type: 'dir', mode: 0o755 }, a: {}, b: { type: 'symlink', linkTarget: 'a' }, c: {} },
      { mirror: true },
      ['c: only on target'],
    ],
  ];
  for (const [name, target, o, expected] of cases) {
    const r = compareTrees(src, listing(target), { ...opts, ...o });
    t.same(
      r.differences.map((d) => `${d.path}: ${d.what}`),
      expected,
      name,
    );
    t.equal(r.count, expected.length, `${name}: count`);
  }
  t.end();
});

void t.test('content, devices, xattrs, acls', (t) => {
  const s = listing({
    f: { sha256: 'aa', xattrs: { 'user.a': '01' }, acls: { 'system.posix_acl_access': '02' } },
    d: { type: 'char', rdev: 259n },
  });
  const d = listing({ f: { sha256: 'bb', xattrs: {}, acls: {} }, d: { type: 'char', rdev: 260n } });
  t.same(
    compareTrees(s, d, opts).differences.map((x) => `${x.path}: ${x.what}`),
    ['d: device 259 != 260', 'f: xattrs user.a; acls access; content (sha256)'],
  );
  t.same(
    compareTrees(s, d, { ...opts, compareXattrs: false, compareAcls: false, compareContent: false }).differences.map(
      (x) => x.path,
    ),
    ['d'],
    'dropped features are not compared',
  );
  t.end();
});

void t.test('hard-link groups', (t) => {
  const s: TreeListing = new Map([
    ['a/x', entry({ inode: '1' })],
    ['b/y', entry({ inode: '1' })],
    ['c', entry({ inode: '2' })],
  ]);
  t.same(
    [...linkGroups(s)],
    [
      ['a/x', 'a/x'],
      ['b/y', 'a/x'],
      ['c', 'c'],
    ],
  );
  const split: TreeListing = new Map([
    ['a/x', entry({ inode: '7' })],
    ['b/y', entry({ inode: '8' })],
    ['c', entry({ inode: '9' })],
  ]);
  t.same(
    compareTrees(s, split, opts).differences.map((d) => d.path),
    ['b/y'],
    'a broken link is named',
  );
  const joined: TreeListing = new Map([
    ['a/x', entry({ inode: '7' })],
    ['b/y', entry({ inode: '7' })],
    ['c', entry({ inode: '7' })],
  ]);
  t.same(
    compareTrees(s, joined, opts).differences.map((d) => d.path),
    ['c'],
    'an extra link is named',
  );
  t.end();
});

void t.test('differences are limited, the count is not', (t) => {
  const s = new Map(
    Array.from({ length: 30 }, (_, i) => [`f${String(i).padStart(2, '0')}`, entry()] as [string, TreeEntry]),
  );
  const r = compareTrees(s, new Map(), opts);
  t.equal(r.count, 30);
  t.equal(r.differences.length, 20);
  t.end();
});

void t.test('mtime: nanoseconds where both sides have them', (t) => {
  t.ok(sameMtime(1_500_000_000n, 1_500_000_000n));
  t.notOk(sameMtime(1_500_000_001n, 1_500_000_002n));
  t.ok(sameMtime(1_500_000_001n, 1_000_000_000n), 'one side has whole seconds only');
  t.notOk(sameMtime(2_500_000_001n, 1_000_000_000n));
  t.end();
});

void t.test('getfattr dump parser', (t) => {
  const dump = [
    '# file: .',
    'user.root=0x01',
    '',
    '# file: ./d/n\\012l \u00c3\u00a9=x',
    'user.q=0x31',
    'user.empty',
    'system.posix_acl_access=0x0200',
    '',
    '# file: ./back\\134slash',
    'trusted.t=0x',
    '',
  ].join('\n');
  const parsed = parseXattrDump(dump);
  t.same(parsed.get('.'), { xattrs: { 'user.root': '01' }, acls: {} });
  t.same(parsed.get('d/n\nl \u00c3\u00a9=x'), {
    xattrs: { 'user.q': '31', 'user.empty': '' },
    acls: { 'system.posix_acl_access': '0200' },
  });
  t.same(parsed.get('back\\slash'), { xattrs: { 'trusted.t': '' }, acls: {} });
  t.end();
});

void t.test('capacity verdicts', (t) => {
  const space = { bsize: 4096, blocks: 2048, bavail: 1024, files: 100, ffree: 50 };
  const fits = checkCapacity({ allocatedBytes: 1 << 20, inodes: 10, largestFile: 0 }, space);
  t.equal(fits.fits, true);
  const big = checkCapacity({ allocatedBytes: 10 << 20, inodes: 10, largestFile: 0 }, space);
  t.equal(big.fits, false);
  t.match(big.message, /has 4194304 bytes \(4\.0 MiB\) free, the source needs 11534336 bytes \(11\.0 MiB/);
  const inodes = checkCapacity({ allocatedBytes: 1, inodes: 100, largestFile: 0 }, space);
  t.match(inodes.message, /50 inodes free, the source needs 116/);
  const rerun = checkCapacity(
    { allocatedBytes: 10 << 20, inodes: 10, largestFile: 0, targetAllocatedBytes: 10 << 20, targetInodes: 10 },
    space,
  );
  t.equal(rerun.fits, true, 'what the target already holds counts on a rerun');
  const ramfs = checkCapacity(
    { allocatedBytes: 10 << 30, inodes: 1e6, largestFile: 0 },
    { bsize: 4096, blocks: 0, bavail: 0, files: 0, ffree: 0 },
  );
  t.equal(ramfs.fits, true);
  t.equal(ramfs.warnings.length, 2, 'unknown capacity is a warning, not a refusal');
  t.end();
});
