// The runner's temp dir: a new name per run under a prefix reserved at the top
// level. Leftovers of killed runs are removed; a source that holds a name with
// the prefix is refused (it would be excluded from the copy, so lost quietly).
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { runInProcess, runnerEntries, sh, snapshotTree, workspace } from './fixtures/trees.js';
import type { Summary } from '../../src/runner-protocol.js';

const summaryOf = (stdout: string[]): Summary => JSON.parse(stdout.at(-1) ?? '{}') as Summary;

void t.test("a source entry named like the runner's temp dir: refused, terminal, named", async (t) => {
  const { src, dst, log } = workspace(t, 'pvshift-reserved-');
  // A user's directory that happens to bear the old fixed name: before, it was left out without a word.
  sh('mkdir .pvshift-runner-tmp && printf precious > .pvshift-runner-tmp/data && printf x > other', src);
  const run = await runInProcess(['--source', src, '--target', dst, '--termination-log', log]);
  t.equal(run.code, 76, 'terminal: the source must change before a copy can be complete');
  const summary = summaryOf(run.stdout);
  t.match(summary, {
    ok: false,
    exitCode: 76,
    message:
      /^the source holds "\.pvshift-runner-tmp" at its top level: names beginning with "\.pvshift-runner-" are reserved for the runner's temp dir and would not be copied; rename or remove it/,
  });
  t.same(JSON.parse(fs.readFileSync(log, 'utf8')), summary, 'the controller reads the same in the termination log');
  t.same(fs.readdirSync(dst), [], 'nothing copied, no temp dir left');

  sh('mkdir .pvshift-runner-0123456789ab', src);
  const two = await runInProcess(['--source', src, '--target', dst, '--termination-log', log]);
  t.equal(two.code, 76);
  t.match(
    summaryOf(two.stdout).message,
    /^the source holds "\.pvshift-runner-0123456789ab", "\.pvshift-runner-tmp" at its top level: .* rename or remove them/,
    'each one named',
  );
});

void t.test(
  "leftovers of killed runs go; each run's temp dir has a name of its own; the prefix is reserved at the top only",
  async (t) => {
    const { src, dst, log } = workspace(t, 'pvshift-leftovers-');
    // The prefix deeper down, or not at the start of a name: ordinary names, copied.
    sh(
      'mkdir -p sub/.pvshift-runner-tmp && printf deep > sub/.pvshift-runner-tmp/file && printf x > x.pvshift-runner-tmp && printf d > data',
      src,
    );
    // What killed runs leave: the old fixed name with a partial bulk copy, and a per-run name with a half-written file.
    sh(
      'mkdir -p .pvshift-runner-tmp/bulk .pvshift-runner-5f3a9c01e2d4 && printf part > .pvshift-runner-tmp/bulk/data && printf half > .pvshift-runner-5f3a9c01e2d4/data.Xy12Ab',
      dst,
    );
    fs.writeFileSync(path.join(dst, 'data'), 'old');

    const tempDirs: string[] = [];
    for (const extra of [[], ['--delete']]) {
      const run = await runInProcess(['--source', src, '--target', dst, '--termination-log', log, ...extra]);
      t.equal(run.code, 0, run.stderr.join('\n'));
      const said = run.stderr.join('\n');
      const temp = /--temp-dir=(\S+)/.exec(said)?.[1] ?? '';
      t.match(
        path.basename(temp),
        /^\.pvshift-runner-[0-9a-f]{12}$/,
        'a temp dir of its own, under the reserved prefix',
      );
      t.equal(path.dirname(temp), dst, 'at the top of the target');
      t.match(
        said,
        /--exclude=\/\.pvshift-runner-\*/,
        'every reserved name is excluded from the transfer (and from --delete)',
      );
      tempDirs.push(temp);
      t.same(
        runnerEntries(dst),
        [],
        `no runner entry left at the top of the target${extra.length ? ' (--delete)' : ''}`,
      );
    }
    t.not(tempDirs[0], tempDirs[1], 'a new name on every run');
    t.same(
      snapshotTree(dst),
      snapshotTree(src),
      'the copy is the source, names with the prefix below the top included',
    );

    sh('mkdir .pvshift-runner-feedfacecafe && printf half > .pvshift-runner-feedfacecafe/f', dst);
    const third = await runInProcess(['--source', src, '--target', dst, '--termination-log', log]);
    t.equal(third.code, 0);
    const messages = third.stderr.map((l) => (JSON.parse(l) as { message: string }).message).join('\n');
    t.match(messages, /removed the temp dir of an earlier run: "\.pvshift-runner-feedfacecafe"/, 'said in the log');
    t.same(runnerEntries(dst), []);
  },
);
