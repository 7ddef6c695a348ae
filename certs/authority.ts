// A small certificate authority for the webhook's serving certificate, with
// node-forge. RSA 2048: node-forge has no usable ECDSA certificate support, and
// RSA 2048 is what kube-apiserver's own generated serving certificates use.
// Key generation goes through node-forge's native path (node:crypto
// generateKeyPair), so it takes milliseconds, not seconds, and never blocks.
import { isIP } from 'node:net';
import { randomBytes } from 'node:crypto';
import forge from 'node-forge';

export interface KeyPair {
  /** PEM of the certificate. */
  certPem: string;
  /** PEM (PKCS#1) of the private key. Never log it. */
  keyPem: string;
}

export const CA_VALIDITY_DAYS = 365;
export const SERVING_VALIDITY_DAYS = 90;
// @types/node-forge types valueTagClass as a Class; node-forge reads it as a Type.
const UTF8 = forge.asn1.Type.UTF8 as unknown as forge.asn1.Class;
const DAY_MS = 24 * 60 * 60 * 1000;
// Backdated so that an API server whose clock is a little behind still accepts
// a certificate made a moment ago.
const BACKDATE_MS = 5 * 60 * 1000;

/** The DNS names a client may use for a Service: `svc`, `svc.ns`, `svc.ns.svc`, `svc.ns.svc.<domain>`. */
export function serviceDnsNames(service: string, namespace: string, clusterDomain = 'cluster.local'): string[] {
  return [
    service,
    `${service}.${namespace}`,
    `${service}.${namespace}.svc`,
    `${service}.${namespace}.svc.${clusterDomain}`,
  ];
}

/**
 * A random, positive 128-bit serial number as hex (RFC 5280 4.1.2.2: positive, at
 * most 20 octets; CA/B Forum asks for 64 bits of randomness at least). The top
 * bit is cleared so DER needs no sign byte, and the next one set so the number
 * always takes the full 16 octets.
 */
export function randomSerialNumber(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! & 0x7f) | 0x40;
  return bytes.toString('hex');
}

function generateRsaKeyPair(): Promise<forge.pki.rsa.KeyPair> {
  return new Promise((resolve, reject) => {
    forge.pki.rsa.generateKeyPair({ bits: 2048, e: 0x10001 }, (error, keys) => {
      if (error) reject(error);
      else resolve(keys);
    });
  });
}

export interface CaOptions {
  commonName?: string;
  now: Date;
  validityDays?: number;
}

/** A self-signed CA, valid about a year, that can sign only end-entity certificates. */
export async function createCertificateAuthority(options: CaOptions): Promise<KeyPair> {
  const keys = await generateRsaKeyPair();
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  cert.serialNumber = randomSerialNumber();
  cert.validity.notBefore = new Date(options.now.getTime() - BACKDATE_MS);
  cert.validity.notAfter = new Date(options.now.getTime() + (options.validityDays ?? CA_VALIDITY_DAYS) * DAY_MS);
  // node-forge writes attribute values as PrintableString unless told
  // otherwise, and Go's crypto/x509 (the API server) rejects the whole bundle if
  // one holds a character outside that set (`@`, `_`, `*`...): "invalid
  // PrintableString". UTF8String accepts anything, and the default name keeps to
  // the printable set anyway.
  const subject = [
    {
      name: 'commonName',
      value: options.commonName ?? `pvshift-webhook-ca-${Math.floor(options.now.getTime() / 1000)}`,
      valueTagClass: UTF8,
    },
    { name: 'organizationName', value: 'pvshift', valueTagClass: UTF8 },
  ];
  cert.setSubject(subject);
  cert.setIssuer(subject);
  cert.setExtensions([
    // pathLenConstraint 0: this CA signs the serving certificate and nothing that signs.
    { name: 'basicConstraints', cA: true, pathLenConstraint: 0, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(keys.privateKey, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem: forge.pki.privateKeyToPem(keys.privateKey) };
}

export interface ServingOptions {
  /** DNS names and IP addresses; the first DNS name is also the common name. */
  names: readonly string[];
  now: Date;
  validityDays?: number;
}

/** A TLS server certificate signed by `ca`, valid about 90 days, for `names`. */
export async function issueServingCertificate(ca: KeyPair, options: ServingOptions): Promise<KeyPair> {
  if (options.names.length === 0) throw new Error('a serving certificate needs at least one name');
  const caCert = forge.pki.certificateFromPem(ca.certPem);
  const caKey = forge.pki.privateKeyFromPem(ca.keyPem);
  const keys = await generateRsaKeyPair();
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  cert.serialNumber = randomSerialNumber();
  cert.validity.notBefore = new Date(options.now.getTime() - BACKDATE_MS);
  const notAfter = options.now.getTime() + (options.validityDays ?? SERVING_VALIDITY_DAYS) * DAY_MS;
  // A certificate must not outlive its issuer: clients reject the chain after the CA expires anyway.
  cert.validity.notAfter = new Date(Math.min(notAfter, caCert.validity.notAfter.getTime()));
  const commonName = options.names.find((n) => isIP(n) === 0) ?? options.names[0]!;
  cert.setSubject([{ name: 'commonName', value: commonName, valueTagClass: UTF8 }]);
  cert.setIssuer(caCert.subject.attributes);
  cert.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true },
    // Go's crypto/x509 (so the API server) checks only the SANs, never the CN.
    {
      name: 'subjectAltName',
      altNames: options.names.map((n) => (isIP(n) === 0 ? { type: 2, value: n } : { type: 7, ip: n })),
    },
    { name: 'subjectKeyIdentifier' },
    // node-forge's `keyIdentifier: true` would use this certificate's own key id;
    // the authority key id must be the CA's.
    { name: 'authorityKeyIdentifier', keyIdentifier: caCert.generateSubjectKeyIdentifier().getBytes() },
  ]);
  cert.sign(caKey, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem: forge.pki.privateKeyToPem(keys.privateKey) };
}

/** The PEM blocks of a bundle, in order. */
export function splitPemBundle(bundle: string): string[] {
  return bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)?.map((b) => `${b}\n`) ?? [];
}
