// The run's result: printed last on stdout and written to the termination log,
// where the kubelet keeps at most 4096 bytes (terminationMessagePath limit) and
// cuts the rest. The JSON is made to fit instead, so it always parses.
import type { Difference } from './tree-diff.js';
import type { VerifyMode } from './args.js';

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

export const TERMINATION_LOG_LIMIT = 4096;

/** Shortens the differences list, then the message and paths, until the JSON fits. */
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
