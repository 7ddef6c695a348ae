// The renderers: pure data in, text out, compared exactly with the files in
// fixtures/ (with `now` fixed, ages and live downtime are deterministic).
import t from 'tap';
import { preflight } from '../../cli/preflight.js';
import { findRetained } from '../../cli/decisions.js';
import {
  formatAge,
  formatDuration,
  progressBar,
  renderCleanup,
  renderData,
  renderPlan,
  renderStatus,
  renderWorkloadPlan,
  renderWorkloadStatus,
  statusExitCode,
  statusItem,
  syncText,
  table,
} from '../../cli/render.js';
import { replicaClaims, workloadBlockers, workloadFindings, workloadStatus } from '../../cli/workload.js';
import { matchFixture } from './fixture.js';
import { ago, FULL_FIDELITY, NOW, pv, pvc, vm } from './objects.js';

const plain = { color: false, now: NOW, showNamespace: false };

t.test('progress bar', (t) => {
  const cases: [number, number, string][] = [
    [0, 100, '[--------------------]   0%'],
    [5, 100, '[#-------------------]   5%'],
    [50, 100, '[##########----------]  50%'],
    [999, 1000, '[###################-]  99%'],
    [100, 100, '[####################] 100%'],
    [150, 100, '[####################] 100%'],
    [10, 0, '[                    ]    ?'],
  ];
  for (const [done, total, expected] of cases) t.equal(progressBar(done, total), expected, `${done} of ${total}`);
  t.equal(progressBar(1, 4, 8), '[##------]  25%', 'width');
  t.end();
});

t.test('durations and ages', (t) => {
  t.equal(formatDuration(0), '0s');
  t.equal(formatDuration(59.4), '59s');
  t.equal(formatDuration(65), '1m05s');
  t.equal(formatDuration(3 * 3600 + 4 * 60), '3h04m');
  t.equal(formatDuration(72 * 3600), '3d');
  t.equal(formatAge(ago(30), NOW), '30s');
  t.equal(formatAge(ago(600), NOW), '10m');
  t.equal(formatAge(ago(5 * 3600), NOW), '5h');
  t.equal(formatAge(ago(4 * 86400), NOW), '4d');
  t.equal(formatAge(undefined, NOW), '<unknown>');
  t.end();
});

t.test('table: padded columns, colour never counts as width', (t) => {
  t.equal(
    table(
      ['A', 'LONG HEADER'],
      [
        ['x', 'y'],
        ['wider', { text: 'z', colour: 'red' }],
      ],
    ),
    'A      LONG HEADER\nx      y\nwider  z\n',
  );
  t.equal(table(['A', 'B'], [[{ text: 'ok', colour: 'green' }, 'b']], true), 'A   B\n\x1b[32mok\x1b[0m  b\n');
  t.end();
});

const progress = (done: number, total: number, rate: number, eta?: number) => ({
  bytesDone: done,
  bytesTotal: total,
  filesDone: 10,
  filesTotal: 40,
  bytesPerSecond: rate,
  ...(eta !== undefined ? { etaSeconds: eta } : {}),
  updatedAt: ago(1),
});

const migrations = [
  vm('data-web-0', 'Succeeded', {
    status: {
      downtimeSeconds: 12.4,
      progress: progress(2 ** 30, 2 ** 30, 0),
      message: 'claim data-web-0 is on fast',
      completionTime: ago(300),
      sourceVolumeName: 'pv-old-0',
    },
  }),
  vm('data-web-1', 'Populating', {
    created: 120,
    status: {
      gatedAt: ago(45),
      progress: progress(300 * 2 ** 20, 1200 * 2 ** 20, 20 * 2 ** 20, 45),
      message: 'final copy',
    },
  }),
  vm('data-web-2', 'PreSyncing', {
    size: '20Gi',
    status: { progress: progress(0, 0, 0), message: 'copying while the application runs' },
  }),
  vm('queue', 'Populating', { abort: true, status: { progress: progress(10, 100, 1024, 3) } }),
  vm('logs', 'Failed', {
    ns: 'ops',
    to: 'platinum',
    created: 7200,
    status: { message: 'target StorageClass platinum does not exist' },
  }),
  vm('cache', 'RolledBack', { status: { message: 'aborted during the final copy', downtimeSeconds: 3 } }),
  vm('fresh', undefined, { created: 5 }),
];

t.test('status table', (t) => {
  matchFixture(t, 'status.txt', renderStatus(migrations, plain));
  matchFixture(t, 'status-all-namespaces.txt', renderStatus(migrations, { ...plain, showNamespace: true }));
  matchFixture(t, 'status-color.txt', renderStatus(migrations.slice(0, 1), { ...plain, color: true }));
  t.equal(renderStatus([], plain), 'No VolumeMigrations found.\n');
  t.end();
});

// What is kept where, and what the copy could not keep.
const keptSource = {
  name: 'pv-old-db',
  role: 'source' as const,
  message:
    'the original data, reclaim policy Retain; to use it again, point its claimRef at a claim and create that claim with spec.volumeName: pv-old-db',
};
const keptCopy = {
  name: 'pv-new-db',
  role: 'copy' as const,
  message: 'the verified final copy on fast, reclaim policy Retain, owned by nothing',
};
const kept = [
  vm('db', 'Held', {
    created: 3600,
    status: {
      gatedAt: ago(1800),
      message:
        'the target volume cannot be bound to the replacement claim; held: pods stay gated and new claims of the name stay rewritten, so nothing starts on an empty volume; see keptVolumes for the data',
      keptVolumes: [keptSource, keptCopy],
      copyFidelity: { level: 'baseline', privileged: false, dropped: ['trusted xattrs'] },
    },
  }),
  vm('cache', 'Failed', {
    status: {
      message: 'released from hold: pods are no longer gated; the data is kept on pv-new-cache',
      keptVolumes: [{ ...keptCopy, name: 'pv-new-cache' }],
    },
  }),
  vm('logs', 'Failed', { to: 'platinum', status: { message: 'target StorageClass platinum does not exist' } }),
  vm('web', 'Succeeded', {
    status: {
      downtimeSeconds: 4,
      message: 'migrated to fast',
      copyFidelity: { level: 'privileged', privileged: false, dropped: ['trusted xattrs'] },
    },
  }),
  vm('queue', 'Succeeded', {
    status: {
      downtimeSeconds: 2,
      message: 'migrated to fast',
      copyFidelity: { level: 'privileged', privileged: true, dropped: [] },
    },
  }),
];

t.test('status: kept volumes of Held and Failed migrations, and what the copy dropped', (t) => {
  matchFixture(t, 'status-kept.txt', renderStatus(kept, plain));
  const text = renderStatus(kept, { ...plain, showNamespace: true });
  t.match(
    text,
    /\nshop\/db: Held: the target volume cannot be bound .*\n {2}kept pv-old-db \(source\): the original data, .*\n {2}kept pv-new-db \(copy\): the verified final copy .*\n {2}to release the held pods: kubectl delete volumemigration db -n shop \(the kept volumes stay\)\n {2}not copied: trusted xattrs \(Pod Security baseline\)\n/,
  );
  t.match(
    renderStatus([vm('db', 'Held', { abort: true, status: { keptVolumes: [keptSource] } })], plain),
    /to release the held pods: kubectl delete volumemigration db/,
    'abort set (it started the rollback) does not release: deleting does, and the hint stays',
  );
  t.match(
    text,
    /\nshop\/web: not copied: trusted xattrs \(Pod Security privileged without pvshift\.io\/privileged-copy=true\)\n/,
  );
  t.notMatch(text, /shop\/logs:/, 'a Failed migration that kept nothing says it all in its row');
  t.notMatch(text, /shop\/queue:/, 'a full copy has nothing to add');
  t.end();
});

t.test('status json: stable field names', (t) => {
  matchFixture(t, 'status.json', renderData({ items: migrations.slice(0, 2).map(statusItem) }, 'json'));
  matchFixture(t, 'status.yaml', renderData({ items: migrations.slice(4, 5).map(statusItem) }, 'yaml'));
  matchFixture(t, 'status-held.json', renderData({ items: kept.slice(0, 1).map(statusItem) }, 'json'));
  t.end();
});

t.test('status exit code: 1 for Held, Failed or RolledBack', (t) => {
  t.equal(statusExitCode(migrations.slice(0, 4)), 0);
  t.equal(statusExitCode([migrations[4]!]), 1, 'Failed');
  t.equal(statusExitCode([migrations[5]!]), 1, 'RolledBack');
  t.equal(statusExitCode([kept[0]!]), 1, 'Held: it waits for the user');
  t.equal(statusExitCode([vm('x', 'Aborted')]), 0, 'Aborted is what was asked');
  t.end();
});

t.test('plan table with findings', (t) => {
  const sibling = vm('other', 'WaitingForCutover', { claim: 'orders' });
  const rows = [
    preflight(
      {
        claim: pvc('data-web-0'),
        volume: pv('pv-data-web-0'),
        consumers: ['web-0'],
        owners: ['StatefulSet/web'],
        migrations: [],
        namespaceLabels: FULL_FIDELITY,
      },
      { targetStorageClassName: 'fast', targetClassExists: true },
    ),
    preflight(
      {
        claim: pvc('logs', { size: '20Gi' }),
        volume: pv('pv-logs', { capacity: '20Gi' }),
        consumers: ['app-7d9-x', 'app-7d9-y'],
        owners: ['Deployment/app', 'Deployment/app'],
        migrations: [],
        namespaceLabels: { 'pod-security.kubernetes.io/enforce': 'baseline' },
      },
      { targetStorageClassName: 'fast', targetSize: '10Gi', targetClassExists: true },
    ),
    preflight(
      {
        claim: pvc('raw', { mode: 'Block' }),
        volume: pv('pv-raw'),
        consumers: [],
        owners: [],
        migrations: [],
        namespaceLabels: FULL_FIDELITY,
      },
      { targetStorageClassName: 'fast', targetClassExists: true },
    ),
    preflight(
      {
        claim: pvc('orders'),
        volume: pv('pv-orders'),
        consumers: ['orders-0'],
        owners: ['StatefulSet/orders'],
        migrations: [sibling],
        namespaceLabels: FULL_FIDELITY,
      },
      { targetStorageClassName: 'fast', targetClassExists: true },
    ),
    preflight(
      {
        claim: pvc('later', { cls: 'fast', phase: 'Pending' }),
        consumers: [],
        owners: [],
        migrations: [],
        namespaceLabels: FULL_FIDELITY,
      },
      { targetStorageClassName: 'fast', targetSize: '5Gi', targetClassExists: true },
    ),
    preflight(
      {
        claim: pvc('db'),
        volume: pv('pv-db'),
        consumers: ['db-0'],
        owners: ['StatefulSet/db'],
        migrations: [],
        namespaceLabels: { 'pod-security.kubernetes.io/enforce': 'restricted' },
      },
      { targetStorageClassName: 'fast', targetClassExists: true },
    ),
    preflight(
      {
        claim: pvc('data-web-1'),
        volume: pv('pv-data-web-1'),
        consumers: ['web-1'],
        owners: ['StatefulSet/web'],
        migrations: [vm('data-web-1', 'Succeeded')],
        namespaceLabels: FULL_FIDELITY,
      },
      { targetStorageClassName: 'fast', targetClassExists: true },
    ),
  ];
  matchFixture(t, 'plan.txt', renderPlan(rows, plain));
  matchFixture(t, 'plan-all-namespaces.txt', renderPlan(rows.slice(0, 2), { ...plain, showNamespace: true }));
  matchFixture(t, 'plan.json', renderData({ items: rows.slice(0, 2) }, 'json'));
  t.equal(renderPlan([], plain), 'No claims match.\n');
  t.end();
});

t.test('cleanup table: every retained volume, its record, and whether --yes releases it', (t) => {
  const done = vm('data-web-0', 'Succeeded', {
    status: { sourceVolumeName: 'pv-old-0', completionTime: ago(3 * 86400) },
  });
  const held = vm('db', 'Held', { status: { sourceVolumeName: 'pv-old-db', keptVolumes: [keptSource] } });
  const by = (key: string) => ({ 'pvshift.io/migration': key });
  const volumes = [
    pv('pv-old-0', { policy: 'Retain', phase: 'Released', annotations: by('shop/data-web-0') }),
    pv('pv-older-0', {
      policy: 'Retain',
      phase: 'Released',
      annotations: by('shop/data-web-0'),
      claimRef: { namespace: 'shop', name: 'data-web-0', uid: 'u-1' },
    }),
    pv('pv-restored', {
      policy: 'Retain',
      phase: 'Bound',
      annotations: by('shop/data-web-1'),
      claimRef: { namespace: 'shop', name: 'restore', uid: 'u-2' },
    }),
    pv('pv-old-db', { policy: 'Retain', phase: 'Released', annotations: by('shop/db') }),
  ];
  matchFixture(
    t,
    'cleanup.txt',
    renderCleanup(findRetained(volumes, [done, held], new Set(['u-2']), undefined), plain),
  );
  t.equal(renderCleanup([], plain), 'No retained old volumes.\n');
  t.end();
});

t.test('status: a migration waiting for cutover says when it last synced and what the final copy should take', (t) => {
  const waiting = vm('data', 'WaitingForCutover', {
    status: {
      syncPasses: 4,
      lastSyncTime: ago(90),
      lastSync: { bytesTransferred: 3 * 1024 * 1024, filesTransferred: 2, seconds: 1.6 },
      finalCopyEstimateSeconds: 1.6,
    },
  });
  const line = 'synced 90s ago (pass 4): moved 3.0 MiB (2 files) in 2s; final copy estimated 2s';
  t.equal(syncText(waiting, NOW), line);
  t.match(renderStatus([waiting], plain), `\ndata: ${line}\n`, 'below the table');
  t.equal(syncText(vm('data', 'WaitingForCutover'), NOW), undefined, 'nothing synced: nothing said');
  t.equal(
    syncText({ ...waiting, status: { ...waiting.status, phase: 'Populating' } }, NOW),
    undefined,
    'only while waiting',
  );
  t.end();
});

t.test('a StatefulSet: its plan with what the rollout will meet, and its status line above the table', (t) => {
  const set = {
    metadata: { name: 'db', namespace: 'shop', annotations: { 'pvshift.io/target-storage-class': 'fast' } },
    spec: {
      replicas: 3,
      selector: { matchLabels: { app: 'db' } },
      serviceName: 'db',
      template: { metadata: { labels: { app: 'db' } } },
      volumeClaimTemplates: [{ metadata: { name: 'data' } }],
    },
  };
  const claims = replicaClaims(set, ['data']).map((r, i) => ({
    ...r,
    claim: pvc(r.name, { cls: i === 2 ? 'fast' : 'standard' }),
  }));
  const rows = claims.map((c) =>
    preflight(
      {
        claim: c.claim,
        volume: pv(`pv-${c.name}`),
        consumers: [`db-${c.ordinal}`],
        owners: ['StatefulSet/db'],
        migrations: [],
        namespaceLabels: FULL_FIDELITY,
      },
      { targetStorageClassName: 'fast', targetClassExists: true },
    ),
  );
  const findings = workloadFindings(
    {
      set,
      templates: ['data'],
      claims,
      pods: [0, 1, 2].map((i) => ({
        metadata: { name: `db-${i}` },
        spec: { nodeName: `node-${i % 2}`, containers: [] },
      })),
      budgets: [
        {
          metadata: { name: 'db', generation: 1 },
          spec: { maxUnavailable: 0, selector: { matchLabels: { app: 'db' } } },
          status: {
            disruptionsAllowed: 0,
            currentHealthy: 3,
            desiredHealthy: 3,
            expectedPods: 3,
            observedGeneration: 1,
          },
        },
      ],
      namespaceLabels: { 'pod-security.kubernetes.io/enforce': 'baseline' },
    },
    { targetStorageClassName: 'fast' },
  );
  const view = {
    workload: { name: 'db', namespace: 'shop', replicas: 3, templates: ['data'] },
    target: 'fast',
    blockers: workloadBlockers(rows, findings),
    findings,
    items: rows,
  };
  matchFixture(t, 'plan-statefulset.txt', renderWorkloadPlan(view, plain));
  const blocked = { ...view, blockers: ['data-db-1: BlockVolumeUnsupported: no'] };
  t.match(renderWorkloadPlan(blocked, plain), /\nmigrate sts\/db would refuse: 1 blocking finding \(/);

  const migrations = [
    vm('data-db-1', 'PreSyncing', {
      status: { progress: progress(410 * 2 ** 20, 1000 * 2 ** 20, 10 * 2 ** 20, 120) },
    }),
    vm('data-db-2', 'Succeeded', { status: { progress: progress(2 ** 30, 2 ** 30, 0) } }),
  ];
  const summary = workloadStatus(set, claims, migrations);
  matchFixture(t, 'status-statefulset.txt', renderWorkloadStatus(summary, migrations, plain));
  matchFixture(t, 'status-statefulset.json', renderData(summary, 'json'));
  t.end();
});
