// plan under the safety review's findings: volumes it cannot prove are its own,
// failures after cutover that must hold rather than release, phases that need
// an exit, a stripped scope label, claims in use, a recreated pod during a
// pre-sync, pre-syncs yielding to finals, stalled and refused copy pods, pods
// gated for several migrations, and where the new volume can be reached.
import t, { type Test } from 'tap';
import { plan, type Step } from '../../populator/plan.js';
import { placementConflict } from '../../populator/placement.js';
import type { World } from '../../populator/world.js';
import { ANNOTATION_MIGRATION_UID, LABEL_POD_SECURITY_ENFORCE } from '../../src/names.js';
import { copyFidelityFor } from '../../src/pod-security.js';
import {
  CLAIM,
  HELPER,
  NOW,
  NS,
  ORIGINAL_UID,
  REPLACEMENT_UID,
  SOURCE_PV,
  STAGING,
  TARGET_PV,
  UID,
  claimWithVolume,
  copyPod,
  migration,
  originalClaim,
  pod,
  prepared,
  replacementClaim,
  retainedSource,
  unrewrittenClaim,
  volume,
  world,
} from './fixtures/world.js';

type Expect = Partial<Record<string, unknown>> & { kind: Step['kind'] };

function check(t: Test, w: World, expected: Expect, name: string): Step {
  const step = plan(w);
  t.match(step, expected, name);
  return step;
}

const gated = [pod('app-0', { gated: true })];

function nodeVolume(name: string, node: string, extra: Parameters<typeof volume>[1] = {}): ReturnType<typeof volume> {
  const pv = volume(name, extra);
  pv.spec!.nodeAffinity = {
    required: {
      nodeSelectorTerms: [{ matchExpressions: [{ key: 'kubernetes.io/hostname', operator: 'In', values: [node] }] }],
    },
  };
  return pv;
}

t.test('status is not an authority: volumes and claims not stamped with the migration are never acted on', (t) => {
  const victim = volume('pv-victim', { policy: 'Delete', claimRef: { name: 'secrets', uid: 'uid-secrets' } });
  victim.spec!.claimRef!.namespace = 'victim';
  const forged = (phase: 'WaitingForCutover' | 'CuttingOver' | 'Binding') =>
    migration({ phase, status: prepared({ sourceVolumeName: 'pv-victim', cutoverStartTime: NOW.toISOString() }) });
  check(
    t,
    world({ migration: forged('WaitingForCutover'), claim: originalClaim(), sourceVolume: victim, consumers: gated }),
    { kind: 'setPhase', phase: 'Failed', event: { reason: 'VolumeNotOwned' } },
    'before cutover: Failed, nothing touched',
  );
  check(
    t,
    world({ migration: forged('CuttingOver'), claim: originalClaim(), sourceVolume: victim, consumers: gated }),
    { kind: 'setPhase', phase: 'Held', event: { reason: 'VolumeNotOwned' } },
    'after cutover: Held (pods stay gated)',
  );
  const stamped = { ...victim, metadata: { ...victim.metadata, annotations: { [ANNOTATION_MIGRATION_UID]: UID } } };
  check(
    t,
    world({ migration: forged('WaitingForCutover'), claim: originalClaim(), sourceVolume: stamped, consumers: gated }),
    { kind: 'setPhase', phase: 'Failed', event: { reason: 'VolumeNotOwned' } },
    'even stamped, a volume claimed in another namespace is not ours',
  );
  const targetElsewhere = volume(TARGET_PV, { policy: 'Delete', claimRef: { name: 'secrets', uid: 'uid-secrets' } });
  targetElsewhere.spec!.claimRef!.namespace = 'victim';
  check(
    t,
    world({
      migration: migration({
        phase: 'Binding',
        status: prepared({ targetVolumeName: TARGET_PV, cutoverStartTime: NOW.toISOString() }),
      }),
      claim: replacementClaim(),
      sourceVolume: retainedSource({ claimRef: { name: HELPER } }),
      stagingClaim: claimWithVolume(STAGING, TARGET_PV),
      stagingVolume: targetElsewhere,
      consumers: gated,
    }),
    { kind: 'setPhase', phase: 'Held', event: { reason: 'VolumeNotOwned' } },
    'a forged targetVolumeName is never rebound to our claim',
  );
  const squatted = claimWithVolume(STAGING, undefined);
  delete squatted.metadata.labels;
  check(
    t,
    world({
      migration: migration({ phase: 'PreSyncing', status: prepared() }),
      claim: originalClaim(),
      sourceVolume: retainedSource(),
      stagingClaim: squatted,
    }),
    { kind: 'setPhase', phase: 'Failed', event: { reason: 'VolumeNotOwned' } },
    'a claim squatting the staging name without our UID label is not used',
  );
  t.end();
});

t.test('Held: the copy kept (Retain, no owner), the pods held, released only by deleting the migration', (t) => {
  const held = (extra: { abort?: boolean; deleting?: boolean } = {}) =>
    migration({
      phase: 'Held',
      spec: { abort: !!extra.abort },
      deleting: !!extra.deleting,
      status: prepared({ cutoverStartTime: NOW.toISOString(), sourceVolumeName: 'pv-gone' }),
    });
  const staging = claimWithVolume(STAGING, TARGET_PV);
  staging.metadata.ownerReferences = [
    { apiVersion: 'pvshift.io/v1alpha1', kind: 'VolumeMigration', name: 'data', uid: UID, controller: true },
  ];
  const copy = volume(TARGET_PV, { policy: 'Delete', claimRef: { name: STAGING, uid: `uid-${STAGING}` } });
  const base = { claim: replacementClaim(), stagingClaim: staging, stagingVolume: copy, consumers: gated };
  check(
    t,
    world({ ...base, migration: held() }),
    { kind: 'retainVolume', volumeName: TARGET_PV, migrationUid: UID },
    'the copy is made Retain first',
  );
  const retained = volume(TARGET_PV, {
    policy: 'Retain',
    migrationUid: UID,
    claimRef: { name: STAGING, uid: `uid-${STAGING}` },
  });
  check(
    t,
    world({ ...base, stagingVolume: retained, migration: held() }),
    { kind: 'disownClaim', name: STAGING },
    'then its claim loses the ownerReference',
  );
  const disowned = claimWithVolume(STAGING, TARGET_PV);
  check(
    t,
    world({ ...base, stagingClaim: disowned, stagingVolume: retained, migration: held() }),
    { kind: 'patchStatus', status: { keptVolumes: [{ name: TARGET_PV, role: 'copy' }] } },
    'then the status says what is kept',
  );
  const step = check(
    t,
    world({ ...base, stagingClaim: disowned, stagingVolume: retained, migration: held() }),
    { kind: 'patchStatus' },
    'kept volumes',
  );
  const kept = step.kind === 'patchStatus' ? step.status.keptVolumes : undefined;
  const recorded = migration({
    phase: 'Held',
    status: prepared({
      cutoverStartTime: NOW.toISOString(),
      sourceVolumeName: 'pv-gone',
      ...(kept ? { keptVolumes: kept } : {}),
    }),
  });
  check(
    t,
    world({ ...base, stagingClaim: disowned, stagingVolume: retained, migration: recorded }),
    { kind: 'wait', reason: 'Held' },
    'then it waits: no gate is lifted',
  );
  check(
    t,
    world({ ...base, stagingClaim: disowned, stagingVolume: retained, migration: held({ abort: true }) }),
    { kind: 'patchStatus' },
    'abort (which likely started the rollback) does not release',
  );
  check(
    t,
    world({ ...base, stagingClaim: disowned, stagingVolume: retained, migration: held({ deleting: true }) }),
    { kind: 'setPhase', phase: 'Failed', event: { reason: 'ReleasedFromHold' } },
    'deleting the migration releases',
  );
  check(
    t,
    world({ ...base, migration: held({ deleting: true }) }),
    { kind: 'retainVolume', volumeName: TARGET_PV },
    'but only after the copy is kept safe from the deletion',
  );
  const released = migration({ phase: 'Failed', status: prepared({ cutoverStartTime: NOW.toISOString() }) });
  check(
    t,
    world({ migration: released, stagingClaim: disowned, stagingVolume: retained, consumers: gated }),
    { kind: 'liftGates' },
    'a Failed after cutover keeps its staging claim (the copy) and lifts the gates',
  );
  t.end();
});

t.test('every phase has an exit', (t) => {
  check(
    t,
    world({
      migration: migration({ phase: 'Populating', status: prepared() }),
      claim: replacementClaim(),
      sourceVolume: retainedSource({ claimRef: { name: HELPER } }),
      helperClaim: claimWithVolume(HELPER, SOURCE_PV),
      consumers: gated,
    }),
    { kind: 'setPhase', phase: 'RollingBack', event: { reason: 'StagingClaimLost' } },
    'Populating, staging claim deleted: roll back',
  );
  const binding = (spec = {}) =>
    migration({ phase: 'Binding', spec, status: prepared({ targetVolumeName: TARGET_PV }) });
  check(
    t,
    world({
      migration: binding(),
      claim: replacementClaim(),
      sourceVolume: retainedSource({ claimRef: { name: HELPER } }),
      consumers: gated,
    }),
    { kind: 'setPhase', phase: 'RollingBack', event: { reason: 'TargetMissing' } },
    'Binding, target volume gone: roll back',
  );
  check(
    t,
    world({
      migration: binding(),
      claim: replacementClaim(),
      sourceVolume: retainedSource({ claimRef: { name: HELPER } }),
      stagingVolume: volume(TARGET_PV, { policy: 'Delete', claimRef: { name: STAGING, uid: `uid-${STAGING}` } }),
      consumers: gated,
    }),
    { kind: 'setPhase', phase: 'RollingBack', event: { reason: 'StagingClaimLost' } },
    'Binding, staging claim gone before the copy was kept: roll back',
  );
  check(
    t,
    world({
      migration: binding(),
      claim: replacementClaim(),
      sourceVolume: retainedSource({ claimRef: { name: HELPER } }),
      stagingVolume: volume(TARGET_PV, {
        policy: 'Retain',
        migrationUid: UID,
        claimRef: { name: STAGING, uid: `uid-${STAGING}` },
      }),
      consumers: gated,
    }),
    { kind: 'rebindVolume', volumeName: TARGET_PV },
    'Binding, staging claim gone after the copy was kept: bind on',
  );
  check(
    t,
    world({ migration: migration({ phase: 'CuttingOver', status: prepared() }), namespaceTerminating: true }),
    { kind: 'removeFinalizer' },
    'namespace being deleted: the finalizer goes, nothing is created',
  );
  check(
    t,
    world({
      migration: migration({ phase: 'RollingBack', status: prepared(), finalizer: false }),
      namespaceTerminating: true,
    }),
    { kind: 'done' },
    'and then nothing more',
  );
  check(
    t,
    world({
      migration: migration({ phase: 'Succeeded', status: prepared() }),
      namespaceTerminating: true,
      sourceVolume: retainedSource(),
    }),
    { kind: 'removeFinalizer' },
    'a finished one restores nothing onto a namespace being deleted',
  );
  t.end();
});

t.test('a copy that stalls counts as a failed attempt; one that admission refuses ends the pass', (t) => {
  const started = new Date(NOW.getTime() - 700_000).toISOString();
  const stalledPod = copyPod('presync', { phase: 'Running', attempt: 0 });
  stalledPod.status!.startTime = started as unknown as Date;
  const presync = (status = {}) => migration({ phase: 'PreSyncing', status: prepared(status) });
  const base = {
    claim: originalClaim(),
    sourceVolume: retainedSource(),
    stagingClaim: claimWithVolume(STAGING, TARGET_PV),
  };
  check(
    t,
    world({ ...base, migration: presync(), copyPods: { presync: stalledPod } }),
    {
      kind: 'patchStatus',
      status: { attempts: { presync: 1 } },
      event: { reason: 'CopyRetrying', message: /made no progress for 700 s/ },
    },
    'no progress for longer than --copy-stall-timeout: a failed attempt',
  );
  check(
    t,
    world({ ...base, migration: presync({ attempts: { presync: 1 } }), copyPods: { presync: stalledPod } }),
    { kind: 'deleteCopyPod', pass: 'presync' },
    'then the pod goes',
  );
  const moving = presync({
    progress: {
      bytesDone: 1,
      bytesTotal: 2,
      filesDone: 1,
      filesTotal: 2,
      bytesPerSecond: 1,
      updatedAt: NOW.toISOString(),
      advancedAt: new Date(NOW.getTime() - 5000).toISOString(),
    },
  });
  check(
    t,
    world({ ...base, migration: moving, copyPods: { presync: stalledPod } }),
    { kind: 'wait', reason: 'Copying' },
    'progress 5 s ago: still copying',
  );
  const lastTry = copyPod('final', { phase: 'Running', attempt: 2 });
  lastTry.status!.startTime = started as unknown as Date;
  check(
    t,
    world({
      migration: migration({ phase: 'Populating', status: prepared() }),
      claim: replacementClaim(),
      sourceVolume: retainedSource({ claimRef: { name: HELPER } }),
      helperClaim: claimWithVolume(HELPER, SOURCE_PV),
      stagingClaim: claimWithVolume(STAGING, TARGET_PV),
      copyPods: { final: lastTry },
      consumers: gated,
    }),
    { kind: 'setPhase', phase: 'RollingBack', event: { reason: 'CopyFailed' } },
    'a stalled final copy with no attempts left rolls back',
  );
  const refused = {
    pass: 'presync' as const,
    message: 'pods "x" is forbidden: violates PodSecurity "restricted:latest": runAsNonRoot != true',
  };
  check(
    t,
    world({ ...base, migration: presync(), copyPodRefused: refused }),
    {
      kind: 'setPhase',
      phase: 'Failed',
      event: { reason: 'CopyPodRefused', message: /refused by admission.*violates PodSecurity/ },
    },
    'pre-sync pod refused: Failed with the reason, no retry loop',
  );
  check(
    t,
    world({
      migration: migration({ phase: 'Populating', status: prepared() }),
      claim: replacementClaim(),
      sourceVolume: retainedSource({ claimRef: { name: HELPER } }),
      helperClaim: claimWithVolume(HELPER, SOURCE_PV),
      stagingClaim: claimWithVolume(STAGING, TARGET_PV),
      copyPodRefused: { ...refused, pass: 'final' },
      consumers: gated,
    }),
    { kind: 'setPhase', phase: 'RollingBack', event: { reason: 'CopyPodRefused' } },
    'final pod refused: roll back',
  );
  t.end();
});

t.test('Pod Security and retention at validation', (t) => {
  const restricted = copyFidelityFor(NS, { [LABEL_POD_SECURITY_ENFORCE]: 'restricted' });
  check(
    t,
    world({
      migration: migration(),
      claim: originalClaim(),
      sourceVolume: volume(SOURCE_PV, { claimRef: { name: CLAIM, uid: ORIGINAL_UID } }),
      fidelity: restricted,
    }),
    { kind: 'setPhase', phase: 'Failed', event: { reason: 'PodSecurityRestricted' } },
    'restricted: refused before anything changes',
  );
  check(
    t,
    world({
      migration: migration({ spec: { sourceRetention: 'DeleteAfterVerify', verify: 'metadata' } }),
      claim: originalClaim(),
      sourceVolume: volume(SOURCE_PV, { claimRef: { name: CLAIM, uid: ORIGINAL_UID } }),
    }),
    { kind: 'setPhase', phase: 'Failed', event: { reason: 'InvalidRetention' } },
    'DeleteAfterVerify without checksum: refused (the CRD refuses it too)',
  );
  const baseline = copyFidelityFor(NS, { [LABEL_POD_SECURITY_ENFORCE]: 'baseline' });
  check(
    t,
    world({
      migration: migration({ status: prepared({ copyFidelity: baseline.ok ? baseline.fidelity : undefined }) }),
      claim: originalClaim(),
      sourceVolume: retainedSource(),
      fidelity: baseline,
    }),
    {
      kind: 'setPhase',
      phase: 'PreSyncing',
      event: {
        message: /trusted\.\* and security\.\* extended attributes \(file capabilities aside\) will not be copied/,
      },
    },
    'baseline: the Validated event says what is not copied',
  );
  t.end();
});

t.test('the scope label, claims in use, and a recreated pod during a pre-sync', (t) => {
  const waiting = migration({ phase: 'WaitingForCutover', status: prepared({ copies: [] }) });
  check(
    t,
    world({ migration: waiting, claim: originalClaim(), sourceVolume: retainedSource(), namespaceLabelled: false }),
    { kind: 'labelNamespace', active: true },
    'the label stripped: applied again, in any unfinished phase',
  );
  const cutting = migration({ phase: 'CuttingOver', status: prepared({ cutoverStartTime: NOW.toISOString() }) });
  check(
    t,
    world({
      migration: cutting,
      claim: unrewrittenClaim(),
      sourceVolume: retainedSource(),
      consumers: [pod('app-0', { node: 'node-1' })],
    }),
    { kind: 'wait', reason: 'ClaimInUse' },
    'an unrewritten claim a scheduled pod uses is never deleted',
  );
  const rolling = migration({ phase: 'RollingBack', status: prepared() });
  check(
    t,
    world({
      migration: rolling,
      claim: replacementClaim({ phase: 'Bound' }),
      sourceVolume: retainedSource({ claimRef: { name: HELPER } }),
      consumers: [pod('app-0', { node: 'node-1' })],
    }),
    { kind: 'wait', reason: 'ClaimInUse' },
    'nor a replacement in use during rollback',
  );
  const presyncing = migration({ phase: 'PreSyncing', status: prepared() });
  const base = {
    claim: originalClaim(),
    sourceVolume: retainedSource(),
    stagingClaim: claimWithVolume(STAGING, TARGET_PV),
  };
  check(
    t,
    world({
      ...base,
      migration: presyncing,
      copyPods: { presync: copyPod('presync', { phase: 'Running' }) },
      consumers: gated,
    }),
    { kind: 'deleteCopyPod', pass: 'presync' },
    'a gated pod during pre-sync: the copy pod lets the source go',
  );
  check(
    t,
    world({ ...base, migration: presyncing, consumers: gated }),
    { kind: 'setPhase', phase: 'CuttingOver', event: { reason: 'CutoverStarted', message: /cut short/ } },
    'and the cutover starts from where the pre-sync got to',
  );
  check(
    t,
    world({
      ...base,
      migration: presyncing,
      copyPods: { presync: copyPod('presync', { phase: 'Running' }) },
      consumers: [...gated, pod('old', { node: 'node-1' })],
    }),
    { kind: 'wait', reason: 'Copying' },
    'while the old pod still runs, the pre-sync goes on',
  );
  check(
    t,
    world({
      ...base,
      migration: presyncing,
      copyPods: { presync: copyPod('presync', { phase: 'Running' }) },
      yieldCopySlot: true,
      consumers: [pod('old', { node: 'node-1' })],
    }),
    { kind: 'deleteCopyPod', pass: 'presync', event: { reason: 'PreSyncYielded' } },
    'a pre-sync asked to yield its slot to a final copy stops',
  );
  check(
    t,
    world({
      ...base,
      claim: undefined,
      migration: presyncing,
      copyPods: { presync: copyPod('presync', { phase: 'Running' }) },
    }),
    { kind: 'setPhase', phase: 'Failed', event: { reason: 'ClaimDeleted' } },
    'the claim deleted mid pre-sync: the migration ends',
  );
  check(
    t,
    world({
      ...base,
      claim: originalClaim({ terminating: true }),
      migration: presyncing,
      copyPods: { presync: copyPod('presync', { phase: 'Running' }) },
    }),
    { kind: 'setPhase', phase: 'Failed', event: { reason: 'ClaimDeleted' } },
    'terminating (held only by the copy pod) too',
  );
  check(
    t,
    world({ ...base, claim: undefined, migration: waiting, consumers: gated }),
    { kind: 'setPhase', phase: 'CuttingOver' },
    'deleted with a gated pod coming back for it: that is a cutover',
  );
  t.end();
});

t.test('one gate per pod, lifted by the last of its migrations', (t) => {
  const both = pod('app-0', { gated: true, migrations: 'data,logs' });
  const bound = replacementClaim({ phase: 'Bound', volumeName: TARGET_PV });
  const binding = migration({ phase: 'Binding', status: prepared({ targetVolumeName: TARGET_PV }) });
  const w = (logsPhase: 'Populating' | 'Succeeded') =>
    world({
      migration: binding,
      siblings: [binding, migration({ name: 'logs', phase: logsPhase, spec: { claimName: 'logs' } })],
      claim: bound,
      sourceVolume: retainedSource({ claimRef: { name: HELPER }, migrationKey: `${NS}/data` }),
      stagingVolume: volume(TARGET_PV, { policy: 'Delete', claimRef: { name: CLAIM, uid: REPLACEMENT_UID } }),
      consumers: [both],
    });
  check(
    t,
    w('Populating'),
    { kind: 'setPhase', phase: 'Succeeded' },
    'the other migration of the pod is unfinished: the gate stays',
  );
  check(t, w('Succeeded'), { kind: 'liftGates', pods: ['app-0'] }, 'the other one done: lifted');
  t.end();
});

t.test('nothing is declared done onto a volume the held pod cannot reach', (t) => {
  const pinned = pod('app-0', { gated: true });
  pinned.spec!.nodeSelector = { 'kubernetes.io/hostname': 'node-2' };
  const base = {
    claim: replacementClaim(),
    sourceVolume: retainedSource({ claimRef: { name: HELPER } }),
    stagingClaim: claimWithVolume(STAGING, TARGET_PV),
    consumers: [pinned],
  };
  const m = migration({ phase: 'Binding', status: prepared({ targetVolumeName: TARGET_PV }) });
  check(
    t,
    world({
      ...base,
      migration: m,
      stagingVolume: nodeVolume(TARGET_PV, 'node-1', { claimRef: { name: STAGING, uid: `uid-${STAGING}` } }),
    }),
    {
      kind: 'setPhase',
      phase: 'RollingBack',
      event: {
        reason: 'TargetUnreachable',
        message: /cannot run where volume pv-target is \(kubernetes\.io\/hostname in \(node-1\)\)/,
      },
    },
    'the copy on node-1, the pod pinned to node-2: roll back',
  );
  check(
    t,
    world({
      ...base,
      migration: m,
      stagingVolume: nodeVolume(TARGET_PV, 'node-2', { claimRef: { name: STAGING, uid: `uid-${STAGING}` } }),
    }),
    { kind: 'retainVolume' },
    'on node-2: bind on',
  );
  t.end();
});

t.test('placementConflict reads affinity and selectors as constraints, and says nothing it cannot prove', (t) => {
  const pv = nodeVolume('pv', 'node-1');
  const p = (spec: object) => ({ ...pod('p'), spec: { ...pod('p').spec!, ...spec } });
  const cases: [string, object, boolean][] = [
    ['no constraints', {}, false],
    ['nodeSelector on the same node', { nodeSelector: { 'kubernetes.io/hostname': 'node-1' } }, false],
    ['nodeSelector on another node', { nodeSelector: { 'kubernetes.io/hostname': 'node-2' } }, true],
    ['a selector on another key only (no Node objects to check it)', { nodeSelector: { disk: 'ssd' } }, false],
    [
      'affinity In with the node among others',
      {
        affinity: {
          nodeAffinity: {
            requiredDuringSchedulingIgnoredDuringExecution: {
              nodeSelectorTerms: [
                { matchExpressions: [{ key: 'kubernetes.io/hostname', operator: 'In', values: ['node-3', 'node-1'] }] },
              ],
            },
          },
        },
      },
      false,
    ],
    [
      'affinity terms all elsewhere',
      {
        affinity: {
          nodeAffinity: {
            requiredDuringSchedulingIgnoredDuringExecution: {
              nodeSelectorTerms: [
                { matchExpressions: [{ key: 'kubernetes.io/hostname', operator: 'In', values: ['node-3'] }] },
                { matchExpressions: [{ key: 'kubernetes.io/hostname', operator: 'In', values: ['node-4'] }] },
              ],
            },
          },
        },
      },
      true,
    ],
    [
      'NotIn is not proof of anything here',
      {
        affinity: {
          nodeAffinity: {
            requiredDuringSchedulingIgnoredDuringExecution: {
              nodeSelectorTerms: [
                { matchExpressions: [{ key: 'kubernetes.io/hostname', operator: 'NotIn', values: ['node-1'] }] },
              ],
            },
          },
        },
      },
      false,
    ],
  ];
  for (const [name, spec, conflict] of cases) t.equal(placementConflict(p(spec), pv) !== undefined, conflict, name);
  t.equal(
    placementConflict(p({ nodeSelector: { 'kubernetes.io/hostname': 'node-2' } }), volume('no-affinity')),
    undefined,
    'a volume reachable from anywhere never conflicts',
  );
  t.end();
});
