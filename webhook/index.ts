// `--mode=webhook`: the migration cache, the certificates and the HTTPS server,
// started together and stopped together.
import { isIP } from 'node:net';
import type { AddressInfo } from 'node:net';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { serviceDnsNames } from '../certs/authority.js';
import { startFileCertificates } from '../certs/files.js';
import { startManagedCertificates } from '../certs/managed.js';
import type { CertificateSource } from '../certs/source.js';
import { ConfigurationError } from '../src/errors.js';
import { Kube } from '../src/kube.js';
import type { Logger } from '../src/logger.js';
import { buildWebhookApp, secureServerOf } from './admission.js';
import { startMigrationCache } from './migration-cache.js';

export { buildWebhookApp, CLAIMS_PATH, PODS_PATH, BODY_LIMIT, type WebhookAppOptions } from './admission.js';
export { buildWebhookConfiguration, loadWebhookDefinitions, type WebhookConfigurationInput } from './configuration.js';
export {
  createMemoryLookup,
  MigrationIndex,
  startMigrationCache,
  type MigrationLookup,
  type MigrationCache,
} from './migration-cache.js';
export { mutateClaim, type MutationResult } from './mutate-claim.js';
export { mutatePod, claimNamesOf } from './mutate-pod.js';

/** How `--mode=webhook` is run. Every field maps to one flag of src/config.ts (set in src/services.ts). */
export interface WebhookRunOptions {
  /** HTTPS port (default 8443, as --port: unprivileged, and the chart's `webhook.port`, which its Service targets). */
  port?: number;
  /** Address to listen on (default `0.0.0.0`; `::` for dual stack). */
  host?: string;
  /**
   * `managed`: pvshift makes a CA and serving certificate, keeps them in the
   * Secret `secretName` in `secretNamespace`, renews them, and patches the CA into
   * `webhookConfigurationName`. `files`: `tls.crt` and `tls.key` are read from
   * `certDir` (cert-manager) and reloaded when they change; caBundle is then the
   * cainjector's business.
   */
  certMode: 'managed' | 'files';
  /** files mode: the directory holding tls.crt and tls.key. */
  certDir?: string;
  /** managed mode: the Secret holding ca.crt, ca.key, tls.crt, tls.key. */
  secretName?: string;
  secretNamespace?: string;
  /** The Service in front of the webhook: its DNS names go into the certificate (managed mode). */
  serviceName: string;
  serviceNamespace: string;
  /** Cluster DNS domain for the last SAN (default cluster.local). */
  clusterDomain?: string;
  /** More DNS names or IP addresses for the certificate (127.0.0.1 to call it from the node). */
  extraNames?: string[];
  /** managed mode: the MutatingWebhookConfiguration whose entries get the CA; unset: not patched. */
  webhookConfigurationName?: string;
  /** How often certificates are checked for renewal and the caBundle re-applied, in ms (default 60000). */
  certCheckIntervalMs?: number;
  /** The one API client (src/kube.ts); default: loaded as Kube.fromDefault does (in-cluster, KUBECONFIG, ~/.kube/config). */
  kube?: Kube;
  /** Where metrics go (default: a new registry with the Node process metrics). */
  register?: Registry;
}

export interface WebhookHandle {
  /** The port actually bound (useful with port 0). */
  port: number;
  /** The CA bundle clients must trust (managed mode); undefined in files mode. */
  caBundle: string | undefined;
  /** Stops accepting, finishes in-flight reviews, stops the watch and the certificate checks. */
  close(): Promise<void>;
}

export async function runWebhook(options: WebhookRunOptions, logger: Logger): Promise<WebhookHandle> {
  const kube = options.kube ?? Kube.fromDefault();
  const closeKube = options.kube ? () => {} : () => kube.close();
  const register = options.register ?? defaultRegistry();
  const names = [
    ...serviceDnsNames(options.serviceName, options.serviceNamespace, options.clusterDomain),
    ...(options.extraNames ?? []),
  ];
  for (const name of options.extraNames ?? []) {
    if (isIP(name) === 0 && !/^[a-z0-9*]([-a-z0-9.]*[a-z0-9])?$/i.test(name)) {
      throw new ConfigurationError(
        `extra certificate name ${JSON.stringify(name)} is neither a DNS name nor an IP address`,
      );
    }
  }

  let certificates: CertificateSource;
  let caBundle: (() => string) | undefined;
  if (options.certMode === 'managed') {
    if (!options.secretName || !options.secretNamespace) {
      throw new ConfigurationError('managed certificates need a Secret name and namespace');
    }
    const managed = await startManagedCertificates({
      kubeConfig: kube,
      secretName: options.secretName,
      secretNamespace: options.secretNamespace,
      names,
      webhookConfigurationName: options.webhookConfigurationName,
      logger,
      checkIntervalMs: options.certCheckIntervalMs,
    });
    certificates = managed;
    caBundle = () => managed.caBundle();
  } else if (options.certMode === 'files') {
    if (!options.certDir) throw new ConfigurationError('files certificate mode needs a certificate directory');
    certificates = await startFileCertificates({ dir: options.certDir, logger });
  } else {
    throw new ConfigurationError(`unknown certificate mode ${JSON.stringify(options.certMode)}: use managed or files`);
  }

  const cache = startMigrationCache(kube, logger);
  const first = certificates.current();
  const app = buildWebhookApp({ logger, lookup: cache, register, https: { key: first.keyPem, cert: first.certPem } });
  certificates.onChange((pair) => {
    // New TLS handshakes use the new pair at once; open keep-alive
    // connections finish on the old one, which stays valid for a third of its life.
    secureServerOf(app).setSecureContext({ key: pair.keyPem, cert: pair.certPem });
  });

  try {
    await app.listen({ port: options.port ?? 8443, host: options.host ?? '0.0.0.0' });
  } catch (e: unknown) {
    await certificates.stop();
    await cache.stop();
    closeKube();
    throw e;
  }
  const port = (app.server.address() as AddressInfo).port;
  logger.info({ port, certMode: options.certMode }, 'webhook listening');

  return {
    port,
    caBundle: caBundle?.(),
    close: async () => {
      await app.close();
      await certificates.stop();
      await cache.stop();
      closeKube();
    },
  };
}

function defaultRegistry(): Registry {
  const register = new Registry();
  collectDefaultMetrics({ register });
  return register;
}
