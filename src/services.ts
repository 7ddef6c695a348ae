// The long-running side of the image: webhook and/or controller in one
// process, with metrics and graceful shutdown. Loaded by main.ts only for
// those modes, so a copy pod (`--mode=runner`) never loads fastify, the
// Kubernetes client, pino or prom-client (about 0.3 s of start-up).
import { createServer, type Server } from 'node:http';
import { Registry, collectDefaultMetrics } from 'prom-client';
import { parseConfig, USAGE, type Config } from './config.js';
import { ConfigurationError, errorMessage } from './errors.js';
import { Kube } from './kube.js';
import { createLogger, flushLogger, type Logger } from './logger.js';
import { LEADER_ELECTION_LEASE } from './permissions.js';

async function runServices(config: Config, logger: Logger): Promise<void> {
  const kube = Kube.fromDefault(config.kubeconfig);
  const register = new Registry();
  collectDefaultMetrics({ register });
  const closers: (() => Promise<void>)[] = [];

  if (config.modes.includes('webhook')) {
    const { runWebhook } = await import('../webhook/index.js');
    const handle = await runWebhook(
      {
        port: config.webhook.port,
        host: config.webhook.host,
        certMode: config.webhook.certMode,
        ...(config.webhook.certDir ? { certDir: config.webhook.certDir } : {}),
        secretName: config.webhook.tlsSecret,
        secretNamespace: config.namespace,
        serviceName: config.webhook.serviceName,
        serviceNamespace: config.namespace,
        extraNames: config.webhook.extraNames,
        webhookConfigurationName: config.webhook.webhookConfiguration,
        kube,
        register,
      },
      logger.child({ component: 'webhook' }),
    );
    closers.push(() => handle.close());
  }
  if (config.modes.includes('controller')) {
    const { controllerSettings, startController } = await import('../populator/controller.js');
    const c = config.controller;
    const handle = startController(
      kube,
      {
        settings: controllerSettings(c),
        workers: c.workers,
        requeueMs: c.requeueSeconds * 1000,
        crashAfterSteps: c.faultCrashAfterSteps,
        ...(c.leaderElect
          ? {
              leaderElection: {
                namespace: c.leaderElectionNamespace,
                name: LEADER_ELECTION_LEASE,
                leaseDurationMs: c.leaseDurationSeconds * 1000,
                renewMs: Math.max(1000, (c.leaseDurationSeconds * 1000) / 3),
                retryMs: 1000,
              },
            }
          : {}),
        register,
      },
      logger.child({ component: 'controller' }),
    );
    closers.push(() => handle.stop());
  }
  let metricsServer: Server | undefined;
  if (config.metricsPort > 0) {
    metricsServer = createServer((req, res) => {
      if (req.url === '/metrics') {
        register.metrics().then(
          (text) => res.writeHead(200, { 'Content-Type': register.contentType }).end(text),
          (e: unknown) => res.writeHead(500).end(errorMessage(e)),
        );
      } else if (req.url === '/healthz') res.writeHead(200).end('ok');
      else res.writeHead(404).end();
    });
    metricsServer.listen(config.metricsPort);
  }

  await new Promise<void>((resolve) => {
    const shutdown = (signal: string) => {
      logger.info({ signal }, 'shutting down');
      resolve();
    };
    process.once('SIGTERM', shutdown);
    process.once('SIGINT', shutdown);
  });
  for (const close of closers.reverse()) await close();
  metricsServer?.close();
  kube.close();
}

/** `pvshift --mode=webhook,controller ...`: returns the exit code. */
export async function serve(argv: string[]): Promise<number> {
  let config: ReturnType<typeof parseConfig>;
  try {
    config = parseConfig(argv);
  } catch (e: unknown) {
    if (!(e instanceof ConfigurationError)) throw e;
    process.stderr.write(`pvshift: ${e.message}\n`);
    return 2;
  }
  if (config === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  const logger = createLogger({ level: config.logLevel });
  try {
    await runServices(config, logger);
    return 0;
  } catch (e: unknown) {
    if (e instanceof ConfigurationError) {
      logger.fatal(e.message);
      return 2;
    }
    logger.fatal({ err: e }, 'pvshift failed');
    return 1;
  } finally {
    await flushLogger(logger);
  }
}
