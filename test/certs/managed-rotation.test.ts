// A CA rotation in managed mode against the real API server: at every step
// the certificate a replica serves is signed by a CA that every entry of the
// MutatingWebhookConfiguration already holds, so the API server never meets a
// certificate it cannot verify (with failurePolicy Fail, that would refuse
// every claim). A replica that cannot publish the new CA keeps serving the old
// certificate; the new one is served only once its CA was published at an
// earlier check; the old CA leaves the bundle after it has expired.
import { X509Certificate } from 'node:crypto';
import t, { type Test } from 'tap';
import { KubeConfig, type V1MutatingWebhookConfiguration } from '@kubernetes/client-node';
import { serviceDnsNames, splitPemBundle } from '../../certs/authority.js';
import { startManagedCertificates, type ManagedCertificateSource } from '../../certs/managed.js';
import { paths } from '../../src/kube.js';
import { silentLogger } from '../../src/logger.js';
import { buildWebhookConfiguration } from '../../webhook/configuration.js';
import { clusterFor, freshNamespace, waitFor } from '../helpers/cluster.js';

const DAY = 86_400_000;
const cluster = await clusterFor(t);
const { kube, kubeConfig } = cluster;

let counter = 0;

/** A webhook configuration (registered with a CA that signs nothing) and a namespace for the Secret. */
interface Fixture {
  namespace: string;
  configName: string;
  /** Starts a managed source for this fixture's Secret and configuration, as `config`'s identity, on `now`'s clock (checks only when asked). */
  start: (config: KubeConfig, now: () => Date) => Promise<ManagedCertificateSource>;
}

async function setUp(): Promise<Fixture> {
  const namespace = await freshNamespace(kube, 'certs');
  const configName = `pvshift-rotation-${process.pid}-${++counter}`;
  // The URL is never called: nothing in the test creates a claim or a pod.
  await kube.create<V1MutatingWebhookConfiguration>(
    paths.mutatingWebhooks(),
    buildWebhookConfiguration({
      name: configName,
      pvshiftNamespace: namespace,
      caBundle: 'placeholder',
      url: 'https://127.0.0.1:9',
    }),
  );
  const names = [...serviceDnsNames('pvshift-webhook', namespace), '127.0.0.1'];
  const start = (config: KubeConfig, now: () => Date) =>
    startManagedCertificates({
      kubeConfig: config,
      secretName: 'webhook-tls',
      secretNamespace: namespace,
      names,
      webhookConfigurationName: configName,
      logger: silentLogger(),
      checkIntervalMs: 3_600_000,
      now,
    });
  return { namespace, configName, start };
}

/** The CAs (PEM) each entry of the configuration holds, as the API server has them. */
async function publishedBundles(configName: string): Promise<string[][]> {
  const config = await kube.get<V1MutatingWebhookConfiguration>(paths.mutatingWebhooks(configName));
  return (config?.webhooks ?? []).map((w) =>
    splitPemBundle(Buffer.from(w.clientConfig.caBundle ?? '', 'base64').toString('utf8')),
  );
}

const fingerprint = (pem: string) => new X509Certificate(pem).fingerprint256;
const signs = (caPem: string, certPem: string) => {
  const ca = new X509Certificate(caPem);
  const cert = new X509Certificate(certPem);
  return cert.checkIssued(ca) && cert.verify(ca.publicKey);
};

/** Fails unless every entry of the configuration holds a CA that signed what `source` serves now. */
async function assertServedIsTrusted(
  t: Test,
  source: ManagedCertificateSource,
  configName: string,
  step: string,
): Promise<void> {
  const served = source.current().certPem;
  const bundles = await publishedBundles(configName);
  t.ok(
    bundles.length > 0 && bundles.every((cas) => cas.some((ca) => signs(ca, served))),
    `${step}: the served certificate verifies against the published caBundle`,
  );
}

void t.test(
  'a CA rotation: the new CA is published, then a check later its certificate is served; the old CA leaves after it expired',
  async (t) => {
    const { configName, start } = await setUp();
    let clock = Date.now();
    const source = await start(kubeConfig, () => new Date(clock));
    t.teardown(() => source.stop());
    const served: string[] = [];
    source.onChange((pair) => served.push(pair.certPem));
    await assertServedIsTrusted(t, source, configName, 'at start');
    const firstCert = source.current().certPem;
    const [firstCa] = splitPemBundle(source.caBundle());

    clock += 245 * DAY; // past two thirds of the CA's year
    await source.check();
    const [secondCa, kept] = splitPemBundle(source.caBundle());
    t.not(fingerprint(secondCa!), fingerprint(firstCa!), 'a new CA in the Secret');
    t.equal(fingerprint(kept!), fingerprint(firstCa!), 'the old CA kept next to it');
    for (const cas of await publishedBundles(configName))
      t.same(
        cas.map(fingerprint),
        [secondCa, firstCa].map((p) => fingerprint(p!)),
        'both CAs published',
      );
    t.equal(
      source.current().certPem,
      firstCert,
      'the check that published the new CA still serves the old certificate',
    );
    t.same(served, [], 'no certificate change yet');
    await assertServedIsTrusted(t, source, configName, 'after the rotating check');

    await source.check();
    t.equal(served.length, 1, 'the next check serves the new certificate');
    t.ok(signs(secondCa!, source.current().certPem), 'signed by the new CA');
    await assertServedIsTrusted(t, source, configName, 'a check later');

    clock += 245 * DAY; // the first CA expired at 365 days; the second is past two thirds
    await source.check();
    const bundle = splitPemBundle(source.caBundle()).map(fingerprint);
    t.equal(bundle.length, 2);
    t.notOk(bundle.includes(fingerprint(firstCa!)), 'the expired first CA left the bundle');
    t.ok(bundle.includes(fingerprint(secondCa!)), 'the CA in use stays');
    for (const cas of await publishedBundles(configName))
      t.same(cas.map(fingerprint), bundle, 'published as in the Secret');
    await assertServedIsTrusted(t, source, configName, 'after the second rotation');
    await source.check();
    t.equal(served.length, 2);
    await assertServedIsTrusted(t, source, configName, 'serving from the third CA');
  },
);

interface TokenRequest {
  apiVersion: string;
  kind: string;
  spec: { expirationSeconds: number };
  status?: { token?: string };
}

/**
 * A kubeconfig for the namespace's default ServiceAccount, allowed to read and
 * write Secrets there and to read, not update, webhook configurations: the
 * replica whose caBundle update fails (RBAC here; an API server error or a lost
 * connection would do the same).
 */
async function kubeConfigThatCannotPublish(namespace: string, configName: string): Promise<KubeConfig> {
  const subject = [{ kind: 'ServiceAccount', name: 'default', namespace }];
  await kube.create(`/apis/rbac.authorization.k8s.io/v1/namespaces/${namespace}/roles`, {
    metadata: { name: 'secrets' },
    rules: [{ apiGroups: [''], resources: ['secrets'], verbs: ['get', 'create', 'update'] }],
  });
  await kube.create(`/apis/rbac.authorization.k8s.io/v1/namespaces/${namespace}/rolebindings`, {
    metadata: { name: 'secrets' },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'secrets' },
    subjects: subject,
  });
  await kube.create('/apis/rbac.authorization.k8s.io/v1/clusterroles', {
    metadata: { name: `read-${configName}` },
    rules: [
      {
        apiGroups: ['admissionregistration.k8s.io'],
        resources: ['mutatingwebhookconfigurations'],
        resourceNames: [configName],
        verbs: ['get'],
      },
    ],
  });
  await kube.create('/apis/rbac.authorization.k8s.io/v1/clusterrolebindings', {
    metadata: { name: `read-${configName}` },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: `read-${configName}` },
    subjects: subject,
  });
  const request = await kube.create<TokenRequest>(`${paths.serviceAccounts(namespace, 'default')}/token`, {
    apiVersion: 'authentication.k8s.io/v1',
    kind: 'TokenRequest',
    spec: { expirationSeconds: 3600 },
  });
  const restricted = new KubeConfig();
  restricted.loadFromOptions({
    clusters: [kubeConfig.getCurrentCluster()!],
    users: [{ name: 'replica', token: request.status!.token! }],
    contexts: [{ name: 'replica', cluster: kubeConfig.getCurrentCluster()!.name, user: 'replica' }],
    currentContext: 'replica',
  });
  return restricted;
}

void t.test(
  'a replica that cannot publish the new CA keeps serving the old certificate, and so does the one that publishes it, for a check',
  async (t) => {
    const { namespace, configName, start: startOn } = await setUp();
    let clock = Date.now();
    const start = (config: KubeConfig) => startOn(config, () => new Date(clock));
    const publisher = await start(kubeConfig);
    t.teardown(() => publisher.stop());
    const restrictedConfig = await kubeConfigThatCannotPublish(namespace, configName);
    // RBAC reaches the authorizer through an informer: wait until the grants are in effect.
    const replica = await waitFor(
      'the restricted replica starts',
      () => start(restrictedConfig).catch(() => undefined),
      30_000,
    );
    t.teardown(() => replica.stop());
    const oldCert = publisher.current().certPem;
    t.equal(replica.current().certPem, oldCert, 'both replicas serve the one certificate of the Secret');

    clock += 245 * DAY;
    await replica.check(); // writes the new CA into the Secret, then fails to update the caBundle
    t.equal(splitPemBundle(replica.caBundle()).length, 2, 'the Secret holds the new CA next to the old');
    t.equal((await publishedBundles(configName))[0]?.length, 1, 'the caBundle update was refused');
    t.equal(replica.current().certPem, oldCert, 'the replica that could not publish keeps the old certificate');
    await assertServedIsTrusted(t, replica, configName, 'publication refused');

    await publisher.check(); // finds the new CA in the Secret and publishes it
    t.equal((await publishedBundles(configName))[0]?.length, 2, 'published by the other replica');
    t.equal(publisher.current().certPem, oldCert, 'the publishing check still serves the old certificate');
    await assertServedIsTrusted(t, publisher, configName, 'just published');

    await replica.check(); // sees the bundle published for the first time
    t.equal(replica.current().certPem, oldCert, 'first seen published: still the old certificate');
    await Promise.all([publisher.check(), replica.check()]);
    const newCert = publisher.current().certPem;
    t.not(newCert, oldCert, 'a check later: the new certificate');
    t.equal(replica.current().certPem, newCert, 'on both replicas');
    await assertServedIsTrusted(t, publisher, configName, 'publisher serving the new certificate');
    await assertServedIsTrusted(t, replica, configName, 'replica serving the new certificate');
  },
);
