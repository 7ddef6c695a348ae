// The annotation shortcut: a claim and the migrations of its namespace in, what
// the controller does about them out.
import t from 'tap';
import type { V1PersistentVolumeClaim } from '@kubernetes/client-node';
import {
  ABORT_PATCH,
  ANNOTATION_ABORTED_BY,
  INVALID_ANNOTATION_REASON,
  LABEL_CREATED_FROM,
  annotationSignature,
  shortcutAction,
} from '../../populator/shortcut.js';
import { ANNOTATION_TARGET_CLASS, ANNOTATION_TARGET_SIZE } from '../../src/names.js';
import type { Phase, VolumeMigration } from '../../src/volume-migration.js';

const CLAIM_UID = 'uid-claim';

function claim(
  annotations: Record<string, string> = {},
  extra: { uid?: string; deleting?: boolean } = {},
): V1PersistentVolumeClaim {
  return {
    metadata: {
      name: 'data',
      namespace: 'shop',
      uid: extra.uid ?? CLAIM_UID,
      annotations,
      ...(extra.deleting ? { deletionTimestamp: new Date() } : {}),
    },
  };
}

function made(
  phase: Phase | undefined,
  options: {
    fromAnnotation?: boolean;
    abort?: boolean;
    snapshotUid?: string;
    namespace?: string;
    claimName?: string;
  } = {},
): VolumeMigration {
  return {
    apiVersion: 'pvshift.io/v1alpha1',
    kind: 'VolumeMigration',
    metadata: {
      name: 'data',
      namespace: options.namespace ?? 'shop',
      ...(options.fromAnnotation === false ? {} : { labels: { [LABEL_CREATED_FROM]: 'annotation' } }),
    },
    spec: {
      claimName: options.claimName ?? 'data',
      targetStorageClassName: 'fast',
      ...(options.abort ? { abort: true } : {}),
    },
    status: {
      ...(phase ? { phase } : {}),
      ...(options.snapshotUid ? { originalClaim: { uid: options.snapshotUid, spec: {} } } : {}),
    },
  };
}

t.test('an annotated claim with no migration gets one, named after it', (t) => {
  t.same(shortcutAction(claim({ [ANNOTATION_TARGET_CLASS]: 'fast' }), []), {
    kind: 'create',
    migration: {
      apiVersion: 'pvshift.io/v1alpha1',
      kind: 'VolumeMigration',
      metadata: { name: 'data', namespace: 'shop', labels: { [LABEL_CREATED_FROM]: 'annotation' } },
      spec: { claimName: 'data', targetStorageClassName: 'fast' },
    },
  });
  const sized = shortcutAction(claim({ [ANNOTATION_TARGET_CLASS]: 'fast', [ANNOTATION_TARGET_SIZE]: '20Gi' }), []);
  t.match(sized, { kind: 'create', migration: { spec: { targetSize: '20Gi' } } }, 'with the target size annotation');
  t.match(
    shortcutAction(claim({ [ANNOTATION_TARGET_CLASS]: 'fast' }), [
      made('Succeeded', { namespace: 'other' }),
      made('Pending', { claimName: 'logs' }),
    ]),
    { kind: 'create' },
    'migrations of other namespaces or claims do not count',
  );
  t.end();
});

t.test('nothing to do', (t) => {
  const cases: [string, V1PersistentVolumeClaim, VolumeMigration[]][] = [
    [
      'annotated, and a migration of the claim exists',
      claim({ [ANNOTATION_TARGET_CLASS]: 'fast' }),
      [made('PreSyncing')],
    ],
    [
      'annotated, and a finished migration of the claim exists',
      claim({ [ANNOTATION_TARGET_CLASS]: 'fast' }),
      [made('Succeeded')],
    ],
    ['annotated but being deleted', claim({ [ANNOTATION_TARGET_CLASS]: 'fast' }, { deleting: true }), []],
    ['no annotation, no migration', claim(), []],
    ['no annotation, a migration made by hand', claim(), [made('WaitingForCutover', { fromAnnotation: false })]],
    ['no annotation, the migration already cut over', claim(), [made('CuttingOver')]],
    ['no annotation, the migration finished', claim(), [made('Succeeded')]],
    ['no annotation, the migration already aborting', claim(), [made('WaitingForCutover', { abort: true })]],
    [
      'the replacement claim (another uid) has no annotation',
      claim({}, { uid: 'uid-replacement' }),
      [made('WaitingForCutover', { snapshotUid: CLAIM_UID })],
    ],
  ];
  for (const [name, c, ms] of cases) t.same(shortcutAction(c, ms), { kind: 'none' }, name);
  t.end();
});

t.test('annotated with another target after an earlier migration ended: the old record makes way', (t) => {
  for (const phase of ['Succeeded', 'Aborted', 'Failed', 'RolledBack'] as const) {
    t.same(
      shortcutAction(claim({ [ANNOTATION_TARGET_CLASS]: 'platinum' }), [made(phase)]),
      { kind: 'replace', name: 'data' },
      `after ${phase}, another class`,
    );
  }
  t.same(
    shortcutAction(claim({ [ANNOTATION_TARGET_CLASS]: 'fast', [ANNOTATION_TARGET_SIZE]: '9Gi' }), [made('Failed')]),
    { kind: 'replace', name: 'data' },
    'another size',
  );
  t.same(
    shortcutAction(claim({ [ANNOTATION_TARGET_CLASS]: 'fast' }), [made('Failed')]),
    { kind: 'none' },
    'the same target that failed is not retried in a loop',
  );
  t.same(
    shortcutAction(claim({ [ANNOTATION_TARGET_CLASS]: 'platinum' }), [made('Failed', { fromAnnotation: false })]),
    { kind: 'none' },
    'a migration made by hand is never deleted',
  );
  t.same(
    shortcutAction(claim({ [ANNOTATION_TARGET_CLASS]: 'platinum' }), [made('PreSyncing')]),
    { kind: 'none' },
    'nor one still running',
  );
  t.end();
});

t.test('removing the annotation before cutover aborts the migration made from it', (t) => {
  for (const phase of [undefined, 'Pending', 'PreSyncing', 'WaitingForCutover'] as const) {
    t.same(
      shortcutAction(claim(), [made(phase, { snapshotUid: CLAIM_UID })]),
      { kind: 'abort', name: 'data' },
      `in ${phase ?? 'no phase yet'}`,
    );
  }
  t.same(
    shortcutAction(claim(), [made('Pending')]),
    { kind: 'abort', name: 'data' },
    'before the snapshot holds a uid',
  );
  t.same(
    shortcutAction(claim({ 'other.example/x': 'y' }), [made('PreSyncing', { snapshotUid: CLAIM_UID })]),
    { kind: 'abort', name: 'data' },
    'other annotations do not matter',
  );
  t.end();
});

t.test('an annotation pvshift cannot act on is said once, not retried', (t) => {
  const cases: [string, Record<string, string>, RegExp][] = [
    [
      'a size that is no quantity',
      { [ANNOTATION_TARGET_CLASS]: 'fast', [ANNOTATION_TARGET_SIZE]: 'ten gigs' },
      /pvshift\.io\/target-size "ten gigs" is not a quantity/,
    ],
    [
      'a size of zero',
      { [ANNOTATION_TARGET_CLASS]: 'fast', [ANNOTATION_TARGET_SIZE]: '0' },
      /pvshift\.io\/target-size "0" .*greater than zero/,
    ],
  ];
  for (const [name, annotations, message] of cases) {
    const action = shortcutAction(claim(annotations), []);
    t.match(action, { kind: 'invalid', reason: INVALID_ANNOTATION_REASON, message }, name);
    t.same(
      shortcutAction(claim(annotations), [made('Aborted')]).kind,
      'invalid',
      `${name}: even where a finished record would make way`,
    );
  }
  t.equal(INVALID_ANNOTATION_REASON, 'InvalidMigrationAnnotation', 'a constant reason');
  t.match(
    shortcutAction(claim({ [ANNOTATION_TARGET_CLASS]: 'fast', [ANNOTATION_TARGET_SIZE]: '1.5Gi' }), []),
    { kind: 'create', migration: { spec: { targetSize: '1.5Gi' } } },
    'a valid size is created as written',
  );
  const sig = annotationSignature(claim({ [ANNOTATION_TARGET_CLASS]: 'fast', [ANNOTATION_TARGET_SIZE]: 'ten gigs' }));
  t.equal(
    sig,
    annotationSignature(
      claim({ [ANNOTATION_TARGET_CLASS]: 'fast', [ANNOTATION_TARGET_SIZE]: 'ten gigs', 'other.example/x': 'y' }),
    ),
    'the signature is the annotations pvshift reads, nothing else',
  );
  t.not(
    sig,
    annotationSignature(claim({ [ANNOTATION_TARGET_CLASS]: 'fast', [ANNOTATION_TARGET_SIZE]: '10Gi' })),
    'another value, another signature',
  );
  t.end();
});

t.test('annotated again after pvshift aborted the record because the annotation went: a new migration', (t) => {
  const withdrawn = (phase: Phase) => {
    const m = made(phase);
    m.metadata.annotations = { ...ABORT_PATCH.metadata.annotations };
    return m;
  };
  t.same(
    shortcutAction(claim({ [ANNOTATION_TARGET_CLASS]: 'fast' }), [withdrawn('Aborted')]),
    { kind: 'replace', name: 'data' },
    'Aborted after the annotation was removed: replaced, same class',
  );
  t.same(
    shortcutAction(claim({ [ANNOTATION_TARGET_CLASS]: 'fast' }), [withdrawn('RolledBack')]),
    { kind: 'replace', name: 'data' },
    'rolled back after the annotation was removed (the abort landed after cutover): replaced',
  );
  t.same(
    shortcutAction(claim({ [ANNOTATION_TARGET_CLASS]: 'fast' }), [made('Aborted')]),
    { kind: 'none' },
    'aborted by hand (no mark): left for the user',
  );
  t.same(
    shortcutAction(claim({ [ANNOTATION_TARGET_CLASS]: 'fast' }), [withdrawn('Failed')]),
    { kind: 'none' },
    'failed on its input with the same target: not recreated in a loop',
  );
  t.same(
    shortcutAction(claim({ [ANNOTATION_TARGET_CLASS]: 'fast' }), [withdrawn('Succeeded')]),
    { kind: 'none' },
    'succeeded with the same target: not redone',
  );
  const aborting = made('WaitingForCutover', { abort: true });
  aborting.metadata.annotations = { ...ABORT_PATCH.metadata.annotations };
  t.same(
    shortcutAction(claim({ [ANNOTATION_TARGET_CLASS]: 'fast' }), [aborting]),
    { kind: 'none' },
    'still aborting: wait for it to end',
  );
  const deleting = withdrawn('Aborted');
  deleting.metadata.deletionTimestamp = new Date();
  t.same(
    shortcutAction(claim({ [ANNOTATION_TARGET_CLASS]: 'fast' }), [deleting]),
    { kind: 'none' },
    'already being replaced: wait for it to go',
  );
  t.same(ABORT_PATCH.spec, { abort: true }, 'the abort patch aborts');
  t.match(
    ABORT_PATCH.metadata.annotations,
    { [ANNOTATION_ABORTED_BY]: 'annotation-removed' },
    'and says why, on the record',
  );
  t.end();
});
