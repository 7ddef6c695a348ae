// The chart and webhook/configuration.ts both turn files/webhooks.yaml into a
// MutatingWebhookConfiguration (the chart for users, the TypeScript for tests
// and local runs). For the same inputs their webhook entries must be equal, or
// the tests would exercise a registration nobody installs.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { parse } from 'yaml';
import type { V1MutatingWebhookConfiguration } from '@kubernetes/client-node';
import { buildWebhookConfiguration } from '../../webhook/configuration.js';
import { oneOf, render, VALUES_DIR } from './helm.js';

const { webhook: urlValues } = parse(await readFile(join(VALUES_DIR, 'url.yaml'), 'utf8')) as {
  webhook: { url: string; caBundle: string };
};
const { certificates } = parse(await readFile(join(VALUES_DIR, 'provided.yaml'), 'utf8')) as {
  certificates: { provided: { caBundle: string } };
};

async function chartWebhooks(options: Parameters<typeof render>[0]): Promise<V1MutatingWebhookConfiguration> {
  return oneOf(await render(options), 'MutatingWebhookConfiguration');
}

t.test('URL mode: the same entries as buildWebhookConfiguration', async (t) => {
  const chart = await chartWebhooks({ valuesFiles: ['url.yaml'] });
  const built = buildWebhookConfiguration({
    name: 'pvshift',
    pvshiftNamespace: 'pvshift-system',
    caBundle: urlValues.caBundle,
    url: urlValues.url,
  });
  t.equal(chart.webhooks?.length, 2);
  t.strictSame(chart.webhooks, built.webhooks, 'webhooks arrays deeply equal');
  t.equal(chart.metadata?.name, built.metadata?.name);
});

t.test('URL mode, other base URLs: slashes handled alike', async (t) => {
  for (const url of ['https://127.0.0.1:9443', 'https://pvshift.dev.example:8443//', 'https://10.0.0.1/prefix']) {
    const chart = await chartWebhooks({
      set: [`webhook.url=${url}`, `webhook.caBundle=${Buffer.from(urlValues.caBundle).toString('base64')}`],
    });
    const built = buildWebhookConfiguration({
      name: 'pvshift',
      pvshiftNamespace: 'pvshift-system',
      caBundle: urlValues.caBundle,
      url,
    });
    t.strictSame(chart.webhooks, built.webhooks, `${url}: equal (caBundle given base64-encoded to the chart)`);
  }
});

t.test('Service mode: the same entries for a provided CA', async (t) => {
  const chart = await chartWebhooks({ valuesFiles: ['provided.yaml'] });
  const built = buildWebhookConfiguration({
    name: 'pvshift',
    pvshiftNamespace: 'pvshift-system',
    caBundle: certificates.provided.caBundle,
    service: { name: 'pvshift-webhook', namespace: 'pvshift-system', port: 443 },
  });
  t.strictSame(chart.webhooks, built.webhooks);
});

t.test('another release and namespace, and pvshift in kube-system (excluded once)', async (t) => {
  for (const [release, namespace] of [
    ['storage', 'platform'],
    ['pvshift', 'kube-system'],
  ] as const) {
    const chart = await chartWebhooks({
      release,
      namespace,
      valuesFiles: ['provided.yaml'],
      set: ['webhook.service.port=8443'],
    });
    const fullname = release === 'pvshift' ? 'pvshift' : `${release}-pvshift`;
    const built = buildWebhookConfiguration({
      name: fullname,
      pvshiftNamespace: namespace,
      caBundle: certificates.provided.caBundle,
      service: { name: `${fullname}-webhook`, namespace, port: 8443 },
    });
    t.strictSame(chart.webhooks, built.webhooks, `${release} in ${namespace}`);
    t.equal(chart.metadata?.name, fullname);
  }
});

t.test('managed mode: the same entries, with caBundle left out for pvshift to patch', async (t) => {
  const chart = await chartWebhooks({});
  const built = buildWebhookConfiguration({
    name: 'pvshift',
    pvshiftNamespace: 'pvshift-system',
    caBundle: '',
    service: { name: 'pvshift-webhook', namespace: 'pvshift-system', port: 443 },
  });
  // The builder always writes caBundle (here ''); the chart omits the field so
  // Helm's three-way merge never resets what pvshift patched in.
  const withoutCa = built.webhooks?.map(({ clientConfig: { caBundle: _ca, ...clientConfig }, ...webhook }) => ({
    ...webhook,
    clientConfig,
  }));
  t.strictSame(chart.webhooks, withoutCa);
});
