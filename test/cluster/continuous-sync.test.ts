// Continuous sync: while a migration waits for cutover, the pre-sync runs again
// every resyncInterval, so each pass moves one interval's change, the final copy
// only what changed since the last pass, and maxDowntime holds an eviction until
// the final copy is estimated to fit.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import type { CoreV1Event, V1PersistentVolume, V1PersistentVolumeClaim, V1Pod } from '@kubernetes/client-node';
import { paths } from '../../src/kube.js';
import { copyPodNameFor } from '../../populator/copy-pod.js';
import { ANNOTATION_SYNC_REQUEST, stagingClaimName } from '../../src/names.js';
import type { VolumeMigration } from '../../src/volume-migration.js';
import { runCli } from '../cli/run-cli.js';
import { clusterFor, freshNamespace, statefulSet, volumeOf, waitFor, waitForPodReady } from '../helpers/cluster.js';
import { createMigration, fillVolume, migrationOf, snapshotTree, waitForPhase } from '../helpers/migration.js';
import { installPvshift } from '../helpers/pvshift.js';

const cluster = await clusterFor(t);
const { kube } = cluster;
// 8 MiB/s: the first pass of 20 MiB takes seconds, a pass over an unchanged tree well under one.
const pvshift = await (await installPvshift(cluster)).start(['--copy-bandwidth-limit=8192']);
t.teardown(() => pvshift.stop());

const MiB = 1024 * 1024;
/** What a pass moves beyond the files written: nothing but rounding; directories and metadata carry no file bytes. */
const SLACK = 64 * 1024;

/**
 * Writes `bytes` of new data as the file `name` in one step, as far as a
 * concurrent re-sync can tell: written beside the volume, then renamed into it,
 * so a pass sees all of it or none of it.
 */
function writeAtomically(dir: string, name: string, bytes: number): void {
  const staged = path.join(path.dirname(dir), `.${path.basename(dir)}-${name}.partial`);
  fs.writeFileSync(staged, randomBytes(bytes));
  fs.renameSync(staged, path.join(dir, name));
}

async function appWithData(ns: string, app: string, megabytes: number): Promise<{ dir: string; podUid: string }> {
  await kube.create(paths.statefulSets(ns), statefulSet(app));
  const pod = await waitForPodReady(kube, ns, `${app}-0`);
  const source = await volumeOf(kube, ns, `data-${app}-0`);
  const dir = source.spec!.hostPath!.path;
  fillVolume(dir, megabytes);
  return { dir, podUid: pod.metadata?.uid ?? '' };
}

/** The migration once a pre-sync pass after `after` has been recorded (and its copy pod deleted, so none runs). */
function nextPass(ns: string, name: string, after: number, what: string): Promise<VolumeMigration> {
  return waitFor(
    `${what}: a pre-sync pass after pass ${after}`,
    async () => {
      const m = await migrationOf(kube, ns, name);
      if ((m?.status?.syncPasses ?? 0) <= after) return undefined;
      const pod = await kube.get(paths.pods(ns, copyPodNameFor(m?.metadata.uid ?? '', 'presync')));
      return pod ? undefined : m;
    },
    60_000,
    100,
  );
}

async function newPodReady(ns: string, name: string, oldUid: string): Promise<V1Pod> {
  return waitFor(`${name} recreated and Ready`, async () => {
    const pod = await waitForPodReady(kube, ns, name);
    return pod.metadata?.uid !== oldUid ? pod : undefined;
  });
}

t.test('re-syncs move each interval’s change; the final copy moves only the last one', async (t) => {
  const ns = await freshNamespace(kube);
  const app = 'ledger';
  const { dir, podUid } = await appWithData(ns, app, 20);
  await createMigration(kube, ns, app, {
    claimName: `data-${app}-0`,
    targetStorageClassName: 'fast',
    preSync: true,
    resyncInterval: '2s',
  });
  const first = await waitForPhase(kube, ns, app, ['WaitingForCutover']);
  t.equal(first.status?.syncPasses, 1, 'pre-synced once, waiting for cutover');
  t.ok(
    (first.status?.lastSync?.bytesTransferred ?? 0) >= 20 * MiB,
    `the first pass moved the bulk (${first.status?.lastSync?.bytesTransferred} bytes)`,
  );

  // The application writes 3 MiB; the next passes catch up with it: the first
  // that moves anything moves those 3 MiB, not the volume.
  writeAtomically(dir, 'orders-0001', 3 * MiB);
  let m = first;
  for (;;) {
    m = await nextPass(ns, app, m.status?.syncPasses ?? 0, 'a re-sync');
    if ((m.status?.lastSync?.bytesTransferred ?? 0) > 0) break;
  }
  const delta = m.status!.lastSync!;
  t.ok(Date.parse(m.status!.lastSyncTime!) > Date.parse(first.status!.lastSyncTime!), 'lastSyncTime advanced');
  t.ok(
    delta.bytesTransferred >= 3 * MiB && delta.bytesTransferred <= 3 * MiB + SLACK,
    `the re-sync moved the interval's change, 3 MiB (${delta.bytesTransferred} bytes), not the volume`,
  );
  t.equal(delta.filesTransferred, 1, 'one file');
  t.equal(m.status?.copies?.filter((c) => c.pass === 'presync').length, 1, 'one presync record, the latest');
  t.equal(m.status?.copies?.[0]?.bytesTransferred, delta.bytesTransferred, 'and it is this pass');
  t.ok(
    (m.status?.finalCopyEstimateSeconds ?? Infinity) <= (first.status?.finalCopyEstimateSeconds ?? 0),
    `the estimate came down (${first.status?.finalCopyEstimateSeconds} s → ${m.status?.finalCopyEstimateSeconds} s)`,
  );
  const quiet = await nextPass(ns, app, m.status?.syncPasses ?? 0, 'a re-sync with nothing new');
  t.equal(quiet.status?.lastSync?.bytesTransferred, 0, 'a pass over an unchanged volume moves nothing');

  // The last change, then the cutover. Re-sync is turned off first, so that no
  // pass can catch this change before the final copy: what the final moves is
  // exactly the change since the last pass.
  await kube.patch(paths.migrations(ns, app), { spec: { resyncInterval: '0' } }, 'merge');
  const settled = await waitFor('no re-sync running', async () => {
    const now = await migrationOf(kube, ns, app);
    const pod = await kube.get(paths.pods(ns, copyPodNameFor(now?.metadata.uid ?? '', 'presync')));
    return now?.spec.resyncInterval === '0' && !pod ? now : undefined;
  });
  writeAtomically(dir, 'orders-0002', 1 * MiB);
  const before = snapshotTree(dir);
  await kube.delete(paths.pods(ns, `${app}-0`));
  const done = await waitForPhase(kube, ns, app, ['Succeeded']);
  await newPodReady(ns, `${app}-0`, podUid);
  const final = done.status?.copies?.find((c) => c.pass === 'final');
  t.ok(final, 'a final copy ran');
  t.ok(
    final!.bytesTransferred >= 1 * MiB && final!.bytesTransferred <= 1 * MiB + SLACK,
    `the final copy moved only the last change, 1 MiB (${final!.bytesTransferred} bytes)`,
  );
  t.equal(done.status?.syncPasses, settled.status?.syncPasses, 'no pass after re-sync was turned off');
  const target = await volumeOf(kube, ns, `data-${app}-0`);
  t.equal(target.spec?.storageClassName, 'fast', 'on the target class');
  t.same(
    Object.fromEntries(snapshotTree(target.spec!.hostPath!.path)),
    Object.fromEntries(before),
    'the target equals the source at cutover',
  );
});

t.test('Evict with maxDowntime: held while the final copy is estimated too long, evicted once it fits', async (t) => {
  const ns = await freshNamespace(kube);
  const app = 'queue';
  const { dir, podUid } = await appWithData(ns, app, 24);
  await createMigration(kube, ns, app, {
    claimName: `data-${app}-0`,
    targetStorageClassName: 'fast',
    preSync: true,
    cutover: 'Evict',
    resyncInterval: '2s',
    maxDowntime: '2s',
  });
  // The first pass copies 24 MiB at 8 MiB/s: about 3 s, over maxDowntime.
  const held = await waitFor('the eviction held', async () => {
    const m = await migrationOf(kube, ns, app);
    return /^eviction held: the final copy is estimated at/.test(m?.status?.message ?? '') ? m : undefined;
  });
  t.ok((held.status?.finalCopyEstimateSeconds ?? 0) > 2, `estimated ${held.status?.finalCopyEstimateSeconds} s`);
  t.match(held.status?.message, /over maxDowntime 2s; re-syncing every 2s to bring it down/, 'the message says why');
  const pod = await kube.get<V1Pod>(paths.pods(ns, `${app}-0`));
  t.equal(pod?.metadata?.uid, podUid, 'the pod was not evicted');
  t.equal(held.status?.syncPasses, 1, 'held after the first pass');
  const before = snapshotTree(dir);

  // A re-sync over the unchanged volume takes well under 2 s: the eviction goes.
  const done = await waitForPhase(kube, ns, app, ['Succeeded']);
  await newPodReady(ns, `${app}-0`, podUid);
  t.ok((done.status?.syncPasses ?? 0) >= 2, `evicted after a re-sync (${done.status?.syncPasses} passes)`);
  t.ok(
    (done.status?.finalCopyEstimateSeconds ?? Infinity) <= 2,
    `the estimate fitted (${done.status?.finalCopyEstimateSeconds} s)`,
  );
  const events = (
    await kube.list<CoreV1Event>(paths.events(ns), {
      fieldSelector: `involvedObject.name=${app},involvedObject.kind=VolumeMigration`,
    })
  ).items;
  const evicting = events.find((e) => e.reason === 'Evicting');
  t.match(evicting?.message, /within maxDowntime 2s/, 'the Evicting event says the estimate fits');
  const target = await volumeOf(kube, ns, `data-${app}-0`);
  t.same(
    Object.fromEntries(snapshotTree(target.spec!.hostPath!.path)),
    Object.fromEntries(before),
    'the target equals the source',
  );
});

t.test(
  'kubectl pvshift sync: one pass on request, with re-sync off; a pass that fails leaves the migration waiting',
  async (t) => {
    const ns = await freshNamespace(kube);
    const app = 'billing';
    const { dir, podUid } = await appWithData(ns, app, 2);
    await createMigration(kube, ns, app, {
      claimName: `data-${app}-0`,
      targetStorageClassName: 'fast',
      preSync: true,
      resyncInterval: '0',
    });
    const first = await waitForPhase(kube, ns, app, ['WaitingForCutover']);
    t.equal(first.status?.syncPasses, 1, 'pre-synced once; re-sync is off');
    const cli = (args: string[]) => runCli(cluster.kubeconfigPath, [...args, '-n', ns]);

    writeAtomically(dir, 'invoice-1', 1 * MiB);
    const asked = await cli(['sync', app, '--watch']);
    t.equal(asked.code, 0, asked.stderr);
    t.match(asked.stdout, /^re-sync requested: VolumeMigration .*\/billing$/m);
    t.match(
      asked.stdout,
      /^billing: re-sync done \(pass 2\): moved 1\.0 MiB \(1 files\) in /m,
      'it says what the pass moved',
    );
    const served = await migrationOf(kube, ns, app);
    t.equal(served?.status?.syncPasses, 2, 'one pass more');
    t.ok(
      (served?.status?.lastSync?.bytesTransferred ?? 0) >= 1 * MiB &&
        (served?.status?.lastSync?.bytesTransferred ?? 0) <= 1 * MiB + SLACK,
      `it moved the change (${served?.status?.lastSync?.bytesTransferred} bytes)`,
    );
    t.equal(
      served?.status?.syncRequestServed,
      served?.metadata.annotations?.[ANNOTATION_SYNC_REQUEST],
      'the request is recorded as served',
    );
    await new Promise((resolve) => setTimeout(resolve, 3000));
    t.equal((await migrationOf(kube, ns, app))?.status?.syncPasses, 2, 'served once: no pass follows by itself');
    const wide = execFileSync(
      cluster.binaries.kubectl,
      ['--kubeconfig', cluster.kubeconfigPath, 'get', 'volumemigrations', '-n', ns, '-o', 'wide'],
      { encoding: 'utf8' },
    );
    t.match(
      wide,
      /LAST SYNC\s+FINAL COPY ESTIMATE/,
      'kubectl get -o wide: when it last synced, and the final copy estimate',
    );
    t.match(
      wide,
      new RegExp(
        `^billing .*WaitingForCutover .*\\s\\d+s\\s+${served?.status?.finalCopyEstimateSeconds}\\s+\\S+\\s*$`,
        'm',
      ),
      'with their values',
    );

    // The target's root made immutable: the next pass cannot create a file there, and fails for good.
    const staging = await kube.get<V1PersistentVolumeClaim>(
      paths.claims(ns, stagingClaimName(served?.metadata.uid ?? '')),
    );
    const targetPv = await kube.get<V1PersistentVolume>(paths.volumes(staging?.spec?.volumeName ?? ''));
    const targetDir = targetPv!.spec!.hostPath!.path;
    execFileSync('chattr', ['+i', targetDir]);
    t.teardown(() => void execFileSync('chattr', ['-i', targetDir]));
    writeAtomically(dir, 'invoice-2', 1 * MiB);
    const failing = await cli(['sync', `sts/${app}`, '-w']);
    t.equal(failing.code, 1, 'exit code 1: the pass failed');
    t.match(failing.stdout, /^billing: re-sync failed: presync copy failed \(exit \d+\)/m, failing.stdout);
    const after = await migrationOf(kube, ns, app);
    t.equal(after?.status?.phase, 'WaitingForCutover', 'the migration still waits for its cutover');
    t.ok(after?.status?.lastSyncFailure?.message, 'status.lastSyncFailure says why');
    const events = (
      await kube.list<CoreV1Event>(paths.events(ns), {
        fieldSelector: `involvedObject.name=${app},involvedObject.kind=VolumeMigration`,
      })
    ).items;
    t.ok(
      events.some((e) => e.reason === 'ReSyncRequested'),
      'a ReSyncRequested event for each asked-for pass',
    );
    t.match(
      events.find((e) => e.reason === 'ReSyncFailed'),
      { type: 'Warning', message: /^re-sync 3 failed: .*the migration goes on/ },
      'a Warning says the pass failed and the migration goes on',
    );

    // Fixed: asked again, the pass catches up; the cutover then moves nothing more.
    execFileSync('chattr', ['-i', targetDir]);
    const again = await cli(['sync', app, '-w']);
    t.equal(again.code, 0, again.stderr);
    t.match(again.stdout, /re-sync done \(pass 3\): moved 1\.0 MiB/);
    const before = snapshotTree(dir);
    await kube.delete(paths.pods(ns, `${app}-0`));
    const done = await waitForPhase(kube, ns, app, ['Succeeded']);
    await newPodReady(ns, `${app}-0`, podUid);
    t.equal(
      done.status?.copies?.find((c) => c.pass === 'final')?.bytesTransferred,
      0,
      'the final copy had nothing to move',
    );
    const target = await volumeOf(kube, ns, `data-${app}-0`);
    t.same(
      Object.fromEntries(snapshotTree(target.spec!.hostPath!.path)),
      Object.fromEntries(before),
      'the target equals the source',
    );
    const late = await cli(['sync', app]);
    t.equal(late.code, 1);
    t.match(
      late.stderr,
      /has finished \(Succeeded\); there is nothing to sync/,
      'a finished migration: refused, said why',
    );
  },
);
