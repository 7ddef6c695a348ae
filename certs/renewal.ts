// When a certificate must be replaced, and why. Pure: a parsed certificate and
// a clock in, a decision with its reason out (cert-manager's renewal
// predicates work the same way, so a log line says what triggered a rotation).
import { isIP } from 'node:net';
import type { X509Certificate } from 'node:crypto';

export interface RenewalDecision {
  renew: boolean;
  reason: string;
}

/** The share of a certificate's life after which it is renewed (cert-manager's default too). */
export const RENEW_FRACTION = 2 / 3;

export function notBeforeOf(cert: X509Certificate): Date {
  return new Date(cert.validFrom);
}

export function notAfterOf(cert: X509Certificate): Date {
  return new Date(cert.validTo);
}

/** The moment two thirds of the certificate's life have passed. */
export function renewalTimeOf(cert: X509Certificate): Date {
  const from = notBeforeOf(cert).getTime();
  const to = notAfterOf(cert).getTime();
  return new Date(from + Math.floor((to - from) * RENEW_FRACTION));
}

/**
 * The DNS names and IP addresses in the subjectAltName. Node renders it as
 * `DNS:a, DNS:b, IP Address:127.0.0.1` (names with a comma would be quoted; DNS
 * names cannot hold one).
 */
export function subjectAltNamesOf(cert: X509Certificate): string[] {
  const names: string[] = [];
  for (const part of (cert.subjectAltName ?? '').split(', ')) {
    if (part.startsWith('DNS:')) names.push(part.slice(4));
    else if (part.startsWith('IP Address:')) names.push(normalizeIp(part.slice(11)));
  }
  return names;
}

function normalizeIp(ip: string): string {
  // Node prints IPv6 in full upper case (0:0:0:0:0:0:0:1); compare canonically.
  if (isIP(ip) !== 6) return ip;
  const url = new URL(`http://[${ip}]/`);
  return url.hostname.slice(1, -1);
}

function normalizeName(name: string): string {
  return isIP(name) ? normalizeIp(name) : name.toLowerCase();
}

/**
 * Whether `cert` must be replaced at `now`.
 * - `expectedNames` (DNS names and IPs): the SANs must be exactly these; leave
 *   undefined for a CA, which has none that matter.
 * - `issuer`: the CA the certificate must be signed by now; a serving
 *   certificate from a CA that was rotated away is replaced.
 * Checked in order of urgency, so the reason is the most pressing one.
 */
export function needsRenewal(
  cert: X509Certificate,
  now: Date,
  expectedNames?: readonly string[],
  issuer?: X509Certificate,
): RenewalDecision {
  const notBefore = notBeforeOf(cert);
  const notAfter = notAfterOf(cert);
  const renewAt = renewalTimeOf(cert);
  if (now.getTime() >= notAfter.getTime()) {
    return { renew: true, reason: `expired at ${notAfter.toISOString()}` };
  }
  if (now.getTime() < notBefore.getTime()) {
    return {
      renew: true,
      reason: `not valid before ${notBefore.toISOString()} (clock skew or a certificate from the future)`,
    };
  }
  if (issuer && !(cert.checkIssued(issuer) && cert.verify(issuer.publicKey))) {
    return { renew: true, reason: `not signed by the current CA (${issuer.subject.replace(/\n/g, ', ')})` };
  }
  if (expectedNames) {
    const have = new Set(subjectAltNamesOf(cert).map(normalizeName));
    const want = new Set(expectedNames.map(normalizeName));
    const missing = [...want].filter((n) => !have.has(n));
    const unexpected = [...have].filter((n) => !want.has(n));
    if (missing.length > 0 || unexpected.length > 0) {
      const parts = [
        missing.length > 0 && `missing ${missing.join(', ')}`,
        unexpected.length > 0 && `unexpected ${unexpected.join(', ')}`,
      ].filter(Boolean);
      return { renew: true, reason: `subject alternative names differ: ${parts.join('; ')}` };
    }
  }
  if (now.getTime() >= renewAt.getTime()) {
    return {
      renew: true,
      reason: `past two thirds of its life (renew from ${renewAt.toISOString()}, expires ${notAfter.toISOString()})`,
    };
  }
  return { renew: false, reason: `valid until ${notAfter.toISOString()}; renews from ${renewAt.toISOString()}` };
}
