// A provisioner of real filesystems on loop devices, for the real-node tier: a real
// kubelet mounts the volumes, so capacity and ENOSPC are those of a real disk.
// It follows the same rules as the hostPath provisioner of the fast tier (and as
// external-provisioner):
//   - provisions claims of its StorageClasses once the PV controller has handed
//     them over (annotation volume.kubernetes.io/storage-provisioner); for
//     WaitForFirstConsumer only once the scheduler picked a node, and only if that
//     node is the one it serves (what external-provisioner does with
//     --node-deployment: each node's instance takes the claims selected for it);
//   - ignores claims whose dataSourceRef names a populator (the one shared rule,
//     isIgnoredForPopulator), which is what lets pvshift populate them;
//   - reclaims Released volumes by policy: Delete removes the PV (guarded by uid and
//     resourceVersion), then the mount, the loop device and the image; Retain keeps all;
//   - grows volumes of a class with allowVolumeExpansion, online (xfs_growfs;
//     resize2fs where CAP_SYS_RESOURCE allows), as the external resizer and the
//     kubelet would together.
//
// A volume is these, all named from the PV, itself named from the claim's UID (so a
// retry finds what an earlier attempt made):
//   <root>/pvc-<uid>.img   a sparse image file, formatted before it gets its final name
//   /dev/loopN             attached to that file (found again by backing file, never by number)
//   <root>/pvc-<uid>/      where the filesystem is mounted; the PV's `local.path`
//   <root>/pvc-<uid>.reclaiming  while a Delete reclaim runs (finished by the next instance after a crash)
// The fs root is left as mkfs makes it (0755 root:root, and lost+found on ext4), as on
// a fresh cloud disk behind a CSI driver: the kubelet applies a pod's fsGroup to a
// local volume, and pvshift's copy pods run as root. A 0777 root would hide the
// permission problems a real disk shows.
// Block-mode claims are refused (Warning event ProvisioningFailed on the claim): a
// raw /dev/loopN as `local.path` would change number after a crash or reboot.
//
// `teardown()` removes every mount, loop device and file under the root, found from
// the mount table and the loop devices' backing files, so it cleans up after a crash
// of an earlier instance too. It touches nothing but files under its root, loop
// devices backed by them and mounts of those devices: other test runs on the same
// machine have their own.
import { mkdir, open, readdir, realpath, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { V1PersistentVolume, V1PersistentVolumeClaim, V1StorageClass } from '@kubernetes/client-node';
import { ApiError, Informer, keyOf, paths, type Kube } from '../src/kube.js';
import { parseQuantity } from '../src/quantity.js';
import { isIgnoredForPopulator } from './hostpath-provisioner.js';
import { runCommand } from './processes.js';

export const LOOP_PROVISIONER_NAME = 'loop.pvshift.local';
const ANNOTATION_STORAGE_PROVISIONER = 'volume.kubernetes.io/storage-provisioner';
const ANNOTATION_SELECTED_NODE = 'volume.kubernetes.io/selected-node';
const ANNOTATION_PROVISIONED_BY = 'pv.kubernetes.io/provisioned-by';
const ANNOTATION_DEFAULT_CLASS = 'storageclass.kubernetes.io/is-default-class';
/** The StorageClass parameter naming the filesystem. */
export const PARAMETER_FS_TYPE = 'fsType';
export const REASON_PROVISIONING_FAILED = 'ProvisioningFailed';
export const REASON_RESIZE_FAILED = 'VolumeResizeFailed';
const MiB = 2 ** 20;

export type LoopFsType = 'ext4' | 'xfs';

interface Filesystem {
  /** The smallest image mkfs accepts (or that still behaves like a disk). */
  minBytes: number;
  mkfs(file: string): [string, string[]];
  grow(device: string, mountpoint: string): [string, string[]];
}

const FILESYSTEMS: Record<LoopFsType, Filesystem> = {
  ext4: {
    // mke2fs goes down to 1 MiB, but below 3 MiB it picks its "floppy" type; 16 MiB
    // keeps a journal and a filesystem that behaves like a disk.
    minBytes: 16 * MiB,
    // `-F -m0` as the kubelet's mount-utils formats ext4 (formatAndMountSensitive):
    // no blocks reserved for root, so the capacity is what any pod can fill.
    // Inode tables and journal are zeroed now, not by the kernel's lazyinit thread
    // after mount: on an image file mke2fs zeroes by punching holes, so this is quick
    // and no background writes follow a test's mount.
    mkfs: (file) => ['mkfs.ext4', ['-q', '-F', '-m0', '-E', 'lazy_itable_init=0,lazy_journal_init=0', file]],
    // Online growth of a mounted ext4. The kernel's EXT4_IOC_RESIZE_FS wants
    // CAP_SYS_RESOURCE, which a container may lack even as root (resize2fs then says
    // "Permission denied to resize filesystem"); so the `expandable` class is xfs.
    grow: (device) => ['resize2fs', [device]],
  },
  xfs: {
    // xfsprogs >= 5.19 (bookworm has 6.1) refuses a data section below 300 MiB:
    // "Filesystem must be larger than 300MB." Smaller claims get 300 MiB, and the PV
    // says so: a claim may be bound to a larger volume than it asked for.
    minBytes: 300 * MiB,
    mkfs: (file) => ['mkfs.xfs', ['-q', '-f', file]],
    // xfs grows only mounted, by its mount point (CAP_SYS_ADMIN).
    grow: (_device, mountpoint) => ['xfs_growfs', [mountpoint]],
  },
};

function isFsType(value: string | undefined): value is LoopFsType {
  return value === 'ext4' || value === 'xfs';
}

/**
 * The real size of a volume for a request: whole MiB (a loop device's size must be
 * a multiple of its 512-byte sectors; MiB keeps the PV's quantity readable), at
 * least the filesystem's minimum. The PV reports this, the size of the device; the
 * filesystem's own metadata (journal, log, inode tables) takes its share of it, as
 * on any disk.
 */
export function volumeBytesFor(requestBytes: number, fsType: LoopFsType): number {
  return Math.max(Math.ceil(requestBytes / MiB) * MiB, FILESYSTEMS[fsType].minBytes);
}

export interface LoopStorageClassOptions {
  /** Prepended to every class name: `loop-` where the hostPath classes already hold the plain names. */
  classPrefix?: string;
  /** Mark `<prefix>standard` as the default class; default only without a prefix. */
  defaultClass?: boolean;
}

/**
 * The classes, mirroring the fast tier's so a test moves between tiers unchanged:
 * `standard` is Immediate there and here (tests wait for a claim Bound before any
 * pod exists); with one node, Immediate volumes get node affinity to it.
 */
export function loopStorageClasses(options: LoopStorageClassOptions = {}): V1StorageClass[] {
  const prefix = options.classPrefix ?? '';
  const isDefault = options.defaultClass ?? prefix === '';
  const storageClass = (
    name: string,
    fsType: LoopFsType,
    binding: string,
    reclaim: string,
    expand = false,
    makeDefault = false,
  ): V1StorageClass => ({
    apiVersion: 'storage.k8s.io/v1',
    kind: 'StorageClass',
    metadata: {
      name: `${prefix}${name}`,
      ...(makeDefault ? { annotations: { [ANNOTATION_DEFAULT_CLASS]: 'true' } } : {}),
    },
    provisioner: LOOP_PROVISIONER_NAME,
    parameters: { [PARAMETER_FS_TYPE]: fsType },
    reclaimPolicy: reclaim,
    volumeBindingMode: binding,
    allowVolumeExpansion: expand,
  });
  return [
    storageClass('standard', 'ext4', 'Immediate', 'Delete', false, isDefault),
    storageClass('fast', 'xfs', 'WaitForFirstConsumer', 'Delete'),
    // xfs, not ext4: online ext4 growth needs CAP_SYS_RESOURCE (see FILESYSTEMS).
    storageClass('expandable', 'xfs', 'Immediate', 'Delete', true),
    storageClass('retained', 'ext4', 'Immediate', 'Retain'),
  ];
}

/** A command that failed: which one, how, and what it said. */
interface Mount {
  target: string;
  source: string;
}

/** The mounts (of this mount namespace) at or below `dir`, deepest first (the order to unmount them). */
async function mountsUnder(dir: string): Promise<Mount[]> {
  return (await mounts()).filter((m) => isUnder(m.target, dir));
}

/** Every mount of this mount namespace, deepest first. */
async function mounts(): Promise<Mount[]> {
  const out = await runCommand('findmnt', ['--json', '--list', '--output', 'TARGET,SOURCE']);
  const { filesystems = [] } = JSON.parse(out || '{}') as { filesystems?: Mount[] };
  return filesystems.sort((a, b) => b.target.length - a.target.length);
}

/** The device of a mount's source: findmnt shows a bind mount of a subdirectory as `/dev/loop0[/sub]`. */
function deviceOf(mount: Mount): string {
  return mount.source.replace(/\[.*\]$/, '');
}

interface LoopDevice {
  name: string;
  backingFile: string;
}

/** Loop devices whose backing file is (or was, before it was deleted) at or below `dir`. */
async function loopDevicesUnder(dir: string): Promise<LoopDevice[]> {
  // The backing file as the kernel reports it (sysfs), suffixed " (deleted)" once unlinked.
  const out = await runCommand('losetup', ['--list', '--json', '--output', 'NAME,BACK-FILE']);
  const { loopdevices = [] } = JSON.parse(out || '{}') as {
    loopdevices?: { name: string; 'back-file'?: string | null }[];
  };
  return loopdevices
    .map((d) => ({ name: d.name, backingFile: (d['back-file'] ?? '').replace(/ \(deleted\)$/, '') }))
    .filter((d) => isUnder(d.backingFile, dir));
}

function isUnder(path: string, dir: string): boolean {
  return path === dir || path.startsWith(dir.endsWith('/') ? dir : `${dir}/`);
}

/** Sets a file's size; `w` makes it (empty) first, `r+` keeps its content. */
async function resizeFile(path: string, bytes: number, flags: 'w' | 'r+'): Promise<void> {
  const handle = await open(path, flags);
  try {
    await handle.truncate(bytes);
  } finally {
    await handle.close();
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (e: unknown) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

export interface LoopProvisionerOptions extends LoopStorageClassOptions {
  /** Where images and mount points go; everything under it is this provisioner's. */
  root: string;
  /** The node this host is: Immediate volumes get affinity to it, WaitForFirstConsumer ones are taken only when selected for it. */
  node: string;
  log?: (line: string) => void;
  /** How often every claim and volume is looked at again (external-provisioner resyncs too); default 2 s. */
  resyncMs?: number;
}

export class LoopProvisioner {
  private readonly claims: Informer<V1PersistentVolumeClaim>;
  private readonly volumes: Informer<V1PersistentVolume>;
  private readonly classes: Informer<V1StorageClass>;
  /** Work in progress, by PV name: one piece of work per volume at a time. */
  private readonly busy = new Map<string, Promise<void>>();
  /** Claims already told why they are refused (uid and message), so a resync does not repeat it. */
  private readonly reported = new Set<string>();
  private readonly log: (line: string) => void;
  private root: string;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly kube: Kube,
    private readonly options: LoopProvisionerOptions,
  ) {
    this.root = options.root;
    this.log = options.log ?? (() => {});
    this.claims = new Informer(kube, paths.claims());
    this.volumes = new Informer(kube, paths.volumes());
    this.classes = new Informer(kube, paths.storageClasses());
  }

  /** Its StorageClasses, as created by `start`. */
  storageClasses(): V1StorageClass[] {
    return loopStorageClasses(this.options);
  }

  async start(): Promise<void> {
    await mkdir(this.options.root, { recursive: true });
    // The kernel reports backing files and mount points by real path.
    this.root = await realpath(this.options.root);
    for (const storageClass of this.storageClasses()) {
      try {
        await this.kube.create(paths.storageClasses(), storageClass);
      } catch (e: unknown) {
        if (!(e instanceof ApiError && e.code === 409)) throw e;
      }
    }
    this.claims.on((type, claim) => type !== 'delete' && this.enqueueClaim(claim));
    this.volumes.on((type, pv) => type !== 'delete' && this.enqueueVolume(pv));
    for (const informer of [this.classes, this.claims, this.volumes]) informer.start();
    await Promise.all([this.classes.waitForSync(), this.claims.waitForSync(), this.volumes.waitForSync()]);
    this.timer = setInterval(() => {
      for (const claim of this.claims.list()) this.enqueueClaim(claim);
      for (const pv of this.volumes.list()) this.enqueueVolume(pv);
      this.enqueueInterruptedReclaims();
    }, this.options.resyncMs ?? 2000);
    this.enqueueInterruptedReclaims();
  }

  /** Stops watching; volumes stay as they are (a crash looks the same). */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    for (const informer of [this.classes, this.claims, this.volumes]) informer.stop();
  }

  /**
   * Stops, waits for work in progress, then unmounts, detaches and removes
   * everything under the root, whichever instance made it. Throws, naming what
   * is left, if anything could not be removed.
   */
  async teardown(): Promise<void> {
    this.stop();
    await Promise.allSettled([...this.busy.values()]);
    const root = await realpath(this.options.root).catch(() => this.root);
    const failures: string[] = [];
    // Our mount points, and any other mount of one of our devices in this namespace:
    // a real kubelet's bind mounts into pod directories, left by a kubelet that died,
    // would otherwise hold the device (a mount in a container's own namespace goes
    // with the container; the detach below then frees the device when it does).
    const ours = new Set((await loopDevicesUnder(root)).map((d) => d.name));
    for (const mount of (await mounts()).filter((m) => isUnder(m.target, root) || ours.has(deviceOf(m)))) {
      await runCommand('umount', [mount.target]).catch((e: unknown) => failures.push(String(e)));
    }
    for (const device of await loopDevicesUnder(root)) {
      await runCommand('losetup', ['--detach', device.name]).catch((e: unknown) => failures.push(String(e)));
    }
    const mounted = await mountsUnder(root);
    if (mounted.length === 0) await rm(root, { recursive: true, force: true });
    else failures.push(`still mounted: ${mounted.map((m) => m.target).join(', ')} (so ${root} was not removed)`);
    const devices = await loopDevicesUnder(root);
    // `losetup --detach` of a device still in use only marks it autoclear; it stays listed until its last user goes.
    if (devices.length > 0)
      failures.push(`loop devices still attached: ${devices.map((d) => `${d.name} (${d.backingFile})`).join(', ')}`);
    if (failures.length > 0) throw new Error(`loop-provisioner teardown of ${root}:\n  ${failures.join('\n  ')}`);
    this.log(`loop-provisioner: removed every volume under ${root}`);
  }

  /** The image, mount point and reclaim marker of a volume. */
  private files(name: string): { image: string; staging: string; dir: string; reclaiming: string } {
    const image = join(this.root, `${name}.img`);
    return {
      image,
      staging: `${image}.tmp`,
      dir: join(this.root, name),
      reclaiming: join(this.root, `${name}.reclaiming`),
    };
  }

  private run(name: string, what: string, work: () => Promise<void>): void {
    if (this.stopped || this.busy.has(name)) return;
    const done = work()
      .catch((e: unknown) => {
        if (!(e instanceof ApiError && (e.code === 409 || e.code === 404)))
          this.log(`loop-provisioner: ${what}: ${e instanceof Error ? e.message : String(e)}`);
      })
      .finally(() => this.busy.delete(name));
    this.busy.set(name, done);
  }

  private enqueueClaim(claim: V1PersistentVolumeClaim): void {
    const uid = claim.metadata?.uid;
    if (uid) this.run(`pvc-${uid}`, `claim ${keyOf(claim)}`, () => this.syncClaim(claim));
  }

  private enqueueVolume(pv: V1PersistentVolume): void {
    const name = pv.metadata?.name;
    if (name) this.run(name, `volume ${name}`, () => this.syncVolume(pv));
  }

  private classOf(name: string | undefined): V1StorageClass | undefined {
    const storageClass = name ? this.classes.get(name) : undefined;
    return storageClass?.provisioner === LOOP_PROVISIONER_NAME ? storageClass : undefined;
  }

  /** Ours: provisioned by this provisioner, under this root (another instance may share the cluster). */
  private isOurs(pv: V1PersistentVolume): boolean {
    const path = pv.spec?.local?.path;
    return (
      pv.metadata?.annotations?.[ANNOTATION_PROVISIONED_BY] === LOOP_PROVISIONER_NAME &&
      !!path &&
      isUnder(path, this.root) &&
      path !== this.root
    );
  }

  private async syncClaim(claim: V1PersistentVolumeClaim): Promise<void> {
    const storageClass = this.classOf(claim.spec?.storageClassName);
    if (!storageClass || claim.metadata?.deletionTimestamp) return;
    if (claim.status?.phase === 'Bound') {
      await this.expand(claim, storageClass);
      return;
    }
    if (claim.spec?.volumeName) return; // pre-bound by someone: the PV controller's business
    const annotations = claim.metadata?.annotations ?? {};
    if (annotations[ANNOTATION_STORAGE_PROVISIONER] !== LOOP_PROVISIONER_NAME) return;
    if (isIgnoredForPopulator(claim)) return;
    const waitForConsumer = storageClass.volumeBindingMode === 'WaitForFirstConsumer';
    const selected = annotations[ANNOTATION_SELECTED_NODE];
    if (waitForConsumer && selected !== this.options.node) return; // not yet, or another node's
    const name = `pvc-${claim.metadata?.uid}`;
    if (this.volumes.get(name)) return;
    if (claim.spec?.volumeMode === 'Block') {
      await this.warn(
        claim,
        REASON_PROVISIONING_FAILED,
        `volumeMode Block is not supported by ${LOOP_PROVISIONER_NAME}: it provisions filesystems only`,
      );
      return;
    }
    const fsType = storageClass.parameters?.[PARAMETER_FS_TYPE];
    if (!isFsType(fsType)) {
      await this.warn(
        claim,
        REASON_PROVISIONING_FAILED,
        `StorageClass ${storageClass.metadata?.name} has ${PARAMETER_FS_TYPE} ${JSON.stringify(fsType)}; ${LOOP_PROVISIONER_NAME} makes ext4 or xfs`,
      );
      return;
    }
    const request = parseQuantity(claim.spec?.resources?.requests?.storage);
    if (request === undefined) {
      await this.warn(
        claim,
        REASON_PROVISIONING_FAILED,
        `the claim requests no storage size ${LOOP_PROVISIONER_NAME} understands`,
      );
      return;
    }
    const bytes = volumeBytesFor(request, fsType);
    const { dir } = this.files(name);
    try {
      await this.makeVolume(name, fsType, bytes);
    } catch (e: unknown) {
      // Said once per distinct failure (not at every resync); the next resync tries again.
      await this.warn(
        claim,
        REASON_PROVISIONING_FAILED,
        `making ${name}: ${e instanceof Error ? e.message : String(e)}`,
      );
      return;
    }
    const pv: V1PersistentVolume = {
      apiVersion: 'v1',
      kind: 'PersistentVolume',
      metadata: { name, annotations: { [ANNOTATION_PROVISIONED_BY]: LOOP_PROVISIONER_NAME } },
      spec: {
        // The device's size, which may exceed the request (whole MiB, the filesystem's minimum).
        capacity: { storage: `${bytes / MiB}Mi` },
        accessModes: claim.spec?.accessModes ?? ['ReadWriteOnce'],
        volumeMode: 'Filesystem',
        persistentVolumeReclaimPolicy: storageClass.reclaimPolicy ?? 'Delete',
        storageClassName: storageClass.metadata?.name,
        // A directory, already mounted: the kubelet bind-mounts it into pods. (`local.fsType`
        // is for a block-device path the kubelet would format itself; not ours.)
        local: { path: dir },
        nodeAffinity: {
          required: {
            nodeSelectorTerms: [
              { matchExpressions: [{ key: 'kubernetes.io/hostname', operator: 'In', values: [this.options.node] }] },
            ],
          },
        },
        claimRef: {
          apiVersion: 'v1',
          kind: 'PersistentVolumeClaim',
          namespace: claim.metadata?.namespace,
          name: claim.metadata?.name,
          uid: claim.metadata?.uid,
          resourceVersion: claim.metadata?.resourceVersion,
        },
      },
    };
    try {
      await this.kube.create(paths.volumes(), pv);
    } catch (e: unknown) {
      if (e instanceof ApiError && e.code === 409) return; // made by an earlier attempt
      throw e;
    }
    this.log(`loop-provisioner: provisioned ${name} (${fsType}, ${bytes / MiB} MiB) at ${dir} for ${keyOf(claim)}`);
  }

  /**
   * Image, loop device, mount: each step finds what an earlier, interrupted attempt
   * left and carries on from there.
   */
  private async makeVolume(name: string, fsType: LoopFsType, bytes: number): Promise<void> {
    const { image, staging, dir } = this.files(name);
    if (!(await exists(image))) {
      // Formatted under a staging name, renamed when whole: an image under its final
      // name always holds a filesystem; a staging file of a crashed attempt is redone.
      await resizeFile(staging, bytes, 'w'); // sparse: blocks are allocated as the filesystem writes
      const [command, args] = FILESYSTEMS[fsType].mkfs(staging);
      await runCommand(command, args);
      await rename(staging, image);
    }
    await rm(staging, { force: true }); // left by an attempt that crashed before an earlier one's rename
    const device = await this.attach(image);
    await mkdir(dir, { recursive: true });
    const mounted = (await mountsUnder(dir)).filter((m) => m.target === dir);
    if (mounted.length === 0) await runCommand('mount', ['-t', fsType, device, dir]);
    else if (!mounted.some((m) => m.source === device))
      throw new Error(`${dir} is mounted from ${mounted.map((m) => m.source).join(', ')}, not from ${device}`);
  }

  /** The loop device of an image: the one already attached to it, or a new one. */
  private async attach(image: string): Promise<string> {
    // --nooverlap reuses a device already attached to the file instead of making a
    // second one; --find takes a free device (creating one through /dev/loop-control).
    const out = await runCommand('losetup', ['--nooverlap', '--find', '--show', image]);
    const device = out.trim();
    if (!device.startsWith('/dev/'))
      throw new Error(`losetup --find --show ${image} printed ${JSON.stringify(out)}, not a device`);
    return device;
  }

  private async expand(claim: V1PersistentVolumeClaim, storageClass: V1StorageClass): Promise<void> {
    if (!storageClass.allowVolumeExpansion) return;
    try {
      await this.grow(claim, storageClass);
    } catch (e: unknown) {
      if (e instanceof ApiError && (e.code === 409 || e.code === 404)) return;
      await this.warn(claim, REASON_RESIZE_FAILED, e instanceof Error ? e.message : String(e));
    }
  }

  /** Grows the image, the loop device and the mounted filesystem to the claim's request; idempotent. */
  private async grow(claim: V1PersistentVolumeClaim, storageClass: V1StorageClass): Promise<void> {
    const requested = parseQuantity(claim.spec?.resources?.requests?.storage);
    const pv = claim.spec?.volumeName ? this.volumes.get(claim.spec.volumeName) : undefined;
    const fsType = storageClass.parameters?.[PARAMETER_FS_TYPE];
    if (!pv || !this.isOurs(pv) || requested === undefined || !isFsType(fsType)) return;
    const name = pv.metadata?.name ?? '';
    const current = parseQuantity(pv.spec?.capacity?.storage) ?? 0;
    const bytes = volumeBytesFor(requested, fsType);
    if (bytes > current) {
      // Grow the file, tell the loop device (--set-capacity), then the mounted filesystem.
      const { image, dir } = this.files(name);
      if ((await stat(image)).size < bytes) await resizeFile(image, bytes, 'r+');
      const devices = (await loopDevicesUnder(this.root)).filter((d) => d.backingFile === image);
      const device = devices[0]?.name;
      if (!device) throw new Error(`${image} is not attached to a loop device; cannot grow ${name}`);
      await runCommand('losetup', ['--set-capacity', device]);
      const [command, args] = FILESYSTEMS[fsType].grow(device, dir);
      await runCommand(command, args);
      await this.kube.patch(paths.volumes(name), { spec: { capacity: { storage: `${bytes / MiB}Mi` } } }, 'merge');
      this.log(`loop-provisioner: grew ${name} to ${bytes / MiB} MiB for ${keyOf(claim)}`);
    }
    const capacity = `${Math.max(bytes, current) / MiB}Mi`;
    if (parseQuantity(claim.status?.capacity?.storage) !== Math.max(bytes, current)) {
      await this.kube.patch(
        `${paths.claims(claim.metadata?.namespace, claim.metadata?.name)}/status`,
        { status: { capacity: { storage: capacity } } },
        'merge',
      );
    }
  }

  private async syncVolume(pv: V1PersistentVolume): Promise<void> {
    if (!this.isOurs(pv)) return;
    if (pv.status?.phase !== 'Released' || pv.spec?.persistentVolumeReclaimPolicy !== 'Delete') return;
    const name = pv.metadata?.name ?? '';
    const { reclaiming } = this.files(name);
    // The PV object goes first, guarded: if anyone changed it since we looked (a
    // rebind, a policy flip to Retain), we do nothing. The marker, written before,
    // lets a restarted provisioner finish a reclaim that a crash cut short after the
    // PV was gone, when nothing in the API is left to remind it.
    await writeFile(reclaiming, `${pv.metadata?.uid ?? ''}\n`);
    try {
      await this.kube.delete(paths.volumes(name), {
        preconditions: { uid: pv.metadata?.uid, resourceVersion: pv.metadata?.resourceVersion },
      });
    } catch (e: unknown) {
      await rm(reclaiming, { force: true });
      if (e instanceof ApiError && e.code === 409) return;
      throw e;
    }
    await this.removeVolume(name);
  }

  /** Reclaims that a crash (or a failed unmount) left between the PV's deletion and the cleanup. */
  private enqueueInterruptedReclaims(): void {
    void readdir(this.root)
      .then((entries) => {
        for (const entry of entries) {
          if (!entry.endsWith('.reclaiming')) continue;
          const name = entry.slice(0, -'.reclaiming'.length);
          this.run(name, `interrupted reclaim of ${name}`, async () => {
            if (await this.kube.get(paths.volumes(name))) {
              // The delete never happened: the PV decides again, by its policy, on its next sync.
              await rm(this.files(name).reclaiming, { force: true });
              return;
            }
            await this.removeVolume(name);
          });
        }
      })
      .catch((e: unknown) => this.log(`loop-provisioner: reading ${this.root}: ${String(e)}`));
  }

  /** Unmount, detach, remove: each step tolerates that it was already done. */
  private async removeVolume(name: string): Promise<void> {
    const { image, staging, dir, reclaiming } = this.files(name);
    for (const mount of (await mountsUnder(dir)).filter((m) => m.target === dir))
      await runCommand('umount', [mount.target]);
    if ((await mountsUnder(dir)).length > 0) throw new Error(`${dir} is still mounted; not removing it`);
    for (const device of await loopDevicesUnder(this.root)) {
      if (device.backingFile === image || device.backingFile === staging)
        await runCommand('losetup', ['--detach', device.name]);
    }
    await rm(image, { force: true });
    await rm(staging, { force: true });
    await rm(dir, { recursive: true, force: true });
    await rm(reclaiming, { force: true });
    this.log(`loop-provisioner: deleted ${name}: unmounted ${dir}, detached its loop device, removed ${image}`);
  }

  /**
   * A Warning event on the claim (ProvisioningFailed, VolumeResizeFailed, as
   * external-provisioner and external-resizer report them), once per distinct
   * message: the resync retries every few seconds and would repeat it.
   */
  private async warn(claim: V1PersistentVolumeClaim, reason: string, message: string): Promise<void> {
    const key = `${claim.metadata?.uid}:${reason}:${message}`;
    if (this.reported.has(key)) return;
    this.reported.add(key);
    this.log(`loop-provisioner: ${keyOf(claim)}: ${message}`);
    const now = new Date().toISOString();
    await this.kube
      .create(paths.events(claim.metadata?.namespace), {
        apiVersion: 'v1',
        kind: 'Event',
        metadata: { generateName: `${claim.metadata?.name}.`, namespace: claim.metadata?.namespace },
        involvedObject: {
          apiVersion: 'v1',
          kind: 'PersistentVolumeClaim',
          namespace: claim.metadata?.namespace,
          name: claim.metadata?.name,
          uid: claim.metadata?.uid,
        },
        reason,
        message: message.slice(0, 1024),
        type: 'Warning',
        source: { component: LOOP_PROVISIONER_NAME },
        firstTimestamp: now,
        lastTimestamp: now,
        count: 1,
      })
      .catch((e: unknown) => this.log(`loop-provisioner: event on ${keyOf(claim)}: ${String(e)}`));
  }
}
