// What a copy pod may be in a namespace, decided from its Pod Security labels
// before anything starts, so that the cost in fidelity is said up front (plan,
// the Validated condition) and the pod pvshift builds is one admission accepts.
// The controller and `kubectl pvshift plan` share this one rule.
//
// Pod Security Admission (k8s.io/pod-security-admission, policy/check_capabilities_baseline.go):
// `baseline` admits added capabilities only from AUDIT_WRITE CHOWN DAC_OVERRIDE
// FOWNER FSETID KILL MKNOD NET_BIND_SERVICE SETFCAP SETGID SETPCAP SETUID
// SYS_CHROOT; `restricted` also requires runAsNonRoot. A namespace without an
// enforce label gets the cluster's default, `privileged` unless configured.
import { LABEL_POD_SECURITY_ENFORCE, LABEL_PRIVILEGED_COPY } from './names.js';
import { Reason, type ReasonName } from './reasons.js';
import type { CopyFidelity } from './volume-migration.js';

/** What the copy loses without CAP_SYS_ADMIN (the runner names them the same in its summary). */
export const DROPPED_TRUSTED_XATTRS = 'trusted xattrs';
/** security.* but security.capability: writing them needs CAP_SYS_ADMIN. */
export const DROPPED_SECURITY_XATTRS = 'security xattrs';
export const DROPPED_WITHOUT_SYS_ADMIN: readonly string[] = [DROPPED_TRUSTED_XATTRS, DROPPED_SECURITY_XATTRS];

/**
 * Capabilities of every copy pod, all admitted by `baseline`: root keeps every
 * owner (CHOWN), reads and writes whatever the modes say (DAC_OVERRIDE, which
 * also covers directory search), keeps modes, set-id bits and file capabilities
 * (FOWNER, FSETID, SETFCAP) and device nodes (MKNOD).
 */
export const BASELINE_CAPABILITIES = ['CHOWN', 'DAC_OVERRIDE', 'FOWNER', 'FSETID', 'MKNOD', 'SETFCAP'];
/** Added only with the namespace's opt-in: reading and writing `trusted.*` xattrs and writing `security.*` need it. */
export const PRIVILEGED_CAPABILITIES = ['SYS_ADMIN'];

export type FidelityDecision =
  { ok: true; fidelity: CopyFidelity; note: string } | { ok: false; reason: ReasonName; message: string };

export function copyFidelityFor(namespace: string, labels: Record<string, string> | undefined): FidelityDecision {
  const level = labels?.[LABEL_POD_SECURITY_ENFORCE] ?? 'privileged';
  const optIn = labels?.[LABEL_PRIVILEGED_COPY] === 'true';
  if (level === 'restricted') {
    return {
      ok: false,
      reason: Reason.PodSecurityRestricted,
      message:
        `namespace ${namespace} enforces Pod Security "restricted" (label ${LABEL_POD_SECURITY_ENFORCE}), which admits no container running as root; ` +
        `pvshift's copy pods run as root to keep every owner and mode. To migrate, an administrator labels the namespace ` +
        `${LABEL_POD_SECURITY_ENFORCE}=baseline for the migration (everything but trusted.* and security.* xattrs is copied), or =privileged with ` +
        `${LABEL_PRIVILEGED_COPY}=true for a full copy`,
    };
  }
  if (level === 'privileged' && optIn) {
    return {
      ok: true,
      fidelity: { level, privileged: true, dropped: [] },
      note: `full fidelity: copy pods get CAP_SYS_ADMIN (${LABEL_PRIVILEGED_COPY}=true)`,
    };
  }
  const why =
    level === 'privileged'
      ? `to copy them too, an administrator labels the namespace ${LABEL_PRIVILEGED_COPY}=true`
      : `Pod Security "${level}" admits no CAP_SYS_ADMIN; a full copy needs ${LABEL_POD_SECURITY_ENFORCE}=privileged and ${LABEL_PRIVILEGED_COPY}=true`;
  return {
    ok: true,
    fidelity: { level, privileged: false, dropped: [...DROPPED_WITHOUT_SYS_ADMIN] },
    note: `trusted.* and security.* extended attributes (file capabilities aside) will not be copied (they need CAP_SYS_ADMIN); ${why}`,
  };
}
