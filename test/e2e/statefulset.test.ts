// The real-node tier, as a user meets pvshift: `helm install` of the chart with
// the image built here from the Dockerfile, on a real kubelet with containerd
// and runc, volumes on real ext4 and xfs filesystems (loop devices), then a
// 3-replica StatefulSet of real containers moved from ext4 to xfs by annotating
// its claims and `kubectl rollout restart`, followed with `kubectl pvshift`
// found through kubectl's plugin discovery.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import t from 'tap';
import type { V1Deployment, V1MutatingWebhookConfiguration, V1Pod } from '@kubernetes/client-node';
import { paths } from '../../src/kube.js';
import { LABEL_PRIVILEGED_COPY, migrationNameForClaim } from '../../src/names.js';
import type { VolumeMigration } from '../../src/volume-migration.js';
import { freshNamespace, waitFor } from '../helpers/cluster.js';
import { waitForPhase } from '../helpers/migration.js';
import { snapshotTree } from '../runner/fixtures/trees.js';
import {
  diagnoseOnFailure,
  installChart,
  kubectl,
  kubectlOk,
  PVSHIFT_NAMESPACE,
  realClusterFor,
  statefulSet,
  volumeOfClaim,
  waitForRollout,
} from './helpers.js';

t.setTimeout(30 * 60_000);
const cluster = await realClusterFor(t);
const { kube } = cluster;

const fsType = (path: string): string => execFileSync('findmnt', ['-no', 'FSTYPE', path], { encoding: 'utf8' }).trim();
// Every xattr namespace the kernel lets root read: user, trusted, security.
const compare = (root: string) => snapshotTree(root, { xattrMatch: '-', skip: ['log'] });

t.test('helm install: pods Ready under the chart, the webhook answers the API server', async (t) => {
  const install = await installChart(cluster);
  t.equal(install.code, 0, install.stderr.trim());
  t.match(install.stdout, /STATUS: deployed/);
  const deployment = await kube.get<V1Deployment>(`/apis/apps/v1/namespaces/${PVSHIFT_NAMESPACE}/deployments/pvshift`);
  t.equal(deployment?.status?.readyReplicas, deployment?.spec?.replicas, 'every pvshift pod Ready (helm --wait)');
  const pods = (await kube.get<{ items: V1Pod[] }>(paths.pods(PVSHIFT_NAMESPACE)))?.items ?? [];
  t.ok(pods.length >= 1, 'pvshift pods run');
  for (const pod of pods) {
    t.equal(pod.spec?.serviceAccountName, 'pvshift', `${pod.metadata?.name}: the chart's ServiceAccount`);
    t.equal(
      pod.status?.containerStatuses?.[0]?.image,
      cluster.images.pvshift.ref,
      `${pod.metadata?.name}: the image built here`,
    );
    t.ok(
      pod.status?.containerStatuses?.every((c) => c.ready),
      `${pod.metadata?.name}: Ready in a real container`,
    );
  }
  const webhooks = await kube.get<V1MutatingWebhookConfiguration>(
    '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/pvshift',
  );
  t.ok(
    webhooks?.webhooks?.every((w) => (w.clientConfig.caBundle ?? '').length > 0),
    'pvshift patched its CA into the webhook configuration',
  );
});

t.test(
  'a 3-replica StatefulSet moves from ext4 to xfs, one replica at a time, through kubectl rollout restart',
  async (t) => {
    const ns = await freshNamespace(kube, 'db');
    diagnoseOnFailure(t, cluster, () => ns);
    // The namespace opt-in gives copy pods CAP_SYS_ADMIN: trusted.* xattrs too.
    await kube.patch(paths.namespaces(ns), { metadata: { labels: { [LABEL_PRIVILEGED_COPY]: 'true' } } }, 'merge');
    await kube.create(
      `/apis/apps/v1/namespaces/${ns}/statefulsets`,
      statefulSet(cluster.images.app.ref, 'db', {
        replicas: 3,
        storageClass: 'standard',
        size: '512Mi',
        privileged: true,
        megabytes: 32,
      }),
    );
    await waitForRollout(kube, ns, 'db');
    const claims = ['data-db-0', 'data-db-1', 'data-db-2'];
    const sources = new Map<string, string>();
    for (const claim of claims) {
      const { pv, path } = await volumeOfClaim(kube, ns, claim);
      t.equal(fsType(path), 'ext4', `${claim} starts on ext4 (${pv.metadata?.name})`);
      sources.set(claim, pv.metadata!.name!);
    }

    await kubectlOk(t, cluster, ['annotate', 'pvc', '-n', ns, ...claims, 'pvshift.io/target-storage-class=fast']);
    for (const claim of claims)
      await waitForPhase(kube, ns, migrationNameForClaim(claim), ['WaitingForCutover'], 300_000);

    // The webhook answers the API server through its Service: a pod that mounts a
    // claim waiting for cutover is gated (server-side dry run: nothing is made).
    const probe = await kube.create<V1Pod>(
      paths.pods(ns),
      {
        metadata: { name: 'probe' },
        spec: {
          containers: [{ name: 'c', image: cluster.images.app.ref }],
          volumes: [{ name: 'd', persistentVolumeClaim: { claimName: 'data-db-0' } }],
        },
      },
      { dryRun: 'All' },
    );
    t.same(
      probe.spec?.schedulingGates?.map((g) => g.name),
      ['pvshift.io/migration'],
      'the webhook gated a pod of a claim waiting for cutover',
    );

    const status = await kubectlOk(t, cluster, ['pvshift', 'status', '-n', ns]);
    for (const claim of claims) t.match(status, claim, `kubectl pvshift status lists ${claim}`);

    await kubectlOk(t, cluster, ['rollout', 'restart', 'statefulset/db', '-n', ns]);
    const done: VolumeMigration[] = [];
    for (const claim of ['data-db-2', 'data-db-1', 'data-db-0'])
      done.push(await waitForPhase(kube, ns, migrationNameForClaim(claim), ['Succeeded'], 600_000));
    await waitForRollout(kube, ns, 'db');

    // In turn, highest ordinal first: each cutover began after the previous one finished.
    for (let i = 1; i < done.length; i++) {
      const previous = done[i - 1]!;
      const current = done[i]!;
      t.ok(
        Date.parse(current.status!.cutoverStartTime!) >= Date.parse(previous.status!.completionTime!),
        `${current.spec.claimName} cut over after ${previous.spec.claimName} finished`,
      );
    }

    for (const migration of done) {
      const claim = migration.spec.claimName;
      const { pv, path } = await volumeOfClaim(kube, ns, claim);
      t.equal(pv.spec?.storageClassName, 'fast', `${claim} is on fast`);
      t.equal(fsType(path), 'xfs', `${claim} is on xfs now`);
      const source = sources.get(claim)!;
      t.equal(migration.status?.sourceVolumeName, source);
      const old = await kube.get<{ spec?: { local?: { path: string }; persistentVolumeReclaimPolicy?: string } }>(
        paths.volumes(source),
      );
      t.equal(old?.spec?.persistentVolumeReclaimPolicy, 'Retain', `${claim}: the old volume is kept`);
      const oldPath = old!.spec!.local!.path;
      t.same(
        compare(path),
        compare(oldPath),
        `${claim}: every entry, owner, mode, ns mtime, link, xattr (user, trusted, security) and ACL copied`,
      );
      const before = readFileSync(`${oldPath}/log/heartbeat`, 'utf8');
      const after = readFileSync(`${path}/log/heartbeat`, 'utf8');
      t.ok(
        before.length > 0 && after.startsWith(before),
        `${claim}: what the app wrote until it stopped is all there (${before.split('\n').length - 1} lines)`,
      );
      t.same(migration.status?.copyFidelity?.dropped, [], `${claim}: nothing dropped (privileged copy opted in)`);
      const copied = (migration.status?.copies ?? []).map(
        (c) => `${c.pass} ${(c.bytesTransferred / 1048576).toFixed(1)} MiB in ${c.seconds.toFixed(1)} s`,
      );
      t.comment(`${claim}: downtime ${migration.status?.downtimeSeconds?.toFixed(1)} s; ${copied.join('; ')}`);
      t.ok((migration.status?.downtimeSeconds ?? 0) > 0, `${claim}: downtime recorded`);
    }

    const final = await kubectl(cluster, ['pvshift', 'status', '-n', ns]);
    t.match(final.stdout, /Succeeded/, 'kubectl pvshift status shows them Succeeded');
    await waitFor('no gated pod left', async () => {
      const pods = (await kube.get<{ items: V1Pod[] }>(paths.pods(ns)))?.items ?? [];
      return pods.every((p) => !p.spec?.schedulingGates?.length) ? true : undefined;
    });

    // Through three cutovers pvshift stayed up: every recreated pod was gated (no
    // GateMissed), and neither replica was restarted by a failed probe or a lost Lease.
    const events = (await kube.get<{ items: { reason?: string; message?: string }[] }>(paths.events(ns)))?.items ?? [];
    t.same(
      events.filter((e) => e.reason === 'GateMissed').map((e) => e.message),
      [],
      'no pod got past the webhook ungated',
    );
    const replicas = (await kube.get<{ items: V1Pod[] }>(paths.pods(PVSHIFT_NAMESPACE)))?.items ?? [];
    t.same(
      replicas.map((p) => `${p.metadata?.name}: ${p.status?.containerStatuses?.[0]?.restartCount ?? '?'} restarts`),
      replicas.map((p) => `${p.metadata?.name}: 0 restarts`),
      'pvshift was never restarted',
    );
  },
);
