#!/usr/bin/env node
// `npm test`: runs tap with the raw TAP reporter, passes the stream through,
// and ends with the one line CI reads: `N passed, N failed`.
//
// With no files named it runs two tiers, one after the other:
//   1. the fast tier: tap's `include` of package.json minus its `exclude`
//      (test/e2e), two files at a time;
//   2. the real-node tier: test/e2e, one file at a time, once the fast tier is
//      done (one real node runs at a time on a machine anyway: a flock in
//      cluster/real-node-cluster.ts). Its pods get the machine's CPUs, so its
//      figures (downtime) are not those of a machine busy with other tests.
// Named files (`npm test -- test/unit`) run in one tap run.
//
// A "test" here is each named test of each file (the first level of subtests
// below a file, where tap's own summary counts assertions). A file that dies
// before reporting any test counts as one failure, so a crash is never silent.
import { spawn, spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { createInterface } from 'node:readline';

const args = process.argv.slice(2);
const files = args.filter((a) => !a.startsWith('-'));
const flags = args.filter((a) => a.startsWith('-'));
const E2E_DIR = 'test/e2e';

let passed = 0;
let failed = 0;
let skipped = 0;
const failures = [];

/** The real-node tier runs images built here: built once, cached by content (a warm run takes seconds). */
function buildImages() {
  const started = Date.now();
  process.stderr.write('test: building the real-node tier images (hack/images/build.sh)\n');
  const build = spawnSync('bash', ['hack/images/build.sh'], { stdio: ['ignore', 'ignore', 'inherit'] });
  // A failure is left to the tests to report, with the build's own words.
  process.stderr.write(
    `test: images ${build.status === 0 ? 'ready' : `FAILED (exit ${build.status})`} in ${((Date.now() - started) / 1000).toFixed(0)} s\n`,
  );
}

/** One tap run; its tests are added to the counts. Resolves with tap's exit code. */
function runTap(tapArgs) {
  const tap = spawn('npx', ['tap', '--reporter=tap', ...tapArgs], { stdio: ['ignore', 'pipe', 'inherit'] });
  let failedHere = 0;
  let failedInFile = 0;
  let testsInFile = 0;
  let currentFile = '';
  const lines = createInterface({ input: tap.stdout });
  lines.on('line', (line) => {
    process.stdout.write(line + '\n');
    const sub = /^ {4}(not ok|ok) \d+ - (.*)$/.exec(line);
    if (sub) {
      testsInFile += 1;
      if (/# SKIP/i.test(sub[2])) skipped += 1;
      else if (sub[1] === 'ok') passed += 1;
      else {
        failed += 1;
        failedHere += 1;
        failedInFile += 1;
        failures.push(`${currentFile}: ${sub[2]}`);
      }
      return;
    }
    const sub0 = /^# Subtest: (.*)$/.exec(line);
    if (sub0) currentFile = sub0[1];
    const top = /^(not ok|ok) \d+ - (.*)$/.exec(line);
    if (top) {
      if (top[1] === 'not ok' && failedInFile === 0) {
        failed += 1;
        failedHere += 1;
        failures.push(`${top[2]}: the file failed outside any test (${testsInFile} tests reported)`);
      }
      failedInFile = 0;
      testsInFile = 0;
    }
  });
  return new Promise((resolve) => {
    tap.on('close', (code) => {
      if (code !== 0 && failedHere === 0) {
        failed += 1;
        failures.push(`tap ${tapArgs.join(' ')} exited with ${code} without a failing test`);
      }
      resolve(code);
    });
  });
}

if (files.length > 0) {
  const e2e = files.some((f) => f.includes(E2E_DIR));
  if (e2e) buildImages();
  await runTap([...flags, ...(e2e ? ['--jobs=1'] : []), ...files]);
} else {
  // No files named: tap takes the `include` of package.json (test/**/*.test.ts);
  // naming the folder would make it run helper modules as test files too.
  await runTap(flags);
  const e2e = readdirSync(E2E_DIR)
    .filter((f) => f.endsWith('.test.ts'))
    .map((f) => `${E2E_DIR}/${f}`);
  if (e2e.length > 0) {
    buildImages();
    await runTap([...flags, '--jobs=1', ...e2e]);
  }
}

if (failures.length) process.stdout.write('\nfailed:\n' + failures.map((f) => `  - ${f}`).join('\n') + '\n');
const tail = skipped ? `, ${skipped} skipped` : '';
process.stdout.write(`\n${passed} passed, ${failed} failed${tail}\n`);
process.exit(failed > 0 ? 1 : 0);
