// --verify metadata lists the source while the copy runs (listSourceEarly in
// tree-listing.ts), and after the copy checks that no source entry changed
// since (ctime). A source written during the copy, after rsync read it, is
// still caught: the check sends the verification back to listing the source
// after the copy, as it always did. The write is made deterministic by a
// wrapper on PATH around rsync that changes the source once the real rsync
// is done.
import t, { type Test } from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Summary } from '../../src/runner-protocol.js';
import { EARLY_LISTING_MARGIN_MS } from '../../runner/tree-listing.js';
import { binWithout, runInProcess, sh, which } from './fixtures/trees.js';

const summaryOf = (stdout: string[]): Summary => JSON.parse(stdout.at(-1) ?? '{}') as Summary;
const infos = (stderr: string[]): string[] =>
  stderr
    .map((l) => JSON.parse(l) as { type: string; message: string })
    .filter((l) => l.type === 'info' && l.message.startsWith('verifying: '))
    .map((l) => l.message);

function setUp(t: Test): { work: string; src: string; dst: string; log: string; bin: string } {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'pvshift-early-'));
  t.teardown(() => fs.rmSync(work, { recursive: true, force: true }));
  const src = path.join(work, 'src');
  const dst = path.join(work, 'dst');
  fs.mkdirSync(dst);
  fs.mkdirSync(src);
  sh(
    [
      'mkdir a b',
      'printf suid > a/suid && chmod 4755 a/suid',
      'printf x > b/x && ln b/x b/y && ln -s ../a/suid b/link',
      'for i in $(seq 1 50); do printf $i > a/f$i; done',
      'touch -d @1700000000.123456789 a/f1',
    ].join('\n'),
    src,
  );
  // rsync, then whatever PVSHIFT_TEST_CHANGE says, in the source: a write during the copy, after rsync read it.
  const bin = path.join(work, 'bin');
  fs.mkdirSync(bin);
  fs.writeFileSync(
    path.join(bin, 'rsync'),
    `#!/bin/sh\n${which('rsync')} "$@"\nrc=$?\nif [ -n "$PVSHIFT_TEST_CHANGE" ]; then (cd ${src} && sh -c "$PVSHIFT_TEST_CHANGE"); fi\nexit $rc\n`,
    { mode: 0o755 },
  );
  return { work, src, dst, log: path.join(work, 'termination-log'), bin };
}

const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** A copy made a while ago (older than the margin): a source the application stopped writing to before the final pass. */
async function copied(t: Test): Promise<{ args: string[]; work: string; bin: string }> {
  const { work, src, dst, log, bin } = setUp(t);
  const args = ['--source', src, '--target', dst, '--termination-log', log];
  const first = await runInProcess([...args, '--verify', 'none']);
  t.equal(first.code, 0, first.stderr.join('\n'));
  await pause(EARLY_LISTING_MARGIN_MS + 100);
  return { args, work, bin };
}

/** PATH with the rsync wrapper first, and what it changes in the source after rsync, until the test ends. */
function changeAfterRsync(t: Test, bin: string, change: string, path = process.env.PATH): void {
  const saved = process.env.PATH;
  process.env.PATH = `${bin}:${path ?? ''}`;
  process.env.PVSHIFT_TEST_CHANGE = change;
  t.teardown(() => {
    process.env.PATH = saved;
    delete process.env.PVSHIFT_TEST_CHANGE;
  });
}

void t.test('a final pass: the source listed while rsync runs', async (t) => {
  const { args } = await copied(t);
  const run = await runInProcess([...args, '--delete', '--verify', 'metadata']);
  t.equal(run.code, 0, run.stderr.join('\n'));
  t.match(summaryOf(run.stdout), { ok: true, verified: 'metadata' });
  t.strictSame(
    infos(run.stderr),
    ['verifying: the source was listed while the copy ran and has not changed since'],
    'the early listing is used',
  );
});

const changes: [string, string, RegExp][] = [
  ['the setuid bit lost', 'chmod 0755 a/suid', /^mode 0755 != 4755$/],
  [
    'one nanosecond of mtime',
    'touch -d @1700000000.123456788 a/f1',
    /^mtime 1700000000123456788ns != 1700000000123456789ns$/,
  ],
  ['a file deleted', 'rm a/f2', /^only on target$/],
  ['a hard link broken', 'cp -a b/y b/y.new && mv b/y.new b/y', /hard links/],
  ['a symlink target changed', 'ln -sfn ../a/f3 b/link', /symlink target/],
];
for (const [name, change, what] of changes) {
  void t.test(`a final pass, the source written after rsync read it: ${name}`, async (t) => {
    const { args, bin } = await copied(t);
    changeAfterRsync(t, bin, change);
    const run = await runInProcess([...args, '--delete', '--verify', 'metadata']);
    t.equal(run.code, 77, 'verification fails, as when the source was listed after rsync');
    const differences = summaryOf(run.stdout).differences ?? [];
    t.ok(
      differences.some((d) => what.test(d.what)),
      JSON.stringify(differences),
    );
    t.match(
      infos(run.stderr),
      [/^verifying: the source is listed again after the copy: ".*" changed \(ctime\) since the listing began$/],
      'the change is seen, the early listing dropped',
    );
  });
}

void t.test('without find: the source is listed after the copy by the lstat walk', async (t) => {
  const { args, work, bin } = await copied(t);
  changeAfterRsync(t, bin, 'chmod 0755 a/suid', binWithout(path.join(work, 'no-find'), ['find']));
  const run = await runInProcess([...args, '--delete', '--verify', 'metadata']);
  t.equal(run.code, 77, 'the difference is found');
  t.match(summaryOf(run.stdout).differences, [{ path: 'a/suid', what: 'mode 0755 != 4755' }]);
  t.strictSame(infos(run.stderr), ['verifying: the source is listed after the copy: find cannot list it']);
});
