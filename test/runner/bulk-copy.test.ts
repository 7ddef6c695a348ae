// The bulk copy's pieces: cp's command lines cut into batches, cp per group
// of top-level names, and what a failing cp leaves.
import t from 'tap';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cpBatches, runCp, runCpGroups } from '../../runner/bulk-copy.js';

void t.test('batches of cp arguments', (t) => {
  t.same(cpBatches([]), [], 'nothing to copy: no cp');
  t.same(cpBatches(['/s/a', '/s/b', '/s/c']), [['/s/a', '/s/b', '/s/c']], 'a short list: one cp');
  const many = Array.from({ length: 4500 }, (_, i) => `/s/${i}`);
  t.same(
    cpBatches(many).map((b) => b.length),
    [2000, 2000, 500],
    'at most 2,000 paths a cp',
  );
  const long = Array.from({ length: 40 }, (_, i) => `/s/${String(i).padStart(4000, 'x')}`);
  const byBytes = cpBatches(long);
  t.ok(
    byBytes.length > 1 && byBytes.every((b) => b.reduce((s, p) => s + Buffer.byteLength(p) + 1, 0) <= 64 * 1024),
    'at most 64 KiB of arguments a cp',
  );
  t.same(byBytes.flat(), long, 'every path once, in order');
  t.same(cpBatches(['/s/ü', '/s/a'], 6), [['/s/ü'], ['/s/a']], 'bytes, not characters');
  t.end();
});

void t.test('cp per group', async (t) => {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'pvshift-bulk-'));
  t.teardown(() => fs.rmSync(work, { recursive: true, force: true }));
  const src = path.join(work, 'src');
  for (const name of ['a', 'b', 'c', '-d']) {
    fs.mkdirSync(path.join(src, name), { recursive: true });
    fs.writeFileSync(path.join(src, name, 'f'), name);
  }
  const children = new Set<ChildProcess>();
  const signal = new AbortController().signal;
  const p = (n: string): string => path.join(src, n);

  const ok = path.join(work, 'ok');
  fs.mkdirSync(ok);
  t.same(await runCpGroups(ok, [[[p('a')], [p('b')]], [[p('c'), p('-d')]]], children, signal), {
    ok: true,
    vanished: 0,
  });
  t.same(fs.readdirSync(ok).sort(), ['-d', 'a', 'b', 'c'], 'every group, every batch');
  t.equal(fs.readFileSync(path.join(ok, '-d', 'f'), 'utf8'), '-d');

  const failed = path.join(work, 'failed');
  fs.mkdirSync(failed);
  const result = await runCpGroups(
    failed,
    [
      [[p('vanished')], [p('a')]],
      [[p('b')], [p('c')]],
    ],
    children,
    signal,
  );
  t.match(result, { ok: false, failure: /cp exited 1: .*vanished.*No such file or directory/ });
  t.notOk(fs.existsSync(path.join(failed, 'a')), "the failed group's next batch never starts");
  t.equal(children.size, 0, 'no cp left running');

  const stopped = new AbortController();
  stopped.abort();
  const none = path.join(work, 'none');
  fs.mkdirSync(none);
  t.same(
    await runCpGroups(none, [[[p('a')]], [[p('b')]]], children, stopped.signal),
    { ok: false, failure: 'stopped', vanished: 0 },
    'stopped: nothing starts, and it is not ok',
  );
  t.same(fs.readdirSync(none), []);

  // --allow-vanished: a source entry gone before cp reached it is counted; the rest is copied.
  const allowed = path.join(work, 'allowed');
  fs.mkdirSync(allowed);
  const vanishedToo = await runCpGroups(
    allowed,
    [
      [[p('gone-1'), p('a')], [p('b')]],
      [[p('gone-2')], [p('c')]],
    ],
    children,
    signal,
    true,
  );
  t.same(vanishedToo, { ok: true, vanished: 2 }, 'allowed: ok, both counted');
  t.same(fs.readdirSync(allowed).sort(), ['a', 'b', 'c'], 'no group stopped');
  const noParent = await runCp(src, path.join(work, 'no-parent', 'x'), children, true);
  t.match(
    noParent,
    { ok: false, failure: /cannot create directory .*No such file or directory/ },
    'ENOENT on the target side is not a vanished source entry',
  );

  const savedPath = process.env.PATH;
  process.env.PATH = path.join(work, 'no-such-dir');
  t.teardown(() => (process.env.PATH = savedPath));
  t.match(
    await runCp(src, path.join(work, 'nocp'), children),
    { ok: false, failure: /cp could not start: .*ENOENT/ },
    'no cp in the image: a failure, not a crash',
  );
  t.equal(children.size, 0);
});
