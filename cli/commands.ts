// The commands: read through the narrow client, decide with the pure modules,
// print with the pure renderers. Each returns its exit code; a failure the
// user can act on is thrown as CliError and printed in one line by main.
import type { V1PersistentVolume, V1PersistentVolumeClaim } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { ApiError, paths } from '../src/kube.js';
import { ANNOTATION_MIGRATION, ANNOTATION_MIGRATION_UID, ANNOTATION_SYNC_REQUEST, FINALIZER } from '../src/names.js';
import { isTerminal, pendingSyncRequest, phaseOf, type Phase, type VolumeMigration } from '../src/volume-migration.js';
import type { CommandName, Options } from './args.js';
import { CliError, type Connection } from './connect.js';
import { decideAbort, decideRollback, decideSync, findRetained, migrationFor, type Decision } from './decisions.js';
import {
  gatherClaimFacts,
  gatherWorkloadFacts,
  listMigrations,
  listMigrationsIfInstalled,
  resolveWorkload,
  storageClassExists,
  type WorkloadSubject,
} from './inventory.js';
import { preflight, type PlanRow } from './preflight.js';
import {
  renderCleanup,
  renderData,
  renderPlan,
  renderStatus,
  renderWorkloadPlan,
  renderWorkloadStatus,
  statusExitCode,
  statusItem,
  syncOutcome,
  type RenderOptions,
  type WorkloadPlanView,
} from './render.js';
import {
  isWorkloadSettled,
  latestPerClaim,
  migrationsOfWorkload,
  policyOf,
  policyPatch,
  workloadBlockers,
  workloadFindings,
  workloadKey,
  workloadStatus,
} from './workload.js';

export interface Io {
  out(text: string): void;
  err(text: string): void;
  stdinIsTTY: boolean;
  stdoutIsTTY: boolean;
  color: boolean;
  now(): Date;
  ask(question: string): Promise<string>;
  sleep(ms: number): Promise<void>;
}

export const WATCH_INTERVAL_MS = 2000;
/** How often, and how many times, migrate looks whether a finished record it deleted is gone. */
export const REPLACE_POLL_MS = 1000;
export const REPLACE_POLLS = 120;

function renderOptions(io: Io, c: Connection, rowsNamespaces: string[]): RenderOptions {
  return {
    color: io.color,
    now: io.now(),
    showNamespace: c.namespace === undefined || new Set(rowsNamespaces).size > 1,
  };
}

async function planRows(
  c: Connection,
  o: Options,
  args: string[],
  claims?: V1PersistentVolumeClaim[],
): Promise<PlanRow[]> {
  const to = o.to!;
  const [facts, exists] = await Promise.all([
    gatherClaimFacts(c.kube, {
      namespace: c.namespace,
      names: args,
      ...(claims ? { claims } : {}),
      ...(o.selector !== undefined ? { selector: o.selector } : {}),
      ...(o.fromClass !== undefined ? { fromClass: o.fromClass } : {}),
    }),
    storageClassExists(c.kube, to),
  ]);
  return facts.map((f) =>
    preflight(f, {
      targetStorageClassName: to,
      ...(o.size ? { targetSize: o.size } : {}),
      targetClassExists: exists,
      noPresync: o.noPresync,
    }),
  );
}

/** The namespace of a `sts/NAME` subject (args refuse -A with one). */
function workloadNamespace(c: Connection): string {
  return c.namespace ?? c.defaultNamespace;
}

/** `plan sts/NAME`: the plan of each replica claim that exists, and what the rollout will meet. */
async function planWorkload(c: Connection, o: Options): Promise<{ subject: WorkloadSubject; view: WorkloadPlanView }> {
  const namespace = workloadNamespace(c);
  const subject = await resolveWorkload(c.kube, namespace, o.workload!, o.templates);
  const claims = subject.claims.flatMap((r) => (r.claim ? [r.claim] : []));
  const [rows, facts] = await Promise.all([
    claims.length ? planRows(c, o, [], claims) : Promise.resolve([]),
    gatherWorkloadFacts(c.kube, subject, o.to!),
  ]);
  const findings = workloadFindings(facts, { targetStorageClassName: o.to! });
  return {
    subject,
    view: {
      workload: {
        name: o.workload!,
        namespace,
        replicas: subject.set.spec?.replicas ?? 1,
        templates: subject.templates,
      },
      target: o.to!,
      blockers: workloadBlockers(rows, findings),
      findings,
      items: rows,
    },
  };
}

export async function plan(c: Connection, o: Options, args: string[], io: Io): Promise<number> {
  if (o.workload !== undefined) {
    const { view } = await planWorkload(c, o);
    io.out(
      o.output !== 'table'
        ? renderData(view, o.output)
        : renderWorkloadPlan(view, { color: io.color, now: io.now(), showNamespace: false }),
    );
    return 0;
  }
  const rows = await planRows(c, o, args);
  if (o.output !== 'table') io.out(renderData({ items: rows }, o.output));
  else
    io.out(
      renderPlan(
        rows,
        renderOptions(
          io,
          c,
          rows.map((r) => r.namespace),
        ),
      ),
    );
  return 0;
}

/**
 * `migrate sts/NAME`: the same plan, then the StatefulSet's annotations (one
 * merge patch) instead of a VolumeMigration per claim: pvshift's controller
 * makes those, and the webhook puts later replicas' claims on the target.
 */
async function migrateWorkload(c: Connection, o: Options, io: Io): Promise<number> {
  const { subject, view } = await planWorkload(c, o);
  const name = view.workload.name;
  const namespace = view.workload.namespace;
  // A replica already on the target is left alone by the controller: it gets no migration.
  const claims = view.items.filter((r) => !r.findings.some((f) => f.code === 'NothingToChange')).map((r) => r.claim);
  if (view.blockers.length) {
    io.err(view.blockers.map((b) => `blocking ${b}\n`).join(''));
    throw new CliError(
      `StatefulSet ${name} has ${view.blockers.length} blocking finding${view.blockers.length > 1 ? 's' : ''}, so it was not annotated; see kubectl pvshift plan sts/${name} --to ${o.to} -n ${namespace}`,
    );
  }
  const before = policyOf(subject.set);
  const patch = policyPatch(subject.set, {
    target: o.to!,
    ...(o.size ? { size: o.size } : {}),
    ...(o.templates ? { templates: o.templates } : {}),
  });
  const next = [
    `kubectl pvshift status sts/${name} -n ${namespace} --watch`,
    `kubectl rollout restart statefulset/${name} -n ${namespace}`,
  ];
  const data = {
    workload: workloadKey(name),
    namespace,
    changed: patch !== undefined,
    annotations: patch?.metadata.annotations ?? {},
    claims,
    next,
  };
  if (o.dryRun) {
    io.out(o.output !== 'table' ? renderData(data, o.output) : stringify(patch ?? {}));
    return 0;
  }
  const replaces =
    before.target && before.target !== o.to
      ? `; it replaces the policy's target ${before.target} (migrations already made keep theirs; see kubectl pvshift status sts/${name} -n ${namespace})`
      : '';
  if (patch && !o.yes) {
    if (!io.stdinIsTTY)
      throw new CliError(
        `refusing to annotate StatefulSet ${name} without confirmation: stdin is not a terminal; pass --yes`,
      );
    io.out(renderWorkloadPlan(view, { color: io.color, now: io.now(), showNamespace: false }));
    const answer = await io.ask(
      `\nAnnotate StatefulSet ${name}, so that pvshift migrates its ${claims.length} replica claim${claims.length === 1 ? '' : 's'} to ${o.to}${replaces}? [y/N] `,
    );
    if (!/^y(es)?$/i.test(answer.trim())) throw new CliError('not confirmed; nothing was changed');
  }
  if (patch) await c.kube.patch(paths.statefulSets(namespace, name), patch, 'merge');
  if (o.output !== 'table') {
    io.out(renderData(data, o.output));
    return 0;
  }
  const said = Object.entries(data.annotations)
    .filter(([, v]) => v !== null)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
  io.out(
    (patch
      ? `statefulset.apps/${name} annotated in ${namespace}: ${said}${replaces}\n`
      : `statefulset.apps/${name} in ${namespace} already carries this policy; nothing changed\n`) +
      `pvshift creates a VolumeMigration for each replica claim not yet on ${o.to} (${claims.join(', ') || 'none now'}) and copies it while the pods run; claims of new replicas are created on ${o.to} directly.\n` +
      `\nNext: follow with ${next[0]}, then run ${next[1]} to cut over one replica at a time.\n`,
  );
  return 0;
}

export async function migrate(c: Connection, o: Options, args: string[], io: Io): Promise<number> {
  if (!(await storageClassExists(c.kube, o.to!)))
    throw new CliError(`StorageClass "${o.to}" not found; see kubectl get storageclass`);
  if (o.workload !== undefined) return migrateWorkload(c, o, io);
  const rows = await planRows(c, o, args);
  const where = c.namespace === undefined ? 'any namespace' : `namespace "${c.namespace}"`;
  if (rows.length === 0)
    throw new CliError(`no claims match in ${where}; see kubectl pvshift plan --help for the selectors`);
  const ready = rows.filter((r) => r.ready);
  const skipped = rows.filter((r) => !r.ready);
  const migrations = ready.map((r) =>
    migrationFor(r.namespace, r.claim, {
      targetStorageClassName: o.to!,
      ...(o.size ? { targetSize: o.size } : {}),
      noPresync: o.noPresync,
      ...(o.verify ? { verify: o.verify } : {}),
      ...(o.cutover ? { cutover: o.cutover } : {}),
    }),
  );
  const skippedData = skipped.map((r) => ({
    namespace: r.namespace,
    claim: r.claim,
    findings: r.findings.filter((f) => f.severity === 'blocking'),
  }));
  const skippedText = () =>
    skipped
      .map(
        (r) =>
          `skipped ${r.namespace}/${r.claim}: ${r.findings
            .filter((f) => f.severity === 'blocking')
            .map((f) => f.message)
            .join('; ')}\n`,
      )
      .join('');
  const replacing = ready.flatMap((r) =>
    r.replaces ? [{ namespace: r.namespace, name: r.replaces.name, phase: r.replaces.phase }] : [],
  );
  if (o.dryRun) {
    if (o.output === 'json')
      io.out(renderData({ items: migrations, skipped: skippedData, replaces: replacing }, 'json'));
    else {
      io.out(migrations.map((m) => stringify(m)).join('---\n'));
      io.err(
        replacing
          .map(
            (r) =>
              `would replace the finished VolumeMigration ${r.namespace}/${r.name} (${r.phase}): delete it, then create the new one\n`,
          )
          .join(''),
      );
      if (skipped.length) io.err(skippedText());
    }
    return migrations.length ? 0 : 1;
  }
  if (migrations.length === 0) {
    io.err(skippedText());
    throw new CliError(
      `every selected claim has a blocking finding, so nothing was created; see kubectl pvshift plan --to ${o.to}`,
    );
  }
  if (!o.yes) {
    const count = `${migrations.length} VolumeMigration${migrations.length > 1 ? 's' : ''}`;
    if (!io.stdinIsTTY)
      throw new CliError(`refusing to create ${count} without confirmation: stdin is not a terminal; pass --yes`);
    io.out(
      renderPlan(
        rows,
        renderOptions(
          io,
          c,
          rows.map((r) => r.namespace),
        ),
      ),
    );
    const replaces = replacing.length
      ? ` (replacing ${replacing.length} finished one${replacing.length > 1 ? 's' : ''})`
      : '';
    const answer = await io.ask(`\nCreate ${count}${replaces}? [y/N] `);
    if (!/^y(es)?$/i.test(answer.trim())) throw new CliError('not confirmed; nothing was created');
  }
  const created: VolumeMigration[] = [];
  const replaced: { namespace: string; name: string; phase: Phase }[] = [];
  const lines: string[] = [];
  const skip = (m: VolumeMigration, code: string, message: string) => {
    skippedData.push({
      namespace: m.metadata.namespace,
      claim: m.spec.claimName,
      findings: [{ severity: 'blocking', code, message }],
    });
    lines.push(`skipped ${m.metadata.namespace}/${m.spec.claimName}: ${message}\n`);
  };
  for (const [i, m] of migrations.entries()) {
    const previous = ready[i]?.replaces;
    if (previous) {
      const refused = await deleteFinished(c, m.metadata.namespace, previous, io);
      if (refused !== undefined) {
        skip(m, 'MigrationExists', refused);
        continue;
      }
    }
    try {
      created.push(await c.kube.create<VolumeMigration>(paths.migrations(m.metadata.namespace), m));
      if (previous) {
        replaced.push({ namespace: m.metadata.namespace, name: previous.name, phase: previous.phase });
        lines.push(
          `volumemigration.pvshift.io/${m.metadata.name} replaced in ${m.metadata.namespace}: the finished one (${previous.phase}) was deleted and a new one created\n`,
        );
      } else {
        lines.push(`volumemigration.pvshift.io/${m.metadata.name} created in ${m.metadata.namespace}\n`);
      }
    } catch (e: unknown) {
      if (e instanceof ApiError && e.code === 409) {
        skip(m, 'MigrationExists', `VolumeMigration ${m.metadata.name} was created meanwhile`);
        continue;
      }
      throw e;
    }
  }
  if (o.output !== 'table') io.out(renderData({ items: created, skipped: skippedData, replaces: replaced }, o.output));
  else {
    io.out(lines.join('') + skippedText());
    if (created.length)
      io.out(
        `\nFollow with: kubectl pvshift status --watch${c.namespace === undefined ? ' -A' : ` -n ${c.namespace}`}\n`,
      );
  }
  return 0;
}

/**
 * Deletes the finished VolumeMigration `previous` (that very one: by UID) and
 * waits until it is gone; its finalizer holds it until pvshift's controller has
 * tidied up. Returns why it was not replaced, or undefined once it is gone.
 */
async function deleteFinished(
  c: Connection,
  namespace: string,
  previous: { name: string; uid?: string; phase: Phase },
  io: Io,
): Promise<string | undefined> {
  const path = paths.migrations(namespace, previous.name);
  for (let poll = 0; ; poll++) {
    const current = await c.kube.get<VolumeMigration>(path);
    if (!current) return undefined;
    if (previous.uid !== undefined && current.metadata.uid !== previous.uid)
      return `VolumeMigration ${previous.name} was replaced meanwhile by another one`;
    // A finished phase is final; this only guards a record that was not the one planned on.
    if (!isTerminal(phaseOf(current))) return `VolumeMigration ${previous.name} is ${phaseOf(current)}, not finished`;
    if (!current.metadata.deletionTimestamp)
      await c.kube.delete(path, { preconditions: { uid: current.metadata.uid } });
    if (poll >= REPLACE_POLLS) {
      throw new CliError(
        `the finished VolumeMigration ${namespace}/${previous.name} is still being deleted after ${(REPLACE_POLLS * REPLACE_POLL_MS) / 1000} s: pvshift's controller removes its finalizer ${FINALIZER} once it has tidied up; is pvshift running? (kubectl get volumemigration ${previous.name} -n ${namespace} -o yaml)`,
      );
    }
    await io.sleep(REPLACE_POLL_MS);
  }
}

async function shownMigrations(c: Connection, name: string | undefined): Promise<VolumeMigration[]> {
  if (name !== undefined) {
    const m = await c.kube.get<VolumeMigration>(paths.migrations(c.namespace, name));
    if (!m) {
      await listMigrations(c.kube, c.namespace); // says so when the CRD is missing
      throw new CliError(
        `VolumeMigration "${name}" not found in namespace "${c.namespace}"; see kubectl pvshift status -n ${c.namespace}`,
      );
    }
    return [m];
  }
  const items = await listMigrations(c.kube, c.namespace);
  return items.sort(
    (a, b) =>
      a.metadata.namespace.localeCompare(b.metadata.namespace) || a.metadata.name.localeCompare(b.metadata.name),
  );
}

/** One look at what status shows: its text, its exit code, and whether a watch is over. */
interface StatusFrame {
  text: string;
  exitCode: number;
  settled: boolean;
}

async function migrationsFrame(c: Connection, o: Options, io: Io, name: string | undefined): Promise<StatusFrame> {
  const items = await shownMigrations(c, name);
  return {
    text:
      o.output === 'table'
        ? renderStatus(
            items,
            renderOptions(
              io,
              c,
              items.map((m) => m.metadata.namespace),
            ),
          )
        : renderData({ items: items.map(statusItem) }, o.output),
    exitCode: statusExitCode(items),
    settled: items.every((m) => isTerminal(m.status?.phase ?? 'Pending')),
  };
}

/** `status sts/NAME`: where the replicas are (one line), then the migrations of the StatefulSet. */
async function workloadFrame(c: Connection, o: Options, io: Io): Promise<StatusFrame> {
  const namespace = workloadNamespace(c);
  const subject = await resolveWorkload(c.kube, namespace, o.workload!, o.templates);
  const migrations = migrationsOfWorkload(
    o.workload!,
    subject.templates,
    new Set(subject.claims.map((r) => r.name)),
    await listMigrations(c.kube, namespace),
  );
  const summary = workloadStatus(subject.set, subject.claims, migrations);
  return {
    text:
      o.output === 'table'
        ? renderWorkloadStatus(summary, migrations, { color: io.color, now: io.now(), showNamespace: false })
        : renderData(summary, o.output),
    // An earlier, ended attempt of a claim says nothing once a newer one speaks for it.
    exitCode: statusExitCode(latestPerClaim(migrations)),
    settled: isWorkloadSettled(summary, migrations),
  };
}

export async function status(c: Connection, o: Options, args: string[], io: Io): Promise<number> {
  const load = () => (o.workload !== undefined ? workloadFrame(c, o, io) : migrationsFrame(c, o, io, args[0]));
  let frame = await load();
  if (!o.watch) {
    io.out(frame.text);
    return frame.exitCode;
  }
  let last = '';
  let failures = 0;
  for (;;) {
    const text = frame.text;
    if (io.stdoutIsTTY && o.output === 'table') io.out(`\x1b[H\x1b[2J${text}`);
    else if (text !== last) io.out(`${last ? '\n' : ''}${text}`);
    last = text;
    if (frame.settled) return frame.exitCode;
    await io.sleep(WATCH_INTERVAL_MS);
    try {
      frame = await load();
      failures = 0;
    } catch (e: unknown) {
      // A blip of the API server is not the end of a watch; five in a row is.
      if (e instanceof CliError || ++failures >= 5) throw e;
    }
  }
}

/** Sets spec.abort, guarded by resourceVersion; re-reads and re-decides on a conflict. */
async function requestAbort(
  c: Connection,
  name: string,
  decide: (m: VolumeMigration) => Decision,
  io: Io,
): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    const m = await c.kube.get<VolumeMigration>(paths.migrations(c.namespace, name));
    if (!m) {
      await listMigrations(c.kube, c.namespace);
      throw new CliError(
        `VolumeMigration "${name}" not found in namespace "${c.namespace}"; see kubectl pvshift status -n ${c.namespace}`,
      );
    }
    const decision = decide(m);
    if (!decision.act) {
      if (!decision.ok) throw new CliError(decision.message);
      io.out(`${decision.message}\n`);
      return 0;
    }
    try {
      await c.kube.patch(
        paths.migrations(c.namespace, name),
        { metadata: { resourceVersion: m.metadata.resourceVersion }, spec: { abort: true } },
        'merge',
      );
      io.out(`${decision.message}\nFollow with: kubectl pvshift status ${name} --watch -n ${c.namespace}\n`);
      return 0;
    } catch (e: unknown) {
      // The controller writes status often; a conflict means "read again".
      if (e instanceof ApiError && e.code === 409 && attempt < 10) continue;
      throw e;
    }
  }
}

export function abort(c: Connection, _o: Options, args: string[], io: Io): Promise<number> {
  return requestAbort(c, args[0]!, decideAbort, io);
}

export function rollback(c: Connection, _o: Options, args: string[], io: Io): Promise<number> {
  return requestAbort(c, args[0]!, decideRollback, io);
}

/**
 * UIDs of the claims that exist among those the volumes' claimRefs name: one
 * list, of the namespace when every claimRef is in it, else of every namespace.
 */
async function existingClaimUids(c: Connection, volumes: V1PersistentVolume[]): Promise<Set<string>> {
  const refs = volumes.flatMap((v) => (v.spec?.claimRef?.uid ? [v.spec.claimRef] : []));
  if (refs.length === 0) return new Set();
  const namespaces = new Set(refs.map((r) => r.namespace));
  const only = namespaces.size === 1 ? [...namespaces][0] : undefined;
  const claims = await c.kube.list<V1PersistentVolumeClaim>(paths.claims(only));
  return new Set(claims.items.flatMap((claim) => (claim.metadata?.uid ? [claim.metadata.uid] : [])));
}

/**
 * Sets the reclaim policy of a volume cleanup may release to Delete, guarded by
 * the resourceVersion it was judged on; on a conflict (the volume changed: it
 * may be bound again) it reads the volume again and judges again. Returns why
 * it was not released, or undefined once it is.
 */
async function releaseVolume(
  c: Connection,
  listed: V1PersistentVolume,
  migrations: VolumeMigration[],
  claimUids: ReadonlySet<string>,
): Promise<string | undefined> {
  const name = listed.metadata?.name ?? '';
  let pv: V1PersistentVolume | undefined = listed;
  let uids = claimUids;
  for (let attempt = 0; ; attempt++) {
    if (!pv) return 'it is gone';
    const [judged] = findRetained([pv], migrations, uids, undefined);
    if (!judged) return 'its reclaim policy is no longer Retain';
    if (!judged.releasable) return judged.reason ?? 'it is in use';
    try {
      // Delete, not a delete of the object: the provisioner then frees the storage.
      await c.kube.patch(
        paths.volumes(name),
        {
          metadata: { resourceVersion: pv.metadata?.resourceVersion },
          spec: { persistentVolumeReclaimPolicy: 'Delete' },
        },
        'merge',
      );
      return undefined;
    } catch (e: unknown) {
      if (!(e instanceof ApiError && e.code === 409) || attempt >= 5) throw e;
    }
    pv = await c.kube.get<V1PersistentVolume>(paths.volumes(name));
    const ref = pv?.spec?.claimRef;
    const claim =
      ref?.uid && ref.namespace && ref.name
        ? await c.kube.get<V1PersistentVolumeClaim>(paths.claims(ref.namespace, ref.name))
        : undefined;
    uids = new Set(claim?.metadata?.uid ? [claim.metadata.uid] : []);
  }
}

export async function cleanup(c: Connection, o: Options, _args: string[], io: Io): Promise<number> {
  const [volumes, installed] = await Promise.all([
    c.kube.list<V1PersistentVolume>(paths.volumes()),
    listMigrationsIfInstalled(c.kube, c.namespace),
  ]);
  const migrations = installed ?? [];
  const stamped = volumes.items.filter(
    (v) => v.metadata?.annotations?.[ANNOTATION_MIGRATION] || v.metadata?.annotations?.[ANNOTATION_MIGRATION_UID],
  );
  const claimUids = await existingClaimUids(c, stamped);
  const retained = findRetained(stamped, migrations, claimUids, c.namespace);
  const released: string[] = [];
  const notReleased: { name: string; reason: string }[] = [];
  if (o.yes) {
    for (const v of retained.filter((r) => r.releasable)) {
      const pv = stamped.find((x) => x.metadata?.name === v.name)!;
      const reason = await releaseVolume(c, pv, migrations, claimUids);
      if (reason === undefined) released.push(v.name);
      else notReleased.push({ name: v.name, reason });
    }
  }
  if (installed === undefined)
    io.err(
      'the VolumeMigration API (pvshift.io/v1alpha1) is not installed: no record is left, every volume pvshift kept counts as "record deleted"\n',
    );
  if (o.output !== 'table') {
    io.out(renderData({ items: retained, released, notReleased }, o.output));
    return 0;
  }
  io.out(renderCleanup(retained, { color: io.color, now: io.now(), showNamespace: false }));
  if (o.yes) {
    for (const name of released)
      io.out(
        `persistentvolume/${name} released: reclaim policy set to Delete; its provisioner deletes it and frees the storage\n`,
      );
    for (const v of notReleased) io.out(`persistentvolume/${v.name} not released: ${v.reason}\n`);
  } else if (retained.some((r) => r.releasable)) {
    io.out(
      `\nRelease those marked "yes" (reclaim policy Delete, so the provisioner frees the storage) with: kubectl pvshift cleanup --yes${c.namespace === undefined ? ' -A' : ` -n ${c.namespace}`}\n`,
    );
  }
  return 0;
}

/** The migrations `sync` works on: the one named, or those of the StatefulSet (the latest per claim). */
async function syncSubjects(c: Connection, o: Options, args: string[]): Promise<VolumeMigration[]> {
  if (o.workload === undefined) {
    const name = args[0]!;
    const m = await c.kube.get<VolumeMigration>(paths.migrations(c.namespace, name));
    if (!m)
      throw new CliError(
        `VolumeMigration "${name}" not found in namespace "${c.namespace}"; see kubectl pvshift status -n ${c.namespace}`,
      );
    return [m];
  }
  const namespace = workloadNamespace(c);
  const subject = await resolveWorkload(c.kube, namespace, o.workload, o.templates);
  const all = migrationsOfWorkload(
    o.workload,
    subject.templates,
    new Set(subject.claims.map((r) => r.name)),
    await listMigrations(c.kube, namespace),
  );
  const latest = latestPerClaim(all).filter((m) => !isTerminal(phaseOf(m)));
  if (latest.length === 0)
    throw new CliError(`StatefulSet ${namespace}/${o.workload} has no unfinished migration to sync`);
  return latest;
}

/**
 * `kubectl pvshift sync`: asks for one re-sync pass now (the annotation
 * pvshift.io/sync-requested), whatever spec.resyncInterval says; with --watch,
 * follows each pass until it has run and says what it moved.
 */
export async function sync(c: Connection, o: Options, args: string[], io: Io): Promise<number> {
  const subjects = await syncSubjects(c, o, args);
  const requested: { name: string; namespace: string; request: string }[] = [];
  const refused: string[] = [];
  for (const m of subjects) {
    const decision: Decision = decideSync(m);
    if (!decision.act && !decision.ok) {
      refused.push(decision.message);
      continue;
    }
    let request = pendingSyncRequest(m);
    if (decision.act) {
      request = io.now().toISOString();
      await c.kube.patch(
        paths.migrations(m.metadata.namespace, m.metadata.name),
        { metadata: { annotations: { [ANNOTATION_SYNC_REQUEST]: request } } },
        'merge',
      );
    }
    io.out(`${decision.message}\n`);
    requested.push({ name: m.metadata.name, namespace: m.metadata.namespace, request: request! });
  }
  if (requested.length === 0) throw new CliError(refused.join('; '));
  for (const why of refused) io.err(`skipped: ${why}\n`);
  const follow = o.workload !== undefined ? `sts/${o.workload}` : requested[0]!.name;
  if (!o.watch) {
    io.out(`Follow with: kubectl pvshift status ${follow} --watch -n ${requested[0]!.namespace}\n`);
    return 0;
  }
  let last = '';
  let failures = 0;
  for (;;) {
    let outcomes;
    try {
      const now = await Promise.all(
        requested.map(async (r) => {
          const m = await c.kube.get<VolumeMigration>(paths.migrations(r.namespace, r.name));
          if (!m) return { settled: true, failed: true, text: `${r.name}: deleted before the re-sync ran` };
          return syncOutcome(m, r.request);
        }),
      );
      outcomes = now;
      failures = 0;
    } catch (e: unknown) {
      // A blip of the API server is not the end of a watch; five in a row is.
      if (++failures >= 5) throw e;
      await io.sleep(WATCH_INTERVAL_MS);
      continue;
    }
    const text = outcomes.map((x) => x.text).join('\n');
    if (text !== last) io.out(`${text}\n`);
    last = text;
    if (outcomes.every((x) => x.settled)) return outcomes.some((x) => x.failed) ? 1 : 0;
    await io.sleep(WATCH_INTERVAL_MS);
  }
}

export const RUN: Record<CommandName, (c: Connection, o: Options, args: string[], io: Io) => Promise<number>> = {
  plan,
  migrate,
  status,
  sync,
  abort,
  rollback,
  cleanup,
};
