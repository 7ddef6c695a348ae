// The PVC CREATE mutation, phase by phase: what a claim created under a
// migration's name comes back as.
import t from 'tap';
import jsonpatch from 'fast-json-patch';
import { AdmissionDenial } from '../../src/errors.js';
import { ANNOTATION_MIGRATION, ANNOTATION_TARGET_CLASS, ANNOTATION_TARGET_SIZE } from '../../src/names.js';
import { PHASES, type Phase } from '../../src/volume-migration.js';
import { mutateClaim } from '../../webhook/mutate-claim.js';
import { diff } from '../../webhook/responses.js';
import { migration, NAMESPACE, ORIGINAL_CLAIM_SPEC, statefulSetClaim } from '../fixtures/admission/builders.js';

type Expectation = 'unchanged' | 'rewritten' | 'restored';
const EXPECTED: Record<Phase, Expectation> = {
  Pending: 'unchanged',
  PreSyncing: 'unchanged',
  WaitingForCutover: 'unchanged',
  CuttingOver: 'rewritten',
  Populating: 'rewritten',
  Binding: 'rewritten',
  Held: 'rewritten',
  Succeeded: 'unchanged',
  RollingBack: 'restored',
  RolledBack: 'unchanged',
  Aborted: 'unchanged',
  Failed: 'unchanged',
};

void t.test('every phase of a migration decides what the claim becomes', (t) => {
  t.same(Object.keys(EXPECTED).sort(), [...PHASES].sort(), 'the table covers every phase');
  for (const phase of PHASES) {
    void t.test(`${phase}: ${EXPECTED[phase]}`, (t) => {
      const claim = statefulSetClaim();
      // A copy taken before: comparing with `claim` itself would pass even if the mutation wrote into it.
      const before = structuredClone(claim);
      const { object, warnings } = mutateClaim(claim, [migration('data-web-0', phase)]);
      const spec = object.spec!;
      if (EXPECTED[phase] === 'unchanged') {
        t.same(object, before);
        t.same(warnings, []);
      } else if (EXPECTED[phase] === 'rewritten') {
        t.equal(spec.storageClassName, 'fast-ssd');
        t.same(spec.resources?.requests, { storage: '10Gi' }, 'size of the original claim');
        t.same(spec.dataSourceRef, { apiGroup: 'pvshift.io', kind: 'VolumeMigration', name: 'data-web-0' });
        t.notOk(spec.dataSource);
        t.notOk(spec.volumeName);
        t.equal(object.metadata?.annotations?.[ANNOTATION_MIGRATION], 'data-web-0');
        t.equal(warnings.length, 1);
      } else {
        t.equal(spec.storageClassName, 'slow-hdd');
        t.equal(spec.volumeName, ORIGINAL_CLAIM_SPEC.volumeName);
        t.notOk(spec.dataSourceRef);
        t.equal(object.metadata?.annotations?.[ANNOTATION_MIGRATION], 'data-web-0');
      }
      t.same(claim, before, 'the input is not modified');
      t.end();
    });
  }
  void t.test('no phase yet counts as Pending: unchanged', (t) => {
    const claim = statefulSetClaim();
    const before = structuredClone(claim);
    t.same(mutateClaim(claim, [migration('data-web-0', undefined)]).object, before);
    t.same(claim, before, 'the input is not modified');
    t.end();
  });
  t.end();
});

void t.test('rewrite in cutover', (t) => {
  void t.test('keeps the user labels and annotations, keys with / included', (t) => {
    const { object } = mutateClaim(statefulSetClaim(), [migration('data-web-0', 'CuttingOver')]);
    t.same(object.metadata?.labels, { app: 'web', 'app.kubernetes.io/name': 'web' });
    t.same(object.metadata?.annotations, {
      'example.com/owner': 'team-a',
      'backup.velero.io/backup-volumes': 'data',
      [ANNOTATION_MIGRATION]: 'data-web-0',
    });
    t.end();
  });
  void t.test('targetSize and targetAccessModes win over the original', (t) => {
    const m = migration('data-web-0', 'Populating', {
      spec: { targetSize: '20Gi', targetAccessModes: ['ReadWriteOncePod'] },
    });
    const { object } = mutateClaim(statefulSetClaim(), [m]);
    t.same(object.spec?.resources?.requests, { storage: '20Gi' });
    t.same(object.spec?.accessModes, ['ReadWriteOncePod']);
    t.end();
  });
  void t.test('an integer targetSize (int-or-string in the CRD) becomes a quantity string', (t) => {
    const m = migration('data-web-0', 'CuttingOver', { spec: { targetSize: 5368709120 as unknown as string } });
    t.same(mutateClaim(statefulSetClaim(), [m]).object.spec?.resources?.requests, { storage: '5368709120' });
    t.end();
  });
  // The copy's volume was provisioned with the original's modes; a claim asking for others would never bind to it.
  void t.test("without targetAccessModes the original's, whatever the created claim asks for", (t) => {
    const claim = statefulSetClaim('data-web-0', { spec: { accessModes: ['ReadWriteMany'] } });
    t.same(mutateClaim(claim, [migration('data-web-0', 'CuttingOver')]).object.spec?.accessModes, ['ReadWriteOnce']);
    t.end();
  });
  void t.test("the spec is the migration's alone: nothing of the created claim's spec is kept", (t) => {
    const claim = statefulSetClaim('data-web-0', {
      spec: {
        selector: { matchLabels: { tier: 'slow' } },
        volumeAttributesClassName: 'slow-iops',
        volumeMode: 'Block',
        resources: { requests: { storage: '3Gi' }, limits: { storage: '3Gi' } },
      },
    });
    t.same(mutateClaim(claim, [migration('data-web-0', 'CuttingOver')]).object.spec, {
      storageClassName: 'fast-ssd',
      accessModes: ['ReadWriteOnce'],
      volumeMode: 'Filesystem',
      resources: { requests: { storage: '10Gi' } },
      dataSourceRef: { apiGroup: 'pvshift.io', kind: 'VolumeMigration', name: 'data-web-0' },
    });
    t.end();
  });
  // Say, a manifest saved with `kubectl get -o yaml` and applied again: bind-completed
  // on a claim with no volume makes the PV controller mark it Lost at once.
  void t.test('binding and shortcut annotations of the created claim are dropped, the others kept', (t) => {
    const claim = statefulSetClaim('data-web-0', {
      metadata: {
        annotations: {
          'example.com/owner': 'team-a',
          'pv.kubernetes.io/bind-completed': 'yes',
          'pv.kubernetes.io/bound-by-controller': 'yes',
          'volume.kubernetes.io/storage-provisioner': 'hostpath.pvshift.io',
          'volume.kubernetes.io/selected-node': 'node-1',
          [ANNOTATION_TARGET_CLASS]: 'fast-ssd',
          [ANNOTATION_TARGET_SIZE]: '10Gi',
        },
      },
    });
    t.same(mutateClaim(claim, [migration('data-web-0', 'CuttingOver')]).object.metadata?.annotations, {
      'example.com/owner': 'team-a',
      [ANNOTATION_MIGRATION]: 'data-web-0',
    });
    t.end();
  });
  void t.test('a dataSource, dataSourceRef or volumeName from the template is replaced', (t) => {
    const claim = statefulSetClaim('data-web-0', {
      spec: {
        dataSource: { kind: 'PersistentVolumeClaim', name: 'seed' },
        dataSourceRef: { kind: 'PersistentVolumeClaim', name: 'seed' },
        volumeName: 'pv-old',
      },
    });
    const { object } = mutateClaim(claim, [migration('data-web-0', 'CuttingOver')]);
    t.notOk(object.spec?.dataSource);
    t.notOk(object.spec?.volumeName);
    t.same(object.spec?.dataSourceRef, { apiGroup: 'pvshift.io', kind: 'VolumeMigration', name: 'data-web-0' });
    t.end();
  });
  void t.test('targetSize and targetAccessModes are enough without a snapshot', (t) => {
    const spec = { targetSize: '1Gi', targetAccessModes: ['ReadWriteOnce'] };
    const m = migration('data-web-0', 'CuttingOver', { withSnapshot: false, spec });
    const { object } = mutateClaim(statefulSetClaim(), [m]);
    t.same(object.spec?.resources?.requests, { storage: '1Gi' });
    t.same(object.spec?.accessModes, ['ReadWriteOnce']);
    t.end();
  });
  const denied: [string, ReturnType<typeof migration>, string][] = [
    [
      'no snapshot and no targetSize: the size is unknown',
      migration('data-web-0', 'CuttingOver', { withSnapshot: false }),
      'the migration has no targetSize and its status holds no snapshot of the original claim',
    ],
    [
      'no snapshot and no targetAccessModes: the access modes are unknown',
      migration('data-web-0', 'CuttingOver', { withSnapshot: false, spec: { targetSize: '1Gi' } }),
      'the migration has no targetAccessModes and its status holds no snapshot of the original claim',
    ],
    [
      'a targetSize of zero',
      migration('data-web-0', 'CuttingOver', { spec: { targetSize: '0' } }),
      'the target size "0" is not a quantity greater than zero',
    ],
    [
      'a targetSize that is no quantity pvshift can check',
      migration('data-web-0', 'CuttingOver', { spec: { targetSize: '-1Gi' } }),
      'the target size "-1Gi" is not a quantity greater than zero',
    ],
  ];
  for (const [name, m, problem] of denied) {
    void t.test(`${name}: denied`, (t) => {
      t.throws(() => mutateClaim(statefulSetClaim(), [m]), {
        name: 'AdmissionDenial',
        message:
          'claim "data-web-0" is in cutover to storage class "fast-ssd" (VolumeMigration "data-web-0", phase CuttingOver), ' +
          `but ${problem}; refusing to create it until the migration says what it must be`,
      });
      t.end();
    });
  }
  void t.test('the migration may be named differently from the claim', (t) => {
    const m = migration('move-web-0', 'Binding', { claimName: 'data-web-0' });
    const { object } = mutateClaim(statefulSetClaim(), [m]);
    t.equal(object.spec?.dataSourceRef?.name, 'move-web-0');
    t.equal(object.metadata?.annotations?.[ANNOTATION_MIGRATION], 'move-web-0');
    t.end();
  });
  t.end();
});

void t.test('restore in rollback', (t) => {
  void t.test('the claim comes back exactly as the original, on the source volume', (t) => {
    const claim = statefulSetClaim('data-web-0', {
      spec: {
        storageClassName: 'fast-ssd',
        dataSourceRef: { apiGroup: 'pvshift.io', kind: 'VolumeMigration', name: 'data-web-0' },
      },
    });
    const { object, warnings } = mutateClaim(claim, [migration('data-web-0', 'RollingBack')]);
    t.same(object.spec, {
      accessModes: ['ReadWriteOnce'],
      storageClassName: 'slow-hdd',
      volumeMode: 'Filesystem',
      resources: { requests: { storage: '10Gi' } },
      volumeName: ORIGINAL_CLAIM_SPEC.volumeName,
    });
    t.match(warnings, [/rolling back; this claim returns to volume pvc-0a1b/]);
    t.end();
  });
  void t.test(
    "the original's spec exactly, not the created claim's; binding annotations dropped, the shortcut's kept",
    (t) => {
      const m = migration('data-web-0', 'RollingBack');
      m.status!.originalClaim!.spec.selector = { matchLabels: { tier: 'slow' } };
      const claim = statefulSetClaim('data-web-0', {
        metadata: {
          annotations: { 'pv.kubernetes.io/bind-completed': 'yes', [ANNOTATION_TARGET_CLASS]: 'fast-ssd' },
        },
        spec: { volumeAttributesClassName: 'fast-iops', resources: { requests: { storage: '20Gi' } } },
      });
      const { object } = mutateClaim(claim, [m]);
      t.same(object.spec, { ...ORIGINAL_CLAIM_SPEC, selector: { matchLabels: { tier: 'slow' } } });
      t.same(object.metadata?.annotations, {
        [ANNOTATION_TARGET_CLASS]: 'fast-ssd',
        [ANNOTATION_MIGRATION]: 'data-web-0',
      });
      t.end();
    },
  );
  void t.test('an original without storageClassName restores without one', (t) => {
    const m = migration('data-web-0', 'RollingBack');
    delete m.status!.originalClaim!.spec.storageClassName;
    t.notOk('storageClassName' in mutateClaim(statefulSetClaim(), [m]).object.spec!);
    t.end();
  });
  const missing: [string, (m: ReturnType<typeof migration>) => void, string][] = [
    ['originalClaim', (m) => delete m.status!.originalClaim, 'status.originalClaim is missing'],
    ['sourceVolumeName', (m) => delete m.status!.sourceVolumeName, 'status.sourceVolumeName is missing'],
    [
      'both',
      (m) => {
        delete m.status!.originalClaim;
        delete m.status!.sourceVolumeName;
      },
      'status.originalClaim and status.sourceVolumeName are missing',
    ],
  ];
  for (const [what, strip, text] of missing) {
    void t.test(`no ${what}: denied`, (t) => {
      const m = migration('data-web-0', 'RollingBack');
      strip(m);
      t.throws(() => mutateClaim(statefulSetClaim(), [m]), {
        message:
          `claim "data-web-0" is being rolled back by VolumeMigration "data-web-0", but its ${text}; ` +
          'refusing to create it on anything but the original volume',
      });
      t.end();
    });
  }
  t.end();
});

void t.test('which migrations count', (t) => {
  const cases: {
    name: string;
    migrations: ReturnType<typeof migration>[];
    expect: 'unchanged' | 'rewritten' | 'denied';
  }[] = [
    { name: 'none', migrations: [], expect: 'unchanged' },
    { name: 'one for another claim', migrations: [migration('data-web-1', 'CuttingOver')], expect: 'unchanged' },
    {
      name: 'one in another namespace',
      migrations: [migration('data-web-0', 'CuttingOver', { namespace: 'other' })],
      expect: 'unchanged',
    },
    {
      name: 'a finished one and one in cutover',
      migrations: [
        migration('old', 'Succeeded', { claimName: 'data-web-0' }),
        migration('new', 'CuttingOver', { claimName: 'data-web-0' }),
      ],
      expect: 'rewritten',
    },
    {
      name: 'two in cutover',
      migrations: [
        migration('a', 'CuttingOver', { claimName: 'data-web-0' }),
        migration('b', 'RollingBack', { claimName: 'data-web-0' }),
      ],
      expect: 'denied',
    },
  ];
  for (const c of cases) {
    void t.test(`${c.name}: ${c.expect}`, (t) => {
      const claim = statefulSetClaim();
      const before = structuredClone(claim);
      if (c.expect === 'denied') {
        t.throws(
          () => mutateClaim(claim, c.migrations),
          new AdmissionDenial(
            'claim "data-web-0" is claimed by several VolumeMigrations in cutover (a, b); ' +
              'pvshift cannot tell which one this claim belongs to: abort all but one',
          ),
        );
        t.end();
        return;
      }
      const { object } = mutateClaim(claim, c.migrations);
      if (c.expect === 'unchanged') t.same(object, before);
      else t.equal(object.spec?.storageClassName, 'fast-ssd');
      t.same(claim, before, 'the input is not modified');
      t.end();
    });
  }
  void t.test('a claim with only generateName is never a migration target', (t) => {
    const claim = statefulSetClaim();
    delete claim.metadata!.name;
    claim.metadata!.generateName = 'data-web-0';
    const before = structuredClone(claim);
    t.same(mutateClaim(claim, [migration('data-web-0', 'CuttingOver')]).object, before);
    t.same(claim, before, 'the input is not modified');
    t.end();
  });
  t.end();
});

void t.test('reinvocation and the patch', (t) => {
  for (const phase of ['CuttingOver', 'RollingBack'] as const) {
    void t.test(`${phase}: applying the mutation to its own output changes nothing`, (t) => {
      const migrations = [migration('data-web-0', phase)];
      const once = mutateClaim(statefulSetClaim(), migrations).object;
      const onceBefore = structuredClone(once);
      const twice = mutateClaim(once, migrations);
      t.same(twice.object, onceBefore);
      t.same(once, onceBefore, 'the input is not modified');
      t.same(diff(onceBefore, twice.object), [], 'no patch');
      t.same(twice.warnings, [], 'no warning the second time');
      t.end();
    });
  }
  void t.test('the patch escapes / in annotation keys and reproduces the mutation', (t) => {
    const claim = statefulSetClaim();
    const before = structuredClone(claim);
    const { object } = mutateClaim(claim, [migration('data-web-0', 'CuttingOver')]);
    t.same(claim, before, 'the input is not modified');
    const operations = diff(claim, object);
    t.ok(operations.some((op) => op.path === '/metadata/annotations/pvshift.io~1migration'));
    t.same(jsonpatch.applyPatch(structuredClone(claim), operations).newDocument, object);
    t.end();
  });
  void t.test('a claim without annotations or spec fields still patches cleanly', (t) => {
    const claim = { metadata: { name: 'data-web-0', namespace: NAMESPACE }, spec: {} };
    const { object } = mutateClaim(claim, [migration('data-web-0', 'CuttingOver')]);
    t.same(jsonpatch.applyPatch(structuredClone(claim), diff(claim, object)).newDocument, object);
    t.equal(object.metadata?.annotations?.[ANNOTATION_MIGRATION], 'data-web-0');
    t.end();
  });
  t.end();
});
