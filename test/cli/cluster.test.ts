// kubectl-pvshift against the real local control plane with pvshift running:
// the CLI runs as a real subprocess with the cluster's kubeconfig, as a user
// would run it, and the assertions are on its output, its exit code and the
// objects it left behind.
import { spawn } from 'node:child_process';
import t from 'tap';
import type { V1PersistentVolume, V1PersistentVolumeClaim, V1Pod } from '@kubernetes/client-node';
import { REPO_ROOT } from '../../cluster/index.js';
import { paths } from '../../src/kube.js';
import type { VolumeMigration } from '../../src/volume-migration.js';
import { clusterFor, freshNamespace, statefulSet, volumeOf, waitFor, waitForClaimBound, waitForGone, waitForPodReady } from '../helpers/cluster.js';
import { fillVolume, waitForPhase } from '../helpers/migration.js';
import { installPvshift } from '../helpers/pvshift.js';

const cluster = await clusterFor(t);
const { kube } = cluster;
// 4 MiB/s: a 64 MiB final copy lasts seconds, long enough to roll it back in flight.
const pvshift = await (await installPvshift(cluster)).start(['--copy-bandwidth-limit=4096']);
t.teardown(() => pvshift.stop());

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs kubectl-pvshift from source with the cluster's kubeconfig (unless `bare`). */
function cli(args: string[], options: { bare?: boolean } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'cli/kubectl-pvshift.ts', ...(options.bare ? [] : [`--kubeconfig=${cluster.kubeconfigPath}`]), ...args], {
      cwd: REPO_ROOT,
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, NO_COLOR: '1' },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.stdin.end();
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

function claim(name: string, extra: Partial<NonNullable<V1PersistentVolumeClaim['spec']>> = {}): V1PersistentVolumeClaim {
  return { metadata: { name }, spec: { accessModes: ['ReadWriteOnce'], storageClassName: 'standard', resources: { requests: { storage: '1Gi' } }, ...extra } };
}

function appPod(name: string, claimName: string): V1Pod {
  return {
    metadata: { name },
    spec: {
      terminationGracePeriodSeconds: 1,
      containers: [{ name: 'app', image: 'registry.example/app:1', volumeMounts: [{ name: 'data', mountPath: '/data' }] }],
      volumes: [{ name: 'data', persistentVolumeClaim: { claimName } }],
    },
  };
}

interface PlanJson {
  items: { claim: string; storageClass: string; ready: boolean; consumers: string[]; owners: string[]; usedFrom: string; findings: { severity: string; code: string; message: string }[] }[];
}

t.test('plan on a mixed namespace shows every finding and changes nothing', async (t) => {
  const ns = await freshNamespace(kube, 'plan');
  await kube.create(paths.statefulSets(ns), statefulSet('web'));
  await kube.create(paths.claims(ns), claim('logs', { storageClassName: 'expandable', resources: { requests: { storage: '2Gi' } } }));
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
  t.match(rows.get('logs')?.findings.find((f) => f.code === 'Shrink')?.message, /will be measured; refused if the data does not fit/);
  t.same(codes('raw'), ['BlockVolumeUnsupported']);
  t.same(codes('single'), ['NoConsumer', 'NoPreSync'], 'RWOP: no pre-sync, a warning');
  t.same(codes('later'), ['ClaimNotBound'], 'the unbound WaitForFirstConsumer claim');
  t.same([...rows.values()].filter((r) => r.ready).map((r) => r.claim).sort(), ['data-web-0', 'logs', 'single']);

  const table = await cli(['plan', '-n', ns, '--to', 'fast']);
  t.equal(table.code, 0);
  t.match(table.stdout, /data-web-0\s+standard -> fast\s+1Gi\s+unknown \(<= 1Gi\)\s+web-0\s+StatefulSet\/web\s+ok/, 'the table row of the StatefulSet claim');
  t.match(table.stdout, /raw: blocking BlockVolumeUnsupported/);
  t.match(table.stdout, /3 of 5 claims would move; 2 blocked\./);

  const missing = await cli(['plan', '-n', ns, '--to', 'platinum', '-o', 'json']);
  t.equal(missing.code, 0);
  const missingRows = (JSON.parse(missing.stdout) as PlanJson).items;
  t.ok(missingRows.every((r) => r.findings.some((f) => f.code === 'StorageClassNotFound')), 'a missing target class blocks every claim');

  const filtered = await cli(['plan', '-n', ns, '--to', 'fast', '--from-class', 'expandable', '-o', 'json']);
  t.same((JSON.parse(filtered.stdout) as PlanJson).items.map((r) => r.claim), ['logs'], '--from-class selects by current class');

  const migrations = await kube.list<VolumeMigration>(paths.migrations(ns));
  t.equal(migrations.items.length, 0, 'plan created nothing');
});

let migratedNs = '';
let oldVolume = '';

t.test('migrate --yes, then status --watch follows a real migration to the end', async (t) => {
  const ns = (migratedNs = await freshNamespace(kube, 'move'));
  await kube.create(paths.statefulSets(ns), statefulSet('db'));
  await waitForPodReady(kube, ns, 'db-0');
  const pv = await volumeOf(kube, ns, 'data-db-0');
  oldVolume = pv.metadata!.name!;
  fillVolume(pv.spec!.hostPath!.path, 2);

  const refused = await cli(['migrate', '-n', ns, '--to', 'fast', 'data-db-0']);
  t.equal(refused.code, 1, 'without --yes and without a terminal it refuses');
  t.match(refused.stderr, /^error: refusing to create 1 VolumeMigration without confirmation: stdin is not a terminal; pass --yes\n$/);

  const dry = await cli(['migrate', '-n', ns, '--to', 'fast', '--verify', '--cutover', 'recreate', '--dry-run', 'data-db-0']);
  t.equal(dry.code, 0);
  t.match(dry.stdout, /kind: VolumeMigration[\s\S]*claimName: data-db-0[\s\S]*verify: checksum/, 'the dry run prints the object');
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
  const frames = watched.stdout.trim().split('\n\n');
  t.ok(frames.length > 1, `several frames were drawn (${frames.length})`);
  t.match(frames.at(-1), /data-db-0\s+data-db-0\s+fast\s+Succeeded\s+\[#{20}\] 100%/, 'the last frame shows Succeeded');
  t.match(watched.stdout, /WaitingForCutover/, 'and the watch saw the waiting phase');

  const after = await cli(['rollback', '-n', ns, 'data-db-0']);
  t.equal(after.code, 1);
  t.match(after.stderr, new RegExp(`^error: .*not supported yet \\(the old volume ${oldVolume} is kept`), 'names the retained old volume');
  t.equal(after.stderr.trim().split('\n').length, 1, 'in one line');
});

t.test('cleanup lists the retained old volume and releases it with --yes', async (t) => {
  t.ok(oldVolume, 'the previous test left an old volume');
  const listed = await cli(['cleanup', '-n', migratedNs]);
  t.equal(listed.code, 0, listed.stderr);
  t.match(listed.stdout, new RegExp(`${oldVolume}\\s+1Gi\\s+${migratedNs}/data-db-0\\s+${migratedNs}/data-db-0\\s+Retain`));
  const json = await cli(['cleanup', '-n', migratedNs, '-o', 'json']);
  t.same((JSON.parse(json.stdout) as { items: { name: string }[] }).items.map((v) => v.name), [oldVolume]);
  const pv = await kube.get<V1PersistentVolume>(paths.volumes(oldVolume));
  t.equal(pv?.spec?.persistentVolumeReclaimPolicy, 'Retain', 'listing changed nothing');

  const released = await cli(['cleanup', '-n', migratedNs, '--yes']);
  t.equal(released.code, 0, released.stderr);
  t.match(released.stdout, new RegExp(`persistentvolume/${oldVolume} released: reclaim policy set to Delete`));
  await waitForGone(kube, paths.volumes(oldVolume));
  t.pass('the provisioner reclaimed the old volume');
  const again = await cli(['cleanup', '-n', migratedNs]);
  t.match(again.stdout, /No retained old volumes\./);
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
  await waitFor('the copy under way', async () => {
    const m = await kube.get<VolumeMigration>(paths.migrations(ns, 'big'));
    const p = m?.status?.progress;
    return m?.status?.phase === 'Populating' && p && p.bytesDone > 0 && p.bytesDone < p.bytesTotal ? true : undefined;
  }, 60_000);
  // Both at once: the copy must still be running when the rollback lands.
  const [rolled, shown] = await Promise.all([cli(['rollback', '-n', ns, 'big']), cli(['status', '-n', ns, 'big'])]);
  t.equal(rolled.code, 0, rolled.stderr);
  t.match(rolled.stdout, new RegExp(`rollback requested: .* goes back to its original volume ${pv.metadata!.name!}`));
  t.match(shown.stdout, /big\s+big\s+fast\s+(Populating|RollingBack)\s+\[[#-]{20}\]\s+\d+%/, `status shows the copy with a bar:\n${shown.stdout}`);
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
  t.match(again.stderr, /^error: VolumeMigration .*\/big has already finished \(RolledBack\); there is nothing to abort\n$/);
});

t.test('every bad input is one line on stderr and exit code 1', async (t) => {
  const ns = await freshNamespace(kube, 'bad');
  const cases: { name: string; args: string[]; bare?: boolean; error: RegExp }[] = [
    { name: 'unknown context', args: ['status', '--context', 'nope'], error: new RegExp(`^error: context "nope" not found in ${cluster.kubeconfigPath.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}; see kubectl config get-contexts$`) },
    { name: 'unknown class in migrate', args: ['migrate', '-n', ns, '--to', 'platinum', '--yes'], error: /^error: StorageClass "platinum" not found; see kubectl get storageclass$/ },
    { name: 'unknown claim', args: ['plan', '-n', ns, '--to', 'fast', 'ghost'], error: new RegExp(`^error: claim "ghost" not found in namespace "${ns}"; see kubectl get pvc -n ${ns}$`) },
    { name: 'unknown migration', args: ['abort', '-n', ns, 'ghost'], error: /^error: VolumeMigration "ghost" not found in namespace/ },
    { name: 'unknown command', args: ['shift'], error: /^error: unknown command "shift" for "kubectl pvshift"; commands: / },
    { name: 'bad -o', args: ['status', '-o', 'xml'], error: /^error: unknown output format "xml"; use -o json or -o yaml/ },
    { name: 'no match for migrate', args: ['migrate', '-n', ns, '--to', 'fast', '--yes'], error: /^error: no claims match in namespace/ },
    { name: 'missing kubeconfig', args: ['status', '--kubeconfig', '/nonexistent/config'], bare: true, error: /^error: kubeconfig \/nonexistent\/config not found; pass --kubeconfig PATH or set KUBECONFIG$/ },
  ];
  for (const c of cases) {
    const run = await cli(c.args, c.bare ? { bare: true } : {});
    t.equal(run.code, 1, `${c.name}: exit code 1`);
    t.equal(run.stderr.split('\n').filter(Boolean).length, 1, `${c.name}: one line`);
    t.match(run.stderr.trim(), c.error, `${c.name}: ${run.stderr.trim()}`);
  }
});
