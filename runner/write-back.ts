// Durability: the runner's "done" means the copy is on the target's disk, not
// only in the page cache. cp and rsync leave their writes dirty in memory,
// where the kernel keeps them for up to ~30 s (vm.dirty_expire_centisecs); a
// node that crashed in that window would bring the new volume back partial,
// under a pod that was told its data was ready.
//
// So the run ends with syncfs(2) of the target's filesystem, and while the copy
// runs a flusher calls syncfs again and again, so the disk writes while cp and
// rsync are still reading instead of all at the end (figures in README.md,
// "Write-back"). Node has no syncfs; coreutils' `sync -f DIR` is that call.
//
// syncfs reports a write-back error (EIO: a block the disk did not take) to
// each file opened before the error, or to the next opener if nobody has seen
// it yet (errseq): whichever flush sees it, background or last, fails the run,
// and terminally. A retry would run rsync's size+mtime quick check against
// files whose pages are still cached and look right, but whose blocks never
// reached the disk: the volume cannot be trusted, and the source is untouched.
import { spawn, type ChildProcess } from 'node:child_process';

export class WriteBackError extends Error {
  override name = 'WriteBackError';
}

/** syncfs(2) of the filesystem holding `dir`. Rejects with WriteBackError when the kernel reports lost writes. */
export function syncFilesystem(dir: string, children: Set<ChildProcess>): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('sync', ['-f', '--', dir], { stdio: ['ignore', 'ignore', 'pipe'] });
    children.add(child);
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (c: string) => (stderr = (stderr + c).slice(-2000)));
    // A process that cannot start emits 'error', then 'close': the first settles.
    child.on('error', (e: NodeJS.ErrnoException) => {
      children.delete(child);
      reject(
        new WriteBackError(
          e.code === 'ENOENT'
            ? 'sync (coreutils) is not installed in this image'
            : `sync could not start: ${e.message}`,
        ),
      );
    });
    child.on('close', (code, signal) => {
      children.delete(child);
      if (code === 0) resolve();
      else
        reject(
          new WriteBackError(
            `writing the copy to the target's disk failed (${stderr.trim() || `sync -f exited ${code ?? signal}`})`,
          ),
        );
    });
  });
}

/** A flush quicker than this found little to write ... */
const QUICK_MS = 5;
/** ... so the next one waits this long: a tree of small files would otherwise force a journal commit every ~2 ms. */
const PAUSE_MS = 20;

/**
 * Keeps write-back going on the target's filesystem from start() until
 * finish(), which flushes once more and reports the first error any flush saw.
 */
export class Flusher {
  private stopped = false;
  private error: WriteBackError | undefined;
  private wake: (() => void) | undefined;
  private loop: Promise<void> = Promise.resolve();

  constructor(
    private readonly dir: string,
    private readonly children: Set<ChildProcess>,
  ) {}

  start(): void {
    this.loop = this.run();
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const started = Date.now();
      try {
        await syncFilesystem(this.dir, this.children);
      } catch (e: unknown) {
        // Kept even when stop() came meanwhile: this flush may have been the one to see the error.
        this.error ??= e instanceof WriteBackError ? e : new WriteBackError(String(e));
        return;
      }
      if (Date.now() - started < QUICK_MS && !this.stopped) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, PAUSE_MS);
          this.wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        this.wake = undefined;
      }
    }
  }

  /** Stops the background flushes (waiting for the one under way) without judging them: for a run that failed anyway. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    await this.loop;
  }

  /** Stops, flushes what is left, and throws the first write-back error any flush reported. */
  async finish(): Promise<void> {
    await this.stop();
    if (this.error) throw this.error;
    await syncFilesystem(this.dir, this.children);
  }
}
