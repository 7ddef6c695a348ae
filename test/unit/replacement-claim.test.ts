// The claim of the user's name while a migration holds it, as both the planner
// and the webhook build it: the target it asks for, the replacement, the
// restored original, and that whoever creates it first, it comes out the same.
import t from 'tap';
import type { V1PersistentVolumeClaim } from '@kubernetes/client-node';
import { plan } from '../../populator/plan.js';
import { ANNOTATION_MIGRATION, ANNOTATION_TARGET_CLASS, ANNOTATION_TARGET_SIZE } from '../../src/names.js';
import { replacementClaim, restoredClaim, targetSizeOf, targetSpecOf } from '../../src/replacement-claim.js';
import type { ClaimSnapshot, VolumeMigration, VolumeMigrationSpec } from '../../src/volume-migration.js';
import { mutateClaim } from '../../webhook/mutate-claim.js';
import {
  HELPER,
  NOW,
  STAGING,
  SOURCE_PV,
  TARGET_PV,
  claimWithVolume,
  migration as worldMigration,
  pod,
  prepared,
  retainedSource,
  world,
} from '../populator/fixtures/world.js';

const SNAPSHOT: ClaimSnapshot = {
  uid: 'uid-original',
  labels: { app: 'db' },
  annotations: {
    'team.example/owner': 'orders',
    'pv.kubernetes.io/bind-completed': 'yes',
    'pv.kubernetes.io/bound-by-controller': 'yes',
    'volume.kubernetes.io/storage-provisioner': 'hostpath',
    'volume.beta.kubernetes.io/storage-provisioner': 'hostpath',
    'volume.kubernetes.io/selected-node': 'node-1',
    [ANNOTATION_TARGET_CLASS]: 'fast',
    [ANNOTATION_TARGET_SIZE]: '4Gi',
  },
  spec: {
    storageClassName: 'standard',
    accessModes: ['ReadWriteOnce'],
    volumeMode: 'Filesystem',
    resources: { requests: { storage: '2Gi' } },
    volumeName: 'pv-old',
    selector: { matchLabels: { tier: 'slow' } },
    dataSource: { kind: 'PersistentVolumeClaim', name: 'seed' },
  },
};

/** A migration in cutover of claim `db`; `snapshot` null: one whose status holds no snapshot. */
function migration(
  spec: Partial<VolumeMigrationSpec> = {},
  snapshot: ClaimSnapshot | null = SNAPSHOT,
): VolumeMigration {
  return {
    apiVersion: 'pvshift.io/v1alpha1',
    kind: 'VolumeMigration',
    metadata: { name: 'move-db', namespace: 'shop', uid: 'uid-move-db' },
    spec: { claimName: 'db', targetStorageClassName: 'fast', ...spec },
    status: {
      phase: 'CuttingOver',
      ...(snapshot ? { originalClaim: structuredClone(snapshot) } : {}),
      sourceVolumeName: 'pv-old',
    },
  };
}

const withoutSnapshot = (spec: Partial<VolumeMigrationSpec> = {}) => migration(spec, null);

t.test('targetSizeOf: targetSize, else the original request, always as a string', (t) => {
  const cases: [string, VolumeMigration, { spec?: ClaimSnapshot['spec'] } | undefined, string | undefined][] = [
    ['targetSize wins', migration({ targetSize: '5Gi' }), SNAPSHOT, '5Gi'],
    ['no targetSize: the request', migration(), SNAPSHOT, '2Gi'],
    [
      'an integer targetSize (int-or-string)',
      migration({ targetSize: 1073741824 as unknown as string }),
      SNAPSHOT,
      '1073741824',
    ],
    [
      'an integer request',
      migration(),
      { spec: { resources: { requests: { storage: 2048 as unknown as string } } } },
      '2048',
    ],
    ['neither', migration(), undefined, undefined],
    ['a request of no value', migration(), { spec: { resources: { requests: {} } } }, undefined],
  ];
  for (const [name, m, original, expected] of cases) t.equal(targetSizeOf(m, original), expected, name);
  t.end();
});

/** What targetSpecOf makes of a target of `storage` and `accessModes` on class fast. */
function onTarget(storage: string, accessModes: string[]): ReturnType<typeof targetSpecOf> {
  return {
    spec: { storageClassName: 'fast', accessModes, volumeMode: 'Filesystem', resources: { requests: { storage } } },
  };
}

t.test('targetSpecOf: everything from the migration, nothing guessed', (t) => {
  const cases: [string, VolumeMigration, ReturnType<typeof targetSpecOf>][] = [
    ["the original's size, modes and volume mode on the target class", migration(), onTarget('2Gi', ['ReadWriteOnce'])],
    [
      'targetSize and targetAccessModes win',
      migration({ targetSize: '4Gi', targetAccessModes: ['ReadWriteMany'] }),
      onTarget('4Gi', ['ReadWriteMany']),
    ],
    [
      'an empty targetAccessModes is no choice: the original modes',
      migration({ targetAccessModes: [] }),
      onTarget('2Gi', ['ReadWriteOnce']),
    ],
    [
      'no snapshot, but targetSize and targetAccessModes: enough',
      withoutSnapshot({ targetSize: '1Gi', targetAccessModes: ['ReadWriteOncePod'] }),
      onTarget('1Gi', ['ReadWriteOncePod']),
    ],
    [
      'no snapshot and no targetSize: no size, and no default (it could be smaller than the data)',
      withoutSnapshot({ targetAccessModes: ['ReadWriteOnce'] }),
      { problem: 'the migration has no targetSize and its status holds no snapshot of the original claim' },
    ],
    [
      'no snapshot and no targetAccessModes: no modes',
      withoutSnapshot({ targetSize: '1Gi' }),
      { problem: 'the migration has no targetAccessModes and its status holds no snapshot of the original claim' },
    ],
    [
      'a snapshot without a request and no targetSize',
      migration({}, { spec: { accessModes: ['ReadWriteOnce'] } }),
      {
        problem:
          'the migration has no targetSize and the snapshot of the original claim in its status has no storage request',
      },
    ],
    [
      'a snapshot without access modes and no targetAccessModes',
      migration({}, { spec: { resources: { requests: { storage: '1Gi' } } } }),
      {
        problem:
          'the migration has no targetAccessModes and the snapshot of the original claim in its status has no access modes',
      },
    ],
    [
      'a size of zero',
      migration({ targetSize: '0' }),
      { problem: 'the target size "0" is not a quantity greater than zero' },
    ],
    [
      'a size that is no quantity',
      migration({ targetSize: 'ten' }),
      { problem: 'the target size "ten" is not a quantity greater than zero' },
    ],
  ];
  for (const [name, m, expected] of cases) t.same(targetSpecOf(m), expected, name);
  t.end();
});

/** The target spec of a migration whose target is fine. */
function targetOf(m: VolumeMigration): NonNullable<ReturnType<typeof targetSpecOf>['spec']> {
  const target = targetSpecOf(m);
  if (!target.spec) throw new Error(`no target: ${target.problem}`);
  return target.spec;
}

/** What the StatefulSet controller creates from the template: the original's spec and labels, its own metadata. */
function statefulSetClaim(): V1PersistentVolumeClaim {
  return {
    apiVersion: 'v1',
    kind: 'PersistentVolumeClaim',
    metadata: {
      name: 'db',
      namespace: 'shop',
      labels: { app: 'db', 'apps.kubernetes.io/pod-index': '0' },
      annotations: { 'team.example/owner': 'orders' },
      ownerReferences: [{ apiVersion: 'apps/v1', kind: 'StatefulSet', name: 'db', uid: 'uid-sts', controller: true }],
      finalizers: ['kubernetes.io/pvc-protection'],
    },
    spec: {
      storageClassName: 'standard',
      accessModes: ['ReadWriteOnce'],
      volumeMode: 'Filesystem',
      resources: { requests: { storage: '2Gi' } },
    },
    status: { phase: 'Pending' },
  };
}

t.test('replacementClaim', (t) => {
  const m = migration();
  const before = structuredClone(m);
  const made = replacementClaim(m, targetOf(m));
  t.same(
    made,
    {
      apiVersion: 'v1',
      kind: 'PersistentVolumeClaim',
      metadata: {
        name: 'db',
        namespace: 'shop',
        labels: { app: 'db' },
        annotations: { 'team.example/owner': 'orders', [ANNOTATION_MIGRATION]: 'move-db' },
      },
      spec: {
        storageClassName: 'fast',
        accessModes: ['ReadWriteOnce'],
        volumeMode: 'Filesystem',
        resources: { requests: { storage: '2Gi' } },
        dataSourceRef: { apiGroup: 'pvshift.io', kind: 'VolumeMigration', name: 'move-db' },
      },
    },
    "made by pvshift: the original's labels and annotations, less the binding and shortcut ones; the target spec, no volumeName",
  );
  t.same(m, before, 'the migration is not modified');

  const created = statefulSetClaim();
  const createdBefore = structuredClone(created);
  const rewritten = replacementClaim(m, targetOf(m), created);
  t.same(created, createdBefore, 'the created claim is not modified');
  t.same(rewritten.spec, made.spec, 'created by someone else: the same spec');
  t.same(
    rewritten.metadata,
    { ...created.metadata, annotations: { 'team.example/owner': 'orders', [ANNOTATION_MIGRATION]: 'move-db' } },
    "and that claim's own metadata (labels, owner, finalizers), naming the migration",
  );
  t.same(rewritten.status, { phase: 'Pending' }, 'nothing else of it is touched');
  const again = replacementClaim(m, targetOf(m), rewritten);
  t.equal(JSON.stringify(again), JSON.stringify(rewritten), 'applied to its own output: the same, key order included');
  t.end();
});

t.test('restoredClaim', (t) => {
  const m = migration();
  const snapshot = m.status!.originalClaim!;
  const before = structuredClone(snapshot);
  const made = restoredClaim(m, snapshot, 'pv-old');
  const { dataSource: _dataSource, ...originalSpec } = SNAPSHOT.spec;
  const exactly = "the original's spec exactly (selector included), on its volume, no data source";
  t.same(made.spec, { ...originalSpec, volumeName: 'pv-old' }, exactly);
  t.notOk('dataSource' in made.spec!, 'no dataSource key at all');
  t.same(
    made.metadata,
    {
      name: 'db',
      namespace: 'shop',
      labels: { app: 'db' },
      annotations: {
        'team.example/owner': 'orders',
        [ANNOTATION_TARGET_CLASS]: 'fast',
        [ANNOTATION_TARGET_SIZE]: '4Gi',
        [ANNOTATION_MIGRATION]: 'move-db',
      },
    },
    'the binding annotations dropped (bind-completed on an unbound claim makes it Lost), the shortcut kept: it comes back as it was',
  );
  t.same(snapshot, before, 'the snapshot is not modified');
  made.spec!.resources!.requests!.storage = '9Gi';
  t.same(snapshot, before, 'nor shared with the claim');

  const created = statefulSetClaim();
  const rewritten = restoredClaim(m, snapshot, 'pv-old', created);
  t.same(rewritten.spec, restoredClaim(m, snapshot, 'pv-old').spec, 'created by someone else: the same spec');
  t.same(rewritten.metadata?.ownerReferences, created.metadata?.ownerReferences, "and that claim's own metadata");
  t.end();
});

t.test('the planner and the webhook make the same replacement, whoever is first', (t) => {
  const m = worldMigration({
    phase: 'CuttingOver',
    spec: { targetSize: '3Gi' },
    status: prepared({ cutoverStartTime: NOW.toISOString() }),
  });
  const step = plan(
    world({
      migration: m,
      sourceVolume: retainedSource({ claimRef: { name: HELPER } }),
      helperClaim: claimWithVolume(HELPER, SOURCE_PV, 'Pending'),
      stagingClaim: claimWithVolume(STAGING, TARGET_PV),
      consumers: [pod('app-0', { gated: true })],
    }),
  );
  if (step.kind !== 'createClaim') {
    t.fail(`the planner creates the replacement, not ${step.kind}`);
    t.end();
    return;
  }
  const snapshot = m.status!.originalClaim!;
  // What a StatefulSet sends: the template's spec, the original's labels and annotations.
  const sent: V1PersistentVolumeClaim = {
    apiVersion: 'v1',
    kind: 'PersistentVolumeClaim',
    metadata: {
      name: m.spec.claimName,
      namespace: m.metadata.namespace,
      labels: snapshot.labels,
      annotations: snapshot.annotations,
    },
    spec: structuredClone(snapshot.spec),
  };
  const admitted = mutateClaim(sent, [m]).object;
  t.same(admitted, step.claim, 'the same claim, metadata and spec');
  t.end();
});
