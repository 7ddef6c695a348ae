// The chart through the real helm binary, no cluster: lint and render the
// defaults and every values file of the matrix, check how each certificate mode
// and the copy pod settings reach the Deployment, and that every impossible
// combination fails the render with its message.
import t from 'tap';
import { parse } from 'yaml';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { V1Container, V1Deployment, V1MutatingWebhookConfiguration, V1Pod } from '@kubernetes/client-node';
import { parseConfig, type Config } from '../../src/config.js';
import {
  byKind,
  CHART,
  helm,
  KUBE_VERSION,
  oneOf,
  render,
  templateArgs,
  VALUES_DIR,
  VALUES_FILES,
  type Manifest,
} from './helm.js';

const CLUSTER_SCOPED = new Set([
  'ClusterRole',
  'ClusterRoleBinding',
  'MutatingWebhookConfiguration',
  'VolumePopulator',
  'ValidatingAdmissionPolicy',
  'ValidatingAdmissionPolicyBinding',
]);

function deploymentOf(manifests: Manifest[]): V1Deployment {
  return oneOf(manifests, 'Deployment');
}
function containerOf(manifests: Manifest[]): V1Container {
  return deploymentOf(manifests).spec!.template.spec!.containers[0]!;
}
function webhookConfigurationOf(manifests: Manifest[]): V1MutatingWebhookConfiguration {
  return oneOf(manifests, 'MutatingWebhookConfiguration');
}
/** The container's `--name=value` flags. */
function flagsOf(manifests: Manifest[]): Map<string, string> {
  const flags = new Map<string, string>();
  for (const arg of containerOf(manifests).args ?? []) {
    const match = /^--([a-z-]+)=(.*)$/s.exec(arg);
    if (!match) throw new Error(`argument ${arg} is not --name=value`);
    flags.set(match[1]!, match[2]!);
  }
  return flags;
}

t.test('helm lint --strict passes on the defaults and on every values file', async (t) => {
  for (const file of [undefined, ...VALUES_FILES]) {
    const args = [
      'lint',
      '--strict',
      CHART,
      '--kube-version',
      KUBE_VERSION,
      ...(file ? ['--values', join(VALUES_DIR, file)] : []),
    ];
    const result = await helm(args);
    t.equal(
      result.code,
      0,
      `lint ${file ?? 'defaults'}: ${result.stdout
        .split('\n')
        .filter((l) => /ERROR|WARNING/.test(l))
        .join(' ')}`,
    );
  }
});

t.test('every values file renders, with the properties every render must have', async (t) => {
  for (const file of [undefined, ...VALUES_FILES]) {
    const manifests = await render({ valuesFiles: file ? [file] : [] });
    const name = file ?? 'defaults';
    for (const m of manifests) {
      if (CLUSTER_SCOPED.has(m.kind)) t.notOk(m.metadata.namespace, `${name}: ${m.kind} is cluster-scoped`);
      else
        t.equal(
          m.metadata.namespace,
          'pvshift-system',
          `${name}: ${m.kind}/${m.metadata.name} names the release namespace`,
        );
      t.equal(
        m.metadata.labels?.['app.kubernetes.io/instance'],
        'pvshift',
        `${name}: ${m.kind}/${m.metadata.name} is labelled`,
      );
    }
    const pod = deploymentOf(manifests).spec!.template.spec!;
    const container = containerOf(manifests);
    t.equal(pod.securityContext?.runAsNonRoot, true, `${name}: runAsNonRoot`);
    t.equal(pod.securityContext?.seccompProfile?.type, 'RuntimeDefault', `${name}: seccomp RuntimeDefault`);
    t.equal(container.securityContext?.readOnlyRootFilesystem, true, `${name}: read-only root`);
    t.equal(container.securityContext?.allowPrivilegeEscalation, false, `${name}: no privilege escalation`);
    t.strictSame(container.securityContext?.capabilities?.drop, ['ALL'], `${name}: every capability dropped`);
    t.match(
      container.livenessProbe?.httpGet,
      { path: '/healthz', port: 'https', scheme: 'HTTPS' },
      `${name}: liveness on /healthz over HTTPS`,
    );
    t.match(
      container.readinessProbe?.httpGet,
      { path: '/readyz', port: 'https', scheme: 'HTTPS' },
      `${name}: readiness on /readyz over HTTPS`,
    );
    t.equal(container.ports?.find((p) => p.name === 'https')?.containerPort, 8443, `${name}: the webhook port`);
    t.strictSame(
      container.env?.map((e) => [e.name, e.valueFrom?.fieldRef?.fieldPath]),
      [
        ['POD_NAMESPACE', 'metadata.namespace'],
        ['POD_NAME', 'metadata.name'],
      ],
      `${name}: namespace and name from the downward API`,
    );
    const flags = flagsOf(manifests);
    t.equal(flags.get('mode'), 'webhook,controller', `${name}: both modes`);
    t.equal(flags.get('port'), '8443');
    t.equal(flags.get('leader-election-namespace'), 'pvshift-system');
    t.equal(flags.get('service-name'), 'pvshift-webhook');
    const service = oneOf(manifests, 'Service') as unknown as {
      spec: { ports: { name: string; port: number; targetPort: string }[] };
    };
    t.match(
      service.spec.ports,
      [
        { name: 'https', port: 443, targetPort: 'https' },
        { name: 'metrics', targetPort: 'metrics' },
      ],
      `${name}: Service 443 -> https, plus metrics`,
    );
    const test = byKind(manifests, 'Pod').find(
      (p) => p.metadata.annotations?.['helm.sh/hook'] === 'test',
    ) as unknown as V1Pod | undefined;
    t.ok(test, `${name}: the helm test pod`);
    t.match(test?.spec?.containers[0]?.command?.at(-1), 'https://pvshift-webhook.pvshift-system.svc:443/healthz');
  }
});

t.test("the binary's own parser accepts the Deployment's arguments for every values file", async (t) => {
  for (const file of [undefined, ...VALUES_FILES]) {
    const manifests = await render({ valuesFiles: file ? [file] : [] });
    const name = file ?? 'defaults';
    const env = { POD_NAMESPACE: 'pvshift-system', POD_NAME: 'pvshift-0' };
    let config: Config | 'help' | undefined;
    t.doesNotThrow(
      () => (config = parseConfig(containerOf(manifests).args ?? [], env)),
      `${name}: src/config.ts accepts every flag`,
    );
    if (!config || config === 'help') continue;
    t.strictSame(config.modes, ['webhook', 'controller'], `${name}: both modes`);
    t.equal(config.namespace, 'pvshift-system', `${name}: namespace from the downward API`);
    t.equal(config.webhook.port, 8443);
    t.equal(config.metricsPort, 8080);
    t.equal(config.webhook.serviceName, 'pvshift-webhook');
    t.equal(config.controller.leaderElect, true, `${name}: leader election on`);
  }
});

t.test('replicas: a PodDisruptionBudget only with more than one', async (t) => {
  const defaults = await render();
  t.equal(deploymentOf(defaults).spec?.replicas, 2, 'two replicas by default');
  t.equal(byKind(defaults, 'PodDisruptionBudget').length, 1);
  const one = await render({ valuesFiles: ['single-replica.yaml'] });
  t.equal(deploymentOf(one).spec?.replicas, 1);
  t.equal(byKind(one, 'PodDisruptionBudget').length, 0, 'no PDB for one replica (it would block every drain)');
  const three = await render({ valuesFiles: ['three-replicas.yaml'] });
  t.equal(deploymentOf(three).spec?.replicas, 3);
  const pdb = oneOf(three, 'PodDisruptionBudget') as unknown as {
    spec: { maxUnavailable: number; selector: { matchLabels: Record<string, string> } };
  };
  t.equal(pdb.spec.maxUnavailable, 1);
  t.strictSame(
    pdb.spec.selector.matchLabels,
    deploymentOf(three).spec?.selector.matchLabels,
    'the PDB selects the Deployment pods',
  );
  t.equal(
    deploymentOf(three).spec?.template.spec?.topologySpreadConstraints?.[0]?.topologyKey,
    'topology.kubernetes.io/zone',
  );
  const noPdb = await render({ valuesFiles: ['three-replicas.yaml'], set: ['podDisruptionBudget.enabled=false'] });
  t.equal(byKind(noPdb, 'PodDisruptionBudget').length, 0, 'switched off');
});

t.test('certificates managed (default): pvshift keeps its own Secret and patches the caBundle', async (t) => {
  const manifests = await render();
  const flags = flagsOf(manifests);
  t.equal(flags.get('cert-mode'), 'managed');
  t.equal(flags.get('tls-secret'), 'pvshift-tls');
  t.equal(flags.get('webhook-configuration'), 'pvshift', 'the configuration it patches is the one the chart names');
  t.equal(webhookConfigurationOf(manifests).metadata?.name, 'pvshift');
  t.notOk(flags.has('cert-dir'));
  t.notOk(
    containerOf(manifests).volumeMounts?.some((m) => m.name === 'tls'),
    'no Secret volume',
  );
  for (const webhook of webhookConfigurationOf(manifests).webhooks ?? []) {
    t.notOk(webhook.clientConfig.caBundle, `${webhook.name}: caBundle left to pvshift`);
    t.match(webhook.clientConfig.service, { name: 'pvshift-webhook', namespace: 'pvshift-system', port: 443 });
  }
  t.equal(byKind(manifests, 'Secret').length, 0, 'the chart makes no Secret: pvshift does');
  t.equal(byKind(manifests, 'Certificate').length + byKind(manifests, 'Issuer').length, 0, 'no cert-manager objects');
  const named = await render({ set: ['certificates.managed.secretName=webhook-pki'] });
  t.equal(flagsOf(named).get('tls-secret'), 'webhook-pki');
});

t.test('certificates certManager: a self-signed CA chain, the inject annotation, files mode', async (t) => {
  const manifests = await render({ valuesFiles: ['cert-manager.yaml'] });
  const issuers = byKind(manifests, 'Issuer') as unknown as {
    metadata: { name: string };
    spec: Record<string, unknown>;
  }[];
  const certificates = byKind(manifests, 'Certificate') as unknown as {
    metadata: { name: string };
    spec: Record<string, unknown>;
  }[];
  t.strictSame(issuers.map((i) => [i.metadata.name, Object.keys(i.spec)[0]]).sort(), [
    ['pvshift-ca', 'ca'],
    ['pvshift-selfsigned', 'selfSigned'],
  ]);
  const ca = certificates.find((c) => c.metadata.name === 'pvshift-ca');
  const serving = certificates.find((c) => c.metadata.name === 'pvshift-serving');
  t.match(
    ca?.spec,
    { isCA: true, secretName: 'pvshift-ca', issuerRef: { kind: 'Issuer', name: 'pvshift-selfsigned' } },
    'the CA is signed by the self-signed issuer',
  );
  t.match(
    serving?.spec,
    { secretName: 'pvshift-tls', issuerRef: { kind: 'Issuer', name: 'pvshift-ca' } },
    'the serving certificate by the CA issuer',
  );
  t.ok(
    (serving?.spec.dnsNames as string[]).includes('pvshift-webhook.pvshift-system.svc'),
    'names the Service as the API server dials it',
  );
  t.equal(
    webhookConfigurationOf(manifests).metadata?.annotations?.['cert-manager.io/inject-ca-from'],
    'pvshift-system/pvshift-serving',
  );
  for (const webhook of webhookConfigurationOf(manifests).webhooks ?? [])
    t.notOk(webhook.clientConfig.caBundle, 'the cainjector fills caBundle');
  const flags = flagsOf(manifests);
  t.equal(flags.get('cert-mode'), 'files');
  t.equal(flags.get('cert-dir'), '/etc/pvshift/tls');
  t.notOk(flags.has('tls-secret'));
  t.match(containerOf(manifests).volumeMounts, [
    { name: 'tmp' },
    { name: 'tls', mountPath: '/etc/pvshift/tls', readOnly: true },
  ]);
  t.match(deploymentOf(manifests).spec?.template.spec?.volumes?.find((v) => v.name === 'tls')?.secret, {
    secretName: 'pvshift-tls',
  });

  const own = await render({ valuesFiles: ['cert-manager-issuer.yaml'] });
  t.equal(byKind(own, 'Issuer').length, 0, "with the user's issuer, no chain of ours");
  t.match(oneOf(own, 'Certificate'), {
    metadata: { name: 'pvshift-serving' },
    spec: { issuerRef: { name: 'corporate-ca', kind: 'ClusterIssuer', group: 'cert-manager.io' } },
  });
});

t.test('certificates provided: the user Secret mounted, its CA as caBundle', async (t) => {
  const manifests = await render({ valuesFiles: ['provided.yaml'] });
  const values = parse(await readFile(join(VALUES_DIR, 'provided.yaml'), 'utf8')) as {
    certificates: { provided: { caBundle: string } };
  };
  const flags = flagsOf(manifests);
  t.equal(flags.get('cert-mode'), 'files');
  t.match(deploymentOf(manifests).spec?.template.spec?.volumes?.find((v) => v.name === 'tls')?.secret, {
    secretName: 'my-webhook-tls',
  });
  for (const webhook of webhookConfigurationOf(manifests).webhooks ?? []) {
    t.equal(
      webhook.clientConfig.caBundle,
      Buffer.from(values.certificates.provided.caBundle).toString('base64'),
      'PEM encoded as the API wants',
    );
  }
  // A caBundle given already base64-encoded is passed through unchanged.
  const encoded = Buffer.from(values.certificates.provided.caBundle).toString('base64');
  const again = await render({ valuesFiles: ['provided.yaml'], set: [`certificates.provided.caBundle=${encoded}`] });
  t.equal(webhookConfigurationOf(again).webhooks?.[0]?.clientConfig.caBundle, encoded);
});

t.test('webhook.url: URL clientConfig, no caBundle patching from inside the cluster', async (t) => {
  const manifests = await render({ valuesFiles: ['url.yaml'] });
  const [claims, pods] = webhookConfigurationOf(manifests).webhooks ?? [];
  t.equal(
    claims?.clientConfig.url,
    'https://127.0.0.1:9443/mutate/persistentvolumeclaims',
    'trailing slash dropped, path appended',
  );
  t.equal(pods?.clientConfig.url, 'https://127.0.0.1:9443/mutate/pods');
  t.notOk(claims?.clientConfig.service);
  t.ok(claims?.clientConfig.caBundle, 'caBundle from webhook.caBundle');
  t.equal(
    flagsOf(manifests).get('webhook-configuration'),
    '',
    'empty: the in-cluster pods must not overwrite the caBundle the URL is trusted with',
  );
  const config = parseConfig(containerOf(manifests).args ?? [], {});
  t.equal(
    config !== 'help' && config.webhook.webhookConfiguration,
    '',
    'which the binary reads as "patch nothing" (not its default, pvshift)',
  );
  const many = await render({ valuesFiles: ['url-three-replicas.yaml'] });
  t.equal(deploymentOf(many).spec?.replicas, 3, 'url with several replicas is allowed');
  t.notOk(
    webhookConfigurationOf(many).webhooks?.[0]?.clientConfig.caBundle,
    'empty: the pvshift at the URL patches its own CA in',
  );
});

t.test('copy pod settings reach the controller as flags', async (t) => {
  const manifests = await render({ valuesFiles: ['copy-pods.yaml'] });
  const values = parse(await readFile(join(VALUES_DIR, 'copy-pods.yaml'), 'utf8')) as { copy: Record<string, unknown> };
  const flags = flagsOf(manifests);
  t.equal(
    containerOf(manifests).image,
    'registry.example/pvshift@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef',
    'digest wins',
  );
  t.equal(flags.get('copy-image'), 'registry.example/pvshift-copy:0.1.0-rsync');
  t.strictSame(
    JSON.parse(flags.get('copy-node-selector')!),
    values.copy.nodeSelector,
    'node selector as JSON, spaces intact',
  );
  t.strictSame(
    JSON.parse(flags.get('copy-tolerations')!),
    values.copy.tolerations,
    'tolerations as JSON, ": " in a value intact',
  );
  t.strictSame(JSON.parse(flags.get('copy-resources')!), values.copy.resources);
  t.equal(flags.get('copy-priority-class'), 'system-cluster-critical');
  t.equal(flags.get('max-concurrent-copies'), '10');
  t.equal(flags.get('max-copies-per-node'), '1');
  t.equal(flags.get('copy-attempts'), '5');
  t.equal(flags.get('copy-stall-timeout'), '900');
  t.equal(flags.get('copy-bandwidth-limit'), '51200');

  const defaults = flagsOf(await render());
  t.equal(defaults.get('copy-image'), 'ghcr.io/pvshift/pvshift:0.1.0', "the chart's own image by default");
  t.notOk(defaults.has('copy-node-selector'), 'empty settings are not passed');
  t.notOk(defaults.has('copy-tolerations'));
  t.notOk(defaults.has('copy-priority-class'));
  t.equal(defaults.get('max-concurrent-copies'), '4');
  const tagOnly = flagsOf(await render({ set: ['image.tag=1.2.3'] }));
  t.equal(tagOnly.get('copy-image'), 'ghcr.io/pvshift/pvshift:1.2.3', 'follows image.tag');
});

t.test('an existing ServiceAccount and no RBAC', async (t) => {
  const manifests = await render({ valuesFiles: ['existing-service-account.yaml'] });
  t.equal(byKind(manifests, 'ServiceAccount').length, 0);
  for (const kind of ['ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding'])
    t.equal(byKind(manifests, kind).length, 0, `no ${kind}`);
  const pod = deploymentOf(manifests).spec!.template;
  t.equal(pod.spec?.serviceAccountName, 'platform-pvshift');
  t.equal(pod.metadata?.labels?.tier, 'platform');
  t.equal(pod.metadata?.annotations?.['prometheus.io/scrape'], 'true');
  t.strictSame(pod.spec?.imagePullSecrets, [{ name: 'regcred' }]);
  t.equal(pod.spec?.priorityClassName, 'system-cluster-critical');
  t.equal(deploymentOf(manifests).metadata?.labels?.team, 'storage', 'commonLabels');
});

t.test('the VolumePopulator only where its API is served', async (t) => {
  t.equal(byKind(await render(), 'VolumePopulator').length, 0, 'absent without populator.storage.k8s.io/v1beta1');
  const manifests = await render({ apiVersions: ['populator.storage.k8s.io/v1beta1'] });
  t.match(oneOf(manifests, 'VolumePopulator'), {
    apiVersion: 'populator.storage.k8s.io/v1beta1',
    metadata: { name: 'pvshift' },
    sourceKind: { group: 'pvshift.io', kind: 'VolumeMigration' },
  });
});

t.test('names follow the release; the default release keeps them pvshift', async (t) => {
  const other = await render({ release: 'storage' });
  t.equal(webhookConfigurationOf(other).metadata?.name, 'storage-pvshift');
  t.equal(flagsOf(other).get('webhook-configuration'), 'storage-pvshift');
  const role = oneOf(other, 'ClusterRole') as unknown as { rules: { resourceNames?: string[] }[] };
  t.strictSame(
    role.rules.find((r) => r.resourceNames)?.resourceNames,
    ['storage-pvshift'],
    'RBAC names the configuration the chart renders',
  );
  const overridden = await render({ release: 'storage', set: ['fullnameOverride=pvshift'] });
  t.equal(webhookConfigurationOf(overridden).metadata?.name, 'pvshift');
});

// Each impossible combination, and the message that says what to change.
const IMPOSSIBLE: { name: string; set: string[]; message: RegExp }[] = [
  {
    name: 'provided without a Secret',
    set: ['certificates.mode=provided', 'certificates.provided.caBundle=abc'],
    message: /certificates\.mode=provided needs certificates\.provided\.secretName/,
  },
  {
    name: 'provided without a CA',
    set: ['certificates.mode=provided', 'certificates.provided.secretName=tls'],
    message: /certificates\.mode=provided needs certificates\.provided\.caBundle/,
  },
  {
    name: 'cert-manager with a URL',
    set: ['certificates.mode=certManager', 'webhook.url=https://127.0.0.1:9443'],
    message: /certManager cannot be used with webhook\.url/,
  },
  {
    name: 'cert-manager with a caBundle',
    set: ['certificates.mode=certManager', 'webhook.caBundle=abc'],
    message: /webhook\.caBundle must stay empty with certificates\.mode=certManager/,
  },
  {
    name: 'a caBundle without a URL',
    set: ['webhook.caBundle=abc'],
    message: /webhook\.caBundle is only for webhook\.url/,
  },
  {
    name: 'no ServiceAccount to run as',
    set: ['serviceAccount.create=false'],
    message: /serviceAccount\.name is required when serviceAccount\.create is false/,
  },
  {
    name: 'an issuerRef without a name',
    set: ['certificates.mode=certManager', 'certificates.certManager.issuerRef.kind=ClusterIssuer'],
    message: /issuerRef/,
  },
  // The schema's share: unknown keys, enums, patterns.
  {
    name: 'an unknown certificate mode',
    set: ['certificates.mode=selfSigned'],
    message: /certificates\/mode.*one of 'managed', 'certManager', 'provided'/,
  },
  { name: 'a misspelt key', set: ['replicas=3'], message: /additional properties 'replicas' not allowed/ },
  { name: 'a plain-HTTP URL', set: ['webhook.url=http://127.0.0.1:9443'], message: /webhook\/url/ },
  { name: 'zero replicas', set: ['replicaCount=0'], message: /replicaCount/ },
  { name: 'a malformed digest', set: ['image.digest=latest'], message: /image\/digest/ },
  { name: 'a bad pull policy', set: ['image.pullPolicy=Sometimes'], message: /pullPolicy/ },
  { name: 'zero copies per node', set: ['copy.maxCopiesPerNode=0'], message: /maxCopiesPerNode/ },
];

t.test('impossible combinations fail the render with their message', async (t) => {
  for (const c of IMPOSSIBLE) {
    const result = await helm(templateArgs({ set: c.set }));
    t.not(result.code, 0, `${c.name}: the render fails`);
    t.match(result.stderr, c.message, `${c.name}: says why`);
  }
});

t.test('too old a cluster is refused (scheduling gates and matchConditions are GA from 1.30)', async (t) => {
  const args = templateArgs();
  args[args.indexOf('--kube-version') + 1] = '1.29.9';
  const result = await helm(args);
  t.not(result.code, 0);
  t.match(result.stderr, /kubeVersion/);
});
