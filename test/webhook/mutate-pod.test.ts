// The Pod CREATE mutation: which pods are held by the scheduling gate, and how
// the gate and the annotations are written.
import t from 'tap';
import jsonpatch from 'fast-json-patch';
import { ANNOTATION_GATED_AT, ANNOTATION_MIGRATION, SCHEDULING_GATE } from '../../src/names.js';
import { isGatingPods, PHASES } from '../../src/volume-migration.js';
import { claimNamesOf, mutatePod } from '../../webhook/mutate-pod.js';
import { diff } from '../../webhook/responses.js';
import { migration, statefulSetPod } from '../fixtures/admission/builders.js';

const NOW = new Date('2025-03-01T10:00:00.000Z');
const LATER = new Date('2025-03-01T10:00:07.000Z');

void t.test('every phase: gated while the migration is unfinished', (t) => {
  for (const phase of PHASES) {
    const gated = isGatingPods(phase);
    void t.test(`${phase}: ${gated ? 'gated' : 'untouched'}`, (t) => {
      const pod = statefulSetPod();
      // A copy taken before: comparing with `pod` itself would pass even if the mutation wrote into it.
      const before = structuredClone(pod);
      const { object, warnings } = mutatePod(pod, [migration('data-web-0', phase)], NOW);
      t.same(pod, before, 'the input is not modified');
      if (!gated) {
        t.same(object, before);
        t.same(warnings, []);
        t.end();
        return;
      }
      t.same(object.spec?.schedulingGates, [{ name: SCHEDULING_GATE }]);
      t.equal(object.metadata?.annotations?.[ANNOTATION_MIGRATION], 'data-web-0');
      t.equal(object.metadata?.annotations?.[ANNOTATION_GATED_AT], '2025-03-01T10:00:00.000Z');
      t.equal(
        object.metadata?.annotations?.['kubectl.kubernetes.io/default-container'],
        'app',
        'existing annotations stay',
      );
      t.match(warnings, [/held by scheduling gate pvshift.io\/migration until data-web-0/]);
      t.end();
    });
  }
  const terminal = PHASES.filter((p) => !isGatingPods(p));
  t.same(terminal.sort(), ['Aborted', 'Failed', 'RolledBack', 'Succeeded'], 'terminal phases release');
  t.end();
});

const cases: {
  name: string;
  claims: string[];
  migrations: ReturnType<typeof migration>[];
  gates?: string[];
  expectGates?: string[];
  expectMigrations?: string;
}[] = [
  { name: 'no claim under migration', claims: ['data-web-0'], migrations: [migration('data-web-1', 'CuttingOver')] },
  {
    name: 'the migration is in another namespace',
    claims: ['data-web-0'],
    migrations: [migration('data-web-0', 'CuttingOver', { namespace: 'other' })],
  },
  { name: 'the pod mounts no claim', claims: [], migrations: [migration('data-web-0', 'CuttingOver')] },
  {
    name: 'two claims, two migrations: one gate, names sorted',
    claims: ['logs-web-0', 'data-web-0'],
    migrations: [
      migration('zeta', 'PreSyncing', { claimName: 'logs-web-0' }),
      migration('alpha', 'CuttingOver', { claimName: 'data-web-0' }),
    ],
    expectGates: [SCHEDULING_GATE],
    expectMigrations: 'alpha,zeta',
  },
  {
    name: 'two claims, one finished',
    claims: ['data-web-0', 'logs-web-0'],
    migrations: [migration('data-web-0', 'Succeeded'), migration('logs-web-0', 'WaitingForCutover')],
    expectGates: [SCHEDULING_GATE],
    expectMigrations: 'logs-web-0',
  },
  {
    name: 'existing gates keep their order, ours goes last',
    claims: ['data-web-0'],
    migrations: [migration('data-web-0', 'Populating')],
    gates: ['example.com/quota', 'example.com/approval'],
    expectGates: ['example.com/quota', 'example.com/approval', SCHEDULING_GATE],
    expectMigrations: 'data-web-0',
  },
  {
    name: 'our gate already present is not added twice',
    claims: ['data-web-0'],
    migrations: [migration('data-web-0', 'Populating')],
    gates: [SCHEDULING_GATE, 'example.com/quota'],
    expectGates: [SCHEDULING_GATE, 'example.com/quota'],
    expectMigrations: 'data-web-0',
  },
];

void t.test('which pods are gated', (t) => {
  for (const c of cases) {
    void t.test(c.name, (t) => {
      const pod = statefulSetPod(c.claims, { gates: c.gates });
      const before = structuredClone(pod);
      const { object } = mutatePod(pod, c.migrations, NOW);
      t.same(pod, before, 'the input is not modified');
      if (!c.expectGates) {
        t.same(object, before, 'untouched');
        t.end();
        return;
      }
      t.same(
        object.spec?.schedulingGates?.map((g) => g.name),
        c.expectGates,
      );
      t.equal(object.metadata?.annotations?.[ANNOTATION_MIGRATION], c.expectMigrations);
      t.end();
    });
  }
  void t.test('pvshift copy pods are never gated', (t) => {
    const pod = statefulSetPod(['data-web-0'], { labels: { 'app.kubernetes.io/managed-by': 'pvshift' } });
    const before = structuredClone(pod);
    t.same(mutatePod(pod, [migration('data-web-0', 'PreSyncing')], NOW).object, before);
    t.same(pod, before, 'the input is not modified');
    t.end();
  });
  void t.test('a pod with spec.nodeName is let through with a warning (the API rejects gates on it)', (t) => {
    const pod = statefulSetPod(['data-web-0'], { nodeName: 'node-1' });
    const before = structuredClone(pod);
    const { object, warnings } = mutatePod(pod, [migration('data-web-0', 'CuttingOver')], NOW);
    t.same(object, before);
    t.same(pod, before, 'the input is not modified');
    t.same(warnings, [
      'pvshift: this pod sets spec.nodeName, so it cannot be held while data-web-0 is migrated (data-web-0)',
    ]);
    t.end();
  });
  void t.test('claimNamesOf lists each claim once', (t) => {
    const pod = statefulSetPod(['a', 'b', 'a']);
    t.same(claimNamesOf(pod), ['a', 'b']);
    t.end();
  });
  t.end();
});

void t.test('reinvocation and the patch', (t) => {
  void t.test('a second call, later, changes nothing: gated-at keeps the first time', (t) => {
    const migrations = [migration('data-web-0', 'CuttingOver')];
    const once = mutatePod(statefulSetPod(), migrations, NOW).object;
    const onceBefore = structuredClone(once);
    const twice = mutatePod(once, migrations, LATER);
    t.same(twice.object, onceBefore);
    t.same(once, onceBefore, 'the input is not modified');
    t.same(diff(onceBefore, twice.object), [], 'no patch');
    t.same(twice.warnings, []);
    t.end();
  });
  void t.test('a gated-at set by someone before is kept', (t) => {
    const pod = statefulSetPod(['data-web-0'], { annotations: { [ANNOTATION_GATED_AT]: '2025-01-01T00:00:00Z' } });
    t.equal(
      mutatePod(pod, [migration('data-web-0', 'CuttingOver')], NOW).object.metadata?.annotations?.[ANNOTATION_GATED_AT],
      '2025-01-01T00:00:00Z',
    );
    t.end();
  });
  void t.test('a volume added by another webhook before reinvocation updates the list', (t) => {
    const migrations = [migration('data-web-0', 'CuttingOver'), migration('logs-web-0', 'CuttingOver')];
    const once = mutatePod(statefulSetPod(['data-web-0']), migrations, NOW).object;
    once.spec!.volumes!.push({ name: 'logs', persistentVolumeClaim: { claimName: 'logs-web-0' } });
    const twice = mutatePod(once, migrations, LATER).object;
    t.equal(twice.metadata?.annotations?.[ANNOTATION_MIGRATION], 'data-web-0,logs-web-0');
    t.equal(twice.spec?.schedulingGates?.length, 1);
    t.equal(twice.metadata?.annotations?.[ANNOTATION_GATED_AT], NOW.toISOString());
    t.end();
  });
  void t.test('the patch escapes / in keys and reproduces the mutation', (t) => {
    const pod = statefulSetPod();
    const before = structuredClone(pod);
    const { object } = mutatePod(pod, [migration('data-web-0', 'CuttingOver')], NOW);
    t.same(pod, before, 'the input is not modified');
    const operations = diff(pod, object);
    t.ok(operations.some((op) => op.path === '/metadata/annotations/pvshift.io~1gated-at'));
    t.same(jsonpatch.applyPatch(structuredClone(pod), operations).newDocument, object);
    t.end();
  });
  void t.test('a pod without annotations or gates patches cleanly', (t) => {
    const pod = {
      metadata: { name: 'p', namespace: 'shop' },
      spec: { containers: [], volumes: [{ name: 'd', persistentVolumeClaim: { claimName: 'data-web-0' } }] },
    };
    const { object } = mutatePod(pod, [migration('data-web-0', 'CuttingOver')], NOW);
    t.same(jsonpatch.applyPatch(structuredClone(pod), diff(pod, object)).newDocument, object);
    t.end();
  });
  t.end();
});
