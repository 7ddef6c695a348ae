// Certificates for the local control plane: one CA, the API server's serving
// certificate, an admin client certificate (group system:masters), the fake
// kubelets' serving certificate, and the service-account signing key pair; and
// client certificates for any other identity (pvshift's ServiceAccount, a
// tenant), signed by the same CA, which the API server trusts for clients.
// Keys come from node:crypto (native, fast); node-forge only signs.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import forge from 'node-forge';

export interface KeyPair {
  certPem: string;
  keyPem: string;
}

export interface ClusterPki {
  ca: KeyPair;
  apiserver: KeyPair;
  admin: KeyPair;
  kubelet: KeyPair;
  serviceAccount: { publicKeyPem: string; privateKeyPem: string };
}

function rsaKeys(): { publicKeyPem: string; privateKeyPem: string } {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  return { publicKeyPem: publicKey, privateKeyPem: privateKey };
}

interface CertRequest {
  commonName: string;
  /** Each becomes an O attribute; the API server reads them as the user's groups. */
  organizations?: string[];
  isCa?: boolean;
  dnsNames?: string[];
  ips?: string[];
  usage: 'ca' | 'server' | 'client';
}

function sign(request: CertRequest, issuer?: KeyPair): KeyPair {
  const keys = rsaKeys();
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(keys.publicKeyPem);
  // A positive serial: clear the top bit so the DER integer is not negative.
  const serial = randomBytes(16);
  serial[0] = (serial[0] ?? 0) & 0x7f;
  cert.serialNumber = serial.toString('hex');
  const now = Date.now();
  cert.validity.notBefore = new Date(now - 60_000);
  cert.validity.notAfter = new Date(now + 7 * 24 * 3600_000);
  const subject: forge.pki.CertificateField[] = [{ name: 'commonName', value: request.commonName }];
  for (const organization of request.organizations ?? [])
    subject.push({ name: 'organizationName', value: organization });
  cert.setSubject(subject);
  const issuerCert = issuer ? forge.pki.certificateFromPem(issuer.certPem) : undefined;
  cert.setIssuer(issuerCert ? issuerCert.subject.attributes : subject);
  const extensions: object[] = [{ name: 'basicConstraints', cA: request.usage === 'ca', critical: true }];
  if (request.usage === 'ca') {
    extensions.push({ name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true });
  } else {
    extensions.push({ name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true });
    extensions.push({
      name: 'extKeyUsage',
      serverAuth: request.usage === 'server',
      clientAuth: request.usage === 'client',
    });
  }
  const altNames = [
    ...(request.dnsNames ?? []).map((value) => ({ type: 2, value })),
    ...(request.ips ?? []).map((ip) => ({ type: 7, ip })),
  ];
  if (altNames.length) extensions.push({ name: 'subjectAltName', altNames });
  cert.setExtensions(extensions);
  const signingKey = forge.pki.privateKeyFromPem(issuer ? issuer.keyPem : keys.privateKeyPem);
  cert.sign(signingKey, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem: keys.privateKeyPem };
}

/** `apiserverIps`: the addresses the API server's certificate is good for (it serves and advertises the first). */
export function createClusterPki(apiserverIps: string[] = ['127.0.0.1', '10.0.0.1']): ClusterPki {
  const ca = sign({ commonName: 'pvshift-local-ca', usage: 'ca' });
  const apiserver = sign(
    {
      commonName: 'kube-apiserver',
      usage: 'server',
      dnsNames: [
        'localhost',
        'kubernetes',
        'kubernetes.default',
        'kubernetes.default.svc',
        'kubernetes.default.svc.cluster.local',
      ],
      ips: [...new Set(['127.0.0.1', ...apiserverIps])],
    },
    ca,
  );
  const admin = signClientCertificate(ca, 'pvshift-admin', ['system:masters']);
  const kubelet = sign(
    { commonName: 'fake-kubelet', usage: 'server', dnsNames: ['localhost'], ips: ['127.0.0.1'] },
    ca,
  );
  const sa = rsaKeys();
  return {
    ca,
    apiserver,
    admin,
    kubelet,
    serviceAccount: { publicKeyPem: sa.publicKeyPem, privateKeyPem: sa.privateKeyPem },
  };
}

/**
 * A client certificate for `user` in `groups`: the API server's x509
 * authenticator takes the CN as the user name and every O as a group. With CN
 * `system:serviceaccount:<namespace>:<name>` and the groups
 * `system:serviceaccounts` and `system:serviceaccounts:<namespace>`, RBAC
 * authorizes it exactly as that ServiceAccount (a ServiceAccount subject
 * matches by user name), which is what lets local runs use the chart's RBAC.
 */
export function signClientCertificate(ca: KeyPair, user: string, groups: string[] = []): KeyPair {
  return sign({ commonName: user, organizations: groups, usage: 'client' }, ca);
}
