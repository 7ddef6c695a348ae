// The narrow Kubernetes client the rest of pvshift uses: JSON over HTTPS with the
// credentials of a client-node KubeConfig, plus a list-and-watch informer.
// Kept small on purpose: every call pvshift makes goes through `request`, so the
// chart's RBAC can be checked against one list of verbs, and errors arrive as
// one type that src/errors.ts classifies.
import https from 'node:https';
import http from 'node:http';
import { KubeConfig } from '@kubernetes/client-node';
import { apiMessage } from './errors.js';

export { KubeConfig };

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
  ownerReferences?: { apiVersion: string; kind: string; name: string; uid: string; controller?: boolean; blockOwnerDeletion?: boolean }[];
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

/** An error answer of the API server: `code` is the HTTP status, `body` the Status object. */
export class ApiError extends Error {
  override name = 'ApiError';
  constructor(
    readonly code: number,
    readonly body: unknown,
    readonly method: string,
    readonly path: string,
  ) {
    super(`${method} ${path}: ${code} ${apiMessage({ body })}`);
  }
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
  body: string;
}

export class Kube {
  readonly server: URL;
  private agent: https.Agent | undefined;
  private baseOptions: Promise<https.RequestOptions> | undefined;

  constructor(readonly config: KubeConfig) {
    const cluster = config.getCurrentCluster();
    if (!cluster) throw new Error('the kubeconfig has no current cluster');
    this.server = new URL(cluster.server);
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
  private async requestOptions(method: string, path: string, headers: Record<string, string>, keepAlive: boolean, signal?: AbortSignal): Promise<https.RequestOptions> {
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
  async raw(method: string, path: string, body?: string, headers: Record<string, string> = {}, signal?: AbortSignal): Promise<RawResponse> {
    // An explicit length, never chunked: after a chunked DELETE body the API
    // server answered the next request on the kept-alive socket with a bare
    // "400 Bad Request" (seen with kube-apiserver v1.34).
    const length: Record<string, string> = body !== undefined ? { 'Content-Length': String(Buffer.byteLength(body)) } : {};
    const options = await this.requestOptions(method, path, { ...headers, ...length }, true, signal);
    const transport = this.transport();
    return new Promise<RawResponse>((resolve, reject) => {
      const request = transport.request(
        options,
        (response) => {
          const chunks: Buffer[] = [];
          response.on('data', (chunk: Buffer) => chunks.push(chunk));
          response.on('end', () => resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
          response.on('error', reject);
        },
      );
      request.on('error', reject);
      if (body !== undefined) request.write(body);
      request.end();
    });
  }

  async request<T>(method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<T> {
    const text = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
    const headers: Record<string, string> = text === undefined ? {} : { 'Content-Type': contentType };
    const response = await this.raw(method, path, text, headers);
    let parsed: unknown = undefined;
    if (response.body) {
      try {
        parsed = JSON.parse(response.body);
      } catch {
        parsed = response.body;
      }
    }
    if (response.status < 200 || response.status >= 300) throw new ApiError(response.status, parsed, method, path);
    return parsed as T;
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
  async delete(path: string, options?: { gracePeriodSeconds?: number; propagationPolicy?: string; preconditions?: { uid?: string; resourceVersion?: string } }): Promise<boolean> {
    try {
      await this.request('DELETE', path, options ? { apiVersion: 'v1', kind: 'DeleteOptions', ...options } : undefined);
      return true;
    } catch (e: unknown) {
      if (e instanceof ApiError && e.code === 404) return false;
      throw e;
    }
  }

  /**
   * Streams a watch: calls `onEvent` per event until the server closes the
   * stream (resolve) or it fails (reject). `signal` ends it early.
   */
  async watch(path: string, query: Query, onEvent: (type: string, object: unknown) => void, signal?: AbortSignal): Promise<void> {
    const options = await this.requestOptions('GET', withQuery(path, { ...query, watch: true }), {}, false, signal);
    const transport = this.transport();
    await new Promise<void>((resolve, reject) => {
      const request = transport.request(
        options,
        (response) => {
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
              reject(new ApiError(response.statusCode ?? 0, body, 'WATCH', path));
            });
            return;
          }
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
          response.on('end', () => resolve());
          response.on('error', reject);
        },
      );
      request.on('error', (e) => (signal?.aborted ? resolve() : reject(e)));
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
  migrations: (namespace?: string, name?: string) => named(`/apis/pvshift.io/v1alpha1${ns(namespace)}/volumemigrations`, name),
  crds: (name?: string) => named('/apis/apiextensions.k8s.io/v1/customresourcedefinitions', name),
  mutatingWebhooks: (name?: string) => named('/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations', name),
};

export function keyOf(object: KubeObject): string {
  const meta = object.metadata ?? {};
  return meta.namespace ? `${meta.namespace}/${meta.name ?? ''}` : (meta.name ?? '');
}

type Handler<T> = (type: 'add' | 'update' | 'delete', object: T, old?: T) => void;

/**
 * List, then watch from the list's resourceVersion; relist on 410 Gone (the
 * watch window expired) and after any stream error, with backoff. The cache is
 * the last state seen; handlers run synchronously in event order.
 */
export class Informer<T extends KubeObject> {
  private readonly cache = new Map<string, T>();
  private readonly handlers: Handler<T>[] = [];
  private abort = new AbortController();
  private synced = false;
  private stopped = false;
  private resourceVersion = '';
  private syncWaiters: (() => void)[] = [];
  private onError: (e: unknown) => void = () => {};

  constructor(
    private readonly kube: Kube,
    private readonly path: string,
    private readonly query: Query = {},
  ) {}

  on(handler: Handler<T>): this {
    this.handlers.push(handler);
    return this;
  }

  onWatchError(handler: (e: unknown) => void): this {
    this.onError = handler;
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

  get(key: string): T | undefined {
    return this.cache.get(key);
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
      this.cache.set(key, item);
      if (!old) this.emit('add', item);
      else if (old.metadata?.resourceVersion !== item.metadata?.resourceVersion) this.emit('update', item, old);
    }
    for (const [key, old] of this.cache) {
      if (!seen.has(key)) {
        this.cache.delete(key);
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
    let backoff = 200;
    let needList = true;
    while (!this.stopped) {
      try {
        if (needList) {
          await this.relist();
          needList = false;
        }
        await this.kube.watch(
          this.path,
          { ...this.query, resourceVersion: this.resourceVersion, allowWatchBookmarks: true, timeoutSeconds: 240 },
          (type, raw) => {
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
              this.cache.delete(key);
              this.emit('delete', object);
            } else {
              this.cache.set(key, object);
              this.emit(old ? 'update' : 'add', object, old);
            }
          },
          this.abort.signal,
        );
        backoff = 200;
      } catch (e: unknown) {
        if (this.stopped) return;
        if (e instanceof ApiError && e.code === 410) needList = true;
        else {
          this.onError(e);
          needList = true;
        }
        await new Promise((resolve) => setTimeout(resolve, backoff));
        backoff = Math.min(backoff * 2, 10_000);
      }
    }
  }
}
