// kubectl pvshift on a whole StatefulSet (`sts/NAME`) against the real local
// control plane with pvshift running: plan says what the rollout will meet,
// migrate annotates the StatefulSet (pvshift's controller then makes the
// migrations), status sums the replicas up in one line.
import t from 'tap';
import type { V1StatefulSet } from '@kubernetes/client-node';
import { paths } from '../../src/kube.js';
import { ANNOTATION_TARGET_CLASS, ANNOTATION_TARGET_SIZE } from '../../src/names.js';
import type { VolumeMigration } from '../../src/volume-migration.js';
import { ANNOTATION_WORKLOAD } from '../../populator/shortcut.js';
import {
  clusterFor,
  freshNamespace,
  statefulSet,
  waitFor,
  waitForClaimBound,
  waitForPodReady,
} from '../helpers/cluster.js';
import { installPvshift } from '../helpers/pvshift.js';
import { runCli } from './run-cli.js';

const cluster = await clusterFor(t);
const { kube } = cluster;
const installation = await installPvshift(cluster);
const pvshift = await installation.start();
t.teardown(() => pvshift.stop());

const cli = (args: string[]) => runCli(cluster.kubeconfigPath, args);

interface WorkloadPlanJson {
  workload: { name: string; replicas: number; templates: string[] };
  blockers: string[];
  findings: { severity: string; code: string; message: string }[];
  items: { claim: string; ready: boolean }[];
}

interface WorkloadStatusJson {
  workload: string;
  target: string | null;
  replicas: number;
  onTarget: number;
  summary: string;
  migrations: { name: string; claim: string; phase: string }[];
}

t.test('plan, migrate and status of a StatefulSet as one', async (t) => {
  const ns = await freshNamespace(kube, 'sts');
  await kube.create(paths.statefulSets(ns), statefulSet('db', { replicas: 2 }));
  await kube.create(`/apis/policy/v1/namespaces/${ns}/poddisruptionbudgets`, {
    apiVersion: 'policy/v1',
    kind: 'PodDisruptionBudget',
    metadata: { name: 'db' },
    spec: { maxUnavailable: 0, selector: { matchLabels: { app: 'db' } } },
  });
  await waitForPodReady(kube, ns, 'db-0');
  await waitForPodReady(kube, ns, 'db-1');
  for (const name of ['data-db-0', 'data-db-1']) await waitForClaimBound(kube, ns, name);

  const table = await cli(['plan', 'sts/db', '--to', 'fast', '-n', ns]);
  t.equal(table.code, 0, `plan exits 0: ${table.stderr}`);
  t.match(table.stdout, /^StatefulSet db: 2 replicas, template data\n/, 'the StatefulSet first');
  t.match(table.stdout, /data-db-0\s+standard -> fast/);
  t.match(table.stdout, /data-db-1\s+standard -> fast/);
  t.match(
    table.stdout,
    /warning DisruptionBudget: PodDisruptionBudget db selects the pods of StatefulSet db and allows no disruption/,
    'the budget that allows no disruption',
  );
  t.match(table.stdout, new RegExp(`info PodSecurityLevel: namespace ${ns} enforces Pod Security privileged`));
  t.match(table.stdout, new RegExp(`run kubectl rollout restart statefulset/db -n ${ns} to cut over one replica`));

  const json = await cli(['plan', 'statefulset/db', '--to', 'fast', '-n', ns, '-o', 'json']);
  t.equal(json.code, 0, json.stderr);
  const planned = JSON.parse(json.stdout) as WorkloadPlanJson;
  t.same(
    planned.items.map((r) => r.claim),
    ['data-db-0', 'data-db-1'],
    'the replica claims',
  );
  t.same(planned.blockers, []);
  t.ok(
    planned.findings.some((f) => f.code === 'DisruptionBudget' && f.severity === 'warning'),
    'the budget in JSON too',
  );

  const refused = await cli(['migrate', 'sts/db', '--to', 'fast', '-n', ns]);
  t.equal(refused.code, 1, 'without --yes and without a terminal it refuses');
  t.match(refused.stderr, /^error: refusing to annotate StatefulSet db without confirmation: .*pass --yes\n$/);

  const dry = await cli(['migrate', 'sts/db', '--to', 'fast', '--dry-run', '-n', ns]);
  t.equal(dry.code, 0, dry.stderr);
  t.match(dry.stdout, /pvshift\.io\/target-storage-class: fast\n/, 'the dry run prints the patch');
  t.notOk(
    (await kube.get<V1StatefulSet>(paths.statefulSets(ns, 'db')))?.metadata?.annotations?.[ANNOTATION_TARGET_CLASS],
    'and changes nothing',
  );

  const migrated = await cli(['migrate', 'sts/db', '--to', 'fast', '--yes', '-n', ns]);
  t.equal(migrated.code, 0, `migrate exits 0: ${migrated.stderr}`);
  t.match(migrated.stdout, new RegExp(`^statefulset\\.apps/db annotated in ${ns}: ${ANNOTATION_TARGET_CLASS}=fast\n`));
  t.match(migrated.stdout, new RegExp(`run kubectl rollout restart statefulset/db -n ${ns} to cut over one replica`));
  const set = await kube.get<V1StatefulSet>(paths.statefulSets(ns, 'db'));
  t.equal(set?.metadata?.annotations?.[ANNOTATION_TARGET_CLASS], 'fast', 'the StatefulSet carries the policy');
  t.equal(set?.metadata?.annotations?.[ANNOTATION_TARGET_SIZE], undefined, 'and no size');

  const made = await waitFor(
    'two VolumeMigrations for StatefulSet db',
    async () => {
      const items = (await kube.list<VolumeMigration>(paths.migrations(ns))).items;
      return items.length === 2 ? items : undefined;
    },
    60_000,
  );
  t.same(made.map((m) => m.spec.claimName).sort(), ['data-db-0', 'data-db-1']);
  t.ok(
    made.every((m) => m.metadata.annotations?.[ANNOTATION_WORKLOAD] === 'StatefulSet/db'),
    'made for the policy',
  );

  const shown = await cli(['status', 'sts/db', '-n', ns]);
  t.equal(shown.code, 0, `status exits 0: ${shown.stderr}`);
  t.match(shown.stdout, /^0\/2 replicas on fast/, 'the one line first');
  t.match(shown.stdout, /\nNAME\s+CLAIM\s+TARGET\s+PHASE/, 'then the table');
  t.match(shown.stdout, /data-db-0\s+data-db-0\s+fast/);
  t.match(shown.stdout, /data-db-1\s+data-db-1\s+fast/);

  const shownJson = await cli(['status', 'sts/db', '-n', ns, '-o', 'json']);
  t.equal(shownJson.code, 0, shownJson.stderr);
  const summary = JSON.parse(shownJson.stdout) as WorkloadStatusJson;
  t.match(summary, { workload: 'StatefulSet/db', target: 'fast', replicas: 2, onTarget: 0 });
  t.same(
    summary.migrations.map((m) => m.claim),
    ['data-db-0', 'data-db-1'],
  );

  const missing = await cli(['plan', 'sts/nope', '--to', 'fast', '-n', ns]);
  t.equal(missing.code, 1);
  t.equal(
    missing.stderr,
    `error: StatefulSet "nope" not found in namespace "${ns}"; see kubectl get statefulsets -n ${ns}\n`,
  );
  const template = await cli(['status', 'sts/db', '--templates', 'logs', '-n', ns]);
  t.equal(template.code, 1);
  t.equal(template.stderr, 'error: StatefulSet db has no volumeClaimTemplate "logs"; its templates: data\n');

  const again = await cli(['migrate', 'sts/db', '--to', 'fast', '-n', ns]);
  t.equal(again.code, 0, `the same policy again needs no confirmation: ${again.stderr}`);
  t.match(again.stdout, /already carries this policy; nothing changed/);
});
