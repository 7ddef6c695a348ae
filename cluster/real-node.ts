// A real node: containerd and runc (Debian packages) serving a real kubelet
// (built from k8s.io/kubernetes like the control plane), every file of both
// under the cluster's temp dir, so concurrent runs on one machine do not meet:
// containerd has its own root, state and socket; the kubelet its own root dir,
// pod log dir, ports and cgroup root; CNI its own bridge and address range.
// What ../shared/REAL-NODE.md found on this machine kind is set here:
// restrict_oom_score_adj (a negative oom_score_adj is refused), a local sandbox
// image (nothing can be pulled), a bridge CNI (a loopback-only one fails every
// sandbox), and the teardown order that leaves nothing behind.
import { mkdir, readdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { V1Node, V1Pod } from '@kubernetes/client-node';
import { paths, type Kube } from '../src/kube.js';
import type { ControlPlane } from './control-plane.js';
import type { NodeNetwork } from './node-network.js';
import { freePort, runCommand, sleep, waitFor, type ManagedProcess } from './processes.js';

const CNI_BIN_DIR = '/usr/lib/cni';

export interface ImageArchive {
  /** The reference pods name (imagePullPolicy Never or IfNotPresent). */
  ref: string;
  /** An OCI or Docker archive `ctr images import` reads. */
  archive: string;
}

export interface RealNodeOptions {
  name: string;
  network: NodeNetwork;
  /** containerd's sandbox image; imported with the others before the kubelet starts. */
  pauseImage: ImageArchive;
  images: ImageArchive[];
  log: (line: string) => void;
}

export interface RealNode {
  name: string;
  /** containerd's socket, for `ctr --address`. */
  containerdAddress: string;
  /** Where the kubelet keeps pods' volumes (bind mounts of the PVs). */
  kubeletRoot: string;
  /** Stops the node in the order that leaves nothing behind. */
  stop(): Promise<void>;
}

const run = runCommand;

function containerdConfig(dir: string, address: string, pauseRef: string, cniConfDir: string): string {
  return `version = 2
root = "${join(dir, 'root')}"
state = "${join(dir, 'state')}"
oom_score = 0
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.internal.v1.opt", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "${address}"

[ttrpc]
  address = "${address}.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${pauseRef}"
  # This machine refuses a negative oom_score_adj, even to root.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "${CNI_BIN_DIR}"
    conf_dir = "${cniConfDir}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
`;
}

function kubeletConfig(options: {
  address: string;
  port: number;
  healthzPort: number;
  containerdAddress: string;
  cgroupRoot: string;
  caFile: string;
  podLogsDir: string;
}): string {
  return JSON.stringify(
    {
      apiVersion: 'kubelet.config.k8s.io/v1beta1',
      kind: 'KubeletConfiguration',
      address: options.address,
      port: options.port,
      readOnlyPort: 0,
      healthzBindAddress: '127.0.0.1',
      healthzPort: options.healthzPort,
      containerRuntimeEndpoint: `unix://${options.containerdAddress}`,
      cgroupDriver: 'cgroupfs',
      // Its own cgroup subtree: another run's kubelet on this machine has another.
      cgroupRoot: options.cgroupRoot,
      failSwapOn: false,
      // This machine refuses a negative oom_score_adj.
      oomScoreAdj: 0,
      podLogsDir: options.podLogsDir,
      authentication: {
        anonymous: { enabled: false },
        webhook: { enabled: false },
        x509: { clientCAFile: options.caFile },
      },
      authorization: { mode: 'AlwaysAllow' },
      // Images are imported, never pulled: image GC must never remove one.
      imageGCHighThresholdPercent: 100,
      imageGCLowThresholdPercent: 99,
      // A shared machine's disk use is not this node's pressure.
      evictionHard: {
        'memory.available': '0%',
        'nodefs.available': '0%',
        'imagefs.available': '0%',
        'nodefs.inodesFree': '0%',
      },
      localStorageCapacityIsolation: false,
      nodeStatusUpdateFrequency: '4s',
      syncFrequency: '5s',
      fileCheckFrequency: '5s',
      serializeImagePulls: false,
      registerNode: true,
      resolvConf: '/etc/resolv.conf',
      enableServer: true,
      shutdownGracePeriod: '0s',
      protectKernelDefaults: false,
      makeIPTablesUtilChains: false,
    },
    null,
    2,
  );
}

/** Every mount point under `root`, deepest first. */
async function mountsUnder(root: string): Promise<string[]> {
  const table = await run('findmnt', ['-rn', '-o', 'TARGET']);
  return table
    .split('\n')
    .map((line) => line.replace(/\\x20/g, ' '))
    .filter((target) => target === root || target.startsWith(`${root}/`))
    .sort((a, b) => b.length - a.length);
}

export async function unmountUnder(root: string): Promise<void> {
  for (const target of await mountsUnder(root)) {
    await run('umount', [target]).catch(() => run('umount', ['-l', target]));
  }
}

/**
 * The kubelet's cgroup root must exist in every v1 hierarchy before it starts.
 * A new cpuset cgroup has no CPUs or memory nodes: copy its parent's.
 */
async function createCgroups(relative: string): Promise<void> {
  const base = '/sys/fs/cgroup';
  for (const controller of await readdir(base)) {
    const path = join(base, controller, relative);
    await mkdir(path, { recursive: true });
    if (controller === 'cpuset') {
      for (const file of ['cpuset.cpus', 'cpuset.mems'])
        await writeFile(join(path, file), await readFile(join(base, controller, file)));
    }
  }
}

/** Removes a cgroup subtree in every v1 hierarchy (children first; cgroups are empty directories). */
async function removeCgroups(relative: string): Promise<void> {
  const base = '/sys/fs/cgroup';
  const controllers = await readdir(base).catch(() => [] as string[]);
  const removeTree = async (path: string): Promise<void> => {
    const entries = await readdir(path, { withFileTypes: true }).catch(() => undefined);
    if (!entries) return;
    for (const entry of entries) if (entry.isDirectory()) await removeTree(join(path, entry.name));
    await rmdir(path).catch(() => undefined);
  };
  for (const controller of controllers) await removeTree(join(base, controller, relative));
}

export async function startRealNode(plane: ControlPlane, options: RealNodeOptions): Promise<RealNode> {
  const { log, network, name } = options;
  const kube = plane.kube;
  const dir = join(plane.dir, 'node');
  const containerdDir = join(dir, 'containerd');
  const kubeletRoot = join(dir, 'kubelet');
  const cniConfDir = join(dir, 'cni', 'net.d');
  const containerdAddress = join(dir, 'containerd.sock');
  const cgroupRoot = `/${network.bridge}`;
  for (const d of [containerdDir, kubeletRoot, cniConfDir, join(dir, 'pods-logs')]) await mkdir(d, { recursive: true });
  await writeFile(
    join(cniConfDir, '10-pvshift.conflist'),
    network.cniConfig(`pvshift-${network.bridge}`, join(dir, 'cni', 'ipam')),
  );
  const containerdConfigPath = join(containerdDir, 'config.toml');
  await writeFile(
    containerdConfigPath,
    containerdConfig(containerdDir, containerdAddress, options.pauseImage.ref, cniConfDir),
  );

  let containerd: ManagedProcess | undefined;
  let kubelet: ManagedProcess | undefined;
  let stopped = false;
  const ctr = (...args: string[]) => run('ctr', ['--address', containerdAddress, '--namespace', 'k8s.io', ...args]);

  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    if (kubelet) {
      // Pods first, while the kubelet can still stop them; then the kubelet.
      await deleteAllPods(kube, name, log).catch((e: unknown) => log(`teardown: deleting pods: ${String(e)}`));
      await kubelet.stop();
    }
    if (containerd) {
      // Whatever the kubelet left: tasks killed, containers and sandboxes gone.
      const tasks = await ctr('tasks', 'list', '-q').catch(() => '');
      for (const id of tasks.split('\n').filter(Boolean)) {
        await ctr('tasks', 'kill', '--signal', 'SIGKILL', id).catch(() => undefined);
      }
      if (tasks.trim()) await sleep(500);
      for (const id of tasks.split('\n').filter(Boolean))
        await ctr('tasks', 'delete', '--force', id).catch(() => undefined);
      const containers = await ctr('containers', 'list', '-q').catch(() => '');
      for (const id of containers.split('\n').filter(Boolean))
        await ctr('containers', 'delete', id).catch(() => undefined);
      await containerd.stop();
    }
    await unmountUnder(dir);
    await removeCgroups(cgroupRoot.slice(1));
  };

  try {
    log(`starting containerd (${containerdAddress})`);
    containerd = plane.start('containerd', 'containerd', ['--config', containerdConfigPath, '--log-level', 'warn']);
    await waitFor('containerd', () => ctr('version').then(() => true), 30_000);
    const started = Date.now();
    for (const image of [options.pauseImage, ...options.images]) {
      await ctr('images', 'import', image.archive);
    }
    const listed = await ctr('images', 'list', '-q');
    for (const image of [options.pauseImage, ...options.images]) {
      if (!listed.split('\n').includes(image.ref))
        throw new Error(
          `image ${image.ref} not in containerd after importing ${image.archive}; it has: ${listed.trim()}`,
        );
    }
    log(`imported ${options.images.length + 1} images in ${((Date.now() - started) / 1000).toFixed(1)} s`);

    // The kubelet's identity: the Node authorizer's user and group.
    const identity = await plane.kubeconfigFor(`system:node:${name}`, ['system:nodes']);
    const [port, healthzPort] = await Promise.all([freePort(), freePort()]);
    const configPath = join(dir, 'kubelet-config.json');
    await writeFile(
      configPath,
      kubeletConfig({
        address: network.nodeAddress,
        port,
        healthzPort,
        containerdAddress,
        cgroupRoot,
        caFile: join(plane.dir, 'pki', 'ca.crt'),
        podLogsDir: join(dir, 'pods-logs'),
      }),
    );
    await createCgroups(cgroupRoot.slice(1));
    log(`starting the kubelet for node ${name} (${network.nodeAddress}:${port})`);
    kubelet = plane.start('kubelet', plane.binaries.kubelet, [
      `--config=${configPath}`,
      `--kubeconfig=${identity.path}`,
      `--root-dir=${kubeletRoot}`,
      `--cert-dir=${join(dir, 'kubelet-pki')}`,
      `--hostname-override=${name}`,
      `--node-ip=${network.nodeAddress}`,
      '--v=1',
    ]);
    const exited = kubelet.exited.then((code) => {
      throw new Error(`the kubelet exited (code ${code}) before node ${name} was Ready; see ${plane.logs.kubelet}`);
    });
    await Promise.race([
      exited,
      waitFor(
        `node ${name} Ready`,
        async () => {
          const node = await kube.get<V1Node>(paths.nodes(name));
          return node?.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ? node : undefined;
        },
        120_000,
        500,
      ),
    ]);
    exited.catch(() => undefined);
    return { name, containerdAddress, kubeletRoot, stop };
  } catch (e: unknown) {
    await stop();
    throw e;
  }
}

/** Deletes every pod on the node and waits until the kubelet has stopped them all. */
async function deleteAllPods(kube: Kube, node: string, log: (line: string) => void): Promise<void> {
  const onNode = async (): Promise<V1Pod[]> => {
    const list = await kube.get<{ items: V1Pod[] }>(`${paths.pods()}?fieldSelector=spec.nodeName%3D${node}`);
    return list?.items ?? [];
  };
  for (const pod of await onNode()) {
    await kube
      .delete(paths.pods(pod.metadata?.namespace, pod.metadata?.name), { gracePeriodSeconds: 1 })
      .catch(() => undefined);
  }
  await waitFor(
    'every pod stopped by the kubelet',
    async () => ((await onNode()).length === 0 ? true : undefined),
    60_000,
    500,
  ).catch((e: unknown) => log(`teardown: ${String(e)}; stopping the kubelet anyway`));
}
