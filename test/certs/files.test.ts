// Files mode: certificates from a directory laid out like a Secret volume,
// reloaded when the kubelet swaps the ..data symlink, seen by a real TLS client.
import { X509Certificate } from 'node:crypto';
import { mkdtemp, mkdir, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { Registry } from 'prom-client';
import { createCertificateAuthority, issueServingCertificate, type KeyPair } from '../../certs/authority.js';
import { startFileCertificates } from '../../certs/files.js';
import { silentLogger } from '../../src/logger.js';
import { buildWebhookApp, secureServerOf } from '../../webhook/admission.js';
import { createMemoryLookup } from '../../webhook/migration-cache.js';
import { eventually, servedSerial } from '../fixtures/admission/tls-client.js';

const NAMES = ['pvshift-webhook.pvshift-system.svc', '127.0.0.1'];
const SERVERNAME = NAMES[0]!;
const ca = await createCertificateAuthority({ now: new Date() });
const issue = () => issueServingCertificate(ca, { names: NAMES, now: new Date() });
const serialOf = (pair: KeyPair) => new X509Certificate(pair.certPem).serialNumber;

let generation = 0;
/** Writes a pair the way the kubelet's atomic writer does: a new dir, then a symlink swap. */
async function publish(dir: string, pair: KeyPair): Promise<void> {
  const stamp = `..2025_03_01_10_00_00.${++generation}`;
  await mkdir(join(dir, stamp));
  await writeFile(join(dir, stamp, 'tls.crt'), pair.certPem);
  await writeFile(join(dir, stamp, 'tls.key'), pair.keyPem);
  await symlink(stamp, join(dir, '..data_tmp'));
  await rename(join(dir, '..data_tmp'), join(dir, '..data'));
  for (const file of ['tls.crt', 'tls.key']) {
    await symlink(join('..data', file), join(dir, file)).catch(() => undefined);
  }
}

void t.test('reloads when the files change, and a TLS client sees it', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'pvshift-certs-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const first = await issue();
  await publish(dir, first);

  const source = await startFileCertificates({ dir, logger: silentLogger(), debounceMs: 50, pollIntervalMs: 60_000 });
  t.teardown(() => source.stop());
  t.equal(source.current().certPem, first.certPem);

  const app = buildWebhookApp({
    logger: silentLogger(),
    lookup: createMemoryLookup([]),
    register: new Registry(),
    https: { key: first.keyPem, cert: first.certPem },
  });
  source.onChange((pair) => secureServerOf(app).setSecureContext({ key: pair.keyPem, cert: pair.certPem }));
  await app.listen({ port: 0, host: '127.0.0.1' });
  t.teardown(() => app.close());
  const port = (app.server.address() as { port: number }).port;
  t.equal(await servedSerial(port, ca.certPem, SERVERNAME), serialOf(first));

  const second = await issue();
  await publish(dir, second);
  const seen = await eventually('the second certificate served', async () => {
    const serial = await servedSerial(port, ca.certPem, SERVERNAME);
    return serial === serialOf(second) ? serial : undefined;
  });
  t.equal(seen, serialOf(second), 'swapped ..data symlink picked up by the watch');

  const third = await issue();
  // A plain overwrite in place (no symlinks), as a hand-made directory would see.
  await rm(join(dir, 'tls.crt'));
  await rm(join(dir, 'tls.key'));
  await writeFile(join(dir, 'tls.key'), third.keyPem);
  await writeFile(join(dir, 'tls.crt'), third.certPem);
  t.equal(
    await eventually('the third certificate served', async () => {
      const serial = await servedSerial(port, ca.certPem, SERVERNAME);
      return serial === serialOf(third) ? serial : undefined;
    }),
    serialOf(third),
  );
});

void t.test('a half-written pair is not served; the periodic check finds the finished one', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'pvshift-certs-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const first = await issue();
  await writeFile(join(dir, 'tls.crt'), first.certPem);
  await writeFile(join(dir, 'tls.key'), first.keyPem);
  const source = await startFileCertificates({ dir, logger: silentLogger(), debounceMs: 20, pollIntervalMs: 200 });
  t.teardown(() => source.stop());
  const changes: string[] = [];
  source.onChange((pair) => changes.push(serialOf(pair)));

  const second = await issue();
  await writeFile(join(dir, 'tls.crt'), second.certPem); // key not yet written
  await new Promise((r) => setTimeout(r, 300));
  t.equal(source.current().certPem, first.certPem, 'mismatched pair ignored');
  t.same(changes, []);
  await writeFile(join(dir, 'tls.key'), second.keyPem);
  await eventually('the finished pair', () => Promise.resolve(changes.length > 0 ? true : undefined));
  t.same(changes, [serialOf(second)], 'one change, the finished pair');
});

void t.test('missing or mismatched files at start are a configuration error', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'pvshift-certs-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await t.rejects(startFileCertificates({ dir, logger: silentLogger() }), {
    name: 'ConfigurationError',
    message: /cannot read the webhook certificate from/,
  });
  const a = await issue();
  const b = await issue();
  await writeFile(join(dir, 'tls.crt'), a.certPem);
  await writeFile(join(dir, 'tls.key'), b.keyPem);
  await t.rejects(startFileCertificates({ dir, logger: silentLogger() }), {
    name: 'ConfigurationError',
    message: `the webhook certificate in ${dir} cannot be served: the key does not belong to the certificate`,
  });
});
