// The four kinds of failure pvshift distinguishes, and the one function that maps
// Kubernetes API status codes onto them. Callers decide by kind, never by code.
import { Reason } from './reasons.js';

/** Worth retrying with backoff: conflicts, timeouts, throttling, a server hiccup. */
export class TransientError extends Error {
  override name = 'TransientError';
  constructor(message: string, options?: { cause?: unknown; retryAfterSeconds?: number }) {
    super(message, options);
    this.retryAfterSeconds = options?.retryAfterSeconds;
  }
  readonly retryAfterSeconds: number | undefined;
}

/** Will not get better by retrying: reported as an event and a condition, then left. */
export class TerminalError extends Error {
  override name = 'TerminalError';
  constructor(
    message: string,
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** pvshift was started wrong: fail at start with the flag or variable to fix. */
export class ConfigurationError extends Error {
  override name = 'ConfigurationError';
}

/** An admission request pvshift refuses; the message is shown to the user by kubectl. */
export class AdmissionDenial extends Error {
  override name = 'AdmissionDenial';
  constructor(
    message: string,
    readonly code = 403,
  ) {
    super(message);
  }
}

/**
 * An error answer of the API server: `code` is the HTTP status, `body` the
 * Status object (or the text, where it was not JSON). src/kube.ts is the one
 * client, so this is the one shape an API failure arrives in; anything else
 * (a refused connection, a reset socket) never reached the API server.
 */
export class ApiError extends Error {
  override name = 'ApiError';
  constructor(
    readonly code: number,
    readonly body: unknown,
    readonly method: string,
    readonly path: string,
    /** The server's Retry-After, in seconds, where it sent one (429, some 5xx). */
    readonly retryAfterSeconds?: number,
  ) {
    super(`${method} ${path}: ${code} ${apiMessage({ body })}`);
  }
}

/** The HTTP status of an API error; undefined for a failure that never got an answer. */
function statusOf(e: unknown): number | undefined {
  return e instanceof ApiError ? e.code : undefined;
}

/** The API server's own message for an error, where it sent one. */
export function apiMessage(e: unknown): string {
  if (typeof e === 'object' && e !== null) {
    const body = (e as Record<string, unknown>).body;
    let parsed: unknown = body;
    if (typeof body === 'string') {
      try {
        parsed = JSON.parse(body);
      } catch {
        parsed = undefined;
      }
    }
    if (typeof parsed === 'object' && parsed !== null) {
      const message = (parsed as Record<string, unknown>).message;
      if (typeof message === 'string') return message;
    }
    if (typeof body === 'string' && body.trim()) return body.trim().slice(0, 500);
  }
  return e instanceof Error ? e.message : String(e);
}

export const isNotFound = (e: unknown): boolean => statusOf(e) === 404;
export const isAlreadyExists = (e: unknown): boolean => statusOf(e) === 409 && /already exists/i.test(apiMessage(e));
export const isConflict = (e: unknown): boolean => statusOf(e) === 409 && !isAlreadyExists(e);

/**
 * A JSON patch the server could not apply to the object as it is now: a `test`
 * op on a resourceVersion that moved on, a path that is gone. The patch handler
 * answers 422 with only the generic message and no details (apimachinery's
 * NewGenericServerResponse; the failed op is not sent), where a refused object
 * is a 422 naming the object and its invalid fields. Older servers and proxies
 * said "test operation failed" or "testing value ... failed".
 */
function isUnappliedPatch(e: ApiError): boolean {
  const text = apiMessage(e);
  if (/test operation failed|testing value/i.test(text)) return true;
  const details = (e.body as { details?: Record<string, unknown> } | undefined)?.details;
  return (
    text === 'the server rejected our request due to an error in our request' &&
    (!details || Object.keys(details).length === 0)
  );
}

/**
 * Classifies an API failure. 404 (an object a stale cache still showed), 409
 * (conflict), 422 from a failed `test` patch op, 429, 5xx and network errors are
 * transient: the next reconcile reads the world again. 400/403/422 otherwise are
 * terminal: the request itself is wrong, and sending it again gets the same answer.
 */
export function classifyApiError(e: unknown, what: string): TransientError | TerminalError {
  if (e instanceof TransientError || e instanceof TerminalError) return e;
  const code = statusOf(e);
  const message = `${what}: ${apiMessage(e)}`;
  if (code === undefined || code === 404 || code === 409 || code === 429 || code >= 500) {
    return new TransientError(message, {
      cause: e,
      retryAfterSeconds: e instanceof ApiError ? e.retryAfterSeconds : undefined,
    });
  }
  if (code === 422 && isUnappliedPatch(e as ApiError)) {
    return new TransientError(
      `${what}: the object changed since it was read (the patch's guard failed); reading it again`,
      { cause: e },
    );
  }
  // 403s that pass by themselves: a ResourceQuota used up (admission's "exceeded
  // quota", until something is freed) and a namespace being deleted ("because it
  // is being terminated", until it is gone and the migration with it).
  if (code === 403 && /exceeded quota|is being terminated/i.test(apiMessage(e))) {
    return new TransientError(message, { cause: e });
  }
  return new TerminalError(message, code === 403 ? Reason.Forbidden : Reason.APIRejected, { cause: e });
}

export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
