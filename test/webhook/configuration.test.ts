// The MutatingWebhookConfiguration built from the chart's webhooks.yaml, and the
// file itself kept in step with the names in src/names.ts.
import t from 'tap';
import { LABEL_MANAGED_BY, LABEL_NAMESPACE_ACTIVE, MANAGED_BY_VALUE } from '../../src/names.js';
import { CLAIMS_PATH, PODS_PATH } from '../../webhook/admission.js';
import { buildWebhookConfiguration, loadWebhookDefinitions } from '../../webhook/configuration.js';
import { MigrationIndex } from '../../webhook/migration-cache.js';
import { migration } from '../fixtures/admission/builders.js';

const CA = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';

void t.test('webhooks.yaml says what was decided', (t) => {
  const [claims, pods] = loadWebhookDefinitions();
  t.equal(claims?.path, CLAIMS_PATH);
  t.equal(pods?.path, PODS_PATH);
  t.equal(claims?.failurePolicy, 'Fail');
  t.equal(pods?.failurePolicy, 'Ignore');
  t.equal(claims?.timeoutSeconds, 10);
  t.equal(pods?.timeoutSeconds, 5);
  t.equal(claims?.reinvocationPolicy, 'IfNeeded');
  for (const webhook of [claims, pods]) {
    t.equal(webhook?.sideEffects, 'None');
    t.same(webhook?.admissionReviewVersions, ['v1']);
    t.same(webhook?.rules?.[0]?.operations, ['CREATE']);
    t.same(webhook?.namespaceSelector?.matchExpressions, [
      { key: LABEL_NAMESPACE_ACTIVE, operator: 'In', values: ['true'] },
    ]);
    t.same(webhook?.objectSelector?.matchExpressions, [
      { key: LABEL_MANAGED_BY, operator: 'NotIn', values: [MANAGED_BY_VALUE] },
    ]);
  }
  t.same(claims?.rules?.[0]?.resources, ['persistentvolumeclaims']);
  t.same(pods?.rules?.[0]?.resources, ['pods']);
  t.same(pods?.matchConditions, [
    {
      name: 'mounts-a-claim',
      expression: 'has(object.spec.volumes) && object.spec.volumes.exists(v, has(v.persistentVolumeClaim))',
    },
  ]);
  t.end();
});

void t.test('built for a Service', (t) => {
  const config = buildWebhookConfiguration({
    name: 'pvshift',
    pvshiftNamespace: 'pvshift-system',
    caBundle: CA,
    service: { name: 'pvshift-webhook', namespace: 'pvshift-system', port: 443 },
  });
  t.equal(config.metadata?.name, 'pvshift');
  t.equal(config.webhooks?.length, 2);
  for (const webhook of config.webhooks ?? []) {
    t.notOk('path' in webhook, 'path moved into clientConfig');
    t.equal(webhook.clientConfig.caBundle, Buffer.from(CA).toString('base64'));
    t.notOk(webhook.clientConfig.url);
    t.same(webhook.namespaceSelector?.matchExpressions?.[1], {
      key: 'kubernetes.io/metadata.name',
      operator: 'NotIn',
      values: ['kube-system', 'pvshift-system'],
    });
  }
  t.same(config.webhooks?.[0]?.clientConfig.service, {
    name: 'pvshift-webhook',
    namespace: 'pvshift-system',
    port: 443,
    path: CLAIMS_PATH,
  });
  t.same(config.webhooks?.[1]?.clientConfig.service?.path, PODS_PATH);
  t.end();
});

void t.test('built for a URL', (t) => {
  const config = buildWebhookConfiguration({
    name: 'x',
    pvshiftNamespace: 'kube-system',
    caBundle: CA,
    url: 'https://127.0.0.1:9443/',
  });
  t.equal(config.webhooks?.[0]?.clientConfig.url, `https://127.0.0.1:9443${CLAIMS_PATH}`);
  t.equal(config.webhooks?.[1]?.clientConfig.url, `https://127.0.0.1:9443${PODS_PATH}`);
  t.same(config.webhooks?.[0]?.namespaceSelector?.matchExpressions?.[1]?.values, ['kube-system'], 'no duplicate');
  t.end();
});

void t.test('exactly one of service and url', (t) => {
  t.throws(() => buildWebhookConfiguration({ name: 'x', pvshiftNamespace: 'p', caBundle: CA }), {
    name: 'ConfigurationError',
  });
  t.throws(
    () =>
      buildWebhookConfiguration({
        name: 'x',
        pvshiftNamespace: 'p',
        caBundle: CA,
        url: 'https://a',
        service: { name: 's', namespace: 'p', port: 1 },
      }),
    { name: 'ConfigurationError' },
  );
  t.end();
});

void t.test('the migration index', (t) => {
  const index = new MigrationIndex();
  t.equal(index.isSynced(), false);
  const a = migration('a', 'CuttingOver', { claimName: 'data-0' });
  const b = migration('b', 'Pending', { claimName: 'data-0' });
  const c = migration('c', 'Pending', { claimName: 'data-0', namespace: 'other' });
  index.upsert(a);
  index.upsert(b);
  index.upsert(c);
  t.same(
    index
      .migrationsForClaim('shop', 'data-0')
      .map((m) => m.metadata.name)
      .sort(),
    ['a', 'b'],
  );
  t.same(
    index.migrationsForClaim('other', 'data-0').map((m) => m.metadata.name),
    ['c'],
  );
  t.same(index.migrationsForClaim('shop', 'data-1'), []);
  const moved = migration('a', 'CuttingOver', { claimName: 'data-1' });
  index.upsert(moved);
  t.same(
    index.migrationsForClaim('shop', 'data-0').map((m) => m.metadata.name),
    ['b'],
    'an update that moves a migration leaves nothing behind',
  );
  t.same(
    index.migrationsForClaim('shop', 'data-1').map((m) => m.metadata.name),
    ['a'],
  );
  index.remove(b);
  index.remove(b);
  t.same(index.migrationsForClaim('shop', 'data-0'), []);
  t.equal(index.size, 2);
  t.end();
});
