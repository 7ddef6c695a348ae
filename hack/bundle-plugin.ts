// The kubectl plugin as users install it: one self-contained file,
// dist/kubectl-pvshift, that kubectl finds on PATH (plugin discovery wants the
// name kubectl-pvshift, no extension) and that needs nothing but `node`.
//
//   npx tsx hack/bundle-plugin.ts [--krew] [--out-dir DIR] [--manifest PATH]
//
// --krew also packs the release archive DIR/pvshift-kubectl-plugin-v<version>.tar.gz
// (kubectl-pvshift, and LICENSE when the repository has one) and renders
// plugins/krew/pvshift.yaml.tmpl into the krew manifest (default
// plugins/krew/pvshift.yaml) with the archive's URI and sha256.
//
// Every build is checked the way a user would run it: the file alone in an empty
// directory, `version` equal to package.json's, `--help`, and nothing on stderr
// even under --pending-deprecation.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, readFile, rm, stat, chmod, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';
import { parse } from 'yaml';

const execFileAsync = promisify(execFile);
const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));
const PLUGIN = 'kubectl-pvshift';
const TEMPLATE = join(REPO_ROOT, 'plugins/krew/pvshift.yaml.tmpl');
// package.json and the README name no homepage yet; package.json's `homepage`, once
// set, wins.
const DEFAULT_HOMEPAGE = 'https://github.com/pvshift/pvshift';

interface PackageJson {
  version: string;
  homepage?: string;
}

/**
 * Bundles cli/kubectl-pvshift.ts with every dependency into one ES module.
 *
 * ESM, not CommonJS: the entry awaits at top level, and this repository's
 * package.json says "type": "module", so an extensionless file inside it (dist/)
 * is loaded as ESM anyway. Outside any package (krew's store, /usr/local/bin)
 * Node finds the ESM syntax itself (module syntax detection, on by default since
 * Node 20.19 and 22.7): hence "Node.js 20.19 or newer", as package.json's engines.
 */
async function bundle(outFile: string): Promise<{ bytes: number; ms: number }> {
  const started = performance.now();
  const result = await build({
    // Paths in the bundle's comments are relative to this: the same bytes whatever the working directory.
    absWorkingDir: REPO_ROOT,
    entryPoints: ['cli/kubectl-pvshift.ts'],
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'esm',
    write: false,
    outfile: outFile,
    logLevel: 'warning',
    // The CommonJS dependencies bundled in (ws, node-fetch, js-yaml...) call
    // require('http') and the like; esbuild's ESM output routes those through a
    // `require` it expects in scope, and an ES module has none.
    banner: {
      js: "import { createRequire as __pvshiftCreateRequire } from 'node:module'; const require = __pvshiftCreateRequire(import.meta.url);",
    },
    // tr46 and whatwg-url (under node-fetch) require('punycode'), which is Node's
    // deprecated core module, not the npm package: Node 21+ warns (DEP0040) on every
    // run when the caller is outside node_modules, as bundled code is. The npm
    // package has the same API.
    alias: { punycode: 'punycode/' },
  });
  const output = result.outputFiles[0];
  if (!output || result.outputFiles.length !== 1)
    throw new Error(`esbuild wrote ${result.outputFiles.length} files; expected one`);
  // The entry's own #! line, kept first by esbuild: kubectl runs the file directly.
  if (!output.text.startsWith('#!/usr/bin/env node\n'))
    throw new Error(`${PLUGIN} does not start with "#!/usr/bin/env node"; cli/kubectl-pvshift.ts lost its #! line?`);
  await mkdir(dirname(outFile), { recursive: true });
  await writeFile(outFile, output.contents);
  await chmod(outFile, 0o755);
  return { bytes: output.contents.byteLength, ms: performance.now() - started };
}

/**
 * Runs the bundle alone in an empty directory, under --pending-deprecation
 * (Node 20's way to show what newer Nodes warn about at run time), with an
 * environment of PATH only; returns the version it prints.
 */
async function checkRunsAlone(bundlePath: string, expectedVersion: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'pvshift-plugin-check-'));
  try {
    const file = join(dir, PLUGIN);
    await copyFile(bundlePath, file);
    const env = { PATH: process.env.PATH ?? '', NODE_OPTIONS: '--pending-deprecation' };
    const run = async (args: string[]) => {
      const { stdout, stderr } = await execFileAsync(file, args, { cwd: dir, env });
      if (stderr) throw new Error(`${PLUGIN} ${args.join(' ')} wrote to stderr:\n${stderr}`);
      return stdout;
    };
    const version = (await run(['version'])).trim();
    if (version !== `${PLUGIN} ${expectedVersion}`) {
      throw new Error(
        `${PLUGIN} version prints "${version}", but package.json says ${expectedVersion}; update VERSION in cli/main.ts`,
      );
    }
    if (!(await run(['--help'])).includes('kubectl pvshift COMMAND'))
      throw new Error(`${PLUGIN} --help does not print the usage`);
    return version;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

interface TarEntry {
  name: string;
  mode: number;
  data: Buffer;
}

/**
 * A ustar archive, gzipped, that is the same bytes for the same inputs: owner
 * root, mtime SOURCE_DATE_EPOCH (else 0), no host names or times in it. So
 * anyone can rebuild a release and compare its sha256 with the manifest's.
 */
function tarGz(entries: TarEntry[], mtime: number): Buffer {
  const blocks: Buffer[] = [];
  for (const entry of entries) {
    const header = Buffer.alloc(512);
    const field = (offset: number, length: number, value: string) => header.write(value, offset, length, 'ascii');
    const octal = (offset: number, length: number, value: number) =>
      field(offset, length, `${value.toString(8).padStart(length - 1, '0')}\0`);
    if (Buffer.byteLength(entry.name) > 100) throw new Error(`tar entry name too long: ${entry.name}`);
    field(0, 100, entry.name);
    octal(100, 8, entry.mode);
    octal(108, 8, 0);
    octal(116, 8, 0);
    octal(124, 12, entry.data.byteLength);
    octal(136, 12, mtime);
    field(148, 8, ' '.repeat(8)); // the checksum counts its own field as spaces
    field(156, 1, '0');
    field(257, 6, 'ustar\0');
    field(263, 2, '00');
    field(265, 32, 'root');
    field(297, 32, 'root');
    let sum = 0;
    for (const byte of header) sum += byte;
    field(148, 8, `${sum.toString(8).padStart(6, '0')}\0 `);
    blocks.push(header, entry.data, Buffer.alloc((512 - (entry.data.byteLength % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024)); // two zero blocks end the archive
  const gz = gzipSync(Buffer.concat(blocks), { level: 9 });
  // zlib writes the building OS into the header (3 on Unix, 19 on macOS); not in
  // the CRC, so pinning it keeps the bytes the same wherever the release is built.
  gz[9] = 3;
  return gz;
}

function renderManifest(template: string, values: Record<string, string>): string {
  // The template's own header says how to render it; the manifest says where it came from.
  const body = template.replace(/^(#.*\n)+/, '');
  const rendered = body.replace(/\{\{(\w+)\}\}/g, (whole, key: string) => {
    const value = values[key];
    if (value === undefined) throw new Error(`${relative(REPO_ROOT, TEMPLATE)}: unknown placeholder ${whole}`);
    return value;
  });
  return `# Generated by hack/bundle-plugin.ts --krew from pvshift.yaml.tmpl; edit the template.\n${rendered}`;
}

interface KrewManifest {
  metadata?: { name?: string };
  spec?: { version?: string; platforms?: { uri?: string; sha256?: string; bin?: string }[] };
}

async function packKrew(bundlePath: string, outDir: string, manifestPath: string, pkg: PackageJson): Promise<void> {
  const entries: TarEntry[] = [{ name: PLUGIN, mode: 0o755, data: await readFile(bundlePath) }];
  const license = join(REPO_ROOT, 'LICENSE');
  if (existsSync(license)) entries.push({ name: 'LICENSE', mode: 0o644, data: await readFile(license) });
  else
    console.warn(
      `warning: no LICENSE at the repository root, so the archive holds only ${PLUGIN}; krew-index wants the license in the archive`,
    );
  const mtime = Number(process.env.SOURCE_DATE_EPOCH ?? 0);
  if (!Number.isInteger(mtime) || mtime < 0)
    throw new Error(`SOURCE_DATE_EPOCH must be whole seconds, not "${process.env.SOURCE_DATE_EPOCH}"`);
  const archive = tarGz(entries, mtime);
  const archiveName = `pvshift-kubectl-plugin-v${pkg.version}.tar.gz`;
  const archivePath = join(outDir, archiveName);
  await writeFile(archivePath, archive);
  const sha256 = createHash('sha256').update(archive).digest('hex');
  const homepage = (pkg.homepage ?? DEFAULT_HOMEPAGE).replace(/\/+$/, '');
  const uri = `${homepage}/releases/download/v${pkg.version}/${archiveName}`;
  const manifest = renderManifest(await readFile(TEMPLATE, 'utf8'), { version: pkg.version, homepage, uri, sha256 });
  // What krew reads: a manifest whose every platform names this archive.
  const parsed = parse(manifest) as KrewManifest;
  const platforms = parsed.spec?.platforms ?? [];
  if (
    parsed.metadata?.name !== 'pvshift' ||
    parsed.spec?.version !== `v${pkg.version}` ||
    platforms.length === 0 ||
    platforms.some((p) => p.uri !== uri || p.sha256 !== sha256 || p.bin !== PLUGIN)
  ) {
    throw new Error(
      `${relative(REPO_ROOT, TEMPLATE)} does not render to a manifest of plugin pvshift v${pkg.version} whose every platform has the archive's uri, sha256 and bin ${PLUGIN}`,
    );
  }
  await mkdir(dirname(manifestPath), { recursive: true });
  await writeFile(manifestPath, manifest);
  console.log(
    `${shown(archivePath)}: ${kib(archive.byteLength)} (${entries.map((e) => e.name).join(', ')}), sha256 ${sha256}`,
  );
  console.log(`${shown(manifestPath)}: uri ${uri}`);
}

/** A path as the user would type it: relative inside the working directory, else absolute. */
function shown(path: string): string {
  const rel = relative(process.cwd(), path);
  return rel.startsWith('..') ? path : rel;
}

function kib(bytes: number): string {
  return bytes >= 1 << 20 ? `${(bytes / (1 << 20)).toFixed(2)} MiB` : `${(bytes / 1024).toFixed(0)} KiB`;
}

const { values: flags } = parseArgs({
  options: {
    krew: { type: 'boolean', default: false },
    'out-dir': { type: 'string', default: join(REPO_ROOT, 'dist') },
    manifest: { type: 'string', default: join(REPO_ROOT, 'plugins/krew/pvshift.yaml') },
  },
});
const pkg = JSON.parse(await readFile(join(REPO_ROOT, 'package.json'), 'utf8')) as PackageJson;
const bundlePath = join(flags['out-dir'], PLUGIN);
const { bytes, ms } = await bundle(bundlePath);
const version = await checkRunsAlone(bundlePath, pkg.version);
console.log(
  `${shown(bundlePath)}: ${kib(bytes)} (${bytes} bytes, mode ${((await stat(bundlePath)).mode & 0o777).toString(8)}) in ${(ms / 1000).toFixed(1)} s; runs alone: ${version}`,
);
if (flags.krew) await packKrew(bundlePath, flags['out-dir'], flags.manifest, pkg);
