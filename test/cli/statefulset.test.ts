// A StatefulSet as one subject (cli/workload.ts): its replica claims, what the
// rollout will meet, the annotations of its policy and its one-line status.
import t from 'tap';
import type { V1Node, V1Pod, V1PodDisruptionBudget, V1StatefulSet, V1StorageClass } from '@kubernetes/client-node';
import {
  isWorkloadSettled,
  latestPerClaim,
  migrationsOfWorkload,
  policyPatch,
  replicaClaims,
  selectorMatches,
  templatesInScope,
  workloadBlockers,
  workloadFindings,
  workloadStatus,
  type WorkloadFacts,
} from '../../cli/workload.js';
import { preflight } from '../../cli/preflight.js';
import { FULL_FIDELITY, pv, pvc, vm } from './objects.js';

function sts(
  o: {
    replicas?: number;
    templates?: string[];
    annotations?: Record<string, string>;
    strategy?: V1StatefulSet['spec'];
  } = {},
): V1StatefulSet {
  return {
    metadata: { name: 'db', namespace: 'shop', uid: 'u-db', ...(o.annotations ? { annotations: o.annotations } : {}) },
    spec: {
      serviceName: 'db',
      replicas: o.replicas ?? 3,
      selector: { matchLabels: { app: 'db' } },
      template: { metadata: { labels: { app: 'db', tier: 'data' } }, spec: { containers: [] } },
      volumeClaimTemplates: (o.templates ?? ['data']).map((name) => ({ metadata: { name } })),
      ...o.strategy,
    },
  };
}

function pod(ordinal: number, node: string): V1Pod {
  return { metadata: { name: `db-${ordinal}`, namespace: 'shop' }, spec: { nodeName: node, containers: [] } };
}

function budget(name: string, spec: V1PodDisruptionBudget['spec'], allowed?: number): V1PodDisruptionBudget {
  return {
    metadata: { name, namespace: 'shop', generation: 1 },
    spec,
    ...(allowed !== undefined
      ? {
          status: {
            disruptionsAllowed: allowed,
            currentHealthy: 3,
            desiredHealthy: 3,
            expectedPods: 3,
            observedGeneration: 1,
          },
        }
      : {}),
  };
}

function facts(o: Partial<WorkloadFacts> = {}): WorkloadFacts {
  const set = o.set ?? sts();
  const claims = replicaClaims(set, ['data']).map((r) => ({ ...r, claim: pvc(r.name) }));
  return {
    set,
    templates: ['data'],
    claims,
    pods: [pod(0, 'node-1'), pod(1, 'node-1'), pod(2, 'node-1')],
    budgets: [],
    namespaceLabels: FULL_FIDELITY,
    ...o,
  };
}

const codes = (f: { code: string }[]) => f.map((x) => x.code).sort();
const TO = { targetStorageClassName: 'fast' };

t.test('label selectors: matchLabels and every matchExpressions operator', (t) => {
  const labels = { app: 'db', tier: 'data' };
  const cases: [string, Parameters<typeof selectorMatches>[0], boolean][] = [
    ['absent selects nothing', undefined, false],
    ['empty selects everything', {}, true],
    ['matchLabels', { matchLabels: { app: 'db' } }, true],
    ['matchLabels mismatch', { matchLabels: { app: 'web' } }, false],
    ['In', { matchExpressions: [{ key: 'tier', operator: 'In', values: ['data', 'cache'] }] }, true],
    ['In without the key', { matchExpressions: [{ key: 'zone', operator: 'In', values: ['a'] }] }, false],
    ['NotIn', { matchExpressions: [{ key: 'tier', operator: 'NotIn', values: ['data'] }] }, false],
    ['NotIn without the key', { matchExpressions: [{ key: 'zone', operator: 'NotIn', values: ['a'] }] }, true],
    ['Exists', { matchExpressions: [{ key: 'app', operator: 'Exists' }] }, true],
    ['DoesNotExist', { matchExpressions: [{ key: 'app', operator: 'DoesNotExist' }] }, false],
    ['both must hold', { matchLabels: { app: 'db' }, matchExpressions: [{ key: 'x', operator: 'Exists' }] }, false],
    ['unknown operator', { matchExpressions: [{ key: 'app', operator: 'Gt', values: ['1'] }] }, false],
  ];
  for (const [name, selector, expected] of cases) t.equal(selectorMatches(selector, labels), expected, name);
  t.end();
});

t.test('replica claims: every template in scope for ordinals 0..replicas-1', (t) => {
  const set = sts({ replicas: 2, templates: ['data', 'logs'] });
  t.same(
    replicaClaims(set, ['data', 'logs']).map((r) => r.name),
    ['data-db-0', 'logs-db-0', 'data-db-1', 'logs-db-1'],
  );
  t.same(
    replicaClaims({ ...set, spec: { ...set.spec!, ordinals: { start: 5 } } }, ['data']).map((r) => r.name),
    ['data-db-5', 'data-db-6'],
    'spec.ordinals.start',
  );
  t.same(templatesInScope(set, undefined), { ok: true, templates: ['data', 'logs'] });
  t.same(templatesInScope(set, ['logs']), { ok: true, templates: ['logs'] });
  t.same(templatesInScope(set, ['cache']), {
    ok: false,
    message: 'StatefulSet db has no volumeClaimTemplate "cache"; its templates: data, logs',
  });
  t.match(templatesInScope(sts({ templates: [] }), undefined), { ok: false, message: /has no volumeClaimTemplates/ });
  t.end();
});

t.test('what the rollout will meet', (t) => {
  const pdbNone = budget('db', { maxUnavailable: 1, selector: { matchLabels: { app: 'db' } } }, 0);
  const pdbSome = budget('db-ok', { maxUnavailable: 1, selector: { matchLabels: { app: 'db' } } }, 1);
  const pdbOther = budget('web', { maxUnavailable: 0, selector: { matchLabels: { app: 'web' } } }, 0);
  const pdbUnobserved = budget('db-new', {
    maxUnavailable: 0,
    selector: { matchExpressions: [{ key: 'tier', operator: 'In', values: ['data'] }] },
  });
  const pdbMinAll = budget('db-min', { minAvailable: '100%', selector: { matchLabels: { app: 'db' } } });
  const zoned: V1StorageClass = {
    metadata: { name: 'fast' },
    provisioner: 'x',
    allowedTopologies: [{ matchLabelExpressions: [{ key: 'zone', values: ['a'] }] }],
  };
  const node = (name: string, zone: string): V1Node => ({ metadata: { name, labels: { zone } } });
  const spread = [pod(0, 'node-1'), pod(1, 'node-2'), pod(2, 'node-2')];
  const cases: [string, Partial<WorkloadFacts>, string[]][] = [
    ['a quiet StatefulSet: only the Pod Security level', {}, ['PodSecurityLevel']],
    [
      'a budget that allows no disruption',
      { budgets: [pdbNone, pdbSome, pdbOther] },
      ['DisruptionBudget', 'PodSecurityLevel'],
    ],
    [
      'a budget not yet observed, by its spec',
      { budgets: [pdbUnobserved, pdbMinAll] },
      ['DisruptionBudget', 'DisruptionBudget', 'PodSecurityLevel'],
    ],
    [
      'OnDelete',
      { set: sts({ strategy: { updateStrategy: { type: 'OnDelete' } } as V1StatefulSet['spec'] }) },
      ['OnDeleteStrategy', 'PodSecurityLevel'],
    ],
    [
      'a partition',
      {
        set: sts({
          strategy: {
            updateStrategy: { type: 'RollingUpdate', rollingUpdate: { partition: 2 } },
          } as V1StatefulSet['spec'],
        }),
      },
      ['PodSecurityLevel', 'RolloutPartition'],
    ],
    ['RWO on two nodes', { pods: spread }, ['PodSecurityLevel', 'ReadWriteOnceNodes']],
    [
      'a node outside the target class topology',
      {
        pods: spread,
        targetClass: zoned,
        nodes: new Map([
          ['node-1', node('node-1', 'a')],
          ['node-2', node('node-2', 'b')],
        ]),
      },
      ['PodSecurityLevel', 'ReadWriteOnceNodes', 'TopologyMismatch'],
    ],
    [
      'nodes not readable',
      { pods: spread, targetClass: zoned },
      ['PodSecurityLevel', 'ReadWriteOnceNodes', 'TopologyUnknown'],
    ],
    [
      'restricted namespace blocks',
      { namespaceLabels: { 'pod-security.kubernetes.io/enforce': 'restricted' } },
      ['PodSecurityRestricted'],
    ],
    ['namespace not readable', { namespaceLabels: undefined }, ['PodSecurityUnknown']],
  ];
  for (const [name, over, expected] of cases) {
    const f = facts(over);
    if (over.namespaceLabels === undefined && 'namespaceLabels' in over) delete f.namespaceLabels;
    t.same(codes(workloadFindings(f, TO)), expected, name);
  }
  const withBudget = workloadFindings(facts({ budgets: [pdbNone] }), TO).find((f) => f.code === 'DisruptionBudget');
  t.equal(withBudget?.severity, 'warning');
  t.match(
    withBudget?.message,
    /^PodDisruptionBudget db selects the pods of StatefulSet db and allows no disruption \(status\.disruptionsAllowed 0\): kubectl rollout restart deletes pods without asking it/,
  );
  const mismatch = workloadFindings(
    facts({
      pods: spread,
      targetClass: zoned,
      nodes: new Map([
        ['node-1', node('node-1', 'a')],
        ['node-2', node('node-2', 'b')],
      ]),
    }),
    TO,
  ).find((f) => f.code === 'TopologyMismatch');
  t.match(
    mismatch?.message,
    /^db-1, db-2 run on node node-2, outside the allowedTopologies of StorageClass fast \(zone in \(a\)\)/,
  );
  const claims = facts().claims;
  t.same(
    codes(workloadFindings(facts({ claims: [claims[0]!, { ...claims[1]!, claim: undefined }, claims[2]!] }), TO)),
    ['PodSecurityLevel', 'ReplicaClaimMissing'],
    'a replica claim not created yet',
  );
  t.end();
});

t.test('migrate sts/NAME: blockers, and the annotations it writes', (t) => {
  const on = preflight(
    {
      claim: pvc('data-db-0', { cls: 'fast' }),
      volume: pv('pv-data-db-0'),
      consumers: ['db-0'],
      owners: [],
      migrations: [],
      namespaceLabels: FULL_FIDELITY,
    },
    { targetStorageClassName: 'fast', targetClassExists: true },
  );
  const raw = preflight(
    {
      claim: pvc('data-db-1', { mode: 'Block' }),
      volume: pv('pv-data-db-1'),
      consumers: ['db-1'],
      owners: [],
      migrations: [],
      namespaceLabels: FULL_FIDELITY,
    },
    { targetStorageClassName: 'fast', targetClassExists: true },
  );
  t.same(workloadBlockers([on], []), [], 'a replica on the target already is left alone');
  t.match(workloadBlockers([on, raw], [{ severity: 'blocking', code: 'PodSecurityRestricted', message: 'no' }]), [
    'PodSecurityRestricted: no',
    /^data-db-1: BlockVolumeUnsupported: /,
  ]);

  const set = sts({ annotations: { 'pvshift.io/target-storage-class': 'slow', 'pvshift.io/target-size': '5Gi' } });
  t.same(
    policyPatch(set, { target: 'fast' }),
    {
      metadata: {
        annotations: {
          'pvshift.io/target-storage-class': 'fast',
          'pvshift.io/target-size': null,
          'pvshift.io/volume-claim-templates': null,
        },
      },
    },
    'the whole policy: a size not given now is removed',
  );
  t.same(policyPatch(set, { target: 'fast', size: '20Gi', templates: ['data', 'logs'] })?.metadata.annotations, {
    'pvshift.io/target-storage-class': 'fast',
    'pvshift.io/target-size': '20Gi',
    'pvshift.io/volume-claim-templates': 'data,logs',
  });
  t.equal(policyPatch(set, { target: 'slow', size: '5Gi' }), undefined, 'no change, no patch');
  t.end();
});

const progress = (done: number, total: number, eta?: number) => ({
  bytesDone: done,
  bytesTotal: total,
  filesDone: 1,
  filesTotal: 2,
  bytesPerSecond: 1,
  ...(eta !== undefined ? { etaSeconds: eta } : {}),
  updatedAt: '2025-03-04T12:00:00Z',
});

t.test('status sts/NAME: one line for the replicas', (t) => {
  const set = sts({ annotations: { 'pvshift.io/target-storage-class': 'fast' } });
  const claims = (classes: string[]) =>
    replicaClaims(set, ['data']).map((r, i) => ({ ...r, claim: pvc(r.name, { cls: classes[i] ?? 'standard' }) }));
  const done0 = vm('data-db-0', 'Succeeded');
  const copying1 = vm('data-db-1', 'PreSyncing', { status: { progress: progress(41, 100, 120) } });
  const waiting2 = vm('data-db-2', 'WaitingForCutover');
  const cases: [string, string[], ReturnType<typeof vm>[], string][] = [
    ['nothing started', [], [], '0/3 replicas on fast'],
    [
      'the example of the issue',
      ['fast', 'standard', 'fast'],
      [done0, copying1, vm('data-db-2', 'Succeeded')],
      '2/3 replicas on fast, data-db-1 copying 41%, ETA 2m00s',
    ],
    [
      'each phase in a few words',
      ['fast'],
      [done0, copying1, waiting2],
      '1/3 replicas on fast, data-db-1 copying 41%, ETA 2m00s, data-db-2 waiting for cutover',
    ],
    [
      'the percentage from progressText when no counters',
      [],
      [vm('data-db-0', 'Populating', { status: { progressText: '1.2 GiB / 4.0 GiB (30%)' } })],
      '0/3 replicas on fast, data-db-0 final copy 30%',
    ],
    ['a failure is said', [], [vm('data-db-0', 'Failed')], '0/3 replicas on fast, data-db-0 Failed'],
    [
      'an old failure of a claim now on the target is not',
      ['fast'],
      [vm('data-db-0', 'Failed')],
      '1/3 replicas on fast',
    ],
  ];
  for (const [name, classes, migrations, summary] of cases)
    t.equal(workloadStatus(set, claims(classes), migrations).summary, summary, name);

  const s = workloadStatus(set, claims(['fast']), [done0, copying1]);
  t.match(s, {
    workload: 'StatefulSet/db',
    namespace: 'shop',
    target: 'fast',
    targetSize: null,
    replicas: 3,
    onTarget: 1,
  });
  t.same(
    s.migrations.map((m) => m.name),
    ['data-db-0', 'data-db-1'],
  );
  t.equal(isWorkloadSettled(s, [done0, copying1]), false, 'a copy runs: not settled');
  const all = workloadStatus(set, claims(['fast', 'fast', 'fast']), [done0]);
  t.equal(all.summary, '3/3 replicas on fast');
  t.equal(isWorkloadSettled(all, [done0]), true, 'every replica on the target');
  t.equal(isWorkloadSettled(workloadStatus(set, claims([]), []), []), false, 'the controller has made nothing yet');

  const bare = sts();
  t.equal(
    workloadStatus(bare, replicaClaims(bare, ['data']), []).summary,
    'StatefulSet db has no pvshift policy and no migrations (start one: kubectl pvshift migrate sts/db --to CLASS)',
  );
  t.match(
    workloadStatus(bare, replicaClaims(bare, ['data']), [copying1]),
    { target: 'fast', onTarget: 0 },
    'target from its migrations',
  );
  t.end();
});

t.test("which migrations are the StatefulSet's", (t) => {
  const policy = (name: string) => {
    const m = vm(name, 'PreSyncing');
    m.metadata.annotations = { 'pvshift.io/workload': 'StatefulSet/db' };
    return m;
  };
  const all = [
    policy('data-db-4'),
    policy('logs-db-0'),
    vm('data-db-0', 'Succeeded'),
    vm('data-web-0', 'Pending'),
    vm('other', 'Pending', { claim: 'data-db-1' }),
  ];
  t.same(
    migrationsOfWorkload('db', ['data'], new Set(['data-db-0', 'data-db-1']), all).map((m) => m.metadata.name),
    ['data-db-0', 'data-db-4', 'other'],
    'made for its policy (templates in scope), or of its replica claims',
  );
  const older = vm('data-db-0', 'Failed', { created: 900 });
  const newer = { ...vm('data-db-0-b', 'Succeeded', { created: 60, claim: 'data-db-0' }) };
  const running = vm('data-db-0-c', 'PreSyncing', { created: 1200, claim: 'data-db-0' });
  t.same(
    latestPerClaim([older, newer]).map((m) => m.metadata.name),
    ['data-db-0-b'],
    'the newest ended one',
  );
  t.same(
    latestPerClaim([older, newer, running]).map((m) => m.metadata.name),
    ['data-db-0-c'],
    'an unfinished one first',
  );
  t.end();
});
