// The bulk copy of a tree large enough to split (PARALLEL_MIN_FILES entries):
// one cp per group of top-level names, each group's names in several cp runs,
// a hard link between names in different runs, names cp must get as they are;
// and the fallback to one cp when a top-level name cannot be an argument.
import t, { type Test } from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PARALLEL_MIN_FILES } from '../../runner/copy-plan.js';
import { runInProcess, runnerEntries, sh, snapshotTree } from './fixtures/trees.js';
import type { Summary } from '../../src/runner-protocol.js';

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'pvshift-bulk-parallel-'));
t.teardown(() => fs.rmSync(work, { recursive: true, force: true }));
const src = path.join(work, 'src');
/** Top-level files: over 2,000 names in each group, so each group's cp runs twice. */
const TOP_FILES = 4100;
const PER_DIR = 8000;
const oddNames = ['new\nline', '-dash', '[x]*?', 'ünïcødé 日本', 'L'.repeat(255)];

function buildSource(): void {
  for (const d of ['d0', 'd1']) {
    fs.mkdirSync(path.join(src, d), { recursive: true });
    for (let f = 0; f < PER_DIR; f++) fs.writeFileSync(path.join(src, d, `f${f}`), `${d}/${f}`);
  }
  for (let f = 0; f < TOP_FILES; f++) fs.writeFileSync(path.join(src, `top-${String(f).padStart(5, '0')}`), `top ${f}`);
  for (const name of oddNames) fs.writeFileSync(path.join(src, name), name);
  sh(
    [
      'ln d0/f1 d0/link',
      // Tied top-level names stay in one group, but sorted ~2,000 names apart they
      // land in different cp runs: two files after cp, one inode after rsync -H.
      'ln top-00000 top-99999',
      'ln -s d0/f1 sym && mkdir empty && mkfifo fifo',
      'mkdir meta && printf owned > meta/owned && chown 1234:5678 meta/owned && chmod 4755 meta/owned',
      'setfattr -n user.k -v v meta/owned && setfacl -m u:1234:rw meta/owned',
      "touch -d '2001-02-03 04:05:06.123456789' meta/owned && touch -d @1600000000.987654321 meta empty",
      "chmod 750 . && touch -d '2002-01-01 00:00:00.25' .",
    ].join('\n'),
    src,
  );
}

async function copy(t: Test, dst: string): Promise<{ log: string; summary: Summary }> {
  fs.mkdirSync(dst);
  const run = await runInProcess(['--source', src, '--target', dst, '--termination-log', path.join(work, 'log')]);
  t.equal(run.code, 0, run.stderr.join('\n'));
  const log = run.stderr.join('\n');
  t.match(log, /engine: empty target: cp -a into the temp dir, then an rsync pass; 2 rsync processes/);
  t.notMatch(log, /bulk copy failed/, 'the bulk copy did the copying');
  t.same(runnerEntries(dst), [], 'no temp dir left');
  return { log, summary: JSON.parse(run.stdout.at(-1) ?? '{}') as Summary };
}

/** Everything but xattrs and ACLs for the whole tree (20,000 files), all of it for meta/. */
function same(t: Test, dst: string, skip: string[] = []): void {
  const light = { xattrs: false, acls: false, skip };
  t.same(
    snapshotTree(dst, light),
    snapshotTree(src, light),
    'identical trees: type, mode, owner, ns mtime, size, content, hard links',
  );
  t.same(snapshotTree(path.join(dst, 'meta')), snapshotTree(path.join(src, 'meta')), 'xattrs and ACLs too');
}

t.before(buildSource);

void t.test('two cp processes at once, each in two runs', async (t) => {
  const dst = path.join(work, 'dst');
  const { log, summary } = await copy(t, dst);
  t.match(log, /bulk copy: 2 cp processes at once over \d+\/\d+ top-level entries \(4 cp runs in all/);
  t.ok(summary.files >= PARALLEL_MIN_FILES, `${summary.files} entries: the plan splits the tree`);
  t.match(summary, { ok: true, verified: 'metadata' });
  same(t, dst);
  t.equal(
    fs.statSync(path.join(dst, 'top-00000')).ino,
    fs.statSync(path.join(dst, 'top-99999')).ino,
    'linked across cp runs: one inode',
  );
  t.equal(
    fs.statSync(path.join(dst, 'd0', 'f1')).ino,
    fs.statSync(path.join(dst, 'd0', 'link')).ino,
    'linked inside a directory: one inode',
  );
  for (const name of oddNames)
    t.equal(fs.readFileSync(path.join(dst, name), 'utf8'), name, `${JSON.stringify(name)} copied as it is`);
});

void t.test('a top-level name that is not valid UTF-8: one cp', async (t) => {
  const odd = Buffer.concat([Buffer.from(`${src}/`), Buffer.from([0xff, 0xfe])]);
  fs.writeFileSync(odd, 'not utf-8');
  fs.chownSync(odd, 4321, 8765);
  fs.utimesSync(odd, 1_000_000_000, 1_000_000_000);
  const dst = path.join(work, 'dst-odd');
  const { log, summary } = await copy(t, dst);
  t.match(
    log,
    /bulk copy: one cp process \(the top-level name .+ is not valid UTF-8: it cannot be passed to cp\): cp -a -T/,
  );
  t.notMatch(log, /cp processes at once/);
  t.match(summary, { ok: true, verified: 'metadata' });
  // The test's snapshot reads names as UTF-8: the odd one is compared on its own.
  same(t, dst, ['\ufffd\ufffd']);
  const copied = Buffer.concat([Buffer.from(`${dst}/`), Buffer.from([0xff, 0xfe])]);
  const [a, b] = [fs.lstatSync(odd, { bigint: true }), fs.lstatSync(copied, { bigint: true })];
  t.same(
    [b.mode, b.uid, b.gid, b.mtimeNs, b.size],
    [a.mode, a.uid, a.gid, a.mtimeNs, a.size],
    'the odd name: mode, owner, mtime, size',
  );
  t.equal(fs.readFileSync(copied, 'utf8'), 'not utf-8');
});
