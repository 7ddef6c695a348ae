// --changed-since: a file rewritten in place with the same size and its mtime
// put back passes rsync's quick check (size + mtime) with stale contents on the
// target. Its ctime cannot be put back: with the flag, the runner compares the
// contents of every file whose ctime is at or after the given instant, and
// sends those that differ.
import t, { type Test } from 'tap';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { binWithout, ctimeAfterTree, runInProcess, sh } from './fixtures/trees.js';
import type { Summary } from '../../src/runner-protocol.js';

/** The bytes ff fe: a name that is not valid UTF-8. */
const ODD = Buffer.from([0xff, 0xfe]);
const inside = (dir: string, name: Buffer | string): Buffer =>
  Buffer.concat([Buffer.from(`${dir}/`), Buffer.from(name)]);
/** A path for bash, byte for byte: $'\x..' (Node passes a command line as UTF-8). */
const shellBytes = (p: Buffer): string => `$'${[...p].map((b) => `\\x${b.toString(16).padStart(2, '0')}`).join('')}'`;

/**
 * Rewrites a file in place (same inode, same size, other bytes) and puts its
 * mtime back to the nanosecond with touch (Node's utimes has no nanoseconds).
 */
function rewriteKeepingMtime(file: Buffer): Buffer {
  const before = fs.lstatSync(file, { bigint: true });
  const bytes = randomBytes(Number(before.size));
  fs.writeFileSync(file, bytes);
  const s = before.mtimeNs / 1_000_000_000n;
  const ns = (before.mtimeNs % 1_000_000_000n).toString().padStart(9, '0');
  sh(`touch -m -d @${s}.${ns} ${shellBytes(file)}`);
  const after = fs.lstatSync(file, { bigint: true });
  if (after.mtimeNs !== before.mtimeNs || after.size !== before.size || after.ino !== before.ino)
    throw new Error('the rewrite must keep size, mtime and inode');
  return bytes;
}

const summaryOf = (stdout: string[]): Summary => JSON.parse(stdout.at(-1) ?? '{}') as Summary;

/** ns since the epoch as RFC 3339 in UTC with all nine digits, as the controller could send it. */
function rfc3339(ns: bigint): string {
  const seconds = ns / 1_000_000_000n;
  return `${new Date(Number(seconds) * 1000).toISOString().slice(0, 19)}.${(ns % 1_000_000_000n).toString().padStart(9, '0')}Z`;
}

for (const scan of ['find', 'the Node walk'] as const) {
  void t.test(
    `a same-size rewrite with its mtime put back: missed without --changed-since, copied with it (${scan})`,
    async (t) => {
      const work = fs.mkdtempSync(path.join(os.tmpdir(), 'pvshift-changed-since-'));
      t.teardown(() => fs.rmSync(work, { recursive: true, force: true }));
      if (scan === 'the Node walk') {
        // No find in the image: the pre-scan's fallback must list changed files too.
        const saved = process.env.PATH;
        process.env.PATH = binWithout(path.join(work, 'bin'), ['find']);
        t.teardown(() => (process.env.PATH = saved));
      }
      const src = path.join(work, 'src');
      const dst = path.join(work, 'dst');
      fs.mkdirSync(path.join(src, 'd'), { recursive: true });
      fs.mkdirSync(dst);
      fs.writeFileSync(path.join(src, 'd', 'data'), randomBytes(8192));
      fs.linkSync(path.join(src, 'd', 'data'), path.join(src, 'link'));
      fs.writeFileSync(inside(src, ODD), randomBytes(100));
      fs.writeFileSync(path.join(src, 'same'), randomBytes(100));
      sh("touch -d '2001-02-03 04:05:06.123456789' d/data && touch -d @1000000000 $'\\xff\\xfe'", src);
      const log = path.join(work, 'log');
      const args = ['--source', src, '--target', dst, '--termination-log', log, '--delete'];

      const first = await runInProcess(args);
      t.equal(first.code, 0, first.stderr.join('\n'));

      const since = ctimeAfterTree(src, work);
      const data = rewriteKeepingMtime(inside(src, 'd/data'));
      const odd = rewriteKeepingMtime(inside(src, ODD));

      const without = await runInProcess([...args, '--verify', 'metadata']);
      t.equal(without.code, 0, without.stderr.join('\n'));
      t.match(summaryOf(without.stdout), { filesTransferred: 0 }, 'without the flag: nothing sent');
      t.not(
        fs.readFileSync(path.join(dst, 'd', 'data')).equals(data),
        'without the flag the target keeps the old bytes (the quick check trusts size and mtime)',
      );
      t.not(fs.readFileSync(inside(dst, ODD)).equals(odd), 'the odd name too');

      const sinceText = rfc3339(since);
      const withFlag = await runInProcess([...args, '--verify', 'checksum', `--changed-since=${sinceText}`]);
      t.equal(withFlag.code, 0, withFlag.stderr.join('\n'));
      const summary = summaryOf(withFlag.stdout);
      t.match(summary, { ok: true, verified: 'checksum', filesTransferred: 2 }, 'the two changed inodes, nothing else');
      t.match(
        withFlag.stderr.join('\n'),
        /--changed-since \S+: 3 regular file path\(s\) changed \(ctime\) since then; 3 of them have the source's size and mtime on the target: their contents are compared/,
      );
      t.ok(fs.readFileSync(path.join(dst, 'd', 'data')).equals(data), 'the new bytes');
      t.ok(fs.readFileSync(path.join(dst, 'link')).equals(data), 'the hard link too');
      t.equal(fs.statSync(path.join(dst, 'link')).ino, fs.statSync(path.join(dst, 'd', 'data')).ino, 'still one inode');
      t.ok(fs.readFileSync(inside(dst, ODD)).equals(odd), 'a name that is not UTF-8');
      const [a, b] = [
        fs.lstatSync(path.join(src, 'd', 'data'), { bigint: true }),
        fs.lstatSync(path.join(dst, 'd', 'data'), { bigint: true }),
      ];
      t.equal(b.mtimeNs, a.mtimeNs, "the target's mtime is the source's again");

      const again = await runInProcess([...args, '--verify', 'metadata', `--changed-since=${sinceText}`]);
      t.equal(again.code, 0);
      t.match(summaryOf(again.stdout), { filesTransferred: 0 }, 'compared again, found equal, nothing sent');
    },
  );
}

void t.test('--changed-since into an empty target: everything is copied anyway', async (t: Test) => {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'pvshift-changed-since-empty-'));
  t.teardown(() => fs.rmSync(work, { recursive: true, force: true }));
  fs.mkdirSync(path.join(work, 'src'));
  fs.mkdirSync(path.join(work, 'dst'));
  fs.writeFileSync(path.join(work, 'src', 'f'), 'x');
  const run = await runInProcess([
    '--source',
    path.join(work, 'src'),
    '--target',
    path.join(work, 'dst'),
    '--changed-since=1970-01-01T00:00:00Z',
    '--termination-log',
    path.join(work, 'log'),
  ]);
  t.equal(run.code, 0, run.stderr.join('\n'));
  t.match(
    run.stderr.join('\n'),
    /--changed-since 1970-01-01T00:00:00\.000000000Z: 1 regular file path\(s\) changed \(ctime\) since then; the target is empty: everything is copied/,
  );
});
