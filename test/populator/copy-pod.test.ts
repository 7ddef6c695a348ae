// The copy pod of each pass: where it runs, what it mounts, how the runner is
// called, and the operator's settings applied.
import t from 'tap';
import { buildCopyPod, pinnedNode, SOURCE_MOUNT, TARGET_MOUNT } from '../../populator/copy-pod.js';
import type { Pass } from '../../populator/world.js';
import {
  ANNOTATION_COPY_ATTEMPT,
  ANNOTATION_SYNC_PASS,
  LABEL_POD_SECURITY_ENFORCE,
  LABEL_PRIVILEGED_COPY,
} from '../../src/names.js';
import { copyFidelityFor } from '../../src/pod-security.js';
import {
  CLAIM,
  HELPER,
  NS,
  SETTINGS,
  SOURCE_PV,
  STAGING,
  UID,
  migration,
  pod,
  prepared,
  volume,
  world,
} from './fixtures/world.js';

const consumers = [
  pod('old', { node: 'node-9', terminating: true }),
  pod('app-0', { node: 'node-2' }),
  pod('gated', { gated: true }),
];
const rwo = world({
  migration: migration({ phase: 'PreSyncing', status: prepared() }),
  sourceVolume: volume(SOURCE_PV),
  consumers,
});

t.test(
  'pinning: RWO pre-sync (and measure) runs on the node of the running consumer; RWX and final go through the scheduler',
  (t) => {
    t.equal(pinnedNode(rwo, 'presync'), 'node-2', 'RWO pre-sync: the running consumer, not the terminating one');
    t.equal(pinnedNode(rwo, 'measure'), 'node-2', 'RWO measure: likewise');
    t.equal(pinnedNode(rwo, 'final'), undefined, 'final: never pinned');
    t.equal(
      pinnedNode({ ...rwo, sourceVolume: volume(SOURCE_PV, { accessModes: ['ReadWriteMany'] }) }, 'presync'),
      undefined,
      'RWX: no pin',
    );
    t.equal(
      pinnedNode({ ...rwo, sourceVolume: volume(SOURCE_PV, { accessModes: ['ReadOnlyMany'] }) }, 'presync'),
      undefined,
      'ROX: no pin',
    );
    t.equal(
      pinnedNode({ ...rwo, consumers: [pod('gated', { gated: true })] }, 'presync'),
      undefined,
      'no running consumer: no pin',
    );
    const pinned = buildCopyPod(rwo, 'presync');
    t.same(
      pinned.spec?.affinity,
      {
        nodeAffinity: {
          requiredDuringSchedulingIgnoredDuringExecution: {
            nodeSelectorTerms: [
              { matchExpressions: [{ key: 'kubernetes.io/hostname', operator: 'In', values: ['node-2'] }] },
            ],
          },
        },
      },
      'as required node affinity',
    );
    t.notOk(buildCopyPod(rwo, 'final').spec?.affinity, 'the final pod has none');
    t.end();
  },
);

t.test('each pass: name, mounts, runner arguments', (t) => {
  const cases: { pass: Pass; source: string; args?: string[]; target: boolean }[] = [
    {
      pass: 'presync',
      source: CLAIM,
      target: true,
      args: [
        '--mode=runner',
        `--source=${SOURCE_MOUNT}`,
        `--target=${TARGET_MOUNT}`,
        '--verify=none',
        '--progress-interval=2',
        '--allow-vanished',
      ],
    },
    // The fixture migration was created 2024-05-01T11:00:00Z: contents changed since a minute before are compared.
    {
      pass: 'final',
      source: HELPER,
      target: true,
      args: [
        '--mode=runner',
        `--source=${SOURCE_MOUNT}`,
        `--target=${TARGET_MOUNT}`,
        '--verify=metadata',
        '--progress-interval=2',
        '--delete',
        '--changed-since=2024-05-01T10:59:00.000Z',
      ],
    },
    { pass: 'measure', source: CLAIM, target: false },
  ];
  for (const c of cases) {
    const p = buildCopyPod(rwo, c.pass);
    const container = p.spec!.containers[0]!;
    t.equal(p.metadata?.name, `pvshift-${UID}-${c.pass}`, `${c.pass}: named from the migration uid`);
    t.equal(p.metadata?.namespace, NS);
    t.match(p.metadata?.labels, {
      'app.kubernetes.io/managed-by': 'pvshift',
      'app.kubernetes.io/component': 'copy',
      'pvshift.io/migration-uid': UID,
      'pvshift.io/pass': c.pass,
    });
    t.match(p.metadata?.ownerReferences, [{ kind: 'VolumeMigration', uid: UID, controller: true }]);
    t.equal(p.spec?.restartPolicy, 'Never');
    t.equal(p.spec?.automountServiceAccountToken, false);
    t.same(
      p.spec?.volumes?.[0],
      { name: 'source', persistentVolumeClaim: { claimName: c.source, readOnly: true } },
      `${c.pass}: the source claim, read-only`,
    );
    t.same(
      container.volumeMounts?.[0],
      { name: 'source', mountPath: SOURCE_MOUNT, readOnly: true },
      `${c.pass}: mounted read-only`,
    );
    if (c.target) {
      t.same(
        p.spec?.volumes?.[1],
        { name: 'target', persistentVolumeClaim: { claimName: STAGING } },
        `${c.pass}: the staging claim as target`,
      );
      t.same(container.args, c.args, `${c.pass}: runner args`);
    } else {
      t.equal(p.spec?.volumes?.length, 1, 'measure mounts the source only');
      t.match(container.command, ['/bin/sh', '-c', /du -sxB1 \/mnt\/pvshift\/source/], 'and runs du');
    }
  }
  const checksum = buildCopyPod({ ...rwo, migration: migration({ spec: { verify: 'checksum' } }) }, 'final');
  t.ok(checksum.spec!.containers[0]!.args!.includes('--verify=checksum'), 'verify from the spec on the final pass');
  const presync = buildCopyPod({ ...rwo, migration: migration({ spec: { verify: 'checksum' } }) }, 'presync');
  t.ok(presync.spec!.containers[0]!.args!.includes('--verify=none'), 'pre-sync never verifies');
  t.notOk(presync.spec!.containers[0]!.args!.includes('--delete'), 'nor deletes');
  t.end();
});

t.test('the bandwidth limit and the operator settings are applied', (t) => {
  const settings = {
    ...SETTINGS,
    copyImage: 'registry.example/pvshift:1.2',
    copyNodeSelector: { disktype: 'ssd' },
    copyTolerations: [{ key: 'storage', operator: 'Exists', effect: 'NoSchedule' }],
    copyResources: { limits: { memory: '512Mi' } },
    copyPriorityClassName: 'storage-critical',
    copyBandwidthLimitKiBps: 4096,
  };
  const p = buildCopyPod({ ...rwo, settings }, 'final');
  const container = p.spec!.containers[0]!;
  t.equal(container.image, 'registry.example/pvshift:1.2');
  t.same(p.spec?.nodeSelector, { disktype: 'ssd' });
  t.same(p.spec?.tolerations, settings.copyTolerations);
  t.same(container.resources, { limits: { memory: '512Mi' } });
  t.equal(p.spec?.priorityClassName, 'storage-critical');
  t.equal(container.args?.at(-1), '--bwlimit=4096', 'rsync --bwlimit from the setting');
  const plain = buildCopyPod(rwo, 'final');
  t.notOk(plain.spec?.nodeSelector, 'no node selector unless set');
  t.notOk(plain.spec?.tolerations);
  t.notOk(plain.spec?.priorityClassName);
  t.notOk(plain.spec!.containers[0]!.resources);
  t.notOk(
    plain.spec!.containers[0]!.args!.some((a) => a.startsWith('--bwlimit')),
    'no --bwlimit at 0',
  );
  t.equal(plain.spec!.containers[0]!.terminationMessagePolicy, 'FallbackToLogsOnError');
  t.equal(plain.spec!.containers[0]!.securityContext?.allowPrivilegeEscalation, false);
  t.end();
});

t.test('the pod records how many failures of its pass preceded it', (t) => {
  t.equal(buildCopyPod(rwo, 'final').metadata?.annotations?.[ANNOTATION_COPY_ATTEMPT], '0');
  const retried = { ...rwo, migration: migration({ status: prepared({ attempts: { final: 2, presync: 1 } }) }) };
  t.equal(buildCopyPod(retried, 'final').metadata?.annotations?.[ANNOTATION_COPY_ATTEMPT], '2');
  t.equal(buildCopyPod(retried, 'presync').metadata?.annotations?.[ANNOTATION_COPY_ATTEMPT], '1');
  t.end();
});

t.test('a pre-sync pod says which pass it is, so its result is recorded once', (t) => {
  t.equal(buildCopyPod(rwo, 'presync').metadata?.annotations?.[ANNOTATION_SYNC_PASS], '1', 'the first pre-sync');
  const resync = { ...rwo, migration: migration({ status: prepared({ syncPasses: 3 }) }) };
  t.equal(buildCopyPod(resync, 'presync').metadata?.annotations?.[ANNOTATION_SYNC_PASS], '4', 'a re-sync after three');
  t.notOk(buildCopyPod(resync, 'final').metadata?.annotations?.[ANNOTATION_SYNC_PASS], 'the final is no pre-sync');
  t.end();
});

t.test(
  'Pod Security: baseline capabilities and RuntimeDefault seccomp always; SYS_ADMIN only with the opt-in on a privileged namespace',
  (t) => {
    const caps = (w: typeof rwo) => buildCopyPod(w, 'presync').spec!.containers[0]!.securityContext?.capabilities?.add;
    const baselineCaps = ['CHOWN', 'DAC_OVERRIDE', 'FOWNER', 'FSETID', 'MKNOD', 'SETFCAP'];
    t.same(caps(rwo), baselineCaps, 'no labels (privileged by default, no opt-in): only what baseline admits');
    t.same(
      caps({ ...rwo, fidelity: copyFidelityFor(NS, { [LABEL_POD_SECURITY_ENFORCE]: 'baseline' }) }),
      baselineCaps,
      'baseline: the same',
    );
    t.same(
      caps({
        ...rwo,
        fidelity: copyFidelityFor(NS, { [LABEL_POD_SECURITY_ENFORCE]: 'baseline', [LABEL_PRIVILEGED_COPY]: 'true' }),
      }),
      baselineCaps,
      'the opt-in on a baseline namespace cannot add what baseline refuses',
    );
    t.same(
      caps({ ...rwo, fidelity: copyFidelityFor(NS, { [LABEL_PRIVILEGED_COPY]: 'true' }) }),
      [...baselineCaps, 'SYS_ADMIN'],
      'privileged with the opt-in: SYS_ADMIN for trusted.* xattrs',
    );
    const p = buildCopyPod(rwo, 'final');
    t.same(p.spec?.securityContext?.seccompProfile, { type: 'RuntimeDefault' }, 'seccomp RuntimeDefault');
    t.equal(p.spec!.containers[0]!.securityContext?.allowPrivilegeEscalation, false);
    t.notOk(
      p.spec!.containers[0]!.securityContext?.capabilities?.add?.includes('DAC_READ_SEARCH'),
      'no DAC_READ_SEARCH (baseline refuses it; DAC_OVERRIDE covers search)',
    );
    t.end();
  },
);

t.test('the final copy runs where the held pod can run (its nodeSelector, node affinity and tolerations)', (t) => {
  const held = pod('app-0', { gated: true });
  held.spec!.nodeSelector = { 'kubernetes.io/hostname': 'node-2' };
  held.spec!.tolerations = [{ key: 'dedicated', operator: 'Equal', value: 'db', effect: 'NoSchedule' }];
  held.spec!.affinity = {
    nodeAffinity: {
      requiredDuringSchedulingIgnoredDuringExecution: {
        nodeSelectorTerms: [{ matchExpressions: [{ key: 'zone', operator: 'In', values: ['a'] }] }],
      },
    },
  };
  const w = world({
    migration: migration({ phase: 'Populating', status: prepared() }),
    sourceVolume: volume(SOURCE_PV),
    consumers: [held],
  });
  const final = buildCopyPod(w, 'final');
  t.same(final.spec?.nodeSelector, { 'kubernetes.io/hostname': 'node-2' }, 'the nodeSelector');
  t.same(final.spec?.tolerations, held.spec!.tolerations, 'the tolerations');
  t.same(
    final.spec?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms,
    [{ matchExpressions: [{ key: 'zone', operator: 'In', values: ['a'] }] }],
    'the required node affinity',
  );
  t.notOk(
    buildCopyPod(w, 'presync').spec?.nodeSelector,
    'pre-sync is placed by the running consumer, not the held one',
  );
  t.end();
});
