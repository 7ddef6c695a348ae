// `npm run bench:migration`: the figures of a migration on the local cluster.
//   - control-plane overhead: an empty volume, pod recreated to pod Running;
//   - 1 GiB of mixed data without pre-sync and with it (a 16 MiB change between):
//     pod recreated to pod Running, the recorded downtime, and copy throughput.
// A script, not a test: it prints figures. Copies run at full speed.
//   npx tsx hack/bench-migration.ts [--data-mib 1024]
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { V1PersistentVolume, V1PersistentVolumeClaim, V1Pod } from '@kubernetes/client-node';
import { installPvshift, startLocalCluster, waitFor } from '../cluster/index.js';
import { paths, type Kube } from '../src/kube.js';
import { formatBytes } from '../src/quantity.js';
import type { VolumeMigration } from '../src/volume-migration.js';

const { values } = parseArgs({ options: { 'data-mib': { type: 'string', default: '1024' } } });
const dataMiB = Number(values['data-mib']);

/** 70% in 64 MiB files, 30% in 16 KiB files: a database next to its many small files. */
function fill(dir: string, mib: number): void {
  const bigCount = Math.max(1, Math.round((mib * 0.7) / 64));
  for (let i = 0; i < bigCount; i++) fs.writeFileSync(path.join(dir, `big-${i}`), randomBytes(64 * 1024 * 1024));
  const small = Math.round((mib * 0.3 * 1024) / 16);
  for (let i = 0; i < small; i++) {
    const sub = path.join(dir, 'small', String(i % 100));
    if (i < 100) fs.mkdirSync(sub, { recursive: true });
    fs.writeFileSync(path.join(sub, `f-${i}`), randomBytes(16 * 1024));
  }
}

interface Figures {
  scenario: string;
  podBackSeconds: number;
  downtimeSeconds: number;
  copies: string;
}

async function scenario(kube: Kube, ns: string, name: string, mib: number, preSync: boolean): Promise<Figures> {
  const claimName = `data-${name}-0`;
  await kube.create(paths.statefulSets(ns), {
    apiVersion: 'apps/v1',
    kind: 'StatefulSet',
    metadata: { name },
    spec: {
      serviceName: name,
      replicas: 1,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name } },
        spec: {
          terminationGracePeriodSeconds: 1,
          containers: [{ name: 'app', image: 'app:1', volumeMounts: [{ name: 'data', mountPath: '/data' }] }],
        },
      },
      volumeClaimTemplates: [
        {
          metadata: { name: 'data' },
          spec: {
            accessModes: ['ReadWriteOnce'],
            storageClassName: 'standard',
            resources: { requests: { storage: '4Gi' } },
          },
        },
      ],
    },
  });
  const pod = await waitFor(`${name}-0 Running`, async () => {
    const p = await kube.get<V1Pod>(paths.pods(ns, `${name}-0`));
    return p?.status?.phase === 'Running' ? p : undefined;
  });
  const claim = await waitFor('claim Bound', async () => {
    const c = await kube.get<V1PersistentVolumeClaim>(paths.claims(ns, claimName));
    return c?.status?.phase === 'Bound' ? c : undefined;
  });
  const dir = (await kube.get<V1PersistentVolume>(paths.volumes(claim.spec?.volumeName)))!.spec!.hostPath!.path;
  if (mib > 0) fill(dir, mib);
  await kube.create(paths.migrations(ns), {
    apiVersion: 'pvshift.io/v1alpha1',
    kind: 'VolumeMigration',
    metadata: { name, namespace: ns },
    spec: { claimName, targetStorageClassName: 'fast', preSync },
  });
  await waitFor(
    'WaitingForCutover',
    async () =>
      (await kube.get<VolumeMigration>(paths.migrations(ns, name)))?.status?.phase === 'WaitingForCutover'
        ? true
        : undefined,
    1_800_000,
    250,
  );
  if (mib > 0 && preSync) fs.writeFileSync(path.join(dir, 'changed-after-presync'), randomBytes(16 * 1024 * 1024));
  const start = Date.now();
  await kube.delete(paths.pods(ns, `${name}-0`));
  await waitFor(
    'pod Running again',
    async () => {
      const p = await kube.get<V1Pod>(paths.pods(ns, `${name}-0`));
      return p && p.metadata?.uid !== pod.metadata?.uid && p.status?.phase === 'Running' ? true : undefined;
    },
    1_800_000,
    100,
  );
  const podBackSeconds = (Date.now() - start) / 1000;
  const m = await waitFor('Succeeded', async () => {
    const x = await kube.get<VolumeMigration>(paths.migrations(ns, name));
    return x?.status?.phase === 'Succeeded' ? x : undefined;
  });
  const copies = (m.status?.copies ?? [])
    .map(
      (c) =>
        `${c.pass}: ${formatBytes(c.bytesTransferred)} in ${c.seconds.toFixed(1)} s = ${c.seconds > 0 ? formatBytes(c.bytesTransferred / c.seconds) : '-'}/s`,
    )
    .join('; ');
  return {
    scenario: `${mib ? formatBytes(mib * 1024 * 1024) : 'empty'}, ${preSync ? 'pre-sync' : 'no pre-sync'}`,
    podBackSeconds,
    downtimeSeconds: m.status?.downtimeSeconds ?? NaN,
    copies,
  };
}

const cluster = await startLocalCluster();
try {
  const pvshift = await (await installPvshift(cluster)).start();
  await cluster.kube.create(paths.namespaces(), { metadata: { name: 'bench' } });
  await waitFor('namespace ready', () => cluster.kube.get(paths.serviceAccounts('bench', 'default')));
  const results: Figures[] = [];
  results.push(await scenario(cluster.kube, 'bench', 'empty', 0, true));
  results.push(await scenario(cluster.kube, 'bench', 'cold', dataMiB, false));
  results.push(await scenario(cluster.kube, 'bench', 'warm', dataMiB, true));
  console.log('\nscenario                   | pod recreated -> Running | downtime recorded | copies');
  console.log('---------------------------|--------------------------|-------------------|-------');
  for (const r of results)
    console.log(
      `${r.scenario.padEnd(27)}| ${r.podBackSeconds.toFixed(1).padStart(22)} s | ${r.downtimeSeconds.toFixed(1).padStart(15)} s | ${r.copies}`,
    );
  await pvshift.stop();
} finally {
  await cluster.stop();
}
