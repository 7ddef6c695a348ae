// A pre-sync copies a source the application still writes to: files vanish
// under the scan (find), the bulk copy (cp) and rsync. With --allow-vanished
// that is counted, not a failure; without it, the run fails as before.
//
// Each vanishing is made deterministic by a wrapper on PATH around the real
// tool, which deletes source entries at a moment the tool has already listed
// them and not yet read them:
// - find: an -exec action added to find's own expression deletes the rest of
//   a directory when find visits its first entry (find has read the whole
//   directory by then);
// - cp: the top-level names cp is given as arguments are deleted before it
//   starts (the split bulk copy names them; they were in the pre-scan);
// - rsync: with --bwlimit, the source's small files are deleted once rsync
//   writes its temp file for the big one (the file list is complete, the
//   small files come after the big one, which takes seconds).
import t, { type Test } from 'tap';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runInProcess, runnerEntries, which } from './fixtures/trees.js';
import type { Summary } from '../../src/runner-protocol.js';

const q = (p: string): string => `'${p.replace(/'/g, `'\\''`)}'`;
const summaryOf = (stdout: string[]): Summary => JSON.parse(stdout.at(-1) ?? '{}') as Summary;
const warnings = (stderr: string[]): string[] =>
  stderr
    .map((l) => JSON.parse(l) as { type: string; message: string })
    .filter((l) => l.type === 'warning')
    .map((l) => l.message);

/** A work dir, and `wrapper` (a shell script) on PATH as `tool`, both gone after the test. */
function setUp(t: Test, prefix: string, tool: string, wrapper: (real: string) => string): string {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  t.teardown(() => fs.rmSync(work, { recursive: true, force: true }));
  const bin = path.join(work, 'bin');
  fs.mkdirSync(bin);
  fs.writeFileSync(path.join(bin, tool), `#!/bin/sh\n${wrapper(which(tool))}\n`, { mode: 0o755 });
  const saved = process.env.PATH;
  process.env.PATH = `${bin}:${saved ?? ''}`;
  t.teardown(() => (process.env.PATH = saved));
  return work;
}

void t.test('rsync: source files that vanish mid-transfer (rsync exit 24)', async (t) => {
  const work = setUp(
    t,
    'pvshift-vanish-rsync-',
    'rsync',
    (real) => `for a in "$@"; do case "$a" in --temp-dir=*) tmp=\${a#--temp-dir=};; esac; done
${q(real)} "$@" &
pid=$!
while kill -0 $pid 2>/dev/null && ! ls -A "$tmp" | grep -q '^big\\.'; do sleep 0.01; done
rm -f "$PVSHIFT_TEST_SOURCE"/z/*
wait $pid`,
  );
  const src = path.join(work, 'src');
  process.env.PVSHIFT_TEST_SOURCE = src;
  t.teardown(() => delete process.env.PVSHIFT_TEST_SOURCE);
  fs.mkdirSync(path.join(src, 'z'), { recursive: true });
  fs.writeFileSync(path.join(src, 'big'), randomBytes(4 << 20));
  const run = async (name: string, extra: string[]) => {
    for (let i = 1; i <= 5; i++) fs.writeFileSync(path.join(src, 'z', `f${i}`), `small ${i}`);
    const dst = path.join(work, name);
    fs.mkdirSync(dst);
    // --bwlimit: rsync alone (no bulk copy), and the big file takes ~4 s.
    const args = [
      '--source',
      src,
      '--target',
      dst,
      '--bwlimit',
      '1024',
      '--verify',
      'none',
      '--termination-log',
      path.join(work, `${name}.log`),
    ];
    return { dst, ...(await runInProcess([...args, ...extra])) };
  };

  const strict = await run('dst-strict', []);
  t.equal(strict.code, 75, 'without --allow-vanished: transient, as before');
  const strictSummary = summaryOf(strict.stdout);
  t.match(strictSummary, {
    ok: false,
    exitCode: 75,
    message: /rsync exit 24 \(partial transfer due to vanished source files\)/,
  });
  t.notOk('vanished' in strictSummary, 'no vanished count without the flag');

  const allowed = await run('dst-allowed', ['--allow-vanished']);
  t.equal(allowed.code, 0, allowed.stderr.join('\n'));
  t.match(summaryOf(allowed.stdout), { ok: true, exitCode: 0, vanished: 5 });
  t.ok(
    warnings(allowed.stderr).some((w) =>
      /^5 source entries vanished while being copied \(scan 0, cp 0, rsync 5\): allowed \(--allow-vanished\)/.test(w),
    ),
    'a warning names how many vanished',
  );
  t.ok(
    fs.readFileSync(path.join(allowed.dst, 'big')).equals(fs.readFileSync(path.join(src, 'big'))),
    'what did not vanish is copied',
  );
  t.same(fs.readdirSync(path.join(allowed.dst, 'z')), [], 'what vanished is not');
  t.same(runnerEntries(allowed.dst), [], 'no temp dir left');
});

void t.test('find: entries that vanish under the pre-scan', async (t) => {
  const work = setUp(
    t,
    'pvshift-vanish-find-',
    'find',
    // The runner calls `find -P START [prune] -printf FORMAT`: the deletion is added in front.
    (real) => `opt=$1; start=$2; shift 2
exec ${q(real)} "$opt" "$start" \\( -path "$start/F/*" -exec sh -c '[ -e "$1" ] || { : > "$1"; rm -f "$2"/F/*; }' sh "$PVSHIFT_TEST_MARK" "$start" \\; -false \\) -o "$@"`,
  );
  const mark = path.join(work, 'find-ran-exec');
  process.env.PVSHIFT_TEST_MARK = mark;
  t.teardown(() => delete process.env.PVSHIFT_TEST_MARK);
  const src = path.join(work, 'src');
  fs.mkdirSync(path.join(src, 'F'), { recursive: true });
  fs.mkdirSync(path.join(src, 'other'));
  fs.writeFileSync(path.join(src, 'other', 'kept'), 'kept');
  const run = async (name: string, extra: string[]) => {
    for (let i = 1; i <= 20; i++) fs.writeFileSync(path.join(src, 'F', `f${i}`), `file ${i}`);
    fs.rmSync(mark, { force: true });
    const dst = path.join(work, name);
    fs.mkdirSync(dst);
    return {
      dst,
      ...(await runInProcess([
        '--source',
        src,
        '--target',
        dst,
        '--termination-log',
        path.join(work, `${name}.log`),
        ...extra,
      ])),
    };
  };

  const strict = await run('dst-strict', []);
  t.equal(strict.code, 75, 'without --allow-vanished: transient, as before');
  t.match(summaryOf(strict.stdout), {
    ok: false,
    message: /with find failed: \S*find: .*\/F\/f\d+'?: No such file or directory/,
  });
  t.ok(fs.existsSync(mark), 'the wrapper did delete under find');

  const allowed = await run('dst-allowed', ['--allow-vanished']);
  t.equal(allowed.code, 0, allowed.stderr.join('\n'));
  // Every entry of F: the one find was visiting when they went, too (find stats it after -exec).
  t.match(summaryOf(allowed.stdout), { ok: true, verified: 'metadata', vanished: 20 });
  t.ok(
    warnings(allowed.stderr).some((w) =>
      w.startsWith('20 source entries vanished while being copied (scan 20, cp 0, rsync 0)'),
    ),
    'a warning names how many vanished',
  );
  t.equal(fs.readFileSync(path.join(allowed.dst, 'other', 'kept'), 'utf8'), 'kept', 'the rest is copied');
  t.same(fs.readdirSync(path.join(allowed.dst, 'F')), []);
});

const oneCpu =
  os.availableParallelism() < 2 &&
  'the bulk copy is split (and names top-level entries to cp) only with 2 CPUs or more';
void t.test(
  'cp: top-level entries that vanish before the split bulk copy reaches them',
  { skip: oneCpu },
  async (t) => {
    const work = setUp(
      t,
      'pvshift-vanish-cp-',
      'cp',
      (real) => `for a in "$@"; do case "$a" in */vanish-*) rm -rf "$a";; esac; done
exec ${q(real)} "$@"`,
    );
    const src = path.join(work, 'src');
    // Over PARALLEL_MIN_FILES (20,000) entries in two balanced top-level directories: two cp processes.
    for (const d of ['d0', 'd1']) {
      fs.mkdirSync(path.join(src, d), { recursive: true });
      for (let f = 0; f < 10_000; f++) fs.writeFileSync(path.join(src, d, `f${f}`), '');
    }
    fs.writeFileSync(path.join(src, 'keep'), 'keep');
    const run = async (name: string, extra: string[]) => {
      fs.writeFileSync(path.join(src, 'vanish-1'), 'one');
      fs.mkdirSync(path.join(src, 'vanish-2'));
      fs.writeFileSync(path.join(src, 'vanish-2', 'inner'), 'two');
      const dst = path.join(work, name);
      fs.mkdirSync(dst);
      const out = await runInProcess([
        '--source',
        src,
        '--target',
        dst,
        '--verify',
        'none',
        '--termination-log',
        path.join(work, `${name}.log`),
        ...extra,
      ]);
      return { dst, log: out.stderr.join('\n'), ...out };
    };

    const strict = await run('dst-strict', []);
    t.equal(strict.code, 0, strict.log);
    t.match(strict.log, /bulk copy: 2 cp processes at once/);
    t.match(
      strict.log,
      /bulk copy failed, rsync copies everything instead: cp exited 1: .*vanish-\d.*No such file or directory/,
      'without --allow-vanished: as before, the bulk copy is dropped',
    );
    t.notOk('vanished' in summaryOf(strict.stdout));

    const allowed = await run('dst-allowed', ['--allow-vanished']);
    t.equal(allowed.code, 0, allowed.log);
    t.match(allowed.log, /bulk copy: 2 cp processes at once/);
    t.notMatch(allowed.log, /bulk copy failed/, 'the bulk copy of the rest is kept');
    t.match(summaryOf(allowed.stdout), { ok: true, vanished: 2 });
    t.ok(
      warnings(allowed.stderr).some((w) =>
        w.startsWith('2 source entries vanished while being copied (scan 0, cp 2, rsync 0)'),
      ),
    );
    t.equal(fs.readdirSync(path.join(allowed.dst, 'd1')).length, 10_000);
    t.equal(fs.readFileSync(path.join(allowed.dst, 'keep'), 'utf8'), 'keep');
    t.same(
      fs.readdirSync(allowed.dst).filter((n) => n.startsWith('vanish-')),
      [],
      'what vanished is not there',
    );
  },
);
