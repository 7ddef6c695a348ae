// Managed mode: pvshift makes its own CA and serving certificate, keeps them in
// a Secret so every replica serves the same pair, renews them at two thirds of
// their life, and puts the CA into its MutatingWebhookConfiguration.
//
// The order of a CA rotation matters: the API server verifies the webhook's
// certificate against the caBundle of the configuration, and with
// failurePolicy Fail a certificate it cannot verify refuses every claim. So a
// new CA goes into the caBundle first, next to the old one (the Secret's
// `ca.crt` holds both), and a replica serves a certificate signed by it only
// once it has seen that CA published in an earlier check; the old CA leaves the
// bundle at a later rotation, after it has expired.
import { X509Certificate } from 'node:crypto';
import type { V1MutatingWebhookConfiguration, V1Secret } from '@kubernetes/client-node';
import { errorMessage, isAlreadyExists, isConflict } from '../src/errors.js';
import { Kube, KubeConfig, paths } from '../src/kube.js';
import type { Logger } from '../src/logger.js';
import { COMPONENT_WEBHOOK, LABEL_COMPONENT, LABEL_MANAGED_BY, MANAGED_BY_VALUE } from '../src/names.js';
import {
  CA_VALIDITY_DAYS,
  createCertificateAuthority,
  issueServingCertificate,
  SERVING_VALIDITY_DAYS,
  splitPemBundle,
  type KeyPair,
} from './authority.js';
import { needsRenewal } from './renewal.js';
import { ChangeListeners, pairProblem, type CertificateSource } from './source.js';

/**
 * The Secret's keys. `ca.crt` is a bundle: the current CA first, then the
 * previous one while it is still valid, so that during a CA rotation the API
 * server trusts both the replica already serving the new certificate and the
 * one still serving the old. `ca.key` is kept too: without it every serving
 * renewal would need a new CA, and every renewal would be a CA rotation.
 */
export const SECRET_KEYS = { caBundle: 'ca.crt', caKey: 'ca.key', cert: 'tls.crt', key: 'tls.key' } as const;

/** The certificates as kept in the Secret (PEM text). */
export interface StoredCertificates {
  caBundlePem: string;
  caKeyPem: string;
  certPem: string;
  keyPem: string;
}

export type CertificatePlan =
  | { action: 'keep'; reason: string }
  | { action: 'issue-serving'; reason: string }
  | { action: 'new-ca'; reason: string };

/**
 * What to do with what the Secret holds (pure). A new CA also means a new
 * serving certificate; a serving certificate alone is reissued from the kept CA.
 */
export function planCertificates(
  stored: Partial<StoredCertificates> | undefined,
  now: Date,
  names: readonly string[],
): CertificatePlan {
  if (!stored) return { action: 'new-ca', reason: 'no certificates yet' };
  const caPem = splitPemBundle(stored.caBundlePem ?? '')[0];
  if (!caPem || !stored.caKeyPem)
    return { action: 'new-ca', reason: `the Secret lacks ${!caPem ? SECRET_KEYS.caBundle : SECRET_KEYS.caKey}` };
  const caProblem = pairProblem({ certPem: caPem, keyPem: stored.caKeyPem });
  if (caProblem) return { action: 'new-ca', reason: `CA: ${caProblem}` };
  const ca = new X509Certificate(caPem);
  const caDecision = needsRenewal(ca, now);
  if (caDecision.renew) return { action: 'new-ca', reason: `CA ${caDecision.reason}` };

  if (!stored.certPem || !stored.keyPem) {
    return {
      action: 'issue-serving',
      reason: `the Secret lacks ${!stored.certPem ? SECRET_KEYS.cert : SECRET_KEYS.key}`,
    };
  }
  const servingProblem = pairProblem({ certPem: stored.certPem, keyPem: stored.keyPem });
  if (servingProblem) return { action: 'issue-serving', reason: `serving certificate: ${servingProblem}` };
  const servingDecision = needsRenewal(new X509Certificate(stored.certPem), now, names, ca);
  if (servingDecision.renew)
    return { action: 'issue-serving', reason: `serving certificate ${servingDecision.reason}` };
  return { action: 'keep', reason: `serving certificate ${servingDecision.reason}` };
}

/** Carries out a plan: new material, or undefined for `keep`. */
export async function carryOut(
  plan: CertificatePlan,
  stored: Partial<StoredCertificates> | undefined,
  now: Date,
  names: readonly string[],
  validity: { caDays?: number; servingDays?: number } = {},
): Promise<StoredCertificates | undefined> {
  if (plan.action === 'keep') return undefined;
  let caBundlePem: string;
  let ca: KeyPair;
  if (plan.action === 'new-ca') {
    ca = await createCertificateAuthority({ now, validityDays: validity.caDays ?? CA_VALIDITY_DAYS });
    // Keep the previous CA in the bundle while it can still verify something.
    const previous = splitPemBundle(stored?.caBundlePem ?? '')[0];
    const keepPrevious = previous !== undefined && isStillValid(previous, now);
    caBundlePem = keepPrevious ? ca.certPem + previous : ca.certPem;
  } else {
    caBundlePem = stored!.caBundlePem!;
    ca = { certPem: splitPemBundle(caBundlePem)[0]!, keyPem: stored!.caKeyPem! };
  }
  const serving = await issueServingCertificate(ca, {
    names,
    now,
    validityDays: validity.servingDays ?? SERVING_VALIDITY_DAYS,
  });
  return { caBundlePem, caKeyPem: ca.keyPem, certPem: serving.certPem, keyPem: serving.keyPem };
}

/** Whether one of the CAs (PEM) signed the certificate. */
export function isSignedByOneOf(certPem: string, caPems: readonly string[]): boolean {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch {
    return false;
  }
  return caPems.some((pem) => {
    try {
      const ca = new X509Certificate(pem);
      return cert.checkIssued(ca) && cert.verify(ca.publicKey);
    } catch {
      return false;
    }
  });
}

/**
 * What the API server is known to trust: not gated when there is no webhook
 * configuration to keep in step (none named, or none there yet: nothing calls
 * the webhook), else the CAs every one of its entries holds (none after a
 * failed read or write: nothing is known).
 */
export type PublishedCas = { gated: false } | { gated: true; cas: string[] };

/**
 * Whether a certificate may be served: its CA was published when this replica
 * looked at the previous check, and still is. The check interval between the
 * two is the time the API server has to see the configuration change (it reads
 * webhook configurations through an informer, so a write is not in use the
 * moment it returns).
 */
export function isServable(certPem: string, before: PublishedCas, now: PublishedCas): boolean {
  if (!now.gated) return true;
  return before.gated && isSignedByOneOf(certPem, before.cas) && isSignedByOneOf(certPem, now.cas);
}

function isStillValid(pem: string, now: Date): boolean {
  try {
    return new Date(new X509Certificate(pem).validTo).getTime() > now.getTime();
  } catch {
    return false;
  }
}

export function secretToStored(secret: V1Secret | undefined): Partial<StoredCertificates> | undefined {
  if (!secret) return undefined;
  const data = secret.data ?? {};
  const text = (key: string): string | undefined => {
    const value = data[key];
    return value ? Buffer.from(value, 'base64').toString('utf8') : undefined;
  };
  return {
    caBundlePem: text(SECRET_KEYS.caBundle),
    caKeyPem: text(SECRET_KEYS.caKey),
    certPem: text(SECRET_KEYS.cert),
    keyPem: text(SECRET_KEYS.key),
  };
}

function storedToData(stored: StoredCertificates): Record<string, string> {
  const b64 = (s: string): string => Buffer.from(s).toString('base64');
  return {
    [SECRET_KEYS.caBundle]: b64(stored.caBundlePem),
    [SECRET_KEYS.caKey]: b64(stored.caKeyPem),
    [SECRET_KEYS.cert]: b64(stored.certPem),
    [SECRET_KEYS.key]: b64(stored.keyPem),
  };
}

export interface ManagedCertificateOptions {
  /** The process's client; or a KubeConfig, for which a client of its own is made and closed on stop. */
  kubeConfig: Kube | KubeConfig;
  secretName: string;
  secretNamespace: string;
  /** DNS names and IP addresses for the serving certificate. */
  names: readonly string[];
  /** The MutatingWebhookConfiguration whose every entry gets the CA bundle; none: not patched. */
  webhookConfigurationName?: string;
  logger: Logger;
  now?: () => Date;
  /** How often the Secret and the caBundle are checked again (default 60 s). */
  checkIntervalMs?: number;
  caValidityDays?: number;
  servingValidityDays?: number;
}

export interface ManagedCertificateSource extends CertificateSource {
  /** The CA bundle (PEM) the API server must trust. */
  caBundle(): string;
  /** Runs one check now (what the timer does); resolves when it is done. */
  check(): Promise<void>;
}

/**
 * Reads (or makes) the Secret and starts the periodic check. Throws when the
 * first read or write fails: a webhook with no certificate cannot serve.
 */
export async function startManagedCertificates(options: ManagedCertificateOptions): Promise<ManagedCertificateSource> {
  const log = options.logger.child({
    component: 'certificates',
    secret: `${options.secretNamespace}/${options.secretName}`,
  });
  const owned = options.kubeConfig instanceof KubeConfig;
  const kube = options.kubeConfig instanceof KubeConfig ? new Kube(options.kubeConfig) : options.kubeConfig;
  const now = options.now ?? (() => new Date());
  const listeners = new ChangeListeners();
  const { secretName: name, secretNamespace: namespace } = options;

  const readSecret = (): Promise<V1Secret | undefined> => kube.get<V1Secret>(paths.secrets(namespace, name));

  /** One reconcile of the Secret; returns what it holds afterwards. */
  const reconcileSecret = async (): Promise<StoredCertificates> => {
    // Each lost race (another replica created or updated the Secret first) is
    // answered by reading the winner's certificates and deciding again.
    for (let attempt = 1; ; attempt++) {
      const secret = await readSecret();
      const stored = secretToStored(secret);
      const at = now();
      const plan = planCertificates(stored, at, options.names);
      if (plan.action === 'keep') return stored as StoredCertificates;
      log.info({ action: plan.action, reason: plan.reason }, 'renewing webhook certificates');
      const next = (await carryOut(plan, stored, at, options.names, {
        caDays: options.caValidityDays,
        servingDays: options.servingValidityDays,
      }))!;
      try {
        if (!secret) {
          await kube.create<V1Secret>(paths.secrets(namespace), {
            apiVersion: 'v1',
            kind: 'Secret',
            type: 'kubernetes.io/tls',
            metadata: {
              name,
              namespace,
              labels: { [LABEL_MANAGED_BY]: MANAGED_BY_VALUE, [LABEL_COMPONENT]: COMPONENT_WEBHOOK },
            },
            data: storedToData(next),
          });
        } else {
          // resourceVersion makes this a compare-and-swap: a replica that
          // renewed meanwhile makes it fail with 409 instead of being overwritten.
          await kube.replace<V1Secret>(paths.secrets(namespace, name), {
            ...secret,
            data: { ...secret.data, ...storedToData(next) },
          });
        }
        return next;
      } catch (e: unknown) {
        if ((isAlreadyExists(e) || isConflict(e)) && attempt < 5) {
          log.info({ attempt }, 'another replica wrote the certificate Secret first; using theirs');
          continue;
        }
        throw e;
      }
    }
  };

  /**
   * Puts `bundle` into every entry of the webhook configuration, and says what
   * the API server trusts afterwards.
   */
  const publishCaBundle = async (bundle: string): Promise<PublishedCas> => {
    const configName = options.webhookConfigurationName;
    if (!configName) return { gated: false };
    const encoded = Buffer.from(bundle).toString('base64');
    for (let attempt = 1; ; attempt++) {
      const config = await kube.get<V1MutatingWebhookConfiguration>(paths.mutatingWebhooks(configName));
      if (!config) {
        log.warn({ webhookConfiguration: configName }, 'MutatingWebhookConfiguration not found; caBundle not set yet');
        return { gated: false };
      }
      const webhooks = config.webhooks ?? [];
      if (webhooks.every((w) => w.clientConfig.caBundle === encoded))
        return { gated: true, cas: splitPemBundle(bundle) };
      for (const webhook of webhooks) webhook.clientConfig.caBundle = encoded;
      try {
        await kube.replace(paths.mutatingWebhooks(configName), config);
        log.info(
          { webhookConfiguration: configName, webhooks: webhooks.length, cas: splitPemBundle(bundle).length },
          'CA bundle set in the webhook configuration',
        );
        return { gated: true, cas: splitPemBundle(bundle) };
      } catch (e: unknown) {
        if (isConflict(e) && attempt < 3) continue;
        throw e;
      }
    }
  };

  let stored: StoredCertificates;
  let published: PublishedCas;
  try {
    stored = await reconcileSecret();
    // At start nothing is served yet: publish, then serve what the Secret holds.
    published = await publishCaBundle(stored.caBundlePem);
  } catch (e: unknown) {
    if (owned) kube.close();
    throw e;
  }
  let served: KeyPair = { certPem: stored.certPem, keyPem: stored.keyPem };

  let running: Promise<void> | undefined;
  const check = (): Promise<void> =>
    (running ??= (async () => {
      try {
        stored = await reconcileSecret();
        const before = published;
        // Until this check's publication is through, nothing is known to be trusted.
        published = { gated: true, cas: [] };
        published = await publishCaBundle(stored.caBundlePem);
        if (stored.certPem !== served.certPem || stored.keyPem !== served.keyPem) {
          const serial = new X509Certificate(stored.certPem).serialNumber;
          if (isServable(stored.certPem, before, published)) {
            served = { certPem: stored.certPem, keyPem: stored.keyPem };
            log.info({ serial }, 'serving certificate replaced');
            listeners.emit(served);
          } else {
            // The certificate in use stays valid long past the renewal point, so waiting a check costs nothing.
            log.info({ serial }, 'new serving certificate waits until its CA has been published for a check');
          }
        }
      } catch (e: unknown) {
        // The certificate in use stays valid for a third of its life after the
        // renewal point, so a failed check is retried, not fatal.
        log.warn({ err: errorMessage(e) }, 'certificate check failed; will retry');
      } finally {
        running = undefined;
      }
    })());

  const timer = setInterval(() => void check(), options.checkIntervalMs ?? 60_000);
  timer.unref();

  return {
    current: () => served,
    caBundle: () => stored.caBundlePem,
    onChange: (listener) => listeners.add(listener),
    check,
    stop: async () => {
      clearInterval(timer);
      await running;
      if (owned) kube.close();
    },
  };
}
