// Finds the control-plane binaries the local cluster runs, building them with
// hack/build-tools.sh (cached by version) when they are not there yet.
import { execFile, spawn } from 'node:child_process';
import { access, constants } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);
export const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));
const BUILD_SCRIPT = `${REPO_ROOT}hack/build-tools.sh`;

export interface Binaries {
  etcd: string;
  kubeApiserver: string;
  kubeControllerManager: string;
  kubeScheduler: string;
  kubectl: string;
  /** The real kubelet: only the real-node tier runs it. */
  kubelet: string;
  helm: string;
}

const ENV_NAMES: Record<keyof Binaries, string> = {
  etcd: 'PVSHIFT_ETCD_BIN',
  kubeApiserver: 'PVSHIFT_KUBE_APISERVER_BIN',
  kubeControllerManager: 'PVSHIFT_KUBE_CONTROLLER_MANAGER_BIN',
  kubeScheduler: 'PVSHIFT_KUBE_SCHEDULER_BIN',
  kubectl: 'PVSHIFT_KUBECTL_BIN',
  kubelet: 'PVSHIFT_KUBELET_BIN',
  helm: 'PVSHIFT_HELM_BIN',
};

async function isExecutable(path: string): Promise<boolean> {
  try {
    await access(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function parseEnvLines(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) out[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return out;
}

let resolved: Promise<Binaries> | undefined;

/**
 * The binaries, from PVSHIFT_*_BIN variables where set, else from the build
 * cache; a cold cache is filled by running the build script (minutes, once).
 */
export function findBinaries(log: (line: string) => void = () => {}): Promise<Binaries> {
  resolved ??= resolveBinaries(log);
  return resolved;
}

async function resolveBinaries(log: (line: string) => void): Promise<Binaries> {
  const { stdout } = await execFileAsync('bash', [BUILD_SCRIPT, '--print-env']);
  const cached = parseEnvLines(stdout);
  const pick = (key: keyof Binaries): string => process.env[ENV_NAMES[key]] ?? cached[ENV_NAMES[key]] ?? '';
  const binaries: Binaries = {
    etcd: pick('etcd'),
    kubeApiserver: pick('kubeApiserver'),
    kubeControllerManager: pick('kubeControllerManager'),
    kubeScheduler: pick('kubeScheduler'),
    kubectl: pick('kubectl'),
    kubelet: pick('kubelet'),
    helm: pick('helm'),
  };
  const all = [
    binaries.etcd,
    binaries.kubeApiserver,
    binaries.kubeControllerManager,
    binaries.kubeScheduler,
    binaries.kubectl,
    binaries.kubelet,
    binaries.helm,
  ];
  const missing: string[] = [];
  for (const path of all) if (!(await isExecutable(path))) missing.push(path);
  if (missing.length === 0) return binaries;
  log(`control-plane binaries missing (${missing.join(', ')}); building them once with hack/build-tools.sh`);
  await new Promise<void>((resolve, reject) => {
    const child = spawn('bash', [BUILD_SCRIPT], { stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr.on('data', (chunk: Buffer) => {
      for (const line of chunk.toString().split('\n')) if (line) log(line);
    });
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0 ? resolve() : reject(new Error(`hack/build-tools.sh failed with exit code ${code}`)),
    );
  });
  for (const path of all) {
    if (!(await isExecutable(path))) throw new Error(`${path} is still missing after hack/build-tools.sh`);
  }
  return binaries;
}
