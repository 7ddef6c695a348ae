// The user's kubeconfig and context, like kubectl: --kubeconfig, else
// $KUBECONFIG, else ~/.kube/config; --context, else the current context; the
// namespace from -n, else the context's, else "default". Every failure is one
// line that says what to do.
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { Kube, KubeConfig } from '../src/kube.js';
import type { Options } from './args.js';

/** A failure the user can act on: printed as `error: <message>`, exit code 1. */
export class CliError extends Error {
  override name = 'CliError';
}

export interface Connection {
  kube: Kube;
  /** The namespace to work in; undefined with -A. */
  namespace: string | undefined;
  /** The namespace -n or the context gave, even with -A (for messages). */
  defaultNamespace: string;
  kubeconfigPath: string;
  context: string;
  server: string;
}

export function connect(o: Options, env: NodeJS.ProcessEnv = process.env): Connection {
  const fromEnv = env.KUBECONFIG?.split(':').filter(Boolean) ?? [];
  const files = o.kubeconfig ? [o.kubeconfig] : fromEnv.length ? fromEnv : [join(homedir(), '.kube', 'config')];
  const shown = files.join(':');
  const present = files.filter((f) => existsSync(f));
  if (present.length === 0) {
    throw new CliError(`kubeconfig ${shown} not found; pass --kubeconfig PATH or set KUBECONFIG`);
  }
  const kc = new KubeConfig();
  try {
    if (o.kubeconfig) kc.loadFromFile(o.kubeconfig);
    else kc.loadFromDefault();
  } catch (e: unknown) {
    throw new CliError(`cannot read kubeconfig ${shown}: ${oneLine(e instanceof Error ? e.message : String(e))}`);
  }
  const context = o.context ?? kc.getCurrentContext();
  if (!context)
    throw new CliError(`no current context in ${shown}; pass --context NAME (see kubectl config get-contexts)`);
  const contextObject = kc.getContextObject(context);
  if (!contextObject) throw new CliError(`context "${context}" not found in ${shown}; see kubectl config get-contexts`);
  if (!kc.getCluster(contextObject.cluster))
    throw new CliError(`context "${context}" names cluster "${contextObject.cluster}", which is not in ${shown}`);
  const kube = Kube.fromDefault(o.kubeconfig, context);
  const defaultNamespace = o.namespace ?? contextObject.namespace ?? 'default';
  return {
    kube,
    namespace: o.allNamespaces ? undefined : defaultNamespace,
    defaultNamespace,
    kubeconfigPath: shown,
    context,
    server: kube.server.origin,
  };
}

export function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, '; ').trim();
}
