// The first copy into an empty target: `cp -a` into the runner's temp dir,
// then each top-level entry renamed into place. GNU cp copies a file's data
// with copy_file_range (in the kernel, or a reflink where the filesystem can)
// and keeps holes (SEEK_DATA/SEEK_HOLE), where rsync reads and writes every
// byte in user space and renames every file from the temp dir; see README.md
// for the figures.
//
// What this copy is NOT trusted for: cp skips what it cannot preserve without
// failing (xattrs in --preserve=all are best-effort) and writes files under
// their final names inside the temp dir. Neither matters because (1) nothing
// reaches the target's real names until cp has exited 0, and a killed run
// leaves its partial files in TEMP_DIR_NAME, which the next run empties; and
// (2) the runner always follows with its rsync pass (size+mtime quick check,
// owners, modes, times, xattrs, ACLs, hard links, root attributes) and, if
// asked, verification: the run succeeds only when those do.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';

/** Only these may be in a target that counts as empty (besides the temp dir). */
const LOST_AND_FOUND = 'lost+found';

/** True when the target holds nothing but `tempDirName` and an empty lost+found (fresh ext4). */
export async function isTargetEmpty(target: string, tempDirName: string): Promise<boolean> {
  for (const name of await fs.readdir(target)) {
    if (name === tempDirName) continue;
    if (name === LOST_AND_FOUND) {
      const st = await fs.lstat(path.join(target, name));
      if (st.isDirectory() && (await fs.readdir(path.join(target, name))).length === 0) continue;
    }
    return false;
  }
  return true;
}

export interface BulkResult {
  ok: boolean;
  /** cp's exit and the end of its stderr, when it failed. */
  failure?: string;
}

/**
 * cp -a SOURCE into DIR (which must not exist), a directory inside the
 * target's filesystem. `-T`: DIR becomes the copy of SOURCE itself.
 */
export function runCp(source: string, dir: string, children: Set<ChildProcess>): Promise<BulkResult> {
  return new Promise((resolve, reject) => {
    // --sparse=auto (the default, spelled out): holes in the source stay holes;
    // zero-filled blocks the source has allocated stay allocated, as they are there.
    const child = spawn('cp', ['-a', '--sparse=auto', '-T', '--', source, dir], { stdio: ['ignore', 'ignore', 'pipe'] });
    children.add(child);
    let tail = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (c: string) => (tail = (tail + c).slice(-2000)));
    child.on('error', (e) => {
      children.delete(child);
      reject(e);
    });
    child.on('close', (code, signal) => {
      children.delete(child);
      if (code === 0) resolve({ ok: true });
      else resolve({ ok: false, failure: `cp exited ${code ?? signal}: ${tail.trim().split('\n').slice(-3).join('; ')}` });
    });
  });
}

/**
 * Renames every entry of `from` into `target` (same filesystem: each rename is
 * atomic, so a name in the target is either absent or a complete copy). An
 * empty lost+found in the target makes way for the source's entry of that name.
 */
export async function moveIntoPlace(from: string, target: string): Promise<void> {
  for (const name of await fs.readdir(from)) {
    const dest = path.join(target, name);
    if (name === LOST_AND_FOUND) await fs.rmdir(dest).catch(() => undefined);
    await fs.rename(path.join(from, name), dest);
  }
}

/**
 * Bytes written so far, from the drop in the target filesystem's free blocks
 * (ext4 and xfs count delayed-allocation reservations at once). An estimate
 * for progress lines only: other writers on the filesystem move it too, so
 * the caller clamps it and keeps it monotonic.
 */
export async function freeBytesDrop(target: string, freeAtStart: number): Promise<number> {
  const s = await fs.statfs(target);
  return Math.max(0, freeAtStart - s.bavail * s.bsize);
}
