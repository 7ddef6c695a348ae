// Reconcile (the I/O half): read the world from the informer caches, ask plan
// for the one next step, do it, and say when to look again. Creating what
// exists and deleting what is gone count as success; read-modify-writes carry
// a resourceVersion so a stale cache turns into a conflict, never a lost update.
import type {
  V1Deployment,
  V1Namespace,
  V1PersistentVolume,
  V1PersistentVolumeClaim,
  V1Pod,
  V1StatefulSet,
  V1StorageClass,
} from '@kubernetes/client-node';
import { ApiError, Informer, paths, type Kube } from '../src/kube.js';
import type { Logger } from '../src/logger.js';
import {
  ANNOTATION_BIND_NUDGED,
  ANNOTATION_MIGRATION,
  ANNOTATION_MIGRATION_UID,
  ANNOTATION_ORIGINAL_RECLAIM_POLICY,
  ANNOTATION_TARGET_CLASS,
  ANNOTATION_WORKLOAD,
  API_GROUP_VERSION,
  COMPONENT_COPY,
  FINALIZER,
  LABEL_COMPONENT,
  LABEL_MANAGED_BY,
  LABEL_NAMESPACE_ACTIVE,
  MANAGED_BY_VALUE,
  MIGRATION_KIND,
  sourceHelperClaimName,
  stagingClaimName,
} from '../src/names.js';
import { copyFidelityFor } from '../src/pod-security.js';
import { phaseOf, type Phase, type VolumeMigration, type VolumeMigrationStatus } from '../src/volume-migration.js';
import { lastRunnerLine } from '../src/runner-protocol.js';
import { buildCopyPod, copyPodNameFor, pinnedNode } from './copy-pod.js';
import { CopySlots, copyPassOf, copySlotPods, passAboutToStart, type CopyPodState } from './copy-slots.js';
import type { EventRecorder } from './events.js';
import { liftGate } from './gates.js';
import { conditionsFor } from './conditions.js';
import type { ControllerMetrics } from './metrics.js';
import { plan, progressText, type EventNote, type Step } from './plan.js';
import { isBoundToTarget } from './plan/binding.js';
import {
  PASSES,
  isStored,
  storedOrNone,
  type ControllerSettings,
  type Pass,
  type RunnerProgress,
  type RunnerSummary,
  type Stored,
  type World,
} from './world.js';

export interface Caches {
  /** Annotated StatefulSets carry a standing policy for their claims (src/workload-policy.ts). */
  statefulSets: Informer<V1StatefulSet>;
  /** Annotated Deployments: a policy for the claims their pods mount. */
  deployments: Informer<V1Deployment>;
  migrations: Informer<VolumeMigration>;
  claims: Informer<V1PersistentVolumeClaim>;
  volumes: Informer<V1PersistentVolume>;
  pods: Informer<V1Pod>;
  classes: Informer<V1StorageClass>;
  namespaces: Informer<V1Namespace>;
}

/** The informers the controller plans from, not started: one per kind it reads. */
export function createCaches(kube: Kube): Caches {
  return {
    migrations: new Informer<VolumeMigration>(kube, paths.migrations()),
    claims: new Informer<V1PersistentVolumeClaim>(kube, paths.claims()),
    volumes: new Informer<V1PersistentVolume>(kube, paths.volumes()),
    pods: new Informer<V1Pod>(kube, paths.pods()),
    classes: new Informer<V1StorageClass>(kube, paths.storageClasses()),
    namespaces: new Informer<V1Namespace>(kube, paths.namespaces()),
    statefulSets: new Informer<V1StatefulSet>(kube, paths.statefulSets()),
    deployments: new Informer<V1Deployment>(kube, paths.deployments()),
  };
}

export interface ReconcileResult {
  requeueAfterMs?: number;
  step: Step['kind'];
}

/** How often progress goes into the status while a copy runs (the issue asks for at least every 10 s). */
const PROGRESS_EVERY_MS = 2000;
/** How long to leave a PodDisruptionBudget that refused an eviction before asking again. */
const EVICTION_RETRY_MS = 5000;

/** A copy pod pvshift made: its labels, and a controller owner whose uid its label and name carry (labels alone anyone can set). */
export function isCopyPod(pod: V1Pod): boolean {
  const labels = pod.metadata?.labels ?? {};
  return (
    labels[LABEL_MANAGED_BY] === MANAGED_BY_VALUE &&
    labels[LABEL_COMPONENT] === COMPONENT_COPY &&
    copyPassOf(pod) !== undefined
  );
}

/**
 * The one way pvshift writes a migration's status: a merge patch of the status
 * subresource, guarded by the resourceVersion the writer decided on (in a merge
 * patch it is a precondition), so a decision made on a stale view gets 409 and
 * is made again, never written over a newer one.
 */
export async function writeStatus(kube: Kube, m: VolumeMigration, status: VolumeMigrationStatus): Promise<void> {
  const patch = { metadata: { resourceVersion: m.metadata.resourceVersion }, status };
  await kube.patch(`${paths.migrations(m.metadata.namespace, m.metadata.name)}/status`, patch, 'merge');
}

/** How soon to try again when plan started a copy whose slot went to another migration meanwhile. */
const COPY_SLOT_RETRY_MS = 2000;

function mountsClaim(pod: V1Pod, claimName: string): boolean {
  return (pod.spec?.volumes ?? []).some((v) => v.persistentVolumeClaim?.claimName === claimName);
}

export class Reconciler {
  private readonly lastProgressAt = new Map<string, number>();
  /** Copy pods admission refused, by migration key: the same pod would be refused again. */
  private readonly refused = new Map<string, { pass: Pass; message: string }>();

  constructor(
    private readonly kube: Kube,
    private readonly caches: Caches,
    private readonly settings: ControllerSettings,
    private readonly events: EventRecorder,
    private readonly metrics: ControllerMetrics,
    private readonly logger: Logger,
    /** Shared by every worker of the process: the caps hold across them. */
    private readonly slots: CopySlots = new CopySlots({
      maxConcurrent: settings.maxConcurrentCopies,
      maxPerNode: settings.maxCopiesPerNode,
    }),
  ) {}

  async reconcile(key: string): Promise<ReconcileResult> {
    const migration = this.caches.migrations.get(key);
    if (!migration) {
      this.lastProgressAt.delete(key);
      this.refused.delete(key);
      return { step: 'done' };
    }
    const observing = Date.now();
    const world = await this.observe(migration);
    const step = plan(world);
    const log = this.logger.child({ migration: key });
    const started = Date.now();
    if (step.kind !== 'wait' && step.kind !== 'done')
      log.info({ step: step.kind, phase: migration.status?.phase ?? 'Pending' }, 'step');
    else if (step.kind === 'wait')
      log.debug({ reason: step.reason, afterMs: step.afterMs, observeMs: started - observing }, 'wait');
    const backOffMs = await this.execute(world, step);
    if (step.kind !== 'wait' && step.kind !== 'done')
      log.debug({ step: step.kind, observeMs: started - observing, ms: Date.now() - started }, 'step done');
    if (step.kind === 'done') return { step: step.kind };
    if (step.kind === 'wait') return { step: step.kind, requeueAfterMs: step.afterMs };
    // Act again soon: the informers bring the effect of this step, usually first.
    return { step: step.kind, requeueAfterMs: backOffMs ?? 250 };
  }

  /**
   * The staging claim, from the cache; while the copy runs or binds, a miss is
   * asked of the API server before plan reads it as deleted and rolls back (seen
   * once on a busy real node, cause not found: a cache is no authority for that).
   */
  private async confirmedStagingClaim(migration: VolumeMigration): Promise<V1PersistentVolumeClaim | undefined> {
    const ns = migration.metadata.namespace;
    const name = stagingClaimName(migration.metadata.uid ?? '');
    const cached = this.caches.claims.get(`${ns}/${name}`);
    const phase = migration.status?.phase;
    if (cached || (phase !== 'Populating' && phase !== 'Binding')) return cached;
    // Once the replacement is bound to the copy, plan deletes the staging claim and
    // no longer reads a miss as a loss: asking the server each pass only slows the end.
    if (phase === 'Binding' && isBoundToTarget(this.caches.claims.get(`${ns}/${migration.spec.claimName}`), migration))
      return cached;
    // A list by name: the chart grants list and watch on claims, not get.
    const live = (
      await this.kube.list<V1PersistentVolumeClaim>(paths.claims(ns), { fieldSelector: `metadata.name=${name}` })
    ).items[0];
    if (live) {
      this.logger.warn(
        { migration: `${ns}/${migration.metadata.name}`, claim: name },
        'the claims cache lacks the staging claim the API server has; using the live one',
      );
    }
    return live;
  }

  /** Everything plan needs, from the caches (plus the copy pod's log when one runs); every object named and with a uid. */
  async observe(migration: VolumeMigration): Promise<World> {
    const ns = migration.metadata.namespace;
    const uid = migration.metadata.uid ?? '';
    const status = migration.status ?? {};
    const claim = storedOrNone(this.caches.claims.get(`${ns}/${migration.spec.claimName}`));
    const sourceName = status.sourceVolumeName ?? claim?.spec?.volumeName;
    const sourceVolume = sourceName ? storedOrNone(this.caches.volumes.get(sourceName)) : undefined;
    const targetClass = this.caches.classes.get(migration.spec.targetStorageClassName);
    const stagingClaim = storedOrNone(await this.confirmedStagingClaim(migration));
    const stagingVolumeName = status.targetVolumeName ?? stagingClaim?.spec?.volumeName;
    const stagingVolume = stagingVolumeName ? storedOrNone(this.caches.volumes.get(stagingVolumeName)) : undefined;
    const helperClaim = storedOrNone(this.caches.claims.get(`${ns}/${sourceHelperClaimName(uid)}`));
    const pods = this.caches.pods.listIn(ns);
    const copyPods: Partial<Record<Pass, Stored<V1Pod>>> = {};
    for (const pass of PASSES) {
      const pod = storedOrNone(this.caches.pods.get(`${ns}/${copyPodNameFor(uid, pass)}`));
      if (pod) copyPods[pass] = pod;
    }
    const namespace = this.caches.namespaces.get(ns);
    const refused = this.refused.get(`${ns}/${migration.metadata.name}`);
    const world: World = {
      now: new Date(),
      migration,
      ...(claim ? { claim } : {}),
      ...(sourceVolume ? { sourceVolume } : {}),
      ...(targetClass ? { targetClass } : {}),
      ...(stagingClaim ? { stagingClaim } : {}),
      ...(stagingVolume ? { stagingVolume } : {}),
      ...(helperClaim ? { helperClaim } : {}),
      consumers: pods.filter(isStored).filter((p) => !isCopyPod(p) && mountsClaim(p, migration.spec.claimName)),
      copyPods,
      siblings: this.caches.migrations.listIn(ns),
      movedReplicasReady: this.movedReplicasReady(migration, pods),
      namespaceLabelled: namespace?.metadata?.labels?.[LABEL_NAMESPACE_ACTIVE] === 'true',
      workloadPolicyActive: this.caches.statefulSets
        .listIn(ns)
        .some((s) => !!s.metadata?.annotations?.[ANNOTATION_TARGET_CLASS]),
      namespaceTerminating: !!namespace?.metadata?.deletionTimestamp || namespace?.status?.phase === 'Terminating',
      fidelity: copyFidelityFor(ns, namespace?.metadata?.labels),
      ...(refused ? { copyPodRefused: refused } : {}),
      copySlotFree: true,
      yieldCopySlot: false,
      settings: this.settings,
    };
    const active = PASSES.map((p) => copyPods[p]).find((p) => p !== undefined);
    if (active && (active.status?.phase === 'Running' || active.status?.phase === 'Pending')) {
      world.progress = await this.readProgress(active);
    } else if (active) {
      world.summary = await this.readSummary(active);
    }
    if (!active) world.copySlotFree = this.hasCopySlot(world);
    else world.yieldCopySlot = this.mustYieldCopySlot(active, world.now);
    return world;
  }

  /**
   * Asks for a slot for the copy this migration would start next, and takes it
   * if one is free: check and reservation are one synchronous call, so two
   * workers never both take the last slot. The controller releases what the
   * step did not use; a created pod holds it until the informer shows the pod.
   */
  private hasCopySlot(world: World, pass: Pass | undefined = passAboutToStart(world)): boolean {
    // No copy is next: nothing to reserve. Should plan start one after all, execute asks for it.
    if (!pass) return true;
    const m = world.migration;
    const node = pinnedNode(world, pass);
    const request = {
      key: `${m.metadata.namespace}/${copyPodNameFor(m.metadata.uid ?? '', pass)}`,
      migration: `${m.metadata.namespace}/${m.metadata.name}`,
      pass,
      ...(node ? { node } : {}),
    };
    return this.slots.tryReserve(request, this.ownCopyPods(), world.now.getTime());
  }

  /** Whether this migration's running pre-sync must hand its slot to a final copy (or the cap was lowered). */
  private mustYieldCopySlot(pod: V1Pod, now: Date): boolean {
    if (copyPassOf(pod) !== 'presync' || pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed')
      return false;
    return this.slots.mustYield(`${pod.metadata?.namespace}/${pod.metadata?.name}`, this.ownCopyPods(), now.getTime());
  }

  private ownCopyPods(): CopyPodState[] {
    return copySlotPods(this.caches.pods.list(), this.caches.migrations.list());
  }

  private async readProgress(pod: V1Pod): Promise<RunnerProgress | undefined> {
    const text = await this.podLog(pod, 20);
    return text ? lastRunnerLine<RunnerProgress>(text, 'progress') : undefined;
  }

  /** The runner's summary: the termination message first, the log's last summary line else. */
  private async readSummary(pod: V1Pod): Promise<RunnerSummary | undefined> {
    const message = pod.status?.containerStatuses?.[0]?.state?.terminated?.message;
    const fromMessage = message ? lastRunnerLine<RunnerSummary>(message, 'summary') : undefined;
    if (fromMessage) return fromMessage;
    const text = await this.podLog(pod, 50);
    return text ? lastRunnerLine<RunnerSummary>(text, 'summary') : undefined;
  }

  private async podLog(pod: V1Pod, tailLines: number): Promise<string | undefined> {
    try {
      const path = `${paths.pods(pod.metadata?.namespace, pod.metadata?.name)}/log?container=copy&tailLines=${tailLines}`;
      const response = await this.kube.raw('GET', path);
      return response.status === 200 ? response.body : undefined;
    } catch {
      return undefined;
    }
  }

  private async note(world: World, event: EventNote | undefined): Promise<void> {
    if (!event) return;
    const m = world.migration;
    const claim = world.claim;
    // Both at once: each is one API call the next step would otherwise wait for
    // (a step with an event returns only once it is recorded; neither ever throws).
    await Promise.all([
      this.events.record(
        {
          apiVersion: API_GROUP_VERSION,
          kind: MIGRATION_KIND,
          name: m.metadata.name,
          namespace: m.metadata.namespace,
          uid: m.metadata.uid ?? '',
        },
        event.type,
        event.reason,
        event.message,
      ),
      claim
        ? this.events.record(
            {
              apiVersion: 'v1',
              kind: 'PersistentVolumeClaim',
              name: claim.metadata.name,
              namespace: m.metadata.namespace,
              uid: claim.metadata.uid,
            },
            event.type,
            event.reason,
            event.message,
          )
        : undefined,
    ]);
  }

  private migrationPath(m: VolumeMigration): string {
    return paths.migrations(m.metadata.namespace, m.metadata.name);
  }

  private patchStatus(m: VolumeMigration, status: VolumeMigrationStatus): Promise<void> {
    return writeStatus(this.kube, m, status);
  }

  /** Does the step; returns a delay where the cluster said "not now" (a PodDisruptionBudget). */
  private async execute(world: World, step: Step): Promise<number | undefined> {
    const m = world.migration;
    const ns = m.metadata.namespace;
    switch (step.kind) {
      case 'done':
        return;
      case 'addFinalizer':
      case 'removeFinalizer': {
        const finalizers = (m.metadata.finalizers ?? []).filter((f) => f !== FINALIZER);
        if (step.kind === 'addFinalizer') finalizers.push(FINALIZER);
        await this.kube.patch(
          this.migrationPath(m),
          { metadata: { resourceVersion: m.metadata.resourceVersion, finalizers } },
          'merge',
        );
        return;
      }
      case 'setPhase': {
        const status: VolumeMigrationStatus = {
          ...step.status,
          phase: step.phase,
          observedGeneration: m.metadata.generation ?? 0,
          conditions: conditionsFor(
            m.status?.conditions ?? [],
            step.phase,
            step.event,
            world.now,
            step.status.copyFidelity ?? m.status?.copyFidelity,
          ),
        };
        if (!status.message) status.message = step.event.message;
        await this.patchStatus(m, status);
        await this.note(world, step.event);
        this.observeMetrics(m, step.phase, status);
        return;
      }
      case 'patchStatus': {
        await this.patchStatus(m, step.status);
        await this.note(world, step.event);
        return;
      }
      case 'retainVolume': {
        const pv = this.caches.volumes.get(step.volumeName);
        const annotations: Record<string, string> = {
          [ANNOTATION_MIGRATION]: step.migrationKey,
          [ANNOTATION_MIGRATION_UID]: step.migrationUid,
        };
        // Record the policy to restore only once: a second pass would record Retain.
        if (!pv?.metadata?.annotations?.[ANNOTATION_ORIGINAL_RECLAIM_POLICY]) {
          annotations[ANNOTATION_ORIGINAL_RECLAIM_POLICY] = step.originalPolicy;
        }
        // resourceVersion in a merge patch is a precondition: a PV changed since the plan read it is a 409, not an overwrite.
        await this.kube.patch(
          paths.volumes(step.volumeName),
          {
            metadata: { resourceVersion: step.resourceVersion, annotations },
            spec: { persistentVolumeReclaimPolicy: 'Retain' },
          },
          'merge',
        );
        await this.note(world, step.event);
        return;
      }
      case 'restoreVolumePolicy':
        // The volume is the user's again: its policy, and none of pvshift's marks.
        await this.kube.patch(
          paths.volumes(step.volumeName),
          {
            metadata: {
              resourceVersion: step.resourceVersion,
              annotations: {
                [ANNOTATION_ORIGINAL_RECLAIM_POLICY]: null,
                [ANNOTATION_MIGRATION_UID]: null,
                [ANNOTATION_MIGRATION]: null,
              },
            },
            spec: { persistentVolumeReclaimPolicy: step.policy },
          },
          'merge',
        );
        return;
      case 'setVolumePolicy':
        await this.kube.patch(
          paths.volumes(step.volumeName),
          { metadata: { resourceVersion: step.resourceVersion }, spec: { persistentVolumeReclaimPolicy: step.policy } },
          'merge',
        );
        await this.note(world, step.event);
        return;
      case 'annotateVolume':
        await this.kube.patch(
          paths.volumes(step.volumeName),
          { metadata: { resourceVersion: step.resourceVersion, annotations: step.annotations } },
          'merge',
        );
        return;
      case 'disownClaim':
        await this.kube.patch(
          paths.claims(ns, step.name),
          [
            { op: 'test', path: '/metadata/uid', value: step.uid },
            { op: 'test', path: '/metadata/resourceVersion', value: step.resourceVersion },
            { op: 'remove', path: '/metadata/ownerReferences' },
          ],
          'json',
        );
        return;
      case 'nudgeClaim':
        // resourceVersion in a merge patch is a precondition: only the claim plan saw (its name carries our uid).
        await this.kube.patch(
          paths.claims(ns, step.name),
          {
            metadata: {
              resourceVersion: step.resourceVersion,
              annotations: { [ANNOTATION_BIND_NUDGED]: world.now.toISOString() },
            },
          },
          'merge',
        );
        return;
      case 'labelNamespace':
        await this.kube.patch(
          paths.namespaces(ns),
          { metadata: { labels: { [LABEL_NAMESPACE_ACTIVE]: step.active ? 'true' : null } } },
          'merge',
        );
        return;
      case 'createClaim':
        if (await this.createIfAbsent(paths.claims(ns), step.claim)) await this.note(world, step.event);
        return;
      case 'deleteClaim':
        if (await this.kube.delete(paths.claims(ns, step.name), { preconditions: { uid: step.uid } }))
          await this.note(world, step.event);
        return;
      case 'createCopyPod': {
        const slot = `${ns}/${copyPodNameFor(m.metadata.uid ?? '', step.pass)}`;
        // observe reserved a slot for the pass it expected; for any other, take one now or wait.
        if (!this.slots.isReserved(slot) && !this.hasCopySlot(world, step.pass)) return COPY_SLOT_RETRY_MS;
        let outcome: 'created' | 'exists' | 'refused';
        try {
          outcome = await this.createCopyPod(world, step.pass);
        } catch (e: unknown) {
          this.slots.release(slot);
          throw e;
        }
        // A pod that exists holds the slot until the informer shows it; a refused one holds nothing.
        if (outcome === 'refused') this.slots.release(slot);
        else this.slots.created(slot, Date.now());
        if (outcome === 'created') {
          // The progress shown is the new pass's from now on, not the last pass's end.
          await this.patchStatus(m, {
            progress: null,
            progressText: `starting the ${step.pass} copy`,
          } as unknown as VolumeMigrationStatus);
          await this.note(world, step.event);
        }
        return;
      }
      case 'deleteCopyPod':
        if (await this.kube.delete(paths.pods(ns, step.name))) await this.note(world, step.event);
        return;
      case 'rebindVolume':
        await this.kube.patch(
          paths.volumes(step.volumeName),
          [
            { op: 'test', path: '/metadata/resourceVersion', value: step.resourceVersion },
            { op: 'add', path: '/spec/claimRef', value: step.claimRef },
          ],
          'json',
        );
        await this.note(world, step.event);
        return;
      case 'evictPods':
        for (const name of step.pods) {
          try {
            const eviction = { apiVersion: 'policy/v1', kind: 'Eviction', metadata: { name, namespace: ns } };
            await this.kube.create(`${paths.pods(ns, name)}/eviction`, eviction);
          } catch (e: unknown) {
            // 429: a PodDisruptionBudget says not now. That is the point of Evict: wait.
            if (e instanceof ApiError && e.code === 429) {
              const message = `eviction of ${name} refused for now by a PodDisruptionBudget; retrying`;
              if (m.status?.message !== message) await this.patchStatus(m, { message });
              return EVICTION_RETRY_MS;
            }
            if (!(e instanceof ApiError && e.code === 404)) throw e;
          }
        }
        await this.note(world, step.event);
        return;
      case 'liftGates':
        for (const name of step.pods) {
          const pod = this.caches.pods.get(`${ns}/${name}`);
          if (pod) await liftGate(this.kube, pod);
        }
        await this.note(world, step.event);
        return;
      case 'wait':
        await this.recordWait(world, step);
        return;
    }
  }

  /** Creates the pass's copy pod; a refusal by admission is remembered for plan (it would be refused again). */
  private async createCopyPod(world: World, pass: Pass): Promise<'created' | 'exists' | 'refused'> {
    const key = `${world.migration.metadata.namespace}/${world.migration.metadata.name}`;
    try {
      return (await this.createIfAbsent(paths.pods(world.migration.metadata.namespace), buildCopyPod(world, pass)))
        ? 'created'
        : 'exists';
    } catch (e: unknown) {
      // 403 on a create we have RBAC for is admission (Pod Security says "violates PodSecurity"); 422/400 a policy webhook.
      const byAdmission = /violates PodSecurity|admission webhook|denied the request|denied request/i;
      if (e instanceof ApiError && e.code === 403 && byAdmission.test(e.message)) {
        this.refused.set(key, { pass, message: e.message });
        return 'refused';
      }
      throw e;
    }
  }

  private async createIfAbsent(path: string, body: unknown): Promise<boolean> {
    try {
      await this.kube.create(path, body);
      return true;
    } catch (e: unknown) {
      if (e instanceof ApiError && e.code === 409) return false;
      throw e;
    }
  }

  /** A wait still shows: the message changes, and a running copy reports progress. */
  private async recordWait(world: World, step: Extract<Step, { kind: 'wait' }>): Promise<void> {
    const m = world.migration;
    const key = `${m.metadata.namespace}/${m.metadata.name}`;
    const status: VolumeMigrationStatus = {};
    const news = m.status?.message !== step.message;
    if (news) status.message = step.message;
    const last = this.lastProgressAt.get(key) ?? 0;
    if (step.progress && world.now.getTime() - last >= PROGRESS_EVERY_MS) {
      const p = step.progress;
      const before = m.status?.progress;
      const moved =
        !before || before.bytesDone !== p.bytesDone || before.filesDone !== p.filesDone || !before.advancedAt;
      status.progress = {
        bytesDone: p.bytesDone,
        bytesTotal: p.bytesTotal,
        filesDone: p.filesDone,
        filesTotal: p.filesTotal,
        bytesPerSecond: p.bytesPerSecond,
        ...(typeof p.etaSeconds === 'number' ? { etaSeconds: p.etaSeconds } : {}),
        updatedAt: world.now.toISOString(),
        advancedAt: moved ? world.now.toISOString() : before.advancedAt!,
      };
      status.progressText = progressText(p);
    }
    if (Object.keys(status).length === 0) return;
    try {
      await this.patchStatus(m, status);
      if (status.progress) this.lastProgressAt.set(key, world.now.getTime());
    } catch (e: unknown) {
      // A conflict on a progress write is harmless: the next pass writes again.
      if (!(e instanceof ApiError && e.code === 409)) throw e;
      return;
    }
    // Once per new message: a wait repeats every few seconds, its event must not.
    if (news) await this.note(world, step.event);
  }

  /**
   * For a migration of a StatefulSet's policy: whether every replica whose
   * migration of the same workload has Succeeded runs Ready on its new volume
   * (the next replica is cut over only then, as a StatefulSet rollout does).
   */
  private movedReplicasReady(migration: VolumeMigration, pods: V1Pod[]): boolean {
    const workload = migration.metadata.annotations?.[ANNOTATION_WORKLOAD];
    if (!workload) return true;
    const ns = migration.metadata.namespace;
    const moved = this.caches.migrations
      .listIn(ns)
      .filter((m) => m.metadata.annotations?.[ANNOTATION_WORKLOAD] === workload && phaseOf(m) === 'Succeeded');
    return moved.every((m) => {
      const users = pods.filter((p) => !isCopyPod(p) && mountsClaim(p, m.spec.claimName));
      return (
        users.length > 0 &&
        users.every((p) => (p.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True'))
      );
    });
  }

  private observeMetrics(m: VolumeMigration, phase: Phase, status: VolumeMigrationStatus): void {
    if (phase === 'Succeeded') {
      for (const copy of m.status?.copies ?? []) {
        this.metrics.bytesCopied.inc({ pass: copy.pass }, copy.bytesTransferred);
        this.metrics.copySeconds.observe({ pass: copy.pass }, copy.seconds);
      }
      if (status.downtimeSeconds !== undefined) this.metrics.downtimeSeconds.observe(status.downtimeSeconds);
    }
  }
}
