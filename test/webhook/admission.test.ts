// The webhook over HTTP, through fastify's inject: every malformed request gets
// its exact status and message, and real-shaped reviews get the right answer.
import { readFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import t from 'tap';
import jsonpatch from 'fast-json-patch';
import { Registry } from 'prom-client';
import { silentLogger } from '../../src/logger.js';
import { ANNOTATION_GATED_AT, ANNOTATION_MIGRATION, SCHEDULING_GATE } from '../../src/names.js';
import { BODY_LIMIT, buildWebhookApp, CLAIMS_PATH, PODS_PATH } from '../../webhook/admission.js';
import { createMemoryLookup, MigrationIndex, type MigrationLookup } from '../../webhook/migration-cache.js';
import type { AdmissionReview } from '../../webhook/types.js';
import { admissionReview, migration, statefulSetClaim, statefulSetPod } from '../fixtures/admission/builders.js';

const NOW = new Date('2025-03-01T10:00:00.000Z');
const fixture = (name: string): Record<string, unknown> =>
  JSON.parse(readFileSync(new URL(`../fixtures/admission/${name}`, import.meta.url), 'utf8')) as Record<
    string,
    unknown
  >;

function appWith(lookup: MigrationLookup = createMemoryLookup([migration('data-web-0', 'CuttingOver')])) {
  const register = new Registry();
  const app = buildWebhookApp({ logger: silentLogger(), lookup, register, now: () => NOW });
  return { app, register };
}

async function post(
  lookup: MigrationLookup | undefined,
  path: string,
  payload: unknown,
  headers: Record<string, string> = { 'content-type': 'application/json' },
) {
  const { app } = appWith(lookup);
  const body = typeof payload === 'string' || Buffer.isBuffer(payload) ? payload : JSON.stringify(payload);
  const response = await app.inject({ method: 'POST', url: path, headers, payload: body });
  await app.close();
  return response;
}

function decodePatch(review: AdmissionReview): jsonpatch.Operation[] {
  return JSON.parse(Buffer.from(review.response!.patch!, 'base64').toString('utf8')) as jsonpatch.Operation[];
}

void t.test('malformed requests: exact status and message', (t) => {
  const valid = admissionReview('pods', statefulSetPod());
  const cases: { name: string; payload: unknown; headers?: Record<string, string>; status: number; message: string }[] =
    [
      {
        name: 'text/plain',
        payload: valid,
        headers: { 'content-type': 'text/plain' },
        status: 415,
        message: 'unsupported content type "text/plain": send the AdmissionReview as application/json',
      },
      {
        name: 'application/yaml',
        payload: 'a: 1',
        headers: { 'content-type': 'application/yaml' },
        status: 415,
        message: 'unsupported content type "application/yaml": send the AdmissionReview as application/json',
      },
      {
        name: 'no content type',
        payload: valid,
        headers: {},
        status: 415,
        message: 'missing content type: send the AdmissionReview as application/json',
      },
      {
        name: 'a JSON-like media type',
        payload: valid,
        headers: { 'content-type': 'application/json-patch+json' },
        status: 415,
        message: 'unsupported content type "application/json-patch+json": send the AdmissionReview as application/json',
      },
      {
        name: 'a longer name starting with application/json',
        payload: valid,
        headers: { 'content-type': 'application/jsonx' },
        status: 415,
        message: 'unsupported content type "application/jsonx": send the AdmissionReview as application/json',
      },
      { name: 'empty body', payload: '', status: 400, message: 'empty body: expected an AdmissionReview' },
      { name: 'whitespace body', payload: '  \n', status: 400, message: 'empty body: expected an AdmissionReview' },
      {
        name: 'bad JSON',
        payload: '{"apiVersion":',
        status: 400,
        message: `body is not valid JSON: ${jsonError('{"apiVersion":')}`,
      },
      {
        name: 'a JSON array',
        payload: '[]',
        status: 400,
        message: 'body is not an AdmissionReview: expected a JSON object',
      },
      { name: 'JSON null', payload: 'null', status: 400, message: 'empty body: expected an AdmissionReview' },
      {
        name: 'v1beta1',
        payload: { ...valid, apiVersion: 'admission.k8s.io/v1beta1' },
        status: 400,
        message:
          'expected apiVersion "admission.k8s.io/v1" and kind "AdmissionReview", got apiVersion "admission.k8s.io/v1beta1" and kind "AdmissionReview"',
      },
      {
        name: 'wrong kind',
        payload: { apiVersion: 'admission.k8s.io/v1', kind: 'Pod' },
        status: 400,
        message:
          'expected apiVersion "admission.k8s.io/v1" and kind "AdmissionReview", got apiVersion "admission.k8s.io/v1" and kind "Pod"',
      },
      {
        name: 'no apiVersion or kind',
        payload: { request: { uid: 'x' } },
        status: 400,
        message:
          'expected apiVersion "admission.k8s.io/v1" and kind "AdmissionReview", got apiVersion (none) and kind (none)',
      },
      {
        name: 'no request',
        payload: { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' },
        status: 400,
        message: 'AdmissionReview has no request',
      },
      {
        name: 'no request.uid',
        payload: { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: { operation: 'CREATE' } },
        status: 400,
        message: 'AdmissionReview request has no uid',
      },
      {
        name: 'empty request.uid',
        payload: { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: { uid: '' } },
        status: 400,
        message: 'AdmissionReview request has no uid',
      },
    ];
  for (const c of cases) {
    for (const path of [CLAIMS_PATH, PODS_PATH]) {
      void t.test(`${c.name} on ${path}: ${c.status}`, async (t) => {
        const response = await post(undefined, path, c.payload, c.headers);
        t.equal(response.statusCode, c.status);
        t.same(response.json(), {
          statusCode: c.status,
          error: c.status === 415 ? 'Unsupported Media Type' : 'Bad Request',
          message: c.message,
        });
      });
    }
  }
  void t.test('a body over 7 MiB: 413; just under: read', async (t) => {
    const pad = (size: number) => {
      const review = admissionReview('pods', statefulSetPod());
      const base = JSON.stringify(review).length;
      (review.request as Record<string, unknown>).padding = 'x'.repeat(size - base - 14);
      return JSON.stringify(review);
    };
    const over = await post(undefined, PODS_PATH, pad(BODY_LIMIT + 10));
    t.equal(over.statusCode, 413);
    t.equal(
      over.json<{ message: string }>().message,
      'body is larger than 7340032 bytes (7 MiB), the most pvshift reads',
    );
    const under = pad(BODY_LIMIT - 1000);
    t.ok(under.length > 6 * 1024 * 1024 && under.length < BODY_LIMIT);
    const ok = await post(undefined, PODS_PATH, under);
    t.equal(ok.statusCode, 200);
    t.equal(ok.json<AdmissionReview>().response?.allowed, true);
  });
  void t.test('content type with a charset is accepted', async (t) => {
    const response = await post(undefined, PODS_PATH, valid, { 'content-type': 'application/json; charset=utf-8' });
    t.equal(response.statusCode, 200);
  });
  t.end();
});

function jsonError(text: string): string {
  try {
    JSON.parse(text);
  } catch (e: unknown) {
    return (e as Error).message;
  }
  return '';
}

void t.test('fixtures: real-shaped reviews', (t) => {
  void t.test('PVC CREATE from the StatefulSet controller for a claim in cutover: patched', async (t) => {
    const review = fixture('pvc-create-statefulset.json');
    const response = await post(undefined, CLAIMS_PATH, review);
    t.equal(response.statusCode, 200);
    const body = response.json<AdmissionReview>();
    t.equal(body.apiVersion, 'admission.k8s.io/v1');
    t.equal(body.kind, 'AdmissionReview');
    t.equal(body.response?.uid, 'a1f6f0d4-2a3b-4c5d-8e9f-0a1b2c3d4e01');
    t.equal(body.response?.allowed, true);
    t.equal(body.response?.patchType, 'JSONPatch');
    const object = (review.request as { object: unknown }).object;
    const patched = jsonpatch.applyPatch(structuredClone(object), decodePatch(body)).newDocument as ReturnType<
      typeof statefulSetClaim
    >;
    t.equal(patched.spec?.storageClassName, 'fast-ssd');
    t.same(patched.spec?.dataSourceRef, { apiGroup: 'pvshift.io', kind: 'VolumeMigration', name: 'data-web-0' });
    t.equal(patched.metadata?.annotations?.[ANNOTATION_MIGRATION], 'data-web-0');
    t.ok(patched.metadata?.managedFields, 'managedFields untouched');
    t.equal(body.response?.warnings?.length, 1);
  });
  void t.test('Pod CREATE mounting it: gated', async (t) => {
    const review = fixture('pod-create-statefulset.json');
    const body = (await post(undefined, PODS_PATH, review)).json<AdmissionReview>();
    t.equal(body.response?.uid, 'a1f6f0d4-2a3b-4c5d-8e9f-0a1b2c3d4e02');
    const object = (review.request as { object: unknown }).object;
    const patched = jsonpatch.applyPatch(structuredClone(object), decodePatch(body)).newDocument as ReturnType<
      typeof statefulSetPod
    >;
    t.same(patched.spec?.schedulingGates, [{ name: SCHEDULING_GATE }]);
    t.equal(patched.metadata?.annotations?.[ANNOTATION_GATED_AT], NOW.toISOString());
  });
  // Sent by a real kube-apiserver v1.34 for a StatefulSet (hack/capture-reviews.ts):
  // defaults, managedFields, tolerations and the service-account volume included.
  void t.test(
    'captured from a real API server: the claim is rewritten, the pod gated, nothing else moves',
    async (t) => {
      const lookup = createMemoryLookup([migration('data-web-0', 'CuttingOver')]);
      for (const [file, path] of [
        ['captured-claim-review.json', CLAIMS_PATH],
        ['captured-pod-review.json', PODS_PATH],
      ] as const) {
        const review = fixture(file);
        const request = review.request as { uid: string; object: Record<string, unknown> };
        const body = (await post(lookup, path, review)).json<AdmissionReview>();
        t.equal(body.response?.uid, request.uid, `${file}: the uid is echoed`);
        t.equal(body.response?.patchType, 'JSONPatch', `${file}: patched`);
        const operations = decodePatch(body);
        const result = jsonpatch.applyPatch(structuredClone(request.object), operations).newDocument as {
          metadata: { annotations?: Record<string, string>; managedFields?: unknown };
          spec: Record<string, unknown>;
        };
        t.same(
          result.metadata.managedFields,
          (request.object.metadata as { managedFields?: unknown }).managedFields,
          `${file}: managedFields untouched`,
        );
        t.equal(result.metadata.annotations?.[ANNOTATION_MIGRATION], 'data-web-0', `${file}: names the migration`);
        if (path === PODS_PATH) {
          t.same(result.spec.schedulingGates, [{ name: SCHEDULING_GATE }], 'the pod is gated');
          t.same(
            operations.map((o) => o.path).sort(),
            [
              '/metadata/annotations/pvshift.io~1gated-at',
              '/metadata/annotations/pvshift.io~1migration',
              '/spec/schedulingGates',
            ],
            'and nothing else is touched',
          );
        } else {
          t.equal(result.spec.storageClassName, 'fast-ssd', 'the claim moves to the target class');
          t.same(result.spec.dataSourceRef, { apiGroup: 'pvshift.io', kind: 'VolumeMigration', name: 'data-web-0' });
        }
      }
    },
  );
  const unchanged: [string, string, string][] = [
    ['pod-create-no-claim.json', PODS_PATH, 'a1f6f0d4-2a3b-4c5d-8e9f-0a1b2c3d4e03'],
    ['pvc-delete.json', CLAIMS_PATH, 'a1f6f0d4-2a3b-4c5d-8e9f-0a1b2c3d4e04'],
    ['pod-update.json', PODS_PATH, 'a1f6f0d4-2a3b-4c5d-8e9f-0a1b2c3d4e05'],
  ];
  for (const [name, path, uid] of unchanged) {
    void t.test(`${name}: allowed unchanged`, async (t) => {
      const response = await post(undefined, path, fixture(name));
      t.equal(response.statusCode, 200);
      t.same(response.json(), {
        apiVersion: 'admission.k8s.io/v1',
        kind: 'AdmissionReview',
        response: { uid, allowed: true },
      });
    });
  }
  for (const operation of ['DELETE', 'UPDATE', 'CONNECT'] as const) {
    void t.test(`${operation} of a claim in cutover: allowed unchanged`, async (t) => {
      const claim = statefulSetClaim();
      const review = admissionReview('persistentvolumeclaims', claim, {
        operation,
        uid: `uid-${operation}`,
        oldObject: claim,
      });
      t.same((await post(undefined, CLAIMS_PATH, review)).json(), {
        apiVersion: 'admission.k8s.io/v1',
        kind: 'AdmissionReview',
        response: { uid: `uid-${operation}`, allowed: true },
      });
    });
  }
  t.end();
});

void t.test('decisions', (t) => {
  void t.test('a claim in cutover without a snapshot: denied 403 with the reason, uid echoed', async (t) => {
    const lookup = createMemoryLookup([migration('data-web-0', 'CuttingOver', { withSnapshot: false })]);
    const body = (
      await post(lookup, CLAIMS_PATH, admissionReview('persistentvolumeclaims', statefulSetClaim(), { uid: 'deny-1' }))
    ).json<AdmissionReview>();
    t.equal(body.response?.uid, 'deny-1');
    t.equal(body.response?.allowed, false);
    t.equal(body.response?.status?.code, 403);
    t.equal(body.response?.status?.reason, 'Forbidden');
    t.match(body.response?.status?.message, /no snapshot of the original claim/);
  });
  void t.test('a handler exception: 200, allowed false, code 500, uid, logged once', async (t) => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        lines.push(chunk.toString('utf8'));
        callback();
      },
    });
    const failing: MigrationLookup = {
      isSynced: () => true,
      migrationsForClaim: () => {
        throw new Error('index exploded');
      },
      policiesIn: () => [],
    };
    const app = buildWebhookApp({ logger: pino({ level: 'info' }, sink), lookup: failing, register: new Registry() });
    const response = await app.inject({
      method: 'POST',
      url: CLAIMS_PATH,
      headers: { 'content-type': 'application/json' },
      payload: JSON.stringify(admissionReview('persistentvolumeclaims', statefulSetClaim(), { uid: 'boom-1' })),
    });
    await app.close();
    t.equal(response.statusCode, 200);
    t.same(response.json(), {
      apiVersion: 'admission.k8s.io/v1',
      kind: 'AdmissionReview',
      response: {
        uid: 'boom-1',
        allowed: false,
        status: {
          code: 500,
          message: 'pvshift could not admit this PersistentVolumeClaim: index exploded',
          reason: 'InternalError',
        },
      },
    });
    const errors = lines
      .map((l) => JSON.parse(l) as { level: number; uid?: string; msg: string })
      .filter((l) => l.level >= 50);
    t.equal(errors.length, 1, 'logged once');
    t.equal(errors[0]?.uid, 'boom-1');
    t.equal(errors[0]?.msg, 'admission handler failed');
  });
  void t.test('cache not synced: claims refused with 503 (fail closed), pods allowed with a warning', async (t) => {
    const lookup = new MigrationIndex([migration('data-web-0', 'CuttingOver')], false);
    const claim = (
      await post(lookup, CLAIMS_PATH, admissionReview('persistentvolumeclaims', statefulSetClaim(), { uid: 'u1' }))
    ).json<AdmissionReview>();
    t.same(claim.response, {
      uid: 'u1',
      allowed: false,
      status: {
        code: 503,
        message: 'pvshift has not yet loaded its VolumeMigrations; retry the claim in a few seconds',
        reason: 'ServiceUnavailable',
      },
    });
    const pod = (
      await post(lookup, PODS_PATH, admissionReview('pods', statefulSetPod(), { uid: 'u2' }))
    ).json<AdmissionReview>();
    t.equal(pod.response?.allowed, true);
    t.notOk(pod.response?.patch);
    t.same(pod.response?.warnings, [
      'pvshift: VolumeMigrations not loaded yet; this pod was not checked for a migration',
    ]);
  });
  void t.test('a Pod sent to the claims path: refused 400 naming both', async (t) => {
    const body = (
      await post(undefined, CLAIMS_PATH, { ...admissionReview('pods', statefulSetPod(), { uid: 'mix' }) })
    ).json<AdmissionReview>();
    t.same(body.response, {
      uid: 'mix',
      allowed: false,
      status: {
        code: 400,
        message: '/mutate/persistentvolumeclaims admits PersistentVolumeClaim objects, got v1, Kind=Pod',
        reason: 'BadRequest',
      },
    });
  });
  void t.test('a CREATE without an object: refused 400', async (t) => {
    const review = admissionReview('pods', statefulSetPod(), { uid: 'noobj' });
    (review.request as Record<string, unknown>).object = null;
    const body = (await post(undefined, PODS_PATH, review)).json<AdmissionReview>();
    t.equal(body.response?.status?.message, 'request.object is missing: a CREATE of a Pod must carry it');
  });
  void t.test('a subresource CREATE (pods/binding) is allowed unchanged', async (t) => {
    const review = admissionReview('pods', statefulSetPod(), { uid: 'bind' });
    (review.request as Record<string, unknown>).subResource = 'binding';
    t.same((await post(undefined, PODS_PATH, review)).json<AdmissionReview>().response, { uid: 'bind', allowed: true });
  });
  void t.test('reinvocation with the patched object: allowed, no patch', async (t) => {
    const first = (
      await post(undefined, PODS_PATH, admissionReview('pods', statefulSetPod(), { uid: 'r1' }))
    ).json<AdmissionReview>();
    const patched = jsonpatch.applyPatch(statefulSetPod(), decodePatch(first)).newDocument;
    const second = (
      await post(undefined, PODS_PATH, admissionReview('pods', patched, { uid: 'r2' }))
    ).json<AdmissionReview>();
    t.same(second.response, { uid: 'r2', allowed: true });
  });
  void t.test('the namespace comes from the request when the object has none', async (t) => {
    const pod = statefulSetPod();
    delete pod.metadata!.namespace;
    const body = (
      await post(undefined, PODS_PATH, admissionReview('pods', pod, { uid: 'ns' }))
    ).json<AdmissionReview>();
    t.ok(body.response?.patch);
  });
  t.end();
});

void t.test('health, readiness and metrics', async (t) => {
  const lookup = new MigrationIndex([], false);
  const { app } = appWith(lookup);
  t.teardown(() => app.close());
  t.equal((await app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200);
  const notReady = await app.inject({ method: 'GET', url: '/readyz' });
  t.equal(notReady.statusCode, 503);
  t.same(notReady.json(), { ready: false, cacheSynced: false, certificatesLoaded: true });
  lookup.markSynced(true);
  t.equal((await app.inject({ method: 'GET', url: '/readyz' })).statusCode, 200);

  await app.inject({
    method: 'POST',
    url: PODS_PATH,
    headers: { 'content-type': 'application/json' },
    payload: JSON.stringify(admissionReview('pods', statefulSetPod())),
  });
  await app.inject({ method: 'POST', url: PODS_PATH, headers: { 'content-type': 'application/json' }, payload: '{' });
  const metrics = await app.inject({ method: 'GET', url: '/metrics' });
  t.equal(metrics.statusCode, 200);
  t.match(metrics.headers['content-type'], /text\/plain/);
  t.match(metrics.body, /pvshift_webhook_requests_total\{resource="pods",result="allowed"\} 1/);
  t.match(metrics.body, /pvshift_webhook_requests_total\{resource="pods",result="invalid"\} 1/);
  t.match(
    metrics.body,
    /pvshift_webhook_request_duration_seconds_bucket\{le="0.005",resource="pods",result="allowed"\} 1/,
  );
});
