// Every kind of thing a volume can hold, copied by the runner and compared by
// the test's own walker (fixtures/trees.ts), not by the runner's verification.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { countTree, runInProcess, sh, snapshotTree } from './fixtures/trees.js';
import type { Summary } from '../../runner/index.js';

const long = 'L'.repeat(255);
const deep = Array.from({ length: 60 }, (_, i) => `level${i}`).join('/');

function buildFidelityTree(src: string): void {
  sh(
    [
      'mkdir -p a b c empty/inner "with space" "ünïcødé 日本" sticky setgid ro "$DEEP"',
      'printf owned > a/owned && chown 1234:5678 a/owned',
      'printf suid > a/suid && chmod 4755 a/suid',
      'chmod 2775 setgid && chown 1234:5678 setgid && chmod 1777 sticky',
      "touch -d '2001-02-03 04:05:06.123456789' a/owned",
      // Hard links across directories: one group of three, one of two.
      'printf linked > a/h1 && ln a/h1 b/h2 && ln a/h1 c/h3 && printf two > b/g1 && ln b/g1 c/g2',
      // Symlinks: relative, absolute, dangling, to a directory, each with its own owner and time.
      'ln -s ../a/h1 b/rel && ln -s /etc/hostname b/abs && ln -s ../nowhere b/dangling && ln -s ../a c/dirlink',
      'chown -h 1234:5678 b/rel && touch -h -d "2010-01-01 00:00:00.5" b/rel b/dangling',
      // Sparse: 100 MiB apparent, a few KiB allocated.
      'truncate -s 100M sparse && printf middle | dd of=sparse bs=1 seek=52428800 conv=notrunc status=none',
      'printf x > a/xattrs && setfattr -n user.color -v blue a/xattrs && setfattr -n trusted.secret -v 0x00ff a/xattrs',
      'setfattr -n user.dir -v yes b',
      'printf acl > a/acl && setfacl -m u:1234:rw,g:5678:r a/acl && setfacl -d -m u:1234:rwx,g:5678:rx c',
      'mkfifo fifo && mknod cdev c 1 3',
      'printf s > "with space/file name" && printf n > $\'new\\nline\' && printf u > "ünïcødé 日本/ファイル"',
      `printf long > "${long}"`,
      'printf bottom > "$DEEP/file"',
      'printf secret > zero && chmod 000 zero',
      'printf inside > ro/file && chmod 555 ro',
      "touch -d '1999-12-31 23:59:59.999999999' empty/inner",
    ].join('\n'),
    src,
  );
}

for (const path_ of ['bulk', 'rsync only'] as const) void t.test(`every kind of entry survives the copy (${path_})`, async (t) => {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'pvshift-fidelity-'));
  t.teardown(() => fs.rmSync(work, { recursive: true, force: true }));
  const src = path.join(work, 'src');
  const dst = path.join(work, 'dst');
  fs.mkdirSync(src);
  fs.mkdirSync(dst);
  process.env.DEEP = deep;
  buildFidelityTree(src);
  // A directory the source has too makes the target non-empty: rsync does the whole copy.
  if (path_ === 'rsync only') fs.mkdirSync(path.join(dst, 'a'));

  const log = path.join(work, 'termination-log');
  const run = await runInProcess(['--source', src, '--target', dst, '--verify', 'checksum', '--termination-log', log, '--progress-interval', '0.2']);
  t.equal(run.code, 0, run.stderr.join('\n'));
  t.match(run.stderr.join('\n'), path_ === 'bulk' ? /engine: empty target: cp -a/ : /engine: rsync only/, `engine: ${path_}`);
  const summary = JSON.parse(run.stdout.at(-1) ?? '{}') as Summary;
  t.match(summary, { type: 'summary', ok: true, verified: 'checksum', dropped: [], exitCode: 0 });
  t.same(JSON.parse(fs.readFileSync(log, 'utf8')), summary, 'the termination log holds the summary');
  const counted = countTree(src);
  t.equal(summary.bytes, counted.bytes, 'bytes as the test counts them');
  t.equal(summary.files, counted.files, 'files as the test counts them');

  const before = snapshotTree(src);
  const after = snapshotTree(dst);
  t.same([...after.keys()].sort(), [...before.keys()].sort(), 'the same paths');
  for (const [p, e] of before) t.same(after.get(p), e, `identical: ${JSON.stringify(p)}`);
  t.notOk(fs.existsSync(path.join(dst, '.pvshift-runner-tmp')), 'no temp dir left');

  // Spot checks on what the snapshot compares, so a broken walker cannot pass silently.
  t.equal(after.get('a/owned')?.mtimeNs.slice(-9), '123456789', 'nanoseconds kept');
  t.equal(after.get('a/owned')?.uid, 1234);
  t.equal(after.get('a/suid')?.mode, '4755');
  t.equal(after.get('sticky')?.mode, '1777');
  t.equal(after.get('zero')?.mode, '0');
  t.equal(after.get('c/h3')?.linkedWith, 'a/h1');
  t.match(after.get('a/xattrs')?.xattrs, /trusted.secret=0x00ff/);
  t.match(after.get('c')?.acl, /default:user:1234:rwx/);
  t.equal(after.get('cdev')?.rdev, fs.lstatSync(path.join(src, 'cdev')).rdev.toString());
  t.equal(after.get('b/rel')?.uid, 1234, 'symlink owner kept');
  t.ok(after.has(`${deep}/file`), '60 levels deep');
  const srcBlocks = fs.statSync(path.join(src, 'sparse')).blocks;
  const dstBlocks = fs.statSync(path.join(dst, 'sparse')).blocks;
  t.ok(dstBlocks <= srcBlocks + 64, `sparse stays sparse: ${dstBlocks} blocks on the target, ${srcBlocks} on the source`);

  const progress = run.stdout.filter((l) => l.includes('"progress"')).map((l) => JSON.parse(l) as Record<string, number>);
  t.ok(progress.length >= 2, 'progress lines');
  t.match(progress.at(-1), { bytesDone: counted.bytes, bytesTotal: counted.bytes, filesDone: counted.files, filesTotal: counted.files });
});
