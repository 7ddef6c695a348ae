// The real-node tier, the workload-level features as users run them: `helm install`
// of the chart, then a 3-replica StatefulSet of real containers annotated as a
// whole (`pvshift.io/target-storage-class` with `pvshift.io/cutover: Evict`).
// pvshift makes a migration per replica claim and rolls the replicas itself,
// through the Eviction API, highest ordinal first, one at a time, with no
// `kubectl rollout restart`. Then `kubectl scale` adds a replica whose claim is
// born on the target class, and `kubectl pvshift status sts/NAME` says so.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import t from 'tap';
import type {
  V1PersistentVolume,
  V1PersistentVolumeClaim,
  V1Pod,
  V1StatefulSet,
  CoreV1Event,
} from '@kubernetes/client-node';
import { Informer, paths, type Kube } from '../../src/kube.js';
import {
  ANNOTATION_CUTOVER,
  ANNOTATION_TARGET_CLASS,
  ANNOTATION_WORKLOAD,
  LABEL_NAMESPACE_ACTIVE,
  LABEL_PRIVILEGED_COPY,
  migrationNameForClaim,
} from '../../src/names.js';
import { Reason } from '../../src/reasons.js';
import type { VolumeMigration } from '../../src/volume-migration.js';
import { freshNamespace } from '../helpers/cluster.js';
import { waitForPhase } from '../helpers/migration.js';
import { snapshotTree } from '../runner/fixtures/trees.js';
import {
  diagnoseOnFailure,
  installChart,
  kubectl,
  kubectlOk,
  realClusterFor,
  statefulSet,
  volumeOfClaim,
  waitForRollout,
} from './helpers.js';

t.setTimeout(20 * 60_000);
const cluster = await realClusterFor(t);
const { kube } = cluster;

const install = await installChart(cluster);
if (install.code !== 0) throw new Error(`helm install failed: ${install.stderr}`);

const SET = 'db';
const SOURCE_CLASS = 'standard'; // ext4
const TARGET_CLASS = 'fast'; // xfs
const fsType = (path: string): string => execFileSync('findmnt', ['-no', 'FSTYPE', path], { encoding: 'utf8' }).trim();
// Every xattr namespace the kernel lets root read: user, trusted, security.
const compare = (root: string) => snapshotTree(root, { xattrMatch: '-', skip: ['log'] });
const ordinalOf = (podName: string): number => Number(/-(\d+)$/.exec(podName)?.[1] ?? -1);
const isReady = (p: V1Pod): boolean =>
  !p.metadata?.deletionTimestamp && (p.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');

/**
 * Follows the replicas' readiness through a watch (every change, none missed
 * between polls): a replica is down while no pod of its ordinal is Ready and not
 * terminating (a terminating pod has left its Service's endpoints).
 */
interface ReplicaWatch {
  /** The most replicas down at one moment, and which. */
  mostDown: number[];
  /** Each time a replica went down, in order (an ordinal once per outage). */
  outages: number[];
  stop(): void;
}

async function watchReplicas(k: Kube, ns: string, app: string, replicas: number): Promise<ReplicaWatch> {
  const informer = new Informer<V1Pod>(k, paths.pods(ns), { labelSelector: `app=${app}` });
  const watch: ReplicaWatch = { mostDown: [], outages: [], stop: () => informer.stop() };
  let down = new Set<number>();
  let synced = false;
  const look = () => {
    // The first list adds the pods one by one: a replica not listed yet is not down.
    if (!synced) return;
    const up = new Set(
      informer
        .list()
        .filter(isReady)
        .map((p) => ordinalOf(p.metadata!.name!)),
    );
    const now = new Set([...Array(replicas).keys()].filter((i) => !up.has(i)));
    for (const i of now) if (!down.has(i)) watch.outages.push(i);
    if (now.size > watch.mostDown.length) watch.mostDown = [...now].sort();
    down = now;
  };
  informer.on(look);
  informer.start();
  await informer.waitForSync();
  synced = true;
  look();
  return watch;
}

/**
 * The migrations' messages as they change, as `kubectl pvshift status -w` shows
 * them: what a waiting replica said about its turn.
 */
async function watchMessages(k: Kube, ns: string): Promise<{ said: Map<string, string[]>; stop(): void }> {
  const informer = new Informer<VolumeMigration>(k, paths.migrations(ns));
  const said = new Map<string, string[]>();
  informer.on((_type, m) => {
    const message = m.status?.message;
    const seen = said.get(m.metadata.name) ?? [];
    if (message && seen[seen.length - 1] !== message) said.set(m.metadata.name, [...seen, message]);
  });
  informer.start();
  await informer.waitForSync();
  return { said, stop: () => informer.stop() };
}

let ns: string | undefined;
/** The replicas' claims as they were before pvshift touched them. */
const before = new Map<string, { volume: string; tree: ReturnType<typeof compare> }>();

t.test(
  'a StatefulSet annotated with a target class and cutover Evict moves itself, one replica at a time, highest ordinal first',
  async (t) => {
    ns = await freshNamespace(kube, 'policy');
    diagnoseOnFailure(t, cluster, () => ns);
    // The namespace opt-in gives copy pods CAP_SYS_ADMIN: trusted.* xattrs too.
    await kube.patch(paths.namespaces(ns), { metadata: { labels: { [LABEL_PRIVILEGED_COPY]: 'true' } } }, 'merge');
    await kube.create(
      paths.statefulSets(ns),
      statefulSet(cluster.images.app.ref, SET, {
        replicas: 3,
        storageClass: SOURCE_CLASS,
        size: '512Mi',
        privileged: true,
        megabytes: 16,
      }),
    );
    const rolledOut = await waitForRollout(kube, ns, SET);
    const claims = [0, 1, 2].map((i) => `data-${SET}-${i}`);
    for (const claim of claims) {
      const { pv, path } = await volumeOfClaim(kube, ns, claim);
      t.equal(fsType(path), 'ext4', `${claim} starts on ext4 (${pv.metadata?.name})`);
      before.set(claim, { volume: pv.metadata!.name!, tree: compare(path) });
    }
    const podsBefore = new Map(
      (await kube.list<V1Pod>(paths.pods(ns), { labelSelector: `app=${SET}` })).items.map((p) => [
        p.metadata!.name!,
        p.metadata!.uid!,
      ]),
    );
    t.equal(podsBefore.size, 3, 'three replicas run');

    const replicas = await watchReplicas(kube, ns, SET, 3);
    const messages = await watchMessages(kube, ns);
    t.same(replicas.mostDown, [], 'all three replicas Ready before the annotation');

    // What a user types: one annotation of the workload, nothing per claim, no rollout restart.
    await kubectlOk(t, cluster, [
      'annotate',
      'statefulset',
      SET,
      '-n',
      ns,
      `${ANNOTATION_TARGET_CLASS}=${TARGET_CLASS}`,
      `${ANNOTATION_CUTOVER}=Evict`,
    ]);

    const done: VolumeMigration[] = [];
    try {
      for (const claim of [...claims].reverse())
        done.push(await waitForPhase(kube, ns, migrationNameForClaim(claim), ['Succeeded'], 600_000));
      await waitForRollout(kube, ns, SET);
    } finally {
      replicas.stop();
      messages.stop();
    }

    t.same(
      replicas.mostDown.length,
      1,
      `never more than one replica down at a time (most at once: ${replicas.mostDown.map((i) => `${SET}-${i}`).join(', ') || 'none'})`,
    );
    t.same(replicas.outages, [2, 1, 0], 'each replica went down once, highest ordinal first');

    const set = (await kube.get<V1StatefulSet>(paths.statefulSets(ns, SET)))!;
    t.equal(
      set.metadata?.generation,
      rolledOut.metadata?.generation,
      'the StatefulSet spec was never changed (no rollout restart)',
    );
    t.notOk(
      set.spec?.template?.metadata?.annotations?.['kubectl.kubernetes.io/restartedAt'],
      'no restartedAt annotation on the pod template',
    );
    const podsAfter = (await kube.list<V1Pod>(paths.pods(ns), { labelSelector: `app=${SET}` })).items;
    for (const pod of podsAfter) {
      const name = pod.metadata!.name!;
      t.not(pod.metadata?.uid, podsBefore.get(name), `${name} was recreated (evicted by pvshift)`);
      t.same(pod.spec?.schedulingGates ?? [], [], `${name}: no scheduling gate left`);
      t.ok(isReady(pod), `${name} Ready`);
    }

    for (let i = 1; i < done.length; i++) {
      const previous = done[i - 1]!;
      const current = done[i]!;
      t.ok(
        Date.parse(current.status!.cutoverStartTime!) >= Date.parse(previous.status!.completionTime!),
        `${current.spec.claimName} cut over after ${previous.spec.claimName} finished`,
      );
    }
    const turn = (messages.said.get(migrationNameForClaim(claims[0]!)) ?? []).filter((m) =>
      m.startsWith(`StatefulSet/${SET}`),
    );
    t.ok(turn.length > 0, `${claims[0]} said why it waited for its turn: ${turn[0]}`);

    for (const migration of done) {
      const claim = migration.spec.claimName;
      t.equal(migration.metadata.annotations?.[ANNOTATION_WORKLOAD], `StatefulSet/${SET}`, `${claim}: the policy's`);
      t.equal(migration.spec.cutover, 'Evict', `${claim}: cutover Evict, from the StatefulSet`);
      t.equal(migration.spec.targetStorageClassName, TARGET_CLASS, `${claim}: target ${TARGET_CLASS}`);
      const { pv, path } = await volumeOfClaim(kube, ns, claim);
      const bound = await kube.get<V1PersistentVolumeClaim>(paths.claims(ns, claim));
      t.equal(bound?.spec?.storageClassName, TARGET_CLASS, `${claim} is on ${TARGET_CLASS}`);
      t.equal(pv.spec?.storageClassName, TARGET_CLASS, `${claim}: its volume ${pv.metadata?.name} too`);
      t.equal(fsType(path), 'xfs', `${claim} is on xfs now`);
      const source = before.get(claim)!;
      t.equal(migration.status?.sourceVolumeName, source.volume, `${claim}: moved from ${source.volume}`);
      t.same(
        compare(path),
        source.tree,
        `${claim}: every entry, byte, owner, mode, ns mtime, link, xattr (user, trusted, security) and ACL as before`,
      );
      const old = (await kube.get<V1PersistentVolume>(paths.volumes(source.volume)))!;
      t.equal(old.spec?.persistentVolumeReclaimPolicy, 'Retain', `${claim}: the old volume is kept`);
      const written = readFileSync(`${old.spec!.local!.path}/log/heartbeat`, 'utf8');
      const after = readFileSync(`${path}/log/heartbeat`, 'utf8');
      t.ok(
        written.length > 0 && after.startsWith(written),
        `${claim}: what the app wrote until it was evicted is all there (${written.split('\n').length - 1} lines)`,
      );
      t.same(migration.status?.copyFidelity?.dropped, [], `${claim}: nothing dropped (privileged copy opted in)`);
      t.comment(`${claim}: downtime ${migration.status?.downtimeSeconds?.toFixed(1)} s`);
    }

    // What a user reads: `kubectl describe` of the StatefulSet, and the migrations' Events.
    const described = await kubectlOk(t, cluster, ['describe', 'statefulset', SET, '-n', ns]);
    for (const claim of claims) {
      t.match(
        described,
        new RegExp(
          `${Reason.ReplicaMigrationCreated}\\s.*VolumeMigration ${claim} moves claim ${claim} to ${TARGET_CLASS}`,
        ),
        `kubectl describe statefulset shows ${Reason.ReplicaMigrationCreated} for ${claim}`,
      );
    }
    const events = (await kube.list<CoreV1Event>(paths.events(ns))).items;
    const reasonsOf = (kind: string, name: string) =>
      events.filter((e) => e.involvedObject.kind === kind && e.involvedObject.name === name).map((e) => e.reason);
    for (const claim of claims) {
      const reasons = reasonsOf('VolumeMigration', migrationNameForClaim(claim));
      for (const reason of [Reason.Evicting, Reason.CutoverStarted, Reason.GateLifted, Reason.Succeeded])
        t.ok(reasons.includes(reason), `${claim}: Event ${reason}`);
    }
    t.same(
      events.filter((e) => e.reason === Reason.GateMissed).map((e) => e.message),
      [],
      'no pod got past the webhook ungated',
    );

    const status = await kubectl(cluster, ['pvshift', 'status', `sts/${SET}`, '-n', ns]);
    t.equal(status.code, 0, `kubectl pvshift status sts/${SET} succeeds ${status.stderr}`);
    t.match(
      status.stdout,
      new RegExp(`^3/3 replicas on ${TARGET_CLASS}\\n`),
      `kubectl pvshift status sts/${SET}: 3/3 on ${TARGET_CLASS}`,
    );
  },
);

t.test('kubectl scale adds a replica whose claim is born on the target class, with no migration', async (t) => {
  t.ok(ns, 'the StatefulSet of the test before');
  diagnoseOnFailure(t, cluster, () => ns);
  const namespace = ns!;
  const labels = (await kube.get<{ metadata?: { labels?: Record<string, string> } }>(paths.namespaces(namespace)))
    ?.metadata?.labels;
  t.equal(labels?.[LABEL_NAMESPACE_ACTIVE], 'true', 'the standing policy keeps the namespace in the webhooks’ scope');

  await kubectlOk(t, cluster, ['scale', 'statefulset', SET, '-n', namespace, '--replicas=4']);
  await waitForRollout(kube, namespace, SET);
  const claim = `data-${SET}-3`;
  const created = (await kube.get<V1PersistentVolumeClaim>(paths.claims(namespace, claim)))!;
  t.equal(created.spec?.storageClassName, TARGET_CLASS, `${claim} created on ${TARGET_CLASS}`);
  t.notOk(created.spec?.dataSourceRef, `${claim}: nothing to populate from`);
  const { pv, path } = await volumeOfClaim(kube, namespace, claim);
  t.equal(pv.spec?.storageClassName, TARGET_CLASS, `${claim}: its volume ${pv.metadata?.name} too`);
  t.equal(fsType(path), 'xfs', `${claim} is on xfs`);
  const migrations = (await kube.list<VolumeMigration>(paths.migrations(namespace))).items;
  t.same(
    migrations.map((m) => m.spec.claimName).sort(),
    [0, 1, 2].map((i) => `data-${SET}-${i}`),
    `no VolumeMigration for ${claim}`,
  );
  const pod = (await kube.get<V1Pod>(paths.pods(namespace, `${SET}-3`)))!;
  t.ok(isReady(pod), `${SET}-3 Ready on its new volume`);
  t.same(pod.spec?.schedulingGates ?? [], [], `${SET}-3 was never gated`);
  const created3 = (await kube.list<CoreV1Event>(paths.events(namespace))).items.filter(
    (e) => e.reason === Reason.ReplicaMigrationCreated,
  );
  t.equal(created3.length, 3, `no ${Reason.ReplicaMigrationCreated} for ${claim}`);
});

t.test('kubectl pvshift status sts/NAME shows every replica on the target class', async (t) => {
  t.ok(ns, 'the StatefulSet of the tests before');
  diagnoseOnFailure(t, cluster, () => ns);
  const status = await kubectl(cluster, ['pvshift', 'status', `sts/${SET}`, '-n', ns!]);
  t.equal(status.code, 0, `exit code 0 ${status.stderr}`);
  t.match(status.stdout, new RegExp(`^4/4 replicas on ${TARGET_CLASS}\\n`), 'the one line says all four are there');
  for (const i of [0, 1, 2]) t.match(status.stdout, new RegExp(`data-${SET}-${i}\\s.*Succeeded`), `data-${SET}-${i}`);
  t.comment(status.stdout);
});
