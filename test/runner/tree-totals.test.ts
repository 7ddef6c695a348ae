// The pre-scan's totals: GNU find (scanTotals) against the Node walk
// (scanTotalsNode, the fallback) on a tree with every kind of entry the totals
// treat apart, and how a find scan fails.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseFindRecord, scanTotals, scanTotalsNode, type TreeTotals } from '../../runner/tree-totals.js';
import { walkTree } from '../../runner/tree-walk.js';
import { ctimeAfterTree, sh } from './fixtures/trees.js';

/** A latin1 string of the bytes ff fe: a name that is not valid UTF-8. */
const NOT_UTF8 = Buffer.from([0xff, 0xfe]).toString('latin1');

function buildTree(src: string): void {
  sh(
    [
      'mkdir -p a b c "with space" empty $\'new\\nline\' $\'\\xff\\xfe\' "[x]*?" skipped/inner',
      // One inode under three top-level names, one under a name that is not UTF-8, one inside a single name.
      'printf linked > a/h1 && ln a/h1 b/h2 && ln a/h1 c/h3',
      "printf odd > $'\\xff\\xfe/o1' && ln $'\\xff\\xfe/o1' \"with space/o2\"",
      'printf same > b/s1 && ln b/s1 b/s2',
      'ln -s ../a/h1 b/rel && ln -s /nowhere dangling',
      'mkfifo fifo && mknod cdev c 1 3',
      'truncate -s 10M sparse && printf middle | dd of=sparse bs=1 seek=5242880 conv=notrunc status=none',
      "printf n > $'new\\nline/file\\nname' && printf s > \"with space/file name\" && printf x > $'\\xff\\xfe/\\x80\\x81'",
      `printf long > ${'L'.repeat(255)}`,
      'printf old > c/old && touch -d @-1.5 c/old',
      'printf skip > skipped/inner/file',
      // Newest of everything, and a directory: newestSpecialMtimeNs to the nanosecond.
      'touch -d @4000000000.123456789 empty',
    ].join('\n'),
    src,
  );
}

function findOnPath(): string {
  const dir = (process.env.PATH ?? '').split(':').find((d) => d && fs.existsSync(path.join(d, 'find')));
  if (dir === undefined) throw new Error('these tests need GNU find on PATH');
  return path.join(dir, 'find');
}

/** Totals with the top-level map as sorted entries: the two walks meet names in different orders. */
const comparable = (totals: TreeTotals): unknown => ({
  ...totals,
  topLevel: [...totals.topLevel].sort(([a], [b]) => (a < b ? -1 : 1)),
});

void t.test('find and the Node walk give the same totals', async (t) => {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'pvshift-scan-'));
  t.teardown(() => fs.rmSync(work, { recursive: true, force: true }));
  const src = path.join(work, 'src');
  fs.mkdirSync(src);
  buildTree(src);

  // find on PATH through a wrapper that leaves a mark: the totals are find's, not a silent fallback's.
  const bin = path.join(work, 'bin');
  fs.mkdirSync(bin);
  fs.writeFileSync(path.join(bin, 'find'), `#!/bin/sh\ntouch ${work}/find-ran\nexec ${findOnPath()} "$@"\n`, {
    mode: 0o755,
  });
  const savedPath = process.env.PATH;
  process.env.PATH = `${bin}:${savedPath ?? ''}`;
  const found = await scanTotals(src);
  process.env.PATH = savedPath;
  t.ok(fs.existsSync(path.join(work, 'find-ran')), 'find did the scan');
  const walked = await scanTotalsNode(src);
  t.same(comparable(found), comparable(walked), 'identical totals');

  t.equal(found.newestSpecialMtimeNs, 4_000_000_000_123_456_789n, 'a directory mtime to the nanosecond');
  t.equal(found.newestMtimeNs, 4_000_000_000_123_456_789n);
  t.equal(found.largestFile, 10 << 20, 'the sparse file by its apparent size');
  t.ok(found.allocatedBytes < found.bytes, 'allocated bytes count the sparse file by its blocks');
  t.same(
    found.linkedTopLevels,
    [
      ['a', 'b'],
      ['a', 'c'],
      ['with space', NOT_UTF8],
    ],
    'top-level names tied by hard links, each with the smallest of its component',
  );
  t.same(found.topLevel.get('new\nline'), { files: 2, bytes: 1 }, 'the directory and its file');
  t.same(found.topLevel.get(NOT_UTF8), { files: 3, bytes: 4 }, 'a name that is not UTF-8, as latin1 bytes');
  t.ok(found.topLevel.has('L'.repeat(255)));

  const skip = { skipTopLevel: new Set(['skipped', '[x]*?']) };
  const foundSkip = await scanTotals(src, skip);
  t.same(
    comparable(foundSkip),
    comparable(await scanTotalsNode(src, skip)),
    'skipTopLevel, names with glob characters included',
  );
  t.notOk(foundSkip.topLevel.has('skipped'));
  t.equal(foundSkip.files, found.files - 4, 'skipped/, skipped/inner, skipped/inner/file and [x]*? left out');

  const oddSkip = { skipTopLevel: new Set([NOT_UTF8]) };
  t.same(
    comparable(await scanTotals(src, oddSkip)),
    comparable(await scanTotalsNode(src, oddSkip)),
    'a skipped name find cannot be given: the Node walk',
  );

  const cwd = process.cwd();
  process.chdir(work);
  t.teardown(() => process.chdir(cwd));
  fs.renameSync(src, path.join(work, '-src'));
  t.same(comparable(await scanTotals('-src')), comparable(walked), 'a relative root that looks like an option');
  t.same(comparable(await scanTotals('-src/', skip)), comparable(foundSkip), 'a trailing slash, with skipTopLevel');
});

void t.test(
  'changed since: regular files whose ctime is at or after the instant, every path of a hard link',
  async (t) => {
    const work = fs.mkdtempSync(path.join(os.tmpdir(), 'pvshift-scan-changed-'));
    t.teardown(() => fs.rmSync(work, { recursive: true, force: true }));
    const src = path.join(work, 'src');
    fs.mkdirSync(src);
    sh(
      [
        "mkdir d && printf a > d/rewritten && printf b > untouched && printf c > chmodded && printf d > $'\\xff\\xfe'",
        'printf e > linked && ln linked d/other-name && ln -s untouched symlink && mkfifo fifo',
      ].join('\n'),
      src,
    );
    const since = ctimeAfterTree(src, work);
    // A write whose mtime is put back, a chmod (ctime only), a write under a name that is not UTF-8, a link's inode.
    sh(
      "printf A > d/rewritten && touch -d @1000000000 d/rewritten && chmod 600 chmodded && printf D > $'\\xff\\xfe' && printf E > linked",
      src,
    );
    // Changed, but not regular files: their contents are not what the quick check misses.
    sh('touch -h -d @1000000000 symlink && chmod 600 fifo && chmod 700 d', src);
    const expected = ['chmodded', 'd/other-name', 'd/rewritten', 'linked', NOT_UTF8];
    const paths = (totals: TreeTotals): string[] => totals.changedFiles.map((f) => f.rel).sort();
    const found = await scanTotals(src, { changedSinceNs: since });
    t.same(paths(found), expected, 'find');
    t.same(paths(await scanTotalsNode(src, { changedSinceNs: since })), expected, 'the Node walk');
    t.match(
      found.changedFiles.find((f) => f.rel === 'd/rewritten'),
      { size: 1, mtimeNs: 1_000_000_000_000_000_000n },
      "with the source's size and mtime, to compare with the target's",
    );
    t.same((await scanTotals(src)).changedFiles, [], 'not asked: none listed');
    t.equal(
      paths(await scanTotals(src, { changedSinceNs: 0n })).length,
      6,
      'every regular file path changed since 1970',
    );
  },
);

void t.test('entries that vanish under the Node walk: counted with allowVanished, a failure without', async (t) => {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'pvshift-walk-vanish-'));
  t.teardown(() => fs.rmSync(work, { recursive: true, force: true }));
  const build = (): void => {
    for (const d of ['a', 'b', 'c']) {
      fs.mkdirSync(path.join(work, d, 'inner'), { recursive: true });
      fs.writeFileSync(path.join(work, d, 'file'), d);
    }
  };
  // The walk lstats a directory's entries together, then visits them: visiting
  // "a" removes "b", already listed and statted but not read yet.
  const removeSibling = (rel: string): void => {
    if (rel === 'a') fs.rmSync(path.join(work, 'b'), { recursive: true });
  };
  build();
  await t.rejects(walkTree(work, removeSibling), { code: 'ENOENT' }, 'without allowVanished: ENOENT, as before');
  build();
  const seen: string[] = [];
  const vanished = await walkTree(work, (rel) => (removeSibling(rel), void seen.push(rel)), { allowVanished: true });
  t.equal(vanished, 1, 'the directory that was gone when it was read');
  t.same(seen.sort(), ['.', 'a', 'a/file', 'a/inner', 'b', 'c', 'c/file', 'c/inner'], 'everything else was walked');
  const missing = path.join(work, 'missing');
  await t.rejects(
    walkTree(missing, () => undefined, { allowVanished: true }),
    { code: 'ENOENT' },
    'the root missing still fails',
  );
});

void t.test('without find in the image: the Node walk', async (t) => {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'pvshift-scan-nofind-'));
  t.teardown(() => fs.rmSync(work, { recursive: true, force: true }));
  fs.writeFileSync(path.join(work, 'f'), 'four');
  const savedPath = process.env.PATH;
  process.env.PATH = path.join(work, 'no-such-dir');
  t.teardown(() => (process.env.PATH = savedPath));
  const totals = await scanTotals(work);
  t.match(totals, { files: 1, bytes: 4, inodes: 2 });
});

void t.test('a failed scan', async (t) => {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'pvshift-scan-fail-'));
  t.teardown(() => fs.rmSync(work, { recursive: true, force: true }));
  const missing = path.join(work, 'missing');
  await t.rejects(
    scanTotals(missing),
    { code: 'ENOENT', message: /missing with find failed: .*No such file or directory/ },
    'a missing root: ENOENT, terminal to the runner',
  );

  for (let i = 0; i < 200; i++) fs.mkdirSync(path.join(work, `d${i}`, 'x', 'y'), { recursive: true });
  const controller = new AbortController();
  const scan = scanTotals(work, { signal: controller.signal });
  controller.abort(new Error('stopped by SIGTERM'));
  await t.rejects(scan, { message: 'stopped by SIGTERM' }, 'aborting kills find');
  await t.rejects(
    scanTotals(work, { signal: controller.signal }),
    { message: 'stopped by SIGTERM' },
    'aborted before the start',
  );
});

void t.test("find's records", (t) => {
  t.match(parseFindRecord('f 12 8 2049:77 2 1700000000.1234567890 1800000000.0000000010 dir/a b\nc'), {
    rel: 'dir/a b\nc',
    entry: {
      type: 'file',
      size: 12,
      blocks: 8,
      inode: '2049:77',
      nlink: 2,
      mtimeNs: 1_700_000_000_123_456_789n,
      ctimeNs: 1_800_000_000_000_000_001n,
    },
  });
  t.match(
    parseFindRecord('d 4096 8 2049:2 3 1.0000000000 2.0000000000 '),
    { rel: '.', entry: { type: 'dir' } },
    'the root: an empty path',
  );
  t.equal(
    parseFindRecord('f 0 0 1:1 1 -2.5000000000 1.0 old')?.entry.mtimeNs,
    -1_500_000_000n,
    'before 1970: floored seconds plus nanoseconds',
  );
  t.equal(
    parseFindRecord('D 0 0 1:1 1 5.0000000000 5.0 door')?.entry.type,
    'socket',
    'a door counts as a special file',
  );
  t.equal(parseFindRecord('f 12 8 2049:77 2 1700000000.5 1700000000.5'), undefined, 'no path field');
  t.equal(parseFindRecord('f 12 8 2049:77 2 1700000000.5 a b'), undefined, 'no ctime');
  t.equal(parseFindRecord('f x 8 2049:77 2 1700000000.5 1700000000.5 a'), undefined, 'not a number');
  t.end();
});
