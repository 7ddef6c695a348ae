// pvshift's logs go to stdout, a pipe the container runtime copies into a file.
// When that copy stalls (a node whose disks are busy), pvshift must keep
// answering: a webhook that blocks on its own log line fails admission, probes
// and the Lease. And the lines written meanwhile reach the log when it drains.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const server = fileURLToPath(new URL('../fixtures/logging-server.ts', import.meta.url));
const REQUESTS = 300; // about 300 KiB of log lines: several times a pipe's 64 KiB

async function get(url: string): Promise<string> {
  const res = await fetch(url, { signal: AbortSignal.timeout(3000) });
  return res.text();
}

t.test('with stdout not read, the server still answers; every line arrives once stdout drains', async (t) => {
  const child = spawn(process.execPath, ['--import', 'tsx', server], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => child.kill('SIGKILL'));
  const [line] = (await once(child.stderr, 'data')) as [Buffer];
  const port = /listening (\d+)/.exec(line.toString())?.[1];
  t.ok(port, 'the server listens');

  // Nothing reads the child's stdout yet: the pipe fills after about 60 lines.
  let answered = 0;
  for (let i = 0; i < REQUESTS; i++) {
    try {
      if ((await get(`http://127.0.0.1:${port}/review/${i}`)) === 'ok') answered += 1;
    } catch (e: unknown) {
      t.comment(`request ${i}: ${String(e)}`);
      break;
    }
  }
  t.equal(answered, REQUESTS, `all ${REQUESTS} requests answered while the log was not read`);

  const chunks: Buffer[] = [];
  child.stdout.on('data', (chunk: Buffer) => chunks.push(chunk));
  child.kill('SIGTERM');
  await once(child, 'close'); // exited, and its stdout read to the end
  const lines = Buffer.concat(chunks)
    .toString()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { msg: string; url: string });
  const logged = new Set(lines.filter((l) => l.msg === 'answered').map((l) => l.url));
  const missing = Array.from({ length: answered }, (_, i) => `/review/${i}`).filter((url) => !logged.has(url));
  t.same(missing, [], 'each answer logged, none lost');
  t.equal(lines.at(-1)?.url, `/review/${answered - 1}`, 'in order, to the last one (flushed at exit)');
});
