// The webhook against the real kube-apiserver of the local cluster: registered
// by URL with its own CA, it rewrites a claim in cutover, gates the pod that
// mounts it, leaves everything else alone, and when it is down the claim is
// refused while pods still get created.
import { X509Certificate } from 'node:crypto';
import t from 'tap';
import type {
  V1Namespace,
  V1PersistentVolumeClaim,
  V1Pod,
  V1Secret,
  V1MutatingWebhookConfiguration,
} from '@kubernetes/client-node';
import { freePort, installVolumeMigrationCrd } from '../../cluster/index.js';
import { serviceDnsNames } from '../../certs/authority.js';
import { startManagedCertificates } from '../../certs/managed.js';
import { ApiError, paths } from '../../src/kube.js';
import { silentLogger } from '../../src/logger.js';
import { ANNOTATION_GATED_AT, ANNOTATION_MIGRATION, LABEL_NAMESPACE_ACTIVE, SCHEDULING_GATE } from '../../src/names.js';
import type { Phase, VolumeMigration } from '../../src/volume-migration.js';
import { buildWebhookConfiguration } from '../../webhook/configuration.js';
import { runWebhook } from '../../webhook/index.js';
import { clusterFor, waitFor } from '../helpers/cluster.js';

const cluster = await clusterFor(t);
const { kube, kubeConfig } = cluster;
await installVolumeMigrationCrd(kubeConfig);

let counter = 0;
async function namespace(prefix: string, active: boolean): Promise<string> {
  const name = `${prefix}-${process.pid}-${++counter}`;
  await kube.create<V1Namespace>(paths.namespaces(), {
    metadata: { name, labels: active ? { [LABEL_NAMESPACE_ACTIVE]: 'true' } : {} },
  });
  await waitFor(`ServiceAccount ${name}/default`, () => kube.get(paths.serviceAccounts(name, 'default')), 60_000);
  return name;
}

const ORIGINAL = {
  accessModes: ['ReadWriteOnce'],
  storageClassName: 'standard',
  volumeMode: 'Filesystem',
  resources: { requests: { storage: '1Gi' } },
};

async function migrationIn(
  ns: string,
  claimName: string,
  phase: Phase,
  name = `move-${claimName}`,
): Promise<VolumeMigration> {
  await kube.create(paths.migrations(ns), {
    apiVersion: 'pvshift.io/v1alpha1',
    kind: 'VolumeMigration',
    metadata: { name },
    spec: { claimName, targetStorageClassName: 'fast', targetSize: '2Gi' },
  });
  // status is a subresource: the main resource ignores it on create.
  return kube.patch<VolumeMigration>(
    `${paths.migrations(ns, name)}/status`,
    {
      status: {
        phase,
        originalClaim: { labels: {}, annotations: {}, spec: ORIGINAL },
        sourceVolumeName: `pv-of-${claimName}`,
      },
    },
    'merge',
  );
}

function claim(name: string, labels: Record<string, string> = {}): V1PersistentVolumeClaim {
  return {
    metadata: { name, labels: { app: 'web', ...labels }, annotations: { 'example.com/owner': 'team-a' } },
    spec: structuredClone(ORIGINAL),
  };
}

function pod(name: string, claimName?: string): V1Pod {
  return {
    metadata: { name, labels: { app: 'web' } },
    spec: {
      containers: [
        {
          name: 'app',
          image: 'registry.example/app:1',
          ...(claimName ? { volumeMounts: [{ name: 'data', mountPath: '/data' }] } : {}),
        },
      ],
      ...(claimName ? { volumes: [{ name: 'data', persistentVolumeClaim: { claimName } }] } : {}),
    },
  };
}

const pvshiftNs = await namespace('pvshift', false);
const active = await namespace('app', true);
const inactive = await namespace('plain', false);
const port = await freePort();
const CONFIG_NAME = `pvshift-test-${process.pid}`;

// Registered before the webhook runs, with a CA that signs nothing: the
// webhook patches its own CA in (what it does in the cluster after install).
await kube.create<V1MutatingWebhookConfiguration>(
  paths.mutatingWebhooks(),
  buildWebhookConfiguration({
    name: CONFIG_NAME,
    pvshiftNamespace: pvshiftNs,
    caBundle: 'placeholder',
    url: `https://127.0.0.1:${port}`,
  }),
);
t.teardown(() => kube.delete(paths.mutatingWebhooks(CONFIG_NAME)));

const handle = await runWebhook(
  {
    port,
    host: '127.0.0.1',
    certMode: 'managed',
    secretName: 'pvshift-webhook-tls',
    secretNamespace: pvshiftNs,
    serviceName: 'pvshift-webhook',
    serviceNamespace: pvshiftNs,
    extraNames: ['127.0.0.1'],
    webhookConfigurationName: CONFIG_NAME,
    kube,
  },
  silentLogger(),
);
let running = true;
t.teardown(async () => {
  if (running) await handle.close();
});

await migrationIn(active, 'data-web-0', 'CuttingOver');
// The API server learns of webhook configuration changes through an informer;
// a dry run shows when our CA and URL are in use.
let lastProbeError = '';
await waitFor(
  'the API server calls the webhook',
  async () => {
    try {
      const probe = await kube.create<V1PersistentVolumeClaim>(paths.claims(active), claim('data-web-0'), {
        dryRun: 'All',
      });
      return probe.spec?.storageClassName === 'fast' ? true : undefined;
    } catch (e: unknown) {
      lastProbeError = e instanceof Error ? e.message : String(e);
      return undefined;
    }
  },
  60_000,
).catch((e: unknown) => {
  throw new Error(`${e instanceof Error ? e.message : String(e)}; last answer: ${lastProbeError}`);
});

void t.test('the CA is in the Secret and in every webhook entry', async (t) => {
  const secret = await kube.get<V1Secret>(paths.secrets(pvshiftNs, 'pvshift-webhook-tls'));
  const bundle = Buffer.from(secret?.data?.['ca.crt'] ?? '', 'base64').toString('utf8');
  t.equal(bundle, handle.caBundle);
  const config = await kube.get<V1MutatingWebhookConfiguration>(paths.mutatingWebhooks(CONFIG_NAME));
  t.equal(config?.webhooks?.length, 2);
  for (const webhook of config?.webhooks ?? [])
    t.equal(Buffer.from(webhook.clientConfig.caBundle ?? '', 'base64').toString('utf8'), bundle);
  const cert = new X509Certificate(Buffer.from(secret?.data?.['tls.crt'] ?? '', 'base64'));
  t.ok(cert.checkIP('127.0.0.1'));
  t.ok(cert.checkHost(`pvshift-webhook.${pvshiftNs}.svc`));
});

void t.test('a claim created for a migration in cutover comes back rewritten', async (t) => {
  const created = await kube.create<V1PersistentVolumeClaim>(paths.claims(active), claim('data-web-0'));
  t.equal(created.spec?.storageClassName, 'fast');
  t.same(created.spec?.resources?.requests, { storage: '2Gi' });
  t.same(
    created.spec?.dataSourceRef,
    { apiGroup: 'pvshift.io', kind: 'VolumeMigration', name: 'move-data-web-0' },
    'the API server accepted the dataSourceRef',
  );
  // NormalizeDataSources copies a namespace-less dataSourceRef into dataSource when the object is stored.
  t.comment(`dataSource as stored: ${JSON.stringify(created.spec?.dataSource)}`);
  t.equal(created.metadata?.annotations?.[ANNOTATION_MIGRATION], 'move-data-web-0');
  t.equal(created.metadata?.annotations?.['example.com/owner'], 'team-a', 'the user annotation stays');
  t.equal(created.metadata?.labels?.app, 'web');
  t.notOk(created.spec?.volumeName);
});

void t.test('a pod mounting it comes back gated, with the annotations', async (t) => {
  const created = await kube.create<V1Pod>(paths.pods(active), pod('web-0', 'data-web-0'));
  t.same(created.spec?.schedulingGates, [{ name: SCHEDULING_GATE }]);
  t.equal(created.metadata?.annotations?.[ANNOTATION_MIGRATION], 'move-data-web-0');
  t.ok(Date.parse(created.metadata?.annotations?.[ANNOTATION_GATED_AT] ?? '') > Date.now() - 60_000);
  const later = await kube.get<V1Pod>(paths.pods(active, 'web-0'));
  t.notOk(later?.spec?.nodeName, 'held unscheduled');
});

void t.test('a pod with no claim is untouched', async (t) => {
  const created = await kube.create<V1Pod>(paths.pods(active), pod('no-claim'));
  t.notOk(created.spec?.schedulingGates);
  t.notOk(created.metadata?.annotations?.[ANNOTATION_MIGRATION]);
});

void t.test('rollback: the claim comes back as the original on the source volume', async (t) => {
  await migrationIn(active, 'data-web-1', 'RollingBack');
  const created = await waitFor(
    'the restored claim',
    async () => {
      try {
        return await kube.create<V1PersistentVolumeClaim>(paths.claims(active), {
          ...claim('data-web-1'),
          spec: { ...ORIGINAL, storageClassName: 'fast' },
        });
      } catch {
        return undefined;
      }
    },
    30_000,
  );
  t.equal(created.spec?.storageClassName, 'standard');
  t.equal(created.spec?.volumeName, 'pv-of-data-web-1');
  t.notOk(created.spec?.dataSourceRef);
});

void t.test('a namespace without the label is out of scope', async (t) => {
  await migrationIn(inactive, 'data-web-0', 'CuttingOver');
  // Give the informer time to see it: the point is that the webhook is not called at all.
  await new Promise((r) => setTimeout(r, 1000));
  const created = await kube.create<V1PersistentVolumeClaim>(paths.claims(inactive), claim('data-web-0'));
  t.equal(created.spec?.storageClassName, 'standard');
  t.notOk(created.spec?.dataSourceRef);
});

void t.test('replicas share one Secret: the loser of the creation race uses the winner', async (t) => {
  const names = [...serviceDnsNames('pvshift-webhook', pvshiftNs), '127.0.0.1'];
  // One clock for both replicas, moved forward to the renewal point below.
  let clock = Date.now();
  const start = () =>
    startManagedCertificates({
      kubeConfig,
      secretName: 'race',
      secretNamespace: pvshiftNs,
      names,
      logger: silentLogger(),
      checkIntervalMs: 3_600_000,
      now: () => new Date(clock),
    });
  const [a, b] = await Promise.all([start(), start()]);
  t.teardown(async () => {
    await a.stop();
    await b.stop();
  });
  t.equal(a.current().certPem, b.current().certPem);
  t.equal(a.caBundle(), b.caBundle());

  // Past two thirds of the serving life: one replica renews, the other reloads its certificate.
  const before = a.current().certPem;
  const seenByA: string[] = [];
  const seenByB: string[] = [];
  a.onChange((pair) => seenByA.push(pair.certPem));
  b.onChange((pair) => seenByB.push(pair.certPem));
  clock += 61 * 86_400_000;
  await a.check();
  t.equal(seenByA.length, 1, 'renewed past two thirds');
  t.not(a.current().certPem, before);
  await b.check();
  t.same(seenByB, seenByA, 'the other replica reloads the same renewed certificate');
  t.equal(b.caBundle(), a.caBundle(), 'the CA stays');
  const secret = await kube.get<V1Secret>(paths.secrets(pvshiftNs, 'race'));
  t.equal(Buffer.from(secret?.data?.['tls.crt'] ?? '', 'base64').toString('utf8'), a.current().certPem);
});

void t.test('with the webhook stopped', async (t) => {
  await handle.close();
  running = false;
  void t.test('pods are still created (failurePolicy Ignore)', async (t) => {
    const created = await kube.create<V1Pod>(paths.pods(active), pod('web-1', 'data-web-0'));
    t.notOk(created.spec?.schedulingGates);
  });
  void t.test('a claim in cutover is refused with a clear message (failurePolicy Fail)', async (t) => {
    await kube.delete(paths.claims(active, 'data-web-0'));
    await waitFor(
      'claim gone',
      async () => ((await kube.get(paths.claims(active, 'data-web-0'))) ? undefined : true),
      60_000,
    ).catch(() => undefined);
    const error = await kube.create(paths.claims(active), claim('data-web-0')).then(
      () => undefined,
      (e: unknown) => e,
    );
    t.ok(error instanceof ApiError, 'refused');
    const message = error instanceof ApiError ? error.message : '';
    t.comment(message);
    t.match(message, /Internal error occurred: failed calling webhook "persistentvolumeclaims.pvshift.io"/);
    t.match(message, new RegExp(`https://127.0.0.1:${port}/mutate/persistentvolumeclaims`));
    t.match(message, /connection refused/);
  });
  void t.test('claims elsewhere are not affected', async (t) => {
    const created = await kube.create<V1PersistentVolumeClaim>(paths.claims(inactive), claim('other'));
    t.equal(created.spec?.storageClassName, 'standard');
  });
});
