// classifyApiError: every API failure is transient (retry) or terminal (report);
// an answer of the API server arrives as src/kube.ts's ApiError, anything else
// never got one; and the readers it rests on.
import t from 'tap';
import { ApiError } from '../../src/kube.js';
import {
  apiMessage,
  classifyApiError,
  isAlreadyExists,
  isConflict,
  isNotFound,
  TerminalError,
  TransientError,
} from '../../src/errors.js';

const status = (code: number, message: string) => ({
  kind: 'Status',
  apiVersion: 'v1',
  status: 'Failure',
  code,
  message,
});
const api = (code: number, message: string) =>
  new ApiError(code, status(code, message), 'PATCH', '/api/v1/persistentvolumes/pv-1');

t.test('classifyApiError', (t) => {
  const cases: [string, unknown, 'transient' | 'terminal', string?][] = [
    ['409 conflict', api(409, 'the object has been modified'), 'transient'],
    ['409 already exists', api(409, 'pods "x" already exists'), 'transient'],
    [
      '429 throttled (or a PDB)',
      api(429, "Cannot evict pod as it would violate the pod's disruption budget."),
      'transient',
    ],
    ['500', api(500, 'etcdserver: request timed out'), 'transient'],
    ['503', api(503, 'service unavailable'), 'transient'],
    ['504', api(504, 'gateway timeout'), 'transient'],
    ['422 "test operation failed"', api(422, 'test operation failed'), 'transient'],
    [
      '422 as kube-apiserver answers a failed test op: the generic message, no details',
      new ApiError(
        422,
        {
          kind: 'Status',
          message: 'the server rejected our request due to an error in our request',
          reason: 'Invalid',
          details: {},
          code: 422,
        },
        'PATCH',
        '/api/v1/persistentvolumes/pv-1',
      ),
      'transient',
    ],
    [
      'a network error (no code)',
      Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6443'), { errno: -111 }),
      'transient',
    ],
    ['a string thrown', 'socket hang up', 'transient'],
    [
      '422 with the generic message but details: an object refused',
      new ApiError(
        422,
        {
          kind: 'Status',
          message: 'the server rejected our request due to an error in our request',
          reason: 'Invalid',
          details: { name: 'x', kind: 'pods' },
          code: 422,
        },
        'PATCH',
        '/api/v1/pods/x',
      ),
      'terminal',
      'APIRejected',
    ],
    [
      '422 invalid',
      api(422, 'PersistentVolumeClaim "x" is invalid: spec: Forbidden: spec is immutable'),
      'terminal',
      'APIRejected',
    ],
    ['400 bad request', api(400, 'bad request'), 'terminal', 'APIRejected'],
    [
      '403 forbidden',
      api(403, 'pods is forbidden: User "system:serviceaccount:pvshift-system:pvshift" cannot create resource "pods"'),
      'terminal',
      'Forbidden',
    ],
    [
      '403 exceeded quota (frees up by itself)',
      api(
        403,
        'persistentvolumeclaims "pvshift-staging-1" is forbidden: exceeded quota: storage, requested: requests.storage=1Gi, used: requests.storage=9Gi, limited: requests.storage=10Gi',
      ),
      'transient',
    ],
    [
      '403 namespace being deleted',
      api(403, 'pods "x" is forbidden: unable to create new content in namespace ns because it is being terminated'),
      'transient',
    ],
    ['404 not found (a stale cache: the next pass reads again)', api(404, 'not found'), 'transient'],
    [
      'not an ApiError, whatever its fields say: no answer was had',
      { statusCode: 403, body: { code: 403, message: 'forbidden' } },
      'transient',
    ],
  ];
  for (const [name, e, kind, reason] of cases) {
    const out = classifyApiError(e, 'patch pv-1');
    t.ok(kind === 'transient' ? out instanceof TransientError : out instanceof TerminalError, `${name} → ${kind}`);
    if (reason) t.equal((out as TerminalError).reason, reason, `${name}: reason ${reason}`);
    t.match(out.message, /^patch pv-1: /, `${name}: the message says what failed`);
    t.equal(out.cause, e, `${name}: the cause is kept`);
  }
  t.equal(classifyApiError(api(409, 'conflict'), 'x').message, 'x: conflict', "the API server's own message");
  const transient = new TransientError('already classified');
  const terminal = new TerminalError('already classified', 'Mine');
  t.equal(classifyApiError(transient, 'x'), transient, 'a TransientError passes through');
  t.equal(classifyApiError(terminal, 'x'), terminal, 'a TerminalError passes through');
  t.end();
});

t.test('the readers', (t) => {
  t.notOk(isNotFound({ code: 404 }), 'only an ApiError carries a status');
  t.equal(apiMessage({ body: '{"message":"from json"}' }), 'from json');
  t.equal(apiMessage({ body: { message: 'from object' } }), 'from object');
  t.equal(apiMessage({ body: '  plain text  ' }), 'plain text');
  t.equal(apiMessage({ body: 'x'.repeat(600) }).length, 500, 'a plain body is cut at 500 characters');
  t.equal(apiMessage(new Error('boom')), 'boom');
  t.equal(apiMessage(42), '42');
  t.ok(isNotFound(api(404, 'gone')));
  t.ok(isAlreadyExists(api(409, 'claims "x" already exists')));
  t.notOk(isConflict(api(409, 'claims "x" already exists')));
  t.ok(isConflict(api(409, 'the object has been modified; please apply your changes to the latest version')));
  t.notOk(isAlreadyExists(api(409, 'the object has been modified')));
  const throttled = new ApiError(429, status(429, 'too many requests'), 'GET', '/api/v1/pods', 7);
  t.equal(
    (classifyApiError(throttled, 'list') as TransientError).retryAfterSeconds,
    7,
    "the server's Retry-After is kept",
  );
  const retry = new TransientError('slow down', { retryAfterSeconds: 3 });
  t.equal(retry.retryAfterSeconds, 3);
  t.equal(retry.name, 'TransientError');
  t.equal(new TerminalError('no', 'Why').name, 'TerminalError');
  t.end();
});
