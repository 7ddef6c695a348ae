// rsync's exit codes (rsync(1), "EXIT VALUES") mapped onto the runner's two
// failure kinds. Pure: the code, the signal and the tail of rsync's stderr in,
// a runner exit code and a reason out.
import { RUNNER_EXIT } from '../src/runner-protocol.js';

type Kind = 'transient' | 'terminal';

interface RsyncCode {
  kind: Kind;
  meaning: string;
}

/** Every exit value rsync documents; anything else is treated as transient. */
export const RSYNC_EXIT_CODES: ReadonlyMap<number, RsyncCode> = new Map<number, RsyncCode>([
  // Our own command line is wrong: a bug in the runner, retrying repeats it.
  [1, { kind: 'terminal', meaning: 'syntax or usage error' }],
  // Local copy: both ends are the same binary, so this cannot heal itself.
  [2, { kind: 'terminal', meaning: 'protocol incompatibility' }],
  // A source or target path cannot be opened (missing mount, not a directory).
  [3, { kind: 'terminal', meaning: 'errors selecting input/output files, dirs' }],
  // e.g. -X or -A asked of an rsync built without them: the image is wrong.
  [4, { kind: 'terminal', meaning: 'requested action not supported' }],
  [5, { kind: 'transient', meaning: 'error starting client-server protocol' }],
  [6, { kind: 'transient', meaning: 'daemon unable to append to log-file' }],
  [10, { kind: 'transient', meaning: 'error in socket I/O' }],
  // File I/O: a flaky disk is retried; ENOSPC is recognised from stderr first.
  [11, { kind: 'transient', meaning: 'error in file I/O' }],
  // The pipe between rsync's own processes broke, usually because one was killed.
  [12, { kind: 'transient', meaning: 'error in rsync protocol data stream' }],
  [13, { kind: 'transient', meaning: 'errors with program diagnostics' }],
  [14, { kind: 'transient', meaning: 'error in IPC code' }],
  [15, { kind: 'transient', meaning: 'sibling process crashed' }],
  [16, { kind: 'transient', meaning: 'sibling process terminated abnormally' }],
  [19, { kind: 'transient', meaning: 'received SIGUSR1' }],
  // SIGTERM/SIGINT/SIGHUP: the pod is being stopped, the next pod resumes.
  [20, { kind: 'transient', meaning: 'received SIGINT, SIGTERM, or SIGHUP' }],
  [21, { kind: 'transient', meaning: 'some error returned by waitpid()' }],
  // Memory pressure in the pod may be gone on the next attempt.
  [22, { kind: 'transient', meaning: 'error allocating core memory buffers' }],
  // Some files failed; permission and space errors are recognised from stderr first.
  [23, { kind: 'transient', meaning: 'partial transfer due to error' }],
  // The live source changed under a pre-sync; the next pass picks it up.
  [24, { kind: 'transient', meaning: 'partial transfer due to vanished source files' }],
  // We never pass --max-delete, so hitting it means something else is wrong.
  [25, { kind: 'terminal', meaning: '--max-delete limit stopped deletions' }],
  [30, { kind: 'transient', meaning: 'timeout in data send/receive' }],
  [35, { kind: 'transient', meaning: 'timeout waiting for daemon connection' }],
]);

/**
 * errno texts rsync prints as "(strerror) (errno)" that no retry can fix. Checked
 * before the code, because rsync reports a full disk as 11 or 23 and a
 * permission problem as 23, both of which are otherwise transient.
 */
const TERMINAL_STDERR: readonly { pattern: RegExp; reason: string }[] = [
  { pattern: /No space left on device \(28\)/, reason: 'no space left on the target (ENOSPC)' },
  { pattern: /Disk quota exceeded \(122\)/, reason: 'disk quota exceeded on the target (EDQUOT)' },
  { pattern: /Permission denied \(13\)/, reason: 'permission denied (EACCES)' },
  { pattern: /Operation not permitted \(1\)/, reason: 'operation not permitted (EPERM)' },
  { pattern: /Read-only file system \(30\)/, reason: 'the target is read-only (EROFS)' },
];

export interface RsyncOutcome {
  exitCode: number;
  reason: string;
}

/** rsync's "partial transfer due to vanished source files". */
export const RSYNC_VANISHED = 24;

/**
 * `allowVanished` (--allow-vanished, a pre-sync of a live source): exit 24 is
 * a success. rsync returns 24 only when nothing worse happened (a general I/O
 * error makes it 23), so everything that did not vanish was copied.
 */
export function classifyRsyncExit(
  code: number | null,
  signal: string | null,
  stderrTail: string,
  allowVanished = false,
): RsyncOutcome {
  if (code === 0 && !signal) return { exitCode: RUNNER_EXIT.OK, reason: 'rsync succeeded' };
  if (allowVanished && code === RSYNC_VANISHED && !signal) {
    return {
      exitCode: RUNNER_EXIT.OK,
      reason: 'rsync succeeded; some source files vanished before they could be transferred (exit 24, allowed)',
    };
  }
  if (signal || code === null) {
    return { exitCode: RUNNER_EXIT.TRANSIENT, reason: `rsync was killed by ${signal ?? 'a signal'}` };
  }
  const known = RSYNC_EXIT_CODES.get(code);
  const meaning = known ? known.meaning : 'unknown rsync exit code';
  // A signal-caused stop (20) is never reclassified by the errors printed before it.
  if (code !== 20) {
    for (const { pattern, reason } of TERMINAL_STDERR) {
      if (pattern.test(stderrTail)) {
        return { exitCode: RUNNER_EXIT.TERMINAL, reason: `rsync exit ${code} (${meaning}): ${reason}` };
      }
    }
  }
  const kind: Kind = known ? known.kind : 'transient';
  return {
    exitCode: kind === 'terminal' ? RUNNER_EXIT.TERMINAL : RUNNER_EXIT.TRANSIENT,
    reason: `rsync exit ${code} (${meaning})`,
  };
}
