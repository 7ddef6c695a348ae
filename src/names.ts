// Every name pvshift puts on the cluster, derived from one prefix so that a grep
// for `pvshift.io/` finds them all and nothing drifts between webhook,
// controller and chart.

export const PREFIX = 'pvshift.io';

export const API_GROUP = PREFIX;
export const API_VERSION = 'v1alpha1';
export const API_GROUP_VERSION = `${API_GROUP}/${API_VERSION}` as const;
export const MIGRATION_KIND = 'VolumeMigration';
export const MIGRATION_PLURAL = 'volumemigrations';
export const MIGRATION_CRD_NAME = `${MIGRATION_PLURAL}.${API_GROUP}`;

/**
 * Annotations a user sets on a claim (the shortcut that creates a VolumeMigration),
 * or on a StatefulSet: a standing policy for the claims of its replicas
 * (src/workload-policy.ts).
 */
export const ANNOTATION_TARGET_CLASS = `${PREFIX}/target-storage-class`;
export const ANNOTATION_TARGET_SIZE = `${PREFIX}/target-size`;
/**
 * On a StatefulSet beside ANNOTATION_TARGET_CLASS: which of its volumeClaimTemplates
 * the policy moves (comma-separated names); absent, all of them.
 */
export const ANNOTATION_VOLUME_CLAIM_TEMPLATES = `${PREFIX}/volume-claim-templates`;
/**
 * On a StatefulSet beside ANNOTATION_TARGET_CLASS: `Evict` has pvshift cut the
 * replicas over itself, one at a time, highest ordinal first (populator/plan/cutover.ts);
 * absent (or `OnPodRecreate`), a rollout restart does it.
 */
export const ANNOTATION_CUTOVER = `${PREFIX}/cutover`;
/** On a VolumeMigration made for a StatefulSet's policy: `StatefulSet/<name>`. */
export const ANNOTATION_WORKLOAD = `${PREFIX}/workload`;

/**
 * On a replacement claim and a gated pod: the migration(s) responsible (a pod may
 * mount several claims under migration; the value is then comma-separated).
 * On a retained source PV: `namespace/name` of the migration that left it there.
 */
export const ANNOTATION_MIGRATION = `${PREFIX}/migration`;
/** On a PV whose reclaim policy pvshift changed: the policy to restore (only by the migration of ANNOTATION_MIGRATION_UID). */
export const ANNOTATION_ORIGINAL_RECLAIM_POLICY = `${PREFIX}/original-reclaim-policy`;
/**
 * On a PV: the UID of the migration that retained it (source) or had it
 * provisioned (target). pvshift acts on a volume only when this names the
 * migration at hand: status fields are a record, never an authority.
 */
export const ANNOTATION_MIGRATION_UID = `${PREFIX}/migration-uid`;
/** On a copy pod: how many failures of its pass were recorded before it started (so each failure counts once). */
export const ANNOTATION_COPY_ATTEMPT = `${PREFIX}/copy-attempt`;
/**
 * On a pre-sync copy pod: which pre-sync pass it is (1 the first, then each
 * re-sync), so its summary is recorded once however often it is seen, by
 * comparing with status.syncPasses rather than with clocks.
 */
export const ANNOTATION_SYNC_PASS = `${PREFIX}/sync-pass`;
/**
 * On a VolumeMigration, set by the user: a new value retries a migration that a
 * terminal API failure stopped (Degraded), once its cause is fixed. Editing the
 * spec retries too; annotations do not move metadata.generation, so this is the
 * way that changes nothing else.
 */
export const ANNOTATION_RETRY = `${PREFIX}/retry`;
/**
 * On a VolumeMigration, set by the user (`kubectl pvshift sync`): a new value
 * asks for one re-sync pass now, whatever spec.resyncInterval says. The pass's
 * copy pod carries the value, and status.syncRequestServed records it once the
 * pass has ended, so a value is served once.
 */
export const ANNOTATION_SYNC_REQUEST = `${PREFIX}/sync-requested`;
/** On a gated pod: when the gate was added (RFC 3339), the start of downtime. */
export const ANNOTATION_GATED_AT = `${PREFIX}/gated-at`;
/** On the helper claim: when pvshift asked the PV controller to finish binding it (see planPopulate). */
export const ANNOTATION_BIND_NUDGED = `${PREFIX}/bind-nudged-at`;

/** The scheduling gate that holds a consumer pod until its data is in place. */
export const SCHEDULING_GATE = `${PREFIX}/migration`;

/**
 * Namespace label that scopes the webhooks: set by the controller while a
 * namespace holds an unfinished migration, removed when none is left. The PVC
 * webhook has `failurePolicy: Fail`, so this label is what keeps a pvshift
 * outage from blocking claims in namespaces that have nothing to do with it.
 */
export const LABEL_NAMESPACE_ACTIVE = `${PREFIX}/migration-active`;

/** Pod Security Admission's enforce level of a namespace (privileged, baseline, restricted). */
export const LABEL_POD_SECURITY_ENFORCE = 'pod-security.kubernetes.io/enforce';
/**
 * Namespace label an administrator sets (`true`) to let pvshift's copy pods run
 * with CAP_SYS_ADMIN, which `trusted.*` extended attributes need; only a
 * namespace whose Pod Security level is privileged admits such pods.
 */
export const LABEL_PRIVILEGED_COPY = `${PREFIX}/privileged-copy`;

/** The deployment controller's label on a ReplicaSet's pods: the revision (the ReplicaSet is `<deployment>-<hash>`). */
export const LABEL_POD_TEMPLATE_HASH = 'pod-template-hash';

export const LABEL_MANAGED_BY = 'app.kubernetes.io/managed-by';
export const MANAGED_BY_VALUE = 'pvshift';
export const LABEL_COMPONENT = 'app.kubernetes.io/component';
/** Values of LABEL_COMPONENT on the objects pvshift creates. */
export const COMPONENT_COPY = 'copy';
export const COMPONENT_STAGING = 'staging';
export const COMPONENT_SOURCE_HELPER = 'source-helper';
export const COMPONENT_WEBHOOK = 'webhook';
export const LABEL_MIGRATION_UID = `${PREFIX}/migration-uid`;
/** On a copy pod: its pass (measure, presync, final). */
export const LABEL_COPY_PASS = `${PREFIX}/pass`;
/** On the objects pvshift's own install holds (the webhook configuration). */
export const LABEL_NAME = 'app.kubernetes.io/name';
/** On a VolumeMigration the kubectl plugin made. */
export const LABEL_CREATED_BY = 'app.kubernetes.io/created-by';
export const CREATED_BY_PLUGIN = 'kubectl-pvshift';
/** reportingComponent of the Events the controller records. */
export const EVENT_REPORTING_COMPONENT = `${PREFIX}/controller`;

/** Finalizer that lets the controller clean up (or roll back) before a VolumeMigration goes. */
export const FINALIZER = `${PREFIX}/cleanup`;

/** Field manager for server-side apply and the managedFields of our writes. */
export const FIELD_MANAGER = 'pvshift';

// Children are named from the migration's UID, so a rerun of any step finds the
// object it made before instead of making a second one. A UID is 36 characters;
// every name below stays within the 63 of a DNS label.
export function stagingClaimName(uid: string): string {
  return `pvshift-${uid}-target`;
}
export function sourceHelperClaimName(uid: string): string {
  return `pvshift-${uid}-source`;
}
export function copyPodName(uid: string, pass: 'presync' | 'final'): string {
  return `pvshift-${uid}-${pass}`;
}
/** The VolumeMigration made from a claim's annotation carries the claim's name. */
export function migrationNameForClaim(claimName: string): string {
  return claimName;
}
