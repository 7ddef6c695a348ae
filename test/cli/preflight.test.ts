// The plan's preflight findings and the pure decisions of abort, rollback,
// migrate and cleanup, table-driven.
import t from 'tap';
import { decideAbort, decideRollback, findRetained, migrationFor } from '../../cli/decisions.js';
import { preflight, type ClaimFacts, type PlanRequest } from '../../cli/preflight.js';
import type { Phase } from '../../src/volume-migration.js';
import { pv, pvc, vm } from './objects.js';

const request: PlanRequest = { targetStorageClassName: 'fast', targetClassExists: true };
const facts = (o: Partial<ClaimFacts> = {}): ClaimFacts => ({ claim: pvc('data'), volume: pv('pv-data'), consumers: ['app-0'], owners: ['StatefulSet/app'], migrations: [], ...o });
const codes = (f: ClaimFacts, r: Partial<PlanRequest> = {}) => preflight(f, { ...request, ...r }).findings.map((x) => `${x.severity}:${x.code}`);

t.test('preflight findings', (t) => {
  const cases: { name: string; facts: ClaimFacts; request?: Partial<PlanRequest>; expect: string[] }[] = [
    { name: 'a bound Filesystem claim moves cleanly', facts: facts(), expect: [] },
    { name: 'target class missing', facts: facts(), request: { targetClassExists: false }, expect: ['blocking:StorageClassNotFound'] },
    { name: 'volumeMode Block', facts: facts({ claim: pvc('data', { mode: 'Block' }) }), expect: ['blocking:BlockVolumeUnsupported'] },
    { name: 'ReadWriteOncePod: no pre-sync', facts: facts({ claim: pvc('data', { access: ['ReadWriteOncePod'] }) }), expect: ['warning:NoPreSync'] },
    { name: 'not bound', facts: facts({ claim: pvc('data', { phase: 'Pending' }), volume: undefined }), expect: ['blocking:ClaimNotBound'] },
    { name: 'bound to a missing volume', facts: facts({ volume: undefined }), expect: ['blocking:VolumeNotFound'] },
    { name: 'shrink below capacity, used unknown', facts: facts(), request: { targetSize: '5Gi' }, expect: ['warning:Shrink'] },
    { name: 'grow', facts: facts(), request: { targetSize: '20Gi' }, expect: [] },
    {
      name: 'shrink, and an earlier migration counted too much data',
      facts: facts({ migrations: [vm('data', 'Succeeded', { status: { usedBytes: 5 * 2 ** 30 } })] }),
      request: { targetSize: '5Gi' },
      expect: ['blocking:MigrationExists', 'blocking:TargetTooSmall'],
    },
    { name: 'already under migration', facts: facts({ migrations: [vm('by-annotation', 'PreSyncing', { claim: 'data' })] }), expect: ['blocking:AlreadyMigrating'] },
    { name: 'a finished migration holds the name', facts: facts({ migrations: [vm('data', 'Aborted')] }), expect: ['blocking:MigrationExists'] },
    { name: 'same class, same size', facts: facts({ claim: pvc('data', { cls: 'fast' }) }), expect: ['blocking:NothingToChange'] },
    { name: 'same class, other size', facts: facts({ claim: pvc('data', { cls: 'fast' }) }), request: { targetSize: '20Gi' }, expect: [] },
    { name: 'no consumer', facts: facts({ consumers: [], owners: [] }), expect: ['info:NoConsumer'] },
  ];
  for (const c of cases) t.same(codes(c.facts, c.request), c.expect, c.name);
  t.end();
});

t.test('preflight row: used bytes from a finished migration, never guessed', (t) => {
  const unknown = preflight(facts(), request);
  t.equal(unknown.usedFrom, 'unknown');
  t.equal(unknown.usedBytes, undefined);
  const known = preflight(facts({ migrations: [vm('old', 'Succeeded', { claim: 'data', status: { copies: [{ pass: 'final', bytes: 1234, bytesTransferred: 1, files: 3, seconds: 1, verified: 'metadata' }] } })] }), request);
  t.equal(known.usedBytes, 1234);
  t.equal(known.usedFrom, 'migration');
  const shrink = preflight(facts(), { ...request, targetSize: '5Gi' }).findings[0];
  t.equal(shrink?.message, "target 5.0 GiB is below the volume's capacity 10.0 GiB: the data will be measured; refused if the data does not fit");
  t.end();
});

t.test('abort by phase', (t) => {
  const cases: [Phase, boolean, RegExp][] = [
    ['Pending', true, /before cutover; pvshift cleans up/],
    ['PreSyncing', true, /before cutover/],
    ['WaitingForCutover', true, /before cutover/],
    ['CuttingOver', true, /rolls claim data back to its original volume pv-1/],
    ['Populating', true, /rolls claim data back/],
    ['Binding', false, /too late to abort, it will finish/],
    ['Succeeded', false, /already finished \(Succeeded\); there is nothing to abort/],
    ['Failed', false, /already finished/],
    ['Aborted', false, /already finished/],
    ['RolledBack', false, /already finished/],
  ];
  for (const [phase, act, message] of cases) {
    const d = decideAbort(vm('data', phase, { status: { sourceVolumeName: 'pv-1' } }));
    t.equal(d.act, act, `${phase}: act ${act}`);
    t.match(d.message, message, `${phase}: ${d.message}`);
  }
  const twice = decideAbort(vm('data', 'PreSyncing', { abort: true }));
  t.same([twice.act, !twice.act && twice.ok], [false, true], 'a second abort is not an error');
  t.end();
});

t.test('rollback by phase', (t) => {
  const cases: [Phase, boolean, RegExp][] = [
    ['Pending', false, /nothing has been cut over.*use kubectl pvshift abort data -n shop/],
    ['WaitingForCutover', false, /use kubectl pvshift abort/],
    ['CuttingOver', true, /goes back to its original volume pv-1/],
    ['Populating', true, /goes back/],
    ['Binding', false, /too late to roll back/],
    ['Succeeded', false, /not supported yet \(the old volume pv-1 is kept, Released with reclaim policy Retain/],
    ['Failed', false, /nothing to roll back/],
  ];
  for (const [phase, act, message] of cases) {
    const d = decideRollback(vm('data', phase, { status: { sourceVolumeName: 'pv-1' } }));
    t.equal(d.act, act, `${phase}: act ${act}`);
    t.match(d.message, message, `${phase}`);
    t.notOk(d.message.includes('\n'), 'one line');
  }
  t.end();
});

t.test('the VolumeMigration migrate creates', (t) => {
  t.same(migrationFor('shop', 'data', { targetStorageClassName: 'fast', targetSize: '20Gi', noPresync: true, verify: 'checksum', cutover: 'evict' }), {
    apiVersion: 'pvshift.io/v1alpha1',
    kind: 'VolumeMigration',
    metadata: { name: 'data', namespace: 'shop', labels: { 'app.kubernetes.io/created-by': 'kubectl-pvshift' } },
    spec: { claimName: 'data', targetStorageClassName: 'fast', targetSize: '20Gi', preSync: false, verify: 'checksum', cutover: 'Evict' },
  });
  t.same(migrationFor('shop', 'data', { targetStorageClassName: 'fast' }).spec, { claimName: 'data', targetStorageClassName: 'fast' }, 'defaults left to the controller');
  t.equal(migrationFor('shop', 'data', { targetStorageClassName: 'fast', cutover: 'recreate' }).spec.cutover, 'OnPodRecreate');
  t.end();
});

t.test('cleanup offers only old volumes of Succeeded migrations', (t) => {
  const ann = (key: string) => ({ 'pvshift.io/migration': key });
  const migrations = [
    vm('a', 'Succeeded', { status: { sourceVolumeName: 'pv-a', completionTime: '2025-03-01T00:00:00Z' } }),
    vm('b', 'Populating', { status: { sourceVolumeName: 'pv-b' } }),
    vm('c', 'Succeeded', { ns: 'ops', status: { sourceVolumeName: 'pv-c' } }),
  ];
  const volumes = [
    pv('pv-a', { policy: 'Retain', phase: 'Released', annotations: ann('shop/a') }),
    pv('pv-b', { policy: 'Retain', phase: 'Bound', annotations: ann('shop/b') }),
    pv('pv-c', { policy: 'Retain', phase: 'Released', annotations: ann('ops/c') }),
    pv('pv-gone', { policy: 'Retain', phase: 'Released', annotations: ann('shop/deleted') }),
    pv('pv-new', { policy: 'Delete', annotations: ann('shop/a') }),
    pv('pv-plain'),
  ];
  t.same(findRetained(volumes, migrations, undefined).map((v) => v.name), ['pv-c', 'pv-a'], 'all namespaces, sorted by migration');
  t.same(findRetained(volumes, migrations, 'shop'), [{ name: 'pv-a', capacity: '10Gi', claim: 'shop/a', migration: 'shop/a', reclaimPolicy: 'Retain', phase: 'Released', retainedSince: '2025-03-01T00:00:00Z' }]);
  t.end();
});
