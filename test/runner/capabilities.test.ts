// The copy pod in a Pod Security "baseline" namespace: root, but with only the
// capabilities pvshift adds there (BASELINE_CAPABILITIES: no CAP_SYS_ADMIN, no
// CAP_DAC_READ_SEARCH), and no_new_privs (allowPrivilegeEscalation: false).
// The runner runs under setpriv with exactly that set on the fidelity tree:
// everything but trusted.* xattrs (which the kernel shows only to CAP_SYS_ADMIN)
// and security.* ones other than file capabilities (which only CAP_SYS_ADMIN may
// write) is copied, and the summary says what was dropped.
import t from 'tap';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { BASELINE_CAPABILITIES } from '../../src/pod-security.js';
import {
  fidelityWorkspace,
  repoRoot,
  runnerCli,
  runnerEntries,
  sh,
  snapshotTree,
  type EntrySnapshot,
} from './fixtures/trees.js';
import type { Summary } from '../../src/runner-protocol.js';

/** setpriv's form: "-all,+chown,+dac_override,...". */
const caps = ['-all', ...BASELINE_CAPABILITIES.map((c) => `+${c.toLowerCase()}`)].join(',');
const setpriv = ['--no-new-privs', `--inh-caps=${caps}`, `--ambient-caps=${caps}`, `--bounding-set=${caps}`];

/** Runs `command` under the baseline set; resolves its exit code and output lines. */
function underBaseline(command: string[]): Promise<{ code: number | null; stdout: string[]; stderr: string[] }> {
  const child = spawn('setpriv', [...setpriv, ...command], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  const stdout: string[] = [];
  const stderr: string[] = [];
  createInterface({ input: child.stdout }).on('line', (l) => stdout.push(l));
  createInterface({ input: child.stderr }).on('line', (l) => stderr.push(l));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** What a copy without CAP_SYS_ADMIN can hold of an entry: all of it but its trusted.* and security.* xattrs, file capabilities aside. */
function withoutAdminXattrs(e: EntrySnapshot | undefined): EntrySnapshot | undefined {
  if (e?.xattrs === undefined) return e;
  const kept = (x: string) =>
    x && !x.startsWith('trusted.') && (!x.startsWith('security.') || x.startsWith('security.capability='));
  return { ...e, xattrs: e.xattrs.split(' ').filter(kept).join(' ') };
}
/** File capabilities (VFS_CAP_REVISION_2): cap_net_raw permitted. */
const FILE_CAPS = '0x0000000200200000000000000000000000000000';
/** Every namespace root sees: user, trusted, security. */
const snapshot = (root: string) => snapshotTree(root, { xattrMatch: '-' });

void t.test('the baseline set is what the test runs with', async (t) => {
  const status = await underBaseline(['grep', '^Cap', '/proc/self/status']);
  t.equal(status.code, 0, status.stderr.join('\n'));
  // CHOWN 0, DAC_OVERRIDE 1, FOWNER 3, FSETID 4, MKNOD 27, SETFCAP 31; nothing else, in every set.
  for (const set of ['CapPrm', 'CapEff', 'CapBnd'])
    t.ok(status.stdout.includes(`${set}:\t000000008800001b`), `${set}: ${status.stdout.join(' ')}`);
});

for (const engine of ['bulk', 'rsync only'] as const) {
  void t.test(
    `root without CAP_SYS_ADMIN (Pod Security baseline): all but trusted.* and security.* xattrs, and the summary says so (${engine})`,
    async (t) => {
      const { src, dst, log } = fidelityWorkspace(t, 'pvshift-baseline-', engine);
      // What an app running with CAP_SYS_ADMIN (or a package manager) leaves: a
      // security.* label, and file capabilities on a root-owned binary.
      sh(
        `setfattr -n security.pvshift -v label a/h1 && printf bin > a/ping && setfattr -n security.capability -v ${FILE_CAPS} a/ping`,
        src,
      );
      const run = await underBaseline([
        process.execPath,
        '--import',
        'tsx',
        runnerCli,
        '--source',
        src,
        '--target',
        dst,
        '--verify',
        'checksum',
        '--termination-log',
        log,
      ]);
      t.equal(run.code, 0, run.stderr.join('\n'));
      const said = run.stderr.map((l) => JSON.parse(l) as { type: string; message: string });
      t.ok(
        said.some((l) =>
          l.message.startsWith(engine === 'bulk' ? 'engine: empty target: cp -a' : 'engine: rsync only'),
        ),
        `engine: ${engine}`,
      );
      t.notOk(
        said.some((l) => l.message.startsWith('bulk copy failed')),
        'cp -a did the bulk copy',
      );
      const summary = JSON.parse(run.stdout.at(-1) ?? '{}') as Summary;
      t.match(summary, { ok: true, verified: 'checksum', exitCode: 0 });
      t.same(
        summary.dropped,
        ['trusted xattrs', 'security xattrs'],
        'trusted and security xattrs dropped, and nothing else (user xattrs and ACLs are kept)',
      );
      t.ok(
        said.some(
          (l) =>
            l.type === 'warning' &&
            /no CAP_SYS_ADMIN .*trusted\.\* extended attributes .*security\.\* .* not copied/.test(l.message),
        ),
        'a warning says why',
      );
      t.same(JSON.parse(fs.readFileSync(log, 'utf8')), summary, 'the termination log holds the summary');

      const before = snapshot(src);
      const after = snapshot(dst);
      t.same([...after.keys()].sort(), [...before.keys()].sort(), 'the same paths');
      for (const [p, e] of before)
        t.same(
          after.get(p),
          withoutAdminXattrs(e),
          `identical but for trusted.* and security.* xattrs: ${JSON.stringify(p)}`,
        );
      t.same(runnerEntries(dst), [], 'no temp dir left');

      // Spot checks, so a snapshot that saw nothing cannot pass.
      t.match(before.get('a/xattrs')?.xattrs, /trusted\.secret=0x00ff/, 'the source has a trusted xattr');
      t.equal(
        after.get('a/xattrs')?.xattrs,
        'user.color=0x626c7565',
        'the user xattr is copied, the trusted one is not',
      );
      t.equal(after.get('b')?.xattrs, 'user.dir=0x796573');
      t.match(before.get('a/h1')?.xattrs, /security\.pvshift=/, 'the source has a security label');
      t.equal(after.get('a/h1')?.xattrs, '', 'which is not copied (only CAP_SYS_ADMIN may write it)');
      t.equal(after.get('a/ping')?.xattrs, `security.capability=${FILE_CAPS}`, 'file capabilities are (CAP_SETFCAP)');
      t.match(after.get('c')?.acl, /default:user:1234:rwx/, 'ACLs');
      t.equal(after.get('a/owned')?.uid, 1234, 'owners (CAP_CHOWN)');
      t.equal(after.get('a/suid')?.mode, '4755', 'set-id bits (CAP_FSETID)');
      t.equal(after.get('setgid')?.mode, '2775');
      t.equal(
        after.get('cdev')?.rdev,
        fs.lstatSync(path.join(src, 'cdev')).rdev.toString(),
        'device nodes (CAP_MKNOD)',
      );
      t.equal(after.get('zero')?.sha256, before.get('zero')?.sha256, 'a mode-000 file read (CAP_DAC_OVERRIDE)');
      t.equal(after.get('ro/file')?.sha256, before.get('ro/file')?.sha256, 'written into a read-only directory');
      t.equal(
        after.get('a/owned')?.mtimeNs.slice(-9),
        '123456789',
        'nanosecond mtimes of files owned by others (CAP_FOWNER)',
      );
    },
  );
}
