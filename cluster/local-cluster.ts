// The local cluster: real etcd, kube-apiserver, kube-controller-manager and
// kube-scheduler on loopback ports in a temp dir, plus our fake kubelet and
// hostPath provisioner for what needs a container runtime or a storage backend.
// Used by the cluster tests and by `npm run demo`.
import { join } from 'node:path';
import { REPO_ROOT } from './binaries.js';
import { startControlPlane, waitForDefaultServiceAccount, type ClusterAccess } from './control-plane.js';
import { FakeKubelet, type ImageEntrypoints } from './fake-kubelet.js';
import { HostPathProvisioner } from './hostpath-provisioner.js';
import { freePort } from './processes.js';

export interface LocalClusterOptions {
  /** Node names; default one node, `node-1`. */
  nodes?: string[];
  /** Where the temp dir goes (default the OS temp dir). */
  baseDir?: string;
  /** Progress lines (what is starting); default silent. */
  log?: (line: string) => void;
  /** Extra image entrypoints for the fake kubelet (the pvshift image is always known). */
  images?: ImageEntrypoints;
  /** Keep the temp dir after stop (for debugging); also PVSHIFT_KEEP_CLUSTER=1. */
  keep?: boolean;
}

export interface LocalCluster extends ClusterAccess {
  /** Host directory under which the hostPath provisioner makes volumes. */
  storageRoot: string;
  nodes: string[];
  kubelet: FakeKubelet;
  provisioner: HostPathProvisioner;
}

/** The image the copy pods of pvshift use, and how the fake kubelet runs it on this host. */
export const PVSHIFT_DEV_IMAGE = 'pvshift:dev';
export function pvshiftEntrypoint(): string[] {
  // The loader by absolute URL: a copy pod's working directory is /, where a bare
  // `--import tsx` would not resolve.
  return [process.execPath, '--import', import.meta.resolve('tsx'), join(REPO_ROOT, 'src/main.ts')];
}

export async function startLocalCluster(options: LocalClusterOptions = {}): Promise<LocalCluster> {
  const log = options.log ?? (() => {});
  const nodes = options.nodes ?? ['node-1'];
  const started = Date.now();
  const plane = await startControlPlane({ baseDir: options.baseDir, keep: options.keep, log });
  const { dir, kube } = plane;
  try {
    const kubeletPort = await freePort();
    log(`starting the fake kubelet for ${nodes.join(', ')} and the hostPath provisioner`);
    const kubelet = new FakeKubelet(kube, {
      nodes,
      dir: join(dir, 'kubelet'),
      images: { [PVSHIFT_DEV_IMAGE]: pvshiftEntrypoint(), pvshift: pvshiftEntrypoint(), ...options.images },
      tls: plane.pki.kubelet,
      port: kubeletPort,
      log,
      kubeletVersion: plane.binaries.kubeApiserver.match(/k8s-(v[\d.]+)/)?.[1] ?? 'v1.34.4',
    });
    plane.onStop(() => kubelet.stop());
    await kubelet.start();
    const storageRoot = join(dir, 'volumes');
    const provisioner = new HostPathProvisioner(kube, storageRoot, log);
    plane.onStop(() => provisioner.stop());
    await provisioner.start();
    await waitForDefaultServiceAccount(kube);
    log(`local cluster ready in ${((Date.now() - started) / 1000).toFixed(1)} s; kubeconfig ${plane.kubeconfigPath}`);
    const { kubeconfigPath, kubeConfig, kubeconfigFor, server, binaries, logs, stop } = plane;
    return {
      dir,
      kubeconfigPath,
      kubeConfig,
      kubeconfigFor,
      kube,
      server,
      storageRoot,
      nodes,
      binaries,
      kubelet,
      provisioner,
      logs,
      stop,
    };
  } catch (e: unknown) {
    await plane.stop();
    throw e;
  }
}
