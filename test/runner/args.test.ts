import t from 'tap';
import { parseRunnerArgs, HELP } from '../../runner/args.js';
import { formatRfc3339Ns, parseRfc3339Ns } from '../../runner/changed-since.js';
import { RUNNER_EXIT } from '../../src/runner-protocol.js';

const base = ['--source', '/src', '--target', '/dst'];

void t.test('valid command lines', (t) => {
  const r = parseRunnerArgs(base, '/');
  t.same(r, {
    kind: 'run',
    options: {
      source: '/src',
      target: '/dst',
      delete: false,
      verify: 'metadata',
      progressIntervalSeconds: 5,
      terminationLog: '/dev/termination-log',
      bwlimitKiBps: 0,
      allowVanished: false,
    },
  });
  const all = parseRunnerArgs(
    [
      '--source=a',
      '--target',
      'b',
      '--delete',
      '--verify',
      'checksum',
      '--progress-interval=0.5',
      '--termination-log',
      'tl',
      '--bwlimit',
      '100',
      '--changed-since',
      '2026-12-02T15:37:33.5+00:00',
      '--allow-vanished',
    ],
    '/work',
  );
  t.equal(all.kind, 'run');
  if (all.kind === 'run') {
    t.equal(all.options.source, '/work/a', 'relative paths resolve against cwd');
    t.equal(all.options.target, '/work/b');
    t.equal(all.options.delete, true);
    t.equal(all.options.verify, 'checksum');
    t.equal(all.options.progressIntervalSeconds, 0.5);
    t.equal(all.options.terminationLog, '/work/tl');
    t.equal(all.options.bwlimitKiBps, 100);
    t.equal(all.options.changedSinceNs, 1_796_225_853_500_000_000n, '--changed-since in ns');
    t.equal(all.options.allowVanished, true);
  }
  const since = parseRunnerArgs([...base, '--changed-since=2026-12-02T15:37:33.000Z']);
  t.equal(
    since.kind === 'run' && since.options.changedSinceNs,
    1_796_225_853_000_000_000n,
    "the controller's form (toISOString)",
  );
  t.same(parseRunnerArgs(['--help']), { kind: 'help' });
  t.same(parseRunnerArgs([...base, '-h']), { kind: 'help' }, 'help wins over the rest');
  t.end();
});

const bad: [string, string[], string][] = [
  ['nothing at all', [], '--source DIR is required'],
  ['no target', ['--source', '/s'], '--target DIR is required'],
  ['no source', ['--target', '/t'], '--source DIR is required'],
  ['a value missing at the end', ['--target', '/t', '--source'], '--source needs a value'],
  ['a flag where a value belongs', ['--source', '--target', '/t'], '--source needs a value'],
  ['an empty value', ['--source=', '--target', '/t'], '--source needs a non-empty value'],
  ['an unknown flag', [...base, '--inplace'], 'unknown flag --inplace'],
  ['a positional argument', [...base, 'extra'], 'unexpected argument "extra"'],
  ['a flag twice', [...base, '--source', '/x'], '--source given more than once'],
  ['a value on a switch', [...base, '--delete=yes'], '--delete takes no value'],
  ['a bad verify mode', [...base, '--verify', 'full'], '--verify must be one of none, metadata, checksum (got "full")'],
  [
    'a zero interval',
    [...base, '--progress-interval', '0'],
    '--progress-interval must be a number of seconds in (0, 3600] (got "0")',
  ],
  [
    'a negative interval',
    [...base, '--progress-interval=-1'],
    '--progress-interval must be a number of seconds in (0, 3600] (got "-1")',
  ],
  [
    'a word for an interval',
    [...base, '--progress-interval', 'soon'],
    '--progress-interval must be a number of seconds in (0, 3600] (got "soon")',
  ],
  [
    'a huge interval',
    [...base, '--progress-interval', '4000'],
    '--progress-interval must be a number of seconds in (0, 3600] (got "4000")',
  ],
  ['a fractional bwlimit', [...base, '--bwlimit', '1.5'], '--bwlimit must be a whole number of KiB/s (got "1.5")'],
  [
    'a date without a time',
    [...base, '--changed-since', '2026-12-02'],
    '--changed-since must be an RFC 3339 timestamp such as 2026-12-02T15:38:33.5Z (got "2026-12-02")',
  ],
  [
    'a time without a zone',
    [...base, '--changed-since=2026-12-02T15:38:33'],
    '--changed-since must be an RFC 3339 timestamp such as 2026-12-02T15:38:33.5Z (got "2026-12-02T15:38:33")',
  ],
  ['a value on --allow-vanished', [...base, '--allow-vanished=true'], '--allow-vanished takes no value'],
  [
    'same source and target',
    ['--source', '/a/', '--target', '/a'],
    '--source and --target are the same directory (/a)',
  ],
  ['target inside source', ['--source', '/a', '--target', '/a/b'], '--target /a/b is inside --source /a'],
  ['source inside target', ['--source', '/a/b', '--target', '/a'], '--source /a/b is inside --target /a'],
];

void t.test('bad command lines: one clear message each', (t) => {
  for (const [name, argv, message] of bad) {
    t.same(parseRunnerArgs(argv, '/'), { kind: 'error', message }, name);
  }
  t.end();
});

void t.test('--help documents every flag and exit code', (t) => {
  for (const flag of [
    '--source',
    '--target',
    '--delete',
    '--verify',
    '--progress-interval',
    '--termination-log',
    '--bwlimit',
    '--changed-since',
    '--allow-vanished',
    '--help',
  ]) {
    t.match(HELP, flag, flag);
  }
  for (const code of Object.values(RUNNER_EXIT)) t.match(HELP, new RegExp(`^\\s+${code}\\s`, 'm'), `exit ${code}`);
  t.end();
});

void t.test('RFC 3339 timestamps, to the nanosecond', (t) => {
  const cases: [string, bigint | undefined][] = [
    ['1970-01-01T00:00:00Z', 0n],
    ['2026-12-02T15:38:33.000Z', 1_796_225_913_000_000_000n],
    ['2026-12-02T15:38:33.123456789Z', 1_796_225_913_123_456_789n],
    ['2026-12-02t15:38:33.5z', 1_796_225_913_500_000_000n],
    ['2026-12-02 15:38:33Z', 1_796_225_913_000_000_000n],
    ['2026-12-02T16:38:33+01:00', 1_796_225_913_000_000_000n],
    ['2026-12-02T10:08:33.1-05:30', 1_796_225_913_100_000_000n],
    ['1969-12-31T23:59:59.5Z', -500_000_000n],
    ['2016-12-31T23:59:60Z', 1_483_228_800_000_000_000n],
    ['2024-02-29T00:00:00Z', 1_709_164_800_000_000_000n],
    ['2023-02-29T00:00:00Z', undefined],
    ['2026-13-01T00:00:00Z', undefined],
    ['2026-12-02T24:00:00Z', undefined],
    ['2026-12-02T15:38:33', undefined],
    ['2026-12-02T15:38:33.1234567890Z', undefined],
    ['2026-12-02T15:38:33+0100', undefined],
    ['1796139513', undefined],
    ['', undefined],
  ];
  for (const [text, ns] of cases) t.equal(parseRfc3339Ns(text), ns, JSON.stringify(text));
  for (const ns of [0n, 1_796_225_913_123_456_789n, -500_000_000n, -1n])
    t.equal(parseRfc3339Ns(formatRfc3339Ns(ns)), ns, `round trip ${ns}`);
  t.equal(formatRfc3339Ns(1_796_225_913_000_000_001n), '2026-12-02T15:38:33.000000001Z');
  t.end();
});
