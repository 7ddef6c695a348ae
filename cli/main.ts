// kubectl-pvshift's main: parse, connect with the user's kubeconfig and context,
// run one command; every failure is one line on stderr and exit code 1.
import { createInterface } from 'node:readline/promises';
import { ApiError } from '../src/kube.js';
import { apiMessage } from '../src/errors.js';
import { HELP, parseArgs, UsageError } from './args.js';
import { RUN, type Io } from './commands.js';
import { CliError, connect, oneLine, type Connection } from './connect.js';

const VERSION = '0.1.0';

function processIo(): Io {
  return {
    out: (text) => void process.stdout.write(text),
    err: (text) => void process.stderr.write(text),
    stdinIsTTY: !!process.stdin.isTTY,
    stdoutIsTTY: !!process.stdout.isTTY,
    color: !!process.stdout.isTTY && process.env.NO_COLOR === undefined,
    now: () => new Date(),
    async ask(question) {
      const rl = createInterface({ input: process.stdin, output: process.stdout });
      try {
        return await rl.question(question);
      } finally {
        rl.close();
      }
    },
    sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
  };
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'ETIMEDOUT',
  'ECONNRESET',
  'EAI_AGAIN',
  'CERT_HAS_EXPIRED',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'SELF_SIGNED_CERT_IN_CHAIN',
]);

/** One line that says what went wrong and what to do. */
export function describeError(e: unknown, c: Connection | undefined): string {
  if (e instanceof UsageError || e instanceof CliError) return e.message;
  if (e instanceof ApiError) {
    const message = oneLine(apiMessage({ body: e.body }));
    if (e.code === 401)
      return `the API server at ${c?.server} did not accept the credentials of context "${c?.context}" (401 Unauthorized); refresh them in ${c?.kubeconfigPath}`;
    if (e.code === 403) return `forbidden: ${message}; ask a cluster administrator for access`;
    return `${e.method} ${e.path}: ${e.code} ${message}`;
  }
  const code = (e as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && NETWORK_CODES.has(code)) {
    return `cannot reach the API server at ${c?.server} (${code}); check --context and --kubeconfig (context "${c?.context}" in ${c?.kubeconfigPath})`;
  }
  return oneLine(e instanceof Error ? e.message : String(e));
}

export async function main(argv: string[], io: Io = processIo()): Promise<number> {
  let connection: Connection | undefined;
  try {
    const parsed = parseArgs(argv);
    if (parsed.kind === 'help') {
      io.out(`${HELP[parsed.command ?? 'root']}\n`);
      return 0;
    }
    if (parsed.kind === 'version') {
      io.out(`kubectl-pvshift ${VERSION}\n`);
      return 0;
    }
    connection = connect(parsed.options);
    return await RUN[parsed.command](connection, parsed.options, parsed.args, io);
  } catch (e: unknown) {
    io.err(`error: ${describeError(e, connection)}\n`);
    return 1;
  } finally {
    connection?.kube.close();
  }
}
