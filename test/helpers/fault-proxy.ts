// A fault-injecting proxy in front of the local cluster's kube-apiserver, for
// the failures the real API server will not produce on demand: 429 with
// Retry-After, 5xx, a watch window that has expired (410 Gone), a dropped watch
// connection, latency. Everything else passes through to the real API server,
// as the cluster's admin (the proxy holds the admin's client certificate; its
// own clients present none). It serves HTTPS with a CA of its own, so the client
// under test takes the same TLS path it takes in a cluster.
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import { createCertificateAuthority, issueServingCertificate } from '../../certs/authority.js';

/** Which requests a fault applies to. Every field given must match. */
export interface RequestMatch {
  method?: string;
  /** The path without the query: a prefix, or a pattern. */
  path?: string | RegExp;
  /** Watches only (true) or everything but watches (false). */
  watch?: boolean;
  /** How many matching requests it applies to (default 1; Infinity for all). */
  times?: number;
}

/** One request as the proxy saw it, and what it did with it. */
export interface SeenRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  watch: boolean;
  /** `passed` went to the API server; the rest were answered by the proxy. */
  outcome: 'passed' | 'too-many-requests' | 'server-error' | 'expired';
  /** The status the client got (for a watch, that of the stream's opening). */
  status?: number;
}

type Answer =
  | { kind: 'too-many-requests'; retryAfterSeconds?: number }
  | { kind: 'server-error'; status: number }
  | { kind: 'expired' };

interface Fault {
  match: RequestMatch;
  left: number;
  answer?: Answer;
  /** Resolves when the request may go on: after a delay, or when the test releases it. */
  wait?: () => Promise<void>;
}

export interface FaultProxy {
  /** https://127.0.0.1:<port> */
  url: string;
  /** A kubeconfig for the proxy: its CA, no credentials of its own. */
  kubeConfig(): KubeConfig;
  /** Every request so far, in arrival order. */
  readonly requests: readonly SeenRequest[];
  /** Calls `listener` as each request is answered (or, for a passed watch, opened). */
  onRequest(listener: (request: SeenRequest) => void): void;
  /** Answers 429 with `Retry-After: <retryAfterSeconds>` (none when undefined), as API priority and fairness does. */
  tooManyRequests(match: RequestMatch, retryAfterSeconds?: number): void;
  /** Answers `status` (default 500) with a Status body. */
  serverError(match: RequestMatch, status?: number): void;
  /** Opens a matching watch and sends one ERROR event, 410 Expired: what the API server does for a resourceVersion out of its window. */
  expireWatch(match: RequestMatch): void;
  /** Holds matching requests `ms` before handling them (and before any other fault applies). */
  delay(match: RequestMatch, ms: number): void;
  /** Holds matching requests until `release` is called: "meanwhile" without a race against a timer. */
  hold(match: RequestMatch): { release: () => void };
  /** Cuts the connections of the watches open now that match; returns how many. */
  dropWatches(match?: Omit<RequestMatch, 'times' | 'watch' | 'method'>): number;
  /** The watches open now that match. */
  openWatches(match?: Omit<RequestMatch, 'times' | 'watch' | 'method'>): SeenRequest[];
  /** Forgets faults and the request log (open watches stay open). */
  reset(): void;
  close(): Promise<void>;
}

function isWatch(query: URLSearchParams): boolean {
  const value = query.get('watch');
  return value === 'true' || value === '1';
}

function matches(match: RequestMatch, method: string, path: string, watch: boolean): boolean {
  if (match.method !== undefined && match.method.toUpperCase() !== method) return false;
  if (match.watch !== undefined && match.watch !== watch) return false;
  if (typeof match.path === 'string' && !path.startsWith(match.path)) return false;
  if (match.path instanceof RegExp && !match.path.test(path)) return false;
  return true;
}

// Hop-by-hop headers (RFC 9110 7.6.1) belong to one connection, not the message.
const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade'];
function endToEnd<T extends Record<string, unknown>>(headers: T): T {
  const copy = { ...headers };
  for (const name of HOP_BY_HOP) delete copy[name];
  return copy;
}

function status(code: number, reason: string, message: string, details?: Record<string, unknown>): string {
  return JSON.stringify({
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message,
    reason,
    ...(details ? { details } : {}),
    code,
  });
}

/** Starts the proxy in front of the API server `upstream` talks to (an admin kubeconfig of the local cluster). */
export async function startFaultProxy(upstream: KubeConfig): Promise<FaultProxy> {
  const cluster = upstream.getCurrentCluster();
  if (!cluster) throw new Error('the upstream kubeconfig has no current cluster');
  const target = new URL(cluster.server);
  const tls: https.RequestOptions = {};
  await upstream.applyToHTTPSOptions(tls);
  // One connection per request upstream: a watch's socket is its own, and a
  // dropped downstream watch takes its upstream request with it.
  const agent = new https.Agent({
    keepAlive: false,
    ca: tls.ca,
    cert: tls.cert,
    key: tls.key,
    rejectUnauthorized: tls.rejectUnauthorized,
  });

  const now = new Date();
  const ca = await createCertificateAuthority({ now, commonName: 'pvshift-fault-proxy-ca' });
  const serving = await issueServingCertificate(ca, { names: ['127.0.0.1', 'localhost'], now });

  const faults: Fault[] = [];
  const requests: SeenRequest[] = [];
  const listeners: ((request: SeenRequest) => void)[] = [];
  const open = new Map<SeenRequest, () => void>();

  const record = (seen: SeenRequest): void => {
    requests.push(seen);
    for (const listener of listeners) listener(seen);
  };
  /** The first fault with `kind` left for this request, used up by one. */
  const take = (method: string, path: string, watch: boolean, pick: (f: Fault) => boolean): Fault | undefined => {
    const fault = faults.find((f) => f.left > 0 && pick(f) && matches(f.match, method, path, watch));
    if (fault) fault.left--;
    return fault;
  };

  const server = https.createServer({ key: serving.keyPem, cert: serving.certPem }, (req, res) => {
    void (async () => {
      const url = new URL(req.url ?? '/', 'https://proxy');
      const method = (req.method ?? 'GET').toUpperCase();
      const watch = isWatch(url.searchParams);
      const seen: SeenRequest = { method, path: url.pathname, query: url.searchParams, watch, outcome: 'passed' };

      const held = take(method, url.pathname, watch, (f) => f.wait !== undefined);
      if (held?.wait) await held.wait();

      const answer = take(method, url.pathname, watch, (f) => f.answer !== undefined)?.answer;
      if (answer) {
        req.resume();
        if (answer.kind === 'too-many-requests') {
          const headers: http.OutgoingHttpHeaders = { 'Content-Type': 'application/json' };
          if (answer.retryAfterSeconds !== undefined) headers['Retry-After'] = String(answer.retryAfterSeconds);
          res
            .writeHead(429, headers)
            .end(
              status(
                429,
                'TooManyRequests',
                'Too many requests, please try again later.',
                answer.retryAfterSeconds !== undefined ? { retryAfterSeconds: answer.retryAfterSeconds } : undefined,
              ),
            );
          record({ ...seen, outcome: 'too-many-requests', status: 429 });
        } else if (answer.kind === 'server-error') {
          res
            .writeHead(answer.status, { 'Content-Type': 'application/json' })
            .end(
              status(
                answer.status,
                'InternalError',
                'Internal error occurred: etcdserver: request timed out (injected)',
              ),
            );
          record({ ...seen, outcome: 'server-error', status: answer.status });
        } else {
          // The API server opens the stream and then reports the expiry in it.
          res.writeHead(200, { 'Content-Type': 'application/json' });
          res.end(
            `${JSON.stringify({ type: 'ERROR', object: JSON.parse(status(410, 'Expired', 'too old resource version (injected)')) as unknown })}\n`,
          );
          record({ ...seen, outcome: 'expired', status: 200 });
        }
        return;
      }

      const headers = { ...endToEnd(req.headers), host: target.host };
      delete headers.authorization;
      const upstreamRequest = https.request(
        {
          protocol: target.protocol,
          hostname: target.hostname,
          port: target.port,
          method,
          path: `${target.pathname.replace(/\/$/, '')}${req.url ?? '/'}`,
          headers,
          agent,
        },
        (upstreamResponse) => {
          res.writeHead(upstreamResponse.statusCode ?? 502, endToEnd(upstreamResponse.headers));
          // A watch's events go out as they come, not when a buffer fills.
          if (watch) res.flushHeaders();
          upstreamResponse.pipe(res);
          const passed: SeenRequest = { ...seen, status: upstreamResponse.statusCode };
          if (watch) {
            open.set(passed, () => {
              upstreamRequest.destroy();
              res.socket?.destroy();
            });
            res.on('close', () => open.delete(passed));
          }
          record(passed);
        },
      );
      upstreamRequest.on('error', () => res.socket?.destroy());
      // The client went away before its answer was through (not req's 'close':
      // that comes as soon as the request body has been read).
      res.on('close', () => {
        if (!res.writableFinished) upstreamRequest.destroy();
      });
      req.pipe(upstreamRequest);
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const add = (match: RequestMatch, fault: Omit<Fault, 'match' | 'left'>): void => {
    faults.push({ match, left: match.times ?? 1, ...fault });
  };
  const openMatching = (match: Omit<RequestMatch, 'times' | 'watch' | 'method'> = {}): [SeenRequest, () => void][] =>
    [...open].filter(([seen]) => matches(match, seen.method, seen.path, true));

  return {
    url,
    kubeConfig: () => {
      const kc = new KubeConfig();
      kc.loadFromOptions({
        clusters: [{ name: 'fault-proxy', server: url, caData: Buffer.from(ca.certPem).toString('base64') }],
        users: [{ name: 'through-the-proxy' }],
        contexts: [{ name: 'fault-proxy', cluster: 'fault-proxy', user: 'through-the-proxy' }],
        currentContext: 'fault-proxy',
      });
      return kc;
    },
    requests,
    onRequest: (listener) => void listeners.push(listener),
    tooManyRequests: (match, retryAfterSeconds) =>
      add(match, { answer: { kind: 'too-many-requests', retryAfterSeconds } }),
    serverError: (match, code = 500) => add(match, { answer: { kind: 'server-error', status: code } }),
    expireWatch: (match) => add({ ...match, watch: true }, { answer: { kind: 'expired' } }),
    delay: (match, ms) => add(match, { wait: () => new Promise((resolve) => setTimeout(resolve, ms)) }),
    hold: (match) => {
      let release = (): void => {};
      const released = new Promise<void>((resolve) => (release = resolve));
      add(match, { wait: () => released });
      return { release };
    },
    dropWatches: (match) => {
      const found = openMatching(match);
      for (const [seen, cut] of found) {
        open.delete(seen);
        cut();
      }
      return found.length;
    },
    openWatches: (match) => openMatching(match).map(([seen]) => seen),
    reset: () => {
      faults.length = 0;
      requests.length = 0;
    },
    close: async () => {
      for (const cut of open.values()) cut();
      open.clear();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      agent.destroy();
    },
  };
}
