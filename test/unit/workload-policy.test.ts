// A StatefulSet's standing policy: which claims it covers, what the webhook makes
// of a new replica's claim, and what the controller does about existing ones.
import t from 'tap';
import type { V1Deployment, V1PersistentVolumeClaim, V1StatefulSet } from '@kubernetes/client-node';
import { ANNOTATION_WORKLOAD, LABEL_CREATED_FROM, shortcutAction } from '../../populator/shortcut.js';
import {
  ANNOTATION_CUTOVER,
  ANNOTATION_TARGET_CLASS,
  ANNOTATION_TARGET_SIZE,
  ANNOTATION_VOLUME_CLAIM_TEMPLATES,
} from '../../src/names.js';
import type { VolumeMigration } from '../../src/volume-migration.js';
import {
  claimUnderPolicy,
  deploymentPolicyOf,
  isOnPolicyTarget,
  policyProblem,
  workloadPolicyOf,
} from '../../src/workload-policy.js';
import { mutateClaim } from '../../webhook/mutate-claim.js';

function statefulSet(annotations: Record<string, string>, extra: { deleting?: boolean; ns?: string } = {}) {
  return {
    metadata: {
      name: 'db',
      namespace: extra.ns ?? 'shop',
      annotations,
      ...(extra.deleting ? { deletionTimestamp: new Date() } : {}),
    },
    spec: {
      selector: { matchLabels: { app: 'db' } },
      serviceName: 'db',
      template: {},
      volumeClaimTemplates: [{ metadata: { name: 'data' } }, { metadata: { name: 'logs' } }],
    },
  } as V1StatefulSet;
}

function claim(name: string, extra: { labels?: Record<string, string>; class?: string; size?: string } = {}) {
  return {
    metadata: { name, namespace: 'shop', uid: `uid-${name}`, labels: extra.labels ?? { app: 'db' } },
    spec: {
      accessModes: ['ReadWriteOnce'],
      storageClassName: extra.class ?? 'standard',
      resources: { requests: { storage: extra.size ?? '1Gi' } },
    },
  } as V1PersistentVolumeClaim;
}

const FAST = { [ANNOTATION_TARGET_CLASS]: 'fast' };

t.test('which claims a policy covers', (t) => {
  const sets = [statefulSet(FAST)];
  t.match(workloadPolicyOf(claim('data-db-0'), sets), {
    workload: 'StatefulSet/db',
    template: 'data',
    targetStorageClassName: 'fast',
  });
  t.match(workloadPolicyOf(claim('logs-db-12'), sets), { template: 'logs' }, 'every template, any ordinal');
  const cases: [string, V1PersistentVolumeClaim, V1StatefulSet[]][] = [
    ['no annotation, no policy', claim('data-db-0'), [statefulSet({})]],
    ['a name that only starts like one', claim('data-db-0-copy'), sets],
    ['no ordinal', claim('data-db-'), sets],
    ['another set', claim('data-web-0'), sets],
    ["the selector's labels missing", claim('data-db-0', { labels: { app: 'other' } }), sets],
    ['another namespace', claim('data-db-0'), [statefulSet(FAST, { ns: 'other' })]],
    ['a set being deleted', claim('data-db-0'), [statefulSet(FAST, { deleting: true })]],
    ['a size that is no quantity', claim('data-db-0'), [statefulSet({ ...FAST, [ANNOTATION_TARGET_SIZE]: 'big' })]],
    [
      'a template the annotation leaves out',
      claim('logs-db-0'),
      [statefulSet({ ...FAST, [ANNOTATION_VOLUME_CLAIM_TEMPLATES]: 'data' })],
    ],
  ];
  for (const [name, c, s] of cases) t.equal(workloadPolicyOf(c, s), undefined, name);
  t.match(
    workloadPolicyOf(claim('data-db-0'), [statefulSet({ ...FAST, [ANNOTATION_VOLUME_CLAIM_TEMPLATES]: 'data' })]),
    { template: 'data' },
    'a template the annotation names',
  );
  t.end();
});

t.test("a new replica's claim: created on the target by the webhook, no migration needed", (t) => {
  const sized = workloadPolicyOf(claim('data-db-3'), [statefulSet({ ...FAST, [ANNOTATION_TARGET_SIZE]: '2Gi' })])!;
  const { object, warnings } = mutateClaim(claim('data-db-3'), [], sized);
  t.equal(object.spec?.storageClassName, 'fast');
  t.equal(object.spec?.resources?.requests?.storage, '2Gi');
  t.match(warnings, [/policy of StatefulSet\/db .* storage class fast, 2Gi/]);
  t.same(mutateClaim(object, [], sized), { object, warnings: [] }, 'applied to its own output: nothing');
  t.ok(isOnPolicyTarget(claim('data-db-3', { class: 'fast', size: '4Gi' }), sized), 'bigger than the target: on it');
  t.notOk(isOnPolicyTarget(claim('data-db-3', { class: 'fast', size: '1Gi' }), sized), 'smaller: not');
  const unsized = workloadPolicyOf(claim('data-db-3'), [statefulSet(FAST)])!;
  t.equal(claimUnderPolicy(claim('data-db-3'), unsized).spec?.resources?.requests?.storage, '1Gi', 'size kept');
  t.end();
});

t.test('existing claims: a migration each, none for a claim on the target, withdrawn with the policy', (t) => {
  const policy = workloadPolicyOf(claim('data-db-0'), [statefulSet(FAST)]);
  const action = shortcutAction(claim('data-db-0'), [], policy);
  t.match(action, {
    kind: 'create',
    migration: {
      metadata: {
        name: 'data-db-0',
        labels: { [LABEL_CREATED_FROM]: 'annotation' },
        annotations: { [ANNOTATION_WORKLOAD]: 'StatefulSet/db' },
      },
      spec: { claimName: 'data-db-0', targetStorageClassName: 'fast' },
    },
  });
  t.same(shortcutAction(claim('data-db-0', { class: 'fast' }), [], policy), { kind: 'none' }, 'already there');
  const own = {
    ...claim('data-db-0'),
    metadata: { ...claim('data-db-0').metadata, annotations: { [ANNOTATION_TARGET_CLASS]: 'gold' } },
  };
  t.match(
    shortcutAction(own, [], policy),
    { kind: 'create', migration: { spec: { targetStorageClassName: 'gold' } } },
    "the claim's own annotation wins",
  );
  const made = action.kind === 'create' ? action.migration : undefined;
  const waiting: VolumeMigration = {
    ...made!,
    metadata: { ...made!.metadata, namespace: 'shop' },
    status: { phase: 'WaitingForCutover', originalClaim: { uid: 'uid-data-db-0', spec: {} } },
  };
  t.same(
    shortcutAction(claim('data-db-0'), [waiting], undefined),
    { kind: 'abort', name: 'data-db-0' },
    'policy ended before cutover: withdrawn',
  );
  const done = { ...waiting, status: { ...waiting.status, phase: 'Succeeded' } } as VolumeMigration;
  t.same(
    shortcutAction(claim('data-db-0', { class: 'fast' }), [done], undefined),
    { kind: 'none' },
    'cut over: stays migrated',
  );
  t.end();
});

t.test('a Deployment: the claims its pods mount, no standing policy', (t) => {
  const deployment = (annotations: Record<string, string>, claimName = 'data-db-0') =>
    ({
      metadata: { name: 'web', namespace: 'shop', annotations },
      spec: {
        selector: { matchLabels: { app: 'web' } },
        template: { spec: { containers: [], volumes: [{ name: 'd', persistentVolumeClaim: { claimName } }] } },
      },
    }) as V1Deployment;
  t.match(deploymentPolicyOf(claim('data-db-0'), [deployment(FAST)]), {
    workload: 'Deployment/web',
    standing: false,
    targetStorageClassName: 'fast',
  });
  t.equal(deploymentPolicyOf(claim('data-db-0'), [deployment({})]), undefined, 'not annotated');
  t.equal(deploymentPolicyOf(claim('data-db-0'), [deployment(FAST, 'other')]), undefined, 'another claim');
  t.equal(workloadPolicyOf(claim('data-db-0'), [statefulSet(FAST)])?.standing, true, "a StatefulSet's stands");
  t.end();
});

t.test('what is wrong with a policy is said in words, each problem once', (t) => {
  const set = (a: Record<string, string>) => statefulSet({ ...FAST, ...a });
  t.equal(policyProblem('StatefulSet', statefulSet({})), undefined, 'no policy: nothing to say');
  t.equal(policyProblem('StatefulSet', set({ [ANNOTATION_TARGET_SIZE]: '20Gi' })), undefined, 'a valid policy');
  t.equal(policyProblem('StatefulSet', set({ [ANNOTATION_CUTOVER]: 'OnPodRecreate' })), undefined);
  t.equal(policyProblem('StatefulSet', set({ [ANNOTATION_VOLUME_CLAIM_TEMPLATES]: 'logs, data' })), undefined);
  t.equal(
    policyProblem('StatefulSet', set({ [ANNOTATION_TARGET_SIZE]: 'big' })),
    'pvshift.io/target-size "big" is not a size such as 20Gi: the policy moves no claim until it is fixed or removed',
  );
  t.equal(
    workloadPolicyOf(claim('data-db-0'), [set({ [ANNOTATION_TARGET_SIZE]: 'big' })]),
    undefined,
    'and indeed covers nothing',
  );
  t.match(policyProblem('StatefulSet', set({ [ANNOTATION_TARGET_SIZE]: '0' })), /target-size "0" is not a size/);
  t.equal(
    policyProblem('StatefulSet', set({ [ANNOTATION_CUTOVER]: 'evict' })),
    'pvshift.io/cutover "evict" is neither Evict nor OnPodRecreate: replicas are cut over only when their pods are recreated',
  );
  t.equal(
    policyProblem('StatefulSet', set({ [ANNOTATION_VOLUME_CLAIM_TEMPLATES]: 'data,wal' })),
    'pvshift.io/volume-claim-templates names "wal", not a volumeClaimTemplate of this StatefulSet (it has data, logs): left out',
  );
  t.match(
    policyProblem('StatefulSet', set({ [ANNOTATION_TARGET_SIZE]: 'x', [ANNOTATION_CUTOVER]: 'now' })),
    /target-size "x".*; pvshift.io\/cutover "now"/,
    'several problems: all of them',
  );
  const d = {
    metadata: { name: 'web', namespace: 'shop', annotations: { ...FAST, [ANNOTATION_TARGET_SIZE]: '-1Gi' } },
  };
  t.match(policyProblem('Deployment', d), /target-size "-1Gi" is not a size/, 'a Deployment alike');
  t.equal(
    policyProblem('Deployment', { metadata: { annotations: { ...FAST, [ANNOTATION_VOLUME_CLAIM_TEMPLATES]: 'x' } } }),
    undefined,
    'a Deployment has no templates to name: the annotation means nothing there',
  );
  const known = (name: string) => name === 'fast';
  t.equal(policyProblem('StatefulSet', set({}), known), undefined, 'a class that exists');
  t.equal(
    policyProblem('StatefulSet', statefulSet({ [ANNOTATION_TARGET_CLASS]: 'fsat' }), known),
    'pvshift.io/target-storage-class "fsat" names no StorageClass: the migrations of existing claims fail, ' +
      "and a new replica's claim would wait for that class",
  );
  t.equal(
    policyProblem('StatefulSet', statefulSet({ ...FAST, [ANNOTATION_TARGET_SIZE]: 'big' }, { deleting: true })),
    undefined,
    'a StatefulSet being deleted: nothing to say',
  );
  t.end();
});
