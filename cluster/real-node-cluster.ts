// The real-node tier's cluster: the same control plane as the fast tier, served
// where pods reach it (node-network.ts), one real node (containerd, runc, a real
// kubelet: real-node.ts) running images built here (hack/images), and volumes
// on real filesystems (loop devices, loop-provisioner.ts). Used by `npm run e2e`.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { startControlPlane, waitForDefaultServiceAccount, type ClusterAccess } from './control-plane.js';
import { buildImages, type BuiltImages } from './images.js';
import { LoopProvisioner } from './loop-provisioner.js';
import { createNodeNetwork, type NodeNetwork } from './node-network.js';
import { startRealNode, type RealNode } from './real-node.js';

export const REAL_NODE_NAME = 'node-1';

export interface RealNodeClusterOptions {
  log?: (line: string) => void;
  keep?: boolean;
}

export interface RealNodeCluster extends ClusterAccess {
  images: BuiltImages;
  network: NodeNetwork;
  node: RealNode;
  provisioner: LoopProvisioner;
}

/**
 * One real node at a time on a machine: two at once (the e2e files side by
 * side) shared two CPUs and one disk, and under that load both pvshift pods of
 * one node stopped answering for tens of seconds (probes and lease renewals
 * failed, the pod webhook failed open). The lock is `flock` on a file, held by
 * a child that exits when this process does (its stdin closes), so a crashed
 * run never keeps it.
 */
const REAL_NODE_LOCK = '/run/pvshift-real-node.lock';

async function lockRealNode(log: (line: string) => void): Promise<() => void> {
  const started = Date.now();
  const child = spawn('flock', ['--exclusive', REAL_NODE_LOCK, 'sh', '-c', 'echo locked; exec cat >/dev/null'], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  let announced = false;
  const timer = setTimeout(() => {
    announced = true;
    log(`waiting for another run's real node to finish (${REAL_NODE_LOCK})`);
  }, 2000);
  await new Promise<void>((resolve, reject) => {
    child.stdout.once('data', () => resolve());
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`flock ${REAL_NODE_LOCK} exited with ${code}`)));
  }).finally(() => clearTimeout(timer));
  if (announced) log(`got the real-node lock after ${((Date.now() - started) / 1000).toFixed(0)} s`);
  return () => child.stdin.end();
}

export async function startRealNodeCluster(options: RealNodeClusterOptions = {}): Promise<RealNodeCluster> {
  const log = options.log ?? (() => {});
  const started = Date.now();
  const images = await buildImages(log);
  const unlock = await lockRealNode(log);
  let network;
  try {
    network = await createNodeNetwork();
  } catch (e: unknown) {
    unlock();
    throw e;
  }
  log(`node network ${network.bridge}: pods ${network.podCidr}, API server ${network.apiserverAddress}:443`);
  let plane;
  try {
    plane = await startControlPlane({
      log,
      keep: options.keep,
      address: network.apiserverAddress,
      port: 443,
      serviceCidr: network.serviceCidr,
      // Webhook calls go to the Service's endpoints (the pod's own address): this
      // cluster has no kube-proxy to route a ClusterIP.
      apiserverArgs: ['--enable-aggregator-routing=true'],
      authorizationModes: ['Node', 'RBAC'],
      admissionPlugins: ['NodeRestriction'],
      controllers: [
        'endpoints-controller',
        'endpointslice-controller',
        'pod-garbage-collector-controller',
        'node-lifecycle-controller',
      ],
    });
  } catch (e: unknown) {
    await network.remove();
    unlock();
    throw e;
  }
  // Stop steps run in reverse: the lock goes last, after the network.
  plane.onStop(unlock);
  plane.onStop(() => network.remove());
  let provisioner: LoopProvisioner | undefined;
  plane.onStop(async () => {
    provisioner?.stop();
    await provisioner?.teardown();
  });
  try {
    const node = await startRealNode(plane, {
      name: REAL_NODE_NAME,
      network,
      pauseImage: images.pause,
      images: [images.pvshift, images.app],
      log,
    });
    plane.onStop(() => node.stop());
    provisioner = new LoopProvisioner(plane.kube, { root: join(plane.dir, 'volumes'), node: REAL_NODE_NAME, log });
    await provisioner.start();
    await waitForDefaultServiceAccount(plane.kube);
    log(
      `real-node cluster ready in ${((Date.now() - started) / 1000).toFixed(1)} s; kubeconfig ${plane.kubeconfigPath}`,
    );
    const { dir, kubeconfigPath, kubeConfig, kube, kubeconfigFor, server, binaries, logs, stop } = plane;
    return {
      dir,
      kubeconfigPath,
      kubeConfig,
      kube,
      kubeconfigFor,
      server,
      binaries,
      images,
      network,
      node,
      provisioner,
      logs,
      stop,
    };
  } catch (e: unknown) {
    await plane.stop();
    throw e;
  }
}
