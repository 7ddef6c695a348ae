// The work queue: one worker per key, a re-add while processing runs once
// more, failures back off per key and reset, shutdown wakes every getter.
import t from 'tap';
import { WorkQueue } from '../../populator/queue.js';

const tick = () => new Promise((resolve) => setImmediate(resolve));

t.test('a key is handed to one worker at a time', async (t) => {
  const q = new WorkQueue();
  q.add('a');
  q.add('a');
  t.equal(q.length, 1, 'adding a queued key twice queues it once');
  t.equal(await q.get(), 'a');
  q.add('a');
  t.equal(q.length, 0, 'added while processing: not handed to a second worker');
  let second: string | undefined;
  void q.get().then((k) => (second = k));
  await tick();
  t.equal(second, undefined, 'a second worker waits');
  q.done('a');
  await tick();
  t.equal(second, 'a', 'after done, it runs once more');
  q.done('a');
  t.equal(q.length, 0, 'and not again');
  q.shutdown();
});

t.test('several adds while processing run it exactly once more', async (t) => {
  const q = new WorkQueue();
  q.add('a');
  await q.get();
  q.add('a');
  q.add('a');
  q.add('a');
  q.done('a');
  t.equal(q.length, 1);
  t.equal(await q.get(), 'a');
  q.done('a');
  t.equal(q.length, 0);
  q.shutdown();
});

t.test('keys come out in order, other keys are not held by one in process', async (t) => {
  const q = new WorkQueue();
  q.add('a');
  q.add('b');
  t.equal(await q.get(), 'a');
  q.add('c');
  t.equal(await q.get(), 'b');
  t.equal(await q.get(), 'c');
  q.shutdown();
});

t.test('backoff grows per key, is capped, and resets on forget', (t) => {
  const q = new WorkQueue();
  t.same(
    [1, 2, 3, 4].map(() => q.addRateLimited('a')),
    [500, 1000, 2000, 4000],
    'doubling from 500 ms',
  );
  t.equal(q.addRateLimited('b'), 500, 'each key has its own count');
  for (let i = 0; i < 20; i++) q.addRateLimited('a');
  t.equal(q.addRateLimited('a'), 60_000, 'capped at 60 s');
  q.forget('a');
  t.equal(q.addRateLimited('a'), 500, 'a success resets it');
  q.shutdown();
  t.end();
});

t.test('addAfter adds the key once the delay passed', async (t) => {
  const q = new WorkQueue();
  // The queue's timers are unref'd (they must not hold a stopping process): keep this one alive.
  const alive = setTimeout(() => {}, 5000);
  q.addAfter('a', 30);
  t.equal(q.length, 0, 'not yet');
  const started = Date.now();
  t.equal(await q.get(), 'a');
  clearTimeout(alive);
  t.ok(Date.now() - started >= 25, 'after the delay');
  q.addAfter('b', 0);
  t.equal(q.length, 1, 'no delay: at once');
  q.shutdown();
});

t.test('shutdown wakes every waiting getter with undefined and takes nothing more', async (t) => {
  const q = new WorkQueue();
  const getters = [q.get(), q.get(), q.get()];
  await tick();
  q.addAfter('late', 10);
  q.shutdown();
  t.same(await Promise.all(getters), [undefined, undefined, undefined]);
  q.add('a');
  t.equal(q.length, 0, 'adds after shutdown are dropped');
  t.equal(await q.get(), undefined, 'a get after shutdown returns at once');
  await new Promise((resolve) => setTimeout(resolve, 30));
  t.equal(q.length, 0, 'pending delayed adds were cancelled');
});
