// Every kind of thing a volume can hold, copied by the runner and compared by
// the test's own walker (fixtures/trees.ts), not by the runner's verification.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import {
  FIDELITY_DEEP as deep,
  fidelityWorkspace,
  countTree,
  runInProcess,
  runnerEntries,
  snapshotTree,
} from './fixtures/trees.js';
import type { Summary } from '../../src/runner-protocol.js';

for (const path_ of ['bulk', 'rsync only'] as const)
  void t.test(`every kind of entry survives the copy (${path_})`, async (t) => {
    const { src, dst, log } = fidelityWorkspace(t, 'pvshift-fidelity-', path_);
    const run = await runInProcess([
      '--source',
      src,
      '--target',
      dst,
      '--verify',
      'checksum',
      '--termination-log',
      log,
      '--progress-interval',
      '0.2',
    ]);
    t.equal(run.code, 0, run.stderr.join('\n'));
    t.match(
      run.stderr.join('\n'),
      path_ === 'bulk' ? /engine: empty target: cp -a/ : /engine: rsync only/,
      `engine: ${path_}`,
    );
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
    t.same(runnerEntries(dst), [], 'no temp dir left');

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
    t.ok(
      dstBlocks <= srcBlocks + 64,
      `sparse stays sparse: ${dstBlocks} blocks on the target, ${srcBlocks} on the source`,
    );

    const progress = run.stdout
      .filter((l) => l.includes('"progress"'))
      .map((l) => JSON.parse(l) as Record<string, number>);
    t.ok(progress.length >= 2, 'progress lines');
    t.match(progress.at(-1), {
      bytesDone: counted.bytes,
      bytesTotal: counted.bytes,
      filesDone: counted.files,
      filesTotal: counted.files,
    });
  });
