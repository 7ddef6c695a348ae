// Captures the AdmissionReviews a real kube-apiserver sends for a StatefulSet's
// claim and pod, for the webhook benchmark and tests to use as they are.
//
//   npx tsx hack/capture-reviews.ts
//
// Starts the local cluster, registers pvshift's webhook configuration (the one
// the chart ships) pointing at a recorder that allows everything, creates a
// database-like StatefulSet in a namespace labelled active, and writes the
// first review of each resource to test/fixtures/admission/captured-*.json.
// What a hand-written fixture misses is exactly what the API server adds
// before admission: defaults, managedFields, the service-account volume,
// tolerations, userInfo, options.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import type { V1MutatingWebhookConfiguration, V1Namespace, V1Secret } from '@kubernetes/client-node';
import { fastify } from 'fastify';
import { createCertificateAuthority, issueServingCertificate } from '../certs/authority.js';
import { REPO_ROOT, startLocalCluster, waitFor } from '../cluster/index.js';
import { paths } from '../src/kube.js';
import { LABEL_NAMESPACE_ACTIVE } from '../src/names.js';
import { buildWebhookConfiguration } from '../webhook/configuration.js';
import { CLAIMS_PATH, PODS_PATH } from '../webhook/admission.js';

const OUT = path.join(REPO_ROOT, 'test/fixtures/admission');
const NAMESPACE = 'shop';
const CONFIG_NAME = 'pvshift-capture';

/** A StatefulSet shaped like a real database deployment: env, secrets, probes, resources. */
function database() {
  return {
    apiVersion: 'apps/v1',
    kind: 'StatefulSet',
    metadata: { name: 'web', labels: { 'app.kubernetes.io/name': 'postgres', 'app.kubernetes.io/instance': 'web' } },
    spec: {
      serviceName: 'web',
      replicas: 1,
      selector: { matchLabels: { 'app.kubernetes.io/name': 'postgres', 'app.kubernetes.io/instance': 'web' } },
      template: {
        metadata: {
          labels: {
            'app.kubernetes.io/name': 'postgres',
            'app.kubernetes.io/instance': 'web',
            'app.kubernetes.io/component': 'primary',
          },
          annotations: {
            'kubectl.kubernetes.io/default-container': 'postgres',
            'prometheus.io/scrape': 'true',
            'prometheus.io/port': '9187',
          },
        },
        spec: {
          terminationGracePeriodSeconds: 30,
          securityContext: { fsGroup: 999, runAsUser: 999, runAsNonRoot: true },
          containers: [
            {
              name: 'postgres',
              image: 'docker.io/library/postgres:16.4',
              ports: [{ name: 'postgres', containerPort: 5432 }],
              env: [
                { name: 'POSTGRES_USER', value: 'app' },
                {
                  name: 'POSTGRES_PASSWORD',
                  valueFrom: { secretKeyRef: { name: 'web-credentials', key: 'password' } },
                },
                { name: 'PGDATA', value: '/var/lib/postgresql/data/pgdata' },
                { name: 'POD_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
              ],
              resources: { requests: { cpu: '500m', memory: '1Gi' }, limits: { memory: '2Gi' } },
              readinessProbe: { exec: { command: ['pg_isready', '-U', 'app'] }, periodSeconds: 5, timeoutSeconds: 3 },
              livenessProbe: { tcpSocket: { port: 5432 }, initialDelaySeconds: 30, periodSeconds: 10 },
              volumeMounts: [
                { name: 'data', mountPath: '/var/lib/postgresql/data' },
                { name: 'config', mountPath: '/etc/postgresql/conf.d', readOnly: true },
              ],
            },
            {
              name: 'metrics',
              image: 'quay.io/prometheuscommunity/postgres-exporter:v0.15.0',
              ports: [{ name: 'metrics', containerPort: 9187 }],
              env: [{ name: 'DATA_SOURCE_NAME', value: 'postgresql://app@localhost:5432/postgres?sslmode=disable' }],
              resources: { requests: { cpu: '50m', memory: '64Mi' } },
            },
          ],
          volumes: [{ name: 'config', configMap: { name: 'web-config' } }],
        },
      },
      volumeClaimTemplates: [
        {
          metadata: { name: 'data', labels: { 'app.kubernetes.io/name': 'postgres' } },
          spec: {
            accessModes: ['ReadWriteOnce'],
            storageClassName: 'standard',
            resources: { requests: { storage: '10Gi' } },
          },
        },
      ],
    },
  };
}

async function main(): Promise<void> {
  const cluster = await startLocalCluster({ log: (line) => console.error(line) });
  try {
    const { kube } = cluster;
    const ca = await createCertificateAuthority({ now: new Date() });
    const serving = await issueServingCertificate(ca, { names: ['127.0.0.1'], now: new Date() });
    const captured = new Map<string, unknown>();
    let calls = 0;
    const recorder = fastify({ bodyLimit: 7 << 20, https: { key: serving.keyPem, cert: serving.certPem } });
    for (const route of [CLAIMS_PATH, PODS_PATH]) {
      recorder.post(route, (request, reply) => {
        const review = request.body as {
          request: { uid: string; name?: string; object?: { metadata?: { name?: string; generateName?: string } } };
        };
        const name = review.request.object?.metadata?.name ?? review.request.name ?? '';
        const key = route === CLAIMS_PATH ? 'claim' : 'pod';
        calls += 1;
        if (!captured.has(key) && /^(data-)?web-0$/.test(name)) captured.set(key, review);
        return reply.send({
          apiVersion: 'admission.k8s.io/v1',
          kind: 'AdmissionReview',
          response: { uid: review.request.uid, allowed: true },
        });
      });
    }
    await recorder.listen({ port: 0, host: '127.0.0.1' });
    const port = (recorder.server.address() as AddressInfo).port;

    await kube.create<V1Namespace>(paths.namespaces(), { metadata: { name: 'pvshift' } });
    await kube.create<V1Namespace>(paths.namespaces(), {
      metadata: { name: NAMESPACE, labels: { [LABEL_NAMESPACE_ACTIVE]: 'true' } },
    });
    await waitFor(
      `ServiceAccount ${NAMESPACE}/default`,
      () => kube.get(paths.serviceAccounts(NAMESPACE, 'default')),
      60_000,
    );
    await kube.create<V1Secret>(paths.secrets(NAMESPACE), {
      metadata: { name: 'web-credentials' },
      stringData: { password: 'not-a-real-one' },
    });
    await kube.create<V1MutatingWebhookConfiguration>(
      paths.mutatingWebhooks(),
      buildWebhookConfiguration({
        name: CONFIG_NAME,
        pvshiftNamespace: 'pvshift',
        caBundle: ca.certPem,
        url: `https://127.0.0.1:${port}`,
      }),
    );
    // The API server picks up a new webhook configuration through an informer:
    // wait until a dry-run claim (under another name, not recorded) reaches the recorder.
    await waitFor(
      'the API server calls the recorder',
      async () => {
        await kube.create(
          paths.claims(NAMESPACE),
          {
            metadata: { name: 'probe' },
            spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } },
          },
          { dryRun: 'All' },
        );
        return calls > 0 ? true : undefined;
      },
      60_000,
    );
    await kube.create(paths.statefulSets(NAMESPACE), database());
    await waitFor(
      'the claim and the pod reviewed',
      () => Promise.resolve(captured.size === 2 ? true : undefined),
      60_000,
    );
    for (const [key, review] of captured) {
      const file = path.join(OUT, `captured-${key}-review.json`);
      writeFileSync(file, `${JSON.stringify(review, null, 2)}\n`);
      console.log(`wrote ${path.relative(REPO_ROOT, file)} (${JSON.stringify(review).length} bytes as sent)`);
    }
    await recorder.close();
  } finally {
    await cluster.stop();
  }
}

await main();
