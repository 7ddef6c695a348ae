// The populator controller: informers on claims, volumes, pods, migrations,
// storage classes and namespaces; a work queue of typed keys (work-key.ts):
// migrations to reconcile, claims whose annotation shortcut to apply, pods
// whose orphaned gate to lift; workers that do each key's writes, one worker
// per key, with backoff; leader election so two replicas are safe; graceful
// shutdown. Event handlers and the requeue timer only enqueue.
import { hostname } from 'node:os';
import type { V1Deployment, V1PersistentVolumeClaim, V1Pod, V1StatefulSet } from '@kubernetes/client-node';
import type { Registry } from 'prom-client';
import type { Config } from '../src/config.js';
import { apiMessage, classifyApiError, errorMessage, TerminalError } from '../src/errors.js';
import { ApiError, Informer, keyOf, paths, type Kube } from '../src/kube.js';
import type { Logger } from '../src/logger.js';
import {
  ANNOTATION_MIGRATION,
  ANNOTATION_RETRY,
  ANNOTATION_TARGET_CLASS,
  ANNOTATION_WORKLOAD,
  API_GROUP_VERSION,
  LABEL_MIGRATION_UID,
  LABEL_NAMESPACE_ACTIVE,
  MIGRATION_KIND,
  MIGRATION_PLURAL,
} from '../src/names.js';
import { Reason } from '../src/reasons.js';
import { isTerminal, phaseOf, type VolumeMigration } from '../src/volume-migration.js';
import { withCondition, type ConditionNote } from './conditions.js';
import { copyPodNameFor } from './copy-pod.js';
import { CopySlots, copyPassOf } from './copy-slots.js';
import { EventRecorder } from './events.js';
import { liftGate } from './gates.js';
import { LeaderElector } from './leader-election.js';
import { createControllerMetrics } from './metrics.js';
import { createCaches, Reconciler, writeStatus } from './reconcile.js';
import { isOrphanGated } from './orphans.js';
import { deploymentPolicyOf, policyProblem, workloadPolicyOf } from '../src/workload-policy.js';
import { ABORT_PATCH, annotationSignature, INVALID_ANNOTATION_REASON, shortcutAction } from './shortcut.js';
import { WorkQueue } from './queue.js';
import {
  cacheKeyOf,
  formatWorkKey,
  parseWorkKey,
  workKeyOf,
  type WorkKey,
  type WorkKeyText,
  type WorkKind,
} from './work-key.js';
import type { ControllerSettings } from './world.js';

export interface ControllerOptions {
  settings: ControllerSettings;
  workers: number;
  /** How often every migration is looked at again though nothing changed, in ms. */
  requeueMs: number;
  leaderElection?: {
    namespace: string;
    name: string;
    leaseDurationMs: number;
    renewMs: number;
    retryMs: number;
    identity?: string;
  };
  register: Registry;
  /**
   * Fault injection for the crash tests (--fault-crash-after-steps): the process
   * SIGKILLs itself right after its N-th step that changed something, with no
   * cleanup, as a node failure or an OOM kill would. 0 or absent: never.
   */
  crashAfterSteps?: number;
}

export interface ControllerHandle {
  /** Resolves once the caches have synced and this replica leads. */
  ready: Promise<void>;
  stop(): Promise<void>;
}

/** What the planner and the copy pods need of the controller's configuration (src/config.ts holds every default). */
export function controllerSettings(c: Config['controller']): ControllerSettings {
  return {
    copyImage: c.copyImage,
    copyNodeSelector: c.copyNodeSelector,
    copyTolerations: c.copyTolerations,
    copyResources: c.copyResources,
    ...(c.copyPriorityClass ? { copyPriorityClassName: c.copyPriorityClass } : {}),
    maxConcurrentCopies: c.maxConcurrentCopies,
    maxCopiesPerNode: c.maxCopiesPerNode,
    copyAttempts: c.copyAttempts,
    copyBandwidthLimitKiBps: c.copyBandwidthLimitKiBps,
    copyStallSeconds: c.copyStallSeconds,
    sizeHeadroom: c.sizeHeadroom,
  };
}

export function startController(kube: Kube, options: ControllerOptions, logger: Logger): ControllerHandle {
  const caches = createCaches(kube);
  const identity = options.leaderElection?.identity ?? `${hostname()}_${process.pid}`;
  const metrics = createControllerMetrics(options.register, () => caches.migrations.list());
  const recorder = new EventRecorder(kube, logger, identity);
  // One slot table for every worker: the copy caps hold across them.
  const slots = new CopySlots({
    maxConcurrent: options.settings.maxConcurrentCopies,
    maxPerNode: options.settings.maxCopiesPerNode,
  });
  const reconciler = new Reconciler(kube, caches, options.settings, recorder, metrics, logger, slots);
  const queue = new WorkQueue<WorkKeyText>();
  let leading = !options.leaderElection;
  let stopping = false;
  const elector = options.leaderElection
    ? new LeaderElector(kube, { ...options.leaderElection, identity }, logger)
    : undefined;

  const enqueueMigration = (m: VolumeMigration) => queue.add(workKeyOf('migration', m));
  const enqueueNamespace = (namespace: string | undefined) => {
    if (!namespace) return;
    for (const m of caches.migrations.listIn(namespace)) enqueueMigration(m);
  };
  const enqueueByUid = (uid: string | undefined) => {
    if (!uid) return;
    const m = caches.migrations.list().find((x) => x.metadata.uid === uid);
    if (m) enqueueMigration(m);
  };
  const enqueueClaims = () => caches.claims.list().forEach((claim) => queue.add(workKeyOf('claim', claim)));
  /** Pods that wait for a migration that no longer exists (orphans.ts): their gate is to be lifted. */
  const enqueueOrphans = () => {
    const now = new Date();
    const migrations = caches.migrations.list();
    for (const pod of caches.pods.list()) if (isOrphanGated(pod, migrations, now)) queue.add(workKeyOf('pod', pod));
  };

  // The annotation shortcut's refusals, by claim uid: the annotation values
  // (annotationSignature) pvshift could not act on and has said so about. The
  // same values are neither reported nor tried again; new values are. A claim
  // event and a requeue never create (and get refused, and report) twice at once:
  // the queue hands a claim's key to one worker at a time.
  const refusedAnnotations = new Map<string, string>();

  /** An annotation pvshift cannot act on: an Event on the claim, once per claim and value. */
  const refuseAnnotation = async (
    claim: V1PersistentVolumeClaim,
    signature: string,
    message: string,
  ): Promise<void> => {
    const uid = claim.metadata?.uid ?? '';
    if (refusedAnnotations.get(uid) === signature) return;
    refusedAnnotations.set(uid, signature);
    logger.warn({ claim: keyOf(claim), reason: message }, 'cannot act on the migration annotation of the claim');
    await recorder.record(
      {
        apiVersion: 'v1',
        kind: 'PersistentVolumeClaim',
        name: claim.metadata?.name ?? '',
        namespace: claim.metadata?.namespace ?? '',
        uid,
      },
      'Warning',
      INVALID_ANNOTATION_REASON,
      message,
    );
  };

  /**
   * A namespace with an annotated StatefulSet keeps the label that scopes the
   * webhooks: the claim of its next replica must reach the webhook to be created
   * on the target (finish.ts leaves the label while the policy stands).
   */
  const labelForPolicy = async (namespace: string): Promise<void> => {
    if (caches.namespaces.get(namespace)?.metadata?.labels?.[LABEL_NAMESPACE_ACTIVE] === 'true') return;
    await kube.patch(paths.namespaces(namespace), { metadata: { labels: { [LABEL_NAMESPACE_ACTIVE]: 'true' } } });
    logger.info({ namespace }, 'a StatefulSet policy stands here: the webhooks now see the namespace');
  };

  // Workloads whose policy annotations were said to be wrong, by uid: the words
  // said (they quote the values), so a value is reported once and a new one again.
  const refusedPolicies = new Map<string, string>();

  /** A StatefulSet's or Deployment's key: a Warning on it when its policy annotations cannot be acted on. */
  const checkPolicy = async (kind: 'StatefulSet' | 'Deployment', w: V1StatefulSet | V1Deployment): Promise<void> => {
    const uid = w.metadata?.uid ?? '';
    const problem = policyProblem(kind, w, (name) => caches.classes.get(name) !== undefined);
    if (!problem) {
      refusedPolicies.delete(uid);
      return;
    }
    if (refusedPolicies.get(uid) === problem) return;
    const namespace = w.metadata?.namespace ?? '';
    const name = w.metadata?.name ?? '';
    logger.warn(
      { workload: `${kind}/${namespace}/${name}`, reason: problem },
      'cannot act on the policy of a workload',
    );
    await recorder.record(
      { apiVersion: 'apps/v1', kind, name, namespace, uid },
      'Warning',
      Reason.InvalidWorkloadPolicy,
      problem,
    );
    refusedPolicies.set(uid, problem);
  };

  /**
   * An Event on the StatefulSet or Deployment (`Kind/name`) whose policy moved one
   * of its claims. With the workload's uid: `kubectl describe` selects the Events
   * of an object by involvedObject.uid too, and shows none without it.
   */
  const recordOnWorkload = async (namespace: string, workload: string, reason: string, message: string) => {
    const [kind = '', name = ''] = workload.split('/');
    const cache = kind === 'StatefulSet' ? caches.statefulSets : kind === 'Deployment' ? caches.deployments : undefined;
    const uid = cache?.get(`${namespace}/${name}`)?.metadata?.uid;
    await recorder.record(
      { apiVersion: 'apps/v1', kind, name, namespace, ...(uid ? { uid } : {}) },
      'Normal',
      reason,
      message,
    );
  };

  /**
   * A claim's key: what its annotation, or the policy of the StatefulSet that made
   * it, asks for. Failures other than the user's to fix are thrown, for the queue's backoff.
   */
  const applyShortcut = async (claim: V1PersistentVolumeClaim): Promise<void> => {
    const uid = claim.metadata?.uid ?? '';
    const ns = claim.metadata?.namespace;
    const policy =
      workloadPolicyOf(claim, caches.statefulSets.listIn(ns ?? '')) ??
      deploymentPolicyOf(claim, caches.deployments.listIn(ns ?? ''));
    const action = shortcutAction(claim, caches.migrations.listIn(ns ?? ''), policy);
    const signature = annotationSignature(claim, policy);
    if (policy?.standing && ns) await labelForPolicy(ns);
    if (!claim.metadata?.annotations?.[ANNOTATION_TARGET_CLASS] && !policy) refusedAnnotations.delete(uid);
    // Refused before with these very values: the API server would refuse again.
    if (action.kind === 'create' && refusedAnnotations.get(uid) === signature) return;
    try {
      if (action.kind === 'invalid') {
        await refuseAnnotation(claim, signature, action.message);
      } else if (action.kind === 'create') {
        await kube.create(paths.migrations(ns), action.migration);
        logger.info(
          { claim: keyOf(claim), target: action.migration.spec.targetStorageClassName, workload: policy?.workload },
          'created VolumeMigration from the claim annotation',
        );
        if (policy && ns) {
          const message =
            `VolumeMigration ${action.migration.metadata.name} moves claim ${claim.metadata?.name} ` +
            `to ${action.migration.spec.targetStorageClassName}`;
          await recordOnWorkload(ns, policy.workload, Reason.ReplicaMigrationCreated, message);
        }
      } else if (action.kind === 'replace') {
        await kube.delete(paths.migrations(ns, action.name));
        logger.info(
          { claim: keyOf(claim), old: action.name },
          'the annotation asks for a migration again: the finished one of the claim makes way',
        );
      } else if (action.kind === 'abort') {
        // Marked as withdrawn by the annotation, so annotating again starts over.
        // Guarded by the resourceVersion the decision was read at: the cache may lag
        // a cutover already begun (the original claim deleted: an abort now would roll
        // it back) or this very abort (a second Event); the 409 retries on fresh state.
        const seen = caches.migrations.get(`${ns}/${action.name}`)?.metadata.resourceVersion;
        const guarded = { ...ABORT_PATCH, metadata: { ...ABORT_PATCH.metadata, resourceVersion: seen } };
        await kube.patch(paths.migrations(ns, action.name), guarded, 'merge');
        logger.info({ claim: keyOf(claim) }, 'annotation removed before cutover: aborting');
        const workload = caches.migrations.get(`${ns}/${action.name}`)?.metadata.annotations?.[ANNOTATION_WORKLOAD];
        if (workload && ns) {
          const message = `the policy ended before claim ${claim.metadata?.name} was cut over: VolumeMigration ${action.name} withdrawn`;
          await recordOnWorkload(ns, workload, Reason.ReplicaMigrationWithdrawn, message);
        }
      }
    } catch (e: unknown) {
      if (action.kind === 'create' && e instanceof ApiError && (e.code === 422 || e.code === 400)) {
        // The CRD's validation refused what the annotation says (a class name that is
        // no object name, a size its pattern refuses): the user must change it.
        await refuseAnnotation(
          claim,
          signature,
          `the VolumeMigration for this claim was refused by the API server: ${apiMessage(e)}`,
        );
      } else if (action.kind === 'abort' || !(e instanceof ApiError && e.code === 409)) {
        throw e;
      }
    }
  };

  /** A pod's key: pvshift's gate lifted, if the pod still waits for a migration that no longer exists. */
  const releaseIfOrphaned = async (pod: V1Pod): Promise<void> => {
    if (!isOrphanGated(pod, caches.migrations.list(), new Date())) return;
    if (await liftGate(kube, pod))
      logger.warn({ pod: keyOf(pod) }, 'released a pod gated for a migration that no longer exists');
  };

  caches.migrations.on((type, m, old) => {
    if (type !== 'delete') enqueueMigration(m);
    // A record replaced for the annotation is gone: create its successor now, not at the next requeue.
    else queue.add(formatWorkKey({ kind: 'claim', namespace: m.metadata.namespace, name: m.spec.claimName }));
    // A replica of a workload's rollout moved on (cut over, finished): the next one's
    // turn may have come (rollout.ts), now rather than at its next look.
    const workload = m.metadata.annotations?.[ANNOTATION_WORKLOAD];
    if (workload && phaseOf(m) !== (old ? phaseOf(old) : undefined)) {
      for (const sibling of caches.migrations.listIn(m.metadata.namespace)) {
        if (sibling !== m && sibling.metadata.annotations?.[ANNOTATION_WORKLOAD] === workload)
          enqueueMigration(sibling);
      }
    }
  });
  // A policy set, changed or removed: every claim of the namespace is looked at again.
  const enqueueClaimsIn = (ns: string | undefined) => {
    for (const claim of caches.claims.listIn(ns ?? '')) queue.add(workKeyOf('claim', claim));
  };
  caches.statefulSets.on((type, set) => {
    enqueueClaimsIn(set.metadata?.namespace);
    if (type !== 'delete') queue.add(workKeyOf('statefulset', set));
    else refusedPolicies.delete(set.metadata?.uid ?? '');
  });
  caches.deployments.on((type, d) => {
    enqueueClaimsIn(d.metadata?.namespace);
    if (type !== 'delete') queue.add(workKeyOf('deployment', d));
    else refusedPolicies.delete(d.metadata?.uid ?? '');
  });
  caches.claims.on((type, claim) => {
    enqueueNamespace(claim.metadata?.namespace);
    if (type !== 'delete') queue.add(workKeyOf('claim', claim));
    else refusedAnnotations.delete(claim.metadata?.uid ?? '');
  });
  /**
   * A copy slot came free: the final copies waiting for one (their application
   * is down) ask again now, whatever their namespace, not at their next poll.
   */
  const enqueueFinalsWaiting = () => {
    for (const m of caches.migrations.list()) {
      if (m.status?.phase !== 'Populating') continue;
      const final = `${m.metadata.namespace}/${copyPodNameFor(m.metadata.uid ?? '', 'final')}`;
      if (!caches.pods.get(final)) enqueueMigration(m);
    }
  };
  caches.pods.on((type, pod, old) => {
    // The informer has (or had) this copy pod: from now on it, not a reservation, holds the slot.
    if (copyPassOf(pod)) {
      slots.seen(keyOf(pod));
      const finished = (p: V1Pod | undefined) => p?.status?.phase === 'Succeeded' || p?.status?.phase === 'Failed';
      if (type === 'delete' || (finished(pod) && !finished(old))) enqueueFinalsWaiting();
    }
    enqueueByUid(pod.metadata?.labels?.[LABEL_MIGRATION_UID]);
    if (
      pod.metadata?.annotations?.[ANNOTATION_MIGRATION] ||
      (pod.spec?.volumes ?? []).some((v) => v.persistentVolumeClaim)
    )
      enqueueNamespace(pod.metadata?.namespace);
  });
  caches.volumes.on((_type, pv) => enqueueNamespace(pv.spec?.claimRef?.namespace));
  caches.classes.on(() => {
    caches.migrations.list().forEach(enqueueMigration);
    // A class made or removed: a policy that names it is right or wrong now.
    for (const set of caches.statefulSets.list())
      if (set.metadata?.annotations?.[ANNOTATION_TARGET_CLASS]) queue.add(workKeyOf('statefulset', set));
    for (const d of caches.deployments.list())
      if (d.metadata?.annotations?.[ANNOTATION_TARGET_CLASS]) queue.add(workKeyOf('deployment', d));
  });
  for (const informer of Object.values(caches) as Informer<never>[]) {
    informer.onWatchError((e) => logger.warn({ err: errorMessage(e) }, 'watch failed; relisting'));
  }

  const crashAfter = options.crashAfterSteps ?? 0;
  let stepsDone = 0;

  /** A failing step shows on the migration (message), so a user sees why it does not move. */
  const reportFailure = async (key: string, error: unknown, message: string): Promise<void> => {
    // A conflict is a stale cache, not a failure (the next pass reads again), and a
    // finished migration's message is its outcome: neither is replaced by "retrying".
    if (error instanceof ApiError && error.code === 409) return;
    const m = caches.migrations.get(key);
    const text = `retrying: ${message}`.slice(0, 1024);
    if (!m || m.status?.message === text || isTerminal(phaseOf(m))) return;
    try {
      // Guarded: a view older than the step that finished the migration must not write over its outcome.
      await writeStatus(kube, m, { message: text });
    } catch {
      // Best effort: the log has it either way.
    }
  };

  /** A migration's key: one reconcile step; returns when to look again. */
  const reconcileMigration = async (key: string): Promise<number | undefined> => {
    const result = await reconciler.reconcile(key);
    if (crashAfter > 0 && result.step !== 'wait' && result.step !== 'done' && ++stepsDone >= crashAfter) {
      logger.warn({ migration: key, step: result.step }, 'fault injection: crashing after this step');
      process.kill(process.pid, 'SIGKILL');
    }
    return result.requeueAfterMs;
  };

  /** The writes one key stands for; returns when to look again, if at all. */
  const work = async (key: WorkKey): Promise<number | undefined> => {
    switch (key.kind) {
      case 'migration':
        return reconcileMigration(cacheKeyOf(key));
      case 'claim': {
        const claim = caches.claims.get(cacheKeyOf(key));
        if (claim) await applyShortcut(claim);
        return undefined;
      }
      case 'pod': {
        const pod = caches.pods.get(cacheKeyOf(key));
        if (pod) await releaseIfOrphaned(pod);
        return undefined;
      }
      case 'statefulset': {
        const set = caches.statefulSets.get(cacheKeyOf(key));
        if (set) await checkPolicy('StatefulSet', set);
        return undefined;
      }
      case 'deployment': {
        const d = caches.deployments.get(cacheKeyOf(key));
        if (d) await checkPolicy('Deployment', d);
        return undefined;
      }
    }
  };

  /** What failed, by key kind: the error's prefix and the log message. */
  const failures: Record<WorkKind, { what: string; log: string }> = {
    migration: { what: 'reconcile', log: 'reconcile failed' },
    claim: { what: 'annotation shortcut of claim', log: 'annotation shortcut failed' },
    pod: { what: 'release the orphaned gate of pod', log: 'could not release an orphaned gate' },
    statefulset: { what: 'check the policy of StatefulSet', log: 'policy check failed' },
    deployment: { what: 'check the policy of Deployment', log: 'policy check failed' },
  };

  type Keyed = VolumeMigration | V1PersistentVolumeClaim | V1Pod | V1StatefulSet | V1Deployment;
  /** The object a key stands for, from its cache. */
  const objectOf = (key: WorkKey): Keyed | undefined => {
    const cacheKey = cacheKeyOf(key);
    switch (key.kind) {
      case 'migration':
        return caches.migrations.get(cacheKey);
      case 'claim':
        return caches.claims.get(cacheKey);
      case 'pod':
        return caches.pods.get(cacheKey);
      case 'statefulset':
        return caches.statefulSets.get(cacheKey);
      case 'deployment':
        return caches.deployments.get(cacheKey);
    }
  };

  /**
   * Keys a terminal error stopped, with the mark of the object they stopped at
   * (parkMark): neither a requeue nor an event tries them again until the mark
   * moves. Retrying a request the API server refused for good only repeats the
   * refusal, its Event and its log line, every minute, for ever.
   */
  const parked = new Map<WorkKeyText, string>();
  /** A migration moves on a spec edit (generation) or a new retry annotation; any other object on any change. */
  const parkMark = (key: WorkKey, o: Keyed): string =>
    key.kind === 'migration'
      ? `${o.metadata?.generation ?? 0}/${o.metadata?.annotations?.[ANNOTATION_RETRY] ?? ''}`
      : (o.metadata?.resourceVersion ?? '');

  /** The Degraded condition of a migration, set or cleared; a stale cache makes it a no-op (409), the next pass writes again. */
  const setDegraded = async (m: VolumeMigration, note: ConditionNote, message?: string): Promise<void> => {
    const conditions = withCondition(m.status?.conditions ?? [], 'Degraded', note, new Date());
    const status = { conditions, ...(message === undefined ? {} : { message }) };
    try {
      await writeStatus(kube, m, status);
    } catch (e: unknown) {
      if (!(e instanceof ApiError && e.code === 409)) throw e;
    }
  };

  /** Whether a key is parked; a parked key whose object changed is unparked (and a migration's Degraded cleared). */
  const isParked = async (key: WorkKey, text: WorkKeyText): Promise<boolean> => {
    const mark = parked.get(text);
    if (mark === undefined) return false;
    const o = objectOf(key);
    if (o && parkMark(key, o) === mark) return true;
    parked.delete(text);
    if (o && key.kind === 'migration') {
      logger.info(
        { migration: cacheKeyOf(key) },
        'the migration changed since a terminal error stopped it: trying again',
      );
      await setDegraded(o as VolumeMigration, {
        status: 'False',
        reason: Reason.Retrying,
        message: 'changed since the failure: trying again',
      });
    }
    return false;
  };

  /** A terminal error: an Event with its reason on the object, Degraded on a migration, and no retry until the object changes. */
  const stopOnTerminal = async (key: WorkKey, text: WorkKeyText, error: TerminalError, n: number): Promise<void> => {
    const { log } = failures[key.kind];
    const o = objectOf(key);
    queue.forget(text);
    logger.warn(
      { [key.kind]: cacheKeyOf(key), worker: n, err: error.message, reason: error.reason },
      `${log}; stopped until the object changes`,
    );
    if (!o?.metadata?.name || !o.metadata.namespace) return;
    parked.set(text, parkMark(key, o));
    const target = {
      apiVersion: key.kind === 'migration' ? API_GROUP_VERSION : 'v1',
      kind: key.kind === 'migration' ? MIGRATION_KIND : key.kind === 'claim' ? 'PersistentVolumeClaim' : 'Pod',
      name: o.metadata.name,
      namespace: o.metadata.namespace,
      uid: o.metadata.uid,
    };
    const retry =
      key.kind === 'migration'
        ? `; fix the cause, then retry: kubectl annotate ${MIGRATION_PLURAL} ${o.metadata.name} ${ANNOTATION_RETRY}="$(date +%s)" --overwrite`
        : '';
    await recorder.record(target, 'Warning', error.reason, `${error.message}${retry}`);
    if (key.kind !== 'migration') return;
    metrics.reconcileErrors.inc({ kind: 'terminal' });
    const m = o as VolumeMigration;
    if (isTerminal(phaseOf(m))) return;
    await setDegraded(
      m,
      { status: 'True', reason: error.reason, message: error.message.slice(0, 1024) },
      `stopped: ${error.message}${retry}`.slice(0, 1024),
    );
  };

  /** A key's work failed: a transient error is retried with backoff, a terminal one stops the key (stopOnTerminal). */
  const retryFailed = async (key: WorkKey, text: WorkKeyText, e: unknown, n: number): Promise<void> => {
    const { what, log } = failures[key.kind];
    const kind = classifyApiError(e, `${what} ${cacheKeyOf(key)}`);
    if (kind instanceof TerminalError) return stopOnTerminal(key, text, kind, n);
    const delay = queue.addRateLimited(text);
    // Logged as { migration | claim | pod: "<namespace>/<name>" }, as the other lines about the object.
    logger.warn({ [key.kind]: cacheKeyOf(key), worker: n, err: kind.message, retryInMs: delay }, log);
    if (key.kind !== 'migration') return;
    metrics.reconcileErrors.inc({ kind: 'transient' });
    await reportFailure(cacheKeyOf(key), e, kind.message);
  };

  const worker = async (n: number): Promise<void> => {
    // Never plan on a partial view: a claim missing from an unsynced cache would
    // read as "claim not found". Workers start once every cache has synced.
    await Promise.race([ready, stopped]);
    for (;;) {
      const text = await queue.get();
      if (text === undefined) return;
      const key = parseWorkKey(text);
      try {
        // Not leading: another replica does the writes. (!key cannot happen: only formatWorkKey makes a queue's text.)
        if (!leading || !key || (await isParked(key, text))) continue;
        const again = await work(key);
        queue.forget(text);
        if (again !== undefined) queue.addAfter(text, again);
      } catch (e: unknown) {
        if (key) await retryFailed(key, text, e, n);
      } finally {
        // A slot observe reserved for a copy this step did not create is free again.
        if (key?.kind === 'migration') slots.releaseUnused(cacheKeyOf(key));
        queue.done(text);
      }
    }
  };

  let requeue: NodeJS.Timeout | undefined;
  let markStopped: () => void = () => {};
  const stopped = new Promise<void>((resolve) => (markStopped = resolve));
  const ready = (async () => {
    for (const informer of Object.values(caches) as Informer<never>[]) informer.start();
    await Promise.all((Object.values(caches) as Informer<never>[]).map((i) => i.waitForSync()));
    logger.info('caches synced');
    if (elector) {
      const won = await elector.acquire(() => {
        // Another replica may act now: stop at once rather than race it.
        leading = false;
        void handle.stop().then(() => process.exit(1));
      });
      if (!won) return;
      leading = true;
    }
    if (stopping) return;
    caches.migrations.list().forEach(enqueueMigration);
    enqueueClaims();
    requeue = setInterval(() => {
      caches.migrations.list().forEach(enqueueMigration);
      enqueueClaims();
      enqueueOrphans();
    }, options.requeueMs);
  })();
  const workers = Array.from({ length: options.workers }, (_, n) => worker(n));

  const handle: ControllerHandle = {
    ready,
    async stop() {
      if (stopping) return;
      stopping = true;
      markStopped();
      if (requeue) clearInterval(requeue);
      queue.shutdown();
      // Let the reconciles in flight finish: each is one step, so this is short.
      await Promise.allSettled(workers);
      for (const informer of Object.values(caches) as Informer<never>[]) informer.stop();
      await elector?.release();
      logger.info('controller stopped');
    },
  };
  return handle;
}
