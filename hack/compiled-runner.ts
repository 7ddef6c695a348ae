// The runner benchmarks' runner: compiled JavaScript (what the image runs), not
// through tsx, and only runner/ and what it imports, so half-edited files
// elsewhere do not matter. Built into a work dir of its own, which goes on exit,
// SIGINT and SIGTERM.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface CompiledRunner {
  repo: string;
  /** The benchmark's scratch dir: trees, logs and the build live here. */
  work: string;
  /** Where runner/*.ts were compiled to (runner/tree-listing.js and so on). */
  compiled: string;
  /** The runner's command line entry point. */
  runnerJs: string;
}

export function compileRunner(name: string): CompiledRunner {
  const repo = path.resolve(import.meta.dirname, '..');
  const work = fs.mkdtempSync(path.join(os.tmpdir(), `pvshift-bench-${name}-`));
  process.on('exit', () => fs.rmSync(work, { recursive: true, force: true }));
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => process.exit(130));
  const compiled = path.join(work, 'dist');
  const tsconfig = path.join(work, 'tsconfig.json');
  fs.writeFileSync(
    tsconfig,
    JSON.stringify({
      extends: path.join(repo, 'tsconfig.json'),
      include: [path.join(repo, 'runner')],
      compilerOptions: {
        outDir: compiled,
        rootDir: repo,
        sourceMap: false,
        typeRoots: [path.join(repo, 'node_modules/@types')],
      },
    }),
  );
  try {
    execFileSync(process.execPath, [path.join(repo, 'node_modules/typescript/bin/tsc'), '-p', tsconfig], {
      stdio: 'inherit',
    });
  } catch {
    // tsc emits despite type errors in files it was not asked about; the check below says whether it did.
  }
  const runnerJs = path.join(compiled, 'runner', 'cli.js');
  if (!fs.existsSync(runnerJs)) throw new Error('compiling the runner failed');
  return { repo, work, compiled, runnerJs };
}
