// One copy pass (measure, presync or final), the same in every phase that copies:
// start the pod when a slot is free, follow it, notice a stall, record its summary,
// retry transient failures, and give up on terminal ones (after cutover, by rolling back).
import type { V1Pod } from '@kubernetes/client-node';
import { ANNOTATION_COPY_ATTEMPT } from '../../src/names.js';
import { formatBytes } from '../../src/quantity.js';
import { classifyRunnerExit } from '../../src/runner-protocol.js';
import type { CopyResult } from '../../src/volume-migration.js';
import { Reason } from '../../src/reasons.js';
import type { Pass, RunnerProgress, RunnerSummary, Stored, World } from '../world.js';
import { attemptsOf, isFinished } from './readers.js';
import { syncFailureRecord, syncRecord } from './resync.js';
import { fail, normal, rollBack, toPhase, wait, WAIT_COPY, warning } from './steps.js';
import type { EventNote, Step } from './types.js';

/** How a caller names its pass: a re-sync is a pre-sync pass that says so, and starts without an event. */
export interface PassLabel {
  /** `re-sync 3`: the running copy's status message says `<label> running`. */
  label: string;
  /** The event of starting the pod; none when absent. */
  started?: EventNote;
  /**
   * A failure that outlasts the retries is recorded, and the migration goes on
   * (a re-sync: the next pass or the final copy catches up), instead of failing it.
   */
  tolerateFailure?: boolean;
}

/**
 * One copy pass: start the pod when there is none and a slot is free, follow its
 * progress, record its summary, retry transient failures, give up on terminal ones.
 */
export function planCopy(w: World, pass: Pass, named?: PassLabel): Step {
  const m = w.migration;
  const pod = w.copyPods[pass];
  if (!pod && w.copyPodRefused?.pass === pass) {
    // Admission said no (Pod Security, a policy): asking again gets the same answer.
    const message = `the ${pass} copy pod was refused by admission: ${w.copyPodRefused.message}`;
    if (pass === 'final') return rollBack(Reason.CopyPodRefused, message);
    return fail(Reason.CopyPodRefused, message);
  }
  if (!pod) {
    if (!w.copySlotFree) {
      return wait(Reason.WaitingForCopySlot, 'waiting for a free copy slot (max concurrent copies reached)', WAIT_COPY);
    }
    const reason =
      pass === 'final' ? Reason.FinalSyncStarted : pass === 'presync' ? Reason.PreSyncStarted : Reason.MeasureStarted;
    const started = named ? named.started : normal(reason, `started ${pass} copy pod`);
    return { kind: 'createCopyPod', pass, ...(started ? { event: started } : {}) };
  }
  if (!isFinished(pod)) {
    const stalled = stalledSeconds(w, pod);
    if (stalled > w.settings.copyStallSeconds) {
      const message =
        `${pass} copy made no progress for ${Math.round(stalled)} s ` +
        `(--copy-stall-timeout ${w.settings.copyStallSeconds} s)`;
      return copyFailed(w, pod, pass, true, message, named);
    }
    const running = wait(Reason.Copying, `${named?.label ?? `${pass} copy`} running`, WAIT_COPY);
    return w.progress ? { ...running, progress: w.progress } : running;
  }
  const terminated = pod.status?.containerStatuses?.[0]?.state?.terminated;
  const exitCode = terminated?.exitCode ?? -1;
  if (pod.status?.phase === 'Succeeded') {
    if (pass === 'measure') {
      // An empty message is no measurement (Number('') is 0, which would pass any size check).
      const text = (terminated?.message ?? '').trim();
      const bytes = text ? Number(text) : NaN;
      if (!Number.isFinite(bytes) || bytes < 0) {
        const output = terminated?.message ?? 'no output';
        return fail(Reason.MeasureFailed, `could not read the used bytes of the source: ${output}`);
      }
      return { kind: 'patchStatus', status: { usedBytes: bytes } };
    }
    const summary = w.summary;
    if (!summary) {
      const message = `the ${pass} copy pod succeeded but left no readable summary`;
      // After cutover a terminal phase would leave the claim on an unpopulated replacement: roll back instead.
      if (pass === 'final') {
        const rollingBack = `${message}; rolling back to the original volume`;
        return toPhase('RollingBack', message, warning(Reason.CopyResultMissing, rollingBack));
      }
      if (named?.tolerateFailure) return passFailedTolerated(w, pod, named, message);
      return fail(Reason.CopyResultMissing, message);
    }
    const copy: CopyResult = {
      pass,
      bytes: summary.bytes,
      bytesTransferred: summary.bytesTransferred,
      files: summary.files,
      seconds: summary.seconds,
      verified: (summary.verified as CopyResult['verified']) ?? 'none',
      ...(summary.dropped?.length ? { dropped: summary.dropped } : {}),
    };
    const copies = [...(m.status?.copies ?? []).filter((c) => c.pass !== pass), copy];
    const done: RunnerProgress = {
      bytesDone: summary.bytes,
      bytesTotal: summary.bytes,
      filesDone: summary.files,
      filesTotal: summary.files,
      bytesPerSecond: summary.seconds > 0 ? summary.bytesTransferred / summary.seconds : 0,
    };
    const dropped = summary.dropped?.length
      ? `the target cannot hold ${summary.dropped.join(', ')}: dropped`
      : undefined;
    // A pre-sync pass also records when it ran, its delta and what it says of the
    // final copy; its success restores the retry budget of the pass after it.
    const recorded = m.status?.attempts ?? {};
    const presync =
      pass === 'presync'
        ? { ...syncRecord(w, pod, summary), ...(recorded.presync ? { attempts: { ...recorded, presync: 0 } } : {}) }
        : {};
    return {
      kind: 'patchStatus',
      status: {
        copies,
        progress: { ...done, etaSeconds: 0, updatedAt: w.now.toISOString() },
        progressText: progressText(done),
        ...presync,
      },
      ...(dropped ? { event: warning(Reason.FeaturesDropped, dropped) } : {}),
    };
  }
  const transient = classifyRunnerExit(exitCode) === 'transient';
  const failed = `${pass} copy failed (exit ${exitCode}): ${summaryMessage(w.summary, terminated?.message)}`;
  return copyFailed(w, pod, pass, transient, failed, named);
}

/** Seconds since the running copy last moved (or started, before its first progress). */
function stalledSeconds(w: World, pod: V1Pod): number {
  const started = Date.parse(String(pod.status?.startTime ?? pod.metadata?.creationTimestamp ?? ''));
  const advanced = Date.parse(w.migration.status?.progress?.advancedAt ?? '');
  const since = Math.max(Number.isNaN(started) ? -Infinity : started, Number.isNaN(advanced) ? -Infinity : advanced);
  return Number.isFinite(since) ? (w.now.getTime() - since) / 1000 : 0;
}

/** A failed (or stalled) copy: transient failures are retried a few times, then the pass fails for good. */
function copyFailed(
  w: World,
  pod: Stored<V1Pod>,
  pass: Pass,
  transient: boolean,
  message: string,
  named: PassLabel | undefined,
): Step {
  const m = w.migration;
  // This pod's failure is number (failures recorded when it started) + 1, however
  // often the failed pod is seen again: counting from the status alone would add
  // one per reconcile and spend the whole budget on a single failure.
  const startedAfter = Number(pod.metadata.annotations?.[ANNOTATION_COPY_ATTEMPT]);
  const before = Number.isInteger(startedAfter) && startedAfter >= 0 ? startedAfter : attemptsOf(m.status, pass);
  const attempts = before + 1;
  if (transient && attempts < w.settings.copyAttempts) {
    const recorded = m.status?.attempts ?? {};
    if ((recorded[pass] ?? 0) < attempts) {
      const retrying = `${message}; retrying (attempt ${attempts + 1} of ${w.settings.copyAttempts})`;
      return {
        kind: 'patchStatus',
        status: { attempts: { ...recorded, [pass]: attempts } },
        event: warning(Reason.CopyRetrying, retrying),
      };
    }
    return { kind: 'deleteCopyPod', pass, name: pod.metadata.name };
  }
  if (pass === 'final') return rollBack(Reason.CopyFailed, message);
  if (named?.tolerateFailure) return passFailedTolerated(w, pod, named, message);
  return fail(Reason.CopyFailed, message);
}

/** A pass whose failure the migration outlives: recorded once, with a Warning; its pod is deleted next. */
function passFailedTolerated(w: World, pod: Stored<V1Pod>, named: PassLabel, message: string): Step {
  const said = `${named.label} failed: ${message}; the migration goes on, and the next pass or the final copy copies what it missed`;
  return {
    kind: 'patchStatus',
    status: syncFailureRecord(w, pod, message),
    event: warning(Reason.ReSyncFailed, said),
  };
}

function summaryMessage(summary: RunnerSummary | undefined, fallback: string | undefined): string {
  const text = summary?.message ?? fallback ?? 'no message';
  return text.length > 600 ? `${text.slice(0, 600)}…` : text;
}

export function progressText(p: RunnerProgress): string {
  const pct = p.bytesTotal > 0 ? Math.floor((p.bytesDone / p.bytesTotal) * 100) : 100;
  return `${formatBytes(p.bytesDone)} / ${formatBytes(p.bytesTotal)} (${pct}%)`;
}
