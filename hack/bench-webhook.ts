// Benchmark of the admission webhook over HTTPS on loopback.
//
//   npx tsx hack/bench-webhook.ts [--duration 10] [--connections 10]
//
// Runs the real webhook app (real TLS, real body parsing, the mutations, a
// migration cache holding a realistic set of migrations) and, the same way, a
// no-op fastify HTTPS handler, each driven by autocannon with the PVC and Pod
// AdmissionReviews a real kube-apiserver sent (test/fixtures/admission/captured-*,
// made by hack/capture-reviews.ts). Then a fixed-rate run at 1,000 requests/s. The
// servers run in a child process so autocannon's own CPU use does not slow them.
// Targets: p99 under 5 ms at 1,000 req/s, throughput at least 0.7 of the no-op.
import { fork, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Agent, request } from 'node:https';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import { createRequire } from 'node:module';
import { fastify } from 'fastify';
import { Registry } from 'prom-client';
import { createCertificateAuthority, issueServingCertificate } from '../certs/authority.js';
import { silentLogger } from '../src/logger.js';
import type { Phase } from '../src/volume-migration.js';
import { buildWebhookApp, CLAIMS_PATH, PODS_PATH } from '../webhook/admission.js';
import { createMemoryLookup } from '../webhook/migration-cache.js';
import { migration } from '../test/fixtures/admission/builders.js';

// autocannon ships no type declarations; the part used here, typed.
interface AutocannonResult {
  requests: { average: number };
  latency: { p50: number; p99: number };
  errors: number;
  timeouts: number;
  non2xx: number;
}
type Autocannon = (options: {
  url: string;
  connections: number;
  duration: number;
  overallRate?: number;
  headers: Record<string, string>;
  requests: { method: 'POST'; path: string; body: string }[];
}) => Promise<AutocannonResult>;
const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;

const NOOP_PATH = '/noop';

interface Ports {
  webhook: number;
  noop: number;
}

/** The servers' side: started in a child process, reports its ports, runs until killed. */
async function serve(): Promise<void> {
  const ca = await createCertificateAuthority({ now: new Date() });
  const serving = await issueServingCertificate(ca, { names: ['localhost', '127.0.0.1'], now: new Date() });
  const https = { key: serving.keyPem, cert: serving.certPem };

  // 200 namespaces with 5 migrations each, in every phase; namespace "shop"
  // holds the ones the requests hit (one in cutover for data-web-0).
  const phases: Phase[] = [
    'Pending',
    'PreSyncing',
    'WaitingForCutover',
    'CuttingOver',
    'Populating',
    'Binding',
    'Succeeded',
    'Failed',
  ];
  const migrations = [migration('data-web-0', 'CuttingOver')];
  for (let n = 0; n < 200; n++) {
    for (let i = 0; i < 5; i++) {
      migrations.push(migration(`data-db-${i}`, phases[(n + i) % phases.length], { namespace: `team-${n}` }));
    }
  }
  const webhook = buildWebhookApp({
    logger: silentLogger(),
    lookup: createMemoryLookup(migrations),
    register: new Registry(),
    https,
  });
  await webhook.listen({ port: 0, host: '127.0.0.1' });

  const noop = fastify({ https });
  noop.post(NOOP_PATH, (_request, reply) => reply.send({ ok: true }));
  await noop.listen({ port: 0, host: '127.0.0.1' });

  const ports: Ports = {
    webhook: (webhook.server.address() as AddressInfo).port,
    noop: (noop.server.address() as AddressInfo).port,
  };
  process.send?.(ports);
}

/**
 * The request mix: reviews a real kube-apiserver sent for a database-like
 * StatefulSet's claim and pod (captured by hack/capture-reviews.ts, with
 * managedFields, defaults, the service-account volume and userInfo), as is for
 * the claim in cutover and the gated pod, and with the claim renamed for the
 * two that no migration concerns (most requests in an active namespace).
 */
function reviews(): { path: string; body: string; what: string }[] {
  const claim = captured('claim');
  const pod = captured('pod');
  const otherClaim = renameClaim(claim, 'data-web-0', 'data-web-1');
  const otherPod = renameClaim(pod, 'data-web-0', 'data-web-1');
  return [
    { what: 'PVC in cutover (patched)', path: CLAIMS_PATH, body: claim },
    { what: 'PVC without migration', path: CLAIMS_PATH, body: otherClaim },
    { what: 'Pod gated (patched)', path: PODS_PATH, body: pod },
    { what: 'Pod without migration', path: PODS_PATH, body: otherPod },
  ];
}

function captured(kind: 'claim' | 'pod'): string {
  const file = fileURLToPath(new URL(`../test/fixtures/admission/captured-${kind}-review.json`, import.meta.url));
  // Compact, as the API server sends it.
  return JSON.stringify(JSON.parse(readFileSync(file, 'utf8')));
}

function renameClaim(body: string, from: string, to: string): string {
  return body.split(`"${from}"`).join(`"${to}"`);
}

interface Figures {
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  non2xx: number;
}

async function drive(
  port: number,
  path: string | undefined,
  options: { duration: number; connections: number; overallRate?: number },
): Promise<Figures> {
  const bodies = reviews();
  const result = await autocannon({
    url: `https://127.0.0.1:${port}`,
    connections: options.connections,
    duration: options.duration,
    ...(options.overallRate ? { overallRate: options.overallRate } : {}),
    headers: { 'content-type': 'application/json' },
    // Every request of the mix in turn; the no-op gets the same bodies on its one path.
    requests: bodies.map((b) => ({ method: 'POST' as const, path: path ?? b.path, body: b.body })),
  });
  return {
    rps: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    errors: result.errors + result.timeouts,
    non2xx: result.non2xx,
  };
}

/**
 * An open-loop load at a uniform `rate`: a request is due every 1/rate s and is
 * sent on the next 1 ms timer tick whether or not earlier ones were answered
 * (so a slow server's queue shows in the latency, counted from the send).
 * Microsecond precision, where
 * autocannon records whole milliseconds and its overallRate sends each
 * connection's share of a second as one burst at the start of the second.
 */
async function openLoop(port: number, rate: number, seconds: number, path?: string): Promise<Figures> {
  const bodies = reviews();
  const agent = new Agent({ keepAlive: true, maxSockets: 64, rejectUnauthorized: false });
  const latencies: number[] = [];
  let errors = 0;
  let non2xx = 0;
  const send = (index: number): Promise<void> =>
    new Promise((resolve) => {
      const sentAt = process.hrtime.bigint();
      const b = bodies[index % bodies.length]!;
      const req = request(
        {
          host: '127.0.0.1',
          port,
          path: path ?? b.path,
          method: 'POST',
          agent,
          headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(b.body) },
        },
        (res) => {
          res.resume();
          res.on('end', () => {
            if ((res.statusCode ?? 0) >= 300) non2xx += 1;
            latencies.push(Number(process.hrtime.bigint() - sentAt) / 1e6);
            resolve();
          });
        },
      );
      req.on('error', () => {
        errors += 1;
        resolve();
      });
      req.end(b.body);
    });
  const start = process.hrtime.bigint();
  const total = rate * seconds;
  const intervalNs = BigInt(Math.round(1e9 / rate));
  const inFlight: Promise<void>[] = [];
  let sent = 0;
  await new Promise<void>((resolve) => {
    const tick = setInterval(() => {
      const now = process.hrtime.bigint();
      while (sent < total && start + BigInt(sent) * intervalNs <= now) {
        inFlight.push(send(sent));
        sent += 1;
      }
      if (sent >= total) {
        clearInterval(tick);
        resolve();
      }
    }, 1);
  });
  await Promise.all(inFlight);
  const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
  agent.destroy();
  latencies.sort((a, b) => a - b);
  const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] ?? NaN;
  return { rps: latencies.length / elapsed, p50: pct(50), p99: pct(99), errors, non2xx };
}

/** The same uniform load on the no-op handler, for comparison. */
function openLoopNoop(port: number, seconds: number): Promise<Figures> {
  return openLoop(port, 1000, seconds, NOOP_PATH);
}

function line(name: string, f: Figures): string {
  return `${name.padEnd(34)} ${f.rps.toFixed(0).padStart(8)} req/s   p50 ${f.p50.toFixed(2).padStart(6)} ms   p99 ${f.p99.toFixed(2).padStart(6)} ms   errors ${f.errors}   non-2xx ${f.non2xx}`;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      duration: { type: 'string', default: '10' },
      connections: { type: 'string', default: '10' },
      serve: { type: 'boolean', default: false },
    },
  });
  if (values.serve) {
    await serve();
    return;
  }
  const duration = Number(values.duration);
  const connections = Number(values.connections);

  const child: ChildProcess = fork(process.argv[1]!, ['--serve'], { execArgv: process.execArgv, stdio: 'inherit' });
  const ports = await new Promise<Ports>((resolve, reject) => {
    child.once('message', (message) => resolve(message as Ports));
    child.once('exit', (code) => reject(new Error(`server process exited with ${code}`)));
  });
  try {
    console.log(
      `pvshift webhook benchmark: HTTPS on loopback, ${connections} connections, ${duration} s per run, node ${process.version}`,
    );
    console.log(
      'request mix: ' +
        reviews()
          .map((r) => `${r.what} (${r.body.length} B)`)
          .join(', '),
    );
    // Warm both servers (JIT, TLS session setup) before measuring.
    await drive(ports.webhook, undefined, { duration: 2, connections });
    await drive(ports.noop, NOOP_PATH, { duration: 2, connections });

    const webhook = await drive(ports.webhook, undefined, { duration, connections });
    const noop = await drive(ports.noop, NOOP_PATH, { duration, connections });
    const fixed = await drive(ports.webhook, undefined, { duration, connections, overallRate: 1000 });
    const uniform = await openLoop(ports.webhook, 1000, duration);
    const uniformNoop = await openLoopNoop(ports.noop, duration);

    console.log('');
    console.log(line('webhook, unthrottled', webhook));
    console.log(line('no-op fastify HTTPS, unthrottled', noop));
    console.log(line('webhook at 1,000 req/s (autocannon)', fixed));
    console.log(line('webhook at 1,000 req/s (uniform)', uniform));
    console.log(line('no-op at 1,000 req/s (uniform)', uniformNoop));
    console.log('');
    console.log('autocannon records whole milliseconds, and with overallRate each connection sends its share of');
    console.log('a second back to back at the start of the second (a burst), with coordinated-omission correction');
    console.log('assuming one request per millisecond; the uniform run spaces requests evenly, in microseconds.');
    console.log('');
    const ratio = webhook.rps / noop.rps;
    console.log(
      `throughput ratio webhook / no-op: ${ratio.toFixed(2)} (target >= 0.70: ${ratio >= 0.7 ? 'met' : 'NOT met'})`,
    );
    console.log(
      `p99 at 1,000 req/s: autocannon ${fixed.p99.toFixed(2)} ms, uniform ${uniform.p99.toFixed(2)} ms (target < 5 ms: autocannon ${fixed.p99 < 5 ? 'met' : 'NOT met'}, uniform ${uniform.p99 < 5 ? 'met' : 'NOT met'})`,
    );
  } finally {
    child.kill();
  }
}

await main();
