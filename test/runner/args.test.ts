import t from 'tap';
import { parseRunnerArgs, HELP } from '../../runner/args.js';
import { RUNNER_EXIT } from '../../runner/exit-codes.js';

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
    },
  });
  const all = parseRunnerArgs(
    ['--source=a', '--target', 'b', '--delete', '--verify', 'checksum', '--progress-interval=0.5', '--termination-log', 'tl', '--bwlimit', '100'],
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
  }
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
  ['a zero interval', [...base, '--progress-interval', '0'], '--progress-interval must be a number of seconds in (0, 3600] (got "0")'],
  ['a negative interval', [...base, '--progress-interval=-1'], '--progress-interval must be a number of seconds in (0, 3600] (got "-1")'],
  ['a word for an interval', [...base, '--progress-interval', 'soon'], '--progress-interval must be a number of seconds in (0, 3600] (got "soon")'],
  ['a huge interval', [...base, '--progress-interval', '4000'], '--progress-interval must be a number of seconds in (0, 3600] (got "4000")'],
  ['a fractional bwlimit', [...base, '--bwlimit', '1.5'], '--bwlimit must be a whole number of KiB/s (got "1.5")'],
  ['same source and target', ['--source', '/a/', '--target', '/a'], '--source and --target are the same directory (/a)'],
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
  for (const flag of ['--source', '--target', '--delete', '--verify', '--progress-interval', '--termination-log', '--bwlimit', '--help']) {
    t.match(HELP, flag, flag);
  }
  for (const code of Object.values(RUNNER_EXIT)) t.match(HELP, new RegExp(`^\\s+${code}\\s`, 'm'), `exit ${code}`);
  t.end();
});
