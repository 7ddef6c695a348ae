// parseConfig: every flag, its PVSHIFT_* variable, the defaults, and the exact
// message of every bad value (a bad value fails at start, naming the flag).
import t from 'tap';
import { parseConfig, type Config } from '../../src/config.js';
import { ConfigurationError } from '../../src/errors.js';

const parse = (argv: string[], env: NodeJS.ProcessEnv = {}): Config => {
  const config = parseConfig(argv, env);
  if (config === 'help') throw new Error('unexpected help');
  return config;
};

t.test('defaults', (t) => {
  t.same(parse(['--mode=webhook,controller']), {
    modes: ['webhook', 'controller'],
    namespace: 'pvshift-system',
    logLevel: 'info',
    webhook: {
      port: 8443,
      host: '0.0.0.0',
      certMode: 'managed',
      tlsSecret: 'pvshift-webhook-tls',
      serviceName: 'pvshift',
      webhookConfiguration: 'pvshift',
      extraNames: [],
    },
    controller: {
      leaderElect: true,
      leaderElectionNamespace: 'pvshift-system',
      leaseDurationSeconds: 15,
      workers: 4,
      copyImage: 'pvshift:dev',
      copyNodeSelector: {},
      copyTolerations: [],
      maxConcurrentCopies: 4,
      maxCopiesPerNode: 2,
      copyAttempts: 3,
      copyBandwidthLimitKiBps: 0,
      copyStallSeconds: 600,
      requeueSeconds: 10,
      sizeHeadroom: 0.1,
      faultCrashAfterSteps: 0,
    },
    metricsPort: 8080,
  });
  t.equal(
    parse(['--mode=controller'], { POD_NAMESPACE: 'ops' }).namespace,
    'ops',
    'POD_NAMESPACE is the default namespace',
  );
  t.equal(
    parse(['--mode=controller'], { POD_NAMESPACE: 'ops' }).controller.leaderElectionNamespace,
    'ops',
    'and the Lease namespace',
  );
  t.equal(parseConfig(['--help']), 'help');
  t.equal(parseConfig(['-h']), 'help');
  t.end();
});

t.test('every flag, and its PVSHIFT_ variable', (t) => {
  const flags: [string, string, (c: Config) => unknown, unknown][] = [
    ['mode', 'webhook, controller', (c) => c.modes, ['webhook', 'controller']],
    ['kubeconfig', '/etc/kube/config', (c) => c.kubeconfig, '/etc/kube/config'],
    ['namespace', 'storage', (c) => c.namespace, 'storage'],
    ['metrics-port', '9090', (c) => c.metricsPort, 9090],
    ['log-level', 'debug', (c) => c.logLevel, 'debug'],
    ['port', '9443', (c) => c.webhook.port, 9443],
    ['host', '127.0.0.1', (c) => c.webhook.host, '127.0.0.1'],
    ['cert-mode', 'managed', (c) => c.webhook.certMode, 'managed'],
    ['cert-dir', '/certs', (c) => c.webhook.certDir, '/certs'],
    ['tls-secret', 'my-tls', (c) => c.webhook.tlsSecret, 'my-tls'],
    ['service-name', 'svc', (c) => c.webhook.serviceName, 'svc'],
    ['webhook-configuration', 'mwc', (c) => c.webhook.webhookConfiguration, 'mwc'],
    ['webhook-extra-names', 'a.example, 10.0.0.1,', (c) => c.webhook.extraNames, ['a.example', '10.0.0.1']],
    ['leader-elect', 'false', (c) => c.controller.leaderElect, false],
    ['leader-election-namespace', 'kube-system', (c) => c.controller.leaderElectionNamespace, 'kube-system'],
    ['lease-duration', '4', (c) => c.controller.leaseDurationSeconds, 4],
    ['workers', '8', (c) => c.controller.workers, 8],
    ['copy-image', 'registry.example/pvshift:1', (c) => c.controller.copyImage, 'registry.example/pvshift:1'],
    ['copy-node-selector', '{"disktype":"ssd"}', (c) => c.controller.copyNodeSelector, { disktype: 'ssd' }],
    [
      'copy-tolerations',
      '[{"key":"k","operator":"Exists"}]',
      (c) => c.controller.copyTolerations,
      [{ key: 'k', operator: 'Exists' }],
    ],
    [
      'copy-resources',
      '{"limits":{"memory":"512Mi"}}',
      (c) => c.controller.copyResources,
      { limits: { memory: '512Mi' } },
    ],
    ['copy-priority-class', 'high', (c) => c.controller.copyPriorityClass, 'high'],
    ['max-concurrent-copies', '10', (c) => c.controller.maxConcurrentCopies, 10],
    ['max-copies-per-node', '3', (c) => c.controller.maxCopiesPerNode, 3],
    ['copy-attempts', '5', (c) => c.controller.copyAttempts, 5],
    ['copy-bandwidth-limit', '2048', (c) => c.controller.copyBandwidthLimitKiBps, 2048],
    ['copy-stall-timeout', '120', (c) => c.controller.copyStallSeconds, 120],
    ['requeue-interval', '30', (c) => c.controller.requeueSeconds, 30],
    ['fault-crash-after-steps', '1', (c) => c.controller.faultCrashAfterSteps, 1],
  ];
  for (const [flag, value, read, expected] of flags) {
    const base = flag === 'mode' ? [] : ['--mode=controller'];
    t.same(read(parse([...base, `--${flag}=${value}`])), expected, `--${flag}`);
    const variable = `PVSHIFT_${flag.toUpperCase().replace(/-/g, '_')}`;
    t.same(read(parse(base, { [variable]: value })), expected, `${variable}`);
  }
  t.equal(
    parse(['--mode=controller', '--port=1'], { PVSHIFT_PORT: '2' }).webhook.port,
    1,
    'the flag wins over the variable',
  );
  t.equal(
    parse(['--mode=controller', '--cert-mode=files', '--cert-dir=/c']).webhook.certMode,
    'files',
    '--cert-mode=files with --cert-dir',
  );
  t.equal(
    parse(['--mode=controller', '--namespace=a']).controller.leaderElectionNamespace,
    'a',
    'the Lease namespace follows --namespace',
  );
  t.same(parse(['--mode=runner']).modes, ['runner'], 'runner alone');
  t.equal(parse(['--mode=controller', '--port=0']).webhook.port, 0, 'port 0 is allowed');
  t.end();
});

t.test('every bad value fails with a message that names the flag', (t) => {
  const cases: [string, string[], NodeJS.ProcessEnv, string | RegExp][] = [
    ['no mode', [], {}, '--mode is required: webhook, controller, webhook,controller or runner (see --help)'],
    [
      'an empty mode list',
      ['--mode=,'],
      {},
      '--mode is required: webhook, controller, webhook,controller or runner (see --help)',
    ],
    ['an unknown mode', ['--mode=webhook,proxy'], {}, '--mode "proxy" is not one of webhook, controller, runner'],
    ['runner with another mode', ['--mode=runner,controller'], {}, '--mode=runner runs alone (it is the copy pod)'],
    ['an unknown flag', ['--mode=controller', '--bogus=1'], {}, /^Unknown option '--bogus'.* \(see --help\)$/],
    ['a positional argument', ['--mode=controller', 'extra'], {}, /^Unexpected argument 'extra'.* \(see --help\)$/],
    ['a bad cert mode', ['--mode=webhook', '--cert-mode=acme'], {}, '--cert-mode must be managed or files, not "acme"'],
    ['files without a dir', ['--mode=webhook', '--cert-mode=files'], {}, '--cert-mode=files needs --cert-dir'],
    [
      'a port that is no number',
      ['--mode=webhook', '--port=https'],
      {},
      '--port must be a whole number of at least 0, not "https"',
    ],
    ['an empty port', ['--mode=webhook', '--port='], {}, '--port must be a whole number of at least 0, not ""'],
    [
      'an empty port variable',
      ['--mode=webhook'],
      { PVSHIFT_PORT: '' },
      '--port must be a whole number of at least 0, not ""',
    ],
    ['a hex port', ['--mode=webhook', '--port=0x10'], {}, '--port must be a whole number of at least 0, not "0x10"'],
    [
      'a negative metrics port',
      ['--mode=webhook', '--metrics-port=-1'],
      {},
      '--metrics-port must be a whole number of at least 0, not "-1"',
    ],
    [
      'a fractional worker count',
      ['--mode=controller', '--workers=1.5'],
      {},
      '--workers must be a whole number of at least 1, not "1.5"',
    ],
    [
      'zero workers',
      ['--mode=controller', '--workers=0'],
      {},
      '--workers must be a whole number of at least 1, not "0"',
    ],
    [
      'a lease under 2 s',
      ['--mode=controller', '--lease-duration=1'],
      {},
      '--lease-duration must be a whole number of at least 2, not "1"',
    ],
    [
      'zero concurrent copies',
      ['--mode=controller', '--max-concurrent-copies=0'],
      {},
      '--max-concurrent-copies must be a whole number of at least 1, not "0"',
    ],
    [
      'zero copies per node',
      ['--mode=controller'],
      { PVSHIFT_MAX_COPIES_PER_NODE: '0' },
      '--max-copies-per-node must be a whole number of at least 1, not "0"',
    ],
    [
      'zero copy attempts',
      ['--mode=controller', '--copy-attempts=0'],
      {},
      '--copy-attempts must be a whole number of at least 1, not "0"',
    ],
    [
      'a stall timeout below 5 s',
      ['--mode=controller', '--copy-stall-timeout=1'],
      {},
      '--copy-stall-timeout must be a whole number of at least 5, not "1"',
    ],
    [
      'a crash after a negative number of steps',
      ['--mode=controller'],
      { PVSHIFT_FAULT_CRASH_AFTER_STEPS: '-1' },
      '--fault-crash-after-steps must be a whole number of at least 0, not "-1"',
    ],
    [
      'a bandwidth limit in words',
      ['--mode=controller', '--copy-bandwidth-limit=fast'],
      {},
      '--copy-bandwidth-limit must be a whole number of at least 0, not "fast"',
    ],
    [
      'a log level pino has but pvshift does not offer',
      ['--mode=controller', '--log-level=trace'],
      {},
      '--log-level must be one of debug, info, warn, error, not "trace"',
    ],
    [
      'a requeue of zero',
      ['--mode=controller', '--requeue-interval=0'],
      {},
      '--requeue-interval must be a whole number of at least 1, not "0"',
    ],
    [
      'the flag of 0.1, renamed: said what it is now, and what the re-sync of data is',
      ['--mode=controller', '--resync-interval', '30'],
      {},
      "--resync-interval is now --requeue-interval (how often every migration is looked at again); a migration's re-sync of data is its spec.resyncInterval",
    ],
    [
      'leader-elect yes',
      ['--mode=controller', '--leader-elect=yes'],
      {},
      '--leader-elect must be true or false, not "yes"',
    ],
    [
      'a node selector that is no JSON',
      ['--mode=controller', '--copy-node-selector=disktype=ssd'],
      {},
      '--copy-node-selector must be JSON (an object of strings), not "disktype=ssd"',
    ],
    [
      'a node selector with a number',
      ['--mode=controller', '--copy-node-selector={"a":1}'],
      {},
      '--copy-node-selector must be an object of strings',
    ],
    [
      'a node selector that is a list',
      ['--mode=controller', '--copy-node-selector=["a"]'],
      {},
      '--copy-node-selector must be an object of strings',
    ],
    [
      'tolerations that are an object',
      ['--mode=controller', '--copy-tolerations={"key":"k"}'],
      {},
      '--copy-tolerations must be a list',
    ],
    [
      'tolerations that are no JSON',
      ['--mode=controller'],
      { PVSHIFT_COPY_TOLERATIONS: '[' },
      '--copy-tolerations must be JSON (a list), not "["',
    ],
    [
      'resources that are a list',
      ['--mode=controller', '--copy-resources=[]'],
      {},
      '--copy-resources must be an object such as {"limits":{"memory":"512Mi"}}',
    ],
  ];
  for (const [name, argv, env, message] of cases) {
    let error: unknown;
    try {
      parseConfig(argv, env);
    } catch (e: unknown) {
      error = e;
    }
    t.ok(error instanceof ConfigurationError, `${name}: a ConfigurationError`);
    const text = error instanceof Error ? error.message : String(error);
    if (typeof message === 'string') t.equal(text, message, `${name}: exact message`);
    else t.match(text, message, `${name}: message`);
  }
  t.end();
});
