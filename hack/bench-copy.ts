// Copy benchmark: the pvshift runner against a tar pipe, cp -a and plain rsync,
// on the corpora made here (the issue's three, and the earlier, tiny mix that
// shows the runner's fixed cost), plus an experiment with several rsync
// processes over disjoint top-level directories. A script that prints
// figures, not a test.
//
// Every time counts until the copy is on disk: each tool, then `sync`. The
// runner flushes before it says done (runner/write-back.ts); the others leave
// it to the caller, so the bench does it for them, and prints when each tool
// exited too.
//
//   npx tsx hack/bench-copy.ts [--quick]
//
// Page cache cannot be dropped reliably here (no /proc/sys/vm/drop_caches in a
// container), so every corpus is read once before timing, each tool runs in
// alternating order (forward, then reverse) and the best of the runs counts.
// Each corpus's table is printed as soon as it is done; the work dir goes on
// exit, SIGINT and SIGTERM alike.
//
// ext4 skips inodes freed in the last ~30 s when it allocates new ones
// (recently_deleted() in fs/ext4/ialloc.c): a tool started right after 100,000
// files were deleted spent up to 60 s of system time in that scan, ten times
// its real cost. So copies of many-file corpora are deleted only after the
// corpus's last run, not between runs.
import { execFile, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fsSync from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { readListing } from '../runner/tree-listing.js';
import { compareTrees } from '../runner/tree-diff.js';

const exec = promisify(execFile);
const quick = process.argv.includes('--quick');
const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
// The runner as the image runs it: compiled JavaScript under plain node, through
// the image's entry point (`pvshift --mode=runner`). Through tsx every run would
// pay ~0.3 s of on-the-fly compilation that no copy pod pays.
const compiled = path.join(os.tmpdir(), `pvshift-bench-dist-${process.pid}`);
execFileSync(
  process.execPath,
  [
    path.join(repo, 'node_modules/typescript/bin/tsc'),
    '-p',
    path.join(repo, 'tsconfig.build.json'),
    '--outDir',
    compiled,
  ],
  { cwd: repo, stdio: 'inherit' },
);
process.on('exit', () => fsSync.rmSync(compiled, { recursive: true, force: true }));
const entryPoint = path.join(compiled, 'src', 'main.js');
const MiB = 1 << 20;

function sh(command: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('sh', ['-c', command], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0 ? resolve() : reject(new Error(`${command}: exit ${code}: ${err.slice(-500)}`)),
    );
  });
}
const q = (p: string): string => `'${p.replace(/'/g, `'\\''`)}'`;

async function writeRandom(file: string, size: number): Promise<void> {
  const handle = await fs.open(file, 'w');
  try {
    for (let done = 0; done < size;) {
      const n = Math.min(8 * MiB, size - done);
      await handle.write(randomBytes(n));
      done += n;
    }
  } finally {
    await handle.close();
  }
}

async function makeBig(dir: string): Promise<void> {
  await writeRandom(path.join(dir, 'big.bin'), quick ? 64 * MiB : 2048 * MiB);
}

async function makeSmall(dir: string): Promise<void> {
  const dirs = quick ? 20 : 100;
  const perDir = quick ? 100 : 1000;
  const block = randomBytes(4096 * 64);
  for (let d = 0; d < dirs; d++) {
    const sub = path.join(dir, `d${String(d).padStart(3, '0')}`);
    await fs.mkdir(sub, { recursive: true });
    const writes: Promise<void>[] = [];
    for (let f = 0; f < perDir; f++) {
      const off = (f % 64) * 4096;
      writes.push(fs.writeFile(path.join(sub, `f${f}`), block.subarray(off, off + 4096)));
    }
    await Promise.all(writes);
  }
}

/** Deterministic pseudo-random numbers in [0, 1) (the corpora are the same on every run). */
function lcg(seed: number): () => number {
  let state = seed;
  return () => (state = (state * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
}
/** Log-uniform between lo and hi: many small values, a few big ones. */
const logUniform = (rand: () => number, lo: number, hi: number): number =>
  Math.round(lo * Math.exp(rand() * Math.log(hi / lo)));

/**
 * What a volume holds: a database (a few big files, a WAL of 16 MiB segments,
 * a sparse file), a mail spool (10,000 small messages), a build cache (medium
 * files, hard-linked from an index, symlinks), empty directories. About 1 GB
 * in ~10,900 entries.
 */
async function makeMix(dir: string): Promise<void> {
  const scale = quick ? 0.1 : 1;
  const rand = lcg(11);
  await fs.mkdir(path.join(dir, 'db', 'wal'), { recursive: true });
  for (let i = 0; i < 3; i++) await writeRandom(path.join(dir, 'db', `table${i}.dat`), Math.round(128 * MiB * scale));
  for (let i = 0; i < 8; i++) await writeRandom(path.join(dir, 'db', 'wal', `seg${i}`), Math.round(16 * MiB * scale));
  // 1 GiB apparent, 16 MiB of data in four extents.
  const sparse = await fs.open(path.join(dir, 'db', 'sparse.img'), 'w');
  for (let i = 0; i < 4; i++) await sparse.write(randomBytes(Math.round(4 * MiB * scale)), 0, undefined, i * 256 * MiB);
  await sparse.truncate(1024 * MiB);
  await sparse.close();
  const block = randomBytes(64 * 1024);
  for (let d = 0; d < 20; d++) {
    const box = path.join(dir, 'mail', `user${d}`, 'cur');
    await fs.mkdir(box, { recursive: true });
    const writes: Promise<void>[] = [];
    for (let m = 0; m < Math.round(500 * scale); m++) {
      const size = logUniform(rand, 1024, 64 * 1024);
      writes.push(fs.writeFile(path.join(box, `${1700000000 + m}.M${d}P${m}.host:2,S`), block.subarray(0, size)));
    }
    await Promise.all(writes);
  }
  await fs.mkdir(path.join(dir, 'cache', 'objects'), { recursive: true });
  await fs.mkdir(path.join(dir, 'cache', 'by-name'), { recursive: true });
  for (let i = 0; i < Math.round(300 * scale); i++) {
    const file = path.join(dir, 'cache', 'objects', `obj${i}`);
    await writeRandom(file, logUniform(rand, 64 * 1024, 4 * MiB));
    if (i % 10 === 0) await fs.link(file, path.join(dir, 'cache', 'by-name', `name${i}`));
    if (i % 7 === 0) await fs.symlink(`../objects/obj${i}`, path.join(dir, 'cache', 'by-name', `sym${i}`));
  }
  for (let e = 0; e < 20; e++) await fs.mkdir(path.join(dir, 'empty', `e${e}`), { recursive: true });
}

/**
 * The mix of earlier runs: 200 MiB in 20 files (log-uniform 1 KiB-50 MiB),
 * hard links tying the top-level directories together. A copy this short
 * (~0.15 s) measures the runner's fixed cost more than its copying.
 */
async function makeTinyMix(dir: string): Promise<void> {
  const budget = quick ? 20 * MiB : 200 * MiB;
  let used = 0;
  let i = 0;
  const rand = lcg(7);
  while (used < budget) {
    const sub = path.join(dir, `g${i % 8}`, `s${i % 5}`);
    await fs.mkdir(sub, { recursive: true });
    const size = Math.min(budget - used, logUniform(rand, 1024, 50 * MiB));
    const file = path.join(sub, `file${i}`);
    await writeRandom(file, Math.max(1, size));
    if (i % 10 === 0) await fs.link(file, path.join(dir, `g${(i + 1) % 8}`, `link${i}`)).catch(() => undefined);
    if (i % 7 === 0) await fs.symlink(`s${i % 5}/file${i}`, path.join(dir, `g${i % 8}`, `sym${i}`));
    used += size;
    i++;
  }
  for (let e = 0; e < 20; e++) await fs.mkdir(path.join(dir, 'empty', `e${e}`), { recursive: true });
}

interface Tool {
  name: string;
  copy(src: string, dst: string): Promise<void>;
}

function runnerTool(name: string, verify: string, extra: string[] = []): Tool {
  return {
    name,
    copy: async (src, dst) => {
      const { stdout } = await exec(
        process.execPath,
        [
          entryPoint,
          '--mode=runner',
          '--source',
          src,
          '--target',
          dst,
          '--verify',
          verify,
          '--termination-log',
          '/dev/null',
          ...extra,
        ],
        { cwd: repo, maxBuffer: 64 * MiB },
      ).catch((e: unknown) => {
        throw new Error(`runner failed: ${String((e as { stderr?: unknown }).stderr ?? e)}`);
      });
      if (!stdout.includes('"ok":true')) throw new Error(`runner did not succeed: ${stdout.slice(-500)}`);
    },
  };
}

/** N rsync processes, each over a disjoint group of top-level entries (round robin by name). */
function parallelRsync(n: number): Tool {
  return {
    name: `rsync x${n} (split)`,
    copy: async (src, dst) => {
      const names = (await fs.readdir(src)).sort();
      const groups: string[][] = Array.from({ length: n }, () => []);
      names.forEach((name, i) => groups[i % n]?.push(name));
      await Promise.all(
        groups
          .filter((g) => g.length > 0)
          .map((g, i) =>
            (async () => {
              const list = path.join(os.tmpdir(), `bench-files-${process.pid}-${i}`);
              await fs.writeFile(list, g.join('\n') + '\n');
              await exec('rsync', [
                '-aHAXS',
                '--numeric-ids',
                '--whole-file',
                '-r',
                `--files-from=${list}`,
                `${src}/`,
                `${dst}/`,
              ]);
              await fs.rm(list);
            })(),
          ),
      );
    },
  };
}

const tools: Tool[] = [
  runnerTool('runner (verify none)', 'none'),
  runnerTool('runner (verify metadata)', 'metadata'),
  { name: 'tar pipe', copy: (s, d) => sh(`tar -C ${q(s)} -cf - . | tar -C ${q(d)} -xpf -`) },
  { name: 'cp -a', copy: (s, d) => sh(`cp -a ${q(s)}/. ${q(d)}/`) },
  { name: 'rsync -aHAXS', copy: (s, d) => sh(`rsync -aHAXS --numeric-ids ${q(s)}/ ${q(d)}/`) },
  parallelRsync(2),
  parallelRsync(4),
];
const competitors = new Set(['tar pipe', 'cp -a', 'rsync -aHAXS']);

/** Apparent bytes (what MB/s counts, as every tool reads them) or, with `allocated`, bytes on disk. */
async function duBytes(dir: string, allocated = false): Promise<number> {
  const { stdout } = await exec('du', [allocated ? '-sB1' : '-sb', dir]);
  return Number(stdout.split('\t')[0]);
}

interface Timing {
  /** Until the copy is on disk: the tool, then `sync`. */
  seconds: number;
  /** Until the tool exited (the runner flushes before it exits, the others leave that to `sync`). */
  exitSeconds: number;
}

let copyNumber = 0;
async function timeCopy(tool: Tool, src: string, work: string, keep: boolean): Promise<Timing> {
  const dst = path.join(work, `dst-${copyNumber++}`);
  await fs.mkdir(dst);
  await sh('sync');
  const t0 = process.hrtime.bigint();
  await tool.copy(src, dst);
  const exited = process.hrtime.bigint();
  // Data in the page cache is not on disk yet: count the flush, as every tool must do it.
  await sh('sync');
  const done = process.hrtime.bigint();
  if (!keep) await fs.rm(dst, { recursive: true, force: true });
  return { seconds: Number(done - t0) / 1e9, exitSeconds: Number(exited - t0) / 1e9 };
}

/** What a tool loses, found by copying a tree with every feature and comparing. */
async function fidelity(work: string): Promise<Map<string, string>> {
  const src = path.join(work, 'fid');
  await fs.mkdir(path.join(src, 'd'), { recursive: true });
  await fs.writeFile(path.join(src, 'd', 'f'), 'data');
  await fs.link(path.join(src, 'd', 'f'), path.join(src, 'hard'));
  await fs.symlink('d/f', path.join(src, 'sym'));
  await sh(
    [
      `cd ${q(src)}`,
      'chown 1234:5678 d/f && chmod 4755 d/f',
      'setfattr -n user.k -v v d/f && setfattr -n trusted.k -v v d/f',
      'setfacl -m u:1234:rw d/f && setfacl -d -m u:1234:rx d',
      'truncate -s 64M sparse && echo x >> sparse',
      'mkfifo fifo && mknod cdev c 1 3',
      "touch -h -d '2021-02-03 04:05:06.123456789' sym",
      "touch -d '2020-01-02 03:04:05.987654321' d/f d",
    ].join(' && '),
  );
  const src0 = await readListing(src, {
    xattrs: true,
    adminXattrs: true,
    acls: true,
    content: true,
    warn: () => undefined,
  });
  const result = new Map<string, string>();
  for (const tool of tools.filter((t) => competitors.has(t.name) || t.name === 'runner (verify none)')) {
    const dst = path.join(work, 'fid-dst');
    await fs.rm(dst, { recursive: true, force: true });
    await fs.mkdir(dst);
    await tool.copy(src, dst);
    const dst0 = await readListing(dst, {
      xattrs: true,
      adminXattrs: true,
      acls: true,
      content: true,
      warn: () => undefined,
    });
    const diff = compareTrees(src0, dst0, {
      mirror: true,
      compareXattrs: true,
      compareAcls: true,
      compareContent: true,
      limit: 100,
    });
    const lost = new Set<string>();
    for (const d of diff.differences) for (const part of d.what.split('; ')) lost.add(part.split(' ')[0] ?? part);
    const srcBlocks = Number(src0.get('sparse')?.blocks ?? 0n);
    const dstBlocks = Number(dst0.get('sparse')?.blocks ?? 0n);
    if (dstBlocks > srcBlocks * 4 + 64) lost.add('sparseness');
    result.set(tool.name, lost.size ? `loses ${[...lost].sort().join(', ')}` : 'full fidelity');
    await fs.rm(dst, { recursive: true, force: true });
  }
  return result;
}

function printTable(rows: string[][]): void {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  for (const row of rows) console.log(row.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  '));
}

async function main(): Promise<void> {
  const base = (await fs.stat('/var/tmp').catch(() => undefined)) ? '/var/tmp' : os.tmpdir();
  const work = await fs.mkdtemp(path.join(base, 'pvshift-bench-'));
  const cleanUp = (signal: NodeJS.Signals): void => {
    console.error(`${signal}: removing ${work}`);
    // Synchronous: the process ends right after. Children (cp, rsync) die with the terminal's signal.
    fsSync.rmSync(work, { recursive: true, force: true });
    process.exit(130);
  };
  process.once('SIGINT', cleanUp);
  process.once('SIGTERM', cleanUp);
  const reps = 3;
  console.log(
    `bench-copy${quick ? ' (quick)' : ''}: ${os.cpus().length} CPUs, work dir ${work}, best of ${reps} runs (alternating order)`,
  );
  try {
    const fid = await fidelity(work);
    console.log(
      'fidelity (fidelity tree: owners, setuid, ns mtimes, symlink times, hard links, xattrs user+trusted, ACLs, sparse, fifo, device):',
    );
    for (const [tool, verdict] of fid) console.log(`  ${tool}: ${verdict}`);
    const corpora: [string, (d: string) => Promise<void>][] = [
      ['big file', makeBig],
      ['small files', makeSmall],
      ['mix', makeMix],
      ['tiny mix', makeTinyMix],
    ];
    const rows: string[][] = [['corpus', 'tool', 'seconds', 'MB/s', 'vs fastest other', 'tool exited']];
    for (const [name, make] of corpora) {
      const src = path.join(work, 'src');
      await fs.rm(src, { recursive: true, force: true });
      await fs.mkdir(src);
      await make(src);
      const bytes = await duBytes(src);
      const { stdout: countText } = await exec('sh', ['-c', `find ${q(src)} | wc -l`]);
      const entries = Number(countText.trim());
      const keep = entries > 1000;
      await sh(`tar -C ${q(src)} -cf - . | cat > /dev/null`); // warm-up read
      const best = new Map<string, Timing>();
      for (let r = 0; r < reps; r++) {
        const order = r % 2 === 0 ? tools : [...tools].reverse();
        for (const tool of order) {
          const timing = await timeCopy(tool, src, work, keep);
          if (timing.seconds < (best.get(tool.name)?.seconds ?? Infinity)) best.set(tool.name, timing);
        }
      }
      const fastestOther = Math.min(...[...best].filter(([t]) => competitors.has(t)).map(([, s]) => s.seconds));
      const corpusRows: string[][] = [];
      for (const tool of tools) {
        const { seconds: s, exitSeconds } = best.get(tool.name) ?? { seconds: NaN, exitSeconds: NaN };
        corpusRows.push([
          name,
          tool.name,
          s.toFixed(2),
          (bytes / 1e6 / s).toFixed(1),
          (fastestOther / s).toFixed(2),
          exitSeconds.toFixed(2),
        ]);
      }
      rows.push(...corpusRows);
      printTable([rows[0] ?? [], ...corpusRows]);
      const allocated = await duBytes(src, true);
      console.log(
        `(${name}: ${(bytes / 1e6).toFixed(0)} MB apparent, ${(allocated / 1e6).toFixed(0)} MB allocated, ${entries} entries)\n`,
      );
      await fs.rm(src, { recursive: true, force: true });
      for (const d of await fs.readdir(work))
        if (d.startsWith('dst-')) await fs.rm(path.join(work, d), { recursive: true, force: true });
    }
    console.log('all corpora:');
    printTable(rows);
    console.log(
      '\n"seconds" = until the copy is on disk (the tool, then sync); "vs fastest other" = that time of the fastest of tar/cp/rsync',
    );
    console.log(
      'divided by this tool\'s (>= 1 is as fast or faster); "tool exited" = before the sync (the runner flushes before it exits).',
    );
  } finally {
    await fs.rm(work, { recursive: true, force: true });
  }
}

await main();
