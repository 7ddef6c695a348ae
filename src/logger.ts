import { pino, type DestinationStream, type Logger, type LoggerOptions } from 'pino';

export type { Logger };

/**
 * How much log output may wait in memory for a slow stdout before lines are
 * dropped: about a minute of a busy controller's logging.
 */
export const LOG_BUFFER_LIMIT = 8 * 1024 * 1024;

/**
 * stdout, written from a buffer in the background. A container's stdout is a
 * pipe that the runtime's shim copies into a log file; when the node's disks are
 * busy (copies onto loop devices in the real-node tier: the node's page cache
 * full of dirty pages) that copy stalls, the 64 KiB pipe fills, and a
 * synchronous write would block the event loop: the webhook stops answering,
 * the probes fail, the Lease is lost. Buffered, pvshift keeps answering; past
 * LOG_BUFFER_LIMIT lines are dropped, never the service. Before exiting, call
 * flushLogger: pino's own flush at exit writes what is queued but drops a chunk
 * whose write is still in flight.
 */
export function stdoutDestination(): DestinationStream {
  return pino.destination({ dest: 1, sync: false, maxLength: LOG_BUFFER_LIMIT });
}

/**
 * The one logger. Children carry the request uid or the migration key; nothing
 * else in pvshift writes to stdout or stderr except the runner's JSON protocol.
 * Certificate keys and Secret data are redacted by path in case an object is
 * logged whole. The level is config's --log-level (options.level).
 */
export function createLogger(
  options: LoggerOptions = {},
  destination: DestinationStream = stdoutDestination(),
): Logger {
  return pino(
    {
      level: 'info',
      base: { app: 'pvshift' },
      redact: {
        paths: ['*.data', '*.stringData', '*.privateKey', '*.key', '*.tls.key', 'key', 'privateKey'],
        censor: '[redacted]',
      },
      ...options,
    },
    destination,
  );
}

/** What flushLogger needs of pino's destination (a sonic-boom stream). */
interface Closable {
  end(): void;
  once(event: 'close', listener: () => void): unknown;
  destroyed?: boolean;
}

/**
 * The last call before exit: writes out every line logged so far, in order, and
 * silences the logger (the stream is closed after). pino's own flush at exit
 * writes what is queued but drops a chunk whose write is still in flight; this
 * waits for it. A stdout that never drains is given `timeoutMs`, no more.
 */
export async function flushLogger(logger: Logger, timeoutMs = 5000): Promise<void> {
  const stream = (logger as unknown as Record<symbol, unknown>)[pino.symbols.streamSym] as Closable | undefined;
  if (typeof stream?.end !== 'function' || typeof stream.once !== 'function' || stream.destroyed) return;
  let timer: NodeJS.Timeout | undefined;
  const closed = new Promise<void>((resolve) => {
    stream.once('close', () => resolve());
    timer = setTimeout(resolve, timeoutMs);
  });
  stream.end();
  await closed;
  clearTimeout(timer);
  logger.level = 'silent';
}

/** A logger that drops everything: for tests and quiet library use. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
