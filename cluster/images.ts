// The container images of the real-node tier: built without a registry by
// hack/images/build.sh (cached by content, so a warm run costs a fraction of a
// second) and imported as OCI archives into the containerd the real kubelet
// talks to.
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { REPO_ROOT } from './binaries.js';

const execFileAsync = promisify(execFile);
const BUILD_SCRIPT = `${REPO_ROOT}hack/images/build.sh`;

/** An image as the build left it: its ref, and the OCI archive that `ctr images import` names by that ref. */
export interface BuiltImage {
  ref: string;
  archive: string;
}

export interface BuiltImages {
  /** localhost/pvshift:e2e, from the project's Dockerfile. */
  pvshift: BuiltImage;
  /** localhost/pause:e2e, for containerd's sandbox_image. */
  pause: BuiltImage;
  /** localhost/pvshift-testapp:e2e: bash, coreutils, attr and acl for test workloads. */
  app: BuiltImage;
}

/** The build script prints one `PVSHIFT_IMAGE_<NAME>=<ref> <archive>` line per image. */
const OUTPUT_NAMES: Record<keyof BuiltImages, string> = {
  pvshift: 'PVSHIFT_IMAGE_PVSHIFT',
  pause: 'PVSHIFT_IMAGE_PAUSE',
  app: 'PVSHIFT_IMAGE_APP',
};

/** How much of the script's stderr a failure quotes (the rest went to `log`). */
const ERROR_TAIL_LINES = 30;

function parseImages(stdout: string): BuiltImages {
  const found = new Map<string, BuiltImage>();
  for (const line of stdout.split('\n')) {
    const match = /^(PVSHIFT_IMAGE_[A-Z]+)=(\S+) (\S+)$/.exec(line.trim());
    if (match?.[1] && match[2] && match[3]) found.set(match[1], { ref: match[2], archive: match[3] });
  }
  const pick = (key: keyof BuiltImages): BuiltImage => {
    const image = found.get(OUTPUT_NAMES[key]);
    if (!image)
      throw new Error(`hack/images/build.sh printed no ${OUTPUT_NAMES[key]} line; its output was:\n${stdout}`);
    return image;
  };
  return { pvshift: pick('pvshift'), pause: pick('pause'), app: pick('app') };
}

let built: Promise<BuiltImages> | undefined;

/**
 * Builds the images (or finds them in the cache) once per process; every
 * caller gets the same result. A failed build is forgotten, so a later call
 * tries again. A cold build takes minutes (Debian packages, `npm ci`); the
 * script's progress lines go to `log` as they come.
 */
export function buildImages(log: (line: string) => void = () => {}): Promise<BuiltImages> {
  built ??= runBuildScript(log).catch((e: unknown) => {
    built = undefined;
    throw e;
  });
  return built;
}

function runBuildScript(log: (line: string) => void): Promise<BuiltImages> {
  return new Promise<BuiltImages>((resolve, reject) => {
    const child = spawn('bash', [BUILD_SCRIPT], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let partial = '';
    const tail: string[] = [];
    const emit = (line: string): void => {
      if (!line) return;
      log(line);
      tail.push(line);
      if (tail.length > ERROR_TAIL_LINES) tail.shift();
    };
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    // Chunks end anywhere; a line is only passed on once its newline has come.
    child.stderr.on('data', (chunk: Buffer) => {
      const lines = (partial + chunk.toString()).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) emit(line);
    });
    child.on('error', (e) => reject(new Error(`could not run hack/images/build.sh: ${e.message}`)));
    child.on('close', (code, signal) => {
      emit(partial);
      if (code !== 0) {
        const how = signal ? `was killed by ${signal}` : `failed with exit code ${code}`;
        reject(new Error(`hack/images/build.sh ${how}; its last lines:\n${tail.join('\n')}`));
        return;
      }
      try {
        resolve(parseImages(stdout));
      } catch (e: unknown) {
        reject(e instanceof Error ? e : new Error(String(e)));
      }
    });
  });
}

export interface Containerd {
  /** The containerd socket, e.g. `${dir}/containerd.sock` ([grpc] address of its config). */
  address: string;
  /** The ctr binary (default `ctr` on PATH); it should match the containerd's version. */
  ctr?: string;
  /** Default `k8s.io`: the namespace containerd's CRI plugin, and so the kubelet, sees. */
  namespace?: string;
  /**
   * The snapshotter to unpack into: the CRI plugin's (`snapshotter` under
   * plugins."io.containerd.grpc.v1.cri".containerd). Default: containerd's
   * default, overlayfs on Linux, which is also the CRI plugin's default.
   */
  snapshotter?: string;
}

/**
 * Imports the archives into a containerd, in the namespace the CRI plugin
 * serves, and checks that each ref is there, complete and unpacked. Pods name
 * them as they are (`localhost/...` is already a full reference, nothing is
 * prefixed with docker.io) with imagePullPolicy IfNotPresent or Never, and the
 * pause image as sandbox_image; none is ever pulled. `ctr images import`
 * unpacks into the snapshotter given here, which must be the CRI plugin's:
 * containerd 1.6's CRI would unpack a missing snapshot on first use too
 * (pkg/cri/opts WithNewSnapshot retries after Image.Unpack), but then the
 * first pod start pays for it within the kubelet's timeouts, and nothing
 * proves the image usable before a test depends on it. Importing an image that
 * is there already only moves its ref (blobs are content-addressed): cheap.
 */
export async function importImages(
  containerd: Containerd,
  images: BuiltImages | BuiltImage[],
  log: (line: string) => void = () => {},
): Promise<void> {
  const list = Array.isArray(images) ? images : [images.pvshift, images.pause, images.app];
  const ctr = containerd.ctr ?? 'ctr';
  const base = ['--address', containerd.address, '--namespace', containerd.namespace ?? 'k8s.io'];
  const snapshotter = containerd.snapshotter ? ['--snapshotter', containerd.snapshotter] : [];
  const run = async (args: string[]): Promise<string> => {
    try {
      const { stdout } = await execFileAsync(ctr, [...base, ...args], { maxBuffer: 16 * 1024 * 1024 });
      return stdout;
    } catch (e: unknown) {
      const stderr = (e as { stderr?: unknown }).stderr;
      const detail =
        typeof stderr === 'string' && stderr.trim() ? stderr.trim() : e instanceof Error ? e.message : String(e);
      throw new Error(`${ctr} ${[...base, ...args].join(' ')} failed: ${detail}`, { cause: e });
    }
  };
  for (const image of list) {
    const started = Date.now();
    // No --base-name: the archive names its image by the full ref
    // (org.opencontainers.image.ref.name), which ctr then keeps as it is.
    await run(['images', 'import', ...snapshotter, image.archive]);
    log(`imported ${image.ref} into ${containerd.address} in ${((Date.now() - started) / 1000).toFixed(1)}s`);
  }
  // `images check --quiet` prints only the refs whose content is all there and
  // unpacked into the snapshotter.
  const ready = new Set(
    (await run(['images', 'check', '--quiet', ...snapshotter])).split('\n').map((line) => line.trim()),
  );
  const missing = list.filter((image) => !ready.has(image.ref)).map((image) => `${image.ref} (${image.archive})`);
  if (missing.length > 0) {
    const listed = (await run(['images', 'list', '--quiet'])).trim() || '(none)';
    throw new Error(
      `after import, containerd at ${containerd.address} has no complete, unpacked image for ${missing.join(', ')}; it lists:\n${listed}`,
    );
  }
}
