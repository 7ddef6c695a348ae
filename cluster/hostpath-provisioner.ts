// A hostPath provisioner for the local cluster, standing in for a CSI driver and
// external-provisioner. Like external-provisioner it:
//   - provisions claims of its StorageClasses once the PV controller has handed
//     them over (annotation volume.kubernetes.io/storage-provisioner), and for
//     WaitForFirstConsumer only after the scheduler picked a node
//     (volume.kubernetes.io/selected-node), with node affinity to that node;
//   - ignores claims whose dataSourceRef names a kind other than
//     PersistentVolumeClaim or VolumeSnapshot: "an external populator will
//     provision the volume" (that is what lets pvshift populate them);
//   - reclaims Released volumes by policy: Delete removes the directory and the
//     PV, Retain keeps both;
//   - expands volumes of a class with allowVolumeExpansion (capacity only).
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { V1PersistentVolume, V1PersistentVolumeClaim, V1StorageClass } from '@kubernetes/client-node';
import { ApiError, Informer, keyOf, paths, type Kube } from '../src/kube.js';

export const PROVISIONER_NAME = 'hostpath.pvshift.local';
const ANNOTATION_STORAGE_PROVISIONER = 'volume.kubernetes.io/storage-provisioner';
const ANNOTATION_SELECTED_NODE = 'volume.kubernetes.io/selected-node';
const ANNOTATION_PROVISIONED_BY = 'pv.kubernetes.io/provisioned-by';

/** The classes of the local cluster. */
export function localStorageClasses(): V1StorageClass[] {
  const storageClass = (
    name: string,
    binding: string,
    reclaim: string,
    expand = false,
    isDefault = false,
  ): V1StorageClass => ({
    apiVersion: 'storage.k8s.io/v1',
    kind: 'StorageClass',
    metadata: {
      name,
      ...(isDefault ? { annotations: { 'storageclass.kubernetes.io/is-default-class': 'true' } } : {}),
    },
    provisioner: PROVISIONER_NAME,
    reclaimPolicy: reclaim,
    volumeBindingMode: binding,
    allowVolumeExpansion: expand,
  });
  return [
    storageClass('standard', 'Immediate', 'Delete', false, true),
    storageClass('fast', 'WaitForFirstConsumer', 'Delete'),
    storageClass('expandable', 'Immediate', 'Delete', true),
    storageClass('retained', 'Immediate', 'Retain'),
  ];
}

/** external-provisioner's rule: only these data sources are its business. */
export function isIgnoredForPopulator(claim: V1PersistentVolumeClaim): boolean {
  const ref = claim.spec?.dataSourceRef;
  if (!ref) return false;
  const core = !ref.apiGroup && ref.kind === 'PersistentVolumeClaim';
  const snapshot = ref.apiGroup === 'snapshot.storage.k8s.io' && ref.kind === 'VolumeSnapshot';
  return !core && !snapshot;
}

export class HostPathProvisioner {
  private readonly claims: Informer<V1PersistentVolumeClaim>;
  private readonly volumes: Informer<V1PersistentVolume>;
  private readonly classes: Informer<V1StorageClass>;
  private readonly busy = new Set<string>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly kube: Kube,
    private readonly root: string,
    private readonly log: (message: string) => void,
  ) {
    this.claims = new Informer(kube, paths.claims());
    this.volumes = new Informer(kube, paths.volumes());
    this.classes = new Informer(kube, paths.storageClasses());
  }

  async start(): Promise<void> {
    await mkdir(this.root, { recursive: true });
    for (const storageClass of localStorageClasses()) {
      try {
        await this.kube.create(paths.storageClasses(), storageClass);
      } catch (e: unknown) {
        if (!(e instanceof ApiError && e.code === 409)) throw e;
      }
    }
    this.claims.on(
      (type, claim) => type !== 'delete' && this.run(`claim ${keyOf(claim)}`, () => this.syncClaim(claim)),
    );
    this.volumes.on((type, pv) => type !== 'delete' && this.run(`volume ${keyOf(pv)}`, () => this.syncVolume(pv)));
    for (const informer of [this.classes, this.claims, this.volumes]) informer.start();
    await Promise.all([this.classes.waitForSync(), this.claims.waitForSync(), this.volumes.waitForSync()]);
    // A periodic resync, as external-provisioner has, catches what an event raced.
    this.timer = setInterval(() => {
      for (const claim of this.claims.list()) this.run(`claim ${keyOf(claim)}`, () => this.syncClaim(claim));
      for (const pv of this.volumes.list()) this.run(`volume ${keyOf(pv)}`, () => this.syncVolume(pv));
    }, 2000);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    for (const informer of [this.classes, this.claims, this.volumes]) informer.stop();
  }

  private run(what: string, work: () => Promise<void>): void {
    if (this.busy.has(what)) return;
    this.busy.add(what);
    work()
      .catch((e: unknown) => {
        if (!(e instanceof ApiError && (e.code === 409 || e.code === 404)))
          this.log(`hostpath-provisioner: ${what}: ${String(e)}`);
      })
      .finally(() => this.busy.delete(what));
  }

  private classOf(name: string | undefined): V1StorageClass | undefined {
    const storageClass = name ? this.classes.get(name) : undefined;
    return storageClass?.provisioner === PROVISIONER_NAME ? storageClass : undefined;
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
    if (annotations[ANNOTATION_STORAGE_PROVISIONER] !== PROVISIONER_NAME) return;
    if (isIgnoredForPopulator(claim)) return;
    const waitForConsumer = storageClass.volumeBindingMode === 'WaitForFirstConsumer';
    const node = annotations[ANNOTATION_SELECTED_NODE];
    if (waitForConsumer && !node) return;
    const name = `pvc-${claim.metadata?.uid}`;
    if (this.volumes.get(name)) return;
    const path = join(this.root, name);
    await mkdir(path, { recursive: true });
    const pv: V1PersistentVolume = {
      apiVersion: 'v1',
      kind: 'PersistentVolume',
      metadata: { name, annotations: { [ANNOTATION_PROVISIONED_BY]: PROVISIONER_NAME } },
      spec: {
        capacity: { storage: claim.spec?.resources?.requests?.storage ?? '1Gi' },
        accessModes: claim.spec?.accessModes ?? ['ReadWriteOnce'],
        volumeMode: claim.spec?.volumeMode ?? 'Filesystem',
        persistentVolumeReclaimPolicy: storageClass.reclaimPolicy ?? 'Delete',
        storageClassName: storageClass.metadata?.name,
        hostPath: { path, type: 'Directory' },
        claimRef: {
          apiVersion: 'v1',
          kind: 'PersistentVolumeClaim',
          namespace: claim.metadata?.namespace,
          name: claim.metadata?.name,
          uid: claim.metadata?.uid,
          resourceVersion: claim.metadata?.resourceVersion,
        },
        ...(waitForConsumer && node
          ? {
              nodeAffinity: {
                required: {
                  nodeSelectorTerms: [
                    { matchExpressions: [{ key: 'kubernetes.io/hostname', operator: 'In', values: [node] }] },
                  ],
                },
              },
            }
          : {}),
      },
    };
    await this.kube.create(paths.volumes(), pv);
    this.log(`hostpath-provisioner: provisioned ${name} at ${path} for ${keyOf(claim)}`);
  }

  private async expand(claim: V1PersistentVolumeClaim, storageClass: V1StorageClass): Promise<void> {
    const requested = claim.spec?.resources?.requests?.storage;
    const current = claim.status?.capacity?.storage;
    if (!storageClass.allowVolumeExpansion || !requested || !current || requested === current) return;
    const pvName = claim.spec?.volumeName;
    if (!pvName) return;
    await this.kube.patch(paths.volumes(pvName), { spec: { capacity: { storage: requested } } }, 'merge');
    await this.kube.patch(
      `${paths.claims(claim.metadata?.namespace, claim.metadata?.name)}/status`,
      { status: { capacity: { storage: requested } } },
      'merge',
    );
  }

  private async syncVolume(pv: V1PersistentVolume): Promise<void> {
    if (pv.metadata?.annotations?.[ANNOTATION_PROVISIONED_BY] !== PROVISIONER_NAME) return;
    if (pv.status?.phase !== 'Released' || pv.spec?.persistentVolumeReclaimPolicy !== 'Delete') return;
    const path = pv.spec?.hostPath?.path;
    // Delete the object first, guarded by its resourceVersion: if anyone changed
    // the PV since we looked (a rebind, a policy flip to Retain), we do nothing.
    try {
      await this.kube.delete(paths.volumes(pv.metadata?.name), {
        preconditions: { uid: pv.metadata?.uid, resourceVersion: pv.metadata?.resourceVersion },
      });
    } catch (e: unknown) {
      if (e instanceof ApiError && e.code === 409) return;
      throw e;
    }
    if (path && path.startsWith(this.root + '/')) await rm(path, { recursive: true, force: true });
    this.log(`hostpath-provisioner: deleted ${pv.metadata?.name} and ${path}`);
  }
}
