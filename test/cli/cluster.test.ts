// kubectl-pvshift against the real local control plane with pvshift running:
// the CLI runs as a real subprocess with the cluster's kubeconfig, as a user
// would run it, and the assertions are on its output, its exit code and the
// objects it left behind.
import t from 'tap';
import type { V1PersistentVolume, V1PersistentVolumeClaim, V1Pod } from '@kubernetes/client-node';
import { Kube, paths } from '../../src/kube.js';
import { copyFidelityFor } from '../../src/pod-security.js';
import type { KeptVolume, VolumeMigration, VolumeMigrationStatus } from '../../src/volume-migration.js';
import {
  clusterFor,
  freshNamespace,
  statefulSet,
  volumeOf,
  waitFor,
  waitForClaimBound,
  waitForGone,
  waitForPodReady,
} from '../helpers/cluster.js';
import { createMigration, fillVolume, waitForPhase } from '../helpers/migration.js';
import { installPvshift } from '../helpers/pvshift.js';
import { runCli, type Run } from './run-cli.js';

const cluster = await clusterFor(t);
const { kube } = cluster;
const installation = await installPvshift(cluster);
// 2 MiB/s: a 64 MiB final copy lasts half a minute, long enough to roll it back in
// flight even on a loaded machine (each CLI run starts a Node process).
const pvshift = await installation.start(['--copy-bandwidth-limit=2048']);
t.teardown(() => pvshift.stop());

/** Runs kubectl-pvshift from source with the cluster's kubeconfig (unless `bare`); `onStdout` sees the output so far. */
function cli(args: string[], options: { bare?: boolean; onStdout?: (stdout: string) => void } = {}): Promise<Run> {
  return runCli(cluster.kubeconfigPath, args, options);
}

function claim(
  name: string,
  extra: Partial<NonNullable<V1PersistentVolumeClaim['spec']>> = {},
): V1PersistentVolumeClaim {
  return {
    metadata: { name },
    spec: {
      accessModes: ['ReadWriteOnce'],
      storageClassName: 'standard',
      resources: { requests: { storage: '1Gi' } },
      ...extra,
    },
  };
}

function appPod(name: string, claimName: string): V1Pod {
  return {
    metadata: { name },
    spec: {
      terminationGracePeriodSeconds: 1,
      containers: [
        { name: 'app', image: 'registry.example/app:1', volumeMounts: [{ name: 'data', mountPath: '/data' }] },
      ],
      volumes: [{ name: 'data', persistentVolumeClaim: { claimName } }],
    },
  };
}

interface PlanJson {
  items: {
    namespace: string;
    claim: string;
    storageClass: string;
    ready: boolean;
    consumers: string[];
    owners: string[];
    usedFrom: string;
    findings: { severity: string; code: string; message: string }[];
  }[];
}

interface CleanupJson {
  items: {
    name: string;
    claim: string;
    migration: string;
    record: string;
    phase: string;
    releasable: boolean;
    reason: string | null;
  }[];
  released: string[];
  notReleased: { name: string; reason: string }[];
}

/** Copy pods keep everything here (privileged, with pvshift's opt-in): plan has no fidelity finding to make. */
async function allowFullCopy(ns: string): Promise<void> {
  await kube.patch(paths.namespaces(ns), {
    metadata: { labels: { 'pod-security.kubernetes.io/enforce': 'privileged', 'pvshift.io/privileged-copy': 'true' } },
  });
}

t.test('plan on a mixed namespace shows every finding and changes nothing', async (t) => {
  const ns = await freshNamespace(kube, 'plan');
  await allowFullCopy(ns);
  await kube.create(paths.statefulSets(ns), statefulSet('web'));
  await kube.create(
    paths.claims(ns),
    claim('logs', { storageClassName: 'expandable', resources: { requests: { storage: '2Gi' } } }),
  );
  await kube.create(paths.claims(ns), claim('raw', { volumeMode: 'Block' }));
  await kube.create(paths.claims(ns), claim('single', { accessModes: ['ReadWriteOncePod'] }));
  await kube.create(paths.claims(ns), claim('later', { storageClassName: 'fast' }));
  await waitForPodReady(kube, ns, 'web-0');
  for (const name of ['data-web-0', 'logs', 'raw', 'single']) await waitForClaimBound(kube, ns, name);

  const json = await cli(['plan', '-n', ns, '--to', 'fast', '--size', '1536Mi', '-o', 'json']);
  t.equal(json.code, 0, `plan exits 0: ${json.stderr}`);
  const rows = new Map((JSON.parse(json.stdout) as PlanJson).items.map((r) => [r.claim, r]));
  const codes = (name: string) => (rows.get(name)?.findings ?? []).map((f) => f.code).sort();
  t.same([...rows.keys()].sort(), ['data-web-0', 'later', 'logs', 'raw', 'single'], 'every claim of the namespace');
  t.same(codes('data-web-0'), [], 'the StatefulSet claim is clean');
  t.same(rows.get('data-web-0')?.consumers, ['web-0']);
  t.same(rows.get('data-web-0')?.owners, ['StatefulSet/web'], 'owner from the pod');
  t.equal(rows.get('data-web-0')?.usedFrom, 'unknown', 'used bytes are not guessed');
  t.same(codes('logs'), ['NoConsumer', 'Shrink'], 'shrinking 2Gi to 1536Mi is measured first');
  t.match(
    rows.get('logs')?.findings.find((f) => f.code === 'Shrink')?.message,
    /will be measured; refused if the data does not fit/,
  );
  t.same(codes('raw'), ['BlockVolumeUnsupported']);
  t.same(codes('single'), ['NoConsumer', 'NoPreSync'], 'RWOP: no pre-sync, a warning');
  t.same(codes('later'), ['ClaimNotBound'], 'the unbound WaitForFirstConsumer claim');
  t.same(
    [...rows.values()]
      .filter((r) => r.ready)
      .map((r) => r.claim)
      .sort(),
    ['data-web-0', 'logs', 'single'],
  );

  const table = await cli(['plan', '-n', ns, '--to', 'fast']);
  t.equal(table.code, 0);
  t.match(
    table.stdout,
    /data-web-0\s+standard -> fast\s+1Gi\s+unknown \(<= 1Gi\)\s+web-0\s+StatefulSet\/web\s+ok/,
    'the table row of the StatefulSet claim',
  );
  t.match(table.stdout, /raw: blocking BlockVolumeUnsupported/);
  t.match(table.stdout, /3 of 5 claims would move; 2 blocked\./);

  const missing = await cli(['plan', '-n', ns, '--to', 'platinum', '-o', 'json']);
  t.equal(missing.code, 0);
  const missingRows = (JSON.parse(missing.stdout) as PlanJson).items;
  t.ok(
    missingRows.every((r) => r.findings.some((f) => f.code === 'StorageClassNotFound')),
    'a missing target class blocks every claim',
  );

  const filtered = await cli(['plan', '-n', ns, '--to', 'fast', '--from-class', 'expandable', '-o', 'json']);
  t.same(
    (JSON.parse(filtered.stdout) as PlanJson).items.map((r) => r.claim),
    ['logs'],
    '--from-class selects by current class',
  );

  const migrations = await kube.list<VolumeMigration>(paths.migrations(ns));
  t.equal(migrations.items.length, 0, 'plan created nothing');
});

t.test("plan says what the namespace's Pod Security level costs before anything starts", async (t) => {
  const levels: { level: string; labels: Record<string, string>; expect: string[] }[] = [
    {
      level: 'restricted',
      labels: { 'pod-security.kubernetes.io/enforce': 'restricted' },
      expect: ['blocking:PodSecurityRestricted'],
    },
    {
      level: 'baseline',
      labels: { 'pod-security.kubernetes.io/enforce': 'baseline' },
      expect: ['warning:CopyFidelity'],
    },
    { level: 'privileged, no opt-in', labels: {}, expect: ['warning:CopyFidelity'] },
    {
      level: 'privileged, opted in',
      labels: { 'pod-security.kubernetes.io/enforce': 'privileged', 'pvshift.io/privileged-copy': 'true' },
      expect: [],
    },
  ];
  // One claim per namespace, all found by one plan over every namespace.
  const mark = { 'pvshift-test': `psa-${process.pid}` };
  const namespaces = await Promise.all(
    levels.map(async (l) => {
      const ns = await freshNamespace(kube, 'psa');
      await kube.patch(paths.namespaces(ns), { metadata: { labels: l.labels } });
      await kube.create(paths.claims(ns), { ...claim('data'), metadata: { name: 'data', labels: mark } });
      await waitForClaimBound(kube, ns, 'data');
      return ns;
    }),
  );
  const run = await cli(['plan', '-A', '-l', `pvshift-test=${mark['pvshift-test']}`, '--to', 'fast', '-o', 'json']);
  t.equal(run.code, 0, run.stderr);
  const rows = (JSON.parse(run.stdout) as PlanJson).items;
  for (const [i, l] of levels.entries()) {
    const ns = namespaces[i]!;
    const findings = rows.find((r) => r.namespace === ns)?.findings.filter((f) => f.code !== 'NoConsumer') ?? [];
    t.same(
      findings.map((f) => `${f.severity}:${f.code}`),
      l.expect,
      l.level,
    );
    const decision = copyFidelityFor(ns, l.labels);
    if (l.expect.length)
      t.equal(
        findings[0]?.message,
        decision.ok ? decision.note : decision.message,
        `${l.level}: the controller's words`,
      );
  }
  const restricted = namespaces[0]!;
  const refused = await cli(['migrate', '-n', restricted, '--to', 'fast', '--yes']);
  t.equal(refused.code, 1, 'migrate skips the claim of the restricted namespace');
  t.match(
    refused.stderr,
    new RegExp(`^skipped ${restricted}/data: namespace ${restricted} enforces Pod Security "restricted"`),
  );
  t.equal((await kube.list<VolumeMigration>(paths.migrations(restricted))).items.length, 0, 'and creates nothing');
});

let migratedNs = '';
let oldVolume = '';
let secondOldVolume = '';

t.test('migrate --yes, then status --watch follows a real migration to the end', async (t) => {
  const ns = (migratedNs = await freshNamespace(kube, 'move'));
  await kube.create(paths.statefulSets(ns), statefulSet('db'));
  await waitForPodReady(kube, ns, 'db-0');
  const pv = await volumeOf(kube, ns, 'data-db-0');
  oldVolume = pv.metadata!.name!;
  fillVolume(pv.spec!.hostPath!.path, 2);

  const refused = await cli(['migrate', '-n', ns, '--to', 'fast', 'data-db-0']);
  t.equal(refused.code, 1, 'without --yes and without a terminal it refuses');
  t.match(
    refused.stderr,
    /^error: refusing to create 1 VolumeMigration without confirmation: stdin is not a terminal; pass --yes\n$/,
  );

  const dry = await cli([
    'migrate',
    '-n',
    ns,
    '--to',
    'fast',
    '--verify',
    '--cutover',
    'recreate',
    '--dry-run',
    'data-db-0',
  ]);
  t.equal(dry.code, 0);
  t.match(
    dry.stdout,
    /kind: VolumeMigration[\s\S]*claimName: data-db-0[\s\S]*verify: checksum/,
    'the dry run prints the object',
  );
  t.equal((await kube.list<VolumeMigration>(paths.migrations(ns))).items.length, 0, 'and creates nothing');

  const created = await cli(['migrate', '-n', ns, '--to', 'fast', '--yes', 'data-db-0']);
  t.equal(created.code, 0, `migrate exits 0: ${created.stderr}`);
  t.match(created.stdout, /volumemigration\.pvshift\.io\/data-db-0 created/);

  const watching = cli(['status', '-n', ns, '--watch']);
  await waitForPhase(kube, ns, 'data-db-0', ['WaitingForCutover']);
  const early = await cli(['rollback', '-n', ns, 'data-db-0']);
  t.equal(early.code, 1, 'rollback before cutover is refused');
  t.match(early.stderr, /^error: .*nothing has been cut over.*use kubectl pvshift abort data-db-0/);
  await kube.delete(paths.pods(ns, 'db-0'));
  const watched = await watching;
  t.equal(watched.code, 0, `status --watch ends with exit 0: ${watched.stderr}`);
  // Each frame starts with the table's header (details may follow it after a blank line).
  const frames = watched.stdout.split(/^(?=NAME\s)/m);
  t.ok(frames.length > 1, `several frames were drawn (${frames.length})`);
  t.match(frames.at(-1), /data-db-0\s+data-db-0\s+fast\s+Succeeded\s+\[#{20}\] 100%/, 'the last frame shows Succeeded');
  t.match(watched.stdout, /WaitingForCutover/, 'and the watch saw the waiting phase');

  const after = await cli(['rollback', '-n', ns, 'data-db-0']);
  t.equal(after.code, 1);
  t.match(
    after.stderr,
    new RegExp(`^error: .*not supported yet \\(the old volume ${oldVolume} is kept`),
    'names the retained old volume',
  );
  t.equal(after.stderr.trim().split('\n').length, 1, 'in one line');
});

t.test('cleanup lists every old volume, whatever became of its record', async (t) => {
  const ns = migratedNs;
  t.ok(oldVolume, 'the previous test left an old volume');
  // What the old "delete it to migrate again" told users to do: the record goes, the old volume stays.
  await kube.delete(paths.migrations(ns, 'data-db-0'));
  await waitForGone(kube, paths.migrations(ns, 'data-db-0'));
  const created = await cli(['migrate', '-n', ns, '--to', 'expandable', '--yes', 'data-db-0']);
  t.equal(created.code, 0, created.stderr);
  await waitForPhase(kube, ns, 'data-db-0', ['WaitingForCutover']);
  await kube.delete(paths.pods(ns, 'db-0'));
  const second = await waitForPhase(kube, ns, 'data-db-0', ['Succeeded']);
  secondOldVolume = second.status?.sourceVolumeName ?? '';
  t.ok(
    secondOldVolume && secondOldVolume !== oldVolume,
    `the second migration kept another old volume (${secondOldVolume})`,
  );

  const json = await cli(['cleanup', '-n', ns, '-o', 'json']);
  t.equal(json.code, 0, json.stderr);
  const items = new Map((JSON.parse(json.stdout) as CleanupJson).items.map((v) => [v.name, v]));
  t.match(
    items.get(oldVolume),
    { migration: `${ns}/data-db-0`, record: 'record deleted', phase: 'Released', releasable: true },
    'the first old volume, its record deleted',
  );
  t.match(
    items.get(secondOldVolume),
    {
      claim: `${ns}/data-db-0`,
      migration: `${ns}/data-db-0`,
      record: 'Succeeded',
      phase: 'Released',
      releasable: true,
    },
    'the second, with its record',
  );
  const all = await cli(['cleanup', '-A', '-o', 'json']);
  const everywhere = (JSON.parse(all.stdout) as CleanupJson).items.map((v) => v.name);
  t.ok(
    [oldVolume, secondOldVolume].every((v) => everywhere.includes(v)),
    'cleanup -A lists both',
  );

  const listed = await cli(['cleanup', '-n', ns]);
  t.equal(listed.code, 0, listed.stderr);
  // Its claimRef names pvshift's helper claim, and no record says which claim it held.
  t.match(
    listed.stdout,
    new RegExp(`${oldVolume}\\s+1Gi\\s+<unknown>\\s+${ns}/data-db-0\\s+record deleted\\s+Released\\s+-\\s+yes`),
  );
  t.match(
    listed.stdout,
    new RegExp(
      `${secondOldVolume}\\s+1Gi\\s+${ns}/data-db-0\\s+${ns}/data-db-0\\s+Succeeded\\s+Released\\s+\\S+\\s+yes`,
    ),
  );
  for (const name of [oldVolume, secondOldVolume]) {
    const pv = await kube.get<V1PersistentVolume>(paths.volumes(name));
    t.equal(pv?.spec?.persistentVolumeReclaimPolicy, 'Retain', `listing changed nothing (${name})`);
  }
});

t.test('cleanup --yes never releases a volume bound to a claim again', async (t) => {
  const ns = migratedNs;
  t.ok(secondOldVolume, 'the previous test left two old volumes');
  // The user takes the data of the second old volume back: free its claimRef, bind a claim to it.
  await kube.patch(paths.volumes(secondOldVolume), { spec: { claimRef: null } });
  const pv = await kube.get<V1PersistentVolume>(paths.volumes(secondOldVolume));
  await kube.create(
    paths.claims(ns),
    claim('recovered', { storageClassName: pv?.spec?.storageClassName ?? '', volumeName: secondOldVolume }),
  );
  const recovered = await waitForClaimBound(kube, ns, 'recovered');
  t.equal(recovered.spec?.volumeName, secondOldVolume);

  const released = await cli(['cleanup', '-n', ns, '--yes']);
  t.equal(released.code, 0, released.stderr);
  t.match(
    released.stdout,
    new RegExp(`${secondOldVolume}\\s+.*Succeeded\\s+Bound\\s+\\S+\\s+no: bound to claim ${ns}/recovered: in use`),
    'listed, and why it stays',
  );
  t.match(released.stdout, new RegExp(`persistentvolume/${oldVolume} released: reclaim policy set to Delete`));
  t.notMatch(released.stdout, new RegExp(`persistentvolume/${secondOldVolume} released`));
  await waitForGone(kube, paths.volumes(oldVolume));
  t.pass('the provisioner reclaimed the old volume nothing used');
  const kept = await kube.get<V1PersistentVolume>(paths.volumes(secondOldVolume));
  t.equal(kept?.spec?.persistentVolumeReclaimPolicy, 'Retain', 'the bound volume is still Retain');
  t.equal(kept?.status?.phase, 'Bound');

  // Once the user lets it go, it is an old volume like any other: listed until released.
  await kube.delete(paths.claims(ns, 'recovered'));
  await waitFor(`${secondOldVolume} Released`, async () =>
    (await kube.get<V1PersistentVolume>(paths.volumes(secondOldVolume)))?.status?.phase === 'Released'
      ? true
      : undefined,
  );
  const again = await cli(['cleanup', '-n', ns, '--yes', '-o', 'json']);
  t.same((JSON.parse(again.stdout) as CleanupJson).released, [secondOldVolume]);
  await waitForGone(kube, paths.volumes(secondOldVolume));
  const none = await cli(['cleanup', '-n', ns]);
  t.match(none.stdout, /^No retained old volumes\.\n$/);
});

t.test('migrate replaces a finished record; an unfinished one blocks', async (t) => {
  const ns = migratedNs;
  const before = await kube.get<VolumeMigration>(paths.migrations(ns, 'data-db-0'));
  t.equal(before?.status?.phase, 'Succeeded', 'the record of the last migration is there');

  const replaced = await cli(['migrate', '-n', ns, '--to', 'fast', '--yes', 'data-db-0']);
  t.equal(replaced.code, 0, replaced.stderr);
  t.match(
    replaced.stdout,
    new RegExp(
      `^volumemigration\\.pvshift\\.io/data-db-0 replaced in ${ns}: the finished one \\(Succeeded\\) was deleted and a new one created\n`,
    ),
  );
  const after = await kube.get<VolumeMigration>(paths.migrations(ns, 'data-db-0'));
  t.not(after?.metadata.uid, before?.metadata.uid, 'a new record');
  t.equal(after?.spec.targetStorageClassName, 'fast');

  const blocked = await cli(['migrate', '-n', ns, '--to', 'standard', '--yes', 'data-db-0']);
  t.equal(blocked.code, 1, 'an unfinished record blocks');
  t.match(
    blocked.stderr,
    new RegExp(
      `^skipped ${ns}/data-db-0: already being migrated by VolumeMigration data-db-0 \\(\\w+\\); see kubectl pvshift status data-db-0 -n ${ns}\n`,
    ),
  );
  t.match(blocked.stderr, /error: every selected claim has a blocking finding, so nothing was created/);
  t.equal(
    (await kube.get<VolumeMigration>(paths.migrations(ns, 'data-db-0')))?.metadata.uid,
    after?.metadata.uid,
    'and stays as it was',
  );

  const aborted = await cli(['abort', '-n', ns, 'data-db-0']);
  t.equal(aborted.code, 0, aborted.stderr);
  await waitForPhase(kube, ns, 'data-db-0', ['Aborted']);
  const dry = await cli(['migrate', '-n', ns, '--to', 'fast', '--dry-run', 'data-db-0']);
  t.equal(dry.code, 0, dry.stderr);
  t.match(
    dry.stderr,
    new RegExp(
      `^would replace the finished VolumeMigration ${ns}/data-db-0 \\(Aborted\\): delete it, then create the new one\n`,
    ),
  );
  t.equal(
    (await kube.get<VolumeMigration>(paths.migrations(ns, 'data-db-0')))?.status?.phase,
    'Aborted',
    'the dry run replaced nothing',
  );
});

t.test('rollback during a slow copy brings the claim back', async (t) => {
  const ns = await freshNamespace(kube, 'back');
  await kube.create(paths.claims(ns), claim('big'));
  await kube.create(paths.pods(ns), appPod('big-app', 'big'));
  await waitForPodReady(kube, ns, 'big-app');
  const pv = await volumeOf(kube, ns, 'big');
  fillVolume(pv.spec!.hostPath!.path, 64);

  const created = await cli(['migrate', '-n', ns, '--to', 'fast', '--no-presync', '--yes', 'big']);
  t.equal(created.code, 0, created.stderr);
  await waitForPhase(kube, ns, 'big', ['WaitingForCutover']);
  await kube.delete(paths.pods(ns, 'big-app'));
  await waitForGone(kube, paths.pods(ns, 'big-app'));
  await kube.create(paths.pods(ns), appPod('big-app', 'big'));
  await waitFor(
    'the copy under way',
    async () => {
      const m = await kube.get<VolumeMigration>(paths.migrations(ns, 'big'));
      const p = m?.status?.progress;
      return m?.status?.phase === 'Populating' && p && p.bytesDone > 0 && p.bytesDone < p.bytesTotal ? true : undefined;
    },
    60_000,
  );
  // Both at once: the copy must still be running when the rollback lands.
  const [rolled, shown] = await Promise.all([cli(['rollback', '-n', ns, 'big']), cli(['status', '-n', ns, 'big'])]);
  t.equal(rolled.code, 0, rolled.stderr);
  t.match(rolled.stdout, new RegExp(`rollback requested: .* goes back to its original volume ${pv.metadata!.name!}`));
  t.match(
    shown.stdout,
    /big\s+big\s+fast\s+(Populating|RollingBack)\s+\[[#-]{20}\]\s+\d+%/,
    `status shows the copy with a bar:\n${shown.stdout}`,
  );
  await waitForPhase(kube, ns, 'big', ['RolledBack']);
  const back = await waitForClaimBound(kube, ns, 'big');
  t.equal(back.spec?.volumeName, pv.metadata?.name, 'the claim is on its original volume again');
  t.equal(back.spec?.storageClassName, 'standard');
  await waitForPodReady(kube, ns, 'big-app');

  const final = await cli(['status', '-n', ns]);
  t.equal(final.code, 1, 'status exits 1 for a RolledBack migration');
  t.match(final.stdout, /RolledBack/);
  const again = await cli(['abort', '-n', ns, 'big']);
  t.equal(again.code, 1);
  t.match(
    again.stderr,
    /^error: VolumeMigration .*\/big has already finished \(RolledBack\); there is nothing to abort\n$/,
  );
});

t.test('every bad input is one line on stderr and exit code 1', async (t) => {
  const ns = await freshNamespace(kube, 'bad');
  const cases: { name: string; args: string[]; bare?: boolean; error: RegExp }[] = [
    {
      name: 'unknown context',
      args: ['status', '--context', 'nope'],
      error: new RegExp(
        `^error: context "nope" not found in ${cluster.kubeconfigPath.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}; see kubectl config get-contexts$`,
      ),
    },
    {
      name: 'unknown class in migrate',
      args: ['migrate', '-n', ns, '--to', 'platinum', '--yes'],
      error: /^error: StorageClass "platinum" not found; see kubectl get storageclass$/,
    },
    {
      name: 'unknown claim',
      args: ['plan', '-n', ns, '--to', 'fast', 'ghost'],
      error: new RegExp(`^error: claim "ghost" not found in namespace "${ns}"; see kubectl get pvc -n ${ns}$`),
    },
    {
      name: 'unknown migration',
      args: ['abort', '-n', ns, 'ghost'],
      error: /^error: VolumeMigration "ghost" not found in namespace/,
    },
    {
      name: 'unknown command',
      args: ['shift'],
      error: /^error: unknown command "shift" for "kubectl pvshift"; commands: /,
    },
    {
      name: 'bad -o',
      args: ['status', '-o', 'xml'],
      error: /^error: unknown output format "xml"; use -o json or -o yaml/,
    },
    {
      name: 'no match for migrate',
      args: ['migrate', '-n', ns, '--to', 'fast', '--yes'],
      error: /^error: no claims match in namespace/,
    },
    {
      name: 'missing kubeconfig',
      args: ['status', '--kubeconfig', '/nonexistent/config'],
      bare: true,
      error: /^error: kubeconfig \/nonexistent\/config not found; pass --kubeconfig PATH or set KUBECONFIG$/,
    },
  ];
  for (const c of cases) {
    const run = await cli(c.args, c.bare ? { bare: true } : {});
    t.equal(run.code, 1, `${c.name}: exit code 1`);
    t.equal(run.stderr.split('\n').filter(Boolean).length, 1, `${c.name}: one line`);
    t.match(run.stderr.trim(), c.error, `${c.name}: ${run.stderr.trim()}`);
  }
});

t.test('status shows what a Held migration keeps where, exits 1, and --watch waits past Held', async (t) => {
  // Held follows failures the local control plane will not produce on demand.
  // With pvshift stopped (for good: this is the file's last test), the record is
  // written as its controller writes it, with its own identity (the chart's
  // admission policy lets only pvshift write status), so what the CLI shows is
  // exactly what is asserted.
  await pvshift.stop();
  const asPvshift = Kube.fromDefault(installation.kubeconfigPath);
  t.teardown(() => asPvshift.close());
  const ns = await freshNamespace(kube, 'held');
  await createMigration(kube, ns, 'db', { claimName: 'db', targetStorageClassName: 'fast' });
  const kept: KeptVolume[] = [
    {
      name: 'pv-src-1',
      role: 'source',
      message:
        'the original data, reclaim policy Retain; to use it again, point its claimRef at a claim and create that claim with spec.volumeName: pv-src-1',
    },
    {
      name: 'pv-copy-1',
      role: 'copy',
      message: 'the verified final copy on fast, reclaim policy Retain, owned by nothing',
    },
  ];
  const writeStatus = (status: VolumeMigrationStatus) =>
    asPvshift.patch(`${paths.migrations(ns, 'db')}/status`, { status }, 'merge');
  await writeStatus({
    phase: 'Held',
    message:
      'the target volume cannot be bound; held: pods stay gated and new claims of the name stay rewritten, so nothing starts on an empty volume; see keptVolumes for the data',
    keptVolumes: kept,
    copyFidelity: { level: 'baseline', privileged: false, dropped: ['trusted xattrs'] },
  });

  const shown = await cli(['status', '-n', ns]);
  t.equal(shown.code, 1, 'Held exits 1, like Failed');
  t.match(shown.stdout, /^NAME\s+CLAIM\s+TARGET\s+PHASE.*\ndb\s+db\s+fast\s+Held\s/);
  t.match(
    shown.stdout,
    /\ndb: Held: the target volume cannot be bound; held: .*\n {2}kept pv-src-1 \(source\): the original data, .*spec\.volumeName: pv-src-1\n {2}kept pv-copy-1 \(copy\): the verified final copy on fast, .*\n {2}to release the held pods: kubectl delete volumemigration db -n [\w-]+ \(the kept volumes stay\)\n {2}not copied: trusted xattrs \(Pod Security baseline\)\n$/,
  );
  const json = await cli(['status', '-n', ns, 'db', '-o', 'json']);
  t.match(JSON.parse(json.stdout), {
    items: [
      {
        phase: 'Held',
        terminal: false,
        keptVolumes: kept,
        copyFidelity: { level: 'baseline', dropped: ['trusted xattrs'] },
      },
    ],
  });

  const rollback = await cli(['rollback', '-n', ns, 'db']);
  t.equal(rollback.code, 1);
  t.match(
    rollback.stderr,
    new RegExp(
      `^error: VolumeMigration ${ns}/db is Held: it can neither roll back nor finish .*; kept volumes: pv-src-1 \\(source\\), pv-copy-1 \\(copy\\); to release the held pods, delete it: kubectl delete volumemigration db -n ${ns} \\(the kept volumes stay, Retain, owned by nothing\\)\n$`,
    ),
  );

  let exited = false;
  let heldSeen = false;
  const watching = cli(['status', '-n', ns, '--watch'], {
    onStdout: (out) => (heldSeen = /db\s+db\s+fast\s+Held/.test(out)),
  }).finally(() => (exited = true));
  await waitFor('the watch drew the Held migration', () => Promise.resolve(heldSeen ? true : undefined), 30_000);
  const abort = await cli(['abort', '-n', ns, 'db']);
  t.equal(abort.code, 1, 'abort does not release a Held migration');
  t.match(
    abort.stderr,
    new RegExp(`to release the held pods, delete it: kubectl delete volumemigration db -n ${ns}`),
    'it says how to',
  );
  t.notOk((await kube.get<VolumeMigration>(paths.migrations(ns, 'db')))?.spec.abort, 'abort is not set');
  t.notOk(exited, 'Held is not finished: the watch goes on');
  // What the controller makes of a deletion in Held (here written by hand: pvshift is stopped).
  await writeStatus({
    phase: 'Failed',
    message: 'released from hold: pods are no longer gated; the data is kept on pv-src-1, pv-copy-1',
  });
  const watched = await watching;
  t.equal(watched.code, 1, 'the watch ends with the Failed migration, exit 1');
  const last = watched.stdout.split(/^(?=NAME\s)/m).at(-1) ?? '';
  t.match(last, /\ndb\s+db\s+fast\s+Failed\s/, 'the last frame shows Failed');
  t.match(
    last,
    /\ndb: Failed: released from hold: .*\n {2}kept pv-src-1 \(source\): .*\n {2}kept pv-copy-1 \(copy\): .*\n/,
    'with what it keeps',
  );
  await kube.delete(paths.migrations(ns, 'db'));
});
