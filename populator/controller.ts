// The populator controller: informers on claims, volumes, pods, migrations,
// storage classes and namespaces; a work queue of migrations; workers that
// reconcile them; leader election so two replicas are safe; graceful shutdown.
import { hostname } from 'node:os';
import type { V1Namespace, V1PersistentVolume, V1PersistentVolumeClaim, V1Pod, V1StorageClass } from '@kubernetes/client-node';
import type { Registry } from 'prom-client';
import { apiMessage, classifyApiError, errorMessage, TerminalError } from '../src/errors.js';
import { ApiError, Informer, keyOf, paths, type Kube } from '../src/kube.js';
import type { Logger } from '../src/logger.js';
import { ANNOTATION_MIGRATION, ANNOTATION_TARGET_CLASS, LABEL_MIGRATION_UID, SCHEDULING_GATE } from '../src/names.js';
import { isTerminal, phaseOf, type VolumeMigration } from '../src/volume-migration.js';
import { CopySlots, copyPassOf } from './copy-slots.js';
import { EventRecorder } from './events.js';
import { LeaderElector } from './leader-election.js';
import { createControllerMetrics } from './metrics.js';
import { Reconciler, type Caches } from './reconcile.js';
import { isOrphanGated } from './orphans.js';
import { ABORT_PATCH, annotationSignature, INVALID_ANNOTATION_REASON, shortcutAction } from './shortcut.js';
import { WorkQueue } from './queue.js';
import type { ControllerSettings } from './world.js';

export interface ControllerOptions {
  settings: ControllerSettings;
  workers: number;
  /** Periodic resync of every migration, in ms. */
  resyncMs: number;
  leaderElection?: { namespace: string; name: string; leaseDurationMs: number; renewMs: number; retryMs: number; identity?: string };
  register: Registry;
}

export interface ControllerHandle {
  /** Resolves once the caches have synced and this replica leads. */
  ready: Promise<void>;
  stop(): Promise<void>;
}

export const DEFAULT_SETTINGS: ControllerSettings = {
  copyImage: 'pvshift:dev',
  copyNodeSelector: {},
  copyTolerations: [],
  copyResources: undefined,
  maxConcurrentCopies: 4,
  maxCopiesPerNode: 2,
  copyAttempts: 3,
  copyBandwidthLimitKiBps: 0,
  sizeHeadroom: 0.1,
  copyStallSeconds: 600,
};

export function startController(kube: Kube, options: ControllerOptions, logger: Logger): ControllerHandle {
  const caches: Caches = {
    migrations: new Informer<VolumeMigration>(kube, paths.migrations()),
    claims: new Informer<V1PersistentVolumeClaim>(kube, paths.claims()),
    volumes: new Informer<V1PersistentVolume>(kube, paths.volumes()),
    pods: new Informer<V1Pod>(kube, paths.pods()),
    classes: new Informer<V1StorageClass>(kube, paths.storageClasses()),
    namespaces: new Informer<V1Namespace>(kube, paths.namespaces()),
  };
  const identity = options.leaderElection?.identity ?? `${hostname()}_${process.pid}`;
  const metrics = createControllerMetrics(options.register, () => caches.migrations.list());
  const recorder = new EventRecorder(kube, logger, identity);
  // One slot table for every worker: the copy caps hold across them.
  const slots = new CopySlots({ maxConcurrent: options.settings.maxConcurrentCopies, maxPerNode: options.settings.maxCopiesPerNode });
  const reconciler = new Reconciler(kube, caches, options.settings, recorder, metrics, logger, slots);
  const queue = new WorkQueue();
  let leading = !options.leaderElection;
  let stopping = false;
  const elector = options.leaderElection ? new LeaderElector(kube, { ...options.leaderElection, identity }, logger) : undefined;

  const enqueueNamespace = (namespace: string | undefined) => {
    if (!namespace) return;
    for (const m of caches.migrations.list()) if (m.metadata.namespace === namespace) queue.add(keyOf(m));
  };
  const enqueueByUid = (uid: string | undefined) => {
    if (!uid) return;
    const m = caches.migrations.list().find((x) => x.metadata.uid === uid);
    if (m) queue.add(keyOf(m));
  };

  // The annotation shortcut's refusals, by claim uid: the annotation values
  // (annotationSignature) pvshift could not act on and has said so about. The
  // same values are neither reported nor tried again; new values are.
  const refusedAnnotations = new Map<string, string>();
  // Claims whose shortcut is being applied: a claim event and a resync must not
  // create (and be refused, and report) twice.
  const shortcutsInFlight = new Set<string>();

  /** An annotation pvshift cannot act on: an Event on the claim, once per claim and value. */
  const refuseAnnotation = async (claim: V1PersistentVolumeClaim, signature: string, message: string): Promise<void> => {
    const uid = claim.metadata?.uid ?? '';
    if (refusedAnnotations.get(uid) === signature) return;
    refusedAnnotations.set(uid, signature);
    logger.warn({ claim: keyOf(claim), reason: message }, 'cannot act on the migration annotation of the claim');
    await recorder.record(
      { apiVersion: 'v1', kind: 'PersistentVolumeClaim', name: claim.metadata?.name ?? '', namespace: claim.metadata?.namespace ?? '', uid },
      'Warning',
      INVALID_ANNOTATION_REASON,
      message,
    );
  };

  const applyShortcut = async (claim: V1PersistentVolumeClaim): Promise<void> => {
    if (!leading) return;
    const uid = claim.metadata?.uid ?? '';
    if (shortcutsInFlight.has(uid)) return;
    const action = shortcutAction(claim, caches.migrations.list());
    const ns = claim.metadata?.namespace;
    const signature = annotationSignature(claim);
    if (!claim.metadata?.annotations?.[ANNOTATION_TARGET_CLASS]) refusedAnnotations.delete(uid);
    // Refused before with these very values: the API server would refuse again.
    if (action.kind === 'create' && refusedAnnotations.get(uid) === signature) return;
    shortcutsInFlight.add(uid);
    try {
      if (action.kind === 'invalid') {
        await refuseAnnotation(claim, signature, action.message);
      } else if (action.kind === 'create') {
        await kube.create(paths.migrations(ns), action.migration);
        logger.info({ claim: keyOf(claim), target: action.migration.spec.targetStorageClassName }, 'created VolumeMigration from the claim annotation');
      } else if (action.kind === 'replace') {
        await kube.delete(paths.migrations(ns, action.name));
        logger.info({ claim: keyOf(claim), old: action.name }, 'the annotation asks for a migration again: the finished one of the claim makes way');
      } else if (action.kind === 'abort') {
        // Marked as withdrawn by the annotation, so annotating again starts over.
        await kube.patch(paths.migrations(ns, action.name), ABORT_PATCH, 'merge');
        logger.info({ claim: keyOf(claim) }, 'annotation removed before cutover: aborting');
      }
    } catch (e: unknown) {
      if (action.kind === 'create' && e instanceof ApiError && (e.code === 422 || e.code === 400)) {
        // The CRD's validation refused what the annotation says (a class name that is
        // no object name, a size its pattern refuses): the user must change it.
        await refuseAnnotation(claim, signature, `the VolumeMigration for this claim was refused by the API server: ${apiMessage(e)}`);
      } else if (!(e instanceof ApiError && e.code === 409)) {
        logger.warn({ err: e, claim: keyOf(claim) }, 'annotation shortcut failed');
      }
    } finally {
      shortcutsInFlight.delete(uid);
    }
  };

  caches.migrations.on((type, m) => {
    if (type !== 'delete') queue.add(keyOf(m));
    else {
      // A record replaced for the annotation is gone: create its successor now, not at the next resync.
      const claim = caches.claims.get(`${m.metadata.namespace}/${m.spec.claimName}`);
      if (claim) void applyShortcut(claim);
    }
  });
  caches.claims.on((type, claim) => {
    enqueueNamespace(claim.metadata?.namespace);
    if (type !== 'delete') void applyShortcut(claim);
    else refusedAnnotations.delete(claim.metadata?.uid ?? '');
  });
  caches.pods.on((_type, pod) => {
    // The informer has (or had) this copy pod: from now on it, not a reservation, holds the slot.
    if (copyPassOf(pod)) slots.seen(keyOf(pod));
    enqueueByUid(pod.metadata?.labels?.[LABEL_MIGRATION_UID]);
    if (pod.metadata?.annotations?.[ANNOTATION_MIGRATION] || (pod.spec?.volumes ?? []).some((v) => v.persistentVolumeClaim)) enqueueNamespace(pod.metadata?.namespace);
  });
  caches.volumes.on((_type, pv) => enqueueNamespace(pv.spec?.claimRef?.namespace));
  caches.classes.on(() => caches.migrations.list().forEach((m) => queue.add(keyOf(m))));
  for (const informer of Object.values(caches) as Informer<never>[]) {
    informer.onWatchError((e) => logger.warn({ err: errorMessage(e) }, 'watch failed; relisting'));
  }

  // Fault injection for the crash tests: PVSHIFT_FAULT_CRASH_AFTER_STEPS=N makes
  // the process SIGKILL itself right after its N-th step that changed something,
  // with no cleanup, as a node failure or an OOM kill would.
  const crashAfter = Number(process.env.PVSHIFT_FAULT_CRASH_AFTER_STEPS ?? 0);
  let stepsDone = 0;

  const releaseOrphans = async (): Promise<void> => {
    const now = new Date();
    const migrations = caches.migrations.list();
    for (const pod of caches.pods.list()) {
      if (!leading || !isOrphanGated(pod, migrations, now)) continue;
      const gates = (pod.spec?.schedulingGates ?? []).filter((g) => g.name !== SCHEDULING_GATE);
      try {
        await kube.patch(
          paths.pods(pod.metadata?.namespace, pod.metadata?.name),
          [
            { op: 'test', path: '/metadata/resourceVersion', value: pod.metadata?.resourceVersion },
            { op: 'replace', path: '/spec/schedulingGates', value: gates },
          ],
          'json',
        );
        logger.warn({ pod: keyOf(pod) }, 'released a pod gated for a migration that no longer exists');
      } catch (e: unknown) {
        logger.warn({ pod: keyOf(pod), err: errorMessage(e) }, 'could not release an orphaned gate');
      }
    }
  };

  /** A failing step shows on the migration (message), so a user sees why it does not move. */
  const reportFailure = async (key: string, error: unknown, message: string): Promise<void> => {
    // A conflict is a stale cache, not a failure (the next pass reads again), and a
    // finished migration's message is its outcome: neither is replaced by "retrying".
    if (error instanceof ApiError && error.code === 409) return;
    const m = caches.migrations.get(key);
    const text = `retrying: ${message}`.slice(0, 1024);
    if (!m || m.status?.message === text || isTerminal(phaseOf(m))) return;
    try {
      await kube.patch(`${paths.migrations(m.metadata.namespace, m.metadata.name)}/status`, { status: { message: text } }, 'merge');
    } catch {
      // Best effort: the log has it either way.
    }
  };

  const worker = async (n: number): Promise<void> => {
    // Never plan on a partial view: a claim missing from an unsynced cache would
    // read as "claim not found". Workers start once every cache has synced.
    await Promise.race([ready, stopped]);
    for (;;) {
      const key = await queue.get();
      if (key === undefined) return;
      try {
        if (!leading) continue;
        const result = await reconciler.reconcile(key);
        if (crashAfter > 0 && result.step !== 'wait' && result.step !== 'done' && ++stepsDone >= crashAfter) {
          logger.warn({ migration: key, step: result.step }, 'fault injection: crashing after this step');
          process.kill(process.pid, 'SIGKILL');
        }
        queue.forget(key);
        if (result.requeueAfterMs !== undefined) queue.addAfter(key, result.requeueAfterMs);
      } catch (e: unknown) {
        const kind = classifyApiError(e, `reconcile ${key}`);
        metrics.reconcileErrors.inc({ kind: kind instanceof TerminalError ? 'terminal' : 'transient' });
        const delay = kind instanceof TerminalError ? 60_000 : queue.addRateLimited(key);
        if (kind instanceof TerminalError) queue.addAfter(key, delay);
        logger.warn({ migration: key, worker: n, err: kind.message, retryInMs: delay }, 'reconcile failed');
        await reportFailure(key, e, kind.message);
      } finally {
        // A slot observe reserved for a copy this step did not create is free again.
        slots.releaseUnused(key);
        queue.done(key);
      }
    }
  };

  let resync: NodeJS.Timeout | undefined;
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
    for (const m of caches.migrations.list()) queue.add(keyOf(m));
    for (const claim of caches.claims.list()) void applyShortcut(claim);
    resync = setInterval(() => {
      for (const m of caches.migrations.list()) queue.add(keyOf(m));
      for (const claim of caches.claims.list()) void applyShortcut(claim);
      void releaseOrphans();
    }, options.resyncMs);
  })();
  const workers = Array.from({ length: options.workers }, (_, n) => worker(n));

  const handle: ControllerHandle = {
    ready,
    async stop() {
      if (stopping) return;
      stopping = true;
      markStopped();
      if (resync) clearInterval(resync);
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
