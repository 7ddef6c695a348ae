// The runner's command line, parsed without touching the filesystem so every bad
// input has a table-driven test. Paths are made absolute here; whether they exist
// is checked at run time, where a missing source is a terminal error, not usage.
import path from 'node:path';
import { RUNNER_EXIT, VERIFY_MODES, isVerifyMode, type VerifyMode } from '../src/runner-protocol.js';
import { parseRfc3339Ns } from './changed-since.js';
import { TEMP_DIR_PREFIX } from './temp-dir.js';

export interface RunnerOptions {
  source: string;
  target: string;
  delete: boolean;
  verify: VerifyMode;
  progressIntervalSeconds: number;
  terminationLog: string;
  /** rsync --bwlimit in KiB/s; 0 = unlimited. Throttles a live pre-sync (and tests). */
  bwlimitKiBps: number;
  /**
   * --changed-since, as ns since the epoch: regular files whose ctime is at or
   * after it are copied again whatever their size and mtime (changed-since.ts).
   */
  changedSinceNs?: bigint;
  /** --allow-vanished: entries that vanish from a live source under the copy are counted, not failures. */
  allowVanished: boolean;
}

export type ParseResult =
  { kind: 'run'; options: RunnerOptions } | { kind: 'help' } | { kind: 'error'; message: string };

export const DEFAULT_TERMINATION_LOG = '/dev/termination-log';

export const HELP = `Usage: pvshift --mode=runner --source DIR --target DIR [options]
       tsx runner/cli.ts --source DIR --target DIR [options]

Copies the directory tree SOURCE into TARGET with rsync, keeping owners, modes,
nanosecond times, hard links, symlinks, devices, FIFOs, sparse files, xattrs and
POSIX ACLs; then verifies. Done means on disk: the target's filesystem is
flushed (syncfs) while the copy runs and before the run succeeds. Safe to
rerun: an up-to-date target transfers nothing.

Options:
  --source DIR              directory to copy from (required)
  --target DIR              directory to copy into; must exist (required)
  --delete                  make TARGET an exact mirror: delete what SOURCE lacks
  --verify MODE             none | metadata | checksum (default: metadata)
                              metadata: type, size, mode, uid/gid, mtime (ns),
                              symlink target, device numbers, hard-link groups,
                              xattrs and ACLs where copied; checksum: also sha256
  --progress-interval SECS  seconds between progress lines, > 0 (default: 5)
  --termination-log PATH    where the summary goes (default: ${DEFAULT_TERMINATION_LOG});
                              if it cannot be written, a warning, and the run goes on
  --bwlimit KIBPS           limit rsync's rate in KiB/s, 0 = none (default: 0)
  --changed-since TIME      RFC 3339 timestamp (2026-12-02T15:38:33Z): every regular
                              file whose ctime is at or after TIME has its contents
                              compared (rsync --checksum) and sent if they differ,
                              whatever its size and mtime say (rsync's quick check
                              misses a same-size rewrite whose mtime was put back)
  --allow-vanished          a live source: entries that vanish under the scan, cp or
                              rsync (rsync exit 24) are counted in the summary's
                              "vanished" with a warning, not failures
  -h, --help                this text

Top-level names beginning with "${TEMP_DIR_PREFIX}" are the runner's: its temp dir
in TARGET has such a name (leftovers of killed runs are removed), and a SOURCE
that holds one is refused (exit ${RUNNER_EXIT.TERMINAL}).

Output: stdout carries JSON lines {"type":"progress",...} and, last,
{"type":"summary",...}; stderr carries JSON lines {"type":"info"|"warning"|"error",
"message":...}. The summary is also written to the termination log (< 4096 bytes).

Exit codes:
  ${RUNNER_EXIT.OK}   done (copied, and verified if asked)
  ${RUNNER_EXIT.USAGE}   usage: bad or missing arguments
  ${RUNNER_EXIT.TRANSIENT}  transient: retry (rsync 23/24 partial or vanished, 12 stream,
       20 signal, 30/35 timeout, I/O errors, SIGTERM/SIGINT; a vanished
       entry is none of these with --allow-vanished)
  ${RUNNER_EXIT.TERMINAL}  terminal: do not retry (no space, target too small, permission
       denied, source or target missing, the target's disk lost writes, a
       source entry with the runner's reserved name)
  ${RUNNER_EXIT.VERIFY_FAILED}  verification failed: the target differs from the source (terminal)
`;

type FlagSpec = { takesValue: boolean };
const FLAGS: Readonly<Record<string, FlagSpec>> = {
  '--source': { takesValue: true },
  '--target': { takesValue: true },
  '--delete': { takesValue: false },
  '--verify': { takesValue: true },
  '--progress-interval': { takesValue: true },
  '--termination-log': { takesValue: true },
  '--bwlimit': { takesValue: true },
  '--changed-since': { takesValue: true },
  '--allow-vanished': { takesValue: false },
  '--help': { takesValue: false },
  '-h': { takesValue: false },
};

function isInside(parent: string, child: string): boolean {
  const rel = path.relative(parent, child);
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel);
}

/** `cwd` is a parameter so the parser stays pure. */
export function parseRunnerArgs(argv: readonly string[], cwd = '/'): ParseResult {
  const values = new Map<string, string>();
  const switches = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    if (!arg.startsWith('-')) return { kind: 'error', message: `unexpected argument "${arg}"` };
    const eq = arg.indexOf('=');
    const name = eq > 0 && arg.startsWith('--') ? arg.slice(0, eq) : arg;
    const spec = FLAGS[name];
    if (!spec) return { kind: 'error', message: `unknown flag ${name}` };
    if (name === '--help' || name === '-h') return { kind: 'help' };
    if (values.has(name) || switches.has(name)) return { kind: 'error', message: `${name} given more than once` };
    if (!spec.takesValue) {
      if (eq > 0) return { kind: 'error', message: `${name} takes no value` };
      switches.add(name);
      continue;
    }
    let value: string | undefined;
    if (eq > 0) value = arg.slice(eq + 1);
    else {
      value = argv[i + 1];
      // "--source --target x" is a forgotten value, not a directory named --target.
      if (value === undefined || FLAGS[value.split('=')[0] ?? ''] !== undefined) {
        return { kind: 'error', message: `${name} needs a value` };
      }
      i++;
    }
    if (value === '') return { kind: 'error', message: `${name} needs a non-empty value` };
    values.set(name, value);
  }

  const sourceArg = values.get('--source');
  const targetArg = values.get('--target');
  if (sourceArg === undefined) return { kind: 'error', message: '--source DIR is required' };
  if (targetArg === undefined) return { kind: 'error', message: '--target DIR is required' };
  const source = path.resolve(cwd, sourceArg);
  const target = path.resolve(cwd, targetArg);
  if (source === target) return { kind: 'error', message: `--source and --target are the same directory (${source})` };
  if (isInside(source, target)) return { kind: 'error', message: `--target ${target} is inside --source ${source}` };
  if (isInside(target, source)) return { kind: 'error', message: `--source ${source} is inside --target ${target}` };

  const verify = values.get('--verify') ?? 'metadata';
  if (!isVerifyMode(verify)) {
    return { kind: 'error', message: `--verify must be one of ${VERIFY_MODES.join(', ')} (got "${verify}")` };
  }

  const intervalArg = values.get('--progress-interval') ?? '5';
  const interval = Number(intervalArg);
  // Node timers take at most 2^31-1 ms; an hour is far beyond any useful interval.
  if (!/^\d+(\.\d+)?$/.test(intervalArg) || !(interval > 0) || interval > 3600) {
    return {
      kind: 'error',
      message: `--progress-interval must be a number of seconds in (0, 3600] (got "${intervalArg}")`,
    };
  }

  const bwArg = values.get('--bwlimit') ?? '0';
  if (!/^\d+$/.test(bwArg))
    return { kind: 'error', message: `--bwlimit must be a whole number of KiB/s (got "${bwArg}")` };

  const sinceArg = values.get('--changed-since');
  const changedSinceNs = sinceArg === undefined ? undefined : parseRfc3339Ns(sinceArg);
  if (sinceArg !== undefined && changedSinceNs === undefined) {
    return {
      kind: 'error',
      message: `--changed-since must be an RFC 3339 timestamp such as 2026-12-02T15:38:33.5Z (got "${sinceArg}")`,
    };
  }

  return {
    kind: 'run',
    options: {
      source,
      target,
      delete: switches.has('--delete'),
      verify,
      progressIntervalSeconds: interval,
      terminationLog: path.resolve(cwd, values.get('--termination-log') ?? DEFAULT_TERMINATION_LOG),
      bwlimitKiBps: Number(bwArg),
      allowVanished: switches.has('--allow-vanished'),
      ...(changedSinceNs === undefined ? {} : { changedSinceNs }),
    },
  };
}
