import t from 'tap';
import { RUNNER_EXIT } from '../../src/runner-protocol.js';
import { RSYNC_EXIT_CODES, classifyRsyncExit } from '../../runner/rsync-exit.js';

const { OK, TRANSIENT, TERMINAL } = RUNNER_EXIT;

void t.test('rsync exit codes', (t) => {
  const cases: [string, number | null, string | null, string, number][] = [
    ['success', 0, null, '', OK],
    ['usage error is our bug', 1, null, '', TERMINAL],
    ['missing directory', 3, null, '', TERMINAL],
    ['unsupported action', 4, null, '', TERMINAL],
    ['file I/O error', 11, null, 'rsync: read errors mapping "x": Input/output error (5)', TRANSIENT],
    ['file I/O error from a full disk', 11, null, 'rsync: write failed on "x": No space left on device (28)', TERMINAL],
    ['quota', 11, null, 'Disk quota exceeded (122)', TERMINAL],
    ['protocol stream', 12, null, '', TRANSIENT],
    ['signal', 20, null, 'No space left on device (28)', TRANSIENT],
    ['partial transfer', 23, null, 'rsync: some error', TRANSIENT],
    ['partial transfer, permission denied', 23, null, 'rsync: mkstemp "x" failed: Permission denied (13)', TERMINAL],
    ['partial transfer, read-only target', 23, null, 'Read-only file system (30)', TERMINAL],
    ['vanished files', 24, null, '', TRANSIENT],
    ['max-delete', 25, null, '', TERMINAL],
    ['timeout', 30, null, '', TRANSIENT],
    ['daemon timeout', 35, null, '', TRANSIENT],
    ['unknown code', 99, null, '', TRANSIENT],
    ['killed', null, 'SIGKILL', '', TRANSIENT],
  ];
  for (const [name, code, signal, stderr, expected] of cases) {
    t.equal(classifyRsyncExit(code, signal, stderr).exitCode, expected, name);
  }
  t.match(classifyRsyncExit(23, null, 'No space left on device (28)').reason, /rsync exit 23 .*ENOSPC/);
  // --allow-vanished (a pre-sync of a live source): 24 alone is a success, nothing else changes.
  const allowing: [string, number | null, string | null, number][] = [
    ['vanished files, allowed', 24, null, OK],
    ['partial transfer, vanished files allowed', 23, null, TRANSIENT],
    ['success', 0, null, OK],
    ['killed', null, 'SIGTERM', TRANSIENT],
  ];
  for (const [name, code, signal, expected] of allowing)
    t.equal(classifyRsyncExit(code, signal, '', true).exitCode, expected, name);
  t.match(classifyRsyncExit(24, null, '', true).reason, /vanished .*exit 24, allowed/);
  for (const code of [1, 2, 3, 4, 5, 6, 10, 11, 12, 13, 14, 15, 16, 19, 20, 21, 22, 23, 24, 25, 30, 35]) {
    t.ok(RSYNC_EXIT_CODES.has(code), `rsync ${code} is in the table`);
  }
  t.end();
});
