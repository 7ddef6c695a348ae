// A fake kubelet for one or more Nodes of the local cluster. It does what the
// tests need of a kubelet and no more:
//   - keeps each Node Ready (status heartbeat and a renewed Lease in kube-node-lease);
//   - marks ordinary pods bound to its nodes Running and Ready (nothing runs);
//   - really runs pvshift copy pods (label app.kubernetes.io/component=copy and
//     managed-by=pvshift): each container's command in a private mount namespace
//     (`unshare -m`) with every volume's host directory bind-mounted at its
//     mountPath, readOnly honoured, the termination-message file bound from the
//     host, exit code and Succeeded/Failed reported like a kubelet does;
//   - deletes terminating pods (after stopping what runs) with grace 0, as the
//     kubelet's status manager does once containers are gone;
//   - serves container logs on the kubelet API path (/containerLogs/...), which
//     the API server proxies for `kubectl logs` and pods/log reads.
import { spawn, type ChildProcess } from 'node:child_process';
import { createReadStream, createWriteStream, existsSync } from 'node:fs';
import { mkdir, open, readFile, rm, stat } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import { join } from 'node:path';
import type {
  V1Container,
  V1ContainerState,
  V1ContainerStatus,
  V1Node,
  V1PersistentVolume,
  V1PersistentVolumeClaim,
  V1Pod,
  V1PodStatus,
} from '@kubernetes/client-node';
import { ApiError, Informer, keyOf, paths, type Kube } from '../src/kube.js';
import { COMPONENT_COPY, LABEL_COMPONENT, LABEL_MANAGED_BY, MANAGED_BY_VALUE } from '../src/names.js';
import type { KeyPair } from './pki.js';

/** image → the argv of its entrypoint on this host, for containers that give only `args`. */
export type ImageEntrypoints = Record<string, string[]>;

export interface FakeKubeletOptions {
  nodes: string[];
  /** Per-pod state (logs, termination messages, emptyDirs) goes under here. */
  dir: string;
  images: ImageEntrypoints;
  tls: KeyPair;
  /** The API server's address for the nodes' kubelet endpoint: always loopback here. */
  port: number;
  log: (message: string) => void;
  kubeletVersion: string;
}

const SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => existsSync(p));
/** The kubelet caps termination messages at 4096 bytes. */
const TERMINATION_MESSAGE_LIMIT = 4096;

interface Running {
  uid: string;
  processes: ChildProcess[];
  killed: boolean;
}

export function isCopyPod(pod: V1Pod): boolean {
  const labels = pod.metadata?.labels ?? {};
  return labels[LABEL_MANAGED_BY] === MANAGED_BY_VALUE && labels[LABEL_COMPONENT] === COMPONENT_COPY;
}

function now(): string {
  return new Date().toISOString().replace(/\.\d+Z$/, 'Z');
}

function microNow(): string {
  return new Date().toISOString().replace(/Z$/, '000Z');
}

/** Single-quotes a word for /bin/sh. */
function shq(word: string): string {
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/** A container's status as a kubelet reports it; ready and started while it runs. */
function containerStatus(pod: V1Pod, container: V1Container, state: V1ContainerState): V1ContainerStatus {
  const running = !!state.running;
  return {
    name: container.name,
    image: container.image ?? '',
    imageID: `fake://${container.image ?? ''}`,
    containerID: `fake://${pod.metadata?.uid}/${container.name}`,
    ready: running,
    started: running,
    restartCount: 0,
    state,
  };
}

export class FakeKubelet {
  private readonly pods: Informer<V1Pod>;
  private readonly queue = new Map<string, Promise<void>>();
  private readonly pending = new Set<string>();
  private readonly running = new Map<string, Running>();
  private readonly timers: NodeJS.Timeout[] = [];
  private server: Server | undefined;
  private ipCounter = 1;
  private stopped = false;

  constructor(
    private readonly kube: Kube,
    private readonly options: FakeKubeletOptions,
  ) {
    this.pods = new Informer<V1Pod>(kube, paths.pods());
  }

  async start(): Promise<void> {
    await this.serveLogs();
    for (const node of this.options.nodes) await this.registerNode(node);
    this.timers.push(setInterval(() => void this.heartbeat(), 10_000));
    this.pods.on((type, pod) => {
      if (type === 'delete') this.stopContainers(keyOf(pod), pod.metadata?.uid);
      else this.enqueue(keyOf(pod));
    });
    this.pods.onWatchError((e) => this.options.log(`fake-kubelet: pod watch: ${String(e)}`));
    this.pods.start();
    await this.pods.waitForSync();
    // A kubelet re-syncs its pods periodically: pods that wait on a volume are
    // retried, and so is a deletion whose final DELETE failed (a 5xx, a timeout
    // under load), which no further watch event would bring back.
    this.timers.push(
      setInterval(() => {
        for (const pod of this.pods.list()) {
          if ((pod.status?.phase === 'Pending' || pod.metadata?.deletionTimestamp) && this.isOurs(pod))
            this.enqueue(keyOf(pod));
        }
      }, 1000),
    );
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const timer of this.timers) clearInterval(timer);
    this.pods.stop();
    for (const key of [...this.running.keys()]) this.stopContainers(key);
    await Promise.allSettled([...this.queue.values()]);
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  /** Pods this kubelet has started and not yet seen finish (for tests that wait on quiet). */
  get runningCount(): number {
    return this.running.size;
  }

  private isOurs(pod: V1Pod): boolean {
    return !!pod.spec?.nodeName && this.options.nodes.includes(pod.spec.nodeName);
  }

  /** One sync per pod at a time; an event during a sync runs another after it. */
  private enqueue(key: string): void {
    if (this.stopped) return;
    if (this.pending.has(key)) return;
    this.pending.add(key);
    const previous = this.queue.get(key) ?? Promise.resolve();
    const next = previous
      .then(async () => {
        this.pending.delete(key);
        const pod = this.pods.get(key);
        if (pod) await this.syncPod(pod);
      })
      .catch((e: unknown) => {
        if (!(e instanceof ApiError && (e.code === 404 || e.code === 409)))
          this.options.log(`fake-kubelet: ${key}: ${String(e)}`);
      });
    this.queue.set(key, next);
    void next.finally(() => {
      if (this.queue.get(key) === next) this.queue.delete(key);
    });
  }

  private async registerNode(name: string): Promise<void> {
    const node: V1Node = {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: {
        name,
        labels: { 'kubernetes.io/hostname': name, 'kubernetes.io/os': 'linux', 'kubernetes.io/arch': 'amd64' },
      },
      spec: {},
    };
    try {
      await this.kube.create(paths.nodes(), node);
    } catch (e: unknown) {
      if (!(e instanceof ApiError && e.code === 409)) throw e;
    }
    await this.patchNodeStatus(name);
    await this.renewLease(name);
    // The TaintNodesByCondition admission plugin taints every new Node not-ready;
    // the node-lifecycle controller lifts it once the Node reports Ready. That
    // controller needs real kubelets to judge, so we lift the taint ourselves.
    const current = await this.kube.get<V1Node>(paths.nodes(name));
    const taints = current?.spec?.taints ?? [];
    const kept = taints.filter((taint) => taint.key !== 'node.kubernetes.io/not-ready');
    if (kept.length !== taints.length) {
      await this.kube.patch(
        paths.nodes(name),
        [
          { op: 'test', path: '/metadata/resourceVersion', value: current?.metadata?.resourceVersion },
          { op: 'replace', path: '/spec/taints', value: kept },
        ],
        'json',
      );
    }
  }

  private async patchNodeStatus(name: string): Promise<void> {
    const capacity = { cpu: '8', memory: '32Gi', pods: '110', 'ephemeral-storage': '100Gi' };
    const stamp = now();
    await this.kube.patch(
      `${paths.nodes(name)}/status`,
      {
        status: {
          capacity,
          allocatable: capacity,
          addresses: [
            { type: 'InternalIP', address: '127.0.0.1' },
            { type: 'Hostname', address: name },
          ],
          daemonEndpoints: { kubeletEndpoint: { Port: this.options.port } },
          nodeInfo: {
            kubeletVersion: this.options.kubeletVersion,
            kubeProxyVersion: '',
            operatingSystem: 'linux',
            architecture: 'amd64',
            containerRuntimeVersion: 'fake://pvshift',
            kernelVersion: '',
            osImage: 'pvshift fake kubelet',
            machineID: name,
            systemUUID: name,
            bootID: name,
          },
          conditions: [
            {
              type: 'Ready',
              status: 'True',
              reason: 'KubeletReady',
              message: 'fake kubelet is posting ready status',
              lastHeartbeatTime: stamp,
              lastTransitionTime: stamp,
            },
            {
              type: 'MemoryPressure',
              status: 'False',
              reason: 'KubeletHasSufficientMemory',
              message: '',
              lastHeartbeatTime: stamp,
              lastTransitionTime: stamp,
            },
            {
              type: 'DiskPressure',
              status: 'False',
              reason: 'KubeletHasNoDiskPressure',
              message: '',
              lastHeartbeatTime: stamp,
              lastTransitionTime: stamp,
            },
            {
              type: 'PIDPressure',
              status: 'False',
              reason: 'KubeletHasSufficientPID',
              message: '',
              lastHeartbeatTime: stamp,
              lastTransitionTime: stamp,
            },
          ],
        },
      },
      'strategic',
    );
  }

  private async renewLease(name: string): Promise<void> {
    const lease = {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { name, namespace: 'kube-node-lease' },
      spec: { holderIdentity: name, leaseDurationSeconds: 40, renewTime: microNow() },
    };
    try {
      await this.kube.patch(paths.leases('kube-node-lease', name), { spec: lease.spec }, 'merge');
    } catch (e: unknown) {
      if (!(e instanceof ApiError && e.code === 404)) throw e;
      await this.kube.create(paths.leases('kube-node-lease'), lease);
    }
  }

  private async heartbeat(): Promise<void> {
    for (const node of this.options.nodes) {
      try {
        await this.renewLease(node);
        await this.patchNodeStatus(node);
      } catch (e: unknown) {
        if (!this.stopped) this.options.log(`fake-kubelet: heartbeat of ${node}: ${String(e)}`);
      }
    }
  }

  private podDir(pod: V1Pod): string {
    const meta = pod.metadata ?? {};
    return join(this.options.dir, `${meta.namespace}_${meta.name}_${meta.uid}`);
  }

  private async syncPod(pod: V1Pod): Promise<void> {
    if (!this.isOurs(pod)) return;
    const key = keyOf(pod);
    if (pod.metadata?.deletionTimestamp) {
      await this.terminate(pod);
      return;
    }
    const phase = pod.status?.phase;
    if (phase === 'Succeeded' || phase === 'Failed') return;
    if (phase === 'Running' || this.running.has(key)) return;
    const mounts = await this.resolveMounts(pod);
    if (!mounts) return; // a volume is not ready yet; retried by the periodic resync
    if (isCopyPod(pod)) await this.runContainers(pod, mounts);
    else await this.markRunning(pod);
  }

  private async terminate(pod: V1Pod): Promise<void> {
    const key = keyOf(pod);
    const run = this.running.get(key);
    if (run) {
      this.stopContainers(key);
      // Give processes the pod's grace (bounded: this is a test cluster) to go.
      const deadline = Date.now() + Math.min((pod.spec?.terminationGracePeriodSeconds ?? 30) * 1000, 5000);
      while (this.running.has(key) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    }
    await this.kube.delete(paths.pods(pod.metadata?.namespace, pod.metadata?.name), {
      gracePeriodSeconds: 0,
      preconditions: { uid: pod.metadata?.uid },
    });
  }

  private stopContainers(key: string, uid?: string): void {
    const run = this.running.get(key);
    if (!run || (uid && run.uid !== uid)) return;
    run.killed = true;
    for (const child of run.processes) {
      if (child.pid && child.exitCode === null) {
        try {
          process.kill(-child.pid, 'SIGTERM');
        } catch {
          /* already gone */
        }
        setTimeout(() => {
          try {
            if (child.pid) process.kill(-child.pid, 'SIGKILL');
          } catch {
            /* already gone */
          }
        }, 2000).unref();
      }
    }
  }

  /** volume name → host path, or undefined while a claim is not bound yet. */
  private async resolveMounts(pod: V1Pod): Promise<Map<string, string> | undefined> {
    const out = new Map<string, string>();
    const namespace = pod.metadata?.namespace;
    for (const volume of pod.spec?.volumes ?? []) {
      if (volume.persistentVolumeClaim) {
        const claim = await this.kube.get<V1PersistentVolumeClaim>(
          paths.claims(namespace, volume.persistentVolumeClaim.claimName),
        );
        const volumeName = claim?.status?.phase === 'Bound' ? claim.spec?.volumeName : undefined;
        if (!volumeName) return undefined;
        const pv = await this.kube.get<V1PersistentVolume>(paths.volumes(volumeName));
        const path = pv?.spec?.hostPath?.path ?? pv?.spec?.local?.path;
        if (!path) return undefined;
        out.set(volume.name, path);
      } else if (volume.hostPath) {
        out.set(volume.name, volume.hostPath.path);
      } else if (volume.emptyDir) {
        const dir = join(this.podDir(pod), 'volumes', volume.name);
        await mkdir(dir, { recursive: true });
        out.set(volume.name, dir);
      }
      // Projected service-account tokens, configMaps and secrets are not mounted:
      // nothing pvshift runs in a copy pod reads them.
    }
    return out;
  }

  private nextIp(): string {
    const n = this.ipCounter++;
    return `10.244.${Math.floor(n / 250) % 250}.${(n % 250) + 1}`;
  }

  private async patchStatus(pod: V1Pod, status: V1PodStatus): Promise<void> {
    const path = `${paths.pods(pod.metadata?.namespace, pod.metadata?.name)}/status`;
    // The uid precondition keeps a late status from landing on a recreated pod of the same name.
    await this.kube.patch(path, { metadata: { uid: pod.metadata?.uid }, status }, 'strategic');
  }

  private baseStatus(pod: V1Pod, ready: boolean, phase: string): V1PodStatus {
    const stamp = now();
    const condition = (type: string, status: boolean) => ({
      type,
      status: status ? 'True' : 'False',
      lastTransitionTime: stamp as unknown as Date,
    });
    return {
      phase,
      hostIP: '127.0.0.1',
      hostIPs: [{ ip: '127.0.0.1' }],
      podIP: pod.status?.podIP ?? this.nextIp(),
      startTime: (pod.status?.startTime ?? stamp) as unknown as Date,
      conditions: [
        condition('PodReadyToStartContainers', true),
        condition('Initialized', true),
        condition('ContainersReady', ready),
        condition('Ready', ready),
        condition('PodScheduled', true),
      ],
    };
  }

  private async markRunning(pod: V1Pod): Promise<void> {
    const status = this.baseStatus(pod, true, 'Running');
    const started = now();
    status.containerStatuses = (pod.spec?.containers ?? []).map((c) =>
      containerStatus(pod, c, { running: { startedAt: started as unknown as Date } }),
    );
    await this.patchStatus(pod, status);
  }

  private argvFor(container: V1Container): string[] | string {
    const image = container.image ?? '';
    const entrypoint =
      container.command ?? this.options.images[image] ?? this.options.images[image.replace(/[:@].*$/, '')];
    if (!entrypoint)
      return `image ${image} has no entrypoint known to the fake kubelet and the container sets no command`;
    return [...entrypoint, ...(container.args ?? [])];
  }

  private async runContainers(pod: V1Pod, mounts: Map<string, string>): Promise<void> {
    const key = keyOf(pod);
    const dir = this.podDir(pod);
    await mkdir(dir, { recursive: true });
    const run: Running = { uid: pod.metadata?.uid ?? '', processes: [], killed: false };
    this.running.set(key, run);
    const containers = pod.spec?.containers ?? [];
    const started = now();
    const running = this.baseStatus(pod, true, 'Running');
    running.containerStatuses = containers.map((c) =>
      containerStatus(pod, c, { running: { startedAt: started as unknown as Date } }),
    );
    const results = containers.map((container) => this.runContainer(pod, container, mounts, dir, run));
    await this.patchStatus(pod, running);
    void Promise.all(results).then(async (terminated) => {
      this.running.delete(key);
      if (run.killed) return; // being deleted: the delete path reports nothing more
      const failed = terminated.some((t) => t.exitCode !== 0);
      const status = this.baseStatus(pod, false, failed ? 'Failed' : 'Succeeded');
      status.containerStatuses = containers.map((c, i) =>
        containerStatus(pod, c, {
          terminated: {
            ...terminated[i]!,
            startedAt: started as unknown as Date,
            finishedAt: now() as unknown as Date,
          },
        }),
      );
      try {
        await this.patchStatus(pod, status);
      } catch (e: unknown) {
        if (!(e instanceof ApiError && (e.code === 404 || e.code === 409)))
          this.options.log(`fake-kubelet: status of ${key}: ${String(e)}`);
      }
    });
  }

  private async runContainer(
    pod: V1Pod,
    container: V1Container,
    mounts: Map<string, string>,
    dir: string,
    run: Running,
  ): Promise<{ exitCode: number; reason: string; message?: string; signal?: number }> {
    const argv = this.argvFor(container);
    const logPath = join(dir, `${container.name}.log`);
    const terminationHostPath = join(dir, `${container.name}.termination-log`);
    const log = createWriteStream(logPath, { flags: 'a' });
    if (typeof argv === 'string') {
      log.end(`${argv}\n`);
      return { exitCode: 128, reason: 'ContainerCannotRun', message: argv };
    }
    await (await open(terminationHostPath, 'w')).close();
    const terminationPath = container.terminationMessagePath ?? '/dev/termination-log';
    // The script runs inside the new mount namespace: every bind mount it makes
    // is private to the container, so the host sees none of them.
    // Its own UTS namespace too, so `hostname` in the container says the pod's name.
    const lines = ['set -e', `hostname ${shq(pod.metadata?.name ?? 'pod')}`];
    for (const mount of container.volumeMounts ?? []) {
      const source = mounts.get(mount.name);
      if (!source) continue;
      const hostPath = mount.subPath ? join(source, mount.subPath) : source;
      lines.push(`mkdir -p ${shq(mount.mountPath)}`, `mount --bind ${shq(hostPath)} ${shq(mount.mountPath)}`);
      if (mount.readOnly) lines.push(`mount -o remount,bind,ro ${shq(mount.mountPath)}`);
    }
    lines.push(
      `mkdir -p "$(dirname ${shq(terminationPath)})"`,
      `[ -e ${shq(terminationPath)} ] || : > ${shq(terminationPath)}`,
      `mount --bind ${shq(terminationHostPath)} ${shq(terminationPath)}`,
      `cd ${shq(container.workingDir ?? '/')}`,
      'exec "$@"',
    );
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: '/root', HOSTNAME: pod.metadata?.name ?? '' };
    for (const variable of container.env ?? []) {
      if (variable.value !== undefined) env[variable.name] = variable.value;
      const field = variable.valueFrom?.fieldRef?.fieldPath;
      if (field === 'metadata.name') env[variable.name] = pod.metadata?.name;
      if (field === 'metadata.namespace') env[variable.name] = pod.metadata?.namespace;
      if (field === 'spec.nodeName') env[variable.name] = pod.spec?.nodeName;
      if (field === 'metadata.uid') env[variable.name] = pod.metadata?.uid;
    }
    const unshareArgv = [
      'unshare',
      '--mount',
      '--uts',
      '--propagation',
      'private',
      '--',
      '/bin/sh',
      '-c',
      lines.join('\n'),
      'container',
      ...argv,
    ];
    const [file, args] = SETPRIV
      ? [SETPRIV, ['--pdeathsig', 'SIGKILL', '--', ...unshareArgv]]
      : [unshareArgv[0]!, unshareArgv.slice(1)];
    // detached: its own process group, so stopping the pod reaches every process it forked.
    const child = spawn(file, args, { env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    run.processes.push(child);
    child.stdout.pipe(log, { end: false });
    child.stderr.pipe(log, { end: false });
    const { code, signal } = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
      child.on('close', (c, s) => resolve({ code: c, signal: s }));
      child.on('error', () => resolve({ code: 127, signal: null }));
    });
    await new Promise<void>((resolve) => log.end(resolve));
    const exitCode = code ?? 128 + (signal === 'SIGKILL' ? 9 : 15);
    let message = (await readFile(terminationHostPath, 'utf8').catch(() => '')).slice(0, TERMINATION_MESSAGE_LIMIT);
    if (!message && exitCode !== 0 && container.terminationMessagePolicy === 'FallbackToLogsOnError') {
      const text = await readFile(logPath, 'utf8').catch(() => '');
      message = text.split('\n').slice(-80).join('\n').slice(-2048);
    }
    const reason = exitCode === 0 ? 'Completed' : signal ? 'Killed' : 'Error';
    return { exitCode, reason, ...(message ? { message } : {}) };
  }

  private findLog(namespace: string, name: string, container: string): string | undefined {
    const pod = this.pods.get(`${namespace}/${name}`);
    if (!pod) return undefined;
    const path = join(this.podDir(pod), `${container}.log`);
    return existsSync(path) ? path : undefined;
  }

  /** GET /containerLogs/{namespace}/{pod}/{container}: what the API server proxies pods/log to. */
  private async serveLogs(): Promise<void> {
    this.server = createServer({ cert: this.options.tls.certPem, key: this.options.tls.keyPem }, (req, res) => {
      void (async () => {
        const url = new URL(req.url ?? '/', 'https://localhost');
        const match = /^\/containerLogs\/([^/]+)\/([^/]+)\/([^/]+)$/.exec(url.pathname);
        if (req.method !== 'GET' || !match) {
          res.writeHead(404).end('not found');
          return;
        }
        const [namespace, name, container] = match.slice(1).map(decodeURIComponent) as [string, string, string];
        const path = this.findLog(namespace, name, container);
        if (!path) {
          res.writeHead(404).end(`no log for container ${container} of pod ${namespace}/${name}`);
          return;
        }
        res.writeHead(200, { 'Content-Type': 'text/plain' });
        const tailLines = Number(url.searchParams.get('tailLines') ?? NaN);
        const limitBytes = Number(url.searchParams.get('limitBytes') ?? NaN);
        let text = await readFile(path, 'utf8');
        if (Number.isFinite(tailLines)) {
          const lines = text.split('\n');
          const trailing = lines.at(-1) === '' ? lines.pop() : undefined;
          text = lines.slice(-tailLines).join('\n') + (trailing === '' ? '\n' : '');
        }
        if (Number.isFinite(limitBytes)) text = Buffer.from(text).subarray(0, limitBytes).toString('utf8');
        if (url.searchParams.get('follow') !== 'true') {
          res.end(text);
          return;
        }
        res.write(text);
        // follow: stream what is appended until the container has exited.
        let offset = (await stat(path)).size;
        const key = `${namespace}/${name}`;
        while (!res.destroyed) {
          await new Promise((r) => setTimeout(r, 200));
          const size = (await stat(path).catch(() => ({ size: offset }))).size;
          if (size > offset) {
            await new Promise<void>((resolve) => {
              const stream = createReadStream(path, { start: offset, end: size - 1 });
              stream.on('data', (chunk) => res.write(chunk));
              stream.on('end', () => resolve());
              stream.on('error', () => resolve());
            });
            offset = size;
          } else if (!this.running.has(key)) break;
        }
        res.end();
      })().catch((e: unknown) => {
        if (!res.headersSent) res.writeHead(500);
        res.end(String(e));
      });
    });
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(this.options.port, '127.0.0.1', () => resolve());
    });
  }

  /** Removes a pod's local state (logs): for the cluster's teardown. */
  async cleanup(): Promise<void> {
    await rm(this.options.dir, { recursive: true, force: true });
  }
}
