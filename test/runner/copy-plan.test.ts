// Which engine the runner picks, from the pre-scan and the target's state.
import t from 'tap';
import { planCopy, splitTopLevel, PARALLEL_MIN_FILES } from '../../runner/copy-plan.js';
import type { TreeTotals } from '../../runner/tree-totals.js';

type Totals = Pick<TreeTotals, 'files' | 'topLevel' | 'linkedTopLevels'>;
function totalsOf(perTop: Record<string, number>, linked: [string, string][] = []): Totals {
  const topLevel = new Map(Object.entries(perTop).map(([k, files]) => [k, { files, bytes: files * 4096 }]));
  return { files: Object.values(perTop).reduce((a, b) => a + b, 0), topLevel, linkedTopLevels: linked };
}
const many = totalsOf({ a: 30_000, b: 30_000, c: 30_000, d: 10_000 });

void t.test('engine choice', (t) => {
  const cases: { name: string; input: Parameters<typeof planCopy>[0]; bulk: boolean; groups: number }[] = [
    {
      name: 'empty target, few files: cp then one rsync',
      input: { totals: totalsOf({ a: 10 }), targetEmpty: true, bwlimitKiBps: 0, cpus: 2 },
      bulk: true,
      groups: 0,
    },
    {
      name: 'empty target, many files: cp then two rsyncs',
      input: { totals: many, targetEmpty: true, bwlimitKiBps: 0, cpus: 2 },
      bulk: true,
      groups: 2,
    },
    {
      name: 'target holds data: rsync only',
      input: { totals: many, targetEmpty: false, bwlimitKiBps: 0, cpus: 2 },
      bulk: false,
      groups: 2,
    },
    {
      name: '--bwlimit: rsync only (cp cannot be throttled)',
      input: { totals: many, targetEmpty: true, bwlimitKiBps: 100, cpus: 2 },
      bulk: false,
      groups: 2,
    },
    {
      name: 'one CPU: one rsync',
      input: { totals: many, targetEmpty: false, bwlimitKiBps: 0, cpus: 1 },
      bulk: false,
      groups: 0,
    },
    {
      name: '16 CPUs: still two (more lost on 2 cores; not measured beyond)',
      input: { totals: many, targetEmpty: false, bwlimitKiBps: 0, cpus: 16 },
      bulk: false,
      groups: 2,
    },
  ];
  for (const c of cases) {
    const plan = planCopy(c.input);
    t.equal(plan.bulk, c.bulk, `${c.name}: bulk`);
    t.equal(plan.groups.length, c.groups, `${c.name}: groups`);
    t.type(plan.reason, 'string');
  }
  t.end();
});

void t.test('splitting the top level', (t) => {
  const even = splitTopLevel(many, 2);
  t.same(
    even.groups.map((g) => g.length).reduce((a, b) => a + b),
    4,
    'every name in exactly one group',
  );
  t.same(new Set(even.groups.flat()), new Set(['a', 'b', 'c', 'd']));

  t.equal(splitTopLevel(totalsOf({ a: PARALLEL_MIN_FILES - 2 }), 2).groups.length, 1, 'few entries: one group');
  t.equal(splitTopLevel(totalsOf({ a: 90_000, b: 10_000 }), 2).groups.length, 1, 'one name holds 90%: one group');

  const linked = splitTopLevel(many, 2);
  const tied = splitTopLevel(
    totalsOf({ a: 30_000, b: 30_000, c: 30_000, d: 10_000 }, [
      ['a', 'd'],
      ['b', 'c'],
    ]),
    2,
  );
  t.ok(linked.groups.length === 2 && tied.groups.length === 2);
  for (const g of tied.groups) {
    t.equal(g.includes('a'), g.includes('d'), 'hard-linked a and d in one group');
    t.equal(g.includes('b'), g.includes('c'), 'hard-linked b and c in one group');
  }
  const chain = splitTopLevel(
    totalsOf({ a: 30_000, b: 30_000, c: 30_000 }, [
      ['a', 'b'],
      ['b', 'c'],
    ]),
    2,
  );
  t.equal(chain.groups.length, 1, 'links tie every name together: one rsync');
  t.match(chain.why, /hard links/);
  t.end();
});
