// RollingBack: the way out after cutover. The replacement claim goes (never while
// a pod uses it), the retained source volume is bound again to a claim of the
// original name, and the held pods are released onto their original data. With
// no source (or no snapshot) left there is no way back: the migration is Held.
import type { V1PersistentVolumeClaim } from '@kubernetes/client-node';
import { restoredClaim } from '../../src/replacement-claim.js';
import { Reason } from '../../src/reasons.js';
import type { World } from '../world.js';
import { hold } from './held.js';
import { belongsToMigration, releasable } from './ownership.js';
import { consumersOf, namesOf, rvOf, snapshotUid } from './readers.js';
import { deleteClaim, liftGates, normal, toPhase, wait, WAIT_SHORT, WAIT_USER } from './steps.js';
import type { Step } from './types.js';

export function planRollback(w: World): Step {
  const m = w.migration;
  const status = m.status ?? {};
  const snapshot = status.originalClaim;
  const sourceName = status.sourceVolumeName;
  for (const pass of ['final', 'presync', 'measure'] as const) {
    const pod = w.copyPods[pass];
    if (pod) return { kind: 'deleteCopyPod', pass, name: pod.metadata.name };
  }
  const source = w.sourceVolume;
  if (!snapshot || !sourceName || !source) {
    // No way back, and no way on: the pods stay held and the claims rewritten (so
    // nothing starts on an empty volume) and whatever copy there is, is kept.
    const why = `cannot roll back: source volume ${sourceName ?? '(unknown)'} or the claim snapshot is gone`;
    return hold(w, Reason.RollbackImpossible, why);
  }
  const claim = w.claim;
  const isRestored = (c: V1PersistentVolumeClaim) => c.spec?.volumeName === sourceName && !belongsToMigration(c, m);
  if (claim && claim.metadata.uid !== snapshotUid(status) && !isRestored(claim)) {
    if (claim.metadata.deletionTimestamp) {
      return wait(Reason.ClaimTerminating, 'waiting for the replacement claim to go', WAIT_SHORT);
    }
    const users = consumersOf(w).scheduled;
    if (users.length) {
      const message =
        `rollback waits: pod ${namesOf(users)} uses claim ${claim.metadata.name}, ` +
        'and pvshift does not delete a claim in use; delete that pod to go on';
      return wait(Reason.ClaimInUse, message, WAIT_USER);
    }
    return deleteClaim(claim, 'replacement');
  }
  if (w.helperClaim) return deleteClaim(w.helperClaim, 'helper');
  const ref = source.spec?.claimRef;
  const originalStillThere = claim && claim.metadata.uid === snapshotUid(status);
  if (!originalStillThere && (ref?.name !== m.spec.claimName || (ref.uid && ref.uid !== claim?.metadata.uid))) {
    return {
      kind: 'rebindVolume',
      volumeName: sourceName,
      resourceVersion: rvOf(source),
      claimRef: {
        apiVersion: 'v1',
        kind: 'PersistentVolumeClaim',
        namespace: m.metadata.namespace,
        name: m.spec.claimName,
        ...(claim ? { uid: claim.metadata.uid } : {}),
      },
    };
  }
  if (!claim) {
    return {
      kind: 'createClaim',
      role: 'restored',
      claim: restoredClaim(m, snapshot, sourceName),
      event: normal(
        Reason.OriginalRestored,
        `recreated claim ${m.spec.claimName} on its original volume ${sourceName}`,
      ),
    };
  }
  if (claim.status?.phase !== 'Bound') {
    return wait(Reason.RestoreBinding, 'waiting for the restored claim to bind', WAIT_SHORT);
  }
  if (w.stagingClaim) return deleteClaim(w.stagingClaim, 'staging');
  const gated = releasable(w, consumersOf(w).gated);
  if (gated.length) return liftGates(gated, ' on the original volume');
  const back = `claim ${m.spec.claimName} is back on its original volume ${sourceName}`;
  return toPhase('RolledBack', { completionTime: w.now.toISOString() }, normal(Reason.RolledBack, back));
}
