// What `--verify metadata` costs against the copy it checks, on many small
// files (the issue: "make it cost at most a fifth of the copy it checks").
// A script that prints figures, not a test.
//
//   npm run bench:verify -- [--quick]
//
// For each corpus (20,000 and 100,000 files of 4 KiB in directories of 1,000,
// one symlink per directory; --quick: 2,000 and 10,000), best of 3 rounds in
// alternating order:
//
// - copy: the runner, compiled as the image runs it, `--verify none` into an
//   empty directory (cp -a, then the rsync pass; it flushes before it exits);
// - copy+verify: the same with `--verify metadata`;
// - final pass: the runner again, `--delete --verify none`, onto an up-to-date
//   copy (what the downtime holds when nothing changed since the pre-sync);
// - final pass+verify: the same with `--verify metadata`: the source listed
//   while rsync runs, the target after it;
// - early listing / verify after rsync: the verification as run.ts runs it,
//   in this process, in its two parts: the source's listing (listSourceEarly,
//   which the runner starts beside rsync) alone, then what is left once rsync
//   is done (the target listed and compared, and one find that stats the
//   source for anything changed since the listing began): the part on the
//   final pass's critical path, "after rsync/copy" (target <= 0.2);
// - verify: the runner's verification step alone (verifyCopy, as run.ts calls
//   it with the features this filesystem has, but without an early listing),
//   on the source and a finished copy: both trees listed at once, then
//   compared. "find" is how it reads the trees now, "lstat walk" how it did
//   before (still its fallback when find cannot run); "no getfattr": as on a
//   target that holds neither xattrs nor ACLs, where getfattr does not run.
//
// The baseline of every ratio is "copy", the first full copy of the tree
// (what the issue calls the copy the verification checks: the target it
// verifies is the whole tree, not the final pass's delta); "added/copy" is
// what verification adds to a final pass, contention with rsync included.
//
// Wall-clock seconds, and CPU seconds (user + system, child processes
// included: GNU time for the runner, /proc/self/stat for this process's
// children) where the machine is shared: contention moves CPU time least.
// ratio = verify / copy; the target is <= 0.2. The page cache holds both trees
// (/proc/sys/vm/drop_caches is not writable in a container): the figures are
// CPU, not disk seeks. Copies are kept until the corpus is done, and the next
// corpus waits 40 s after they are deleted: ext4 is slow to allocate inodes
// right after many were freed (see bench-copy.ts). At most ~3.5 GB on disk;
// the work dir (/tmp/pvshift-bench-verify-*) goes on exit, SIGINT and SIGTERM
// alike.
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { canSeeTrustedXattrs, probeFeatures } from '../runner/target-probe.js';
import { compileRunner } from './compiled-runner.js';

const quick = process.argv.includes('--quick');
const { work, compiled, runnerJs } = compileRunner('verify');

// The verification as the runner runs it: compiled too.
const { listSourceEarly, verifyCopy } = (await import(
  pathToFileURL(path.join(compiled, 'runner', 'tree-listing.js')).href
)) as typeof import('../runner/tree-listing.js');

interface Timing {
  wall: number;
  cpu: number;
}

/** CPU seconds of this process's children that have been waited for (cutime + cstime, /proc/self/stat). */
const clockTicks = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim());
function childCpuSeconds(): number {
  const fields = fs.readFileSync('/proc/self/stat', 'utf8').split(') ')[1]?.split(' ') ?? [];
  return (Number(fields[13]) + Number(fields[14])) / clockTicks;
}

/** A command under GNU time: wall-clock seconds and its CPU seconds, children included. */
function timedRun(cmd: string, args: string[]): Promise<Timing> {
  const timeFile = path.join(work, 'time');
  const t0 = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const child = spawn('/usr/bin/time', ['-f', '%U %S', '-o', timeFile, cmd, ...args], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let err = '';
    child.stderr.on('data', (c: Buffer) => (err = (err + c.toString()).slice(-2000)));
    child.on('error', reject);
    child.on('close', (code) => {
      const wall = Number(process.hrtime.bigint() - t0) / 1e9;
      const [user, sys] = fs.readFileSync(timeFile, 'utf8').trim().split('\n').at(-1)?.split(' ').map(Number) ?? [];
      if (code === 0) resolve({ wall, cpu: (user ?? NaN) + (sys ?? NaN) });
      else reject(new Error(`${cmd} exited ${code}: ${err}`));
    });
  });
}

/** A function run in this process: wall-clock seconds, and CPU seconds of the process and the children it waited for. */
async function timedCall(fn: () => Promise<unknown>): Promise<Timing> {
  const cpu0 = process.cpuUsage();
  const children0 = childCpuSeconds();
  const t0 = process.hrtime.bigint();
  await fn();
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const own = process.cpuUsage(cpu0);
  return { wall, cpu: (own.user + own.system) / 1e6 + childCpuSeconds() - children0 };
}

function makeCorpus(src: string, files: number): void {
  const block = randomBytes(4096 * 64);
  for (let d = 0; d < files / 1000; d++) {
    const dir = path.join(src, `d${String(d).padStart(3, '0')}`);
    fs.mkdirSync(dir, { recursive: true });
    for (let f = 0; f < 1000; f++) {
      const off = ((d * 1000 + f) % 64) * 4096;
      fs.writeFileSync(path.join(dir, `f${f}`), block.subarray(off, off + 4096));
    }
    fs.symlinkSync('f0', path.join(dir, 'link'));
  }
}

let copies = 0;
const newTarget = (): string => {
  const dst = path.join(work, `dst-${copies++}`);
  fs.mkdirSync(dst);
  return dst;
};
const runner = (src: string, dst: string, extra: string[]): Promise<Timing> =>
  timedRun(process.execPath, [
    runnerJs,
    '--source',
    src,
    '--target',
    dst,
    '--progress-interval',
    '3600',
    '--termination-log',
    path.join(work, 'log'),
    ...extra,
  ]);

// What the verification compares here: the target filesystem's features, probed as run.ts does.
const features = await probeFeatures(work, await canSeeTrustedXattrs());

/** `withAttributes: false`: as on a target that holds neither xattrs nor ACLs (no getfattr), to show what the listing alone costs. */
async function verifyStep(src: string, dst: string, lister: 'find' | 'node', withAttributes = true): Promise<Timing> {
  const compared = withAttributes ? features : { ...features, xattrs: false, acls: false };
  return timedCall(async () => {
    const diff = await verifyCopy(src, dst, {
      features: compared,
      content: false,
      mirror: true,
      warn: (m) => console.error(`warning: ${m}`),
      lister,
    });
    if (diff.count > 0) throw new Error(`the copy differs: ${JSON.stringify(diff.differences.slice(0, 3))}`);
  });
}

/** The source's listing as run.ts starts it while rsync copies (listSourceEarly), timed alone; then, timed, what is left after rsync. */
async function earlySteps(src: string, dst: string): Promise<[Timing, Timing]> {
  const options = {
    features,
    content: false,
    mirror: true,
    warn: (m: string) => console.error(`warning: ${m}`),
    info: (m: string) => {
      if (!m.startsWith('the source was listed while the copy ran'))
        throw new Error(`the early listing was not used: ${m}`);
    },
  };
  let early: ReturnType<typeof listSourceEarly> | undefined;
  const during = await timedCall(async () => {
    early = listSourceEarly(src, options);
    await early.listing;
  });
  const after = await timedCall(async () => {
    const diff = await verifyCopy(src, dst, { ...options, early });
    if (diff.count > 0) throw new Error(`the copy differs: ${JSON.stringify(diff.differences.slice(0, 3))}`);
  });
  return [during, after];
}

const rounds = 3;
const sizes = quick ? [2_000, 10_000] : [20_000, 100_000];
console.log(
  `bench-verify${quick ? ' (quick)' : ''}: node ${process.version}, ${os.cpus().length} CPUs, ${execFileSync('find', ['--version']).toString().split('\n')[0]}, ` +
    `${execFileSync('rsync', ['--version']).toString().split('\n')[0]}; features ${JSON.stringify({ xattrs: features.xattrs, acls: features.acls, adminXattrs: features.adminXattrs })}; ` +
    `best of ${rounds} rounds in alternating order; seconds wall/CPU`,
);
const names = [
  'copy',
  'copy+verify',
  'final pass',
  'final pass+verify',
  'early listing',
  'verify after rsync',
  'verify (find)',
  'verify (lstat walk)',
  'verify (find, no getfattr)',
] as const;
const header = [
  'files',
  ...names,
  'after rsync/copy',
  '(CPU)',
  'added/copy',
  'find/copy',
  '(CPU)',
  'walk/copy',
  'no getfattr/copy',
  '(CPU)',
];
const rows: string[][] = [header];
for (const n of sizes) {
  const src = path.join(work, 'src');
  makeCorpus(src, n);
  const upToDate = newTarget();
  await runner(src, upToDate, ['--verify', 'none']);
  const variants: [(typeof names)[number], () => Promise<Timing>][] = [
    ['copy', () => runner(src, newTarget(), ['--verify', 'none'])],
    ['copy+verify', () => runner(src, newTarget(), ['--verify', 'metadata'])],
    ['final pass', () => runner(src, upToDate, ['--verify', 'none', '--delete'])],
    ['final pass+verify', () => runner(src, upToDate, ['--verify', 'metadata', '--delete'])],
    [
      'early listing',
      async () => {
        const [during, after] = await earlySteps(src, upToDate);
        record('verify after rsync', after);
        return during;
      },
    ],
    ['verify (find)', () => verifyStep(src, upToDate, 'find')],
    ['verify (lstat walk)', () => verifyStep(src, upToDate, 'node')],
    ['verify (find, no getfattr)', () => verifyStep(src, upToDate, 'find', false)],
  ];
  // Best wall and best CPU, each over the rounds.
  const best = new Map<string, Timing>();
  const record = (name: string, s: Timing): void => {
    const b = best.get(name);
    best.set(name, { wall: Math.min(b?.wall ?? Infinity, s.wall), cpu: Math.min(b?.cpu ?? Infinity, s.cpu) });
  };
  for (let r = 0; r < rounds; r++) {
    for (const [name, fn] of r % 2 === 0 ? variants : [...variants].reverse()) record(name, await fn());
  }
  const get = (name: (typeof names)[number]): Timing => best.get(name) ?? { wall: NaN, cpu: NaN };
  const row = [
    n.toLocaleString('en-US'),
    ...names.map((k) => `${get(k).wall.toFixed(2)}/${get(k).cpu.toFixed(2)}`),
    (get('verify after rsync').wall / get('copy').wall).toFixed(2),
    (get('verify after rsync').cpu / get('copy').cpu).toFixed(2),
    ((get('final pass+verify').wall - get('final pass').wall) / get('copy').wall).toFixed(2),
    (get('verify (find)').wall / get('copy').wall).toFixed(2),
    (get('verify (find)').cpu / get('copy').cpu).toFixed(2),
    (get('verify (lstat walk)').wall / get('copy').wall).toFixed(2),
    (get('verify (find, no getfattr)').wall / get('copy').wall).toFixed(2),
    (get('verify (find, no getfattr)').cpu / get('copy').cpu).toFixed(2),
  ];
  rows.push(row);
  console.log(
    `${header
      .slice(1)
      .map((h, i) => `${h} ${row[i + 1] ?? ''}`)
      .join(', ')}  [${row[0]} files; load average ${os
      .loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}]`,
  );
  fs.rmSync(src, { recursive: true, force: true });
  for (const d of fs.readdirSync(work))
    if (d.startsWith('dst-')) fs.rmSync(path.join(work, d), { recursive: true, force: true });
  // ext4 passes over inodes freed in the last ~30 s when it allocates new ones
  // (recently_deleted() in fs/ext4/ialloc.c): the next corpus's copies would
  // pay for this one's deletion.
  if (n !== sizes.at(-1)) await new Promise((resolve) => setTimeout(resolve, 40_000));
}
const widths = header.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
console.log();
for (const row of rows) console.log(row.map((c, i) => c.padStart(widths[i] ?? 0)).join('  '));
console.log(
  `
copy: the runner --verify none into an empty directory (the baseline of every ratio); final pass: --delete --verify none
onto an up-to-date copy; final pass+verify: the same with --verify metadata (the source listed while rsync runs).
early listing: the source's listing as the runner starts it beside rsync (listSourceEarly), alone; verify after rsync:
what is left once rsync is done (the target listed and compared, one find statting the source for changes since);
after rsync/copy: its wall-clock time over the copy's (target <= 0.20), (CPU): the same in CPU seconds; added/copy:
(final pass+verify - final pass) over the copy, what verification adds to the final pass, the early listing's
contention with rsync included (a difference of two best-of-${rounds} times: noisy); verify (find): both trees listed
after the copy, then compared; walk/copy: the lstat walk's (how verification read the trees before find); no getfattr:
xattrs and ACLs not compared (a target that holds neither).`,
);
