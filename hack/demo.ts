// `npm run demo`: pvshift's main job on the local cluster. A StatefulSet whose
// volume holds real data on `standard` is moved to `fast` (WaitForFirstConsumer):
// annotate the claim, watch the pre-sync, recreate the pod as a rollout would,
// watch the cutover, and compare the old and the new volume file by file.
//
//   npm run demo -- [--data-mib N] [--bandwidth MIBPS] [--keep]
//     --data-mib N      data written into the volume (default 256)
//     --bandwidth MIBPS throttle copies so progress can be watched (default 32; 0 = full speed)
//     --keep            leave the cluster running at the end (Ctrl-C stops it)
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { V1PersistentVolume, V1PersistentVolumeClaim, V1Pod } from '@kubernetes/client-node';
import { installPvshift, startLocalCluster, waitFor, type LocalCluster } from '../cluster/index.js';
import { paths, type Kube } from '../src/kube.js';
import { ANNOTATION_TARGET_CLASS } from '../src/names.js';
import { formatBytes } from '../src/quantity.js';
import type { VolumeMigration } from '../src/volume-migration.js';

const { values } = parseArgs({
  options: {
    'data-mib': { type: 'string', default: '256' },
    bandwidth: { type: 'string', default: '32' },
    keep: { type: 'boolean', default: false },
  },
});
const dataMiB = Number(values['data-mib']);
const bandwidthMiB = Number(values.bandwidth);
if (!Number.isFinite(dataMiB) || dataMiB < 1 || !Number.isFinite(bandwidthMiB) || bandwidthMiB < 0) {
  console.error('demo: --data-mib must be at least 1 and --bandwidth at least 0');
  process.exit(2);
}
if (process.getuid?.() !== 0) {
  console.error(
    'demo: run as root: the fake kubelet runs copy pods in their own mount namespaces (unshare -m), and keeps file ownership as it is',
  );
  process.exit(2);
}

const t0 = Date.now();
const say = (line: string) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${line}`);
const NS = 'demo';
const CLAIM = 'data-db-0';

/** What a database volume looks like: a few big segment files, many small ones, links, owners. */
function writeData(dir: string, mib: number): { files: number; bytes: number } {
  let files = 0;
  let bytes = 0;
  const write = (rel: string, size: number) => {
    const file = path.join(dir, rel);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, randomBytes(size));
    files += 1;
    bytes += size;
  };
  const big = Math.floor((mib * 0.8) / 16);
  for (let i = 0; i < 16; i++) write(`base/segment-${String(i).padStart(3, '0')}`, big * 1024 * 1024);
  const small = Math.max(1, Math.floor((mib * 0.2 * 1024) / 8)); // 8 KiB files: the other 20%
  for (let i = 0; i < small; i++) write(`pages/${String(i % 64).padStart(2, '0')}/page-${i}`, 8192);
  fs.writeFileSync(path.join(dir, 'postgresql.conf'), 'shared_buffers = 128MB\n');
  fs.chownSync(path.join(dir, 'postgresql.conf'), 999, 999);
  fs.chmodSync(path.join(dir, 'postgresql.conf'), 0o600);
  fs.symlinkSync('base/segment-000', path.join(dir, 'current'));
  fs.linkSync(path.join(dir, 'postgresql.conf'), path.join(dir, 'postgresql.conf.bak'));
  execFileSync('setfattr', ['-n', 'user.checksum', '-v', 'sha256', path.join(dir, 'postgresql.conf')]);
  return { files: files + 3, bytes };
}

interface Entry {
  type: string;
  mode: number;
  uid: number;
  gid: number;
  size: bigint;
  mtimeNs: bigint;
  nlink: bigint;
  link?: string;
}

/** Walks a tree with lstat (nanosecond times, owners, modes, links): the demo's own check, independent of the runner. */
function listTree(root: string): Map<string, Entry> {
  const out = new Map<string, Entry>();
  const visit = (rel: string) => {
    const abs = path.join(root, rel);
    const st = fs.lstatSync(abs, { bigint: true });
    const type = st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'link' : st.isFile() ? 'file' : 'other';
    out.set(rel, {
      type,
      mode: Number(st.mode),
      uid: Number(st.uid),
      gid: Number(st.gid),
      size: type === 'file' ? st.size : 0n,
      mtimeNs: st.mtimeNs,
      nlink: type === 'dir' ? 0n : st.nlink,
      ...(type === 'link' ? { link: fs.readlinkSync(abs) } : {}),
    });
    if (type === 'dir') for (const name of fs.readdirSync(abs)) visit(path.join(rel, name));
  };
  visit('.');
  return out;
}

function compareTrees(a: string, b: string): string[] {
  const left = listTree(a);
  const right = listTree(b);
  const differences: string[] = [];
  for (const [rel, entry] of left) {
    const other = right.get(rel);
    if (!other) differences.push(`${rel}: missing in the new volume`);
    else if (
      JSON.stringify(entry, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)) !==
      JSON.stringify(other, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))
    ) {
      differences.push(`${rel}: metadata differs`);
    }
  }
  for (const rel of right.keys()) if (!left.has(rel)) differences.push(`${rel}: only in the new volume`);
  // Contents: one recursive diff of every file (symlinks compared as links).
  try {
    execFileSync('diff', ['-rq', '--no-dereference', a, b], {
      stdio: ['ignore', 'pipe', 'pipe'],
      maxBuffer: 64 * 1024 * 1024,
    });
  } catch (e: unknown) {
    const out = String((e as { stdout?: Buffer }).stdout ?? '');
    differences.push(...out.split('\n').filter(Boolean).slice(0, 20));
  }
  return differences;
}

async function migrationOf(kube: Kube): Promise<VolumeMigration | undefined> {
  return kube.get<VolumeMigration>(paths.migrations(NS, CLAIM));
}

/** Prints phase changes and copy progress until `until` holds. */
let lastPhase = '';
async function follow(kube: Kube, until: (m: VolumeMigration) => boolean): Promise<VolumeMigration> {
  let lastProgress = '';
  for (;;) {
    const m = await migrationOf(kube);
    if (m) {
      const phase = m.status?.phase ?? 'Pending';
      if (phase !== lastPhase) {
        say(`phase ${phase}${m.status?.message ? `: ${m.status.message}` : ''}`);
        lastPhase = phase;
      }
      const p = m.status?.progress;
      const text = m.status?.progressText;
      if (p && text && text !== lastProgress && ['PreSyncing', 'Populating'].includes(phase)) {
        const rate = p.bytesPerSecond > 0 ? `${formatBytes(p.bytesPerSecond)}/s` : '';
        const eta =
          typeof p.etaSeconds === 'number' && p.bytesDone < p.bytesTotal ? `, ETA ${Math.round(p.etaSeconds)} s` : '';
        say(`  copying ${text}, ${p.filesDone}/${p.filesTotal} files ${rate}${eta}`);
        lastProgress = text;
      }
      if (until(m)) return m;
      if (['Failed', 'RolledBack', 'Aborted'].includes(phase))
        throw new Error(`migration ended ${phase}: ${m.status?.message}`);
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

async function run(cluster: LocalCluster): Promise<void> {
  const { kube } = cluster;
  say('installing pvshift (CRD, webhook configuration) and starting it (webhook + controller)');
  const installation = await installPvshift(cluster);
  const pvshift = await installation.start(bandwidthMiB > 0 ? [`--copy-bandwidth-limit=${bandwidthMiB * 1024}`] : []);
  try {
    await kube.create(paths.namespaces(), { metadata: { name: NS } });
    await waitFor('the demo namespace ready', () => kube.get(paths.serviceAccounts(NS, 'default')));
    say('creating StatefulSet demo/db with a 2Gi claim on the `standard` class');
    await kube.create(paths.statefulSets(NS), {
      apiVersion: 'apps/v1',
      kind: 'StatefulSet',
      metadata: { name: 'db' },
      spec: {
        serviceName: 'db',
        replicas: 1,
        selector: { matchLabels: { app: 'db' } },
        template: {
          metadata: { labels: { app: 'db' } },
          spec: {
            terminationGracePeriodSeconds: 1,
            containers: [
              {
                name: 'postgres',
                image: 'postgres:17',
                volumeMounts: [{ name: 'data', mountPath: '/var/lib/postgresql/data' }],
              },
            ],
          },
        },
        volumeClaimTemplates: [
          {
            metadata: { name: 'data' },
            spec: {
              accessModes: ['ReadWriteOnce'],
              storageClassName: 'standard',
              resources: { requests: { storage: '2Gi' } },
            },
          },
        ],
      },
    });
    const pod = await waitFor('db-0 Running', async () => {
      const p = await kube.get<V1Pod>(paths.pods(NS, 'db-0'));
      return p?.status?.phase === 'Running' ? p : undefined;
    });
    const claim = await waitFor('the claim Bound', async () => {
      const c = await kube.get<V1PersistentVolumeClaim>(paths.claims(NS, CLAIM));
      return c?.status?.phase === 'Bound' ? c : undefined;
    });
    const oldPv = (await kube.get<V1PersistentVolume>(paths.volumes(claim.spec?.volumeName)))!;
    const oldDir = oldPv.spec!.hostPath!.path;
    say(`db-0 runs on ${pod.spec?.nodeName}; its volume ${oldPv.metadata?.name} is ${oldDir}`);
    const written = writeData(oldDir, dataMiB);
    say(`wrote ${written.files} files, ${formatBytes(written.bytes)} into it (owners, modes, links, xattrs included)`);

    say(`annotating the claim: ${ANNOTATION_TARGET_CLASS}=fast`);
    await kube.patch(paths.claims(NS, CLAIM), { metadata: { annotations: { [ANNOTATION_TARGET_CLASS]: 'fast' } } });
    await follow(kube, (m) => m.status?.phase === 'WaitingForCutover');
    // The application keeps writing after the pre-sync: the final copy moves only this.
    fs.writeFileSync(path.join(oldDir, 'pg_wal-000000010000000000000002'), randomBytes(4 * 1024 * 1024));
    fs.appendFileSync(path.join(oldDir, 'postgresql.conf'), 'max_connections = 200\n');
    say(
      'pre-sync done while the app kept running (and wrote 4 MiB more since); now recreating db-0, as a rollout or a node drain would',
    );
    const recreatedAt = Date.now();
    await kube.delete(paths.pods(NS, 'db-0'));
    const done = await follow(kube, (m) => m.status?.phase === 'Succeeded');
    const running = await waitFor('db-0 Running on the new volume', async () => {
      const p = await kube.get<V1Pod>(paths.pods(NS, 'db-0'));
      return p && p.metadata?.uid !== pod.metadata?.uid && p.status?.phase === 'Running' ? p : undefined;
    });
    const podBackSeconds = (Date.now() - recreatedAt) / 1000;
    const newClaim = (await kube.get<V1PersistentVolumeClaim>(paths.claims(NS, CLAIM)))!;
    const newPv = (await kube.get<V1PersistentVolume>(paths.volumes(newClaim.spec?.volumeName)))!;
    const old = (await kube.get<V1PersistentVolume>(paths.volumes(oldPv.metadata?.name)))!;
    say(`comparing ${oldDir} and ${newPv.spec!.hostPath!.path} file by file`);
    const differences = compareTrees(oldDir, newPv.spec!.hostPath!.path);

    const copies = done.status?.copies ?? [];
    console.log('\nSummary');
    console.log(
      `  claim            ${NS}/${CLAIM}: ${claim.spec?.storageClassName} -> ${newClaim.spec?.storageClassName} (${newClaim.status?.phase})`,
    );
    console.log(
      `  new volume       ${newPv.metadata?.name} on ${running.spec?.nodeName}, reclaim ${newPv.spec?.persistentVolumeReclaimPolicy}`,
    );
    console.log(
      `  old volume       ${old.metadata?.name}: ${old.status?.phase}, reclaim ${old.spec?.persistentVolumeReclaimPolicy} (kept until you delete it)`,
    );
    for (const c of copies) {
      const rate = c.seconds > 0 ? `${formatBytes(c.bytesTransferred / c.seconds)}/s` : '-';
      console.log(
        `  ${c.pass === 'presync' ? 'pre-sync copy ' : 'final copy    '}   ${c.files} files, ${formatBytes(c.bytes)}; moved ${formatBytes(c.bytesTransferred)} in ${c.seconds.toFixed(1)} s (${rate}); verified: ${c.verified}`,
      );
    }
    console.log(
      `  downtime         ${done.status?.downtimeSeconds?.toFixed(1)} s (pod gated to gate lifted); pod recreated to Running: ${podBackSeconds.toFixed(1)} s`,
    );
    console.log(
      `  data compared    ${differences.length === 0 ? `identical: ${listTree(oldDir).size} entries, contents, owners, modes, nanosecond mtimes, links` : `${differences.length} DIFFERENCES:\n    ${differences.slice(0, 20).join('\n    ')}`}`,
    );
    if (bandwidthMiB > 0)
      console.log(
        `  (copies were throttled to ${bandwidthMiB} MiB/s so progress can be watched; --bandwidth 0 for full speed)`,
      );
    if (differences.length) process.exitCode = 1;
    if (values.keep) {
      say(
        `cluster left running: export KUBECONFIG=${cluster.kubeconfigPath}; kubectl -n ${NS} get volumemigrations,pvc,pods; Ctrl-C to stop`,
      );
      await new Promise(() => {});
    }
  } finally {
    await pvshift.stop();
  }
}

say(
  'starting the local cluster (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, fake kubelet, hostPath provisioner)',
);
const cluster = await startLocalCluster({ nodes: ['node-1', 'node-2'], log: say });
try {
  await run(cluster);
} catch (e: unknown) {
  console.error(`demo failed: ${e instanceof Error ? e.message : String(e)}`);
  process.exitCode = 1;
} finally {
  say('stopping the local cluster');
  await cluster.stop();
}
