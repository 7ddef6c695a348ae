// The runner's I/O: check, scan, probe, copy with rsync, verify, report. The
// decisions it makes along the way live in the pure modules it calls.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { DROPPED_SECURITY_XATTRS, DROPPED_TRUSTED_XATTRS } from '../src/pod-security.js';
import { formatBytes } from '../src/quantity.js';
import { RUNNER_EXIT, fitSummary, type Difference, type Summary, type VerifyMode } from '../src/runner-protocol.js';
import { parseRunnerArgs, HELP, type RunnerOptions } from './args.js';
import {
  cpBatches,
  freeBytesDrop,
  isTargetEmpty,
  moveIntoPlace,
  runCp,
  runCpGroups,
  type BulkResult,
} from './bulk-copy.js';
import { filesFromList, formatRfc3339Ns, planComparison } from './changed-since.js';
import { planCopy } from './copy-plan.js';
import { includePatterns, rsyncArgs } from './rsync-command.js';
import { classifyRsyncExit } from './rsync-exit.js';
import {
  ProgressTracker,
  parseProgressLine,
  parseRsyncStats,
  splitRsyncOutput,
  sumStats,
  type RsyncStats,
} from './rsync-progress.js';
import { canSeeTrustedXattrs, checkCapacity, probeFeatures, readFsSpace, type FeatureProbe } from './target-probe.js';
import { displayPath } from './tree-diff.js';
import { listSourceEarly, verifyCopy, type EarlySourceListing, type VerifyOptions } from './tree-listing.js';
import { emptyTotals, scanTotals, type TreeTotals } from './tree-totals.js';
import { nameArgument } from './tree-walk.js';
import { TEMP_DIR_PREFIX, isReservedName, newTempDirName, removeLeftovers, reservedNames } from './temp-dir.js';
import { Flusher, WriteBackError } from './write-back.js';

export interface RunnerIO {
  /** One line of the stdout protocol, without the newline. */
  stdout(line: string): void;
  /** One JSON line for humans and the pod log. */
  stderr(line: string): void;
  /** Forward SIGTERM/SIGINT to rsync and stop (the CLI: yes; an embedding test: no). */
  handleSignals?: boolean;
  /** Aborting it stops the run as SIGTERM would. */
  signal?: AbortSignal;
}

export function processIO(): RunnerIO {
  return {
    stdout: (line) => process.stdout.write(`${line}\n`),
    stderr: (line) => process.stderr.write(`${line}\n`),
    handleSignals: true,
  };
}

class RunFailure extends Error {
  override name = 'RunFailure';
  constructor(
    message: string,
    readonly exitCode: number,
    readonly differences?: { count: number; differences: Difference[] },
  ) {
    super(message);
  }
}

function errnoCode(e: unknown): string | undefined {
  if (typeof e === 'object' && e !== null && 'code' in e) {
    const code = e.code;
    return typeof code === 'string' ? code : undefined;
  }
  return undefined;
}

const errorText = (e: unknown): string => (e instanceof Error ? e.message : String(e));
const asWriteBackError = (e: unknown): WriteBackError =>
  e instanceof WriteBackError ? e : new WriteBackError(errorText(e));

/** Errors of the filesystem that a retry cannot fix; the rest (EIO, ...) are transient. */
const TERMINAL_ERRNO = new Set(['ENOENT', 'ENOTDIR', 'EACCES', 'EPERM', 'ENOSPC', 'EDQUOT', 'EROFS']);

function classifyError(e: unknown, aborted: string | undefined): RunFailure {
  if (e instanceof RunFailure) return e;
  if (aborted) return new RunFailure(`stopped by ${aborted}`, RUNNER_EXIT.TRANSIENT);
  // Lost writes on the target: see write-back.ts for why a retry must not follow.
  if (e instanceof WriteBackError)
    return new RunFailure(
      `${e.message}: the target volume lost writes and cannot be trusted; the source is untouched`,
      RUNNER_EXIT.TERMINAL,
    );
  const code = errnoCode(e);
  return new RunFailure(errorText(e), code && TERMINAL_ERRNO.has(code) ? RUNNER_EXIT.TERMINAL : RUNNER_EXIT.TRANSIENT);
}

async function requireDirectory(dir: string, role: 'source' | 'target'): Promise<void> {
  try {
    const st = await fs.stat(dir);
    if (!st.isDirectory()) throw new RunFailure(`${role} ${dir} is not a directory`, RUNNER_EXIT.TERMINAL);
    await fs.access(
      dir,
      role === 'source' ? fs.constants.R_OK | fs.constants.X_OK : fs.constants.W_OK | fs.constants.X_OK,
    );
  } catch (e: unknown) {
    if (e instanceof RunFailure) throw e;
    const code = errnoCode(e);
    if (code === 'ENOENT') throw new RunFailure(`${role} directory ${dir} does not exist`, RUNNER_EXIT.TERMINAL);
    if (code === 'EACCES' || code === 'EPERM') {
      throw new RunFailure(`${role} directory ${dir}: permission denied`, RUNNER_EXIT.TERMINAL);
    }
    throw e;
  }
}

interface RsyncResult {
  code: number | null;
  signal: string | null;
  stats: RsyncStats | undefined;
  stderrTail: string;
  /** `file has vanished: "..."` lines: source entries gone before rsync could read them. */
  vanished: number;
}

/** rsync's warning for a source entry it listed and then found gone (the cause of exit 24). */
const RSYNC_VANISHED_LINE = /^file has vanished: /;

function runRsync(
  args: string[],
  onProgress: (line: ReturnType<typeof parseProgressLine> & object) => void,
  warn: (message: string) => void,
  children: Set<ChildProcess>,
): Promise<RsyncResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('rsync', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let rest = '';
    let statsText = '';
    let errRest = '';
    let stderrTail = '';
    let vanished = 0;
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      const split = splitRsyncOutput(rest + chunk);
      rest = split.rest;
      for (const line of split.lines) {
        const progress = parseProgressLine(line);
        if (progress) onProgress(progress);
        else statsText += `${line}\n`;
      }
    });
    child.stderr.on('data', (chunk: string) => {
      const lines = (errRest + chunk).split('\n');
      errRest = lines.pop() ?? '';
      for (const line of lines) {
        if (!line.trim()) continue;
        if (RSYNC_VANISHED_LINE.test(line)) vanished++;
        warn(line);
      }
      stderrTail = (stderrTail + chunk).slice(-65536);
    });
    child.on('error', (e: unknown) => {
      children.delete(child);
      reject(
        errnoCode(e) === 'ENOENT'
          ? new RunFailure('rsync is not installed in this image', RUNNER_EXIT.TERMINAL)
          : (e as Error),
      );
    });
    child.on('close', (code, signal) => {
      children.delete(child);
      if (errRest.trim()) {
        if (RSYNC_VANISHED_LINE.test(errRest)) vanished++;
        warn(errRest);
      }
      statsText += rest;
      resolve({ code, signal, stats: parseRsyncStats(statsText), stderrTail, vanished });
    });
  });
}

/** Sets the target root's mtime to the source root's, to the nanosecond (Node's utimes has ~µs). */
async function copyRootMtime(source: string, target: string): Promise<void> {
  const st = await fs.lstat(source, { bigint: true });
  const seconds = st.mtimeNs / 1_000_000_000n;
  const nanos = (st.mtimeNs % 1_000_000_000n).toString().padStart(9, '0');
  await new Promise<void>((resolve, reject) => {
    const child = spawn('touch', ['-m', '-d', `@${seconds}.${nanos}`, target], { stdio: 'ignore' });
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`touch exited ${code}`))));
  });
}

/**
 * rsync 3.x (seen with 3.5.0) compares a newly made FIFO's, device node's or
 * (on some filesystems) empty directory's mtime with the source's at whole-
 * second granularity before setting it: one made in the same second as its
 * source was last changed keeps its creation time, nanoseconds off. Starting
 * rsync in a later second than the newest change in the source avoids it; the
 * wait is at most a second, and only when the source changed within it.
 */
async function waitOutSecond(newestNs: bigint, signal: AbortSignal): Promise<void> {
  if (newestNs === 0n) return;
  const nextSecondMs = Number(newestNs / 1_000_000_000n + 1n) * 1000;
  const wait = nextSecondMs - Date.now();
  if (wait > 0 && wait <= 1000) {
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, wait + 5);
      signal.addEventListener('abort', () => {
        clearTimeout(t);
        resolve();
      });
    });
  }
}

/**
 * cp -a into TEMP/bulk, then into place (see bulk-copy.ts for why this copy
 * is allowed to be untrusted): one cp per group of top-level names when the
 * plan splits the tree, else one cp of the whole tree. A cp failure is not
 * the run's failure: the partial copy is dropped and rsync does the whole job,
 * and reports whatever error is real (no space, permissions) with its own
 * exit code. With `allowVanished`, source entries that vanished under cp are
 * not a failure: the copy of the rest is kept and they are counted.
 */
async function bulkCopy(
  source: string,
  target: string,
  tempDir: string,
  groups: string[][],
  bytesTotal: number,
  tracker: ProgressTracker,
  children: Set<ChildProcess>,
  signal: AbortSignal,
  say: (type: 'info' | 'warning', message: string) => void,
  allowVanished: boolean,
): Promise<{ copied: boolean; vanished: number }> {
  const dir = path.join(tempDir, 'bulk');
  const space = await fs.statfs(target);
  const freeAtStart = space.bavail * space.bsize;
  // Progress key -1: the bulk copy's bytes; the rsync pass adds its own (clamped to the total).
  const poll = setInterval(() => {
    freeBytesDrop(target, freeAtStart).then(
      (b) => tracker.update({ bytes: Math.min(b, bytesTotal), percent: 0 }, -1),
      () => undefined,
    );
  }, 250);
  try {
    // cp is given each top-level name as an argument, which Node passes as
    // UTF-8: a name whose bytes are not UTF-8 cannot be named, and one cp of
    // the whole tree never names anything.
    const named = groups.map((g) => g.map(nameArgument));
    let result: BulkResult;
    if (groups.length > 1 && named.every((g): g is string[] => g.every((a) => a !== undefined))) {
      const batches = named.map((g) => cpBatches(g.map((n) => path.join(source, n))));
      const runs = batches.reduce((sum, b) => sum + b.length, 0);
      say(
        'info',
        `bulk copy: ${groups.length} cp processes at once over ${groups.map((g) => g.length).join('/')} top-level entries` +
          `${runs > groups.length ? ` (${runs} cp runs in all, to keep each command line short)` : ''}: cp -a -t ${dir} -- ${source}/...`,
      );
      await fs.mkdir(dir);
      result = await runCpGroups(dir, batches, children, signal, allowVanished);
    } else {
      const unnamed = groups.flat().find((n) => nameArgument(n) === undefined);
      const why =
        unnamed === undefined
          ? ''
          : ` (the top-level name ${JSON.stringify(displayPath(unnamed))} is not valid UTF-8: it cannot be passed to cp)`;
      say('info', `bulk copy: one cp process${why}: cp -a -T ${source} ${dir}`);
      result = await runCp(source, dir, children, allowVanished);
    }
    if (!result.ok) {
      say('warning', `bulk copy failed, rsync copies everything instead: ${result.failure ?? ''}`);
      await fs.rm(dir, { recursive: true, force: true });
      return { copied: false, vanished: 0 };
    }
    await moveIntoPlace(dir, target);
    await fs.rmdir(dir);
    tracker.update({ bytes: bytesTotal, percent: 100 }, -1);
    return { copied: true, vanished: result.vanished };
  } finally {
    clearInterval(poll);
  }
}

/**
 * One rsync over the whole tree, or one per group of top-level names, run
 * together (see copy-plan.ts for when that wins). Every process copies the
 * root's own attributes (the same values); --delete of top-level names the
 * source lacks goes to the first group.
 */
async function runRsyncGroups(
  options: RunnerOptions,
  features: FeatureProbe,
  tempDir: string,
  groups: string[][],
  tracker: ProgressTracker,
  say: (type: 'info' | 'warning', message: string) => void,
  children: Set<ChildProcess>,
  onStarted: () => void = () => undefined,
): Promise<RsyncResult[]> {
  const warn = (m: string): void => say('warning', m);
  if (groups.length < 2) {
    const args = rsyncArgs(options, features, tempDir);
    say('info', `rsync ${args.join(' ')}`);
    const running = runRsync(args, (p) => tracker.update(p), warn, children);
    onStarted();
    return [await running];
  }
  const lists = groups.map((g) => [...g]);
  if (options.delete) {
    const inSource = new Set(groups.flat());
    // Names as latin1 strings of their bytes, like the scan's (see tree-walk.ts).
    const names = (await fs.readdir(options.target, { encoding: 'buffer' })).map((n) => n.toString('latin1'));
    const extra = names.filter((n) => !isReservedName(n) && !inSource.has(n));
    lists[0]?.push(...extra);
  }
  let started = 0;
  return Promise.all(
    lists.map(async (names, i) => {
      const list = path.join(tempDir, `include-${i}`);
      await fs.writeFile(list, includePatterns(names), 'latin1');
      const args = rsyncArgs(options, features, tempDir, { includeFrom: list });
      say('info', `rsync (${i + 1}/${lists.length}, ${names.length} top-level entries) ${args.join(' ')}`);
      const running = runRsync(args, (p) => tracker.update(p, i), warn, children);
      if (++started === lists.length) onStarted();
      return running;
    }),
  );
}

/**
 * --changed-since: one rsync over the listed files (paths below the source,
 * latin1 strings of their bytes) with --checksum, before the main pass; it
 * sends those whose contents differ (see changed-since.ts).
 */
async function runComparePass(
  options: RunnerOptions,
  features: FeatureProbe,
  tempDir: string,
  paths: readonly string[],
  tracker: ProgressTracker,
  say: (type: 'info' | 'warning', message: string) => void,
  children: Set<ChildProcess>,
): Promise<RsyncResult> {
  const list = path.join(tempDir, 'changed-files');
  await fs.writeFile(list, filesFromList(paths));
  const args = rsyncArgs(options, features, tempDir, { compareFrom: list });
  say('info', `rsync (contents of ${paths.length} changed file(s)) ${args.join(' ')}`);
  // Progress key -2: its bytes and the main pass's add up (clamped to the total).
  return runRsync(
    args,
    (p) => tracker.update(p, -2),
    (m) => say('warning', m),
    children,
  );
}

export async function runCopy(options: RunnerOptions, io: RunnerIO): Promise<Summary> {
  const started = Date.now();
  const say = (type: 'info' | 'warning' | 'error', message: string): void =>
    io.stderr(JSON.stringify({ type, message }));
  const children = new Set<ChildProcess>();
  let aborted: string | undefined;
  const controller = new AbortController();
  const stop = (signal: NodeJS.Signals): void => {
    if (aborted) return;
    aborted = signal;
    say('warning', `received ${signal}: stopping rsync`);
    controller.abort(new Error(`stopped by ${signal}`));
    for (const child of children) child.kill(signal);
  };
  const onAbort = (): void => stop('SIGTERM');
  io.signal?.addEventListener('abort', onAbort);
  if (io.handleSignals) {
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  }

  let totals: TreeTotals = emptyTotals();
  let stats: RsyncStats = { filesTransferred: 0, bytesTransferred: 0, deleted: 0 };
  let verified: VerifyMode = 'none';
  const dropped: string[] = [];
  /** Source entries that vanished under find, cp and rsync (--allow-vanished). */
  const vanished = { scan: 0, cp: 0, rsync: 0 };
  const tempName = newTempDirName();
  const tempDir = path.join(options.target, tempName);
  let timer: NodeJS.Timeout | undefined;
  let exitCode: number = RUNNER_EXIT.OK;
  let message: string;
  let differences: { count: number; differences: Difference[] } | undefined;
  let flusher: Flusher | undefined;
  let flushed: Promise<WriteBackError | undefined> | undefined;
  // The early source listing (listSourceEarly) stops with the run, whichever way it ends.
  let early: EarlySourceListing | undefined;
  const earlyStop = new AbortController();
  controller.signal.addEventListener('abort', () => earlyStop.abort(controller.signal.reason), { once: true });

  try {
    await requireDirectory(options.source, 'source');
    await requireDirectory(options.target, 'target');
    // The runner excludes these names from the copy (temp-dir.ts): refused
    // rather than lost without a word. Terminal: the source must change first.
    const reserved = await reservedNames(options.source);
    if (reserved.length > 0) {
      throw new RunFailure(
        `the source holds ${reserved.map((n) => JSON.stringify(displayPath(n))).join(', ')} at its top level: names beginning with ` +
          `"${TEMP_DIR_PREFIX}" are reserved for the runner's temp dir and would not be copied; rename or remove ${reserved.length > 1 ? 'them' : 'it'} and run again`,
        RUNNER_EXIT.TERMINAL,
      );
    }
    say('info', `scanning ${options.source}`);
    const trustedVisible = await canSeeTrustedXattrs();
    // The target side does not wait for the scan: a few ms of spawning setfattr
    // and setfacl, which on a small tree is a visible share of the run.
    const prepareTarget = async (): Promise<FeatureProbe> => {
      // A run killed mid-copy left its temp dir (a half-written file, a partial
      // bulk copy); it is never part of the copy.
      const leftovers = await removeLeftovers(options.target);
      if (leftovers.length > 0)
        say(
          'info',
          `removed the temp dir of an earlier run: ${leftovers.map((n) => JSON.stringify(displayPath(n))).join(', ')}`,
        );
      await fs.mkdir(tempDir, { mode: 0o700 });
      return probeFeatures(tempDir, trustedVisible);
    };
    const scanOptions = {
      signal: controller.signal,
      allowVanished: options.allowVanished,
      changedSinceNs: options.changedSinceNs,
    };
    const [scanned, features] = await Promise.all([scanTotals(options.source, scanOptions), prepareTarget()]);
    totals = scanned;
    vanished.scan = totals.vanished;
    say(
      'info',
      `source: ${totals.files} files, ${totals.bytes} bytes (${formatBytes(totals.bytes)}), ${formatBytes(totals.allocatedBytes)} allocated`,
    );

    if (!trustedVisible) {
      dropped.push(DROPPED_TRUSTED_XATTRS, DROPPED_SECURITY_XATTRS);
      say(
        'warning',
        'no CAP_SYS_ADMIN (CapEff in /proc/self/status): the kernel hides trusted.* extended attributes from this process and lets it write no security.* but security.capability, so those are not copied; every other xattr is',
      );
    }
    for (const note of features.notes) say('warning', `target probe: ${note}`);
    if (!features.xattrs) {
      dropped.push('xattrs');
      say(
        'warning',
        `the target filesystem cannot hold extended attributes: copying without xattrs (rsync -X dropped)`,
      );
    }
    if (!features.acls) {
      dropped.push('acls');
      say('warning', `the target filesystem cannot hold POSIX ACLs: copying without ACLs (rsync -A dropped)`);
    }

    const need = { allocatedBytes: totals.allocatedBytes, inodes: totals.inodes, largestFile: totals.largestFile };
    let verdict = checkCapacity(need, await readFsSpace(options.target));
    if (!verdict.fits) {
      // A rerun finds most of the data already there: count it before refusing.
      const present = await scanTotals(options.target, {
        skipTopLevel: new Set([tempName]),
        signal: controller.signal,
      });
      verdict = checkCapacity(
        { ...need, targetAllocatedBytes: present.allocatedBytes, targetInodes: present.inodes },
        await readFsSpace(options.target),
      );
    }
    for (const w of verdict.warnings) say('warning', w);
    if (!verdict.fits) throw new RunFailure(verdict.message, RUNNER_EXIT.TERMINAL);

    const tracker = new ProgressTracker(totals.bytes, totals.files, Date.now());
    const emit = (): void => io.stdout(JSON.stringify(tracker.snapshot(Date.now())));
    emit();
    timer = setInterval(emit, options.progressIntervalSeconds * 1000);
    const plan = planCopy({
      totals,
      targetEmpty: await isTargetEmpty(options.target, tempName),
      bwlimitKiBps: options.bwlimitKiBps,
      cpus: os.availableParallelism(),
    });
    say('info', `engine: ${plan.reason}`);
    flusher = new Flusher(options.target, children);
    flusher.start();
    let compare: string[] = [];
    if (options.changedSinceNs !== undefined) {
      const since = `--changed-since ${formatRfc3339Ns(options.changedSinceNs)}: ${totals.changedFiles.length} regular file path(s) changed (ctime) since then`;
      if (plan.bulk) say('info', `${since}; the target is empty: everything is copied`);
      else {
        compare = (await planComparison(options.target, totals.changedFiles, controller.signal)).paths;
        say(
          'info',
          `${since}; ${compare.length} of them have the source's size and mtime on the target: their contents are compared (rsync --checksum) before the main pass`,
        );
      }
    }
    const verifyOptions: VerifyOptions = {
      features,
      content: options.verify === 'checksum',
      mirror: options.delete,
      targetSkip: new Set([tempName]),
      warn: (m: string) => say('warning', m),
      info: (m: string) => say('info', `verifying: ${m}`),
      signal: controller.signal,
    };
    // --verify metadata: the source is listed while rsync runs, started once
    // rsync is (a final pass's source is not written; verifyCopy checks that
    // nothing changed since the listing began, and lists it again if it did).
    const listEarly = (): void => {
      if (options.verify !== 'metadata' || early !== undefined) return;
      early = listSourceEarly(options.source, { ...verifyOptions, signal: earlyStop.signal });
      verifyOptions.early = early;
    };
    let bulkCopied = false;
    if (plan.bulk) {
      const bulk = await bulkCopy(
        options.source,
        options.target,
        tempDir,
        plan.groups,
        totals.bytes,
        tracker,
        children,
        controller.signal,
        say,
        options.allowVanished,
      );
      bulkCopied = bulk.copied;
      vanished.cp = bulk.vanished;
      controller.signal.throwIfAborted();
    }
    await waitOutSecond(totals.newestSpecialMtimeNs, controller.signal);
    controller.signal.throwIfAborted();
    const results: RsyncResult[] = [];
    if (compare.length > 0) {
      const compared = await runComparePass(options, features, tempDir, compare, tracker, say, children);
      results.push(compared);
      const outcome = classifyRsyncExit(compared.code, compared.signal, compared.stderrTail, options.allowVanished);
      if (aborted) throw new RunFailure(`stopped by ${aborted} (${outcome.reason})`, RUNNER_EXIT.TRANSIENT);
      if (outcome.exitCode !== RUNNER_EXIT.OK) throw new RunFailure(outcome.reason, outcome.exitCode);
    }
    results.push(...(await runRsyncGroups(options, features, tempDir, plan.groups, tracker, say, children, listEarly)));
    clearInterval(timer);
    timer = undefined;
    stats = sumStats(results.flatMap((r) => (r.stats ? [r.stats] : [])));
    // What cp moved counts as transferred too: the rsync pass after it only fixed up.
    if (bulkCopied)
      stats = {
        ...stats,
        bytesTransferred: stats.bytesTransferred + totals.bytes,
        filesTransferred: stats.filesTransferred + totals.files,
      };
    vanished.rsync = results.reduce((sum, r) => sum + r.vanished, 0);
    const outcomes = results.map((r) => classifyRsyncExit(r.code, r.signal, r.stderrTail, options.allowVanished));
    const outcome = outcomes.find((o) => o.exitCode !== RUNNER_EXIT.OK) ?? outcomes[0];
    if (aborted)
      throw new RunFailure(`stopped by ${aborted}${outcome ? ` (${outcome.reason})` : ''}`, RUNNER_EXIT.TRANSIENT);
    if (outcome && outcome.exitCode !== RUNNER_EXIT.OK) throw new RunFailure(outcome.reason, outcome.exitCode);
    tracker.complete();
    emit();
    const vanishedTotal = vanished.scan + vanished.cp + vanished.rsync;
    if (vanishedTotal > 0) {
      say(
        'warning',
        `${vanishedTotal} source entr${vanishedTotal === 1 ? 'y' : 'ies'} vanished while being copied (scan ${vanished.scan}, cp ${vanished.cp}, rsync ${vanished.rsync}): ` +
          'allowed (--allow-vanished), the next pass copies the source as it is then',
      );
    }

    await fs.rm(tempDir, { recursive: true, force: true });
    // Making and removing the temp dir touched the root's mtime after rsync set it.
    await copyRootMtime(options.source, options.target);

    // The last flush runs while verification reads (both must succeed); a
    // rejection is turned into a value so it cannot go unhandled meanwhile.
    say('info', "flushing the copy to the target's disk");
    flushed = flusher.finish().then(() => undefined, asWriteBackError);
    if (options.verify !== 'none') {
      say('info', `verifying (${options.verify})`);
      const diff = await verifyCopy(options.source, options.target, verifyOptions);
      if (diff.count > 0) {
        throw new RunFailure(
          `verification (${options.verify}) failed: ${diff.count} path(s) differ, first: ${diff.differences[0]?.path ?? '?'}: ${diff.differences[0]?.what ?? '?'}`,
          RUNNER_EXIT.VERIFY_FAILED,
          diff,
        );
      }
      verified = options.verify;
    }
    const flushError = await flushed;
    if (flushError !== undefined) throw flushError;
    message = `copied ${totals.files} files, ${formatBytes(totals.bytes)}; transferred ${stats.filesTransferred} files, ${formatBytes(stats.bytesTransferred)}${verified === 'none' ? '' : `; verified (${verified})`}`;
  } catch (e: unknown) {
    // Lost writes explain whatever else then went wrong on the target (seen:
    // rmdir failing with EIO): ask the disk before blaming anything else.
    const lost = aborted || !flusher ? undefined : await flusher.finish().then(() => undefined, asWriteBackError);
    const failure = classifyError(lost ?? e, aborted);
    exitCode = failure.exitCode;
    message = failure.message;
    differences = failure.differences;
    say('error', message);
    for (const d of differences?.differences ?? []) say('error', `differs: ${JSON.stringify(d.path)}: ${d.what}`);
  } finally {
    if (timer) clearInterval(timer);
    // A run that failed still waits for its flushes: no sync outlives the summary.
    await flusher?.stop();
    await flushed;
    earlyStop.abort(new Error('the run is over'));
    await early?.listing;
    io.signal?.removeEventListener('abort', onAbort);
    if (io.handleSignals) {
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
    }
  }
  if (exitCode !== RUNNER_EXIT.OK) await fs.rm(tempDir, { recursive: true, force: true }).catch(() => undefined);

  const summary: Summary = {
    type: 'summary',
    ok: exitCode === RUNNER_EXIT.OK,
    bytes: totals.bytes,
    bytesTransferred: stats.bytesTransferred,
    files: totals.files,
    filesTransferred: stats.filesTransferred,
    seconds: Math.round((Date.now() - started) / 10) / 100,
    verified,
    dropped,
    exitCode,
    message,
  };
  if (options.allowVanished) summary.vanished = vanished.scan + vanished.cp + vanished.rsync;
  if (differences) {
    summary.differences = differences.differences;
    summary.differencesTotal = differences.count;
  }
  const text = fitSummary(summary);
  try {
    await fs.writeFile(options.terminationLog, text);
  } catch (e: unknown) {
    say('warning', `cannot write the termination log ${options.terminationLog}: ${errorText(e)}`);
  }
  io.stdout(JSON.stringify(summary));
  return summary;
}

/** `pvshift --mode=runner <args>` and runner/cli.ts: returns the exit code. */
export async function main(argv: readonly string[], io: RunnerIO = processIO()): Promise<number> {
  const parsed = parseRunnerArgs(argv, process.cwd());
  if (parsed.kind === 'help') {
    io.stdout(HELP.trimEnd());
    return RUNNER_EXIT.OK;
  }
  if (parsed.kind === 'error') {
    io.stderr(`pvshift runner: ${parsed.message} (see --help)`);
    return RUNNER_EXIT.USAGE;
  }
  const summary = await runCopy(parsed.options, io);
  return summary.exitCode;
}
