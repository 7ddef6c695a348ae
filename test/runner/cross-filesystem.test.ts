// Copies between different filesystems on loop devices (ext4 and XFS), run
// twice as a migration does (pre-sync, then the final pass over an existing
// target), as root, so trusted.* xattrs are in play. XFS shows its ACLs to
// such a reader as trusted.SGI_ACL_* xattrs; the second pass from ext4 used to
// remove them from the target, and the ACLs with them (found by the real-node
// tier: the final copy failed verification on `a/acl: acls access`).
import t, { type Test } from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import type { Summary } from '../../src/runner-protocol.js';
import { buildFidelityTree, runInProcess, sh, snapshotTree } from './fixtures/trees.js';

/** A fresh filesystem of `type` on a loop device, mounted under `work`, gone after the test. */
function filesystem(t: Test, work: string, type: 'ext4' | 'xfs'): string {
  const image = path.join(work, `${type}-${fs.readdirSync(work).length}.img`);
  const dir = `${image}.mnt`;
  fs.mkdirSync(dir);
  // XFS needs 300 MiB at least; both images are sparse.
  execFileSync('truncate', ['-s', '320M', image]);
  execFileSync(type === 'xfs' ? 'mkfs.xfs' : 'mkfs.ext4', ['-q', image]);
  sh(`mount -o loop "${image}" "${dir}"`);
  t.teardown(() => sh(`umount "${dir}"`));
  // Not part of anyone's data: the trees are compared whole, root link count included.
  fs.rmSync(path.join(dir, 'lost+found'), { recursive: true, force: true });
  return dir;
}

const xattrNames = (file: string): string[] =>
  execFileSync('getfattr', ['-h', '-m', '-', '--absolute-names', file], { encoding: 'utf8' })
    .split('\n')
    .filter((l) => l && !l.startsWith('#'));

async function copy(t: Test, source: string, target: string, log: string, pass: string): Promise<void> {
  const run = await runInProcess(['--source', source, '--target', target, '--termination-log', log]);
  const summary = JSON.parse(run.stdout.at(-1) ?? '{}') as Summary;
  t.equal(run.code, 0, `${pass}: exit 0 (${summary.message ?? run.stderr.join(' ')})`);
}

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'pvshift-crossfs-'));
t.teardown(() => fs.rmSync(work, { recursive: true, force: true }));

for (const [from, to] of [
  ['ext4', 'xfs'],
  ['xfs', 'ext4'],
] as const) {
  void t.test(`${from} to ${to}, pre-sync then final pass: ACLs and xattrs as on the source`, async (t) => {
    const src = filesystem(t, work, from);
    const dst = filesystem(t, work, to);
    buildFidelityTree(src);
    const log = path.join(work, `${from}-${to}.log`);
    await copy(t, src, dst, log, 'pre-sync');
    // The app writes on; the final pass then runs over the existing target.
    fs.writeFileSync(path.join(src, 'a', 'later'), 'after the pre-sync');
    await copy(t, src, dst, log, 'final pass');
    for (const rel of ['a/acl', 'c']) {
      const acl = (root: string) =>
        execFileSync('getfacl', ['-p', '-n', '--omit-header', path.join(root, rel)], { encoding: 'utf8' });
      t.equal(acl(dst), acl(src), `${rel}: the ACL survived both passes`);
      t.match(acl(dst), /user:1234:/, `${rel}: the named-user entry is there`);
    }
    // Every xattr namespace root reads, the ACL storage of XFS aside (compared through getfacl).
    t.same(
      snapshotTree(dst, { xattrMatch: '-' }),
      snapshotTree(src, { xattrMatch: '-' }),
      'the whole tree as on the source',
    );
    if (to === 'ext4') {
      t.same(
        xattrNames(path.join(dst, 'a', 'acl')).filter((n) => n.startsWith('trusted.SGI_')),
        [],
        'no XFS ACL storage lands on ext4 as a stray trusted xattr',
      );
    }
  });
}
