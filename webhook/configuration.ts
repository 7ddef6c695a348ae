// Builds pvshift's MutatingWebhookConfiguration from charts/pvshift/files/webhooks.yaml,
// the file the Helm chart renders too, so tests register exactly what users install.
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { V1MutatingWebhook, V1MutatingWebhookConfiguration } from '@kubernetes/client-node';
import { parse } from 'yaml';
import { ConfigurationError } from '../src/errors.js';
import { LABEL_NAME, MANAGED_BY_VALUE } from '../src/names.js';

/** One entry of webhooks.yaml: a MutatingWebhook without clientConfig, plus its path. */
export type WebhookDefinition = Omit<V1MutatingWebhook, 'clientConfig'> & { path: string };

export interface WebhookConfigurationInput {
  /** metadata.name of the MutatingWebhookConfiguration. */
  name: string;
  /** The namespace pvshift runs in: excluded, with kube-system, from both webhooks. */
  pvshiftNamespace: string;
  /** The CA bundle (PEM) that signs the serving certificate; base64-encoded here. */
  caBundle: string;
  /** In-cluster: the Service in front of the webhook. */
  service?: { name: string; namespace: string; port: number };
  /** Outside the cluster (tests, local runs): base URL such as https://127.0.0.1:9443, each path appended. */
  url?: string;
  /** webhooks.yaml to read; defaults to the chart's. */
  file?: string;
}

// Two layouts: run from the source tree (webhook/ next to charts/) or built
// (dist/webhook/, two levels below the root).
const CANDIDATES = ['../charts/pvshift/files/webhooks.yaml', '../../charts/pvshift/files/webhooks.yaml'];

/** The path of the chart's webhooks.yaml. */
export function defaultWebhooksFile(): string {
  for (const candidate of CANDIDATES) {
    const path = fileURLToPath(new URL(candidate, import.meta.url));
    if (existsSync(path)) return path;
  }
  throw new ConfigurationError(`cannot find charts/pvshift/files/webhooks.yaml near ${fileURLToPath(import.meta.url)}`);
}

/** Reads and checks webhooks.yaml. */
export function loadWebhookDefinitions(file: string = defaultWebhooksFile()): WebhookDefinition[] {
  const document: unknown = parse(readFileSync(file, 'utf8'));
  const webhooks = (document as { webhooks?: unknown } | null)?.webhooks;
  if (!Array.isArray(webhooks) || webhooks.length === 0) {
    throw new ConfigurationError(`${file}: expected a non-empty list under "webhooks"`);
  }
  return webhooks.map((entry: unknown, i) => {
    const record = entry as Record<string, unknown> | null;
    if (typeof record?.name !== 'string' || typeof record.path !== 'string' || !record.path.startsWith('/')) {
      throw new ConfigurationError(`${file}: webhooks[${i}] needs a name and a path starting with /`);
    }
    if ('clientConfig' in record) {
      throw new ConfigurationError(`${file}: webhooks[${i}] must not set clientConfig; the reader adds it`);
    }
    return record as unknown as WebhookDefinition;
  });
}

/** The full MutatingWebhookConfiguration for a service or a URL. */
export function buildWebhookConfiguration(input: WebhookConfigurationInput): V1MutatingWebhookConfiguration {
  if (!input.service === !input.url) {
    throw new ConfigurationError('buildWebhookConfiguration needs exactly one of service and url');
  }
  const caBundle = Buffer.from(input.caBundle).toString('base64');
  const excluded = [...new Set(['kube-system', input.pvshiftNamespace])];
  const webhooks = loadWebhookDefinitions(input.file).map((definition): V1MutatingWebhook => {
    const { path, ...webhook } = structuredClone(definition);
    const selector = webhook.namespaceSelector ?? {};
    webhook.namespaceSelector = {
      ...selector,
      matchExpressions: [
        ...(selector.matchExpressions ?? []),
        { key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: excluded },
      ],
    };
    const clientConfig = input.service
      ? { service: { ...input.service, path }, caBundle }
      : { url: `${input.url!.replace(/\/+$/, '')}${path}`, caBundle };
    return { ...webhook, clientConfig };
  });
  return {
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'MutatingWebhookConfiguration',
    metadata: { name: input.name, labels: { [LABEL_NAME]: MANAGED_BY_VALUE } },
    webhooks,
  };
}
