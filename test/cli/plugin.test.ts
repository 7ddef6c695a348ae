// kubectl-pvshift as users install it: the single-file bundle and krew archive
// that hack/bundle-plugin.ts builds, unpacked the way krew unpacks it (the file in
// a store directory, a symlink to it in a bin directory on PATH), found and run by
// the real kubectl as `kubectl pvshift ...` against the real local control plane.
// Nothing of the repository is on the plugin's side: an empty HOME, a PATH of the
// bin directory and node, no NODE_OPTIONS of tap's.
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { parse } from 'yaml';
import type { V1PersistentVolumeClaim } from '@kubernetes/client-node';
import { installVolumeMigrationCrd, REPO_ROOT } from '../../cluster/index.js';
import { paths } from '../../src/kube.js';
import type { VolumeMigration } from '../../src/volume-migration.js';
import { clusterFor, freshNamespace, waitFor, waitForClaimBound } from '../helpers/cluster.js';
import { matchFixture } from './fixture.js';

const execFileAsync = promisify(execFile);
const PLUGIN = 'kubectl-pvshift';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs `command` with exactly `env` and nothing else. Through env -i: tap's
 * processinfo hooks every spawn of a test process and puts its loader into
 * NODE_OPTIONS, whatever env the spawn passes; a plugin started with it would
 * not be the plugin users run (an extensionless ES module even fails to load
 * under its require hook: ERR_REQUIRE_CYCLE_MODULE).
 */
function run(command: string, args: string[], env: NodeJS.ProcessEnv, cwd = REPO_ROOT): Promise<Run> {
  const pairs = Object.entries(env).flatMap(([k, v]) => (v === undefined ? [] : [`${k}=${v}`]));
  return new Promise((resolve, reject) => {
    const child = spawn('/usr/bin/env', ['-i', ...pairs, command, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const work = await mkdtemp(join(tmpdir(), 'pvshift-plugin-test-'));
t.teardown(() => rm(work, { recursive: true, force: true }));
const version = (JSON.parse(await readFile(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const dist = join(work, 'dist');
const manifestPath = join(work, 'pvshift.yaml');
const archivePath = join(dist, `pvshift-kubectl-plugin-v${version}.tar.gz`);

// The build (a few seconds) while the control plane starts (half a minute).
const [cluster, build] = await Promise.all([
  clusterFor(t),
  run(
    process.execPath,
    ['--import', 'tsx', 'hack/bundle-plugin.ts', '--krew', '--out-dir', dist, '--manifest', manifestPath],
    { PATH: process.env.PATH, HOME: process.env.HOME, TMPDIR: process.env.TMPDIR },
  ),
]);
t.comment(build.stdout.trim());
if (build.code !== 0)
  throw new Error(`hack/bundle-plugin.ts --krew failed (${build.code}):\n${build.stdout}${build.stderr}`);
const { kube } = cluster;

// krew's layout: the archive unpacked into a store directory, bin/kubectl-pvshift a link to it.
const store = join(work, 'krew/store/pvshift', `v${version}`);
const bin = join(work, 'krew/bin');
const home = join(work, 'home');
await Promise.all([mkdir(store, { recursive: true }), mkdir(bin, { recursive: true }), mkdir(home)]);
await execFileAsync('tar', ['-xzf', archivePath, '-C', store]);
await symlink(join(store, PLUGIN), join(bin, PLUGIN));

/**
 * The environment of a user's shell with the plugin installed, nothing of the
 * test's; --pending-deprecation so that Node 20 warns about what newer Nodes warn
 * about at run time.
 */
const userEnv: NodeJS.ProcessEnv = {
  PATH: [bin, dirname(process.execPath)].join(delimiter),
  HOME: home,
  KUBECONFIG: cluster.kubeconfigPath,
  NO_COLOR: '1',
  NODE_OPTIONS: '--pending-deprecation',
};

function kubectl(args: string[]): Promise<Run> {
  return run(cluster.binaries.kubectl, args, userEnv, home);
}

interface KrewManifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string };
  spec: {
    version: string;
    homepage: string;
    shortDescription: string;
    description: string;
    caveats: string;
    platforms: { selector: { matchLabels: { os: string; arch: string } }; uri: string; sha256: string; bin: string }[];
  };
}

t.test('the krew archive holds exactly the bundle, and the manifest names its sha256', async (t) => {
  const listing = (await execFileAsync('tar', ['-tvzf', archivePath])).stdout.trim().split('\n');
  const entries = listing.map((line) => {
    const fields = line.trim().split(/\s+/);
    return { mode: fields[0], name: fields[fields.length - 1] };
  });
  const license = existsSync(join(REPO_ROOT, 'LICENSE'));
  t.same(
    entries.map((e) => e.name).sort(),
    license ? ['LICENSE', PLUGIN] : [PLUGIN],
    'the plugin (and LICENSE when the repository has one), nothing else',
  );
  t.equal(entries.find((e) => e.name === PLUGIN)?.mode, '-rwxr-xr-x', 'executable');
  const bundle = await readFile(join(dist, PLUGIN));
  t.ok(bundle.equals(await readFile(join(store, PLUGIN))), 'the file in the archive is the bundle');
  t.equal(bundle.subarray(0, 20).toString(), '#!/usr/bin/env node\n', 'kubectl can run it directly');
  t.comment(`bundle ${bundle.byteLength} bytes, archive ${(await readFile(archivePath)).byteLength} bytes`);

  const text = await readFile(manifestPath, 'utf8');
  t.notMatch(text, /\{\{/, 'no placeholder left');
  const manifest = parse(text) as KrewManifest;
  const sha256 = createHash('sha256')
    .update(await readFile(archivePath))
    .digest('hex');
  const uri = `https://github.com/pvshift/pvshift/releases/download/v${version}/pvshift-kubectl-plugin-v${version}.tar.gz`;
  t.equal(manifest.apiVersion, 'krew.googlecontainertools.github.com/v1alpha2');
  t.equal(manifest.kind, 'Plugin');
  t.equal(manifest.metadata.name, 'pvshift', 'named as `kubectl pvshift` is invoked');
  t.equal(manifest.spec.version, `v${version}`, "package.json's version, with the v krew requires");
  t.ok(
    manifest.spec.shortDescription && manifest.spec.description && manifest.spec.homepage,
    'described, with a homepage',
  );
  t.match(manifest.spec.caveats, /Node\.js 20\.19 or\s+newer/, 'the caveats say it needs Node.js');
  t.same(manifest.spec.platforms.map((p) => `${p.selector.matchLabels.os}/${p.selector.matchLabels.arch}`).sort(), [
    'darwin/amd64',
    'darwin/arm64',
    'linux/amd64',
    'linux/arm64',
  ]);
  for (const p of manifest.spec.platforms) {
    const platform = `${p.selector.matchLabels.os}/${p.selector.matchLabels.arch}`;
    t.equal(p.sha256, sha256, `${platform}: the archive's sha256`);
    t.equal(p.uri, uri, `${platform}: the release URL of the archive`);
    t.equal(p.bin, PLUGIN, `${platform}: bin`);
  }

  // The manifest kept in the repository is the template's for this version; only
  // its sha256 is that of whichever build rendered it last.
  const kept = parse(await readFile(join(REPO_ROOT, 'plugins/krew/pvshift.yaml'), 'utf8')) as KrewManifest;
  t.ok(
    kept.spec.platforms.every((p) => /^[0-9a-f]{64}$/.test(p.sha256)),
    'plugins/krew/pvshift.yaml has real sha256s',
  );
  const withoutSha = (m: KrewManifest) => ({
    ...m,
    spec: { ...m.spec, platforms: m.spec.platforms.map((p) => ({ ...p, sha256: '' })) },
  });
  t.same(
    withoutSha(kept),
    withoutSha(manifest),
    'plugins/krew/pvshift.yaml is up to date with the template and version (npm run bundle -- --krew)',
  );
});

t.test('kubectl finds the plugin from the archive on PATH', async (t) => {
  const list = await kubectl(['plugin', 'list']);
  t.equal(list.code, 0, list.stderr);
  t.equal(list.stderr, '', 'no warning (a plugin not executable or shadowed would be one)');
  t.match(list.stdout, `${join(bin, PLUGIN)}\n`);
});

t.test('kubectl pvshift prints its help and version', async (t) => {
  for (const args of [['--help'], []]) {
    const help = await kubectl(['pvshift', ...args]);
    t.equal(help.code, 0, `kubectl pvshift ${args.join(' ')} exits 0: ${help.stderr}`);
    t.equal(help.stderr, '', 'nothing on stderr');
    matchFixture(t, 'help-root.txt', help.stdout);
  }
  const shown = await kubectl(['pvshift', 'version']);
  t.equal(shown.code, 0);
  t.equal(shown.stdout, `${PLUGIN} ${version}\n`, 'the version of package.json');
  t.equal(shown.stderr, '');

  const wrong = await kubectl(['pvshift', 'plan', '--too', 'fast']);
  t.equal(wrong.code, 1, 'a usage error is exit code 1 through kubectl');
  t.equal(wrong.stderr, 'error: unknown flag --too for "plan"; see kubectl pvshift plan --help\n');
});

t.test('without pvshift in the cluster, status says what to do', async (t) => {
  const status = await kubectl(['pvshift', 'status', '-A']);
  t.equal(status.code, 1);
  t.equal(status.stdout, '');
  t.equal(
    status.stderr,
    'error: the VolumeMigration API (pvshift.io/v1alpha1) is not installed in this cluster; install pvshift first (helm install pvshift charts/pvshift)\n',
  );
});

t.test('plan, migrate and status of a claim through kubectl', async (t) => {
  await installVolumeMigrationCrd(cluster.kubeConfig);
  const ns = await freshNamespace(kube, 'plugin');
  // Established is not served yet: the API server answers 429 "storage is
  // (re)initializing" for a moment after.
  await waitFor('VolumeMigrations served', () =>
    kube.list<VolumeMigration>(paths.migrations(ns)).then(
      () => true,
      () => undefined,
    ),
  );
  // Copy pods keep everything here: plan has no fidelity warning to make.
  await kube.patch(paths.namespaces(ns), {
    metadata: { labels: { 'pod-security.kubernetes.io/enforce': 'privileged', 'pvshift.io/privileged-copy': 'true' } },
  });
  await kube.create<V1PersistentVolumeClaim>(paths.claims(ns), {
    metadata: { name: 'data' },
    spec: { accessModes: ['ReadWriteOnce'], storageClassName: 'standard', resources: { requests: { storage: '1Gi' } } },
  });
  await waitForClaimBound(kube, ns, 'data');

  const plan = await kubectl(['pvshift', 'plan', 'data', '-n', ns, '--to', 'fast']);
  t.equal(plan.code, 0, plan.stderr);
  t.equal(plan.stderr, '', 'no warning of Node on stderr');
  t.equal(
    plan.stdout,
    [
      'CLAIM  CLASS             SIZE  USED              CONSUMERS  OWNERS  VERDICT',
      'data   standard -> fast  1Gi   unknown (<= 1Gi)  <none>     <none>  ok',
      '',
      'Findings:',
      '  data: info NoConsumer: no pod mounts it: cutover starts when a pod that mounts it is created',
      '',
      '1 of 1 claim would move.',
      '',
    ].join('\n'),
  );

  const migrate = await kubectl(['pvshift', 'migrate', 'data', '-n', ns, '--to', 'fast', '--yes']);
  t.equal(migrate.code, 0, migrate.stderr);
  t.equal(
    migrate.stdout,
    `volumemigration.pvshift.io/data created in ${ns}\n\nFollow with: kubectl pvshift status --watch -n ${ns}\n`,
  );
  const created = await kube.get<VolumeMigration>(paths.migrations(ns, 'data'));
  t.same(
    created?.spec,
    {
      claimName: 'data',
      targetStorageClassName: 'fast',
      cutover: 'OnPodRecreate',
      verify: 'metadata',
      sourceRetention: 'Keep',
      resyncInterval: '5m',
    },
    'the VolumeMigration the plugin created (with the CRD defaults)',
  );

  // No pvshift controller runs here: the migration stays Pending.
  const status = await kubectl(['pvshift', 'status', '-n', ns]);
  t.equal(status.code, 0, status.stderr);
  t.equal(status.stderr, '');
  t.match(
    status.stdout,
    /^NAME\s+CLAIM\s+TARGET\s+PHASE\s+PROGRESS\s+RATE\s+ETA\s+DOWNTIME\s+AGE\s+MESSAGE\n/,
    'the table header',
  );
  t.match(
    status.stdout,
    /\ndata\s+data\s+fast\s+Pending\s+-\s+-\s+-\s+-\s+\d+s\s*\n$/,
    "the migration's row: Pending, nothing copied yet",
  );
});
