// A migration's timeline, for hack/bench-migration.ts: what the cluster did (watch
// events on pods, claims, volumes, migrations and Events of a namespace, stamped
// when this process received them) and what pvshift did (its log lines, stamped
// by pvshift: `step` at info, `wait` and `step done` at debug), merged in time.
// Both clocks are this machine's. A watch event arrives a few ms after the
// write; pvshift's `step` line is logged just before the step's API calls.
import fs from 'node:fs';
import type {
  CoreV1Event,
  V1PersistentVolume,
  V1PersistentVolumeClaim,
  V1Pod,
  V1PodCondition,
} from '@kubernetes/client-node';
import { Informer, paths, type Kube } from '../src/kube.js';
import { SCHEDULING_GATE, sourceHelperClaimName, stagingClaimName } from '../src/names.js';
import type { VolumeMigration } from '../src/volume-migration.js';
import { copyPassOf } from '../populator/copy-slots.js';

export interface Mark {
  /** ms since the epoch. */
  at: number;
  /** `cluster` (a watch event), `event` (an Event pvshift recorded), `pvshift` (its log). */
  source: 'cluster' | 'event' | 'pvshift';
  /** The migration (`namespace/name`) it is about, where known. */
  migration?: string;
  what: string;
}

/** `+a -b`: the annotation keys added and removed (pvshift's and Kubernetes' bind marks, shortened). */
function annotationChanges(before: Record<string, string> = {}, after: Record<string, string> = {}): string {
  const short = (k: string) => k.replace(/^.*\//, '');
  const added = Object.keys(after).filter((k) => !(k in before));
  const removed = Object.keys(before).filter((k) => !(k in after));
  return [...added.map((k) => `+${short(k)}`), ...removed.map((k) => `-${short(k)}`)].join(' ');
}

const isGated = (p: V1Pod | undefined) => (p?.spec?.schedulingGates ?? []).some((g) => g.name === SCHEDULING_GATE);
const isReady = (p: V1Pod | undefined) =>
  (p?.status?.conditions ?? []).some((c: V1PodCondition) => c.type === 'Ready' && c.status === 'True');

/** Watches one namespace (and the volumes of its claims) and keeps every notable change, stamped. */
export class Tracer {
  readonly marks: Mark[] = [];
  private readonly informers: Informer<never>[] = [];
  private readonly migrations: Informer<VolumeMigration>;

  constructor(
    kube: Kube,
    private readonly ns: string,
  ) {
    const pods = new Informer<V1Pod>(kube, paths.pods(ns));
    const claims = new Informer<V1PersistentVolumeClaim>(kube, paths.claims(ns));
    const volumes = new Informer<V1PersistentVolume>(kube, paths.volumes());
    this.migrations = new Informer<VolumeMigration>(kube, paths.migrations(ns));
    const events = new Informer<CoreV1Event>(kube, paths.events(ns));
    pods.on((type, p, old) => this.pod(type, p, old));
    claims.on((type, c, old) => this.claim(type, c, old));
    volumes.on((type, v, old) => this.volume(type, v, old));
    this.migrations.on((type, m, old) => this.migration(type, m, old));
    events.on((type, e) => {
      if (type !== 'add' || e.involvedObject?.kind !== 'VolumeMigration') return;
      this.mark('event', `${e.reason}: ${(e.message ?? '').slice(0, 90)}`, `${ns}/${e.involvedObject.name}`);
    });
    this.informers.push(...([pods, claims, volumes, this.migrations, events] as unknown as Informer<never>[]));
  }

  async start(): Promise<this> {
    for (const i of this.informers) i.start();
    await Promise.all(this.informers.map((i) => i.waitForSync()));
    // What the initial lists brought is the past, not the timeline.
    this.marks.length = 0;
    return this;
  }

  stop(): void {
    for (const i of this.informers) i.stop();
  }

  private mark(source: Mark['source'], what: string, migration?: string): void {
    this.marks.push({ at: Date.now(), source, what, ...(migration ? { migration } : {}) });
  }

  /** The migration whose claim, staging or helper claim this is, and the claim's role. */
  private claimRole(name: string | undefined): { migration: string; role: string } | undefined {
    for (const m of this.migrations.list()) {
      const uid = m.metadata.uid ?? '';
      const key = `${this.ns}/${m.metadata.name}`;
      if (name === stagingClaimName(uid)) return { migration: key, role: 'staging claim' };
      if (name === sourceHelperClaimName(uid)) return { migration: key, role: 'helper claim' };
      if (name === m.spec.claimName) return { migration: key, role: `claim ${name}` };
    }
    return undefined;
  }

  private migrationOfPod(p: V1Pod): string | undefined {
    const uid = p.metadata?.ownerReferences?.find((r) => r.kind === 'VolumeMigration')?.uid;
    const m = this.migrations.list().find((x) => x.metadata.uid === uid);
    if (m) return `${this.ns}/${m.metadata.name}`;
    const claim = (p.spec?.volumes ?? []).find((v) => v.persistentVolumeClaim)?.persistentVolumeClaim?.claimName;
    return this.claimRole(claim)?.migration;
  }

  private pod(type: 'add' | 'update' | 'delete', p: V1Pod, old?: V1Pod): void {
    const pass = copyPassOf(p);
    const name = pass ? `${pass} copy pod` : `pod ${p.metadata?.name}`;
    const migration = this.migrationOfPod(p);
    const say = (what: string) => this.mark('cluster', `${name} ${what}`, migration);
    if (type === 'delete') return say('gone');
    if (type === 'add') return say(`created${isGated(p) ? ' (gated)' : ''}`);
    if (p.metadata?.deletionTimestamp && !old?.metadata?.deletionTimestamp) say('terminating');
    if (isGated(old) && !isGated(p)) say('gate lifted');
    if (p.spec?.nodeName && !old?.spec?.nodeName) say('scheduled');
    if (p.status?.phase !== old?.status?.phase) say(p.status?.phase ?? '?');
    if (isReady(p) && !isReady(old)) say('Ready');
  }

  private claim(type: 'add' | 'update' | 'delete', c: V1PersistentVolumeClaim, old?: V1PersistentVolumeClaim): void {
    const role = this.claimRole(c.metadata?.name);
    const name = role?.role ?? `claim ${c.metadata?.name}`;
    const say = (what: string) => this.mark('cluster', `${name} ${what}`, role?.migration);
    if (type === 'delete') return say('gone');
    if (type === 'add') return say(`created${c.status?.phase ? ` (${c.status.phase})` : ''}`);
    if (c.metadata?.deletionTimestamp && !old?.metadata?.deletionTimestamp) say('terminating');
    if (c.status?.phase !== old?.status?.phase) say(c.status?.phase ?? '?');
    const changed = annotationChanges(old?.metadata?.annotations, c.metadata?.annotations);
    if (changed) say(`annotations ${changed}`);
  }

  private volume(type: 'add' | 'update' | 'delete', v: V1PersistentVolume, old?: V1PersistentVolume): void {
    const ref = v.spec?.claimRef;
    if (ref?.namespace !== this.ns && old?.spec?.claimRef?.namespace !== this.ns) return;
    const role = this.claimRole(ref?.name);
    const say = (what: string) => this.mark('cluster', `volume ${v.metadata?.name} ${what}`, role?.migration);
    if (type === 'delete') return say('gone');
    if (type === 'add') return say(`created for ${role?.role ?? ref?.name}`);
    const was = old?.spec?.claimRef;
    if (ref?.name !== was?.name || ref?.uid !== was?.uid)
      say(`claimRef -> ${role?.role ?? ref?.name}${ref?.uid ? '' : ' (no uid)'}`);
    if (v.status?.phase !== old?.status?.phase) say(v.status?.phase ?? '?');
    if (v.spec?.persistentVolumeReclaimPolicy !== old?.spec?.persistentVolumeReclaimPolicy)
      say(`reclaim ${v.spec?.persistentVolumeReclaimPolicy}`);
  }

  private migration(type: 'add' | 'update' | 'delete', m: VolumeMigration, old?: VolumeMigration): void {
    const key = `${this.ns}/${m.metadata.name}`;
    if (type !== 'update') return;
    if (m.status?.phase !== old?.status?.phase) this.mark('cluster', `migration phase ${m.status?.phase}`, key);
  }

  /** pvshift's log lines about the migrations of this namespace, from `logPath`. */
  readLog(logPath: string): void {
    let text: string;
    try {
      text = fs.readFileSync(logPath, 'utf8');
    } catch {
      return;
    }
    for (const line of text.split('\n')) {
      if (!line.startsWith('{')) continue;
      let entry: {
        time?: number;
        msg?: string;
        migration?: string;
        step?: string;
        reason?: string;
        ms?: number;
        observeMs?: number;
      };
      try {
        entry = JSON.parse(line) as typeof entry;
      } catch {
        continue;
      }
      if (!entry.time || !entry.migration?.startsWith(`${this.ns}/`)) continue;
      const what =
        entry.msg === 'step'
          ? `step ${entry.step}`
          : entry.msg === 'step done'
            ? `step ${entry.step} done (${entry.ms} ms; observed in ${entry.observeMs} ms)`
            : entry.msg === 'wait'
              ? `wait ${entry.reason} (observed in ${entry.observeMs} ms)`
              : entry.msg;
      if (what) this.marks.push({ at: entry.time, source: 'pvshift', migration: entry.migration, what });
    }
  }

  /** The marks about `migration` (or about nothing known), in time order. */
  timeline(migration?: string): Mark[] {
    return this.marks
      .filter((m) => !migration || !m.migration || m.migration === migration)
      .sort((a, b) => a.at - b.at);
  }
}

/** The trace table: each mark's time from `zero`, and the gap since the mark before it. */
export function printTimeline(marks: Mark[], zero: number, options: { from?: number; to?: number } = {}): void {
  const shown = marks.filter((m) => m.at >= (options.from ?? -Infinity) && m.at <= (options.to ?? Infinity));
  console.log('    at |  delta | by      | step');
  console.log('-------|--------|---------|-----');
  let previous: number | undefined;
  for (const m of shown) {
    const at = ((m.at - zero) / 1000).toFixed(3);
    const delta = previous === undefined ? '' : ((m.at - previous) / 1000).toFixed(3);
    console.log(`${at.padStart(6)} | ${delta.padStart(6)} | ${m.source.padEnd(7)} | ${m.what}`);
    previous = m.at;
  }
}
