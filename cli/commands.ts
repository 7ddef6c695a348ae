// The commands: read through the narrow client, decide with the pure modules,
// print with the pure renderers. Each returns its exit code; a failure the
// user can act on is thrown as CliError and printed in one line by main.
import type { V1PersistentVolume, V1PersistentVolumeClaim } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { ApiError, paths } from '../src/kube.js';
import { ANNOTATION_MIGRATION, ANNOTATION_MIGRATION_UID, FINALIZER } from '../src/names.js';
import { isTerminal, phaseOf, type Phase, type VolumeMigration } from '../src/volume-migration.js';
import type { CommandName, Options } from './args.js';
import { CliError, type Connection } from './connect.js';
import { decideAbort, decideRollback, findRetained, migrationFor, type Decision } from './decisions.js';
import { gatherClaimFacts, listMigrations, listMigrationsIfInstalled, storageClassExists } from './inventory.js';
import { preflight, type PlanRow } from './preflight.js';
import {
  renderCleanup,
  renderData,
  renderPlan,
  renderStatus,
  statusExitCode,
  statusItem,
  type RenderOptions,
} from './render.js';

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

async function planRows(c: Connection, o: Options, args: string[]): Promise<PlanRow[]> {
  const to = o.to!;
  const [facts, exists] = await Promise.all([
    gatherClaimFacts(c.kube, {
      namespace: c.namespace,
      names: args,
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

export async function plan(c: Connection, o: Options, args: string[], io: Io): Promise<number> {
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

export async function migrate(c: Connection, o: Options, args: string[], io: Io): Promise<number> {
  if (!(await storageClassExists(c.kube, o.to!)))
    throw new CliError(`StorageClass "${o.to}" not found; see kubectl get storageclass`);
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

export async function status(c: Connection, o: Options, args: string[], io: Io): Promise<number> {
  const name = args[0];
  const frame = (items: VolumeMigration[]) =>
    o.output === 'table'
      ? renderStatus(
          items,
          renderOptions(
            io,
            c,
            items.map((m) => m.metadata.namespace),
          ),
        )
      : renderData({ items: items.map(statusItem) }, o.output);
  let items = await shownMigrations(c, name);
  if (!o.watch) {
    io.out(frame(items));
    return statusExitCode(items);
  }
  let last = '';
  let failures = 0;
  for (;;) {
    const text = frame(items);
    if (io.stdoutIsTTY && o.output === 'table') io.out(`\x1b[H\x1b[2J${text}`);
    else if (text !== last) io.out(`${last ? '\n' : ''}${text}`);
    last = text;
    if (items.every((m) => isTerminal(m.status?.phase ?? 'Pending'))) return statusExitCode(items);
    await io.sleep(WATCH_INTERVAL_MS);
    try {
      items = await shownMigrations(c, name);
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

export const RUN: Record<CommandName, (c: Connection, o: Options, args: string[], io: Io) => Promise<number>> = {
  plan,
  migrate,
  status,
  abort,
  rollback,
  cleanup,
};
