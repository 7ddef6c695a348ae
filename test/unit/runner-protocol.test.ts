// The runner <-> controller contract: exit codes as the controller classifies
// them, verify modes as the runner parses them, and the summary as the
// termination log holds it.
import t from 'tap';
import {
  RUNNER_EXIT,
  TERMINATION_LOG_LIMIT,
  classifyRunnerExit,
  fitSummary,
  isVerifyMode,
  lastRunnerLine,
  type ProgressAsRead,
  type Summary,
  type SummaryAsRead,
} from '../../src/runner-protocol.js';

void t.test('runner exit codes as the controller reads them', (t) => {
  const cases: [number | null, string | null, string][] = [
    [0, null, 'ok'],
    [2, null, 'terminal'],
    [75, null, 'transient'],
    [76, null, 'terminal'],
    [77, null, 'terminal'],
    [137, null, 'transient'],
    [1, null, 'transient'],
    [null, 'SIGKILL', 'transient'],
  ];
  for (const [code, signal, expected] of cases)
    t.equal(classifyRunnerExit(code, signal), expected, `${code ?? signal}`);
  t.equal(new Set(Object.values(RUNNER_EXIT)).size, Object.values(RUNNER_EXIT).length, 'codes are distinct');
  t.end();
});

void t.test('verify modes', (t) => {
  const cases: [string, boolean][] = [
    ['none', true],
    ['metadata', true],
    ['checksum', true],
    ['', false],
    ['Checksum', false],
    ['sha256', false],
  ];
  for (const [value, expected] of cases) t.equal(isVerifyMode(value), expected, JSON.stringify(value));
  t.end();
});

const FAILED: Summary = {
  type: 'summary',
  ok: false,
  bytes: 1,
  bytesTransferred: 1,
  files: 1,
  filesTransferred: 1,
  seconds: 1,
  verified: 'none',
  dropped: [],
  exitCode: 77,
  message: 'm'.repeat(5000),
  differences: Array.from({ length: 20 }, (_, i) => ({ path: `${'p'.repeat(250)}${i}`, what: 'mode 0644 != 0600' })),
  differencesTotal: 20,
};

void t.test('summary fits the termination log', (t) => {
  const text = fitSummary(FAILED);
  t.ok(Buffer.byteLength(text) < TERMINATION_LOG_LIMIT, `${Buffer.byteLength(text)} bytes`);
  const parsed = JSON.parse(text) as Summary;
  t.equal(parsed.exitCode, 77);
  t.ok((parsed.differences?.length ?? 0) >= 1, 'keeps the first differences');
  const small = { ...FAILED, message: 'ok', differences: undefined };
  t.same(JSON.parse(fitSummary(small)), JSON.parse(JSON.stringify(small)), 'a small summary is untouched');
  t.end();
});

void t.test('a fitted summary still carries what the controller reads', (t) => {
  const read = JSON.parse(fitSummary(FAILED)) as SummaryAsRead;
  t.match(read, {
    ok: false,
    bytes: 1,
    bytesTransferred: 1,
    files: 1,
    seconds: 1,
    verified: 'none',
    exitCode: 77,
    dropped: [],
  });
  t.match(read.message, /^m+…$/, 'the message cut, not dropped');
  t.end();
});

void t.test('the controller reads the last record of a kind from a log, whatever else the log holds', (t) => {
  const log = [
    'rsync: some warning on stderr',
    '{"type":"progress","bytesDone":1,"bytesTotal":10,"filesDone":1,"filesTotal":2}',
    '{"type":"summary","ok":false,"bytes":1,"bytesTransferred":1,"files":1,"seconds":1,"verified":"none","exitCode":75,"message":"first try"}',
    '{"type":"progress","bytesDone":10,"bytesTotal":10,"filesDone":2,"filesTotal":2}',
    '  {"type":"summary","ok":true,"bytes":10,"bytesTransferred":9,"files":2,"seconds":2,"verified":"metadata","exitCode":0,"message":"ok"}  ',
    '{"type":"progress","bytesDone":',
    '',
  ].join('\n');
  t.match(
    lastRunnerLine<SummaryAsRead>(log, 'summary'),
    { ok: true, bytesTransferred: 9, message: 'ok' },
    'the last summary, padded or not',
  );
  t.match(
    lastRunnerLine<ProgressAsRead>(log, 'progress'),
    { bytesDone: 10 },
    'a line cut short (the kubelet keeps a tail) is skipped',
  );
  t.equal(lastRunnerLine(log.replace(/"type":"summary"/g, '"type":"other"'), 'summary'), undefined, 'none: undefined');
  t.equal(lastRunnerLine('', 'progress'), undefined);
  t.end();
});
