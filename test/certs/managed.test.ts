// Managed mode without the API server: what the plan decides for each state of
// the Secret, and a rotated certificate reaching a real TLS client without a
// restart. (The Secret and caBundle round trip runs in test/webhook/cluster.test.ts,
// the order of a CA rotation against the API server in managed-rotation.test.ts.)
import { X509Certificate } from 'node:crypto';
import t from 'tap';
import { Registry } from 'prom-client';
import { issueServingCertificate, serviceDnsNames, splitPemBundle } from '../../certs/authority.js';
import {
  carryOut,
  isServable,
  planCertificates,
  secretToStored,
  type PublishedCas,
  type StoredCertificates,
} from '../../certs/managed.js';
import { silentLogger } from '../../src/logger.js';
import { buildWebhookApp, secureServerOf } from '../../webhook/admission.js';
import { createMemoryLookup } from '../../webhook/migration-cache.js';
import { servedSerial } from '../fixtures/admission/tls-client.js';

const NOW = new Date('2025-03-01T10:00:00Z');
const DAY = 86_400_000;
const NAMES = [...serviceDnsNames('pvshift-webhook', 'pvshift-system'), '127.0.0.1'];
const later = (days: number) => new Date(NOW.getTime() + days * DAY);

const fresh = (await carryOut({ action: 'new-ca', reason: 'test' }, undefined, NOW, NAMES))!;

void t.test('the plan for each state of the Secret', async (t) => {
  const otherKey = (
    await issueServingCertificate(
      { certPem: splitPemBundle(fresh.caBundlePem)[0]!, keyPem: fresh.caKeyPem },
      { names: NAMES, now: NOW },
    )
  ).keyPem;
  const cases: {
    name: string;
    stored: Partial<StoredCertificates> | undefined;
    now?: Date;
    names?: string[];
    action: string;
    reason: RegExp;
  }[] = [
    { name: 'no Secret', stored: undefined, action: 'new-ca', reason: /^no certificates yet$/ },
    { name: 'empty Secret', stored: {}, action: 'new-ca', reason: /^the Secret lacks ca.crt$/ },
    {
      name: 'no CA key',
      stored: { ...fresh, caKeyPem: undefined },
      action: 'new-ca',
      reason: /^the Secret lacks ca.key$/,
    },
    {
      name: 'CA key of another CA',
      stored: { ...fresh, caKeyPem: otherKey },
      action: 'new-ca',
      reason: /^CA: the key does not belong/,
    },
    { name: 'all fresh', stored: fresh, action: 'keep', reason: /^serving certificate valid until/ },
    {
      name: 'serving certificate at 61 of 90 days',
      stored: fresh,
      now: later(61),
      action: 'issue-serving',
      reason: /^serving certificate past two thirds/,
    },
    {
      name: 'serving certificate expired',
      stored: fresh,
      now: later(91),
      action: 'issue-serving',
      reason: /^serving certificate expired/,
    },
    {
      name: 'Service renamed',
      stored: fresh,
      names: serviceDnsNames('webhook', 'pvshift-system'),
      action: 'issue-serving',
      reason: /^serving certificate subject alternative names differ/,
    },
    {
      name: 'no tls.key',
      stored: { ...fresh, keyPem: undefined },
      action: 'issue-serving',
      reason: /^the Secret lacks tls.key$/,
    },
    {
      name: 'tls.key of another certificate',
      stored: { ...fresh, keyPem: otherKey },
      action: 'issue-serving',
      reason: /^serving certificate: the key does not belong/,
    },
    { name: 'CA at 244 of 365 days', stored: fresh, now: later(244), action: 'new-ca', reason: /^CA past two thirds/ },
    {
      name: 'garbage in ca.crt',
      stored: { ...fresh, caBundlePem: 'nonsense' },
      action: 'new-ca',
      reason: /^the Secret lacks ca.crt$/,
    },
  ];
  for (const c of cases) {
    void t.test(`${c.name}: ${c.action}`, (t) => {
      const plan = planCertificates(c.stored, c.now ?? NOW, c.names ?? NAMES);
      t.equal(plan.action, c.action);
      t.match(plan.reason, c.reason);
      t.end();
    });
  }
});

void t.test('carrying out the plan', (t) => {
  void t.test('a new serving certificate keeps the CA', async (t) => {
    const next = (await carryOut({ action: 'issue-serving', reason: 'test' }, fresh, later(61), NAMES))!;
    t.equal(next.caBundlePem, fresh.caBundlePem);
    t.equal(next.caKeyPem, fresh.caKeyPem);
    t.not(next.certPem, fresh.certPem);
    t.equal(planCertificates(next, later(61), NAMES).action, 'keep');
  });
  void t.test(
    'a new CA keeps the previous one in the bundle, so old and new serving certificates both verify',
    async (t) => {
      const next = (await carryOut({ action: 'new-ca', reason: 'test' }, fresh, later(244), NAMES))!;
      const bundle = splitPemBundle(next.caBundlePem).map((pem) => new X509Certificate(pem));
      t.equal(bundle.length, 2);
      t.equal(bundle[1]!.fingerprint256, new X509Certificate(splitPemBundle(fresh.caBundlePem)[0]!).fingerprint256);
      const verifies = (pem: string) => bundle.some((ca) => new X509Certificate(pem).verify(ca.publicKey));
      t.ok(verifies(next.certPem), 'new serving certificate');
      t.ok(verifies(fresh.certPem), 'old serving certificate, still served by a replica that has not reloaded');
      t.equal(planCertificates(next, later(244), NAMES).action, 'keep');
    },
  );
  void t.test('an expired previous CA is dropped', async (t) => {
    const next = (await carryOut({ action: 'new-ca', reason: 'test' }, fresh, later(400), NAMES))!;
    t.equal(splitPemBundle(next.caBundlePem).length, 1);
  });
  void t.test('keep makes nothing', async (t) => {
    t.equal(await carryOut({ action: 'keep', reason: 'fine' }, fresh, NOW, NAMES), undefined);
  });
  void t.test('Secret data decodes back', (t) => {
    const data = Object.fromEntries(
      Object.entries({
        'ca.crt': fresh.caBundlePem,
        'ca.key': fresh.caKeyPem,
        'tls.crt': fresh.certPem,
        'tls.key': fresh.keyPem,
      }).map(([k, v]) => [k, Buffer.from(v).toString('base64')]),
    );
    t.same(secretToStored({ data }), fresh);
    t.equal(secretToStored(undefined), undefined);
    t.end();
  });
  t.end();
});

void t.test('a certificate is served only once its CA was published at the previous check and still is', async (t) => {
  const rotated = (await carryOut({ action: 'new-ca', reason: 'test' }, fresh, later(244), NAMES))!;
  const [newCa, oldCa] = splitPemBundle(rotated.caBundlePem);
  const other = (await carryOut({ action: 'new-ca', reason: 'test' }, undefined, NOW, NAMES))!;
  const gated = (...cas: (string | undefined)[]): PublishedCas => ({ gated: true, cas: cas.map((c) => c!) });
  const ungated: PublishedCas = { gated: false };
  const cases: { name: string; cert: string; before: PublishedCas; now: PublishedCas; servable: boolean }[] = [
    {
      name: 'no webhook configuration to keep in step',
      cert: rotated.certPem,
      before: ungated,
      now: ungated,
      servable: true,
    },
    {
      name: 'new CA published at the previous check and now',
      cert: rotated.certPem,
      before: gated(newCa, oldCa),
      now: gated(newCa, oldCa),
      servable: true,
    },
    {
      name: 'new CA published only by this check',
      cert: rotated.certPem,
      before: gated(oldCa),
      now: gated(newCa, oldCa),
      servable: false,
    },
    {
      name: 'the previous check could not publish',
      cert: rotated.certPem,
      before: gated(),
      now: gated(newCa, oldCa),
      servable: false,
    },
    {
      name: 'the configuration appeared since the previous check',
      cert: rotated.certPem,
      before: ungated,
      now: gated(newCa, oldCa),
      servable: false,
    },
    {
      name: 'this check could not publish',
      cert: rotated.certPem,
      before: gated(newCa, oldCa),
      now: gated(),
      servable: false,
    },
    {
      name: 'the old certificate while old and new CA are published',
      cert: fresh.certPem,
      before: gated(newCa, oldCa),
      now: gated(newCa, oldCa),
      servable: true,
    },
    {
      name: 'a bundle of another CA only',
      cert: rotated.certPem,
      before: gated(splitPemBundle(other.caBundlePem)[0]),
      now: gated(splitPemBundle(other.caBundlePem)[0]),
      servable: false,
    },
    {
      name: 'garbage in the bundle',
      cert: rotated.certPem,
      before: gated('nonsense'),
      now: gated('nonsense'),
      servable: false,
    },
  ];
  for (const c of cases) {
    t.equal(isServable(c.cert, c.before, c.now), c.servable, `${c.name}: ${c.servable ? 'served' : 'waits'}`);
  }
});

void t.test('hot reload: a rotated certificate reaches a new TLS client without a restart', async (t) => {
  // Real time here: a TLS client checks validity against the real clock.
  const live = (await carryOut({ action: 'new-ca', reason: 'test' }, undefined, new Date(), NAMES))!;
  const app = buildWebhookApp({
    logger: silentLogger(),
    lookup: createMemoryLookup([]),
    register: new Registry(),
    https: { key: live.keyPem, cert: live.certPem },
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  t.teardown(() => app.close());
  const port = (app.server.address() as { port: number }).port;
  const servername = 'pvshift-webhook.pvshift-system.svc';

  const before = await servedSerial(port, live.caBundlePem, servername);
  t.equal(before, new X509Certificate(live.certPem).serialNumber);

  const rotated = (await carryOut({ action: 'issue-serving', reason: 'test' }, live, new Date(), NAMES))!;
  secureServerOf(app).setSecureContext({ key: rotated.keyPem, cert: rotated.certPem });
  const after = await servedSerial(port, rotated.caBundlePem, servername);
  t.equal(after, new X509Certificate(rotated.certPem).serialNumber);
  t.not(after, before);
  t.equal((app.server.address() as { port: number }).port, port, 'same server, same port');

  const health = await fetchHealth(port, rotated.caBundlePem);
  t.equal(health, 200, 'still answering over HTTPS');

  const caRotated = (await carryOut({ action: 'new-ca', reason: 'test' }, rotated, new Date(), NAMES))!;
  secureServerOf(app).setSecureContext({ key: caRotated.keyPem, cert: caRotated.certPem });
  t.equal(
    await servedSerial(port, caRotated.caBundlePem, servername),
    new X509Certificate(caRotated.certPem).serialNumber,
    'after a CA rotation too',
  );
  await t.rejects(
    servedSerial(port, splitPemBundle(live.caBundlePem)[0]!, servername),
    'the old CA alone no longer verifies the new certificate',
  );
});

async function fetchHealth(port: number, ca: string): Promise<number> {
  const { request } = await import('node:https');
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, path: '/healthz', ca, servername: 'pvshift-webhook.pvshift-system.svc' },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      },
    );
    req.on('error', reject);
    req.end();
  });
}
