// The CA and the serving certificate: a chain that verifies, the right names,
// the right lifetimes, serial numbers that are random and positive.
import { X509Certificate } from 'node:crypto';
import t from 'tap';
import forge from 'node-forge';
import {
  createCertificateAuthority,
  issueServingCertificate,
  randomSerialNumber,
  serviceDnsNames,
  splitPemBundle,
} from '../../certs/authority.js';
import { subjectAltNamesOf } from '../../certs/renewal.js';

const NOW = new Date('2025-03-01T10:00:00Z');
const DAY = 86_400_000;
const NAMES = [...serviceDnsNames('pvshift-webhook', 'pvshift-system'), '127.0.0.1', '::1'];

void t.test('service DNS names: every form a client may use', (t) => {
  t.same(serviceDnsNames('svc', 'ns'), ['svc', 'svc.ns', 'svc.ns.svc', 'svc.ns.svc.cluster.local']);
  t.same(serviceDnsNames('svc', 'ns', 'corp.example')[3], 'svc.ns.svc.corp.example');
  t.end();
});

void t.test('a CA and a serving certificate', async (t) => {
  const ca = await createCertificateAuthority({ now: NOW });
  const serving = await issueServingCertificate(ca, { names: NAMES, now: NOW });
  const caCert = new X509Certificate(ca.certPem);
  const cert = new X509Certificate(serving.certPem);

  t.ok(caCert.ca, 'the CA is a CA');
  t.notOk(cert.ca, 'the serving certificate is not');
  t.ok(caCert.checkIssued(caCert) && caCert.verify(caCert.publicKey), 'the CA is self-signed');
  t.ok(cert.checkIssued(caCert), 'issued by the CA');
  t.ok(cert.verify(caCert.publicKey), 'signature verifies with the CA key');
  t.same(subjectAltNamesOf(cert), [
    'pvshift-webhook',
    'pvshift-webhook.pvshift-system',
    'pvshift-webhook.pvshift-system.svc',
    'pvshift-webhook.pvshift-system.svc.cluster.local',
    '127.0.0.1',
    '::1',
  ]);
  t.ok(cert.checkHost('pvshift-webhook.pvshift-system.svc'));
  t.ok(cert.checkIP('127.0.0.1'));
  t.notOk(cert.checkHost('other.pvshift-system.svc'));
  t.match(cert.subject, /CN=pvshift-webhook\b/);
  t.same(cert.keyUsage, ['1.3.6.1.5.5.7.3.1'], 'extended key usage: serverAuth');

  const life = (c: X509Certificate) => (Date.parse(c.validTo) - Date.parse(c.validFrom)) / DAY;
  t.ok(Math.abs(life(caCert) - 365) < 0.01, `CA lives about a year (${life(caCert)} days)`);
  t.ok(Math.abs(life(cert) - 90) < 0.01, `serving certificate lives about 90 days (${life(cert)} days)`);
  t.ok(Date.parse(cert.validFrom) < NOW.getTime(), 'backdated a little for clock skew');

  t.equal(cert.publicKey.asymmetricKeyDetails?.modulusLength, 2048);
  t.match(serving.keyPem, /BEGIN RSA PRIVATE KEY/);
});

void t.test('names are UTF8String: Go rejects a PrintableString holding characters such as @', async (t) => {
  const ca = await createCertificateAuthority({ now: NOW, commonName: 'pvshift@ca_1' });
  const serving = await issueServingCertificate(ca, { names: ['a'], now: NOW });
  for (const pem of [ca.certPem, serving.certPem]) {
    const cert = forge.pki.certificateFromPem(pem);
    for (const attribute of [...cert.subject.attributes, ...cert.issuer.attributes]) {
      t.equal(attribute.valueTagClass, forge.asn1.Type.UTF8, `${attribute.shortName ?? ''} is UTF8String`);
    }
  }
  t.match(new X509Certificate(ca.certPem).subject, /CN=pvshift@ca_1/);
});

void t.test('a serving certificate never outlives its CA', async (t) => {
  const ca = await createCertificateAuthority({ now: NOW, validityDays: 30 });
  const cert = new X509Certificate((await issueServingCertificate(ca, { names: ['a'], now: NOW })).certPem);
  t.equal(cert.validTo, new X509Certificate(ca.certPem).validTo);
});

void t.test('serial numbers: 128 bits, positive, different each time', async (t) => {
  const serials = new Set<string>();
  for (let i = 0; i < 200; i++) {
    const serial = randomSerialNumber();
    t.equal(serial.length, 32);
    const top = parseInt(serial.slice(0, 2), 16);
    t.ok(top >= 0x40 && top < 0x80, 'positive, full length');
    serials.add(serial);
  }
  t.equal(serials.size, 200);
  const ca = await createCertificateAuthority({ now: NOW });
  t.equal(new X509Certificate(ca.certPem).serialNumber.length, 32, 'encoded without a sign byte');
});

void t.test('PEM bundles split into certificates', async (t) => {
  const a = await createCertificateAuthority({ now: NOW });
  const b = await createCertificateAuthority({ now: NOW });
  const parts = splitPemBundle(a.certPem + b.certPem);
  t.equal(parts.length, 2);
  t.equal(new X509Certificate(parts[1]!).fingerprint256, new X509Certificate(b.certPem).fingerprint256);
  t.same(splitPemBundle(''), []);
});
