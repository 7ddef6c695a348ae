// The commands: read through the narrow client, decide with the pure modules,
// print with the pure renderers. Each returns its exit code; a failure the
// user can act on is thrown as CliError and printed in one line by main.
import type { V1PersistentVolume } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { ApiError, paths } from '../src/kube.js';
import { isTerminal, type VolumeMigration } from '../src/volume-migration.js';
import type { CommandName, Options } from './args.js';
import { CliError, type Connection } from './connect.js';
import { decideAbort, decideRollback, findRetained, migrationFor, type Decision } from './decisions.js';
import { gatherClaimFacts, listMigrations, storageClassExists } from './inventory.js';
import { preflight, type PlanRow } from './preflight.js';
import { renderCleanup, renderData, renderPlan, renderStatus, statusExitCode, statusItem, type RenderOptions } from './render.js';

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

function renderOptions(io: Io, c: Connection, rowsNamespaces: string[]): RenderOptions {
  return { color: io.color, now: io.now(), showNamespace: c.namespace === undefined || new Set(rowsNamespaces).size > 1 };
}

async function planRows(c: Connection, o: Options, args: string[]): Promise<PlanRow[]> {
  const to = o.to!;
  const [facts, exists] = await Promise.all([
    gatherClaimFacts(c.kube, { namespace: c.namespace, names: args, ...(o.selector !== undefined ? { selector: o.selector } : {}), ...(o.fromClass !== undefined ? { fromClass: o.fromClass } : {}) }),
    storageClassExists(c.kube, to),
  ]);
  return facts.map((f) => preflight(f, { targetStorageClassName: to, ...(o.size ? { targetSize: o.size } : {}), targetClassExists: exists, noPresync: o.noPresync }));
}

export async function plan(c: Connection, o: Options, args: string[], io: Io): Promise<number> {
  const rows = await planRows(c, o, args);
  if (o.output !== 'table') io.out(renderData({ items: rows }, o.output));
  else io.out(renderPlan(rows, renderOptions(io, c, rows.map((r) => r.namespace))));
  return 0;
}

export async function migrate(c: Connection, o: Options, args: string[], io: Io): Promise<number> {
  if (!(await storageClassExists(c.kube, o.to!))) throw new CliError(`StorageClass "${o.to}" not found; see kubectl get storageclass`);
  const rows = await planRows(c, o, args);
  const where = c.namespace === undefined ? 'any namespace' : `namespace "${c.namespace}"`;
  if (rows.length === 0) throw new CliError(`no claims match in ${where}; see kubectl pvshift plan --help for the selectors`);
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
  const skippedData = skipped.map((r) => ({ namespace: r.namespace, claim: r.claim, findings: r.findings.filter((f) => f.severity === 'blocking') }));
  const skippedText = () => skipped.map((r) => `skipped ${r.namespace}/${r.claim}: ${r.findings.filter((f) => f.severity === 'blocking').map((f) => f.message).join('; ')}\n`).join('');
  if (o.dryRun) {
    if (o.output === 'json') io.out(renderData({ items: migrations, skipped: skippedData }, 'json'));
    else {
      io.out(migrations.map((m) => stringify(m)).join('---\n'));
      if (skipped.length) io.err(skippedText());
    }
    return migrations.length ? 0 : 1;
  }
  if (migrations.length === 0) {
    io.err(skippedText());
    throw new CliError(`every selected claim has a blocking finding, so nothing was created; see kubectl pvshift plan --to ${o.to}`);
  }
  if (!o.yes) {
    if (!io.stdinIsTTY) throw new CliError(`refusing to create ${migrations.length} VolumeMigration${migrations.length > 1 ? 's' : ''} without confirmation: stdin is not a terminal; pass --yes`);
    io.out(renderPlan(rows, renderOptions(io, c, rows.map((r) => r.namespace))));
    const answer = await io.ask(`\nCreate ${migrations.length} VolumeMigration${migrations.length > 1 ? 's' : ''}? [y/N] `);
    if (!/^y(es)?$/i.test(answer.trim())) throw new CliError('not confirmed; nothing was created');
  }
  const created: VolumeMigration[] = [];
  const lines: string[] = [];
  for (const m of migrations) {
    try {
      created.push(await c.kube.create<VolumeMigration>(paths.migrations(m.metadata.namespace), m));
      lines.push(`volumemigration.pvshift.io/${m.metadata.name} created in ${m.metadata.namespace}\n`);
    } catch (e: unknown) {
      if (e instanceof ApiError && e.code === 409) {
        skippedData.push({ namespace: m.metadata.namespace, claim: m.spec.claimName, findings: [{ severity: 'blocking', code: 'MigrationExists', message: `VolumeMigration ${m.metadata.name} was created meanwhile` }] });
        lines.push(`skipped ${m.metadata.namespace}/${m.spec.claimName}: VolumeMigration ${m.metadata.name} was created meanwhile\n`);
        continue;
      }
      throw e;
    }
  }
  if (o.output !== 'table') io.out(renderData({ items: created, skipped: skippedData }, o.output));
  else {
    io.out(lines.join('') + skippedText());
    if (created.length) io.out(`\nFollow with: kubectl pvshift status --watch${c.namespace === undefined ? ' -A' : ` -n ${c.namespace}`}\n`);
  }
  return 0;
}

async function shownMigrations(c: Connection, name: string | undefined): Promise<VolumeMigration[]> {
  if (name !== undefined) {
    const m = await c.kube.get<VolumeMigration>(paths.migrations(c.namespace, name));
    if (!m) {
      await listMigrations(c.kube, c.namespace); // says so when the CRD is missing
      throw new CliError(`VolumeMigration "${name}" not found in namespace "${c.namespace}"; see kubectl pvshift status -n ${c.namespace}`);
    }
    return [m];
  }
  const items = await listMigrations(c.kube, c.namespace);
  return items.sort((a, b) => a.metadata.namespace.localeCompare(b.metadata.namespace) || a.metadata.name.localeCompare(b.metadata.name));
}

export async function status(c: Connection, o: Options, args: string[], io: Io): Promise<number> {
  const name = args[0];
  const frame = (items: VolumeMigration[]) =>
    o.output === 'table' ? renderStatus(items, renderOptions(io, c, items.map((m) => m.metadata.namespace))) : renderData({ items: items.map(statusItem) }, o.output);
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
async function requestAbort(c: Connection, name: string, decide: (m: VolumeMigration) => Decision, io: Io): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    const m = await c.kube.get<VolumeMigration>(paths.migrations(c.namespace, name));
    if (!m) {
      await listMigrations(c.kube, c.namespace);
      throw new CliError(`VolumeMigration "${name}" not found in namespace "${c.namespace}"; see kubectl pvshift status -n ${c.namespace}`);
    }
    const decision = decide(m);
    if (!decision.act) {
      if (!decision.ok) throw new CliError(decision.message);
      io.out(`${decision.message}\n`);
      return 0;
    }
    try {
      await c.kube.patch(paths.migrations(c.namespace, name), { metadata: { resourceVersion: m.metadata.resourceVersion }, spec: { abort: true } }, 'merge');
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

export async function cleanup(c: Connection, o: Options, _args: string[], io: Io): Promise<number> {
  const [volumes, migrations] = await Promise.all([c.kube.list<V1PersistentVolume>(paths.volumes()), listMigrations(c.kube, c.namespace)]);
  const retained = findRetained(volumes.items, migrations, c.namespace);
  const released: string[] = [];
  if (o.yes) {
    for (const v of retained) {
      const pv = volumes.items.find((x) => x.metadata?.name === v.name);
      // Delete, not a delete of the object: the provisioner then frees the storage.
      await c.kube.patch(paths.volumes(v.name), { metadata: { resourceVersion: pv?.metadata?.resourceVersion }, spec: { persistentVolumeReclaimPolicy: 'Delete' } }, 'merge');
      released.push(v.name);
    }
  }
  if (o.output !== 'table') {
    io.out(renderData({ items: retained, released }, o.output));
    return 0;
  }
  io.out(renderCleanup(retained, { color: io.color, now: io.now(), showNamespace: false }));
  if (o.yes) {
    for (const name of released) io.out(`persistentvolume/${name} released: reclaim policy set to Delete; its provisioner deletes it and frees the storage\n`);
  } else if (retained.length) {
    io.out(`\nRelease them (reclaim policy Delete, so the provisioner frees the storage) with: kubectl pvshift cleanup --yes${c.namespace === undefined ? ' -A' : ` -n ${c.namespace}`}\n`);
  }
  return 0;
}

export const RUN: Record<CommandName, (c: Connection, o: Options, args: string[], io: Io) => Promise<number>> = { plan, migrate, status, abort, rollback, cleanup };
