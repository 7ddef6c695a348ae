// The chart's ValidatingAdmissionPolicy, rendered: on by default, off by value,
// naming the ServiceAccount pvshift runs as whatever the release and values,
// protecting exactly the PV annotations src/names.ts defines. What it does to
// real requests is test/cluster/rbac.test.ts.
import t from 'tap';
import { ANNOTATION_MIGRATION, ANNOTATION_MIGRATION_UID, ANNOTATION_ORIGINAL_RECLAIM_POLICY } from '../../src/names.js';
import { byKind, oneOf, render, type Manifest } from './helm.js';

interface Policy {
  metadata: { name: string };
  spec: {
    failurePolicy: string;
    matchConstraints: { resourceRules: { apiGroups: string[]; operations: string[]; resources: string[] }[] };
    matchConditions: { name: string; expression: string }[];
    variables: { name: string; expression: string }[];
    validations: { expression: string; reason?: string; message?: string; messageExpression?: string }[];
  };
}
interface Binding {
  metadata: { name: string };
  spec: { policyName: string; validationActions: string[]; matchResources?: unknown };
}

const policyOf = (manifests: Manifest[]) => oneOf(manifests, 'ValidatingAdmissionPolicy') as unknown as Policy;
const bindingOf = (manifests: Manifest[]) => oneOf(manifests, 'ValidatingAdmissionPolicyBinding') as unknown as Binding;

t.test('on by default: a policy and a binding that denies', async (t) => {
  const manifests = await render();
  const policy = policyOf(manifests);
  const binding = bindingOf(manifests);
  t.equal(policy.metadata.name, 'pvshift-records');
  t.equal(policy.spec.failurePolicy, 'Fail', 'an expression that cannot be evaluated denies');
  t.equal(binding.spec.policyName, policy.metadata.name);
  t.strictSame(binding.spec.validationActions, ['Deny']);
  t.notOk(binding.spec.matchResources, 'every namespace and cluster-scoped objects');
  t.match(policy.spec.matchConstraints.resourceRules, [
    { apiGroups: ['pvshift.io'], operations: ['UPDATE'], resources: ['volumemigrations/status'] },
    { apiGroups: [''], operations: ['CREATE', 'UPDATE'], resources: ['persistentvolumes', 'persistentvolumes/status'] },
  ]);
  t.strictSame(
    policy.spec.matchConditions,
    [
      {
        name: 'not-pvshift',
        expression: "request.userInfo.username != 'system:serviceaccount:pvshift-system:pvshift'",
      },
    ],
    'everyone but pvshift',
  );
  const keys = [ANNOTATION_MIGRATION_UID, ANNOTATION_ORIGINAL_RECLAIM_POLICY, ANNOTATION_MIGRATION];
  t.equal(
    policy.spec.variables.find((v) => v.name === 'protectedKeys')?.expression,
    `[${keys.map((k) => `'${k}'`).join(', ')}]`,
    'the annotation keys of src/names.ts',
  );
  for (const v of policy.spec.validations) t.equal(v.reason, 'Forbidden', `${v.expression}: Forbidden`);
  t.match(
    policy.spec.validations[0]?.message,
    /only pvshift \(system:serviceaccount:pvshift-system:pvshift\) may write the status of a VolumeMigration/,
  );
});

t.test('admissionPolicy.enabled=false renders neither', async (t) => {
  const manifests = await render({ set: ['admissionPolicy.enabled=false'] });
  t.equal(byKind(manifests, 'ValidatingAdmissionPolicy').length, 0);
  t.equal(byKind(manifests, 'ValidatingAdmissionPolicyBinding').length, 0);
});

t.test('the exempt identity follows the release, its namespace and the ServiceAccount values', async (t) => {
  const cases: { name: string; options: Parameters<typeof render>[0]; user: string; policy: string }[] = [
    {
      name: 'another release and namespace',
      options: { release: 'storage', namespace: 'storage-system' },
      user: 'system:serviceaccount:storage-system:storage-pvshift',
      policy: 'storage-pvshift-records',
    },
    {
      name: 'a named ServiceAccount',
      options: { set: ['serviceAccount.name=mover'] },
      user: 'system:serviceaccount:pvshift-system:mover',
      policy: 'pvshift-records',
    },
    {
      name: 'an existing ServiceAccount',
      options: { valuesFiles: ['existing-service-account.yaml'] },
      user: 'system:serviceaccount:pvshift-system:platform-pvshift',
      policy: 'pvshift-records',
    },
  ];
  for (const c of cases) {
    const manifests = await render(c.options);
    const policy = policyOf(manifests);
    t.equal(policy.metadata.name, c.policy, `${c.name}: policy name`);
    t.equal(
      policy.spec.matchConditions[0]?.expression,
      `request.userInfo.username != '${c.user}'`,
      `${c.name}: exempts ${c.user}`,
    );
    t.equal(bindingOf(manifests).spec.policyName, c.policy);
    const serviceAccount = byKind(manifests, 'ServiceAccount')[0];
    const deployment = oneOf(manifests, 'Deployment') as unknown as {
      spec: { template: { spec: { serviceAccountName: string } } };
    };
    t.equal(
      `system:serviceaccount:${c.options?.namespace ?? 'pvshift-system'}:${deployment.spec.template.spec.serviceAccountName}`,
      c.user,
      `${c.name}: the identity the Deployment runs as`,
    );
    if (serviceAccount) t.equal(serviceAccount.metadata.name, deployment.spec.template.spec.serviceAccountName);
  }
});
