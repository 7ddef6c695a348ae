// kubectl-pvshift as a user runs it: a real subprocess from source, with the
// cluster's kubeconfig (unless `bare`), no colour; shared by the cluster tests.
import { spawn } from 'node:child_process';
import { REPO_ROOT } from '../../cluster/index.js';

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs kubectl-pvshift with `kubeconfigPath` (unless `bare`); `onStdout` sees the output so far. */
export function runCli(
  kubeconfigPath: string,
  args: string[],
  options: { bare?: boolean; onStdout?: (stdout: string) => void } = {},
): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        'cli/kubectl-pvshift.ts',
        ...(options.bare ? [] : [`--kubeconfig=${kubeconfigPath}`]),
        ...args,
      ],
      {
        cwd: REPO_ROOT,
        stdio: ['pipe', 'pipe', 'pipe'],
        env: { ...process.env, NO_COLOR: '1' },
      },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => {
      stdout += c.toString();
      options.onStdout?.(stdout);
    });
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.stdin.end();
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}
