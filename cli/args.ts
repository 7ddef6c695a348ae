// Argument parsing for kubectl-pvshift: pure (argv in, a command or a usage
// error out), so every malformed command line is a unit test. Flags follow
// kubectl: `--flag value`, `--flag=value`, `-n value`, `-nvalue`, `-A`.
import { parseQuantity } from '../src/quantity.js';

export const COMMANDS = ['plan', 'migrate', 'status', 'sync', 'abort', 'rollback', 'cleanup'] as const;
export type CommandName = (typeof COMMANDS)[number];
export type OutputFormat = 'table' | 'json' | 'yaml';
export type VerifyFlag = 'none' | 'metadata' | 'checksum';
export type CutoverFlag = 'recreate' | 'evict';

export interface Options {
  kubeconfig?: string;
  context?: string;
  namespace?: string;
  allNamespaces: boolean;
  selector?: string;
  fromClass?: string;
  /**
   * The StatefulSet a `sts/NAME` subject names (plan, migrate, status): the
   * command then works on its replica claims instead of claims or migrations.
   */
  workload?: string;
  /** With a StatefulSet: its volumeClaimTemplates in scope (`--templates data,logs`); default all. */
  templates?: string[];
  to?: string;
  size?: string;
  noPresync: boolean;
  verify?: VerifyFlag;
  cutover?: CutoverFlag;
  yes: boolean;
  dryRun: boolean;
  watch: boolean;
  output: OutputFormat;
  help: boolean;
}

export type Parsed =
  | { kind: 'help'; command?: CommandName }
  | { kind: 'version' }
  | { kind: 'run'; command: CommandName; args: string[]; options: Options };

/** A bad command line: one line, exit code 1. */
export class UsageError extends Error {
  override name = 'UsageError';
}

interface FlagSpec {
  /** Key in Options. */
  key: keyof Options;
  /** Takes a value (`--to fast`); otherwise a switch. */
  value: boolean;
  short?: string;
}

const FLAGS: Record<string, FlagSpec> = {
  kubeconfig: { key: 'kubeconfig', value: true },
  context: { key: 'context', value: true },
  namespace: { key: 'namespace', value: true, short: 'n' },
  'all-namespaces': { key: 'allNamespaces', value: false, short: 'A' },
  selector: { key: 'selector', value: true, short: 'l' },
  'from-class': { key: 'fromClass', value: true },
  templates: { key: 'templates', value: true },
  to: { key: 'to', value: true },
  size: { key: 'size', value: true },
  'no-presync': { key: 'noPresync', value: false },
  verify: { key: 'verify', value: false },
  cutover: { key: 'cutover', value: true },
  yes: { key: 'yes', value: false, short: 'y' },
  'dry-run': { key: 'dryRun', value: false },
  watch: { key: 'watch', value: false, short: 'w' },
  output: { key: 'output', value: true, short: 'o' },
  help: { key: 'help', value: false, short: 'h' },
};

const GLOBAL = ['kubeconfig', 'context', 'namespace', 'all-namespaces', 'output', 'help'];
const SELECTORS = ['selector', 'from-class'];
/** Which flags each command takes, besides the global ones. */
const COMMAND_FLAGS: Record<CommandName, string[]> = {
  plan: [...SELECTORS, 'templates', 'to', 'size'],
  migrate: [...SELECTORS, 'templates', 'to', 'size', 'no-presync', 'verify', 'cutover', 'yes', 'dry-run'],
  status: ['watch', 'templates'],
  sync: ['watch', 'templates'],
  abort: [],
  rollback: [],
  cleanup: ['yes'],
};

/** The resource names kubectl accepts for a StatefulSet, as the subject of plan, migrate, status and sync. */
const STATEFULSET_NAMES = new Set(['sts', 'statefulset', 'statefulsets', 'statefulset.apps', 'statefulsets.apps']);

/**
 * The StatefulSet name of a `sts/NAME` subject (also `statefulset/NAME`,
 * `statefulsets/NAME`, `statefulset.apps/NAME`), or undefined for a plain
 * name. Another `KIND/NAME` is a usage error: only StatefulSets have replica
 * claims pvshift can move as one.
 */
export function parseWorkloadRef(arg: string): string | undefined {
  const slash = arg.indexOf('/');
  if (slash < 0) return undefined;
  const kind = arg.slice(0, slash).toLowerCase();
  const name = arg.slice(slash + 1);
  if (!STATEFULSET_NAMES.has(kind))
    throw new UsageError(
      `"${arg}": only a StatefulSet (sts/NAME) can be given as a workload; for other workloads name their claims`,
    );
  if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(name))
    throw new UsageError(`"${arg}": "${name}" is not a StatefulSet name`);
  return name;
}

function isCommand(word: string): word is CommandName {
  return (COMMANDS as readonly string[]).includes(word);
}

const SHORT = new Map(
  Object.entries(FLAGS).flatMap(([long, spec]) => (spec.short ? [[spec.short, long] as const] : [])),
);

function defaults(): Options {
  return {
    allNamespaces: false,
    noPresync: false,
    yes: false,
    dryRun: false,
    watch: false,
    output: 'table',
    help: false,
  };
}

export function parseArgs(argv: string[]): Parsed {
  const options = defaults();
  const positionals: string[] = [];
  let command: CommandName | undefined;
  const seen: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    let long: string | undefined;
    let inline: string | undefined;
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      long = eq >= 0 ? arg.slice(2, eq) : arg.slice(2);
      inline = eq >= 0 ? arg.slice(eq + 1) : undefined;
      if (!FLAGS[long])
        throw new UsageError(
          `unknown flag --${long}${command ? ` for "${command}"` : ''}; see kubectl pvshift ${command ? `${command} ` : ''}--help`,
        );
    } else if (arg.startsWith('-') && arg.length > 1) {
      long = SHORT.get(arg[1]!);
      if (!long)
        throw new UsageError(
          `unknown shorthand flag -${arg[1]}${command ? ` for "${command}"` : ''}; see kubectl pvshift ${command ? `${command} ` : ''}--help`,
        );
      if (arg.length > 2) inline = arg.slice(arg[2] === '=' ? 3 : 2);
    }
    if (long === undefined) {
      if (command === undefined) {
        if (arg === 'help') {
          const topic = argv.slice(i + 1).find((a) => !a.startsWith('-'));
          if (topic !== undefined && !isCommand(topic))
            throw new UsageError(`unknown command "${topic}"; see kubectl pvshift --help`);
          return { kind: 'help', ...(topic ? { command: topic } : {}) };
        }
        if (arg === 'version') return { kind: 'version' };
        if (!isCommand(arg))
          throw new UsageError(`unknown command "${arg}" for "kubectl pvshift"; commands: ${COMMANDS.join(', ')}`);
        command = arg;
      } else positionals.push(arg);
      continue;
    }
    const spec = FLAGS[long]!;
    seen.push(long);
    if (spec.value) {
      let value = inline;
      if (value === undefined) {
        value = argv[i + 1];
        if (value === undefined || (value.startsWith('-') && value !== '-'))
          throw new UsageError(`flag --${long} needs a value`);
        i++;
      }
      if (value === '') throw new UsageError(`flag --${long} needs a value`);
      (options as unknown as Record<string, unknown>)[spec.key] = value;
    } else if (long === 'verify') {
      // `--verify` alone asks for checksums; `--verify=metadata|none|checksum` names the mode.
      const mode = inline ?? 'checksum';
      if (!['none', 'metadata', 'checksum'].includes(mode))
        throw new UsageError(`--verify must be none, metadata or checksum, not "${mode}"`);
      options.verify = mode as VerifyFlag;
    } else {
      if (inline !== undefined && !['true', 'false'].includes(inline))
        throw new UsageError(`flag --${long} takes no value`);
      (options as unknown as Record<string, unknown>)[spec.key] = inline !== 'false';
    }
  }
  const rawTemplates = options.templates as unknown as string | undefined;
  if (rawTemplates !== undefined) {
    const names = rawTemplates.split(',').map((n) => n.trim());
    if (names.some((n) => n === '')) throw new UsageError(`--templates "${rawTemplates}" has an empty name`);
    options.templates = [...new Set(names)];
  }
  const output = options.output as string;
  if (!['table', 'json', 'yaml'].includes(output))
    throw new UsageError(`unknown output format "${output}"; use -o json or -o yaml (or leave -o out for a table)`);
  if (command === undefined) {
    if (options.help || argv.length === 0) return { kind: 'help' };
    throw new UsageError(`no command given; commands: ${COMMANDS.join(', ')}; see kubectl pvshift --help`);
  }
  if (options.help) return { kind: 'help', command };
  const allowed = new Set([...GLOBAL, ...COMMAND_FLAGS[command]]);
  const foreign = seen.find((f) => !allowed.has(f));
  if (foreign)
    throw new UsageError(`flag --${foreign} does not apply to "${command}"; see kubectl pvshift ${command} --help`);
  const args = takeWorkload(command, positionals, options);
  checkCommand(command, args, options);
  return { kind: 'run', command, args, options };
}

/** Moves a `sts/NAME` subject from the arguments to options.workload (one subject, alone). */
function takeWorkload(command: CommandName, args: string[], o: Options): string[] {
  const subjects = args.flatMap((a) => {
    const name = ['plan', 'migrate', 'status', 'sync'].includes(command) ? parseWorkloadRef(a) : undefined;
    return name === undefined ? [] : [name];
  });
  if (subjects.length === 0) {
    if (o.templates !== undefined) throw new UsageError('--templates needs a StatefulSet: sts/NAME');
    return args;
  }
  if (args.length > 1) throw new UsageError('give one StatefulSet (sts/NAME) and nothing else as the subject');
  if (o.allNamespaces) throw new UsageError('a StatefulSet needs one namespace; use -n instead of -A');
  if (o.selector !== undefined) throw new UsageError('give sts/NAME or -l/--selector, not both');
  if (command === 'migrate') {
    // The StatefulSet's policy is its annotations: they say class, size and templates, nothing else.
    const perClaim = [
      o.noPresync && '--no-presync',
      o.verify && '--verify',
      o.cutover && '--cutover',
      o.fromClass !== undefined && '--from-class',
    ].filter(Boolean);
    if (perClaim.length)
      throw new UsageError(
        `${perClaim.join(', ')} cannot be said on a StatefulSet (its policy is --to, --size and --templates); migrate its claims by name instead`,
      );
  }
  o.workload = subjects[0];
  return [];
}

function checkCommand(command: CommandName, args: string[], o: Options): void {
  if (o.allNamespaces && o.namespace !== undefined)
    throw new UsageError('-n/--namespace and -A/--all-namespaces exclude each other; give one');
  if (o.cutover !== undefined && !['recreate', 'evict'].includes(o.cutover))
    throw new UsageError(`--cutover must be recreate or evict, not "${o.cutover}"`);
  if (o.size !== undefined) {
    const bytes = parseQuantity(o.size);
    if (bytes === undefined || bytes <= 0)
      throw new UsageError(`--size "${o.size}" is not a quantity such as 20Gi or 500M`);
  }
  switch (command) {
    case 'plan':
    case 'migrate':
      if (!o.to) throw new UsageError(`${command} needs --to CLASS, the target StorageClass`);
      if (args.length > 0 && o.allNamespaces)
        throw new UsageError('claim names need one namespace; use -n instead of -A');
      if (args.length > 0 && o.selector !== undefined)
        throw new UsageError('give claim names or -l/--selector, not both');
      return;
    case 'status':
      if (args.length > 1) throw new UsageError('status takes at most one migration name');
      if (args.length === 1 && o.allNamespaces)
        throw new UsageError('a migration name needs one namespace; use -n instead of -A');
      return;
    case 'sync':
      if (o.workload !== undefined) return;
      if (args.length !== 1)
        throw new UsageError(
          'sync takes exactly one migration name, or sts/NAME: kubectl pvshift sync NAME [-n NAMESPACE]',
        );
      if (o.allNamespaces) throw new UsageError('sync works on one namespace; use -n instead of -A');
      return;
    case 'abort':
    case 'rollback':
      if (args.length !== 1)
        throw new UsageError(
          `${command} takes exactly one migration name: kubectl pvshift ${command} NAME [-n NAMESPACE]`,
        );
      if (o.allNamespaces) throw new UsageError(`${command} works on one namespace; use -n instead of -A`);
      return;
    case 'cleanup':
      if (args.length > 0)
        throw new UsageError('cleanup takes no arguments; it lists every retained old volume (filter with -n or -A)');
      return;
  }
}

const COMMON = `Global flags:
      --kubeconfig PATH      kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)
      --context NAME         kubeconfig context (default: the current context)
  -n, --namespace NS         namespace (default: the context's namespace, else "default")
  -A, --all-namespaces       every namespace
  -o, --output json|yaml     machine-readable output (default: a table)
  -h, --help                 help for the command`;

const WORKLOAD = `Or a StatefulSet:
  sts/NAME                   its replica claims (also statefulset/NAME, statefulsets/NAME)
      --templates T,...      only these volumeClaimTemplates (default: all)`;

const SELECT = `Select claims:
  CLAIM...                   claim names in the namespace
  -l, --selector SELECTOR    label selector, e.g. app=web,tier!=cache
      --from-class CLASS     only claims currently on this StorageClass
      --to CLASS             target StorageClass (required)
      --size QTY             target size, e.g. 20Gi (default: the claim's request)`;

export const HELP: Record<CommandName | 'root', string> = {
  root: `kubectl pvshift moves PersistentVolumeClaims to another StorageClass (or size) with pvshift.

Usage:
  kubectl pvshift COMMAND [flags]

Commands:
  plan       show what a migration would do, and every reason it would be refused
  migrate    create VolumeMigrations for the selected claims, or annotate a StatefulSet
  status     show migrations: phase, progress, rate, ETA, downtime, what is kept where
  sync       re-sync a migration waiting for cutover now, so that its final copy is short
  abort      stop a migration (before cutover: clean up; after: roll back, or release held pods)
  rollback   put a claim back on its original volume during cutover
  cleanup    list the volumes pvshift kept, and with --yes release those no claim uses

${COMMON}

A StatefulSet as a whole: plan, migrate, status and sync take sts/NAME, e.g.
  kubectl pvshift plan sts/db --to fast -n shop
  kubectl pvshift migrate sts/db --to fast -n shop
  kubectl pvshift status sts/db -n shop

Run "kubectl pvshift COMMAND --help" for a command's flags.`,
  plan: `Show the claims that would move, and every preflight finding. Changes nothing.

Usage:
  kubectl pvshift plan [CLAIM...] --to CLASS [--size QTY] [-l SELECTOR] [--from-class CLASS] [-n NS | -A]
  kubectl pvshift plan sts/NAME --to CLASS [--size QTY] [--templates T,...] [-n NS]

Columns: namespace, claim, class -> target, size -> target size, used bytes (known only
from an earlier migration of the claim; there is no metrics API, so otherwise "unknown"
with the volume's capacity as the upper bound), consumer pods, their owners, findings.

Findings include what the namespace's Pod Security level (label
pod-security.kubernetes.io/enforce) costs: "restricted" blocks (copy pods run as root);
below full fidelity, what will not be copied (trusted.* xattrs need CAP_SYS_ADMIN, which
only a privileged namespace labelled pvshift.io/privileged-copy=true grants).

With sts/NAME: the StatefulSet's replica claims (<template>-NAME-<ordinal>, ordinals
0..replicas-1, those that exist), and below them what the rollout that cuts them over
will meet: a PodDisruptionBudget selecting its pods that allows no disruption (selectors:
matchLabels and matchExpressions In, NotIn, Exists, DoesNotExist), updateStrategy OnDelete
or a partition, RWO claims on several nodes and nodes outside the target class's
allowedTopologies, and the namespace's Pod Security level.

${SELECT}
${WORKLOAD}

${COMMON}`,
  migrate: `Create a VolumeMigration (named after the claim) for each selected claim. Claims with
blocking findings (see "plan") are skipped and listed. A finished VolumeMigration of that
name (Succeeded, Failed, Aborted, RolledBack) is replaced: deleted, waited for until gone,
then created anew; the old volume it kept stays, listed by "cleanup". An unfinished one
blocks the claim.

With sts/NAME, migrate plans the replica claims the same way and then annotates the
StatefulSet (pvshift.io/target-storage-class, and pvshift.io/target-size and
pvshift.io/volume-claim-templates from --size and --templates, removed when not given)
instead of creating VolumeMigrations itself: pvshift's controller creates one for each
existing replica claim, and claims of later replicas are created on the target directly.
Then "kubectl rollout restart statefulset/NAME" cuts them over one replica at a time.
Any blocking finding refuses the whole StatefulSet (a replica already on the target, or
already migrating to it, is fine). --no-presync, --verify, --cutover and --from-class
apply to claims only.

Usage:
  kubectl pvshift migrate [CLAIM...] --to CLASS [flags]
  kubectl pvshift migrate sts/NAME --to CLASS [--size QTY] [--templates T,...] [--yes] [--dry-run] [-n NS]

${SELECT}
${WORKLOAD}

Migration:
      --no-presync           do not copy while the application runs (the whole copy is downtime)
      --verify[=MODE]        compare source and target after the copy: checksum (the default of
                             --verify), metadata (pvshift's default without the flag) or none
      --cutover MODE         recreate (default): cut over when the consumer pod is recreated;
                             evict: pvshift evicts the pods through the Eviction API (PDBs hold)
  -y, --yes                  do not ask for confirmation (required when stdin is not a terminal)
      --dry-run              print the VolumeMigrations (yaml) and create nothing

${COMMON}`,
  status: `Show VolumeMigrations: phase, progress bar, rate, ETA, downtime and message. Below the
table: for a Held migration (and a Failed or RolledBack one that kept volumes) its message
and every volume it keeps, with its role (source or copy) and what you can do with it;
and what the copy could not keep under the namespace's Pod Security level.
Exit code 1 when any shown migration is Held, Failed or RolledBack.

With sts/NAME: one line for the StatefulSet ("2/3 replicas on fast, data-db-1 copying
41%, ETA 2m"; a replica is on the target when each of its claims in scope is on the
target class), then the table of its migrations (annotated pvshift.io/workload, or of
its replica claims). -o json|yaml: {workload, namespace, target, targetSize, replicas,
onTarget, summary, migrations}.

Usage:
  kubectl pvshift status [NAME] [-w] [-n NS | -A]
  kubectl pvshift status sts/NAME [-w] [--templates T,...] [-n NS]

Flags:
  -w, --watch                redraw every 2 s until every shown migration has finished
                             (Held has not: it waits for you; see "abort"); with sts/NAME,
                             until every replica is on the target or a migration ended otherwise
      --templates T,...      with sts/NAME: only these volumeClaimTemplates (default: all)

${COMMON}`,
  sync: `Ask for one re-sync pass now: a migration waiting for its cutover copies again
what changed since its last pass, whatever its spec.resyncInterval says (also when
re-sync is off), so that the final copy, the application's downtime, moves only what
changes after it. pvshift runs the pass once a copy slot is free; not while a pod of
the claim waits behind pvshift's gate (the cutover goes first). A pass that fails does
not fail the migration (the next pass or the final copy catches up); it is reported.
It sets the annotation pvshift.io/sync-requested on the VolumeMigration.

Usage:
  kubectl pvshift sync NAME [-w] [-n NS]
  kubectl pvshift sync sts/NAME [-w] [--templates T,...] [-n NS]

With sts/NAME: every unfinished migration of the StatefulSet's replica claims; those
that cannot re-sync now (still on their first pre-sync, or cutting over) are listed
on stderr and skipped.

Flags:
  -w, --watch                wait for each pass, then print what it moved and the final copy's
                             new estimate; exit code 1 when a pass failed
      --templates T,...      with sts/NAME: only these volumeClaimTemplates (default: all)

${COMMON}`,
  abort: `Stop a migration by setting spec.abort.
Before cutover (Pending, PreSyncing, WaitingForCutover) pvshift cleans up: nothing of
yours was changed. During cutover (CuttingOver, Populating) it rolls back to the original
volume. In Binding it rolls back too, unless the claim is already bound to the new volume:
then the migration finishes. A Held migration (after cutover, when it can neither roll
back nor finish) is not released by abort: delete the VolumeMigration to release the
held pods; the volumes it kept stay (Retain), as "status" lists them.

Usage:
  kubectl pvshift abort NAME [-n NS]

${COMMON}`,
  rollback: `Put the claim back on its original volume while a migration is cutting over
(CuttingOver, Populating, Binding until the claim is bound to the new volume). Before
cutover use "abort". A Held migration can neither roll back nor finish: "abort" releases
its pods. A finished migration cannot be rolled back yet (its old volume is kept, Released
with reclaim policy Retain).

Usage:
  kubectl pvshift rollback NAME [-n NS]

${COMMON}`,
  cleanup: `List every volume pvshift kept (annotated with its migration, reclaim policy Retain),
whatever became of its VolumeMigration (RECORD shows its phase, or "record deleted"), and
with --yes release those marked "yes": their reclaim policy is set to Delete, so the
provisioner deletes the volume and frees its storage. (Deleting the PersistentVolume object
instead would leak the storage behind it: nothing would ever free it.)

Only a volume no claim uses (Released, or Available and claimed by nothing) is released.
Never one bound to a claim again, one an unfinished migration may still need, or one a
migration's record keeps on purpose (see "status"; delete that record once you no longer
need the data).

Usage:
  kubectl pvshift cleanup [--yes] [-n NS | -A]

Flags:
  -y, --yes                  release the volumes marked "yes" (without it, only list them)

-n/-A select the namespace of the migrations whose volumes are listed. The volumes outlive
pvshift: cleanup lists and releases them after it is uninstalled too.

${COMMON}`,
};
