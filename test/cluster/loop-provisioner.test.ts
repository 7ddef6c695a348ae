// The loop-device provisioner of the real-node tier, on the local control plane:
// real filesystems on real loop devices, so what a user would check is checked on
// the machine itself: the PV's spec, the claim Bound, the filesystem type and size
// mounted at the PV's path, ENOSPC at the capacity, and that Delete (and teardown)
// leave no PV, mount, loop device or image behind, while Retain keeps them.
// Its classes are prefixed `loop-` here: the fast tier's hostPath provisioner holds
// the plain names in this cluster (and ignores ours: it checks the provisioner).
import t from 'tap';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, open, readFile, realpath, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { CoreV1Event, V1PersistentVolume, V1PersistentVolumeClaim, V1Pod } from '@kubernetes/client-node';
import {
  LOOP_PROVISIONER_NAME,
  LoopProvisioner,
  REASON_PROVISIONING_FAILED,
  type LoopProvisionerOptions,
} from '../../cluster/loop-provisioner.js';
import { runCommand } from '../../cluster/processes.js';
import { sleep } from '../../cluster/index.js';
import { paths } from '../../src/kube.js';
import {
  clusterFor,
  freshNamespace,
  waitFor,
  waitForClaimBound,
  waitForGone,
  waitForPodReady,
} from '../helpers/cluster.js';

const MiB = 2 ** 20;
const RESYNC_MS = 1000;
const cluster = await clusterFor(t);
const { kube } = cluster;
const node = cluster.nodes[0]!;
await mkdir(join(cluster.dir, 'loop-volumes'));
const root = await realpath(join(cluster.dir, 'loop-volumes'));
const options: LoopProvisionerOptions = {
  root,
  node,
  classPrefix: 'loop-',
  resyncMs: RESYNC_MS,
  log: (line) => t.comment(line),
};
let provisioner = new LoopProvisioner(kube, options);
await provisioner.start();
// Teardowns run last-registered first: this one before the cluster's, which removes cluster.dir.
t.teardown(() => provisioner.teardown());

function claim(
  name: string,
  storageClassName: string,
  storage: string,
  extra: Partial<V1PersistentVolumeClaim['spec']> = {},
): V1PersistentVolumeClaim {
  return {
    metadata: { name },
    spec: { accessModes: ['ReadWriteOnce'], storageClassName, resources: { requests: { storage } }, ...extra },
  };
}

/** What `findmnt` says is mounted at exactly `path`, sizes in bytes; undefined if nothing is. */
function mountAt(path: string): Promise<{ source: string; fstype: string; size: number } | undefined> {
  return new Promise((resolve) => {
    execFile(
      'findmnt',
      ['--json', '--bytes', '--output', 'SOURCE,FSTYPE,SIZE', '--mountpoint', path],
      (error, stdout) => {
        if (error) return resolve(undefined); // exit 1: not a mount point
        const parsed = JSON.parse(stdout) as {
          filesystems: { source: string; fstype: string; size: number | string }[];
        };
        const fs = parsed.filesystems[0];
        resolve(fs ? { source: fs.source, fstype: fs.fstype, size: Number(fs.size) } : undefined);
      },
    );
  });
}

/** Loop devices whose backing file is under the root, as `losetup --list` shows them. */
async function loopDevicesUnderRoot(): Promise<{ name: string; backingFile: string }[]> {
  const out = JSON.parse(await runCommand('losetup', ['--list', '--json', '--output', 'NAME,BACK-FILE'])) as {
    loopdevices?: { name: string; 'back-file': string | null }[];
  };
  return (out.loopdevices ?? [])
    .map((d) => ({ name: d.name, backingFile: (d['back-file'] ?? '').replace(/ \(deleted\)$/, '') }))
    .filter((d) => d.backingFile.startsWith(`${root}/`));
}

async function mountsUnderRoot(): Promise<string[]> {
  const out = JSON.parse(await runCommand('findmnt', ['--json', '--list', '--output', 'TARGET'])) as {
    filesystems?: { target: string }[];
  };
  return (out.filesystems ?? []).map((m) => m.target).filter((target) => target.startsWith(`${root}/`));
}

/** Writes 1 MiB blocks until the filesystem refuses; the bytes written and the refusal. */
async function fill(dir: string, limit: number): Promise<{ written: number; code: string | undefined }> {
  const handle = await open(join(dir, 'fill'), 'w');
  const block = Buffer.alloc(MiB, 0xa5);
  let written = 0;
  try {
    while (written <= limit) {
      // A short write is the last that fits; the next one says why.
      written += (await handle.write(block)).bytesWritten;
    }
    await handle.sync();
    return { written, code: undefined };
  } catch (e: unknown) {
    return { written, code: (e as NodeJS.ErrnoException).code };
  } finally {
    await handle.close().catch(() => {});
  }
}

function nodeAffinityValues(pv: V1PersistentVolume | undefined): string[] | undefined {
  return pv?.spec?.nodeAffinity?.required?.nodeSelectorTerms?.[0]?.matchExpressions?.[0]?.values;
}

/** After a Delete reclaim: no PV, nothing mounted at its path, no loop device on its image, no image, no directory. */
async function waitForVolumeGone(pvName: string): Promise<void> {
  await waitForGone(kube, paths.volumes(pvName));
  const image = join(root, `${pvName}.img`);
  await waitFor(
    `${pvName}: unmounted, detached, removed`,
    async () => {
      const mounted = await mountAt(join(root, pvName));
      const attached = (await loopDevicesUnderRoot()).some((d) => d.backingFile === image);
      return !mounted && !attached && !existsSync(image) && !existsSync(join(root, pvName)) ? true : undefined;
    },
    30_000,
  );
}

t.test(
  'an Immediate ext4 claim: a PV pre-bound to it, a real filesystem of the capacity, and Delete removes it all',
  async (t) => {
    const ns = await freshNamespace(kube);
    const created = await kube.create<V1PersistentVolumeClaim>(
      paths.claims(ns),
      claim('data', 'loop-standard', '64Mi'),
    );
    const bound = await waitForClaimBound(kube, ns, 'data');
    const pvName = bound.spec?.volumeName ?? '';
    const pv = await kube.get<V1PersistentVolume>(paths.volumes(pvName));
    const path = join(root, pvName);
    t.equal(pvName, `pvc-${created.metadata?.uid}`, 'the PV is named from the claim');
    t.equal(
      pv?.metadata?.annotations?.['pv.kubernetes.io/provisioned-by'],
      LOOP_PROVISIONER_NAME,
      'and says who provisioned it',
    );
    t.same(pv?.spec?.local, { path }, 'a local volume at its mount point under the root');
    t.same(nodeAffinityValues(pv), [node], 'pinned to the node given to the provisioner');
    t.equal(pv?.spec?.capacity?.storage, '64Mi', 'the capacity asked for');
    t.equal(pv?.spec?.persistentVolumeReclaimPolicy, 'Delete', "the class's reclaim policy");
    t.equal(pv?.spec?.storageClassName, 'loop-standard', "of the claim's class");
    t.equal(pv?.spec?.volumeMode, 'Filesystem', 'a filesystem volume');
    t.same(pv?.spec?.accessModes, ['ReadWriteOnce'], "the claim's access modes");
    t.match(
      pv?.spec?.claimRef,
      { namespace: ns, name: 'data', uid: created.metadata?.uid },
      'pre-bound to the claim, uid and all',
    );
    t.equal(bound.status?.capacity?.storage, '64Mi', 'the claim is Bound with that capacity');

    const mount = await mountAt(path);
    t.equal(mount?.fstype, 'ext4', 'ext4 is mounted at the path');
    t.ok(
      mount && mount.size <= 64 * MiB && mount.size > 0.8 * 64 * MiB,
      `of about the capacity (${mount?.size} bytes)`,
    );
    const devices = await loopDevicesUnderRoot();
    t.same(
      devices.filter((d) => d.name === mount?.source).map((d) => d.backingFile),
      [join(root, `${pvName}.img`)],
      'from a loop device on the image under the root',
    );
    const rootDir = await stat(path);
    t.equal(rootDir.mode & 0o7777, 0o755, 'its root directory as mkfs made it (0755)');
    t.ok(existsSync(join(path, 'lost+found')), 'a fresh ext4: lost+found');

    const { written, code } = await fill(path, 64 * MiB);
    t.equal(code, 'ENOSPC', 'writing past the capacity fails with ENOSPC');
    t.ok(written <= 64 * MiB && written > 0.8 * 64 * MiB, `after about the capacity (${written / MiB} MiB)`);

    await kube.delete(paths.claims(ns, 'data'));
    await waitForVolumeGone(pvName);
    t.pass('Delete reclaim removed the PV, the mount, the loop device, the image and the directory');
  },
);

t.test('a WaitForFirstConsumer xfs claim waits for its node, then gets xfs at its 300 MiB minimum', async (t) => {
  const ns = await freshNamespace(kube);
  const created = await kube.create<V1PersistentVolumeClaim>(paths.claims(ns), claim('small', 'loop-fast', '100Mi'));
  const populated = await kube.create<V1PersistentVolumeClaim>(
    paths.claims(ns),
    claim('populated', 'loop-standard', '16Mi', {
      dataSourceRef: { apiGroup: 'pvshift.io', kind: 'VolumeMigration', name: 'm' },
    }),
  );
  const elsewhere = await kube.create<V1PersistentVolumeClaim>(paths.claims(ns), {
    ...claim('elsewhere', 'loop-fast', '100Mi'),
    metadata: { name: 'elsewhere', annotations: { 'volume.kubernetes.io/selected-node': 'node-9' } },
  });
  // `small` the PV controller does not even hand over before a node is selected; the
  // other two it does (so they are ours to decide). A few resyncs later: nothing made.
  for (const name of ['populated', 'elsewhere']) {
    await waitFor(`claim ${name} handed to the provisioner`, async () => {
      const c = await kube.get<V1PersistentVolumeClaim>(paths.claims(ns, name));
      return c?.metadata?.annotations?.['volume.kubernetes.io/storage-provisioner'] === LOOP_PROVISIONER_NAME
        ? true
        : undefined;
    });
  }
  await sleep(3 * RESYNC_MS);
  for (const c of [created, populated, elsewhere]) {
    t.notOk(await kube.get(paths.volumes(`pvc-${c.metadata?.uid}`)), `${c.metadata?.name}: no PV`);
    t.notOk(existsSync(join(root, `pvc-${c.metadata?.uid}.img`)), `${c.metadata?.name}: no image`);
  }
  t.comment('no node selected, a populator named in dataSourceRef, another node selected: all left alone');

  await kube.patch(
    paths.claims(ns, 'small'),
    { metadata: { annotations: { 'volume.kubernetes.io/selected-node': node } } },
    'merge',
  );
  const bound = await waitForClaimBound(kube, ns, 'small');
  const pv = await kube.get<V1PersistentVolume>(paths.volumes(bound.spec?.volumeName));
  const path = join(root, bound.spec?.volumeName ?? '');
  t.same(nodeAffinityValues(pv), [node], 'pinned to the selected node');
  t.equal(
    pv?.spec?.capacity?.storage,
    '300Mi',
    "the PV says the real size: mkfs.xfs's minimum, not the 100Mi asked for",
  );
  t.equal(bound.status?.capacity?.storage, '300Mi', 'and so does the Bound claim');
  t.same(pv?.spec?.local, { path }, 'a local volume at its mount point');
  const mount = await mountAt(path);
  t.equal(mount?.fstype, 'xfs', 'xfs is mounted at the path');
  t.ok(
    mount && mount.size <= 300 * MiB && mount.size > 0.7 * 300 * MiB,
    `of about 300 MiB less its log (${mount?.size} bytes)`,
  );
  const { written, code } = await fill(path, 300 * MiB);
  t.equal(code, 'ENOSPC', 'writing past the capacity fails with ENOSPC');
  t.ok(written <= 300 * MiB, `after ${written / MiB} MiB`);

  for (const name of ['small', 'populated', 'elsewhere']) await kube.delete(paths.claims(ns, name));
  await waitForVolumeGone(bound.spec?.volumeName ?? '');
});

t.test('a pod on the node gets its WaitForFirstConsumer claim through the real scheduler', async (t) => {
  const ns = await freshNamespace(kube);
  await kube.create(paths.claims(ns), claim('data', 'loop-fast', '300Mi'));
  await kube.create<V1Pod>(paths.pods(ns), {
    metadata: { name: 'app' },
    spec: {
      terminationGracePeriodSeconds: 1,
      containers: [
        { name: 'app', image: 'registry.example/app:1', volumeMounts: [{ name: 'data', mountPath: '/data' }] },
      ],
      volumes: [{ name: 'data', persistentVolumeClaim: { claimName: 'data' } }],
    },
  });
  const pod = await waitForPodReady(kube, ns, 'app', 90_000);
  const bound = await waitForClaimBound(kube, ns, 'data');
  const pv = await kube.get<V1PersistentVolume>(paths.volumes(bound.spec?.volumeName));
  t.equal(pod.spec?.nodeName, node, 'the pod runs on the node');
  t.same(nodeAffinityValues(pv), [node], 'and its volume was made there');
  t.equal((await mountAt(join(root, bound.spec?.volumeName ?? '')))?.fstype, 'xfs', 'xfs mounted at its path');
  await kube.delete(paths.pods(ns, 'app'), { gracePeriodSeconds: 0 });
  await waitForGone(kube, paths.pods(ns, 'app'));
  await kube.delete(paths.claims(ns, 'data'));
  await waitForVolumeGone(bound.spec?.volumeName ?? '');
});

t.test('a Block claim is refused with a Warning event, and stays Pending', async (t) => {
  const ns = await freshNamespace(kube);
  await kube.create(paths.claims(ns), claim('raw', 'loop-standard', '16Mi', { volumeMode: 'Block' }));
  const event = await waitFor('a ProvisioningFailed event', async () => {
    const events = (await kube.list<CoreV1Event>(paths.events(ns))).items;
    return events.find((e) => e.involvedObject.name === 'raw' && e.reason === REASON_PROVISIONING_FAILED);
  });
  t.equal(event.type, 'Warning', 'a Warning');
  t.match(event.message, /volumeMode Block is not supported/, 'that says why');
  t.equal(
    (await kube.get<V1PersistentVolumeClaim>(paths.claims(ns, 'raw')))?.status?.phase,
    'Pending',
    'the claim stays Pending',
  );
  await kube.delete(paths.claims(ns, 'raw'));
});

t.test('growing a claim of an expandable class grows the mounted xfs online', async (t) => {
  const ns = await freshNamespace(kube);
  await kube.create(paths.claims(ns), claim('logs', 'loop-expandable', '300Mi'));
  const bound = await waitForClaimBound(kube, ns, 'logs');
  const path = join(root, bound.spec?.volumeName ?? '');
  await writeFile(join(path, 'kept'), 'before the resize');
  const before = await mountAt(path);
  await kube.patch(paths.claims(ns, 'logs'), { spec: { resources: { requests: { storage: '400Mi' } } } }, 'merge');
  await waitFor('claim logs at 400Mi', async () => {
    const c = await kube.get<V1PersistentVolumeClaim>(paths.claims(ns, 'logs'));
    return c?.status?.capacity?.storage === '400Mi' ? true : undefined;
  });
  const pv = await kube.get<V1PersistentVolume>(paths.volumes(bound.spec?.volumeName));
  t.equal(pv?.spec?.capacity?.storage, '400Mi', 'the PV says the new size');
  const after = await mountAt(path);
  t.equal(after?.fstype, 'xfs', 'still xfs');
  t.ok(
    before && after && after.size >= before.size + 95 * MiB,
    `the mounted filesystem grew by the 100 MiB (${before?.size} to ${after?.size} bytes)`,
  );
  t.equal(after?.source, before?.source, 'on the same loop device');
  t.equal(await readFile(join(path, 'kept'), 'utf8'), 'before the resize', 'with its files');
  await kube.delete(paths.claims(ns, 'logs'));
  await waitForVolumeGone(bound.spec?.volumeName ?? '');
});

let retainedPv = '';
t.test('Retain keeps the PV, the mount, the loop device and the data', async (t) => {
  const ns = await freshNamespace(kube);
  await kube.create(paths.claims(ns), claim('precious', 'loop-retained', '16Mi'));
  const bound = await waitForClaimBound(kube, ns, 'precious');
  retainedPv = bound.spec?.volumeName ?? '';
  const path = join(root, retainedPv);
  await writeFile(join(path, 'data'), 'keep me');
  await kube.delete(paths.claims(ns, 'precious'));
  await waitFor(`${retainedPv} Released`, async () => {
    const pv = await kube.get<V1PersistentVolume>(paths.volumes(retainedPv));
    return pv?.status?.phase === 'Released' ? pv : undefined;
  });
  // Absence of an action: give the provisioner a few resyncs to (wrongly) act.
  await sleep(3 * RESYNC_MS);
  t.equal(
    (await kube.get<V1PersistentVolume>(paths.volumes(retainedPv)))?.status?.phase,
    'Released',
    'the PV stays, Released',
  );
  t.equal((await mountAt(path))?.fstype, 'ext4', 'still mounted');
  t.ok(
    (await loopDevicesUnderRoot()).some((d) => d.backingFile === join(root, `${retainedPv}.img`)),
    'its loop device still attached',
  );
  t.equal(await readFile(join(path, 'data'), 'utf8'), 'keep me', 'with the data');
});

t.test('a Delete reclaim cut short after the PV was deleted is finished by the next instance', async (t) => {
  const ns = await freshNamespace(kube);
  await kube.create(paths.claims(ns), claim('cut', 'loop-standard', '16Mi'));
  const pvName = (await waitForClaimBound(kube, ns, 'cut')).spec?.volumeName ?? '';
  // The crash: the provisioner wrote its reclaim marker and deleted the PV, and died
  // before unmounting. Nothing in the API reminds anyone of the volume any more.
  provisioner.stop();
  await kube.delete(paths.claims(ns, 'cut'));
  await waitFor(`${pvName} Released`, async () =>
    (await kube.get<V1PersistentVolume>(paths.volumes(pvName)))?.status?.phase === 'Released' ? true : undefined,
  );
  await writeFile(join(root, `${pvName}.reclaiming`), '');
  await kube.delete(paths.volumes(pvName));
  t.ok(await mountAt(join(root, pvName)), 'left mounted by the crash');
  provisioner = new LoopProvisioner(kube, options);
  await provisioner.start();
  await waitForVolumeGone(pvName);
  t.pass('the next instance unmounted, detached and removed it');
});

t.test('a restarted provisioner carries on from a half-made volume', async (t) => {
  // A crash after the image was formatted and attached, before the mount and the PV.
  provisioner.stop();
  const ns = await freshNamespace(kube);
  const created = await kube.create<V1PersistentVolumeClaim>(
    paths.claims(ns),
    claim('resumed', 'loop-standard', '16Mi'),
  );
  const pvName = `pvc-${created.metadata?.uid}`;
  const image = join(root, `${pvName}.img`);
  const handle = await open(image, 'w');
  await handle.truncate(16 * MiB);
  await handle.close();
  await runCommand('mkfs.ext4', ['-q', '-F', image]);
  const device = (await runCommand('losetup', ['--find', '--show', image])).trim();
  await writeFile(join(root, `${pvName}.img.tmp`), 'a staging file of an even older attempt');

  provisioner = new LoopProvisioner(kube, options);
  await provisioner.start();
  const bound = await waitForClaimBound(kube, ns, 'resumed');
  t.equal(bound.spec?.volumeName, pvName, 'the same PV name');
  t.same(
    (await loopDevicesUnderRoot()).filter((d) => d.backingFile === image).map((d) => d.name),
    [device],
    'the loop device it found, no second one',
  );
  t.equal((await mountAt(join(root, pvName)))?.source, device, 'mounted from it');
  t.notOk(existsSync(join(root, `${pvName}.img.tmp`)), 'the stale staging file removed');
});

t.test('teardown by a new instance leaves no loop device, mount or file under the root', async (t) => {
  // A crash again: the instance that made the volumes is gone; a fresh one, never
  // started, cleans up from what the machine shows.
  provisioner.stop();
  t.ok((await loopDevicesUnderRoot()).length >= 2, 'volumes are attached before (the retained and the resumed one)');
  t.ok((await mountsUnderRoot()).length >= 2, 'and mounted');
  // What a real kubelet that died would leave: a bind mount of a volume into a pod's directory.
  const podMount = join(cluster.dir, 'kubelet-pod-volume');
  await mkdir(podMount);
  await runCommand('mount', ['--bind', join(root, retainedPv), podMount]);
  provisioner = new LoopProvisioner(kube, options);
  await provisioner.teardown();
  t.same(await loopDevicesUnderRoot(), [], 'no loop device on a file under the root');
  t.same(await mountsUnderRoot(), [], 'no mount under the root');
  t.notOk(await mountAt(podMount), 'nor the bind mount of one of its devices elsewhere');
  t.notOk(existsSync(root), 'the root is gone');
  t.ok(
    await kube.get(paths.volumes(retainedPv)),
    "the PV objects are the cluster's business: the Retained one is still there",
  );
});
