// Two rsync processes over disjoint top-level groups: hard links between
// groups' names, names rsync would read as patterns, --delete at the top, the
// root's own attributes. The tree is just over PARALLEL_MIN_FILES entries.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PARALLEL_MIN_FILES } from '../../runner/copy-plan.js';
import { runInProcess, sh, snapshotTree } from './fixtures/trees.js';
import type { Summary } from '../../src/runner-protocol.js';

void t.test('a split copy into a target that holds data', async (t) => {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'pvshift-parallel-'));
  t.teardown(() => fs.rmSync(work, { recursive: true, force: true }));
  const src = path.join(work, 'src');
  const dst = path.join(work, 'dst');
  const tops = ['d0', 'd1', 'd2', 'd3', '[x]*?', 'new\nline'];
  const perTop = Math.ceil(PARALLEL_MIN_FILES / 4) + 10;
  for (const [i, top] of tops.entries()) {
    fs.mkdirSync(path.join(src, top), { recursive: true });
    const n = i < 4 ? perTop : 3;
    for (let f = 0; f < n; f++) fs.writeFileSync(path.join(src, top, `f${f}`), `${top}/${f}`);
  }
  // d0 and d3 share an inode: they must go to the same rsync, or the copy has two inodes.
  fs.linkSync(path.join(src, 'd0', 'f1'), path.join(src, 'd3', 'link-to-d0'));
  sh("setfattr -n user.root -v r . && chmod 750 . && touch -d '2001-01-01 00:00:00.25' .", src);
  fs.mkdirSync(dst);
  // The target already holds data (rsync only, no bulk copy); one top-level name the source lacks.
  fs.writeFileSync(path.join(dst, 'stale'), 'gone after --delete');
  fs.mkdirSync(path.join(dst, 'stale-dir'));
  fs.writeFileSync(path.join(dst, 'stale-dir', 'x'), 'x');

  const run = await runInProcess([
    '--source',
    src,
    '--target',
    dst,
    '--delete',
    '--termination-log',
    path.join(work, 'log'),
  ]);
  t.equal(run.code, 0, run.stderr.join('\n'));
  t.match(run.stderr.join('\n'), /rsync only \(the target already holds data\); 2 rsync processes/);
  const summary = JSON.parse(run.stdout.at(-1) ?? '{}') as Summary;
  t.match(summary, { ok: true, verified: 'metadata', files: 4 * perTop + 6 + 3 * 2 + 1 });

  t.notOk(fs.existsSync(path.join(dst, 'stale')), '--delete reaches the top level');
  t.notOk(fs.existsSync(path.join(dst, 'stale-dir')));
  const a = fs.statSync(path.join(dst, 'd0', 'f1'));
  const b = fs.statSync(path.join(dst, 'd3', 'link-to-d0'));
  t.equal(a.ino, b.ino, 'the hard link across top-level names is one inode');
  t.equal(a.nlink, 2);
  // Snapshot without per-file getfattr/getfacl processes (20,000 files); xattrs of the root checked apart.
  t.same(
    snapshotTree(dst, { xattrs: false, acls: false }),
    snapshotTree(src, { xattrs: false, acls: false }),
    'identical trees, root included',
  );
  t.same(
    snapshotTree(dst, { skip: tops }).get('.'),
    snapshotTree(src, { skip: tops }).get('.'),
    "the root's xattrs, ACL, mode and ns mtime",
  );

  const progress = run.stdout
    .filter((l) => l.includes('"progress"'))
    .map((l) => JSON.parse(l) as Record<string, number>);
  t.match(progress.at(-1), { filesDone: summary.files, filesTotal: summary.files });

  const again = await runInProcess([
    '--source',
    src,
    '--target',
    dst,
    '--delete',
    '--termination-log',
    path.join(work, 'log'),
  ]);
  t.match(
    JSON.parse(again.stdout.at(-1) ?? '{}'),
    { ok: true, filesTransferred: 0, bytesTransferred: 0 },
    'rerun moves nothing',
  );
});
