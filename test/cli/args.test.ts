// Argument parsing: kubectl's flag forms, and a one-line usage error for every
// malformed command line.
import t from 'tap';
import { HELP, parseArgs, UsageError } from '../../cli/args.js';
import { matchFixture } from './fixture.js';

t.test('flag forms', (t) => {
  const p = parseArgs([
    'plan',
    '-n',
    'shop',
    '--to=fast',
    '--size',
    '20Gi',
    '-lapp=web',
    '--from-class',
    'standard',
    '--kubeconfig',
    '/k',
    '--context=c',
    '-o',
    'json',
  ]);
  t.equal(p.kind, 'run');
  if (p.kind !== 'run') return;
  t.equal(p.command, 'plan');
  t.same(p.args, []);
  t.match(p.options, {
    namespace: 'shop',
    to: 'fast',
    size: '20Gi',
    selector: 'app=web',
    fromClass: 'standard',
    kubeconfig: '/k',
    context: 'c',
    output: 'json',
    allNamespaces: false,
  });

  const m = parseArgs([
    'migrate',
    'a',
    'b',
    '--to',
    'fast',
    '--no-presync',
    '--verify',
    '--cutover',
    'evict',
    '-y',
    '--dry-run',
  ]);
  t.match(m, {
    kind: 'run',
    command: 'migrate',
    args: ['a', 'b'],
    options: { noPresync: true, verify: 'checksum', cutover: 'evict', yes: true, dryRun: true },
  });
  t.match(parseArgs(['migrate', '--to', 'fast', '--verify=metadata']), { options: { verify: 'metadata' } });
  t.match(parseArgs(['status', '-A', '-w']), {
    kind: 'run',
    command: 'status',
    options: { allNamespaces: true, watch: true, output: 'table' },
  });
  t.match(parseArgs(['plan', '--to', 'fast', '--', '-weird']), { args: ['-weird'] }, 'after --, arguments only');
  t.match(parseArgs(['cleanup', '--yes', '-A']), { command: 'cleanup', options: { yes: true, allNamespaces: true } });
  t.end();
});

t.test('a StatefulSet as the subject', (t) => {
  for (const ref of ['sts/db', 'statefulset/db', 'statefulsets/db', 'StatefulSet/db', 'statefulset.apps/db']) {
    t.match(
      parseArgs(['plan', ref, '--to', 'fast', '-n', 'shop']),
      { kind: 'run', command: 'plan', args: [], options: { workload: 'db', namespace: 'shop', to: 'fast' } },
      ref,
    );
  }
  t.match(parseArgs(['migrate', 'sts/db', '--to', 'fast', '--size', '50Gi', '--templates', 'data,logs', '-y']), {
    command: 'migrate',
    args: [],
    options: { workload: 'db', size: '50Gi', templates: ['data', 'logs'], yes: true },
  });
  t.match(parseArgs(['migrate', 'sts/db', '--to', 'fast', '--dry-run', '-o', 'json']), {
    options: { workload: 'db', dryRun: true, output: 'json' },
  });
  t.match(parseArgs(['status', 'sts/db', '-w', '--templates=data']), {
    command: 'status',
    args: [],
    options: { workload: 'db', watch: true, templates: ['data'] },
  });
  t.match(parseArgs(['plan', 'sts/db', '--to', 'fast', '--from-class', 'standard']), {
    options: { workload: 'db', fromClass: 'standard' },
  });
  const plain = parseArgs(['status', 'data-db-0']);
  t.match(plain, { args: ['data-db-0'] }, 'a plain name stays a name');
  t.equal(plain.kind === 'run' ? plain.options.workload : 'x', undefined);
  t.match(parseArgs(['abort', 'sts/db']), { args: ['sts/db'] }, 'abort takes migration names only');
  t.match(parseArgs(['sync', 'sts/db', '-w']), { command: 'sync', args: [], options: { workload: 'db', watch: true } });
  t.match(parseArgs(['sync', 'data-db-0']), { command: 'sync', args: ['data-db-0'] });
  t.throws(() => parseArgs(['sync']), /^sync takes exactly one migration name, or sts\/NAME/);
  t.throws(() => parseArgs(['sync', 'a', 'b']), /^sync takes exactly one migration name/);
  t.throws(() => parseArgs(['sync', 'a', '-A']), /sync works on one namespace; use -n instead of -A/);
  t.throws(() => parseArgs(['sync', 'a', '--to', 'fast']), /flag --to does not apply to "sync"/);
  t.end();
});

t.test('help', (t) => {
  t.same(parseArgs([]), { kind: 'help' });
  t.same(parseArgs(['--help']), { kind: 'help' });
  t.same(parseArgs(['plan', '--help']), { kind: 'help', command: 'plan' });
  t.same(parseArgs(['help', 'cleanup']), { kind: 'help', command: 'cleanup' });
  t.same(parseArgs(['status', '-h']), { kind: 'help', command: 'status' }, 'help wins over missing arguments');
  t.match(HELP.cleanup, /reclaim policy is set to Delete/);
  t.match(HELP.cleanup, /Deleting the PersistentVolume object\ninstead would leak the storage/);
  t.match(HELP.cleanup, /whatever became of its VolumeMigration \(RECORD shows its phase, or "record deleted"\)/);
  t.match(HELP.cleanup, /Never one bound to a claim again/);
  t.match(HELP.status, /Exit code 1 when any shown migration is Held, Failed or RolledBack\./);
  t.match(HELP.status, /Held has not: it waits for you/);
  t.match(HELP.abort, /In Binding it rolls back too, unless the claim is already bound to the new volume/);
  t.match(
    HELP.abort,
    /Held migration .* is not released by abort: delete the VolumeMigration to release the\s+held pods/s,
  );
  t.match(HELP.rollback, /A Held migration can neither roll back nor finish/);
  t.match(
    HELP.migrate,
    /A finished VolumeMigration of that\nname \(Succeeded, Failed, Aborted, RolledBack\) is replaced/,
  );
  t.match(HELP.plan, /"restricted" blocks/);
  t.match(HELP.root, /plan, migrate, status and sync take sts\/NAME/);
  t.match(HELP.plan, /kubectl pvshift plan sts\/NAME --to CLASS/);
  t.match(HELP.plan, /matchLabels and matchExpressions In, NotIn, Exists, DoesNotExist/);
  t.match(HELP.migrate, /kubectl pvshift migrate sts\/NAME --to CLASS/);
  t.match(HELP.migrate, /"kubectl rollout restart statefulset\/NAME" cuts them over one replica at a time/);
  t.match(HELP.status, /kubectl pvshift status sts\/NAME/);
  t.match(HELP.status, /2\/3 replicas on fast/);
  matchFixture(t, 'help-root.txt', HELP.root + '\n');
  t.end();
});

t.test('usage errors are one line that says what to do', (t) => {
  const cases: [string[], RegExp][] = [
    [
      ['shift'],
      /^unknown command "shift" for "kubectl pvshift"; commands: plan, migrate, status, sync, abort, rollback, cleanup$/,
    ],
    [['help', 'shift'], /^unknown command "shift"/],
    [['-n', 'x'], /^no command given/],
    [['plan'], /^plan needs --to CLASS/],
    [['migrate', '--to'], /^flag --to needs a value$/],
    [['plan', '--to', 'fast', '--bogus'], /^unknown flag --bogus for "plan"; see kubectl pvshift plan --help$/],
    [['plan', '--to', 'fast', '-x'], /^unknown shorthand flag -x for "plan"/],
    [['status', '-o', 'xml'], /^unknown output format "xml"; use -o json or -o yaml/],
    [['status', '--to', 'fast'], /^flag --to does not apply to "status"/],
    [['plan', '--to', 'fast', '--size', 'lots'], /^--size "lots" is not a quantity such as 20Gi/],
    [['plan', '--to', 'fast', '--size', '0'], /^--size "0" is not a quantity/],
    [['migrate', '--to', 'fast', '--cutover', 'now'], /^--cutover must be recreate or evict, not "now"$/],
    [['migrate', '--to', 'fast', '--verify=md5'], /^--verify must be none, metadata or checksum/],
    [['migrate', '--to', 'fast', '--yes=maybe'], /^flag --yes takes no value$/],
    [['plan', '--to', 'fast', '-A', 'data'], /^claim names need one namespace; use -n instead of -A$/],
    [['plan', '--to', 'fast', '-l', 'a=b', 'data'], /^give claim names or -l\/--selector, not both$/],
    [['plan', '--to', 'fast', '-A', '-n', 'x'], /exclude each other/],
    [['abort'], /^abort takes exactly one migration name/],
    [['rollback', 'a', 'b'], /^rollback takes exactly one migration name/],
    [['abort', 'a', '-A'], /^abort works on one namespace/],
    [['status', 'a', 'b'], /^status takes at most one migration name$/],
    [['cleanup', 'pv-1'], /^cleanup takes no arguments/],
    [['plan', 'deploy/web', '--to', 'fast'], /^"deploy\/web": only a StatefulSet \(sts\/NAME\) can be given/],
    [['plan', 'sts/', '--to', 'fast'], /^"sts\/": "" is not a StatefulSet name$/],
    [['plan', 'sts/Db', '--to', 'fast'], /is not a StatefulSet name/],
    [['plan', 'sts/db', 'data-db-0', '--to', 'fast'], /^give one StatefulSet \(sts\/NAME\) and nothing else/],
    [['plan', 'sts/db', 'sts/web', '--to', 'fast'], /^give one StatefulSet/],
    [['plan', 'sts/db', '--to', 'fast', '-A'], /^a StatefulSet needs one namespace; use -n instead of -A$/],
    [['status', 'sts/db', '-A'], /^a StatefulSet needs one namespace/],
    [['plan', 'sts/db', '--to', 'fast', '-l', 'a=b'], /^give sts\/NAME or -l\/--selector, not both$/],
    [['plan', 'sts/db'], /^plan needs --to CLASS/],
    [
      ['migrate', 'sts/db', '--to', 'fast', '--verify', '--cutover', 'evict'],
      /^--verify, --cutover cannot be said on a StatefulSet \(its policy is --to, --size and --templates\)/,
    ],
    [['migrate', 'sts/db', '--to', 'fast', '--no-presync'], /^--no-presync cannot be said on a StatefulSet/],
    [['plan', '--to', 'fast', '--templates', 'data'], /^--templates needs a StatefulSet: sts\/NAME$/],
    [['plan', 'sts/db', '--to', 'fast', '--templates', 'data,'], /^--templates "data," has an empty name$/],
    [['abort', 'sts/db', '--templates', 'data'], /^flag --templates does not apply to "abort"/],
  ];
  for (const [argv, message] of cases) {
    t.throws(() => parseArgs(argv), UsageError, argv.join(' '));
    try {
      parseArgs(argv);
    } catch (e: unknown) {
      t.match((e as Error).message, message, argv.join(' '));
      t.notOk((e as Error).message.includes('\n'), 'one line');
    }
  }
  t.end();
});
