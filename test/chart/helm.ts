// Shared by the chart tests: the real helm binary over the chart in this
// checkout, its output parsed into objects, and a CRD installer.
import { execFile } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { readFile } from 'node:fs/promises';
import { parse, parseAllDocuments } from 'yaml';
import { findBinaries, REPO_ROOT, waitFor } from '../../cluster/index.js';
import { paths, type Kube } from '../../src/kube.js';
import type { NamedObject, Permission } from '../../src/permissions.js';

const execFileAsync = promisify(execFile);

export const CHART = join(REPO_ROOT, 'charts/pvshift');
export const VALUES_DIR = join(REPO_ROOT, 'test/chart/values');
/** The version of the local cluster's API server: Capabilities for `helm template`. */
export const KUBE_VERSION = '1.34.4';
/** Kinds whose CRDs the local cluster does not have (cert-manager is not installed there). */
export const CERT_MANAGER_KINDS = new Set(['Issuer', 'Certificate', 'ClusterIssuer']);

/** Every values file of the matrix, by file name. */
export const VALUES_FILES: string[] = readdirSync(VALUES_DIR)
  .filter((f) => f.endsWith('.yaml'))
  .sort();

export interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [key: string]: unknown;
}

export interface HelmResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs helm; never throws on a non-zero exit (failing renders are tested too). */
export async function helm(args: string[], options: { timeoutMs?: number } = {}): Promise<HelmResult> {
  const { helm: bin } = await findBinaries();
  try {
    const { stdout, stderr } = await execFileAsync(bin, args, {
      cwd: REPO_ROOT,
      maxBuffer: 16 * 1024 * 1024,
      timeout: options.timeoutMs ?? 120_000,
      // No user's helm configuration or repositories leak in.
      env: {
        ...process.env,
        HELM_CACHE_HOME: join(REPO_ROOT, 'tmp/helm/cache'),
        HELM_CONFIG_HOME: join(REPO_ROOT, 'tmp/helm/config'),
        HELM_DATA_HOME: join(REPO_ROOT, 'tmp/helm/data'),
      },
    });
    return { code: 0, stdout, stderr };
  } catch (e: unknown) {
    const failure = e as { code?: unknown; stdout?: string; stderr?: string };
    if (typeof failure.code !== 'number') throw e;
    return { code: failure.code, stdout: failure.stdout ?? '', stderr: failure.stderr ?? '' };
  }
}

export interface RenderOptions {
  release?: string;
  namespace?: string;
  /** Values files, by name in test/chart/values or absolute. */
  valuesFiles?: string[];
  /** `--set` pairs. */
  set?: string[];
  /** Extra `--api-versions` for Capabilities.APIVersions. */
  apiVersions?: string[];
}

export function templateArgs(options: RenderOptions = {}): string[] {
  const args = [
    'template',
    options.release ?? 'pvshift',
    CHART,
    '--namespace',
    options.namespace ?? 'pvshift-system',
    '--kube-version',
    KUBE_VERSION,
  ];
  for (const file of options.valuesFiles ?? [])
    args.push('--values', file.startsWith('/') ? file : join(VALUES_DIR, file));
  for (const pair of options.set ?? []) args.push('--set', pair);
  for (const api of options.apiVersions ?? []) args.push('--api-versions', api);
  return args;
}

/** Parses helm's multi-document output; empty documents (all comments) are dropped. */
export function parseManifests(text: string): Manifest[] {
  return parseAllDocuments(text)
    .map((doc) => {
      if (doc.errors.length > 0)
        throw new Error(`helm rendered invalid YAML: ${doc.errors.map((e) => e.message).join('; ')}`);
      return doc.toJSON() as Manifest | null;
    })
    .filter((m): m is Manifest => m !== null && typeof m === 'object');
}

/** `helm template`, parsed; throws with helm's message when the render fails. */
export async function render(options: RenderOptions = {}): Promise<Manifest[]> {
  const result = await helm(templateArgs(options));
  if (result.code !== 0) throw new Error(`helm template failed: ${result.stderr.trim()}`);
  return parseManifests(result.stdout);
}

export function byKind(manifests: Manifest[], kind: string): Manifest[] {
  return manifests.filter((m) => m.kind === kind);
}

export function oneOf(manifests: Manifest[], kind: string): Manifest {
  const found = byKind(manifests, kind);
  if (found.length !== 1) throw new Error(`expected one ${kind}, found ${found.length}`);
  return found[0]!;
}

/** A Helm test hook (`helm.sh/hook: test`): rendered, but not created by install. */
export function isTestHook(manifest: Manifest): boolean {
  return (manifest.metadata.annotations?.['helm.sh/hook'] ?? '').split(',').includes('test');
}

interface Crd {
  metadata: { name: string };
  status?: { conditions?: { type: string; status: string }[] };
}

/** Creates a CRD from a file and waits until the API server serves it. */
export async function installCrdFile(kube: Kube, file: string): Promise<void> {
  const crd = parse(await readFile(file, 'utf8')) as Crd;
  await kube.create(paths.crds(), crd);
  await waitFor(`CRD ${crd.metadata.name} Established`, async () => {
    const current = await kube.get<Crd>(paths.crds(crd.metadata.name));
    return current?.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True') ? true : undefined;
  });
}

export interface PolicyRule {
  apiGroups?: string[];
  resources?: string[];
  verbs: string[];
  resourceNames?: string[];
}

/** A rule set as comparable strings: group|resource|verb|resourceName (`*` for any name). */
export function expandRules(rules: PolicyRule[]): string[] {
  const out = new Set<string>();
  for (const rule of rules) {
    for (const group of rule.apiGroups ?? [])
      for (const resource of rule.resources ?? [])
        for (const verb of rule.verbs)
          for (const name of rule.resourceNames?.length ? rule.resourceNames : ['*'])
            out.add(`${group}|${resource}|${verb}|${name}`);
  }
  return [...out].sort();
}

/** src/permissions.ts entries as expandRules strings, named objects by the name `nameOf` gives (default: a default install's). */
export function expandPermissions(
  permissions: Permission[],
  nameOf: (object: NamedObject) => string = (o) => o.defaultName,
): string[] {
  return expandRules(
    permissions.map((p) => ({
      apiGroups: [p.apiGroup],
      resources: [p.resource],
      verbs: p.verbs,
      resourceNames: p.resourceName ? [nameOf(p.resourceName)] : undefined,
    })),
  );
}
