// Killed mid-copy (runner and rsync, SIGKILL) and run again: the same tree.
// Run again on an up-to-date target: nothing transferred. SIGTERM: a summary.
import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { countTree, repoRoot, runInProcess, runnerCli, runnerEntries, sh, snapshotTree } from './fixtures/trees.js';
import type { Summary } from '../../src/runner-protocol.js';

function makeSource(src: string): void {
  fs.mkdirSync(path.join(src, 'd'), { recursive: true });
  const fd = fs.openSync(path.join(src, 'big'), 'w');
  for (let i = 0; i < 48; i++) fs.writeSync(fd, randomBytes(1 << 20));
  fs.closeSync(fd);
  for (let i = 0; i < 50; i++) fs.writeFileSync(path.join(src, 'd', `f${i}`), randomBytes(1000 + i));
  sh('ln d/f1 hard && ln -s big sym && setfattr -n user.k -v v d/f2', src);
}

/** Starts the CLI in its own process group; resolves once a progress line shows bytes moving. */
function startThrottled(src: string, dst: string, log: string) {
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      runnerCli,
      '--source',
      src,
      '--target',
      dst,
      '--bwlimit',
      '8000',
      '--progress-interval',
      '0.1',
      '--termination-log',
      log,
    ],
    { cwd: repoRoot, detached: true, stdio: ['ignore', 'pipe', 'ignore'] },
  );
  const lines: string[] = [];
  const moving = new Promise<void>((resolve) => {
    createInterface({ input: child.stdout }).on('line', (line) => {
      lines.push(line);
      const p = JSON.parse(line) as { type: string; bytesDone?: number };
      if (p.type === 'progress' && (p.bytesDone ?? 0) > 4 << 20) resolve();
    });
  });
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  return { child, lines, moving, exited };
}

/** A temp dir (removed after the test) with the source tree, an empty target and a termination-log path. */
function workspace(t: Test, prefix: string): { src: string; dst: string; log: string } {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  t.teardown(() => fs.rmSync(work, { recursive: true, force: true }));
  const src = path.join(work, 'src');
  const dst = path.join(work, 'dst');
  fs.mkdirSync(dst);
  makeSource(src);
  return { src, dst, log: path.join(work, 'log') };
}

void t.test('SIGKILL mid-copy, rerun, rerun again', async (t) => {
  const { src, dst, log } = workspace(t, 'pvshift-kill-');

  const first = startThrottled(src, dst, log);
  await first.moving;
  process.kill(-(first.child.pid ?? 0), 'SIGKILL');
  t.equal((await first.exited).signal, 'SIGKILL');
  t.notOk(fs.existsSync(path.join(dst, 'big')), 'a half-copied file never appears under its own name');

  const t0 = Date.now();
  const again = await runInProcess([
    '--source',
    src,
    '--target',
    dst,
    '--termination-log',
    log,
    '--progress-interval',
    '0.2',
  ]);
  const firstSeconds = (Date.now() - t0) / 1000;
  t.equal(again.code, 0, again.stderr.join('\n'));
  t.same(snapshotTree(dst), snapshotTree(src), 'identical after the rerun');
  t.same(runnerEntries(dst), [], 'the temp dir is gone');

  const progress = again.stdout
    .filter((l) => l.includes('"progress"'))
    .map((l) => JSON.parse(l) as Record<string, number>);
  for (const key of ['bytesDone', 'filesDone', 'elapsedSeconds']) {
    const values = progress.map((p) => p[key] ?? 0);
    t.same(
      values,
      [...values].sort((a, b) => a - b),
      `${key} never decreases`,
    );
  }

  const t1 = Date.now();
  const third = await runInProcess(['--source', src, '--target', dst, '--termination-log', log]);
  const thirdSeconds = (Date.now() - t1) / 1000;
  const summary = JSON.parse(third.stdout.at(-1) ?? '{}') as Summary;
  const counted = countTree(src);
  t.match(summary, {
    ok: true,
    bytesTransferred: 0,
    filesTransferred: 0,
    bytes: counted.bytes,
    files: counted.files,
    verified: 'metadata',
  });
  t.ok(thirdSeconds < firstSeconds, `up-to-date rerun ${thirdSeconds}s < copying run ${firstSeconds}s`);
  t.same(snapshotTree(dst), snapshotTree(src), 'still identical');
});

void t.test('SIGTERM: forwarded to rsync, summary ok:false, transient exit', async (t) => {
  const { src, dst, log } = workspace(t, 'pvshift-term-');
  const run = startThrottled(src, dst, log);
  await run.moving;
  process.kill(run.child.pid ?? 0, 'SIGTERM');
  const { code } = await run.exited;
  t.equal(code, 75);
  const summary = JSON.parse(run.lines.at(-1) ?? '{}') as Summary;
  t.match(summary, { type: 'summary', ok: false, exitCode: 75, message: /SIGTERM/ });
  t.same(JSON.parse(fs.readFileSync(log, 'utf8')), summary, 'termination log written');
});

void t.test('SIGKILL during the bulk copy (cp -a into the temp dir), rerun', async (t) => {
  const { src, dst, log } = workspace(t, 'pvshift-kill-bulk-');
  // Enough files that cp is still running when the first ones show up in the temp dir.
  for (let d = 0; d < 20; d++) {
    fs.mkdirSync(path.join(src, `many${d}`));
    for (let f = 0; f < 500; f++) fs.writeFileSync(path.join(src, `many${d}`, `f${f}`), randomBytes(2048));
  }
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', runnerCli, '--source', src, '--target', dst, '--verify', 'none', '--termination-log', log],
    {
      cwd: repoRoot,
      detached: true,
      stdio: 'ignore',
    },
  );
  const exited = new Promise<{ signal: string | null }>((resolve) =>
    child.on('exit', (_code, signal) => resolve({ signal })),
  );
  // The temp dir's name is new on every run: whichever runner entry has the bulk copy in it.
  const copying = (): boolean => runnerEntries(dst).some((n) => fs.existsSync(path.join(dst, n, 'bulk', 'many0')));
  while (!copying()) await new Promise((r) => setTimeout(r, 2));
  process.kill(-(child.pid ?? 0), 'SIGKILL');
  t.equal((await exited).signal, 'SIGKILL');
  // Each top-level name is renamed into place only after cp exited 0: whatever is
  // under a real name is a complete copy; a partial file is only ever in the temp dir.
  t.equal(runnerEntries(dst).length, 1, 'the killed run left its temp dir');
  for (const name of fs.readdirSync(dst).filter((n) => !n.startsWith('.pvshift-runner-'))) {
    t.same(
      snapshotTree(path.join(dst, name), { xattrs: false, acls: false }),
      snapshotTree(path.join(src, name), { xattrs: false, acls: false }),
      `${name} is complete`,
    );
  }

  const again = await runInProcess(['--source', src, '--target', dst, '--termination-log', log]);
  t.equal(again.code, 0, again.stderr.join('\n'));
  t.match(again.stderr.join('\n'), /engine: empty target: cp -a/, 'the rerun finds only the temp dir: bulk copy again');
  t.same(
    snapshotTree(dst, { xattrs: false, acls: false }),
    snapshotTree(src, { xattrs: false, acls: false }),
    'identical after the rerun',
  );
  t.same(snapshotTree(path.join(dst, 'd')), snapshotTree(path.join(src, 'd')), 'xattrs and ACLs too');
  t.same(runnerEntries(dst), [], "the killed run's temp dir and the rerun's are gone");

  const third = await runInProcess(['--source', src, '--target', dst, '--termination-log', log]);
  t.match(
    JSON.parse(third.stdout.at(-1) ?? '{}'),
    { ok: true, bytesTransferred: 0, filesTransferred: 0 },
    'rerun on an up-to-date target moves nothing',
  );
});
