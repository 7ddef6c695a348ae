// When a certificate is renewed, at each boundary, and the reason given.
import { X509Certificate } from 'node:crypto';
import t from 'tap';
import { createCertificateAuthority, issueServingCertificate } from '../../certs/authority.js';
import { needsRenewal, notAfterOf, notBeforeOf, renewalTimeOf } from '../../certs/renewal.js';

const NOW = new Date('2025-03-01T10:00:00Z');
const NAMES = ['pvshift-webhook', 'pvshift-webhook.pvshift-system', '127.0.0.1'];
const at = (d: Date, ms: number) => new Date(d.getTime() + ms);

const ca = await createCertificateAuthority({ now: NOW });
const otherCa = await createCertificateAuthority({ now: NOW });
const caCert = new X509Certificate(ca.certPem);
const cert = new X509Certificate((await issueServingCertificate(ca, { names: NAMES, now: NOW })).certPem);
const renewAt = renewalTimeOf(cert);
const notAfter = notAfterOf(cert);

void t.test('the renewal point is two thirds of the life', (t) => {
  const life = notAfter.getTime() - notBeforeOf(cert).getTime();
  t.equal(renewAt.getTime() - notBeforeOf(cert).getTime(), Math.floor((life * 2) / 3));
  t.end();
});

const cases: { name: string; now: Date; names?: string[]; issuer?: X509Certificate; renew: boolean; reason: RegExp }[] =
  [
    {
      name: 'fresh',
      now: NOW,
      names: NAMES,
      issuer: caCert,
      renew: false,
      reason: /^valid until 2025-05-30T10:00:00.000Z; renews from /,
    },
    {
      name: 'just before two thirds',
      now: at(renewAt, -1000),
      names: NAMES,
      issuer: caCert,
      renew: false,
      reason: /^valid until/,
    },
    {
      name: 'at two thirds',
      now: renewAt,
      names: NAMES,
      issuer: caCert,
      renew: true,
      reason: /^past two thirds of its life/,
    },
    {
      name: 'just after two thirds',
      now: at(renewAt, 1000),
      names: NAMES,
      issuer: caCert,
      renew: true,
      reason: /^past two thirds of its life \(renew from .*, expires 2025-05-30T10:00:00.000Z\)$/,
    },
    { name: 'just before expiry', now: at(notAfter, -1000), names: NAMES, renew: true, reason: /^past two thirds/ },
    { name: 'at expiry', now: notAfter, names: NAMES, renew: true, reason: /^expired at 2025-05-30T10:00:00.000Z$/ },
    { name: 'long expired', now: at(notAfter, 400 * 86_400_000), renew: true, reason: /^expired at/ },
    {
      name: 'before it is valid',
      now: at(NOW, -3_600_000),
      renew: true,
      reason: /^not valid before 2025-03-01T09:55:00.000Z/,
    },
    {
      name: 'a name was added (new Service name)',
      now: NOW,
      names: [...NAMES, 'pvshift-webhook.pvshift-system.svc'],
      renew: true,
      reason: /^subject alternative names differ: missing pvshift-webhook.pvshift-system.svc$/,
    },
    {
      name: 'a name was dropped',
      now: NOW,
      names: NAMES.slice(0, 2),
      renew: true,
      reason: /^subject alternative names differ: unexpected 127.0.0.1$/,
    },
    {
      name: 'names compared without case',
      now: NOW,
      names: NAMES.map((n) => n.toUpperCase()),
      renew: false,
      reason: /^valid until/,
    },
    {
      name: 'the CA changed',
      now: NOW,
      names: NAMES,
      issuer: new X509Certificate(otherCa.certPem),
      renew: true,
      reason: /^not signed by the current CA \(/,
    },
    { name: 'no names expected (a CA): only time counts', now: NOW, renew: false, reason: /^valid until/ },
  ];

for (const c of cases) {
  void t.test(`${c.name}: ${c.renew ? 'renew' : 'keep'}`, (t) => {
    const decision = needsRenewal(cert, c.now, c.names, c.issuer);
    t.equal(decision.renew, c.renew);
    t.match(decision.reason, c.reason);
    t.end();
  });
}

void t.test('the most urgent reason wins: expired before CA change before names', (t) => {
  t.match(needsRenewal(cert, notAfter, ['x'], new X509Certificate(otherCa.certPem)).reason, /^expired/);
  t.match(needsRenewal(cert, NOW, ['x'], new X509Certificate(otherCa.certPem)).reason, /^not signed by the current CA/);
  t.end();
});

void t.test('a CA is renewed at two thirds of its year', (t) => {
  t.equal(needsRenewal(caCert, at(NOW, 240 * 86_400_000)).renew, false);
  t.match(needsRenewal(caCert, at(NOW, 245 * 86_400_000)).reason, /^past two thirds/);
  t.end();
});
