// Targets that cannot hold the data, or cannot hold some of its features, and
// sources that are not there. Real mounts (tmpfs, ramfs), cleaned up in teardown.
import t, { type Test } from 'tap';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CAP_SYS_ADMIN, canSeeTrustedXattrs, hasEffectiveCapability } from '../../runner/target-probe.js';
import { runInProcess, sh, snapshotTree } from './fixtures/trees.js';
import type { Summary } from '../../src/runner-protocol.js';

function workDir(t: Test): string {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'pvshift-capacity-'));
  t.teardown(() => fs.rmSync(work, { recursive: true, force: true }));
  return work;
}
function mount(t: Test, args: string, dir: string): void {
  fs.mkdirSync(dir, { recursive: true });
  sh(`mount ${args} "${dir}"`);
  t.teardown(() => sh(`umount "${dir}"`));
}
const summaryOf = (stdout: string[]): Summary => JSON.parse(stdout.at(-1) ?? '{}') as Summary;

void t.test('a target too small: terminal, says how much is needed and free', async (t) => {
  const work = workDir(t);
  const src = path.join(work, 'src');
  fs.mkdirSync(src);
  fs.writeFileSync(path.join(src, 'data'), randomBytes(20 << 20));
  const dst = path.join(work, 'small');
  mount(t, '-t tmpfs -o size=8m tmpfs', dst);
  const run = await runInProcess(['--source', src, '--target', dst, '--termination-log', path.join(work, 'log')]);
  t.equal(run.code, 76);
  const s = summaryOf(run.stdout);
  t.match(s, { ok: false, exitCode: 76 });
  t.match(
    s.message,
    /target too small: the target has \d+ bytes \(8\.0\d? MiB\) free, the source needs \d+ bytes \(2\d\.\d MiB/,
  );
  t.same(fs.readdirSync(dst), [], 'nothing copied, no temp dir left');
});

void t.test('a source that does not exist: terminal, clear', async (t) => {
  const work = workDir(t);
  fs.mkdirSync(path.join(work, 'dst'));
  const run = await runInProcess([
    '--source',
    path.join(work, 'nope'),
    '--target',
    path.join(work, 'dst'),
    '--termination-log',
    path.join(work, 'log'),
  ]);
  t.equal(run.code, 76);
  t.equal(summaryOf(run.stdout).message, `source directory ${path.join(work, 'nope')} does not exist`);
  const missingTarget = await runInProcess([
    '--source',
    work,
    '--target',
    path.join(os.tmpdir(), 'pvshift-no-such-target'),
  ]);
  t.equal(missingTarget.code, 76);
  t.match(summaryOf(missingTarget.stdout).message, /target directory .* does not exist/);
});

void t.test('a target without xattrs and ACLs (ramfs): dropped with warnings naming them', async (t) => {
  const work = workDir(t);
  const src = path.join(work, 'src');
  fs.mkdirSync(src);
  sh('printf x > f && setfattr -n user.k -v v f && setfacl -m u:1234:r f && mkdir d && chown 1234 d', src);
  const dst = path.join(work, 'ramfs');
  mount(t, '-t ramfs ramfs', dst);
  // Unwritable termination log: a warning, and the run goes on.
  const log = path.join(work, 'no-such-dir', 'log');
  const run = await runInProcess(['--source', src, '--target', dst, '--termination-log', log]);
  t.equal(run.code, 0, run.stderr.join('\n'));
  t.match(summaryOf(run.stdout), { ok: true, dropped: ['xattrs', 'acls'], verified: 'metadata' });
  const warnings = run.stderr
    .map((l) => JSON.parse(l) as { type: string; message: string })
    .filter((l) => l.type === 'warning');
  t.ok(
    warnings.some((w) => /cannot hold extended attributes.*-X dropped/.test(w.message)),
    'xattrs named',
  );
  t.ok(
    warnings.some((w) => /cannot hold POSIX ACLs.*-A dropped/.test(w.message)),
    'ACLs named',
  );
  t.ok(
    warnings.some((w) => w.message.includes(`cannot write the termination log ${log}`)),
    'termination log warning',
  );
  const a = snapshotTree(src, { xattrs: false, acls: false });
  const b = snapshotTree(dst, { xattrs: false, acls: false });
  t.same(b.get('f')?.sha256, a.get('f')?.sha256);
  t.same(b.get('d'), a.get('d'), 'the rest is kept');
});

void t.test('usage errors exit 2 with one line', async (t) => {
  const run = await runInProcess(['--source', '/a', '--verify', 'full']);
  t.equal(run.code, 2);
  t.same(run.stderr, ['pvshift runner: --target DIR is required (see --help)']);
  t.same(run.stdout, []);
});

void t.test('CAP_SYS_ADMIN from CapEff: whether trusted.* xattrs can be seen', async (t) => {
  const status = (capEff: string): string =>
    `Name:\tnode\nCapInh:\t0000000000000000\nCapPrm:\t${capEff}\nCapEff:\t${capEff}\nCapBnd:\t000001ffffffffff\n`;
  const cases: [string, string, boolean | undefined][] = [
    ['a full set', status('000001ffffffffff'), true],
    ['the Pod Security baseline set pvshift adds', status('000000008800001b'), false],
    ['SYS_ADMIN alone', status('0000000000200000'), true],
    ['everything but SYS_ADMIN', status('000001ffffdfffff'), false],
    ['none (a non-root user)', status('0000000000000000'), false],
    ['no CapEff line', 'Name:\tnode\n', undefined],
  ];
  for (const [name, text, expected] of cases) t.equal(hasEffectiveCapability(text, CAP_SYS_ADMIN), expected, name);
  const work = workDir(t);
  const file = path.join(work, 'status');
  fs.writeFileSync(file, status('000000008800001b'));
  t.equal(await canSeeTrustedXattrs(file), false, 'read from the status file');
  t.equal(
    await canSeeTrustedXattrs(path.join(work, 'no-proc')),
    process.getuid?.() === 0,
    'no /proc: root is taken to have it',
  );
});
