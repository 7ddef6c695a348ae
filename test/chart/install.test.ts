// A real `helm install` of the chart into the local cluster, then:
// - every object Helm rendered exists, read back through the API;
// - RBAC: for every entry of src/permissions.ts a SubjectAccessReview as the
//   chart's ServiceAccount is allowed; the rendered (and stored) ClusterRole and
//   Role grant exactly that list and nothing more; a few requests outside it
//   are denied;
// - an upgrade keeps the caBundle pvshift patched in (managed mode).
// The fake kubelet marks the Deployment's pods Running without running them,
// so nothing here relies on pvshift actually serving.
import { join } from 'node:path';
import t from 'tap';
import type { V1ClusterRole, V1Deployment, V1MutatingWebhookConfiguration, V1Pod } from '@kubernetes/client-node';
import { PERMISSIONS } from '../../src/permissions.js';
import { paths } from '../../src/kube.js';
import { MIGRATION_CRD_NAME } from '../../src/names.js';
import { clusterFor, waitFor } from '../helpers/cluster.js';
import {
  CHART,
  expandPermissions,
  expandRules,
  helm,
  installCrdFile,
  isTestHook,
  parseManifests,
  VALUES_DIR,
  type Manifest,
} from './helm.js';

const NAMESPACE = 'pvshift-system';
const RELEASE = 'pvshift';
const SERVICE_ACCOUNT = `system:serviceaccount:${NAMESPACE}:pvshift`;

const cluster = await clusterFor(t);
const { kube } = cluster;
// With the VolumePopulator API served, Helm's Capabilities (read from the live
// cluster's discovery) make the chart register pvshift as a populator.
await installCrdFile(kube, join(import.meta.dirname, 'fixtures/volumepopulators-crd.yaml'));

const kubeconfig = ['--kubeconfig', cluster.kubeconfigPath];

/** The API path of a rendered object (every kind the chart renders pluralises with an `s`, or `y` to `ies`). */
function pathOf(m: Manifest): string {
  const base = m.apiVersion === 'v1' ? '/api/v1' : `/apis/${m.apiVersion}`;
  const scope = m.metadata.namespace ? `/namespaces/${m.metadata.namespace}` : '';
  return `${base}${scope}/${m.kind.toLowerCase().replace(/y$/, 'ie')}s/${m.metadata.name}`;
}

interface ReviewRequest {
  group: string;
  resource: string;
  verb: string;
  namespace?: string;
  name?: string;
}

/** Asks the API server's authorizer whether pvshift's ServiceAccount may do this. */
async function isAllowed(request: ReviewRequest): Promise<boolean> {
  const [resource, subresource] = request.resource.split('/');
  const review = await kube.create<{ status?: { allowed?: boolean } }>(
    '/apis/authorization.k8s.io/v1/subjectaccessreviews',
    {
      apiVersion: 'authorization.k8s.io/v1',
      kind: 'SubjectAccessReview',
      spec: {
        user: SERVICE_ACCOUNT,
        groups: ['system:serviceaccounts', `system:serviceaccounts:${NAMESPACE}`, 'system:authenticated'],
        resourceAttributes: {
          group: request.group,
          resource,
          subresource,
          verb: request.verb,
          namespace: request.namespace,
          name: request.name,
        },
      },
    } as never,
  );
  return review.status?.allowed === true;
}

const install = await helm(['install', RELEASE, CHART, '--namespace', NAMESPACE, '--create-namespace', ...kubeconfig]);
const manifests = parseManifests(
  (await helm(['get', 'manifest', RELEASE, '--namespace', NAMESPACE, ...kubeconfig])).stdout,
);

t.test('helm install succeeds and prints the next steps', (t) => {
  t.equal(install.code, 0, install.stderr.trim());
  t.match(install.stdout, /STATUS: deployed/);
  t.match(
    install.stdout,
    /annotate pvc <claim> pvshift\.io\/target-storage-class=<new-class>/,
    'NOTES: how to start a migration',
  );
  t.match(install.stdout, /kubectl get volumemigrations -A/, 'NOTES: how to watch them');
  t.end();
});

t.test('NOTES render for every values file, naming its certificate mode', async (t) => {
  const expected: Record<string, RegExp> = {
    'provided.yaml': /served from your Secret pvshift-system\/my-webhook-tls/,
    'url.yaml': /Local development: the webhooks call https:\/\/127\.0\.0\.1:9443\//,
    'single-replica.yaml':
      /pvshift makes its own CA and serving certificate in the Secret\s+pvshift-system\/pvshift-tls/,
  };
  // Not cert-manager.yaml: even a client-side dry run maps every kind through
  // the cluster's discovery, and this cluster has no cert-manager CRDs.
  for (const [file, pattern] of Object.entries(expected)) {
    // A client-side dry run renders NOTES.txt (helm template does not) and creates nothing.
    const result = await helm([
      'install',
      RELEASE,
      CHART,
      '--namespace',
      NAMESPACE,
      '--dry-run=client',
      '--values',
      join(VALUES_DIR, file),
      ...kubeconfig,
    ]);
    t.equal(result.code, 0, `${file}: ${result.stderr.trim()}`);
    t.match(result.stdout, pattern, `${file}: NOTES say how certificates work`);
    t.match(result.stdout, /pvshift\.io\/target-storage-class/, `${file}: NOTES say how to start`);
  }
});

t.test('every object the release rendered exists', async (t) => {
  const kinds = new Set(manifests.map((m) => m.kind));
  for (const kind of [
    'ServiceAccount',
    'ClusterRole',
    'ClusterRoleBinding',
    'Role',
    'RoleBinding',
    'Service',
    'Deployment',
    'PodDisruptionBudget',
    'MutatingWebhookConfiguration',
    'VolumePopulator',
    'ValidatingAdmissionPolicy',
    'ValidatingAdmissionPolicyBinding',
  ]) {
    t.ok(kinds.has(kind), `the release has a ${kind}`);
  }
  for (const m of manifests) {
    if (isTestHook(m)) continue; // created by `helm test`, not by install
    const live = await kube.get<Manifest>(pathOf(m));
    t.ok(live, `${m.kind} ${m.metadata.namespace ?? ''}/${m.metadata.name} exists`);
    t.equal(
      live?.metadata.labels?.['app.kubernetes.io/instance'],
      RELEASE,
      `${m.kind}/${m.metadata.name} carries the release label`,
    );
  }
  t.ok(await kube.get(paths.crds(MIGRATION_CRD_NAME)), 'the VolumeMigration CRD from crds/ is installed');
  const populator = manifests.find((m) => m.kind === 'VolumePopulator');
  t.match(
    populator,
    { sourceKind: { group: 'pvshift.io', kind: 'VolumeMigration' } },
    'registered as a populator, from the live Capabilities',
  );
});

t.test("the Deployment's pods are admitted and run as the chart's ServiceAccount", async (t) => {
  const deployment = await kube.get<V1Deployment>(paths.deployments(NAMESPACE, 'pvshift'));
  const selector = Object.entries(deployment?.spec?.selector.matchLabels ?? {})
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
  const pods = await waitFor('two pvshift pods', async () => {
    const list = await kube.list<V1Pod>(paths.pods(NAMESPACE), { labelSelector: selector });
    return list.items.length === 2 ? list.items : undefined;
  });
  for (const pod of pods) {
    t.equal(pod.spec?.serviceAccountName, 'pvshift');
    t.equal(pod.spec?.securityContext?.runAsNonRoot, true);
  }
});

t.test('RBAC: every permission of src/permissions.ts is allowed by the API server', async (t) => {
  for (const p of PERMISSIONS) {
    for (const verb of p.verbs) {
      // Named grants: by the name a default install gives the object.
      for (const name of [p.resourceName?.defaultName]) {
        const label = `${verb} ${p.apiGroup || 'core'}/${p.resource}${name ? ` ${name}` : ''}`;
        if (p.scope === 'namespace') {
          t.ok(
            await isAllowed({ group: p.apiGroup, resource: p.resource, verb, namespace: NAMESPACE, name }),
            `${label} in ${NAMESPACE}`,
          );
        } else {
          // Cluster scope: across all namespaces (namespace unset), and in any one.
          t.ok(await isAllowed({ group: p.apiGroup, resource: p.resource, verb, name }), `${label}, cluster-wide`);
          t.ok(
            await isAllowed({ group: p.apiGroup, resource: p.resource, verb, namespace: 'some-app', name }),
            `${label} in some-app`,
          );
        }
      }
    }
  }
});

t.test('RBAC: the chart grants exactly the list, nothing more', async (t) => {
  const clusterRole = manifests.find((m) => m.kind === 'ClusterRole') as unknown as V1ClusterRole;
  const role = manifests.find((m) => m.kind === 'Role') as unknown as V1ClusterRole;
  t.strictSame(
    expandRules(clusterRole.rules ?? []),
    expandPermissions(PERMISSIONS.filter((p) => p.scope === 'cluster')),
    'ClusterRole = cluster-scoped permissions',
  );
  t.strictSame(
    expandRules(role.rules ?? []),
    expandPermissions(PERMISSIONS.filter((p) => p.scope === 'namespace')),
    'Role = namespace-scoped permissions',
  );
  const stored = await kube.get<V1ClusterRole>('/apis/rbac.authorization.k8s.io/v1/clusterroles/pvshift');
  t.strictSame(expandRules(stored?.rules ?? []), expandRules(clusterRole.rules ?? []), 'as stored by the API server');
  // The bindings bind those two roles to the chart's ServiceAccount only.
  for (const kind of ['ClusterRoleBinding', 'RoleBinding']) {
    const binding = manifests.find((m) => m.kind === kind) as unknown as {
      subjects: unknown[];
      roleRef: { name: string };
    };
    t.strictSame(
      binding.subjects,
      [{ kind: 'ServiceAccount', name: 'pvshift', namespace: NAMESPACE }],
      `${kind} subjects`,
    );
    t.equal(binding.roleRef.name, 'pvshift');
  }
});

t.test('RBAC: requests outside the list are denied', async (t) => {
  const denied: [string, ReviewRequest][] = [
    ['secrets in another namespace', { group: '', resource: 'secrets', verb: 'get', namespace: 'default' }],
    ['listing secrets, even its own namespace', { group: '', resource: 'secrets', verb: 'list', namespace: NAMESPACE }],
    [
      'deleting its Secret',
      { group: '', resource: 'secrets', verb: 'delete', namespace: NAMESPACE, name: 'pvshift-tls' },
    ],
    [
      'reading another Secret of its namespace',
      { group: '', resource: 'secrets', verb: 'get', namespace: NAMESPACE, name: 'someone-else' },
    ],
    [
      'updating another Secret of its namespace',
      { group: '', resource: 'secrets', verb: 'update', namespace: NAMESPACE, name: 'someone-else' },
    ],
    ['reading a Secret without naming it', { group: '', resource: 'secrets', verb: 'get', namespace: NAMESPACE }],
    [
      'leases in another namespace',
      { group: 'coordination.k8s.io', resource: 'leases', verb: 'update', namespace: 'kube-system' },
    ],
    [
      'updating another Lease of its namespace',
      { group: 'coordination.k8s.io', resource: 'leases', verb: 'update', namespace: NAMESPACE, name: 'someone-else' },
    ],
    [
      'deleting a PersistentVolume (DeleteAfterVerify sets the reclaim policy instead)',
      { group: '', resource: 'persistentvolumes', verb: 'delete', name: 'pv-1' },
    ],
    [
      'updating a claim (it patches)',
      { group: '', resource: 'persistentvolumeclaims', verb: 'update', namespace: 'some-app' },
    ],
    [
      'updating a VolumeMigration (it patches)',
      { group: 'pvshift.io', resource: 'volumemigrations', verb: 'update', namespace: 'some-app' },
    ],
    [
      'updating the status of a VolumeMigration (it patches)',
      { group: 'pvshift.io', resource: 'volumemigrations/status', verb: 'update', namespace: 'some-app' },
    ],
    ['patching an Event', { group: '', resource: 'events', verb: 'patch', namespace: 'some-app' }],
    ['deleting a StorageClass', { group: 'storage.k8s.io', resource: 'storageclasses', verb: 'delete' }],
    [
      'updating another webhook configuration',
      {
        group: 'admissionregistration.k8s.io',
        resource: 'mutatingwebhookconfigurations',
        verb: 'update',
        name: 'someone-else',
      },
    ],
    [
      'patching its own webhook configuration (it updates)',
      {
        group: 'admissionregistration.k8s.io',
        resource: 'mutatingwebhookconfigurations',
        verb: 'patch',
        name: 'pvshift',
      },
    ],
    [
      'listing webhook configurations',
      { group: 'admissionregistration.k8s.io', resource: 'mutatingwebhookconfigurations', verb: 'list' },
    ],
    [
      'deleting its own webhook configuration',
      {
        group: 'admissionregistration.k8s.io',
        resource: 'mutatingwebhookconfigurations',
        verb: 'delete',
        name: 'pvshift',
      },
    ],
    ['deleting a namespace', { group: '', resource: 'namespaces', verb: 'delete', name: 'some-app' }],
    ['exec into a pod', { group: '', resource: 'pods/exec', verb: 'create', namespace: 'some-app' }],
    ['updating a pod', { group: '', resource: 'pods', verb: 'update', namespace: 'some-app' }],
    ['creating a PersistentVolume', { group: '', resource: 'persistentvolumes', verb: 'create' }],
    [
      'escalating through RBAC',
      { group: 'rbac.authorization.k8s.io', resource: 'clusterrolebindings', verb: 'create' },
    ],
  ];
  for (const [label, request] of denied) t.notOk(await isAllowed(request), `denied: ${label}`);
});

t.test('helm upgrade keeps the caBundle pvshift patched in (managed mode)', async (t) => {
  const patched = Buffer.from('-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n').toString('base64');
  const before = await kube.get<V1MutatingWebhookConfiguration>(paths.mutatingWebhooks('pvshift'));
  t.notOk(before?.webhooks?.[0]?.clientConfig.caBundle, 'installed without a caBundle');
  // What pvshift's certificate manager (certs/managed.ts) does at start: read
  // the configuration, set every entry's caBundle, and replace it.
  const body = structuredClone(before!);
  for (const webhook of body.webhooks ?? []) webhook.clientConfig.caBundle = patched;
  await kube.replace(paths.mutatingWebhooks('pvshift'), body);
  const upgrade = await helm([
    'upgrade',
    RELEASE,
    CHART,
    '--namespace',
    NAMESPACE,
    '--reuse-values',
    '--set',
    'replicaCount=3',
    ...kubeconfig,
  ]);
  t.equal(upgrade.code, 0, upgrade.stderr.trim());
  const after = await kube.get<V1MutatingWebhookConfiguration>(paths.mutatingWebhooks('pvshift'));
  for (const webhook of after?.webhooks ?? [])
    t.equal(webhook.clientConfig.caBundle, patched, `${webhook.name}: caBundle kept`);
  t.equal(
    (await kube.get<V1Deployment>(paths.deployments(NAMESPACE, 'pvshift')))?.spec?.replicas,
    3,
    'the upgrade did apply',
  );
});

t.test('helm uninstall removes the release objects (the CRD stays, as Helm keeps CRDs)', async (t) => {
  const uninstall = await helm([
    'uninstall',
    RELEASE,
    '--namespace',
    NAMESPACE,
    '--wait',
    '--timeout',
    '60s',
    ...kubeconfig,
  ]);
  t.equal(uninstall.code, 0, uninstall.stderr.trim());
  for (const m of manifests.filter((m) => !isTestHook(m))) {
    await waitFor(
      `${m.kind}/${m.metadata.name} gone`,
      async () => ((await kube.get(pathOf(m))) ? undefined : true),
      30_000,
    );
  }
  t.pass('every release object is gone');
  t.ok(
    await kube.get(paths.crds(MIGRATION_CRD_NAME)),
    'VolumeMigration CRD kept: deleting it would delete every migration',
  );
});
