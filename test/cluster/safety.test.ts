// Findings of the safety review ("nothing lost, no one in"), each on the real
// control plane: a leftover migration flipping the live source to Delete, a
// failure after cutover releasing pods onto an empty claim, status used as an
// authority, copy pods Pod Security refuses, phases with no way out, a stripped
// scope label, a recreated pod waiting for a whole pre-sync, a claim deleted
// mid pre-sync, finalizers that outlive pvshift.
import { execFileSync } from 'node:child_process';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import type { V1Namespace, V1PersistentVolume, V1PersistentVolumeClaim, V1Pod } from '@kubernetes/client-node';
import { Kube, paths } from '../../src/kube.js';
import {
  ANNOTATION_MIGRATION_UID,
  LABEL_NAMESPACE_ACTIVE,
  LABEL_POD_SECURITY_ENFORCE,
  SCHEDULING_GATE,
  stagingClaimName,
} from '../../src/names.js';
import { appWithData, recreateApp } from '../helpers/app.js';
import {
  clusterFor,
  freshNamespace,
  waitFor,
  waitForClaimBound,
  waitForGone,
  waitForPodReady,
} from '../helpers/cluster.js';
import { createMigration, eventReasonsWith, migrationOf, snapshotTree, waitForPhase } from '../helpers/migration.js';
import { installPvshift } from '../helpers/pvshift.js';

const cluster = await clusterFor(t);
const { kube } = cluster;
const installation = await installPvshift(cluster);
// 4 MiB/s: a 48 MiB copy takes ~12 s, long enough to act while it runs.
const pvshift = await installation.start(['--copy-bandwidth-limit=4096']);
t.teardown(() => pvshift.stop());

const POLICY_BINDING = 'pvshift-records';
const getVolume = (name: string | undefined) => kube.get<V1PersistentVolume>(paths.volumes(name));
const isGated = (pod: V1Pod | undefined) => (pod?.spec?.schedulingGates ?? []).some((g) => g.name === SCHEDULING_GATE);

/** Samples a PV's reclaim policy every 100 ms until stopped: what a watcher of the volume would have seen. */
function samplePolicy(name: string): { stop(): Promise<string[]> } {
  const seen: string[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      const pv = await getVolume(name).catch(() => undefined);
      seen.push(pv ? (pv.spec?.persistentVolumeReclaimPolicy ?? 'unset') : 'gone');
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return seen;
    },
  };
}

t.test('a leftover duplicate never flips the live source back to Delete (items 1 and 12)', async (t) => {
  const ns = await freshNamespace(kube);
  const { pv, before } = await appWithData(kube, ns, 'data', 8);
  const sampler = samplePolicy(pv.metadata!.name!);
  await createMigration(kube, ns, 'data', { claimName: 'data', targetStorageClassName: 'fast' });
  await waitForPhase(kube, ns, 'data', ['WaitingForCutover']);
  await createMigration(kube, ns, 'again', { claimName: 'data', targetStorageClassName: 'fast' });
  await waitForPhase(kube, ns, 'again', ['Failed']);
  t.match(
    (await migrationOf(kube, ns, 'again'))?.status?.message,
    /already being migrated by VolumeMigration data/,
    'the duplicate is refused',
  );
  // Give a leftover's restore every chance to land (it landed 3 s after the refusal before).
  await new Promise((r) => setTimeout(r, 4000));
  await recreateApp(kube, ns, 'data');
  const done = await waitForPhase(kube, ns, 'data', ['Succeeded']);
  await waitForPodReady(kube, ns, 'data-app');
  await new Promise((r) => setTimeout(r, 2000));
  const seen = await sampler.stop();
  // Before the first migration retained it, the volume was Delete; from then on it must never be anything but Retain.
  const retainedFrom = seen.indexOf('Retain');
  t.ok(retainedFrom >= 0, 'the source was retained');
  t.same(
    [...new Set(seen.slice(retainedFrom))],
    ['Retain'],
    `the source PV was Retain in every one of ${seen.length - retainedFrom} samples after it was retained`,
  );
  const old = await getVolume(pv.metadata!.name);
  t.equal(old?.status?.phase, 'Released', 'the old volume is kept, Released');
  t.same(
    Object.fromEntries(snapshotTree(pv.spec!.hostPath!.path)),
    Object.fromEntries(before),
    'with the data it held',
  );
  const claim = await waitForClaimBound(kube, ns, 'data');
  const target = await getVolume(claim.spec?.volumeName);
  t.same(
    Object.fromEntries(snapshotTree(target!.spec!.hostPath!.path)),
    Object.fromEntries(before),
    'the new volume has every byte',
  );
  t.notOk(
    target?.metadata?.annotations?.[ANNOTATION_MIGRATION_UID],
    "the new volume carries no pvshift mark: it is the user's",
  );
  t.ok(done.status?.completionTime, 'the migration completed');
  const noFinalizer = (name: string) =>
    waitFor(`${name} without finalizer`, async () =>
      ((await migrationOf(kube, ns, name))?.metadata.finalizers ?? []).length === 0 ? true : undefined,
    );
  t.ok(await noFinalizer('data'), 'a Succeeded migration keeps no finalizer (item 17)');
  t.ok(await noFinalizer('again'), 'nor does the Failed duplicate');
});

t.test('a failure after cutover with no way back holds the pods and keeps the copy (item 2)', async (t) => {
  const ns = await freshNamespace(kube);
  const { pv } = await appWithData(kube, ns, 'data', 48);
  const m = await createMigration(kube, ns, 'data', {
    claimName: 'data',
    targetStorageClassName: 'fast',
    preSync: false,
  });
  await waitForPhase(kube, ns, 'data', ['WaitingForCutover']);
  await recreateApp(kube, ns, 'data');
  await waitForPhase(kube, ns, 'data', ['Populating']);
  await waitFor('the final copy under way', async () =>
    ((await migrationOf(kube, ns, 'data'))?.status?.progress?.bytesDone ?? 0) > 0 ? true : undefined,
  );
  // The source volume disappears (an administrator's mistake, a storage backend
  // failure), then the user aborts: there is nothing to roll back to.
  await kube.patch(paths.volumes(pv.metadata!.name), { metadata: { finalizers: null } });
  await kube.delete(paths.volumes(pv.metadata!.name));
  await waitForGone(kube, paths.volumes(pv.metadata!.name));
  await kube.patch(paths.migrations(ns, 'data'), { spec: { abort: true } });
  const held = await waitForPhase(kube, ns, 'data', ['Held']);
  t.match(held.status?.message, /cannot roll back.*held: pods stay gated/, 'the status says why and what holds');
  t.equal(held.spec.abort, true, 'abort stays set: it started the rollback and does not release the hold');
  await new Promise((r) => setTimeout(r, 3000));
  t.ok(
    isGated(await kube.get<V1Pod>(paths.pods(ns, 'data-app'))),
    'the app pod is still gated: it does not start on an empty claim',
  );
  const replacement = await kube.get<V1PersistentVolumeClaim>(paths.claims(ns, 'data'));
  t.notOk(
    replacement?.status?.phase === 'Bound' && replacement.spec?.storageClassName === 'standard',
    'no claim of the name was bound empty on the old class',
  );
  const staging = await waitFor('staging claim disowned', async () => {
    const c = await kube.get<V1PersistentVolumeClaim>(paths.claims(ns, stagingClaimName(m.metadata.uid!)));
    return c && (c.metadata?.ownerReferences ?? []).length === 0 ? c : undefined;
  });
  const copy = await waitFor('the copy Retain', async () => {
    const v = await getVolume(staging.spec?.volumeName);
    return v?.spec?.persistentVolumeReclaimPolicy === 'Retain' ? v : undefined;
  });
  const kept = await waitFor('keptVolumes recorded', async () => {
    const current = await migrationOf(kube, ns, 'data');
    return current?.status?.keptVolumes?.length ? current.status.keptVolumes : undefined;
  });
  t.match(kept, [{ name: copy.metadata?.name, role: 'copy' }], 'status names the kept copy');
  // Deleting the migration releases the pods; it must not collect the copy.
  await kube.delete(paths.migrations(ns, 'data'));
  await waitForGone(kube, paths.migrations(ns, 'data'));
  await waitFor('gate lifted', async () =>
    isGated(await kube.get<V1Pod>(paths.pods(ns, 'data-app'))) ? undefined : true,
  );
  await new Promise((r) => setTimeout(r, 3000));
  t.ok(await kube.get(paths.claims(ns, stagingClaimName(m.metadata.uid!))), 'the staging claim outlives its migration');
  t.equal(
    (await getVolume(copy.metadata?.name))?.spec?.persistentVolumeReclaimPolicy,
    'Retain',
    'and its volume is still Retain',
  );
});

t.test('status is not an authority: a forged sourceVolumeName takes no other volume (item 4)', async (t) => {
  const victimNs = await freshNamespace(kube, 'victim');
  const { pv: victim, before } = await appWithData(kube, victimNs, 'secrets', 1);
  const ns = await freshNamespace(kube, 'tenant');
  await appWithData(kube, ns, 'data', 1);
  // A tenant with the namespace-admin role of their namespace (real RBAC).
  await kube.create(`/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/rolebindings`, {
    metadata: { name: 'tenant-admin' },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'admin' },
    subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: 'tenant' }],
  });
  await kube.create('/apis/rbac.authorization.k8s.io/v1/clusterroles', {
    metadata: { name: `pvshift-tenant-${ns}` },
    rules: [{ apiGroups: ['pvshift.io'], resources: ['volumemigrations', 'volumemigrations/status'], verbs: ['*'] }],
  });
  await kube.create(`/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/rolebindings`, {
    metadata: { name: 'tenant-migrations' },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: `pvshift-tenant-${ns}` },
    subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: 'tenant' }],
  });
  await createMigration(kube, ns, 'data', { claimName: 'data', targetStorageClassName: 'fast', preSync: false });
  await waitForPhase(kube, ns, 'data', ['WaitingForCutover']);
  const { kubeConfig } = await cluster.kubeconfigFor('tenant');
  const tenant = new Kube(kubeConfig);
  const forged = { status: { sourceVolumeName: victim.metadata!.name! } };
  let statusWritten = true;
  try {
    await tenant.patch(`${paths.migrations(ns, 'data')}/status`, forged, 'merge');
  } catch (e: unknown) {
    statusWritten = false;
    t.comment(`the tenant's status write was refused by the API server: ${(e as Error).message}`);
  }
  if (!statusWritten) {
    // The chart's admission policy stopped the tenant. The controller must hold on
    // its own too (a cluster without the policy, or a tenant it does not cover):
    // take the policy's binding away for this test and write the forged status.
    const bindingPath = `/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings/${POLICY_BINDING}`;
    const binding = await kube.get<{ metadata: Record<string, unknown> }>(bindingPath);
    t.ok(binding, 'the chart installed its admission policy binding');
    await kube.delete(bindingPath);
    t.teardown(() =>
      kube.create('/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings', {
        ...binding,
        metadata: { name: POLICY_BINDING },
      }),
    );
    await waitFor('the policy no longer enforced', async () => {
      try {
        await kube.patch(`${paths.migrations(ns, 'data')}/status`, forged, 'merge');
        return true;
      } catch {
        return undefined;
      }
    });
  }
  await recreateApp(kube, ns, 'data');
  const failed = await waitForPhase(kube, ns, 'data', ['Failed']);
  t.match(
    failed.status?.message,
    new RegExp(`volume ${victim.metadata!.name!}.*does not carry this migration's`),
    'the migration fails and says which volume it could not prove',
  );
  await eventReasonsWith(kube, ns, 'data', 'VolumeMigration', ['VolumeNotOwned']);
  const after = await getVolume(victim.metadata!.name);
  t.same(after?.spec?.claimRef?.namespace, victimNs, "the victim's volume is still claimed in its namespace");
  t.equal(after?.spec?.claimRef?.name, 'secrets');
  t.equal(
    after?.spec?.persistentVolumeReclaimPolicy,
    victim.spec?.persistentVolumeReclaimPolicy,
    'its policy untouched',
  );
  t.notOk(after?.metadata?.annotations?.[ANNOTATION_MIGRATION_UID], 'and no pvshift mark on it');
  t.same(
    Object.fromEntries(snapshotTree(victim.spec!.hostPath!.path)),
    Object.fromEntries(before),
    'its data untouched',
  );
  t.equal(
    (await waitForClaimBound(kube, victimNs, 'secrets')).spec?.volumeName,
    victim.metadata?.name,
    "the victim's claim is still bound to it",
  );
});

async function labelNamespace(ns: string, labels: Record<string, string | null>): Promise<void> {
  await kube.patch(paths.namespaces(ns), { metadata: { labels } });
}

t.test('copy pods are built for the Pod Security level, and a refusal ends the migration (item 7)', (t) => {
  t.test('baseline: admitted, and what it costs is said before the copy', async (t) => {
    const ns = await freshNamespace(kube);
    await labelNamespace(ns, { [LABEL_POD_SECURITY_ENFORCE]: 'baseline' });
    const { before } = await appWithData(kube, ns, 'data', 2);
    await createMigration(kube, ns, 'data', { claimName: 'data', targetStorageClassName: 'fast' });
    const waiting = await waitForPhase(kube, ns, 'data', ['WaitingForCutover']);
    t.same(
      waiting.status?.copyFidelity,
      { level: 'baseline', privileged: false, dropped: ['trusted xattrs', 'security xattrs'] },
      'the status records what the level costs',
    );
    const validated = waiting.status?.conditions?.find((c) => c.type === 'Validated');
    t.match(
      validated?.message,
      /not copied at Pod Security level baseline: trusted xattrs, security xattrs/,
      'the Validated condition says it',
    );
    await recreateApp(kube, ns, 'data');
    await waitForPhase(kube, ns, 'data', ['Succeeded']);
    const claim = await waitForClaimBound(kube, ns, 'data');
    const target = await getVolume(claim.spec?.volumeName);
    t.same(
      Object.fromEntries(snapshotTree(target!.spec!.hostPath!.path)),
      Object.fromEntries(before),
      'the copy pods were admitted and copied everything (no trusted.* xattrs in this tree)',
    );
  });
  t.test('restricted: refused at validation, naming the label and the opt-in', async (t) => {
    const ns = await freshNamespace(kube);
    const { pv } = await appWithData(kube, ns, 'data', 1);
    await labelNamespace(ns, { [LABEL_POD_SECURITY_ENFORCE]: 'restricted' });
    await createMigration(kube, ns, 'data', { claimName: 'data', targetStorageClassName: 'fast' });
    const failed = await waitForPhase(kube, ns, 'data', ['Failed']);
    t.match(
      failed.status?.message,
      /enforces Pod Security "restricted".*pod-security\.kubernetes\.io\/enforce=baseline.*pvshift\.io\/privileged-copy=true/,
      'the message names the label and the opt-in',
    );
    t.equal((await getVolume(pv.metadata!.name))?.spec?.persistentVolumeReclaimPolicy, 'Delete', 'nothing was changed');
  });
  t.test('a copy pod admission refuses ends the migration instead of a retry loop', async (t) => {
    const ns = await freshNamespace(kube);
    // An application that meets "restricted" itself; pvshift's root copy pod cannot.
    const compliant = {
      securityContext: { runAsNonRoot: true, runAsUser: 1000, seccompProfile: { type: 'RuntimeDefault' } },
      containers: [
        {
          name: 'app',
          image: 'registry.example/app:1',
          securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } },
          volumeMounts: [{ name: 'data', mountPath: '/data' }],
        },
      ],
    };
    const { pv } = await appWithData(kube, ns, 'data', 1, compliant);
    await createMigration(kube, ns, 'data', { claimName: 'data', targetStorageClassName: 'fast', preSync: false });
    await waitForPhase(kube, ns, 'data', ['WaitingForCutover']);
    // The level tightens after validation (an administrator, a policy engine).
    await labelNamespace(ns, {
      [LABEL_POD_SECURITY_ENFORCE]: 'restricted',
      'pod-security.kubernetes.io/enforce-version': 'latest',
    });
    await recreateApp(kube, ns, 'data', compliant);
    await waitForPhase(kube, ns, 'data', ['RolledBack']);
    await eventReasonsWith(kube, ns, 'data', 'VolumeMigration', ['CopyPodRefused']);
    t.pass('after cutover: rolled back, with an event saying admission refused the copy pod');
    const claim = await waitForClaimBound(kube, ns, 'data');
    t.equal(claim.spec?.volumeName, pv.metadata?.name, 'the claim is back on its volume');
    await waitForPodReady(kube, ns, 'data-app');
  });
  t.end();
});

t.test('a namespace deleted mid-cutover goes, and the old volume stays (item 8)', async (t) => {
  const ns = await freshNamespace(kube);
  const { pv, before } = await appWithData(kube, ns, 'data', 48);
  await createMigration(kube, ns, 'data', { claimName: 'data', targetStorageClassName: 'fast', preSync: false });
  await waitForPhase(kube, ns, 'data', ['WaitingForCutover']);
  await recreateApp(kube, ns, 'data');
  await waitForPhase(kube, ns, 'data', ['Populating']);
  await kube.delete(paths.namespaces(ns));
  await waitForGone(kube, paths.namespaces(ns), 90_000);
  t.pass('the namespace is gone: no finalizer of pvshift held it');
  const old = await getVolume(pv.metadata!.name);
  t.equal(old?.spec?.persistentVolumeReclaimPolicy, 'Retain', 'the old volume is kept (Retain)');
  t.same(Object.fromEntries(snapshotTree(pv.spec!.hostPath!.path)), Object.fromEntries(before), 'with its data');
});

t.test('a staging claim deleted during the final copy rolls back (item 8)', async (t) => {
  const ns = await freshNamespace(kube);
  const { pv, before } = await appWithData(kube, ns, 'data', 48);
  const m = await createMigration(kube, ns, 'data', {
    claimName: 'data',
    targetStorageClassName: 'fast',
    preSync: false,
  });
  await waitForPhase(kube, ns, 'data', ['WaitingForCutover']);
  await recreateApp(kube, ns, 'data');
  await waitForPhase(kube, ns, 'data', ['Populating']);
  await kube.delete(paths.claims(ns, stagingClaimName(m.metadata.uid!)));
  await waitForPhase(kube, ns, 'data', ['RolledBack']);
  await eventReasonsWith(kube, ns, 'data', 'VolumeMigration', ['StagingClaimLost']);
  t.equal(
    (await waitForClaimBound(kube, ns, 'data')).spec?.volumeName,
    pv.metadata?.name,
    'the claim is back on its volume',
  );
  const pod = await waitForPodReady(kube, ns, 'data-app');
  t.notOk(isGated(pod), 'the app runs');
  t.same(Object.fromEntries(snapshotTree(pv.spec!.hostPath!.path)), Object.fromEntries(before), 'on its data');
});

t.test('the scope label stripped by a GitOps tool comes back (item 9)', async (t) => {
  const ns = await freshNamespace(kube);
  await appWithData(kube, ns, 'data', 1);
  await createMigration(kube, ns, 'data', { claimName: 'data', targetStorageClassName: 'fast', preSync: false });
  await waitForPhase(kube, ns, 'data', ['WaitingForCutover']);
  await labelNamespace(ns, { [LABEL_NAMESPACE_ACTIVE]: null });
  await waitFor(
    'label back',
    async () =>
      (await kube.get<V1Namespace>(paths.namespaces(ns)))?.metadata?.labels?.[LABEL_NAMESPACE_ACTIVE] === 'true'
        ? true
        : undefined,
    30_000,
  );
  t.pass('the label is applied again while the migration is unfinished');
  await recreateApp(kube, ns, 'data');
  t.ok(
    isGated(await kube.get<V1Pod>(paths.pods(ns, 'data-app'))) ||
      (await migrationOf(kube, ns, 'data'))?.status?.phase !== 'WaitingForCutover',
    'so the recreated pod is gated',
  );
  await waitForPhase(kube, ns, 'data', ['Succeeded']);
});

t.test('a pod recreated during a long pre-sync cuts over at once (item 10)', async (t) => {
  const ns = await freshNamespace(kube);
  const { before } = await appWithData(kube, ns, 'data', 48);
  await createMigration(kube, ns, 'data', { claimName: 'data', targetStorageClassName: 'fast' });
  await waitForPhase(kube, ns, 'data', ['PreSyncing']);
  const m = await waitFor('pre-sync copying', async () => {
    const current = await migrationOf(kube, ns, 'data');
    return (current?.status?.progress?.bytesDone ?? 0) > 0 ? current : undefined;
  });
  const recreated = Date.now();
  await recreateApp(kube, ns, 'data');
  const cut = await waitForPhase(kube, ns, 'data', ['CuttingOver', 'Populating', 'Binding', 'Succeeded'], 60_000);
  t.ok(
    Date.now() - recreated < 10_000,
    `cutover began ${((Date.now() - recreated) / 1000).toFixed(1)} s after the pod came back (the pre-sync had ~10 s left at 4 MiB/s)`,
  );
  t.notOk(
    (cut.status?.copies ?? []).some((c) => c.pass === 'presync'),
    'the pre-sync never finished: it was cut short',
  );
  await waitForPhase(kube, ns, 'data', ['Succeeded']);
  const claim = await waitForClaimBound(kube, ns, 'data');
  const target = await getVolume(claim.spec?.volumeName);
  t.same(
    Object.fromEntries(snapshotTree(target!.spec!.hostPath!.path)),
    Object.fromEntries(before),
    'the final copy finished the job: every byte is there',
  );
  t.ok(m.status?.progress, 'progress was visible while pre-syncing');
});

t.test('a claim deleted mid pre-sync ends the migration and keeps the old volume (item 16)', async (t) => {
  const ns = await freshNamespace(kube);
  const { pv } = await appWithData(kube, ns, 'data', 48);
  const m = await createMigration(kube, ns, 'data', { claimName: 'data', targetStorageClassName: 'fast' });
  await waitForPhase(kube, ns, 'data', ['PreSyncing']);
  await kube.delete(paths.pods(ns, 'data-app'));
  await kube.delete(paths.claims(ns, 'data'));
  const failed = await waitForPhase(kube, ns, 'data', ['Failed'], 60_000);
  await eventReasonsWith(kube, ns, 'data', 'VolumeMigration', ['ClaimDeleted']);
  t.pass('it says so (event ClaimDeleted)');
  t.match(failed.status?.keptVolumes, [{ name: pv.metadata?.name, role: 'source' }], 'and names the kept volume');
  await waitForGone(kube, paths.claims(ns, stagingClaimName(m.metadata.uid!)));
  t.pass('its staging claim is cleaned up');
  await waitFor('namespace label removed', async () =>
    (await kube.get<V1Namespace>(paths.namespaces(ns)))?.metadata?.labels?.[LABEL_NAMESPACE_ACTIVE] ? undefined : true,
  );
  const old = await getVolume(pv.metadata!.name);
  t.equal(old?.spec?.persistentVolumeReclaimPolicy, 'Retain', 'the old volume is kept');
  await waitFor('finalizer removed', async () =>
    ((await migrationOf(kube, ns, 'data'))?.metadata.finalizers ?? []).length === 0 ? true : undefined,
  );
  t.pass('no finalizer is left on the finished record');
});

t.test(
  'the final pass compares contents: a same-size rewrite with its mtime put back is copied (item 3)',
  async (t) => {
    const ns = await freshNamespace(kube);
    const { pv } = await appWithData(kube, ns, 'data', 2);
    const dir = pv.spec!.hostPath!.path;
    await createMigration(kube, ns, 'data', { claimName: 'data', targetStorageClassName: 'fast' });
    await waitForPhase(kube, ns, 'data', ['WaitingForCutover']);
    // The application rewrites a page in place, same size, and the old mtime comes back
    // (mmap writes, coarse timestamps, a restore): size and mtime say nothing changed.
    const file = join(dir, 'db', 'segment-0000');
    const { mtimeNs, size } = statSync(file, { bigint: true });
    const fresh = Buffer.alloc(Number(size), 0x5a);
    writeFileSync(file, fresh);
    // Every nanosecond of the old mtime back (utimes from a Date would keep only milliseconds).
    execFileSync('touch', [
      '-m',
      '-d',
      `@${mtimeNs / 1_000_000_000n}.${String(mtimeNs % 1_000_000_000n).padStart(9, '0')}`,
      file,
    ]);
    t.equal(statSync(file, { bigint: true }).mtimeNs, mtimeNs, 'the mtime is exactly what it was');
    await recreateApp(kube, ns, 'data');
    await waitForPhase(kube, ns, 'data', ['Succeeded']);
    const claim = await waitForClaimBound(kube, ns, 'data');
    const target = await getVolume(claim.spec?.volumeName);
    t.ok(
      readFileSync(join(target!.spec!.hostPath!.path, 'db', 'segment-0000')).equals(fresh),
      'the new volume has the new bytes',
    );
    t.same(
      Object.fromEntries(snapshotTree(target!.spec!.hostPath!.path)),
      Object.fromEntries(snapshotTree(dir)),
      'and the trees are identical',
    );
  },
);
