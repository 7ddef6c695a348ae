// The copy slot table: who holds a slot (pvshift's own unfinished copy pods and
// this process's reservations, once each), who may start, who must yield.
import t from 'tap';
import type { V1Pod } from '@kubernetes/client-node';
import {
  CopySlots,
  copyPassOf,
  copySlotPods,
  mayStart,
  passAboutToStart,
  yielding,
  type CopyPodState,
  type SlotHolder,
} from '../../populator/copy-slots.js';
import { copyPodNameFor } from '../../populator/copy-pod.js';
import type { Pass } from '../../populator/world.js';
import type { VolumeMigration } from '../../src/volume-migration.js';
import {
  NS,
  NOW,
  claimWithVolume,
  migration,
  pod,
  prepared,
  STAGING,
  TARGET_PV,
  HELPER,
  world,
} from './fixtures/world.js';

const LIMITS = { maxConcurrent: 2, maxPerNode: 1 };

function holder(key: string, pass: Pass, since: number, extra: Partial<SlotHolder> = {}): SlotHolder {
  return { key, pass, since, terminating: false, ...extra };
}

function state(key: string, pass: Pass, since: number, extra: Partial<CopyPodState> = {}): CopyPodState {
  return { ...holder(key, pass, since), finished: false, ...extra };
}

// --- which pods are pvshift's own -------------------------------------------------

const OWNER = migration({ name: 'owner' });
const OWNER_UID = OWNER.metadata.uid!;

function labelledPod(
  options: {
    name?: string;
    namespace?: string;
    uid?: string;
    ownerUid?: string | null;
    controller?: boolean;
    kind?: string;
    phase?: string;
    node?: string;
    pinnedTo?: string;
    created?: string;
    deleting?: boolean;
  } = {},
): V1Pod {
  const uid = options.uid ?? OWNER_UID;
  const ownerUid = options.ownerUid === undefined ? OWNER_UID : options.ownerUid;
  return {
    metadata: {
      name: options.name ?? copyPodNameFor(OWNER_UID, 'presync'),
      namespace: options.namespace ?? NS,
      creationTimestamp: (options.created ?? '2024-05-01T12:00:00Z') as unknown as Date,
      labels: {
        'app.kubernetes.io/managed-by': 'pvshift',
        'app.kubernetes.io/component': 'copy',
        'pvshift.io/migration-uid': uid,
      },
      ...(ownerUid === null
        ? {}
        : {
            ownerReferences: [
              {
                apiVersion: 'pvshift.io/v1alpha1',
                kind: options.kind ?? 'VolumeMigration',
                name: 'owner',
                uid: ownerUid,
                controller: options.controller ?? true,
              },
            ],
          }),
      ...(options.deleting ? { deletionTimestamp: new Date('2024-05-01T12:00:05Z') } : {}),
    },
    spec: {
      containers: [{ name: 'copy', image: 'pvshift:test' }],
      ...(options.node ? { nodeName: options.node } : {}),
      ...(options.pinnedTo
        ? {
            affinity: {
              nodeAffinity: {
                requiredDuringSchedulingIgnoredDuringExecution: {
                  nodeSelectorTerms: [
                    {
                      matchExpressions: [{ key: 'kubernetes.io/hostname', operator: 'In', values: [options.pinnedTo] }],
                    },
                  ],
                },
              },
            },
          }
        : {}),
    },
    status: { phase: options.phase ?? 'Running' },
  };
}

t.test("only pvshift's own copy pods hold slots: labels are not proof", (t) => {
  const migrations: VolumeMigration[] = [OWNER];
  const key = `${NS}/${copyPodNameFor(OWNER_UID, 'presync')}`;
  const cases: [string, V1Pod, Partial<CopyPodState> | undefined][] = [
    [
      'its own running pre-sync pod, on its node',
      labelledPod({ node: 'node-1' }),
      {
        key,
        pass: 'presync',
        node: 'node-1',
        finished: false,
        terminating: false,
        since: Date.parse('2024-05-01T12:00:00Z'),
      },
    ],
    [
      'its own final pod, named for the pass',
      labelledPod({ name: copyPodNameFor(OWNER_UID, 'final') }),
      { pass: 'final' },
    ],
    ['its own measure pod', labelledPod({ name: copyPodNameFor(OWNER_UID, 'measure') }), { pass: 'measure' }],
    [
      'pinned, not scheduled yet: the node it is pinned to',
      labelledPod({ phase: 'Pending', pinnedTo: 'node-2' }),
      { node: 'node-2' },
    ],
    ['finished: present, holds nothing', labelledPod({ phase: 'Succeeded' }), { finished: true }],
    ['being deleted', labelledPod({ deleting: true }), { terminating: true }],
    ['a tenant pod with the copy labels only', labelledPod({ ownerUid: null, uid: 'made-up' }), undefined],
    ['the copy labels and a real migration uid, no owner reference', labelledPod({ ownerUid: null }), undefined],
    [
      'owned by a uid that is no migration in the cache',
      labelledPod({ uid: 'uid-gone', ownerUid: 'uid-gone', name: copyPodNameFor('uid-gone', 'presync') }),
      undefined,
    ],
    ['owned by the migration from another namespace', labelledPod({ namespace: 'elsewhere' }), undefined],
    ['the label names another migration than the owner', labelledPod({ uid: 'uid-other' }), undefined],
    ['a name that is not the copy pod name of the uid', labelledPod({ name: 'pvshift-copy-hog' }), undefined],
    ['an owner reference that is not the controller', labelledPod({ controller: false }), undefined],
    ['an owner of another kind with the same uid', labelledPod({ kind: 'ConfigMap' }), undefined],
  ];
  for (const [name, pod, expected] of cases) {
    const found = copySlotPods([pod], migrations);
    if (expected) t.match(found, [expected], name);
    else t.same(found, [], name);
  }
  t.equal(
    copyPassOf(labelledPod({ name: copyPodNameFor(OWNER_UID, 'final') })),
    'final',
    'copyPassOf: the pass its name says',
  );
  t.equal(copyPassOf(labelledPod({ ownerUid: null })), undefined, 'copyPassOf: no owner, no copy pod');
  t.end();
});

// --- who may start ------------------------------------------------------------------

t.test('may a copy start: finals count only finals, the rest count everything and yield to a waiting final', (t) => {
  const cases: [string, Pick<SlotHolder, 'pass' | 'node'>, SlotHolder[], number, boolean][] = [
    ['nothing runs: a pre-sync starts', { pass: 'presync' }, [], 0, true],
    ['one pre-sync of two slots: a second starts', { pass: 'presync' }, [holder('a', 'presync', 1)], 0, true],
    [
      'two pre-syncs fill the cap: a third waits',
      { pass: 'presync' },
      [holder('a', 'presync', 1), holder('b', 'presync', 2)],
      0,
      false,
    ],
    [
      'a measure counts like a pre-sync',
      { pass: 'measure' },
      [holder('a', 'presync', 1), holder('b', 'measure', 2)],
      0,
      false,
    ],
    [
      'two pre-syncs fill the cap: a final starts anyway',
      { pass: 'final' },
      [holder('a', 'presync', 1), holder('b', 'presync', 2)],
      0,
      true,
    ],
    [
      'one final and one pre-sync: a final starts',
      { pass: 'final' },
      [holder('a', 'final', 1), holder('b', 'presync', 2)],
      0,
      true,
    ],
    [
      'two finals fill the cap: a third final waits',
      { pass: 'final' },
      [holder('a', 'final', 1), holder('b', 'final', 2)],
      0,
      false,
    ],
    [
      'a slot is free but a final waits for one: a pre-sync waits',
      { pass: 'presync' },
      [holder('a', 'final', 1)],
      1,
      false,
    ],
    ['a final waiting does not stop another final', { pass: 'final' }, [holder('a', 'final', 1)], 1, true],
    [
      'per node: the node holds its cap, a pre-sync pinned there waits',
      { pass: 'presync', node: 'n1' },
      [holder('a', 'presync', 1, { node: 'n1' })],
      0,
      false,
    ],
    [
      'per node: another node is free',
      { pass: 'presync', node: 'n2' },
      [holder('a', 'presync', 1, { node: 'n1' })],
      0,
      true,
    ],
    [
      'per node: an unpinned pre-sync is held by the global cap only',
      { pass: 'presync' },
      [holder('a', 'presync', 1, { node: 'n1' })],
      0,
      true,
    ],
    [
      'per node: a final on the node counts against a pre-sync pinned there',
      { pass: 'presync', node: 'n1' },
      [holder('a', 'final', 1, { node: 'n1' })],
      0,
      false,
    ],
    [
      'per node: a pinned final counts only finals on its node',
      { pass: 'final', node: 'n1' },
      [holder('a', 'presync', 1, { node: 'n1' })],
      0,
      true,
    ],
    [
      'per node: a pinned final waits for a final on its node',
      { pass: 'final', node: 'n1' },
      [holder('a', 'final', 1, { node: 'n1' })],
      0,
      false,
    ],
  ];
  for (const [name, request, holders, waiting, expected] of cases)
    t.equal(mayStart(request, holders, waiting, LIMITS), expected, name);
  t.end();
});

// --- who must yield -------------------------------------------------------------------

t.test('who yields: the most recently started pre-syncs, as many as the cap is exceeded', (t) => {
  const cases: [string, SlotHolder[], number, typeof LIMITS, string[]][] = [
    ['within the cap: nobody', [holder('a', 'presync', 1), holder('b', 'final', 2)], 0, LIMITS, []],
    [
      'cap 1, a pre-sync and a final: the pre-sync',
      [holder('a', 'presync', 1), holder('f', 'final', 2)],
      0,
      { maxConcurrent: 1, maxPerNode: 9 },
      ['a'],
    ],
    [
      'two over: the two youngest pre-syncs',
      [holder('a', 'presync', 1), holder('b', 'presync', 2), holder('c', 'presync', 3), holder('f', 'final', 4)],
      0,
      { maxConcurrent: 2, maxPerNode: 9 },
      ['b', 'c'],
    ],
    [
      'a pre-sync already going counts first',
      [
        holder('a', 'presync', 1),
        holder('b', 'presync', 2, { terminating: true }),
        holder('c', 'presync', 3),
        holder('f', 'final', 4),
      ],
      0,
      { maxConcurrent: 3, maxPerNode: 9 },
      ['b'],
    ],
    [
      'a final waits: every pre-sync',
      [holder('a', 'presync', 1), holder('f', 'final', 2)],
      1,
      { maxConcurrent: 2, maxPerNode: 9 },
      ['a'],
    ],
    [
      'a measure is short: it is never asked to yield',
      [holder('m', 'measure', 5), holder('a', 'presync', 1), holder('f', 'final', 2)],
      0,
      { maxConcurrent: 2, maxPerNode: 9 },
      ['a'],
    ],
    [
      'only finals over the cap: nothing to yield',
      [holder('f', 'final', 1), holder('g', 'final', 2)],
      0,
      { maxConcurrent: 1, maxPerNode: 9 },
      [],
    ],
    [
      'per node: a final on the node displaces the youngest pre-sync there',
      [
        holder('a', 'presync', 1, { node: 'n1' }),
        holder('b', 'presync', 2, { node: 'n2' }),
        holder('f', 'final', 3, { node: 'n1' }),
      ],
      0,
      { maxConcurrent: 9, maxPerNode: 1 },
      ['a'],
    ],
    [
      'per node: pre-syncs over the node cap with no final there stay',
      [holder('a', 'presync', 1, { node: 'n1' }), holder('b', 'presync', 2, { node: 'n1' })],
      0,
      { maxConcurrent: 9, maxPerNode: 1 },
      [],
    ],
  ];
  for (const [name, holders, waiting, limits, expected] of cases)
    t.same([...yielding(holders, waiting, limits)].sort(), expected, name);
  t.end();
});

// --- the table: reservations and pods, once each ----------------------------------------

t.test('reservations: check and reserve in one call, counted with the pods until the informer has them', (t) => {
  const slots = new CopySlots(LIMITS);
  t.ok(slots.tryReserve({ key: 'ns/p1', migration: 'ns/a', pass: 'presync' }, [], 0), 'first reservation');
  t.ok(
    slots.tryReserve({ key: 'ns/p1', migration: 'ns/a', pass: 'presync' }, [], 1),
    'asking again for the same pod is the same reservation',
  );
  t.ok(slots.tryReserve({ key: 'ns/p2', migration: 'ns/b', pass: 'presync' }, [], 2), 'second reservation');
  t.notOk(
    slots.tryReserve({ key: 'ns/p3', migration: 'ns/c', pass: 'presync' }, [], 3),
    'the cap holds against pods not in the informer yet',
  );
  slots.created('ns/p1', 4);
  slots.created('ns/p2', 4);
  t.equal(slots.holders([state('ns/p1', 'presync', 5)], 5).length, 2, 'a pod and its reservation count once');
  t.notOk(
    slots.tryReserve({ key: 'ns/p3', migration: 'ns/c', pass: 'presync' }, [state('ns/p1', 'presync', 5)], 5),
    'still full',
  );
  t.ok(
    slots.tryReserve(
      { key: 'ns/p3', migration: 'ns/c', pass: 'presync' },
      [state('ns/p1', 'presync', 5, { finished: true }), state('ns/p2', 'presync', 5, { finished: true })],
      6,
    ),
    'the pods finished: free',
  );
  t.same(
    slots.holders([], 6).map((h) => h.key),
    ['ns/p3'],
    'reservations of pods the informer showed are gone, even once the pods are',
  );
  t.end();
});

t.test('reservations: released unless the step that followed created the pod', (t) => {
  const slots = new CopySlots({ maxConcurrent: 1, maxPerNode: 1 });
  t.ok(slots.tryReserve({ key: 'ns/p1', migration: 'ns/a', pass: 'presync' }, [], 0));
  slots.releaseUnused('ns/a');
  t.ok(
    slots.tryReserve({ key: 'ns/p2', migration: 'ns/b', pass: 'presync' }, [], 1),
    'plan did something else: the slot is free again',
  );
  slots.created('ns/p2', 2);
  slots.releaseUnused('ns/b');
  t.notOk(
    slots.tryReserve({ key: 'ns/p3', migration: 'ns/c', pass: 'presync' }, [], 3),
    'a created pod keeps its reservation until the informer shows it',
  );
  slots.seen('ns/p2');
  t.ok(
    slots.tryReserve({ key: 'ns/p3', migration: 'ns/c', pass: 'presync' }, [], 4),
    'once seen (then gone) it no longer counts',
  );
  slots.release('ns/p3');
  t.same(slots.holders([], 4), [], 'a failed create releases');
  t.ok(slots.tryReserve({ key: 'ns/p4', migration: 'ns/d', pass: 'presync' }, [], 5));
  t.ok(
    slots.tryReserve({ key: 'ns/p5', migration: 'ns/e', pass: 'presync' }, [], 5 + 61_000),
    'a reservation never used nor seen expires',
  );
  t.end();
});

t.test('a final that waited gets the next slot before any pre-sync', (t) => {
  const slots = new CopySlots({ maxConcurrent: 1, maxPerNode: 9 });
  const running = [state('ns/f1', 'final', 0)];
  t.notOk(
    slots.tryReserve({ key: 'ns/f2', migration: 'ns/b', pass: 'final' }, running, 1),
    'finals fill the cap: the second final waits',
  );
  t.notOk(
    slots.tryReserve({ key: 'ns/p', migration: 'ns/c', pass: 'presync' }, [], 2),
    'the first final finished, but a final waits: no pre-sync',
  );
  t.ok(slots.tryReserve({ key: 'ns/f2', migration: 'ns/b', pass: 'final' }, [], 3), 'the waiting final gets the slot');
  slots.created('ns/f2', 3);
  slots.seen('ns/f2');
  t.ok(slots.tryReserve({ key: 'ns/p', migration: 'ns/c', pass: 'presync' }, [], 4), 'then a pre-sync');
  const stale = new CopySlots({ maxConcurrent: 1, maxPerNode: 9 });
  t.notOk(stale.tryReserve({ key: 'ns/f2', migration: 'ns/b', pass: 'final' }, running, 0));
  t.ok(
    stale.tryReserve({ key: 'ns/p', migration: 'ns/c', pass: 'presync' }, [], 20_000),
    'a final that stopped asking no longer holds pre-syncs back',
  );
  t.end();
});

t.test('mustYield: a running pre-sync gives its slot to a final', (t) => {
  const slots = new CopySlots({ maxConcurrent: 1, maxPerNode: 9 });
  const presync = state('ns/p', 'presync', 0);
  t.notOk(slots.mustYield('ns/p', [presync], 1), 'alone: it runs');
  t.ok(
    slots.tryReserve({ key: 'ns/f', migration: 'ns/b', pass: 'final' }, [presync], 2),
    'a final starts over the cap',
  );
  t.ok(slots.mustYield('ns/p', [presync], 3), 'the pre-sync yields to the reserved final');
  t.notOk(slots.mustYield('ns/f', [presync], 3), 'the final never yields');
  t.end();
});

// --- which copy observe asks a slot for -------------------------------------------------

t.test('observe asks for a slot only when a copy is the next thing plan can start', (t) => {
  const staging = claimWithVolume(STAGING, TARGET_PV);
  const helperBound = claimWithVolume(HELPER, 'pv-source');
  const helperPending = claimWithVolume(HELPER, undefined, 'Pending');
  const cases: [string, Parameters<typeof world>[0], Pass | undefined][] = [
    [
      'PreSyncing with its staging claim: presync',
      { migration: migration({ phase: 'PreSyncing', status: prepared() }), stagingClaim: staging },
      'presync',
    ],
    [
      'PreSyncing before the staging claim: nothing yet',
      { migration: migration({ phase: 'PreSyncing', status: prepared() }) },
      undefined,
    ],
    [
      'PreSyncing, pre-sync recorded: nothing',
      {
        migration: migration({
          phase: 'PreSyncing',
          status: prepared({
            copies: [{ pass: 'presync', bytes: 1, bytesTransferred: 1, files: 1, seconds: 1, verified: 'none' }],
          }),
        }),
        stagingClaim: staging,
      },
      undefined,
    ],
    [
      'Populating, helper claim bound: final',
      { migration: migration({ phase: 'Populating', status: prepared() }), helperClaim: helperBound },
      'final',
    ],
    [
      'Populating, helper claim not bound yet: nothing',
      { migration: migration({ phase: 'Populating', status: prepared() }), helperClaim: helperPending },
      undefined,
    ],
    [
      'Pending without pre-sync, not measured: measure',
      { migration: migration({ spec: { preSync: false }, status: prepared() }) },
      'measure',
    ],
    ['Pending with pre-sync: nothing to measure', { migration: migration({ status: prepared() }) }, undefined],
    [
      'Pending, measured: nothing',
      { migration: migration({ spec: { preSync: false }, status: prepared({ usedBytes: 5 }) }) },
      undefined,
    ],
    ['Pending before the snapshot: nothing', { migration: migration({ spec: { preSync: false } }) }, undefined],
    [
      'aborting: nothing',
      {
        migration: migration({ phase: 'PreSyncing', spec: { abort: true }, status: prepared() }),
        stagingClaim: staging,
      },
      undefined,
    ],
    [
      'WaitingForCutover: nothing',
      { migration: migration({ phase: 'WaitingForCutover', status: prepared() }), stagingClaim: staging },
      undefined,
    ],
    [
      'WaitingForCutover, the application running, a re-sync due: presync',
      {
        migration: migration({
          phase: 'WaitingForCutover',
          status: prepared({ lastSyncTime: '2024-05-01T11:00:00Z' }),
        }),
        stagingClaim: staging,
        consumers: [pod('app-0', { node: 'node-1' })],
      },
      'presync',
    ],
    [
      'WaitingForCutover, a re-sync not due yet: nothing',
      {
        migration: migration({ phase: 'WaitingForCutover', status: prepared({ lastSyncTime: NOW.toISOString() }) }),
        stagingClaim: staging,
        consumers: [pod('app-0', { node: 'node-1' })],
      },
      undefined,
    ],
  ];
  for (const [name, w, expected] of cases) t.equal(passAboutToStart(world(w)), expected, name);
  t.end();
});
