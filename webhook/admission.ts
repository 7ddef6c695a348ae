// The webhook's HTTP side: a fastify app that reads AdmissionReviews, asks the
// pure mutations what the object must be, and answers with a JSON Patch. Built
// by a factory apart from `listen`, so tests drive it through `inject`.
import type { SecureContextOptions } from 'node:tls';
import type { Server as HttpsServer } from 'node:https';
import type { V1PersistentVolumeClaim, V1Pod } from '@kubernetes/client-node';
import { fastify, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Registry } from 'prom-client';
import { AdmissionDenial, errorMessage } from '../src/errors.js';
import type { Logger } from '../src/logger.js';
import type { VolumeMigration } from '../src/volume-migration.js';
import { createWebhookMetrics, type AdmissionResult, type AdmittedResource } from './metrics.js';
import type { MigrationLookup } from './migration-cache.js';
import { workloadPolicyOf } from '../src/workload-policy.js';
import { mutateClaim } from './mutate-claim.js';
import { claimNamesOf, mutatePod } from './mutate-pod.js';
import { allowed, denied, errored, patched, review } from './responses.js';
import {
  ADMISSION_API_VERSION,
  ADMISSION_REVIEW_KIND,
  type AdmissionRequest,
  type AdmissionResponse,
} from './types.js';

export const CLAIMS_PATH = '/mutate/persistentvolumeclaims';
export const PODS_PATH = '/mutate/pods';

/**
 * The API server sends objects up to etcd's request limit (about 1.5 MiB) wrapped
 * with their old version and options; its own limit on a request body is
 * 3 MiB JSON, and a review carries object and oldObject, so allow 7 MiB. fastify's
 * default of 1 MiB would turn a large, legitimate review into a 413, and with
 * `failurePolicy: Fail` into a refused claim.
 */
export const BODY_LIMIT = 7 * 1024 * 1024;

export interface WebhookAppOptions {
  logger: Logger;
  lookup: MigrationLookup;
  /** Where the request count and latency histogram are registered; served on /metrics. */
  register: Registry;
  /** The clock for `pvshift.io/gated-at`; tests fix it. */
  now?: () => Date;
  /** Key and certificate to serve HTTPS; without them the app serves plain HTTP (tests through inject). */
  https?: SecureContextOptions;
  /** Extra readiness besides the cache being synced (certificates loaded, for one). */
  isReady?: () => boolean;
}

/** A webhook app; when built with `https`, `app.server` is a node:https Server (see `secureServerOf`). */
export type WebhookApp = FastifyInstance;

/** An HTTP error answered instead of an AdmissionReview: the request was not one. */
class BadReview extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
  ) {
    super(message);
  }
}

export function buildWebhookApp(options: WebhookAppOptions): WebhookApp {
  const { logger, lookup, register } = options;
  const now = options.now ?? (() => new Date());
  const metrics = createWebhookMetrics(register);
  const log = logger.child({ component: 'webhook' });

  // No logger handed to fastify: it would make a child logger for every request
  // (measured: about a third of the per-request cost over a no-op handler), and
  // one line per admission request would be the bulk of the log at thousands of
  // pods per minute. Decisions that change something, and failures, are logged
  // by the handlers themselves with `log`.
  const base = {
    bodyLimit: BODY_LIMIT,
    // The API server gives up after the webhook's timeoutSeconds (10 s at most
    // here); nothing useful happens on a request after that.
    requestTimeout: 15_000,
    return503OnClosing: true,
  };
  const app = (options.https
    ? fastify({ ...base, https: { ...options.https, minVersion: 'TLSv1.2' } })
    : fastify(base)) as unknown as FastifyInstance;

  // One parser, ours: fastify's own JSON parser answers an empty or broken body
  // with messages about fastify, not about AdmissionReviews.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'string', bodyLimit: BODY_LIMIT }, (_request, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8');
    if (text.trim() === '') {
      done(new BadReview(400, 'empty body: expected an AdmissionReview'), undefined);
      return;
    }
    try {
      done(null, JSON.parse(text));
    } catch (e: unknown) {
      done(new BadReview(400, `body is not valid JSON: ${errorMessage(e)}`), undefined);
    }
  });

  // Requests that never reach a handler (415, 413, unparsable JSON) still count.
  const countInvalid = (request: FastifyRequest, reply: FastifyReply): void => {
    const resource = resourceOfPath(request.url);
    if (resource) metrics.observe(resource, 'invalid', reply.elapsedTime / 1000);
  };

  app.setErrorHandler((error: FastifyError | BadReview, request, reply) => {
    countInvalid(request, reply);
    if (error instanceof BadReview) return sendError(reply, error.statusCode, error.message);
    if (error.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      return sendError(reply, 413, `body is larger than ${BODY_LIMIT} bytes (7 MiB), the most pvshift reads`);
    }
    if (error.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
      return sendError(reply, 415, contentTypeMessage(request.headers['content-type']));
    }
    const status = typeof error.statusCode === 'number' && error.statusCode >= 400 ? error.statusCode : 500;
    if (status >= 500) log.error({ err: errorMessage(error), url: request.url }, 'webhook request failed');
    return sendError(reply, status, error.message);
  });

  const handle = (resource: AdmittedResource) => (request: FastifyRequest, reply: FastifyReply) => {
    const started = process.hrtime.bigint();
    let admissionRequest: AdmissionRequest;
    try {
      admissionRequest = readReview(request.body);
    } catch (e: unknown) {
      metrics.observe(resource, 'invalid', elapsedSeconds(started));
      if (e instanceof BadReview) return sendError(reply, e.statusCode, e.message);
      throw e;
    }
    const { response, result } = decide(resource, admissionRequest);
    metrics.observe(resource, result, elapsedSeconds(started));
    return reply.send(review(response));
  };

  const decide = (
    resource: AdmittedResource,
    request: AdmissionRequest,
  ): { response: AdmissionResponse; result: AdmissionResult } => {
    const uid = request.uid;
    // Only CREATE is registered; anything else (a misconfigured rule, a
    // subresource such as pods/binding) passes unchanged rather than being
    // refused by a webhook that has no opinion on it.
    if (request.operation !== 'CREATE' || request.subResource) return { response: allowed(uid), result: 'allowed' };
    const expectedKind = resource === 'pods' ? 'Pod' : 'PersistentVolumeClaim';
    const kind = request.kind;
    if (kind && (kind.group !== '' || kind.kind !== expectedKind)) {
      const got = `${kind.group ? `${kind.group}/` : ''}${kind.version}, Kind=${kind.kind}`;
      return {
        response: errored(uid, 400, `${requestPath(resource)} admits ${expectedKind} objects, got ${got}`),
        result: 'errored',
      };
    }
    const object = request.object;
    if (typeof object !== 'object' || object === null || Array.isArray(object)) {
      return {
        response: errored(uid, 400, `request.object is missing: a CREATE of a ${expectedKind} must carry it`),
        result: 'errored',
      };
    }
    const metadata = (object as { metadata?: { namespace?: string; name?: string } }).metadata;
    const namespace = request.namespace || metadata?.namespace || '';
    try {
      return resource === 'pods'
        ? admitPod(uid, namespace, object)
        : admitClaim(uid, namespace, metadata?.name || request.name || '', object);
    } catch (e: unknown) {
      if (e instanceof AdmissionDenial) {
        log.info({ uid, namespace, resource, reason: e.message }, 'admission denied');
        return { response: denied(uid, e.message, e.code), result: 'denied' };
      }
      // Logged here, once, with the uid the API server logs too.
      log.error({ uid, namespace, resource, err: errorMessage(e) }, 'admission handler failed');
      return {
        response: errored(uid, 500, `pvshift could not admit this ${expectedKind}: ${errorMessage(e)}`),
        result: 'errored',
      };
    }
  };

  const admitClaim = (
    uid: string,
    namespace: string,
    name: string,
    claim: V1PersistentVolumeClaim,
  ): { response: AdmissionResponse; result: AdmissionResult } => {
    // Fail closed: the namespace is labelled active, so a migration may be in
    // cutover, and an unsynced cache cannot tell. A refused claim is retried by
    // the StatefulSet controller; a claim made on the old class is not undone.
    if (!lookup.isSynced()) {
      return {
        response: errored(
          uid,
          503,
          'pvshift has not yet loaded its VolumeMigrations; retry the claim in a few seconds',
        ),
        result: 'errored',
      };
    }
    if (!name || !namespace) return { response: allowed(uid), result: 'allowed' };
    const migrations = lookup.migrationsForClaim(namespace, name);
    const policy = workloadPolicyOf(
      { ...claim, metadata: { ...claim.metadata, namespace } },
      lookup.policiesIn(namespace),
    );
    if (migrations.length === 0 && !policy) return { response: allowed(uid), result: 'allowed' };
    const { object, warnings } = mutateClaim(claim, migrations, policy);
    return finish(uid, 'persistentvolumeclaims', namespace, name, claim, object, warnings);
  };

  const admitPod = (
    uid: string,
    namespace: string,
    pod: V1Pod,
  ): { response: AdmissionResponse; result: AdmissionResult } => {
    // failurePolicy Ignore means a pvshift outage lets pods through ungated;
    // an unsynced cache is the same situation and is answered the same way.
    if (!lookup.isSynced()) {
      return {
        response: allowed(uid, ['pvshift: VolumeMigrations not loaded yet; this pod was not checked for a migration']),
        result: 'allowed',
      };
    }
    if (!namespace) return { response: allowed(uid), result: 'allowed' };
    const migrations: VolumeMigration[] = [];
    for (const claimName of claimNamesOf(pod)) migrations.push(...lookup.migrationsForClaim(namespace, claimName));
    if (migrations.length === 0) return { response: allowed(uid), result: 'allowed' };
    const { object, warnings } = mutatePod(pod, migrations, now());
    const name = pod.metadata?.name || pod.metadata?.generateName || '';
    return finish(uid, 'pods', namespace, name, pod, object, warnings);
  };

  const finish = (
    uid: string,
    resource: AdmittedResource,
    namespace: string,
    name: string,
    original: unknown,
    mutated: unknown,
    warnings: string[],
  ): { response: AdmissionResponse; result: AdmissionResult } => {
    const response = patched(uid, original, mutated, warnings);
    if (response.patch === undefined) return { response: allowed(uid, warnings), result: 'allowed' };
    log.info({ uid, resource, namespace, name }, 'admission patched');
    return { response, result: 'patched' };
  };

  // The content type is checked by fastify's routing to our one parser: any
  // other media type (or none, with a body) is FST_ERR_CTP_INVALID_MEDIA_TYPE,
  // answered 415 by the error handler above. No onRequest hook: a route hook
  // costs a few percent of a request at full load.
  app.post(CLAIMS_PATH, handle('persistentvolumeclaims'));
  app.post(PODS_PATH, handle('pods'));

  app.get('/healthz', (_request, reply) => reply.send({ ok: true }));
  app.get('/readyz', (_request, reply) => {
    const synced = lookup.isSynced();
    const extra = options.isReady ? options.isReady() : true;
    if (synced && extra) return reply.send({ ready: true });
    return reply.code(503).send({ ready: false, cacheSynced: synced, certificatesLoaded: extra });
  });
  app.get('/metrics', async (_request, reply) => {
    const body = await register.metrics();
    return reply.header('content-type', register.contentType).send(body);
  });

  return app;
}

/** The HTTPS server of an app built with `https`, for `setSecureContext`. */
export function secureServerOf(app: WebhookApp): HttpsServer {
  const server = app.server as unknown as Partial<HttpsServer>;
  if (typeof server.setSecureContext !== 'function') throw new Error('the webhook app was built without https');
  return server as HttpsServer;
}

/** Checks the envelope; returns the request or throws BadReview with the exact reason. */
export function readReview(body: unknown): AdmissionRequest {
  if (body === undefined || body === null || body === '')
    throw new BadReview(400, 'empty body: expected an AdmissionReview');
  if (typeof body !== 'object' || Array.isArray(body)) {
    throw new BadReview(400, 'body is not an AdmissionReview: expected a JSON object');
  }
  const envelope = body as Record<string, unknown>;
  if (envelope.apiVersion !== ADMISSION_API_VERSION || envelope.kind !== ADMISSION_REVIEW_KIND) {
    throw new BadReview(
      400,
      `expected apiVersion "${ADMISSION_API_VERSION}" and kind "${ADMISSION_REVIEW_KIND}", ` +
        `got apiVersion ${describe(envelope.apiVersion)} and kind ${describe(envelope.kind)}`,
    );
  }
  const request = envelope.request;
  if (typeof request !== 'object' || request === null || Array.isArray(request)) {
    throw new BadReview(400, 'AdmissionReview has no request');
  }
  const uid = (request as Record<string, unknown>).uid;
  if (typeof uid !== 'string' || uid === '') throw new BadReview(400, 'AdmissionReview request has no uid');
  return request as AdmissionRequest;
}

function describe(value: unknown): string {
  return value === undefined ? '(none)' : JSON.stringify(value);
}

function contentTypeMessage(header: string | undefined): string {
  return header
    ? `unsupported content type "${header}": send the AdmissionReview as application/json`
    : 'missing content type: send the AdmissionReview as application/json';
}

function sendError(reply: FastifyReply, statusCode: number, message: string): FastifyReply {
  return reply.code(statusCode).send({ statusCode, error: statusText(statusCode), message });
}

function statusText(code: number): string {
  switch (code) {
    case 400:
      return 'Bad Request';
    case 413:
      return 'Payload Too Large';
    case 415:
      return 'Unsupported Media Type';
    default:
      return code >= 500 ? 'Internal Server Error' : 'Error';
  }
}

function resourceOfPath(url: string): AdmittedResource | undefined {
  const path = url.split('?')[0];
  return path === CLAIMS_PATH ? 'persistentvolumeclaims' : path === PODS_PATH ? 'pods' : undefined;
}

function requestPath(resource: AdmittedResource): string {
  return resource === 'pods' ? PODS_PATH : CLAIMS_PATH;
}

function elapsedSeconds(started: bigint): number {
  return Number(process.hrtime.bigint() - started) / 1e9;
}
