// The work queue's keys: what the controller enqueues reads back as the same
// key, and no other text reads as a key.
import t from 'tap';
import { cacheKeyOf, formatWorkKey, parseWorkKey, workKeyOf, type WorkKey } from '../../populator/work-key.js';

t.test('a key survives the queue', (t) => {
  const keys: WorkKey[] = [
    { kind: 'migration', namespace: 'shop', name: 'data-web-0' },
    { kind: 'claim', namespace: 'shop', name: 'data-web-0' },
    { kind: 'pod', namespace: 'kube-system', name: 'web-0' },
    { kind: 'statefulset', namespace: 'shop', name: 'db' },
    { kind: 'deployment', namespace: 'shop', name: 'web' },
  ];
  for (const key of keys) t.same(parseWorkKey(formatWorkKey(key)), key, `${key.kind} ${key.namespace}/${key.name}`);
  t.end();
});

t.test('kinds of the same object are different keys', (t) => {
  const object = { metadata: { namespace: 'shop', name: 'data-web-0' } };
  t.equal(workKeyOf('migration', object), 'migration/shop/data-web-0');
  t.equal(workKeyOf('claim', object), 'claim/shop/data-web-0');
  t.not(
    workKeyOf('migration', object),
    workKeyOf('claim', object),
    'a migration and its claim of one name are queued apart',
  );
  t.end();
});

t.test("the cache key is the informer's namespace/name", (t) => {
  t.equal(cacheKeyOf({ kind: 'pod', namespace: 'shop', name: 'web-0' }), 'shop/web-0');
  t.end();
});

t.test('text no formatWorkKey made is no key', (t) => {
  const cases: [string, string][] = [
    ['a bare cache key', 'shop/data-web-0'],
    ['an unknown kind', 'volume/shop/pv-1'],
    ['no name', 'claim/shop/'],
    ['no namespace', 'claim//data-web-0'],
    ['one part too many', 'claim/shop/data/web-0'],
    ['empty', ''],
  ];
  for (const [name, text] of cases) t.equal(parseWorkKey(text), undefined, name);
  t.end();
});
