// The contract between the runner (the copy pod) and the controller: the exit
// codes, the verify modes, the progress records the runner prints on stdout and
// the summary it prints last and writes to the termination log. The runner
// writes these shapes and the controller reads them, so they live here, once.
// Byte counts are formatted for people by formatBytes in quantity.ts.

/**
 * The runner's exit codes. They are chosen outside rsync's own range (0-35), so a
 * runner code can never be mistaken for an rsync code passed through. 75 is
 * sysexits' EX_TEMPFAIL.
 */
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

/** What the runner compares after the copy: VolumeMigration spec.verify, the runner's --verify. */
export type VerifyMode = 'none' | 'metadata' | 'checksum';
export const VERIFY_MODES: readonly VerifyMode[] = ['none', 'metadata', 'checksum'];

export function isVerifyMode(value: string): value is VerifyMode {
  return (VERIFY_MODES as readonly string[]).includes(value);
}

/** How far a copy has got: in the runner's progress records, and in the migration's status. */
export interface ProgressCounters {
  bytesDone: number;
  bytesTotal: number;
  filesDone: number;
  filesTotal: number;
  /** Over the last 30 s of the copy. */
  bytesPerSecond: number;
}

/** The runner's stdout line every --progress-interval seconds. */
export interface ProgressRecord extends ProgressCounters {
  type: 'progress';
  /** 0 when done; null while nothing moves. */
  etaSeconds: number | null;
  elapsedSeconds: number;
}

/** One path where the target differs from the source after the copy. */
export interface Difference {
  path: string;
  what: string;
}

/** The run's result: the runner's last stdout line and its termination log. */
export interface Summary {
  type: 'summary';
  ok: boolean;
  /** Regular-file bytes in the source, hard-linked data once. */
  bytes: number;
  /** Bytes rsync wrote this run (0 on an up-to-date target). */
  bytesTransferred: number;
  /** Entries below the source root, every type. */
  files: number;
  /** Regular files rsync wrote this run. */
  filesTransferred: number;
  seconds: number;
  /** The verification that passed; "none" when none was asked or it did not pass. */
  verified: VerifyMode;
  /**
   * What was not copied: "xattrs", "acls" (the target cannot hold them),
   * "trusted xattrs" (no CAP_SYS_ADMIN: DROPPED_TRUSTED_XATTRS of src/pod-security.ts).
   */
  dropped: string[];
  /**
   * With --allow-vanished only: source entries that vanished under the scan,
   * cp or rsync (an entry seen vanishing by two of them counts twice).
   */
  vanished?: number;
  exitCode: number;
  message: string;
  /** First differences found by verification, when it failed. */
  differences?: Difference[];
  differencesTotal?: number;
}

// The controller reads these records back with JSON.parse from a pod's log or
// termination message (lastRunnerLine below), unchecked: it counts only on the
// fields below, and takes `verified` as text.

/** The last JSON object of `type` in a runner's output. */
export function lastRunnerLine<T>(text: string, type: 'progress' | 'summary'): T | undefined {
  const lines = text.split('\n');
  for (let i = lines.length - 1; i >= 0; i--) {
    const line = lines[i]!.trim();
    if (!line.startsWith('{')) continue;
    try {
      const parsed = JSON.parse(line) as { type?: string };
      if (parsed.type === type) return parsed as T;
    } catch {
      /* not a JSON line */
    }
  }
  return undefined;
}

/** A progress record as the controller reads it (plan also makes one for a finished copy). */
export interface ProgressAsRead extends ProgressCounters {
  etaSeconds?: number | null;
}

/** A summary as the controller reads it. */
export type SummaryAsRead = Pick<Summary, 'ok' | 'bytes' | 'bytesTransferred' | 'files' | 'seconds'> &
  Partial<Pick<Summary, 'filesTransferred' | 'dropped' | 'exitCode' | 'message'>> & { verified: string };

/**
 * The kubelet keeps at most 4096 bytes of a termination message
 * (terminationMessagePath) and cuts the rest.
 */
export const TERMINATION_LOG_LIMIT = 4096;

/**
 * The summary as JSON that fits the termination log, so it always parses:
 * shortens the differences list, then the message and paths, until it fits.
 */
export function fitSummary(summary: Summary, limit = TERMINATION_LOG_LIMIT - 96): string {
  const copy: Summary = { ...summary, differences: summary.differences ? [...summary.differences] : undefined };
  let text = JSON.stringify(copy);
  while (Buffer.byteLength(text) > limit && copy.differences && copy.differences.length > 1) {
    copy.differences.pop();
    text = JSON.stringify(copy);
  }
  if (Buffer.byteLength(text) > limit && copy.differences) {
    copy.differences = copy.differences.map((d) => ({ path: d.path.slice(0, 300), what: d.what.slice(0, 300) }));
    text = JSON.stringify(copy);
  }
  if (Buffer.byteLength(text) > limit) {
    copy.message = `${copy.message.slice(0, 1000)}…`;
    text = JSON.stringify(copy);
  }
  if (Buffer.byteLength(text) > limit) {
    delete copy.differences;
    text = JSON.stringify(copy);
  }
  return text;
}
