// The narrow Kubernetes client the rest of pvshift uses: JSON over HTTPS with the
// credentials of a client-node KubeConfig, plus a list-and-watch informer.
// Kept small on purpose: every call pvshift makes goes through `request` (a
// stream through `watch`), so the chart's RBAC can be checked against one list
// of verbs, throttling is honoured in one place, and errors arrive as one type
// (ApiError, from src/errors.ts) that src/errors.ts classifies.
import https from 'node:https';
import http from 'node:http';
import { KubeConfig } from '@kubernetes/client-node';
import { ApiError } from './errors.js';

export { KubeConfig, ApiError };

export interface ObjectMeta {
  name?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  finalizers?: string[];
  deletionTimestamp?: string | Date;
  creationTimestamp?: string | Date;
  ownerReferences?: {
    apiVersion: string;
    kind: string;
    name: string;
    uid: string;
    controller?: boolean;
    blockOwnerDeletion?: boolean;
  }[];
}

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata?: ObjectMeta;
}

export interface ObjectList<T> {
  items: T[];
  metadata?: { resourceVersion?: string; continue?: string };
}

export type PatchType = 'json' | 'merge' | 'strategic' | 'apply';
const PATCH_CONTENT_TYPES: Record<PatchType, string> = {
  json: 'application/json-patch+json',
  merge: 'application/merge-patch+json',
  strategic: 'application/strategic-merge-patch+json',
  apply: 'application/apply-patch+yaml',
};

export type Query = Record<string, string | number | boolean | undefined>;

function withQuery(path: string, query?: Query): string {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined) params.set(k, String(v));
  const text = params.toString();
  return text ? `${path}${path.includes('?') ? '&' : '?'}${text}` : path;
}

export interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/**
 * A 429 is the one answer that says the request was not processed: API
 * priority and fairness rejects it before any handler runs (with
 * `Retry-After: 1`), and so does a server still wiring up a fresh CRD. So it is
 * retried for every verb, POST included, after the server's Retry-After, a few
 * times. Only with that header: a PodDisruptionBudget refusing an eviction
 * answers 429 too, without one (the API server sets the header only for a
 * positive retryAfterSeconds), and that refusal is the caller's to handle. A
 * wait longer than the cap is left to the caller's queue, not held on a worker.
 */
export const RETRY_AFTER_ATTEMPTS = 4;
export const MAX_RETRY_AFTER_MS = 5_000;

export interface KubeOptions {
  /** How `request` waits out a Retry-After (a test's fake clock records it). */
  sleep?: (ms: number) => Promise<void>;
}

const realSleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Retry-After in seconds (delta-seconds or an HTTP date, RFC 9110 10.2.3), or undefined. */
export function retryAfterSeconds(header: string | string[] | undefined, now = Date.now()): number | undefined {
  const value = (Array.isArray(header) ? header[0] : header)?.trim();
  if (!value) return undefined;
  if (/^\d+$/.test(value)) return Number(value);
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, Math.ceil((at - now) / 1000));
}

export class Kube {
  readonly server: URL;
  private agent: https.Agent | undefined;
  private baseOptions: Promise<https.RequestOptions> | undefined;
  private readonly sleep: (ms: number) => Promise<void>;

  constructor(
    readonly config: KubeConfig,
    options: KubeOptions = {},
  ) {
    const cluster = config.getCurrentCluster();
    if (!cluster) throw new Error('the kubeconfig has no current cluster');
    this.server = new URL(cluster.server);
    this.sleep = options.sleep ?? realSleep;
  }

  /** The kubeconfig the process was given: KUBECONFIG, ~/.kube/config, or in-cluster. */
  static fromDefault(kubeconfigPath?: string, context?: string): Kube {
    const kc = new KubeConfig();
    if (kubeconfigPath) kc.loadFromFile(kubeconfigPath);
    else kc.loadFromDefault();
    if (context) kc.setCurrentContext(context);
    return new Kube(kc);
  }

  private options(): Promise<https.RequestOptions> {
    this.baseOptions ??= (async () => {
      const opts: https.RequestOptions = {};
      await this.config.applyToHTTPSOptions(opts);
      this.agent = new https.Agent({
        keepAlive: true,
        maxSockets: 32,
        ca: opts.ca,
        cert: opts.cert,
        key: opts.key,
        rejectUnauthorized: opts.rejectUnauthorized,
      });
      return opts;
    })();
    return this.baseOptions;
  }

  /**
   * Options of one request to the API server: TLS from the kubeconfig, and the
   * credentials read afresh (tokens rotate). `keepAlive` uses the shared agent;
   * a watch, which holds its socket for minutes, gets its own.
   */
  private async requestOptions(
    method: string,
    path: string,
    headers: Record<string, string>,
    keepAlive: boolean,
    signal?: AbortSignal,
  ): Promise<https.RequestOptions> {
    const base = await this.options();
    const fresh: https.RequestOptions = {};
    await this.config.applyToHTTPSOptions(fresh);
    const plain = this.server.protocol === 'http:';
    return {
      ...base,
      agent: keepAlive && !plain ? this.agent : plain ? undefined : false,
      protocol: this.server.protocol,
      hostname: this.server.hostname,
      port: this.server.port,
      method,
      path: this.server.pathname.replace(/\/$/, '') + path,
      headers: { Accept: 'application/json', ...(fresh.headers as Record<string, string>), ...headers },
      ...(signal ? { signal } : {}),
    };
  }

  private transport(): typeof https | typeof http {
    return this.server.protocol === 'http:' ? http : https;
  }

  /** One HTTP exchange; the body as text. */
  async raw(
    method: string,
    path: string,
    body?: string,
    headers: Record<string, string> = {},
    signal?: AbortSignal,
  ): Promise<RawResponse> {
    // An explicit length, never chunked: after a chunked DELETE body the API
    // server answered the next request on the kept-alive socket with a bare
    // "400 Bad Request" (seen with kube-apiserver v1.34).
    const length: Record<string, string> =
      body !== undefined ? { 'Content-Length': String(Buffer.byteLength(body)) } : {};
    const options = await this.requestOptions(method, path, { ...headers, ...length }, true, signal);
    const transport = this.transport();
    return new Promise<RawResponse>((resolve, reject) => {
      const request = transport.request(options, (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () =>
          resolve({
            status: response.statusCode ?? 0,
            headers: response.headers,
            body: Buffer.concat(chunks).toString('utf8'),
          }),
        );
        response.on('error', reject);
      });
      request.on('error', reject);
      if (body !== undefined) request.write(body);
      request.end();
    });
  }

  /** One call: the parsed answer, or an ApiError; a 429 with Retry-After is waited out and sent again (see RETRY_AFTER_ATTEMPTS). */
  async request<T>(method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<T> {
    const text = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
    const headers: Record<string, string> = text === undefined ? {} : { 'Content-Type': contentType };
    for (let attempt = 1; ; attempt++) {
      const response = await this.raw(method, path, text, headers);
      let parsed: unknown = undefined;
      if (response.body) {
        try {
          parsed = JSON.parse(response.body);
        } catch {
          parsed = response.body;
        }
      }
      if (response.status >= 200 && response.status < 300) return parsed as T;
      const retryAfter = retryAfterSeconds(response.headers['retry-after']);
      const error = new ApiError(response.status, parsed, method, path, retryAfter);
      const waitMs = retryAfter === undefined ? undefined : retryAfter * 1000;
      if (
        response.status !== 429 ||
        waitMs === undefined ||
        waitMs > MAX_RETRY_AFTER_MS ||
        attempt >= RETRY_AFTER_ATTEMPTS
      )
        throw error;
      await this.sleep(waitMs);
    }
  }

  /** The object, or undefined where it does not exist. */
  async get<T>(path: string): Promise<T | undefined> {
    try {
      return await this.request<T>('GET', path);
    } catch (e: unknown) {
      if (e instanceof ApiError && e.code === 404) return undefined;
      throw e;
    }
  }

  list<T>(path: string, query?: Query): Promise<ObjectList<T>> {
    return this.request<ObjectList<T>>('GET', withQuery(path, query));
  }

  create<T>(path: string, body: T, query?: Query): Promise<T> {
    return this.request<T>('POST', withQuery(path, query), body);
  }

  replace<T>(path: string, body: T, query?: Query): Promise<T> {
    return this.request<T>('PUT', withQuery(path, query), body);
  }

  patch<T>(path: string, patch: unknown, type: PatchType = 'merge', query?: Query): Promise<T> {
    return this.request<T>('PATCH', withQuery(path, query), patch, PATCH_CONTENT_TYPES[type]);
  }

  /** Deletes; false where it was already gone (a success for a level-based caller). */
  async delete(
    path: string,
    options?: {
      gracePeriodSeconds?: number;
      propagationPolicy?: string;
      preconditions?: { uid?: string; resourceVersion?: string };
    },
  ): Promise<boolean> {
    try {
      await this.request('DELETE', path, options ? { apiVersion: 'v1', kind: 'DeleteOptions', ...options } : undefined);
      return true;
    } catch (e: unknown) {
      if (e instanceof ApiError && e.code === 404) return false;
      throw e;
    }
  }

  /**
   * Streams a watch: calls `onEvent` per event until the stream ends (resolve)
   * or fails to open, or a handler throws (reject). A stream cut after it opened
   * (a proxy or load balancer dropping the connection, an API server going
   * away) ends like one the server closed: the events seen so far are good, and
   * the caller watches again from the last resourceVersion, as client-go's
   * reflector does after an unexpected EOF. `onOpen` runs once the server has
   * accepted the watch; `signal` ends it early.
   */
  async watch(
    path: string,
    query: Query,
    onEvent: (type: string, object: unknown) => void,
    signal?: AbortSignal,
    onOpen?: () => void,
  ): Promise<void> {
    const options = await this.requestOptions('GET', withQuery(path, { ...query, watch: true }), {}, false, signal);
    const transport = this.transport();
    await new Promise<void>((resolve, reject) => {
      let opened = false;
      const request = transport.request(options, (response) => {
        if ((response.statusCode ?? 0) >= 300) {
          const chunks: Buffer[] = [];
          response.on('data', (c: Buffer) => chunks.push(c));
          response.on('end', () => {
            let body: unknown = Buffer.concat(chunks).toString('utf8');
            try {
              body = JSON.parse(body as string);
            } catch {
              /* keep text */
            }
            reject(
              new ApiError(
                response.statusCode ?? 0,
                body,
                'WATCH',
                path,
                retryAfterSeconds(response.headers['retry-after']),
              ),
            );
          });
          response.on('error', reject);
          return;
        }
        opened = true;
        onOpen?.();
        let buffered = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => {
          buffered += chunk;
          let newline: number;
          while ((newline = buffered.indexOf('\n')) >= 0) {
            const line = buffered.slice(0, newline).trim();
            buffered = buffered.slice(newline + 1);
            if (!line) continue;
            try {
              const event = JSON.parse(line) as { type: string; object: unknown };
              onEvent(event.type, event.object);
            } catch (e: unknown) {
              // A handler's error (or an ERROR event) ends this stream; the caller relists.
              request.destroy();
              reject(e instanceof Error ? e : new Error(String(e)));
              return;
            }
          }
        });
        // 'close' without 'end' is the connection cut mid-stream; a partial
        // line left in `buffered` is an event the next watch delivers again.
        response.on('end', () => resolve());
        response.on('close', () => resolve());
        response.on('error', () => resolve());
      });
      request.on('error', (e) => (signal?.aborted || opened ? resolve() : reject(e)));
      request.end();
    });
  }

  close(): void {
    this.agent?.destroy();
  }
}

// Paths. Namespaced collections take the namespace; `undefined` means all namespaces.
function ns(namespace: string | undefined): string {
  return namespace ? `/namespaces/${encodeURIComponent(namespace)}` : '';
}
function named(collection: string, name?: string): string {
  return name === undefined ? collection : `${collection}/${encodeURIComponent(name)}`;
}
export const paths = {
  pods: (namespace?: string, name?: string) => named(`/api/v1${ns(namespace)}/pods`, name),
  claims: (namespace?: string, name?: string) => named(`/api/v1${ns(namespace)}/persistentvolumeclaims`, name),
  volumes: (name?: string) => named('/api/v1/persistentvolumes', name),
  nodes: (name?: string) => named('/api/v1/nodes', name),
  namespaces: (name?: string) => named('/api/v1/namespaces', name),
  events: (namespace?: string) => `/api/v1${ns(namespace)}/events`,
  serviceAccounts: (namespace: string, name?: string) => named(`/api/v1${ns(namespace)}/serviceaccounts`, name),
  secrets: (namespace: string, name?: string) => named(`/api/v1${ns(namespace)}/secrets`, name),
  storageClasses: (name?: string) => named('/apis/storage.k8s.io/v1/storageclasses', name),
  leases: (namespace: string, name?: string) => named(`/apis/coordination.k8s.io/v1${ns(namespace)}/leases`, name),
  statefulSets: (namespace?: string, name?: string) => named(`/apis/apps/v1${ns(namespace)}/statefulsets`, name),
  deployments: (namespace?: string, name?: string) => named(`/apis/apps/v1${ns(namespace)}/deployments`, name),
  migrations: (namespace?: string, name?: string) =>
    named(`/apis/pvshift.io/v1alpha1${ns(namespace)}/volumemigrations`, name),
  crds: (name?: string) => named('/apis/apiextensions.k8s.io/v1/customresourcedefinitions', name),
  mutatingWebhooks: (name?: string) =>
    named('/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations', name),
};

export function keyOf(object: KubeObject): string {
  const meta = object.metadata ?? {};
  return meta.namespace ? `${meta.namespace}/${meta.name ?? ''}` : (meta.name ?? '');
}

type Handler<T> = (type: 'add' | 'update' | 'delete', object: T, old?: T) => void;

export interface InformerOptions {
  /** First and largest delay between restarts after a failed list or watch (default 200 ms and 10 s). */
  minBackoffMs?: number;
  maxBackoffMs?: number;
}

/**
 * A watch that ends this soon having delivered nothing is treated as a failure
 * (backoff, then relist), so a server or proxy that closes every watch at once
 * does not turn the loop into a busy one (client-go's "very short watch").
 */
const SHORT_WATCH_MS = 1_000;

/**
 * List, then watch from the list's resourceVersion. A watch that ends (the
 * server's timeout, or a connection cut after it opened) is resumed from the
 * last resourceVersion seen; 410 Gone (the watch window expired) and any other
 * failure relist, with backoff. The cache is the last state seen; handlers run
 * synchronously in event order.
 */
export class Informer<T extends KubeObject> {
  private readonly cache = new Map<string, T>();
  /** The same objects by namespace, so a reconcile reads its namespace's, not the cluster's. */
  private readonly byNamespace = new Map<string, Map<string, T>>();
  private readonly handlers: Handler<T>[] = [];
  private abort = new AbortController();
  private synced = false;
  private stopped = false;
  private resourceVersion = '';
  private syncWaiters: (() => void)[] = [];
  private onError: (e: unknown) => void = () => {};
  private onOpen: () => void = () => {};
  private readonly minBackoffMs: number;
  private readonly maxBackoffMs: number;

  constructor(
    private readonly kube: Kube,
    private readonly path: string,
    private readonly query: Query = {},
    options: InformerOptions = {},
  ) {
    this.minBackoffMs = options.minBackoffMs ?? 200;
    this.maxBackoffMs = options.maxBackoffMs ?? 10_000;
  }

  on(handler: Handler<T>): this {
    this.handlers.push(handler);
    return this;
  }

  onWatchError(handler: (e: unknown) => void): this {
    this.onError = handler;
    return this;
  }

  /** Runs each time a watch has been accepted: the cache is current and being kept so. */
  onWatchOpen(handler: () => void): this {
    this.onOpen = handler;
    return this;
  }

  get hasSynced(): boolean {
    return this.synced;
  }

  waitForSync(): Promise<void> {
    if (this.synced) return Promise.resolve();
    return new Promise((resolve) => this.syncWaiters.push(resolve));
  }

  list(): T[] {
    return [...this.cache.values()];
  }

  /** The objects of one namespace (cluster-scoped objects: the namespace ''). */
  listIn(namespace: string): T[] {
    return [...(this.byNamespace.get(namespace)?.values() ?? [])];
  }

  get(key: string): T | undefined {
    return this.cache.get(key);
  }

  private put(key: string, object: T): void {
    this.cache.set(key, object);
    const ns = object.metadata?.namespace ?? '';
    let here = this.byNamespace.get(ns);
    if (!here) this.byNamespace.set(ns, (here = new Map<string, T>()));
    here.set(key, object);
  }

  private remove(key: string, object: T): void {
    this.cache.delete(key);
    const ns = object.metadata?.namespace ?? '';
    const here = this.byNamespace.get(ns);
    here?.delete(key);
    if (here?.size === 0) this.byNamespace.delete(ns);
  }

  start(): this {
    void this.run();
    return this;
  }

  stop(): void {
    this.stopped = true;
    this.abort.abort();
  }

  private emit(type: 'add' | 'update' | 'delete', object: T, old?: T): void {
    for (const handler of this.handlers) handler(type, object, old);
  }

  private async relist(): Promise<void> {
    const list = await this.kube.list<T>(this.path, this.query);
    const seen = new Set<string>();
    for (const item of list.items) {
      const key = keyOf(item);
      seen.add(key);
      const old = this.cache.get(key);
      this.put(key, item);
      if (!old) this.emit('add', item);
      else if (old.metadata?.resourceVersion !== item.metadata?.resourceVersion) this.emit('update', item, old);
    }
    for (const [key, old] of this.cache) {
      if (!seen.has(key)) {
        this.remove(key, old);
        this.emit('delete', old);
      }
    }
    this.resourceVersion = list.metadata?.resourceVersion ?? '';
    if (!this.synced) {
      this.synced = true;
      for (const resolve of this.syncWaiters.splice(0)) resolve();
    }
  }

  private async run(): Promise<void> {
    let backoff = this.minBackoffMs;
    let needList = true;
    while (!this.stopped) {
      try {
        if (needList) {
          await this.relist();
          needList = false;
        }
        const started = Date.now();
        let events = 0;
        await this.kube.watch(
          this.path,
          { ...this.query, resourceVersion: this.resourceVersion, allowWatchBookmarks: true, timeoutSeconds: 240 },
          (type, raw) => {
            events++;
            const object = raw as T;
            if (type === 'BOOKMARK') {
              this.resourceVersion = object.metadata?.resourceVersion ?? this.resourceVersion;
              return;
            }
            if (type === 'ERROR') {
              const code = (raw as { code?: number }).code;
              if (code === 410) needList = true;
              throw new ApiError(code ?? 500, raw, 'WATCH', this.path);
            }
            this.resourceVersion = object.metadata?.resourceVersion ?? this.resourceVersion;
            const key = keyOf(object);
            const old = this.cache.get(key);
            if (type === 'DELETED') {
              this.remove(key, old ?? object);
              this.emit('delete', object);
            } else {
              this.put(key, object);
              this.emit(old ? 'update' : 'add', object, old);
            }
          },
          this.abort.signal,
          () => this.onOpen(),
        );
        if (this.stopped) return;
        if (events === 0 && Date.now() - started < SHORT_WATCH_MS)
          throw new Error(`watch of ${this.path} closed at once with no events`);
        backoff = this.minBackoffMs;
      } catch (e: unknown) {
        if (this.stopped) return;
        if (e instanceof ApiError && e.code === 410) needList = true;
        else {
          this.onError(e);
          needList = true;
        }
        await new Promise((resolve) => setTimeout(resolve, backoff));
        backoff = Math.min(backoff * 2, this.maxBackoffMs);
      }
    }
  }
}
