#!/usr/bin/env node
// `npm test`: runs tap over test/ with the raw TAP reporter, passes the stream
// through, and ends with the one line CI reads: `N passed, N failed`.
//
// A "test" here is each named test of each file (the first level of subtests
// below a file, where tap's own summary counts assertions). A file that dies
// before reporting any test counts as one failure, so a crash is never silent.
// Extra arguments go to tap (for example `npm test -- test/unit`).
import { spawn, spawnSync } from 'node:child_process';
import { createInterface } from 'node:readline';

const args = process.argv.slice(2);
const files = args.filter((a) => !a.startsWith('-'));
const flags = args.filter((a) => a.startsWith('-'));

// The real-node tier (test/e2e, `npm run e2e`; left out of a plain `npm test`
// by the tap `exclude` of package.json) runs images built here: build them once, before
// its files start (cached by content, so a warm run takes seconds).
// A failure is left to those tests to report, with the build's own words.
if (files.some((f) => f.includes('test/e2e'))) {
  const started = Date.now();
  process.stderr.write('test: building the real-node tier images (hack/images/build.sh)\n');
  const build = spawnSync('bash', ['hack/images/build.sh'], { stdio: ['ignore', 'ignore', 'inherit'] });
  process.stderr.write(`test: images ${build.status === 0 ? 'ready' : `FAILED (exit ${build.status})`} in ${((Date.now() - started) / 1000).toFixed(0)} s\n`);
}
// With no files named, tap takes the `include` of package.json (test/**/*.test.ts):
// naming the folder would make it run helper modules as test files too.
const tap = spawn('npx', ['tap', '--reporter=tap', ...flags, ...files], {
  stdio: ['ignore', 'pipe', 'inherit'],
});

let passed = 0;
let failed = 0;
let skipped = 0;
let failedInFile = 0;
let testsInFile = 0;
const failures = [];
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
      failures.push(`${top[2]}: the file failed outside any test (${testsInFile} tests reported)`);
    }
    failedInFile = 0;
    testsInFile = 0;
  }
});

tap.on('close', (code) => {
  if (failures.length) {
    process.stdout.write('\nfailed:\n' + failures.map((f) => `  - ${f}`).join('\n') + '\n');
  }
  if (code !== 0 && failed === 0) {
    failed = 1;
    process.stdout.write(`\ntap exited with ${code} without a failing test: counted as one failure\n`);
  }
  const tail = skipped ? `, ${skipped} skipped` : '';
  process.stdout.write(`\n${passed} passed, ${failed} failed${tail}\n`);
  process.exit(failed > 0 ? 1 : 0);
});
