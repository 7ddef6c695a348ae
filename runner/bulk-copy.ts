// The first copy into an empty target: `cp -a` into the runner's temp dir
// (one cp per group of top-level names when the plan splits the tree, see
// runCpGroups), then each top-level entry renamed into place. GNU cp copies a
// file's data with copy_file_range (in the kernel, or a reflink where the
// filesystem can) and keeps holes (SEEK_DATA/SEEK_HOLE), where rsync reads and
// writes every byte in user space and renames every file from the temp dir;
// see README.md for the figures.
//
// What this copy is NOT trusted for: cp skips what it cannot preserve without
// failing (xattrs in --preserve=all are best-effort) and writes files under
// their final names inside the temp dir. Neither matters because (1) nothing
// reaches the target's real names until every cp has exited 0, and a killed run
// leaves its partial files in the runner's temp dir, which the next run removes; and
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
  /** Source entries cp found gone (counted only with allowVanished; otherwise they fail the copy). */
  vanished: number;
}

/**
 * What GNU cp prints (LC_ALL=C, after its argv[0]: "cp", or a path when a
 * wrapper execs it) for a source entry it listed or was given and then found gone: stat, opendir ("cannot access"), open for reading,
 * readlink. A target-side ENOENT ("cannot create regular file", "for
 * writing") is not one. cp quotes names, newlines included: one line each.
 */
const CP_VANISHED =
  /^(?:\S*\/)?cp: (?:cannot (?:stat|access|read symbolic link) .*|cannot open .* for reading): No such file or directory$/;

/**
 * One cp process; `done` resolves when it has exited (a failure to start is a
 * failure too). With `allowVanished`, a cp whose only errors are entries that
 * vanished from the source (exit 1) succeeded: it copied everything else, as
 * cp goes on past such an error.
 */
function startCp(
  args: string[],
  children: Set<ChildProcess>,
  allowVanished: boolean,
): { child: ChildProcess; done: Promise<BulkResult> } {
  // LC_ALL=C: messages in English, matched by CP_VANISHED.
  const child = spawn('cp', args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
  children.add(child);
  const done = new Promise<BulkResult>((resolve) => {
    let tail = '';
    let rest = '';
    let vanished = 0;
    let otherErrors = 0;
    const count = (line: string): void => {
      if (CP_VANISHED.test(line)) vanished++;
      else if (line.trim()) otherErrors++;
    };
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (c: string) => {
      tail = (tail + c).slice(-2000);
      const lines = (rest + c).split('\n');
      rest = lines.pop() ?? '';
      lines.forEach(count);
    });
    // A process that cannot start emits 'error', then 'close': the first settles.
    child.on('error', (e) => {
      children.delete(child);
      resolve({ ok: false, failure: `cp could not start: ${e.message}`, vanished: 0 });
    });
    child.on('close', (code, signal) => {
      children.delete(child);
      count(rest);
      if (code === 0) resolve({ ok: true, vanished: 0 });
      else if (allowVanished && code === 1 && vanished > 0 && otherErrors === 0) resolve({ ok: true, vanished });
      else
        resolve({
          ok: false,
          failure: `cp exited ${code ?? signal}: ${tail.trim().split('\n').slice(-3).join('; ')}`,
          vanished: 0,
        });
    });
  });
  return { child, done };
}

/**
 * cp -a SOURCE into DIR (which must not exist), a directory inside the
 * target's filesystem. `-T`: DIR becomes the copy of SOURCE itself.
 */
export function runCp(
  source: string,
  dir: string,
  children: Set<ChildProcess>,
  allowVanished = false,
): Promise<BulkResult> {
  // --sparse=auto (the default, spelled out): holes in the source stay holes;
  // zero-filled blocks the source has allocated stay allocated, as they are there.
  return startCp(['-a', '--sparse=auto', '-T', '--', source, dir], children, allowVanished).done;
}

/**
 * A cp's arguments stay far below the kernel's limit on a command line
 * (ARG_MAX, 2 MiB here, environment included): a group with more top-level
 * names than fit in one cp runs as several, one after another.
 */
const BATCH_MAX_BYTES = 64 * 1024;
const BATCH_MAX_PATHS = 2000;

/** Source paths split into the arguments of consecutive cp runs. */
export function cpBatches(
  paths: readonly string[],
  maxBytes = BATCH_MAX_BYTES,
  maxPaths = BATCH_MAX_PATHS,
): string[][] {
  const batches: string[][] = [];
  let batch: string[] = [];
  let size = 0;
  for (const p of paths) {
    const bytes = Buffer.byteLength(p) + 1;
    if (batch.length > 0 && (batch.length >= maxPaths || size + bytes > maxBytes)) {
      batches.push(batch);
      batch = [];
      size = 0;
    }
    batch.push(p);
    size += bytes;
  }
  if (batch.length > 0) batches.push(batch);
  return batches;
}

/**
 * The bulk copy as one cp per group of top-level names, all at once (two cp
 * processes over halves of a 100,000-file tree: 1.8 s against 3.4 s for one),
 * each copying its batches (cpBatches of SOURCE/name paths) into DIR, which
 * must exist, one batch after another. copy-plan.ts keeps top-level names tied
 * by a hard link in one group; a link between names that land in different
 * batches becomes two files here, and the rsync pass (-H) links them again.
 * The first failure stops every cp (the caller drops DIR and leaves the copy
 * to rsync); so does `signal`.
 */
export async function runCpGroups(
  dir: string,
  groups: readonly (readonly string[][])[],
  children: Set<ChildProcess>,
  signal: AbortSignal,
  allowVanished = false,
): Promise<BulkResult> {
  const running = new Set<ChildProcess>();
  let failure: string | undefined;
  let vanished = 0;
  const runGroup = async (batches: readonly string[][]): Promise<void> => {
    for (const batch of batches) {
      if (failure !== undefined || signal.aborted) return;
      const { child, done } = startCp(['-a', '--sparse=auto', '-t', dir, '--', ...batch], children, allowVanished);
      running.add(child);
      const result = await done;
      running.delete(child);
      vanished += result.vanished;
      if (!result.ok && failure === undefined) {
        failure = result.failure;
        for (const other of running) other.kill('SIGTERM');
      }
    }
  };
  await Promise.all(groups.map(runGroup));
  if (failure !== undefined) return { ok: false, failure, vanished: 0 };
  // Stopped between two batches: what was copied is complete but not everything.
  if (signal.aborted) return { ok: false, failure: 'stopped', vanished: 0 };
  return { ok: true, vanished };
}

/**
 * Renames every entry of `from` into `target` (same filesystem: each rename is
 * atomic, so a name in the target is either absent or a complete copy). An
 * empty lost+found in the target makes way for the source's entry of that name.
 */
export async function moveIntoPlace(from: string, target: string): Promise<void> {
  // Names as bytes: one that is not valid UTF-8 does not survive a string.
  const inside = (dir: string, name: Buffer): Buffer => Buffer.concat([Buffer.from(`${dir}/`), name]);
  for (const name of await fs.readdir(from, { encoding: 'buffer' })) {
    const dest = inside(target, name);
    if (name.toString('latin1') === LOST_AND_FOUND) await fs.rmdir(dest).catch(() => undefined);
    await fs.rename(inside(from, name), dest);
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
