// Pre-sync: the bulk is copied while the application runs, so the final copy at
// cutover moves only what changed since, and the application is down for less.
import fs from 'node:fs';
import path from 'node:path';
import t, { type Test } from 'tap';
import type { V1PersistentVolume } from '@kubernetes/client-node';
import { paths } from '../../src/kube.js';
import type { VolumeMigration } from '../../src/volume-migration.js';
import { clusterFor, freshNamespace, statefulSet, volumeOf, waitFor, waitForPodReady } from '../helpers/cluster.js';
import { createMigration, fillVolume, snapshotTree, waitForPhase } from '../helpers/migration.js';
import { installPvshift } from '../helpers/pvshift.js';

const cluster = await clusterFor(t);
const { kube } = cluster;
// 8 MiB/s makes the copy of 40 MiB take seconds, so the downtime it adds is
// well above the noise of a shared machine.
const pvshift = await (await installPvshift(cluster)).start(['--copy-bandwidth-limit=8192']);
t.teardown(() => pvshift.stop());

const MB = 1024 * 1024;

async function migrate(
  t: Test,
  ns: string,
  app: string,
  preSync: boolean,
  change?: (dir: string) => void,
): Promise<{ m: VolumeMigration; source: V1PersistentVolume }> {
  await kube.create(paths.statefulSets(ns), statefulSet(app));
  await waitForPodReady(kube, ns, `${app}-0`);
  const source = await volumeOf(kube, ns, `data-${app}-0`);
  const dir = source.spec!.hostPath!.path;
  fillVolume(dir, 40);
  await createMigration(kube, ns, app, { claimName: `data-${app}-0`, targetStorageClassName: 'fast', preSync });
  await waitForPhase(kube, ns, app, ['WaitingForCutover']);
  change?.(dir);
  const before = snapshotTree(dir);
  const old = await kube.get<{ metadata?: { uid?: string } }>(paths.pods(ns, `${app}-0`));
  await kube.delete(paths.pods(ns, `${app}-0`));
  const m = await waitForPhase(kube, ns, app, ['Succeeded']);
  await waitFor('app Ready again', async () => {
    const pod = await waitForPodReady(kube, ns, `${app}-0`);
    return pod.metadata?.uid !== old?.metadata?.uid ? pod : undefined;
  });
  const target = await volumeOf(kube, ns, `data-${app}-0`);
  t.same(
    Object.fromEntries(snapshotTree(target.spec!.hostPath!.path)),
    Object.fromEntries(before),
    `${app}: the target equals the source at cutover`,
  );
  return { m, source };
}

t.test('pre-sync, then a small change, then cutover: the final copy moves only the change', async (t) => {
  const ns = await freshNamespace(kube);
  const cold = await migrate(t, ns, 'cold', false);
  const warm = await migrate(t, ns, 'warm', true, (dir) => {
    // What an application does between pre-sync and cutover: appends, rewrites, deletes.
    fs.writeFileSync(path.join(dir, 'db', 'wal', 'log 0002'), Buffer.alloc(256 * 1024, 7));
    fs.writeFileSync(path.join(dir, 'config.yaml'), 'replicas: 5\n');
    fs.rmSync(path.join(dir, 'db', 'segment-0003'));
  });
  const coldCopies = cold.m.status?.copies ?? [];
  const warmCopies = warm.m.status?.copies ?? [];
  t.same(
    coldCopies.map((c) => c.pass),
    ['final'],
    'without pre-sync: one copy, at cutover',
  );
  t.same(
    warmCopies.map((c) => c.pass),
    ['presync', 'final'],
    'with pre-sync: two copies',
  );
  const presync = warmCopies.find((c) => c.pass === 'presync')!;
  const final = warmCopies.find((c) => c.pass === 'final')!;
  t.ok(presync.bytesTransferred >= 40 * MB, `pre-sync moved the bulk (${presync.bytesTransferred} bytes)`);
  t.ok(final.bytesTransferred < 2 * MB, `the final copy moved only the change (${final.bytesTransferred} bytes)`);
  t.ok(
    coldCopies[0]!.bytesTransferred >= 40 * MB,
    `without pre-sync the final copy moved everything (${coldCopies[0]!.bytesTransferred} bytes)`,
  );
  const coldDown = cold.m.status?.downtimeSeconds ?? NaN;
  const warmDown = warm.m.status?.downtimeSeconds ?? NaN;
  t.comment(`downtime without pre-sync ${coldDown.toFixed(1)} s, with pre-sync ${warmDown.toFixed(1)} s`);
  t.ok(warmDown < coldDown, 'the downtime recorded with pre-sync is smaller');
});
