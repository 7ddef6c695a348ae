// The local cluster leaves no process and no temp dir behind: on Ctrl-C
// (SIGINT, handled: orderly stop) and when its owner dies by SIGKILL (nothing
// of ours runs: the kernel's parent-death signal takes the children down).
import { spawn, execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { REPO_ROOT, waitFor } from '../../cluster/index.js';

/** Processes whose command line mentions `needle` (the cluster's temp dir is in every one of them). */
function processesWith(needle: string): string[] {
  let out: string;
  try {
    out = execFileSync('pgrep', ['-af', needle], { encoding: 'utf8' });
  } catch {
    return []; // pgrep exits 1 when nothing matches
  }
  return out.split('\n').filter((line) => line && !line.includes('pgrep'));
}

async function holdCluster(): Promise<{ child: ReturnType<typeof spawn>; dir: string }> {
  // Without PVSHIFT_KEEP_CLUSTER: a developer debugging other tests with it set must not fail this one.
  const env = { ...process.env };
  delete env.PVSHIFT_KEEP_CLUSTER;
  const child = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'test/fixtures/cluster/hold-cluster.ts')], {
    cwd: REPO_ROOT,
    env,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const dir = await waitFor('the cluster up', () => Promise.resolve(/READY (\S+)/.exec(output)?.[1]), 120_000);
  return { child, dir };
}

for (const signal of ['SIGINT', 'SIGKILL'] as const) {
  t.test(`${signal} to the owner leaves no process behind`, async (t) => {
    const { child, dir } = await holdCluster();
    const running = processesWith(dir);
    t.ok(
      running.length >= 4,
      `etcd, kube-apiserver, kube-controller-manager and kube-scheduler run (${running.length} processes)`,
    );
    const exited = new Promise<void>((resolve) => child.on('close', () => resolve()));
    child.kill(signal);
    await exited;
    await waitFor(
      'every cluster process gone',
      () => Promise.resolve(processesWith(dir).length === 0 ? true : undefined),
      30_000,
    );
    t.same(processesWith(dir), [], 'no cluster process is left');
    if (signal === 'SIGINT') t.notOk(existsSync(dir), 'the temp dir is removed');
    else execFileSync('rm', ['-rf', dir]); // nothing of ours ran to remove it
  });
}
