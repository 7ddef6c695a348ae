// Files mode: the serving certificate comes from a directory the user mounts
// (cert-manager's Secret, typically), and is reloaded when it changes there.
import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ConfigurationError, errorMessage } from '../src/errors.js';
import type { Logger } from '../src/logger.js';
import type { KeyPair } from './authority.js';
import { ChangeListeners, pairProblem, type CertificateSource } from './source.js';

export interface FileCertificateOptions {
  dir: string;
  certFile?: string;
  keyFile?: string;
  logger: Logger;
  /** Quiet time after the last change event before reading (default 250 ms). */
  debounceMs?: number;
  /** Read again this often whatever the events say (default 30 s). */
  pollIntervalMs?: number;
}

/**
 * Reads `tls.crt` and `tls.key` from `dir` and watches it. The kubelet updates a
 * Secret volume by writing a new timestamped directory and swapping the `..data`
 * symlink (atomic_writer.go), which shows up as rename events on the directory,
 * not on the files: so the directory is watched, and the files read through the
 * symlinks again. Events are debounced (one swap is several events), and a poll
 * catches what fs.watch misses (it is not reliable on every filesystem). A pair
 * whose key does not match its certificate (read between two writes of a
 * non-atomic update) is skipped until the next event or poll.
 */
export async function startFileCertificates(options: FileCertificateOptions): Promise<CertificateSource> {
  const log = options.logger.child({ component: 'certificates', dir: options.dir });
  const certPath = join(options.dir, options.certFile ?? 'tls.crt');
  const keyPath = join(options.dir, options.keyFile ?? 'tls.key');
  const listeners = new ChangeListeners();

  const read = async (): Promise<KeyPair> => ({
    certPem: await readFile(certPath, 'utf8'),
    keyPem: await readFile(keyPath, 'utf8'),
  });

  let current: KeyPair;
  try {
    current = await read();
  } catch (e: unknown) {
    throw new ConfigurationError(`cannot read the webhook certificate from ${options.dir}: ${errorMessage(e)}`);
  }
  const problem = pairProblem(current);
  if (problem) throw new ConfigurationError(`the webhook certificate in ${options.dir} cannot be served: ${problem}`);

  let stopped = false;
  let reloading = false;
  let again = false;
  const reload = async (): Promise<void> => {
    if (stopped) return;
    if (reloading) {
      again = true;
      return;
    }
    reloading = true;
    try {
      do {
        again = false;
        let next: KeyPair;
        try {
          next = await read();
        } catch (e: unknown) {
          log.warn({ err: errorMessage(e) }, 'cannot read the certificate files; keeping the current ones');
          continue;
        }
        if (next.certPem === current.certPem && next.keyPem === current.keyPem) continue;
        const nextProblem = pairProblem(next);
        if (nextProblem) {
          log.warn(
            { reason: nextProblem },
            'certificate files changed but cannot be served yet; keeping the current ones',
          );
          continue;
        }
        current = next;
        log.info('serving certificate reloaded from files');
        listeners.emit(current);
      } while (again && !stopped);
    } finally {
      reloading = false;
    }
  };

  const debounceMs = options.debounceMs ?? 250;
  let debounce: NodeJS.Timeout | undefined;
  const schedule = (): void => {
    clearTimeout(debounce);
    debounce = setTimeout(() => void reload(), debounceMs);
    debounce.unref();
  };

  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(options.dir, { persistent: false }, schedule);
    watcher.on('error', (e: unknown) => {
      log.warn({ err: errorMessage(e) }, 'watching the certificate directory failed; relying on the periodic check');
      watcher?.close();
      watcher = undefined;
    });
  } catch (e: unknown) {
    log.warn({ err: errorMessage(e) }, 'cannot watch the certificate directory; relying on the periodic check');
  }
  const poll = setInterval(() => void reload(), options.pollIntervalMs ?? 30_000);
  poll.unref();

  return {
    current: () => current,
    onChange: (listener) => listeners.add(listener),
    stop: () => {
      stopped = true;
      clearTimeout(debounce);
      clearInterval(poll);
      watcher?.close();
      return Promise.resolve();
    },
  };
}
