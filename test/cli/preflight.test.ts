// The plan's preflight findings and the pure decisions of abort, rollback,
// migrate and cleanup, table-driven.
import t from 'tap';
import { decideAbort, decideRollback, findRetained, migrationFor } from '../../cli/decisions.js';
import { preflight, type ClaimFacts, type PlanRequest } from '../../cli/preflight.js';
import { copyFidelityFor } from '../../src/pod-security.js';
import type { Phase } from '../../src/volume-migration.js';
import { FULL_FIDELITY, pv, pvc, vm } from './objects.js';

const request: PlanRequest = { targetStorageClassName: 'fast', targetClassExists: true };
const facts = (o: Partial<ClaimFacts> = {}): ClaimFacts => ({
  claim: pvc('data'),
  volume: pv('pv-data'),
  consumers: ['app-0'],
  owners: ['StatefulSet/app'],
  migrations: [],
  namespaceLabels: FULL_FIDELITY,
  ...o,
});
const codes = (f: ClaimFacts, r: Partial<PlanRequest> = {}) =>
  preflight(f, { ...request, ...r }).findings.map((x) => `${x.severity}:${x.code}`);

t.test('preflight findings', (t) => {
  const cases: { name: string; facts: ClaimFacts; request?: Partial<PlanRequest>; expect: string[] }[] = [
    { name: 'a bound Filesystem claim moves cleanly', facts: facts(), expect: [] },
    {
      name: 'target class missing',
      facts: facts(),
      request: { targetClassExists: false },
      expect: ['blocking:StorageClassNotFound'],
    },
    {
      name: 'volumeMode Block',
      facts: facts({ claim: pvc('data', { mode: 'Block' }) }),
      expect: ['blocking:BlockVolumeUnsupported'],
    },
    {
      name: 'ReadWriteOncePod: no pre-sync',
      facts: facts({ claim: pvc('data', { access: ['ReadWriteOncePod'] }) }),
      expect: ['warning:NoPreSync'],
    },
    {
      name: 'not bound',
      facts: facts({ claim: pvc('data', { phase: 'Pending' }), volume: undefined }),
      expect: ['blocking:ClaimNotBound'],
    },
    { name: 'bound to a missing volume', facts: facts({ volume: undefined }), expect: ['blocking:VolumeNotFound'] },
    {
      name: 'shrink below capacity, used unknown',
      facts: facts(),
      request: { targetSize: '5Gi' },
      expect: ['warning:Shrink'],
    },
    { name: 'grow', facts: facts(), request: { targetSize: '20Gi' }, expect: [] },
    {
      name: 'shrink, and an earlier migration counted too much data',
      facts: facts({ migrations: [vm('data', 'Succeeded', { status: { usedBytes: 5 * 2 ** 30 } })] }),
      request: { targetSize: '5Gi' },
      expect: ['info:ReplacesFinished', 'blocking:TargetTooSmall'],
    },
    {
      name: 'already under migration',
      facts: facts({ migrations: [vm('by-annotation', 'PreSyncing', { claim: 'data' })] }),
      expect: ['blocking:AlreadyMigrating'],
    },
    {
      name: 'a finished migration holds the name: migrate replaces it',
      facts: facts({ migrations: [vm('data', 'Aborted')] }),
      expect: ['info:ReplacesFinished'],
    },
    {
      name: 'a finished migration that kept volumes holds the name: replaced, with a warning',
      facts: facts({
        migrations: [
          vm('data', 'Failed', {
            status: { keptVolumes: [{ name: 'pv-copy', role: 'copy', message: 'the verified final copy' }] },
          }),
        ],
      }),
      expect: ['warning:ReplacesFinished'],
    },
    {
      name: 'an unfinished migration of another claim holds the name',
      facts: facts({ migrations: [vm('data', 'PreSyncing', { claim: 'other' })] }),
      expect: ['blocking:MigrationExists'],
    },
    {
      name: 'same class, same size',
      facts: facts({ claim: pvc('data', { cls: 'fast' }) }),
      expect: ['blocking:NothingToChange'],
    },
    {
      name: 'same class, other size',
      facts: facts({ claim: pvc('data', { cls: 'fast' }) }),
      request: { targetSize: '20Gi' },
      expect: [],
    },
    { name: 'no consumer', facts: facts({ consumers: [], owners: [] }), expect: ['info:NoConsumer'] },
    {
      name: 'Pod Security restricted: copy pods cannot run',
      facts: facts({ namespaceLabels: { 'pod-security.kubernetes.io/enforce': 'restricted' } }),
      expect: ['blocking:PodSecurityRestricted'],
    },
    {
      name: 'Pod Security baseline: trusted xattrs are not copied',
      facts: facts({
        namespaceLabels: { 'pod-security.kubernetes.io/enforce': 'baseline', 'pvshift.io/privileged-copy': 'true' },
      }),
      expect: ['warning:CopyFidelity'],
    },
    {
      name: 'privileged without the opt-in: trusted xattrs are not copied',
      facts: facts({ namespaceLabels: {} }),
      expect: ['warning:CopyFidelity'],
    },
    {
      name: 'privileged with the opt-in: full fidelity, nothing to say',
      facts: facts({
        namespaceLabels: { 'pod-security.kubernetes.io/enforce': 'privileged', 'pvshift.io/privileged-copy': 'true' },
      }),
      expect: [],
    },
    {
      name: 'namespace not readable: the level is checked at start',
      facts: facts({ namespaceLabels: undefined }),
      expect: ['info:PodSecurityUnknown'],
    },
  ];
  for (const c of cases) t.same(codes(c.facts, c.request), c.expect, c.name);
  t.end();
});

t.test('preflight: the finished record migrate replaces, and what plan says about it', (t) => {
  const done = vm('data', 'Succeeded', { status: { sourceVolumeName: 'pv-1' } });
  done.metadata.uid = 'uid-1';
  const row = preflight(facts({ migrations: [done] }), request);
  t.ok(row.ready, 'a finished record does not block');
  t.same(row.replaces, { name: 'data', phase: 'Succeeded', uid: 'uid-1' });
  t.equal(
    row.findings[0]?.message,
    'VolumeMigration data has finished (Succeeded); migrate replaces it: deletes that record, waits until it is gone, then creates the new one; the old volume it kept stays, listed by kubectl pvshift cleanup',
  );
  t.notMatch(row.findings[0]?.message, /delete it to migrate again/);
  const busy = preflight(facts({ migrations: [vm('data', 'Held', { claim: 'other' })] }), request);
  t.notOk(busy.ready);
  t.equal(busy.replaces, undefined, 'an unfinished record is never replaced');
  t.match(
    busy.findings[0]?.message,
    /^VolumeMigration data \(Held, for claim other\) holds the name and has not finished; wait for it \(kubectl pvshift status data -n shop\) or abort it$/,
  );
  t.equal(
    preflight(
      facts({ migrations: [vm('by-annotation', 'Populating', { claim: 'data' }), vm('data', 'Succeeded')] }),
      request,
    ).replaces,
    undefined,
    'nothing is replaced while the claim is under migration',
  );
  t.end();
});

t.test("preflight: the Pod Security finding is the controller's rule, word for word", (t) => {
  const levels: Record<string, string>[] = [
    { 'pod-security.kubernetes.io/enforce': 'restricted' },
    { 'pod-security.kubernetes.io/enforce': 'baseline' },
    {},
  ];
  for (const labels of levels) {
    const decision = copyFidelityFor('shop', labels);
    const finding = preflight(facts({ namespaceLabels: labels }), request).findings.find(
      (f) => f.code === 'PodSecurityRestricted' || f.code === 'CopyFidelity',
    );
    t.equal(finding?.message, decision.ok ? decision.note : decision.message, JSON.stringify(labels));
    t.equal(finding?.severity, decision.ok ? 'warning' : 'blocking');
  }
  t.end();
});

t.test('preflight row: used bytes from a finished migration, never guessed', (t) => {
  const unknown = preflight(facts(), request);
  t.equal(unknown.usedFrom, 'unknown');
  t.equal(unknown.usedBytes, undefined);
  const known = preflight(
    facts({
      migrations: [
        vm('old', 'Succeeded', {
          claim: 'data',
          status: {
            copies: [{ pass: 'final', bytes: 1234, bytesTransferred: 1, files: 3, seconds: 1, verified: 'metadata' }],
          },
        }),
      ],
    }),
    request,
  );
  t.equal(known.usedBytes, 1234);
  t.equal(known.usedFrom, 'migration');
  const shrink = preflight(facts(), { ...request, targetSize: '5Gi' }).findings[0];
  t.equal(
    shrink?.message,
    "target 5.0 GiB is below the volume's capacity 10.0 GiB: the data will be measured; refused if the data does not fit",
  );
  t.end();
});

const KEPT = [
  { name: 'pv-1', role: 'source' as const, message: 'the original data' },
  { name: 'pv-2', role: 'copy' as const, message: 'the verified final copy' },
];

t.test('abort by phase', (t) => {
  const cases: [Phase, boolean, RegExp][] = [
    ['Pending', true, /before cutover; pvshift cleans up/],
    ['PreSyncing', true, /before cutover/],
    ['WaitingForCutover', true, /before cutover/],
    ['CuttingOver', true, /rolls claim data back to its original volume pv-1/],
    ['Populating', true, /rolls claim data back/],
    [
      'Binding',
      true,
      /was Binding; pvshift rolls claim data back to its original volume pv-1, unless the claim is already bound to the new volume: then the migration finishes$/,
    ],
    [
      'Held',
      false,
      /is Held: it can neither roll back nor finish \(.*\); kept volumes: pv-1 \(source\), pv-2 \(copy\); to release the held pods, delete it: kubectl delete volumemigration data -n shop \(the kept volumes stay, Retain, owned by nothing\)$/,
    ],
    ['RollingBack', false, /already rolling back/],
    ['Succeeded', false, /already finished \(Succeeded\); there is nothing to abort/],
    ['Failed', false, /already finished/],
    ['Aborted', false, /already finished/],
    ['RolledBack', false, /already finished/],
  ];
  for (const [phase, act, message] of cases) {
    const d = decideAbort(vm('data', phase, { status: { sourceVolumeName: 'pv-1', keptVolumes: KEPT } }));
    t.equal(d.act, act, `${phase}: act ${act}`);
    t.match(d.message, message, `${phase}: ${d.message}`);
  }
  const twice = decideAbort(vm('data', 'PreSyncing', { abort: true }));
  t.same([twice.act, !twice.act && twice.ok], [false, true], 'a second abort is not an error');
  const held = decideAbort(vm('data', 'Held', { abort: true }));
  t.same(
    [held.act, !held.act && held.ok],
    [false, false],
    'Held: abort does not release it (an abort usually started the rollback that could not finish); the message says to delete it',
  );
  t.end();
});

t.test('rollback by phase', (t) => {
  const cases: [Phase, boolean, RegExp][] = [
    ['Pending', false, /nothing has been cut over.*use kubectl pvshift abort data -n shop/],
    ['WaitingForCutover', false, /use kubectl pvshift abort/],
    ['CuttingOver', true, /goes back to its original volume pv-1/],
    ['Populating', true, /goes back/],
    [
      'Binding',
      true,
      /goes back to its original volume pv-1, unless it is already bound to the new volume: then the migration finishes/,
    ],
    [
      'Held',
      false,
      /is Held: it can neither roll back nor finish \(source gone\); kept volumes: pv-1 \(source\), pv-2 \(copy\); to release the held pods, delete it: kubectl delete volumemigration data -n shop/,
    ],
    ['Succeeded', false, /not supported yet \(the old volume pv-1 is kept, Released with reclaim policy Retain/],
    ['Failed', false, /nothing to roll back/],
  ];
  for (const [phase, act, message] of cases) {
    const d = decideRollback(
      vm('data', phase, { status: { sourceVolumeName: 'pv-1', keptVolumes: KEPT, message: 'source gone' } }),
    );
    t.equal(d.act, act, `${phase}: act ${act}`);
    t.match(d.message, message, `${phase}`);
    t.notOk(d.message.includes('\n'), 'one line');
  }
  t.end();
});

t.test('the VolumeMigration migrate creates', (t) => {
  t.same(
    migrationFor('shop', 'data', {
      targetStorageClassName: 'fast',
      targetSize: '20Gi',
      noPresync: true,
      verify: 'checksum',
      cutover: 'evict',
    }),
    {
      apiVersion: 'pvshift.io/v1alpha1',
      kind: 'VolumeMigration',
      metadata: { name: 'data', namespace: 'shop', labels: { 'app.kubernetes.io/created-by': 'kubectl-pvshift' } },
      spec: {
        claimName: 'data',
        targetStorageClassName: 'fast',
        targetSize: '20Gi',
        preSync: false,
        verify: 'checksum',
        cutover: 'Evict',
      },
    },
  );
  t.same(
    migrationFor('shop', 'data', { targetStorageClassName: 'fast' }).spec,
    { claimName: 'data', targetStorageClassName: 'fast' },
    'defaults left to the controller',
  );
  t.equal(
    migrationFor('shop', 'data', { targetStorageClassName: 'fast', cutover: 'recreate' }).spec.cutover,
    'OnPodRecreate',
  );
  t.end();
});

const ann = (key: string, uid?: string) => ({
  'pvshift.io/migration': key,
  ...(uid ? { 'pvshift.io/migration-uid': uid } : {}),
});
const withUid = <T extends { metadata: { uid?: string } }>(o: T, uid: string): T => ((o.metadata.uid = uid), o);
const released = (name: string, o: Parameters<typeof pv>[1] = {}) =>
  pv(name, { policy: 'Retain', phase: 'Released', ...o });

t.test('cleanup releases only volumes no claim uses', (t) => {
  const done = vm('data', 'Succeeded', {
    status: { sourceVolumeName: 'pv-x', completionTime: '2025-03-01T00:00:00Z' },
  });
  const cases: {
    name: string;
    volume: ReturnType<typeof pv>;
    claimUids?: string[];
    releasable: boolean;
    reason?: RegExp;
  }[] = [
    {
      name: 'Released: the old volume nothing uses',
      volume: released('pv-x', {
        annotations: ann('shop/data'),
        claimRef: { namespace: 'shop', name: 'pvshift-0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b-source', uid: 'gone' },
      }),
      releasable: true,
    },
    {
      name: 'Bound again: the user took the data back',
      volume: pv('pv-x', {
        policy: 'Retain',
        phase: 'Bound',
        annotations: ann('shop/data'),
        claimRef: { namespace: 'shop', name: 'restore', uid: 'u-restore' },
      }),
      releasable: false,
      reason: /^bound to claim shop\/restore: in use$/,
    },
    {
      name: 'Released, but its claimRef names a claim that exists: about to bind',
      volume: released('pv-x', {
        annotations: ann('shop/data'),
        claimRef: { namespace: 'shop', name: 'restore', uid: 'u-restore' },
      }),
      claimUids: ['u-restore'],
      releasable: false,
      reason: /^claim shop\/restore holds it: in use$/,
    },
    {
      name: 'Available with no claim',
      volume: pv('pv-x', { policy: 'Retain', phase: 'Available', annotations: ann('shop/data') }),
      releasable: true,
    },
    {
      name: 'Available, reserved for a claim',
      volume: pv('pv-x', {
        policy: 'Retain',
        phase: 'Available',
        annotations: ann('shop/data'),
        claimRef: { namespace: 'shop', name: 'restore' },
      }),
      releasable: false,
      reason: /^reserved for claim shop\/restore$/,
    },
    {
      name: 'Pending',
      volume: pv('pv-x', { policy: 'Retain', phase: 'Pending', annotations: ann('shop/data') }),
      releasable: false,
      reason: /^volume is Pending$/,
    },
    {
      name: 'Failed',
      volume: released('pv-x', { phase: 'Failed', annotations: ann('shop/data') }),
      releasable: false,
      reason: /^volume is Failed$/,
    },
  ];
  for (const c of cases) {
    const [v] = findRetained([c.volume], [done], new Set(c.claimUids ?? []), undefined);
    t.equal(v?.releasable, c.releasable, `${c.name}: releasable ${c.releasable}`);
    if (c.reason) t.match(v?.reason, c.reason, `${c.name}: ${v?.reason}`);
    else t.equal(v?.reason, null, c.name);
  }
  t.same(
    findRetained(
      [pv('pv-x', { policy: 'Delete', phase: 'Released', annotations: ann('shop/data') })],
      [done],
      new Set(),
      undefined,
    ),
    [],
    'a volume already released (Delete) is not listed',
  );
  t.same(findRetained([released('pv-x')], [done], new Set(), undefined), [], 'nor one pvshift never stamped');
  t.end();
});

t.test('cleanup lists every retained volume, whatever became of its record', (t) => {
  // The claim was migrated, its record deleted, and migrated again under the same name.
  const second = withUid(
    vm('data', 'Succeeded', { status: { sourceVolumeName: 'pv-2', completionTime: '2025-03-02T00:00:00Z' } }),
    'uid-2',
  );
  const volumes = [
    released('pv-1', { annotations: ann('shop/data'), claimRef: { namespace: 'shop', name: 'data', uid: 'old' } }),
    released('pv-2', { annotations: ann('shop/data', 'uid-2') }),
    released('pv-3', { annotations: ann('shop/data', 'uid-1') }),
    released('pv-4', {
      annotations: { 'pvshift.io/migration-uid': 'uid-0' },
      claimRef: { namespace: 'shop', name: 'pvshift-0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b-source', uid: 'x' },
    }),
    released('pv-5', { annotations: ann('ops/logs') }),
  ];
  const all = findRetained(volumes, [second], new Set(), undefined);
  t.same(
    all.map((v) => [v.name, v.claim, v.migration, v.record, v.releasable]),
    [
      ['pv-4', '<unknown>', '<unknown>', 'record deleted', true],
      ['pv-5', '<unknown>', 'ops/logs', 'record deleted', true],
      ['pv-1', 'shop/data', 'shop/data', 'record deleted', true],
      ['pv-2', 'shop/data', 'shop/data', 'Succeeded', true],
      ['pv-3', '<unknown>', 'shop/data', 'record deleted', true],
    ],
    'the record of the same name is the later migration\'s: the earlier volumes say "record deleted"',
  );
  t.same(
    findRetained(volumes, [second], new Set(), 'shop').map((v) => v.name),
    ['pv-4', 'pv-1', 'pv-2', 'pv-3'],
    '-n: the namespace from the annotation, else the claimRef',
  );
  t.same(
    all.find((v) => v.name === 'pv-2'),
    {
      name: 'pv-2',
      capacity: '10Gi',
      claim: 'shop/data',
      migration: 'shop/data',
      migrationUid: 'uid-2',
      record: 'Succeeded',
      reclaimPolicy: 'Retain',
      phase: 'Released',
      retainedSince: '2025-03-02T00:00:00Z',
      releasable: true,
      reason: null,
    },
  );
  t.end();
});

t.test('cleanup never releases what a migration still holds or keeps on purpose', (t) => {
  const kept = [{ name: 'pv-copy', role: 'copy' as const, message: 'the verified final copy, owned by nothing' }];
  const cases: { name: string; migration: ReturnType<typeof vm>; volume: ReturnType<typeof pv>; reason: RegExp }[] = [
    {
      name: 'Held: its kept volumes are the data',
      migration: withUid(vm('data', 'Held', { status: { sourceVolumeName: 'pv-src', keptVolumes: kept } }), 'uid-h'),
      volume: released('pv-copy', { annotations: ann('shop/data', 'uid-h') }),
      reason: /^VolumeMigration shop\/data is Held, not finished; see kubectl pvshift status data -n shop$/,
    },
    {
      name: "cutting over: the source is Released between the claim's deletion and the rebind",
      migration: vm('data', 'CuttingOver', { status: { sourceVolumeName: 'pv-src' } }),
      volume: released('pv-src', { annotations: ann('shop/data') }),
      reason: /is CuttingOver, not finished/,
    },
    {
      name: 'stamped before UIDs, and a record of the name is unfinished',
      migration: vm('data', 'Populating', { status: { sourceVolumeName: 'pv-new' } }),
      volume: released('pv-old', { annotations: ann('shop/data') }),
      reason: /is Populating, not finished/,
    },
    {
      name: 'Failed, keeping its copy on purpose',
      migration: withUid(vm('data', 'Failed', { status: { keptVolumes: kept } }), 'uid-f'),
      volume: released('pv-copy', { annotations: ann('shop/data', 'uid-f') }),
      reason:
        /^VolumeMigration shop\/data \(Failed\) keeps it on purpose \(copy\); see kubectl pvshift status data -n shop, and delete that record once you no longer need the data$/,
    },
  ];
  for (const c of cases) {
    const [v] = findRetained([c.volume], [c.migration], new Set(), undefined);
    t.equal(v?.releasable, false, c.name);
    t.match(v?.reason, c.reason, `${c.name}: ${v?.reason}`);
  }
  const other = withUid(vm('data', 'Populating', { status: { sourceVolumeName: 'pv-new' } }), 'uid-new');
  t.equal(
    findRetained([released('pv-old', { annotations: ann('shop/data', 'uid-old') })], [other], new Set(), undefined)[0]
      ?.releasable,
    true,
    'a UID that names no record: the unfinished record of the name is another migration',
  );
  t.end();
});
