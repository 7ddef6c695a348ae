import { pino, type Logger, type LoggerOptions } from 'pino';

export type { Logger };

/**
 * The one logger. Children carry the request uid or the migration key; nothing
 * else in pvshift writes to stdout or stderr except the runner's JSON protocol.
 * Certificate keys and Secret data are redacted by path in case an object is
 * logged whole.
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  return pino({
    level: process.env.PVSHIFT_LOG_LEVEL ?? 'info',
    base: { app: 'pvshift' },
    redact: {
      paths: ['*.data', '*.stringData', '*.privateKey', '*.key', '*.tls.key', 'key', 'privateKey'],
      censor: '[redacted]',
    },
    ...options,
  });
}

/** A logger that drops everything: for tests and quiet library use. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
