// Installs pvshift's CRDs from the chart (the one copy of their definition) and
// waits until the API server serves them.
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { KubeConfig } from '@kubernetes/client-node';
import { parse } from 'yaml';
import { ApiError, Kube, paths } from '../src/kube.js';
import { REPO_ROOT } from './binaries.js';
import { waitFor } from './processes.js';

interface Crd {
  metadata: { name: string; resourceVersion?: string };
  status?: { conditions?: { type: string; status: string }[] };
}

export async function installVolumeMigrationCrd(kubeConfig: KubeConfig): Promise<void> {
  const kube = new Kube(kubeConfig);
  const dir = join(REPO_ROOT, 'charts/pvshift/crds');
  try {
    for (const file of (await readdir(dir)).filter((f) => f.endsWith('.yaml'))) {
      const crd = parse(await readFile(join(dir, file), 'utf8')) as Crd;
      try {
        await kube.create(paths.crds(), crd);
      } catch (e: unknown) {
        if (!(e instanceof ApiError && e.code === 409)) throw e;
        const current = await kube.get<Crd>(paths.crds(crd.metadata.name));
        await kube.replace(paths.crds(crd.metadata.name), {
          ...crd,
          metadata: { ...crd.metadata, resourceVersion: current?.metadata.resourceVersion },
        });
      }
      await waitFor(`CRD ${crd.metadata.name} Established`, async () => {
        const current = await kube.get<Crd>(paths.crds(crd.metadata.name));
        return current?.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True')
          ? true
          : undefined;
      });
    }
  } finally {
    kube.close();
  }
}
