// Command-line configuration of the one binary, parsed and checked once at
// start. Every flag also reads an environment variable (PVSHIFT_<FLAG>), so a
// chart can set either. A bad value fails at start with the flag to fix.
import { parseArgs } from 'node:util';
import { ConfigurationError } from './errors.js';

export type Mode = 'webhook' | 'controller' | 'runner';
export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface Config {
  modes: Mode[];
  kubeconfig?: string;
  namespace: string;
  logLevel: LogLevel;
  webhook: {
    port: number;
    host: string;
    certMode: 'managed' | 'files';
    certDir?: string;
    tlsSecret: string;
    serviceName: string;
    webhookConfiguration: string;
    extraNames: string[];
  };
  controller: {
    leaderElect: boolean;
    leaderElectionNamespace: string;
    leaseDurationSeconds: number;
    workers: number;
    copyImage: string;
    copyNodeSelector: Record<string, string>;
    copyTolerations: unknown[];
    copyResources?: unknown;
    copyPriorityClass?: string;
    maxConcurrentCopies: number;
    maxCopiesPerNode: number;
    copyAttempts: number;
    copyBandwidthLimitKiBps: number;
    copyStallSeconds: number;
    /**
     * How often every migration is looked at again though nothing changed (not
     * to be confused with a migration's spec.resyncInterval, which copies data).
     */
    requeueSeconds: number;
    /** Room the target needs beyond the data it will hold (0.1: 10%), for filesystem overhead and growth. */
    sizeHeadroom: number;
    /** Crash tests only: SIGKILL after this many steps that changed something; 0 = never. */
    faultCrashAfterSteps: number;
  };
  metricsPort: number;
}

export const USAGE = `pvshift: declarative PersistentVolumeClaim migration between StorageClasses

Usage: pvshift --mode=webhook,controller [flags]
       pvshift --mode=runner --source DIR --target DIR [runner flags]   (see --mode=runner --help)

Flags (each also read from PVSHIFT_<NAME>, e.g. PVSHIFT_COPY_IMAGE):
  --mode LIST                    webhook, controller (comma-separated), or runner
  --kubeconfig PATH              default: in-cluster, then KUBECONFIG, then ~/.kube/config
  --namespace NAME               pvshift's own namespace (default POD_NAMESPACE or pvshift-system)
  --metrics-port N               /metrics and /healthz over HTTP (default 8080; 0 = off)
  --log-level LEVEL              debug, info, warn or error (default info)
 webhook:
  --port N                       HTTPS port (default 8443)
  --host ADDR                    listen address (default 0.0.0.0)
  --cert-mode managed|files      managed: pvshift keeps a CA and certificate in a Secret (default);
                                 files: tls.crt/tls.key from --cert-dir (cert-manager), reloaded on change
  --cert-dir DIR                 for --cert-mode=files
  --tls-secret NAME              for --cert-mode=managed (default pvshift-webhook-tls)
  --service-name NAME            the webhook Service, for the certificate's names (default pvshift)
  --webhook-configuration NAME   the MutatingWebhookConfiguration to patch the CA into (default pvshift)
  --webhook-extra-names LIST     more certificate names or IPs (comma-separated)
 controller:
  --leader-elect BOOL            default true
  --leader-election-namespace NS default --namespace
  --lease-duration SECONDS       default 15
  --workers N                    default 4
  --copy-image IMAGE             the image of copy pods (default the image running pvshift, else pvshift:dev)
  --copy-node-selector JSON      e.g. {"disktype":"ssd"}
  --copy-tolerations JSON        a list of tolerations
  --copy-resources JSON          resources of the copy container
  --copy-priority-class NAME
  --max-concurrent-copies N      default 4
  --max-copies-per-node N        default 2
  --copy-attempts N              transient copy failures tolerated (default 3)
  --copy-stall-timeout SECONDS   a copy whose progress has not moved for this long is stopped and
                                 counts as a failed attempt (default 600)
  --copy-bandwidth-limit KIBPS   throttle every copy (rsync --bwlimit), to spare production I/O (default 0: none)
  --requeue-interval SECONDS     look at every migration again this often, changed or not (default 10);
                                 a migration's data is re-synced by its own spec.resyncInterval
 fault injection (tests only):
  --fault-crash-after-steps N    the controller SIGKILLs itself right after its N-th reconcile step that
                                 changed something, with no cleanup, as a node failure or an OOM kill
                                 would (default 0: never)
`;

const OPTIONS = {
  mode: { type: 'string' },
  kubeconfig: { type: 'string' },
  namespace: { type: 'string' },
  'metrics-port': { type: 'string' },
  'log-level': { type: 'string' },
  port: { type: 'string' },
  host: { type: 'string' },
  'cert-mode': { type: 'string' },
  'cert-dir': { type: 'string' },
  'tls-secret': { type: 'string' },
  'service-name': { type: 'string' },
  'webhook-configuration': { type: 'string' },
  'webhook-extra-names': { type: 'string' },
  'leader-elect': { type: 'string' },
  'leader-election-namespace': { type: 'string' },
  'lease-duration': { type: 'string' },
  workers: { type: 'string' },
  'copy-image': { type: 'string' },
  'copy-node-selector': { type: 'string' },
  'copy-tolerations': { type: 'string' },
  'copy-resources': { type: 'string' },
  'copy-priority-class': { type: 'string' },
  'max-concurrent-copies': { type: 'string' },
  'max-copies-per-node': { type: 'string' },
  'copy-attempts': { type: 'string' },
  'copy-stall-timeout': { type: 'string' },
  'copy-bandwidth-limit': { type: 'string' },
  'requeue-interval': { type: 'string' },
  'fault-crash-after-steps': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

function envName(flag: string): string {
  return `PVSHIFT_${flag.toUpperCase().replace(/-/g, '_')}`;
}

export function parseConfig(argv: string[], env: NodeJS.ProcessEnv = process.env): Config | 'help' {
  let values: Record<string, string | boolean | undefined>;
  // The flag's name until 0.1: it said "resync" for what is a requeue, beside spec.resyncInterval, which copies.
  if (argv.some((a) => a === '--resync-interval' || a.startsWith('--resync-interval=')))
    throw new ConfigurationError(
      "--resync-interval is now --requeue-interval (how often every migration is looked at again); a migration's re-sync of data is its spec.resyncInterval",
    );
  try {
    values = parseArgs({ args: argv, options: OPTIONS, strict: true, allowPositionals: false }).values;
  } catch (e: unknown) {
    throw new ConfigurationError(`${e instanceof Error ? e.message : String(e)} (see --help)`);
  }
  if (values.help) return 'help';
  const get = (flag: keyof typeof OPTIONS): string | undefined => {
    const value = values[flag];
    return typeof value === 'string' ? value : env[envName(flag)];
  };
  const integer = (flag: keyof typeof OPTIONS, fallback: number, min = 0): number => {
    const text = get(flag);
    if (text === undefined) return fallback;
    // Digits only: Number('') is 0 and Number('0x10') is 16, neither meant as a number here.
    const n = /^\s*\d+\s*$/.test(text) ? Number(text) : NaN;
    if (!Number.isInteger(n) || n < min)
      throw new ConfigurationError(`--${flag} must be a whole number of at least ${min}, not ${JSON.stringify(text)}`);
    return n;
  };
  const json = <T>(flag: keyof typeof OPTIONS, fallback: T, check: (v: unknown) => boolean, shape: string): T => {
    const text = get(flag);
    if (!text) return fallback;
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new ConfigurationError(`--${flag} must be JSON (${shape}), not ${JSON.stringify(text)}`);
    }
    if (!check(parsed)) throw new ConfigurationError(`--${flag} must be ${shape}`);
    return parsed as T;
  };
  const bool = (flag: keyof typeof OPTIONS, fallback: boolean): boolean => {
    const text = get(flag);
    if (text === undefined) return fallback;
    if (text === 'true' || text === 'false') return text === 'true';
    throw new ConfigurationError(`--${flag} must be true or false, not ${JSON.stringify(text)}`);
  };

  const modes = (get('mode') ?? '')
    .split(',')
    .map((m) => m.trim())
    .filter(Boolean);
  if (!modes.length)
    throw new ConfigurationError('--mode is required: webhook, controller, webhook,controller or runner (see --help)');
  for (const mode of modes) {
    if (!['webhook', 'controller', 'runner'].includes(mode))
      throw new ConfigurationError(`--mode ${JSON.stringify(mode)} is not one of webhook, controller, runner`);
  }
  if (modes.includes('runner') && modes.length > 1)
    throw new ConfigurationError('--mode=runner runs alone (it is the copy pod)');
  const certMode = get('cert-mode') ?? 'managed';
  if (certMode !== 'managed' && certMode !== 'files')
    throw new ConfigurationError(`--cert-mode must be managed or files, not ${JSON.stringify(certMode)}`);
  if (certMode === 'files' && !get('cert-dir')) throw new ConfigurationError('--cert-mode=files needs --cert-dir');
  const namespace = get('namespace') ?? env.POD_NAMESPACE ?? 'pvshift-system';
  const logLevel = get('log-level') ?? 'info';
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel))
    throw new ConfigurationError(
      `--log-level must be one of ${LOG_LEVELS.join(', ')}, not ${JSON.stringify(logLevel)}`,
    );
  const isObject = (v: unknown) => typeof v === 'object' && v !== null && !Array.isArray(v);
  const kubeconfig = get('kubeconfig');
  const certDir = get('cert-dir');
  const copyResources = json<unknown>(
    'copy-resources',
    undefined,
    isObject,
    'an object such as {"limits":{"memory":"512Mi"}}',
  );
  const copyPriorityClass = get('copy-priority-class');
  return {
    modes: modes as Mode[],
    ...(kubeconfig ? { kubeconfig } : {}),
    namespace,
    logLevel: logLevel as LogLevel,
    webhook: {
      port: integer('port', 8443, 0),
      host: get('host') ?? '0.0.0.0',
      certMode,
      ...(certDir ? { certDir } : {}),
      tlsSecret: get('tls-secret') ?? 'pvshift-webhook-tls',
      serviceName: get('service-name') ?? 'pvshift',
      webhookConfiguration: get('webhook-configuration') ?? 'pvshift',
      extraNames: (get('webhook-extra-names') ?? '')
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean),
    },
    controller: {
      leaderElect: bool('leader-elect', true),
      leaderElectionNamespace: get('leader-election-namespace') ?? namespace,
      leaseDurationSeconds: integer('lease-duration', 15, 2),
      workers: integer('workers', 4, 1),
      copyImage: get('copy-image') ?? 'pvshift:dev',
      copyNodeSelector: json<Record<string, string>>(
        'copy-node-selector',
        {},
        (v) => isObject(v) && Object.values(v as object).every((x) => typeof x === 'string'),
        'an object of strings',
      ),
      copyTolerations: json<unknown[]>('copy-tolerations', [], Array.isArray, 'a list'),
      ...(copyResources !== undefined ? { copyResources } : {}),
      ...(copyPriorityClass ? { copyPriorityClass } : {}),
      maxConcurrentCopies: integer('max-concurrent-copies', 4, 1),
      maxCopiesPerNode: integer('max-copies-per-node', 2, 1),
      copyAttempts: integer('copy-attempts', 3, 1),
      copyBandwidthLimitKiBps: integer('copy-bandwidth-limit', 0, 0),
      copyStallSeconds: integer('copy-stall-timeout', 600, 5),
      requeueSeconds: integer('requeue-interval', 10, 1),
      sizeHeadroom: 0.1,
      faultCrashAfterSteps: integer('fault-crash-after-steps', 0, 0),
    },
    metricsPort: integer('metrics-port', 8080, 0),
  };
}
