// The runner's exit codes: the contract between the copy pod and the controller.
// The controller imports this module, so the numbers live in exactly one place.
//
// Codes are chosen outside rsync's own range (0-35) so a runner code can never be
// mistaken for an rsync code passed through, and 75 is sysexits' EX_TEMPFAIL.

export const RUNNER_EXIT = {
  /** Copied (and verified, if asked). */
  OK: 0,
  /** Bad or missing arguments: the pod spec is wrong, retrying will not help. */
  USAGE: 2,
  /** Worth a retry: partial transfer, vanished files, I/O or protocol error, a signal. */
  TRANSIENT: 75,
  /** Will not get better by retrying: no space, permission denied, source missing, the target's disk lost writes. */
  TERMINAL: 76,
  /** The copy finished but the target differs from the source (terminal too). */
  VERIFY_FAILED: 77,
} as const;

export type RunnerExitCode = (typeof RUNNER_EXIT)[keyof typeof RUNNER_EXIT];

export type ExitClass = 'ok' | 'transient' | 'terminal';

/**
 * How the controller should treat a finished copy container. `signal` or exit
 * codes 128+N (how a kubelet reports a container killed by signal N, e.g. 137
 * for an OOM kill or a SIGKILL) mean the runner never got to say: retry.
 * Exit code 1 is Node's own code for an uncaught exception: a bug, but possibly
 * an environmental one, so it is retried (the controller bounds retries).
 */
export function classifyRunnerExit(code: number | null, signal?: string | null): ExitClass {
  if (signal) return 'transient';
  if (code === RUNNER_EXIT.OK) return 'ok';
  if (code === RUNNER_EXIT.USAGE || code === RUNNER_EXIT.TERMINAL || code === RUNNER_EXIT.VERIFY_FAILED) {
    return 'terminal';
  }
  return 'transient';
}
