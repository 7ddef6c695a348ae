// Every manifest the chart renders, for the defaults and every values file, is
// accepted by the local cluster's real kube-apiserver: a server-side dry run
// (`kubectl create --dry-run=server --validate=strict`, a POST with
// ?dryRun=All and strict field validation) runs defaulting, validation and
// admission, then stores nothing.
//
// Left out: cert-manager's kinds (Issuer, Certificate). cert-manager is not
// installed in the local cluster, so the API server does not know them; their
// shape is checked by render.test.ts instead.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { stringify } from 'yaml';
import { clusterFor, freshNamespace } from '../helpers/cluster.js';
import { CERT_MANAGER_KINDS, installCrdFile, render, VALUES_FILES, type Manifest } from './helm.js';

const cluster = await clusterFor(t);
const { kube } = cluster;
await installCrdFile(kube, join(import.meta.dirname, 'fixtures/volumepopulators-crd.yaml'));

function kubectl(args: string[], input: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cluster.binaries.kubectl, ['--kubeconfig', cluster.kubeconfigPath, ...args], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    child.stdin.end(input);
  });
}

async function dryRun(t: Test, label: string, manifests: Manifest[]): Promise<void> {
  const sent = manifests.filter((m) => !CERT_MANAGER_KINDS.has(m.kind));
  const skipped = manifests.length - sent.length;
  const result = await kubectl(
    ['create', '--dry-run=server', '--validate=strict', '-o', 'name', '-f', '-'],
    sent.map((m) => stringify(m)).join('---\n'),
  );
  t.equal(result.code, 0, `${label}: accepted${result.stderr ? `: ${result.stderr.trim()}` : ''}`);
  const accepted = result.stdout.trim().split('\n').filter(Boolean);
  t.equal(
    accepted.length,
    sent.length,
    `${label}: all ${sent.length} objects accepted${skipped ? ` (${skipped} cert-manager objects not sent)` : ''}`,
  );
}

let release = 0;
for (const file of [undefined, ...VALUES_FILES]) {
  t.test(`${file ?? 'defaults'}: every object passes a server-side dry run`, async (t) => {
    const namespace = await freshNamespace(kube, 'dry');
    const manifests = await render({ release: `dry-${++release}`, namespace, valuesFiles: file ? [file] : [] });
    t.ok(manifests.length >= 5, `${manifests.length} objects rendered`);
    await dryRun(t, file ?? 'defaults', manifests);
  });
}

t.test('the VolumePopulator, where its API is served, passes too', async (t) => {
  const namespace = await freshNamespace(kube, 'dry');
  const manifests = await render({
    release: `dry-${++release}`,
    namespace,
    apiVersions: ['populator.storage.k8s.io/v1beta1'],
  });
  t.ok(
    manifests.some((m) => m.kind === 'VolumePopulator'),
    'rendered',
  );
  await dryRun(t, 'with VolumePopulator', manifests);
});

t.test('a broken manifest is refused by the same check (the check can fail)', async (t) => {
  const namespace = await freshNamespace(kube, 'dry');
  const manifests = await render({ release: `dry-${++release}`, namespace });
  const deployment = manifests.find((m) => m.kind === 'Deployment') as Manifest & {
    spec: { template: { spec: { containers: Record<string, unknown>[] } } };
  };
  deployment.spec.template.spec.containers[0]!.readinessProbes = {};
  const result = await kubectl(
    ['create', '--dry-run=server', '--validate=strict', '-o', 'name', '-f', '-'],
    stringify(deployment),
  );
  t.not(result.code, 0);
  t.match(result.stderr, /unknown field.*readinessProbes/);
});
