// The runner says done only when the copy is on the target's disk, and says
// failed when the disk lost writes. Real block devices: ext4 on a loop device
// whose backing file is read directly (what the disk holds, not what the
// target's page cache holds), and a backing file on a tmpfs too small for it,
// so the loop device fails writes as a dying disk would.
import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runInProcess, sh } from './fixtures/trees.js';
import type { Summary } from '../../src/runner-protocol.js';

const MiB = 1 << 20;
const BLOCK = 4096;
const summaryOf = (stdout: string[]): Summary => JSON.parse(stdout.at(-1) ?? '{}') as Summary;

function workDir(t: Test): string {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'pvshift-write-back-'));
  t.teardown(() => fs.rmSync(work, { recursive: true, force: true }));
  return work;
}

/**
 * ext4 on a loop device over `image` (made here, sparse), mounted on `mountPoint`.
 * mkfs writes the inode tables and the journal now, so later writes of
 * metadata land on blocks the image already has; only file data needs new ones.
 */
function loopExt4(t: Test, image: string, sizeMiB: number, mountPoint: string): void {
  fs.mkdirSync(mountPoint, { recursive: true });
  fs.closeSync(fs.openSync(image, 'w'));
  fs.truncateSync(image, sizeMiB * MiB);
  const device = execFileSync('losetup', ['--find', '--show', image], { encoding: 'utf8' }).trim();
  let mounted = false;
  t.teardown(() => {
    if (mounted) sh(`umount "${mountPoint}"`);
    sh(`losetup -d "${device}"`);
  });
  sh(`mkfs.ext4 -q -b ${BLOCK} -E lazy_itable_init=0,lazy_journal_init=0 "${device}"`);
  sh(`mount "${device}" "${mountPoint}"`);
  mounted = true;
}

/**
 * Whether every block of `data` is somewhere in `image` (what the disk holds):
 * ext4 places a file's blocks, not the file, so a file may be in pieces.
 */
function onDisk(image: string, data: Buffer): boolean {
  const digest = (b: Buffer): string => createHash('sha1').update(b).digest('hex');
  const disk = fs.readFileSync(image);
  const blocks = new Set<string>();
  for (let off = 0; off < disk.length; off += BLOCK) blocks.add(digest(disk.subarray(off, off + BLOCK)));
  for (let off = 0; off < data.length; off += BLOCK)
    if (!blocks.has(digest(data.subarray(off, off + BLOCK)))) return false;
  return true;
}

void t.test("done means on disk: the data is in the device's backing file when the runner exits", async (t) => {
  const work = workDir(t);
  const src = path.join(work, 'src');
  fs.mkdirSync(path.join(src, 'd'), { recursive: true });
  // One payload per engine path: a file cp copies, and one the rsync pass adds (a rerun).
  const first = randomBytes(2 * MiB);
  const second = randomBytes(2 * MiB);
  fs.writeFileSync(path.join(src, 'd', 'first'), first);
  const image = path.join(work, 'disk.img');
  const dst = path.join(work, 'dst');
  loopExt4(t, image, 64, dst);

  const run = await runInProcess(['--source', src, '--target', dst, '--termination-log', path.join(work, 'log')]);
  t.equal(run.code, 0, run.stderr.join('\n'));
  t.match(summaryOf(run.stdout), { ok: true, files: 2 });
  // The kernel would write these pages back on its own only after ~30 s.
  t.ok(onDisk(image, first), 'every block of the copied file is on the disk (bulk copy)');

  fs.writeFileSync(path.join(src, 'd', 'second'), second);
  const rerun = await runInProcess(['--source', src, '--target', dst, '--termination-log', path.join(work, 'log')]);
  t.equal(rerun.code, 0, rerun.stderr.join('\n'));
  t.match(summaryOf(rerun.stdout), { ok: true, filesTransferred: 1 });
  t.ok(onDisk(image, second), 'every block of the file the rerun added is on the disk (rsync only)');
  t.ok(
    rerun.stderr.some((l) => l.includes('flushing the copy to the target')),
    'the log says when the flush happens',
  );
});

void t.test('a disk that loses writes: terminal, says the target cannot be trusted', async (t) => {
  const work = workDir(t);
  const src = path.join(work, 'src');
  fs.mkdirSync(src);
  fs.writeFileSync(path.join(src, 'data'), randomBytes(24 * MiB));
  // The image (64 MiB, sparse) lives on a 12 MiB tmpfs: mkfs takes ~8.5 MiB of
  // it, so the ext4 on top thinks it has ~50 MiB free and the 24 MiB of data
  // fit, but the loop device cannot store them: EIO on write-back.
  const backing = path.join(work, 'backing');
  fs.mkdirSync(backing);
  sh(`mount -t tmpfs -o size=12m tmpfs "${backing}"`);
  const dst = path.join(work, 'dst');
  // Teardowns run last-registered first: the loop device goes before its tmpfs.
  t.teardown(() => sh(`umount "${backing}"`));
  loopExt4(t, path.join(backing, 'disk.img'), 64, dst);

  const log = path.join(work, 'log');
  const run = await runInProcess(['--source', src, '--target', dst, '--termination-log', log]);
  t.equal(run.code, 76, 'terminal: a retry would trust cached pages the disk never took');
  const s = summaryOf(run.stdout);
  t.match(s, { ok: false, exitCode: 76 });
  // A dying disk says EIO; the loop driver passes on its backing file's ENOSPC (seen on Linux 6.x).
  t.match(
    s.message,
    /^writing the copy to the target's disk failed \(sync: error syncing '.*\/dst': (Input\/output error|No space left on device)\): the target volume lost writes and cannot be trusted; the source is untouched$/,
  );
  t.same(JSON.parse(fs.readFileSync(log, 'utf8')), s, 'the termination log says the same');
  t.equal(fs.readFileSync(path.join(src, 'data')).length, 24 * MiB, 'source untouched');
});
