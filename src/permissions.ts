// Every API call pvshift makes, as RBAC rules, with the reason for each: the one
// source of the chart's ClusterRole and Role. The `rules:` of
// charts/pvshift/templates/rbac-clusterrole.yaml and rbac-role.yaml are
// generated from this list by `chartRules` (each rule under its `why` as a
// comment); test/chart/rbac-rules.test.ts fails when they differ and rewrites
// them with PVSHIFT_WRITE_CHART=1. The cluster tests run pvshift under exactly
// those rules (cluster/pvshift.ts installs them from the chart), so a call
// added to the code without its grant here fails them with a 403, and
// test/chart/install.test.ts asks the API server (SubjectAccessReview) about
// every entry.
//
// RBAC can narrow a grant to named objects (resourceNames) only for requests
// that name one: get, update, patch, delete. create (the name is in the body,
// unknown to the authorizer) and list/watch of a collection cannot be narrowed,
// so each such resource has two entries, the unnamed verbs and the named ones.

/** Objects pvshift uses by name, and how the chart spells each name. */
export interface NamedObject {
  /** The name in a default install (release `pvshift`), as the tests see it. */
  defaultName: string;
  /** The chart's expression for the name (rendered with `| quote`); none: the name is fixed. */
  chartExpression?: string;
}

/**
 * The leader election Lease. Its name is fixed in src/services.ts (the
 * controller's `leaderElection.name`); one release per namespace keeps it apart.
 */
export const LEADER_ELECTION_LEASE = 'pvshift-controller';

export const NAMED_OBJECTS = {
  /** The MutatingWebhookConfiguration whose caBundle pvshift keeps (certs/managed.ts). */
  webhookConfiguration: { defaultName: 'pvshift', chartExpression: 'include "pvshift.webhookConfigurationName" .' },
  /** The Secret with the serving certificate and CA in managed mode (`--tls-secret`). */
  tlsSecret: { defaultName: 'pvshift-tls', chartExpression: 'include "pvshift.tlsSecretName" .' },
  leaderLease: { defaultName: LEADER_ELECTION_LEASE },
} as const satisfies Record<string, NamedObject>;

export interface Permission {
  apiGroup: string;
  /** `resource` or `resource/subresource`. */
  resource: string;
  verbs: string[];
  /** 'cluster': ClusterRole; 'namespace': Role in pvshift's own namespace. */
  scope: 'cluster' | 'namespace';
  /** Only this object (get, update, patch, delete; see above). */
  resourceName?: NamedObject;
  /**
   * Only with `certificates.mode=managed`: in the other modes the certificate
   * comes from files (cert-manager or the user owns the Secret and caBundle), so
   * pvshift makes neither call.
   */
  managedCertificatesOnly?: boolean;
  why: string;
}

export const PERMISSIONS: Permission[] = [
  // The controller: informers (list, watch) on what it reconciles.
  {
    apiGroup: 'pvshift.io',
    resource: 'volumemigrations',
    verbs: ['list', 'watch', 'create', 'patch', 'delete'],
    scope: 'cluster',
    why: 'the controller and the webhook cache every migration; the annotation shortcut creates one, aborts it (spec.abort) and deletes a finished one a new target replaces; the cleanup finalizer is added and removed by patch',
  },
  {
    apiGroup: 'pvshift.io',
    resource: 'volumemigrations/status',
    verbs: ['patch'],
    scope: 'cluster',
    why: 'phase, conditions, progress and the snapshot of the original claim (the status subresource is authorized apart, and only pvshift may write it: see the ValidatingAdmissionPolicy)',
  },
  {
    apiGroup: '',
    resource: 'persistentvolumeclaims',
    verbs: ['list', 'watch', 'create', 'delete', 'patch'],
    scope: 'cluster',
    why: "delete the original claim at cutover (with a uid precondition); create the staging, helper and replacement claims, in the claim's namespace, whichever it is; drop pvshift's ownerReference from a staging claim a held migration keeps, so deleting the migration cannot collect its data",
  },
  {
    apiGroup: '',
    resource: 'persistentvolumes',
    verbs: ['list', 'watch', 'patch'],
    scope: 'cluster',
    why: 'reclaim policy to Retain and back, the migration annotations, claimRef moves. No delete: sourceRetention DeleteAfterVerify sets the reclaim policy to Delete and lets the PV controller delete the volume',
  },
  {
    apiGroup: '',
    resource: 'pods',
    verbs: ['list', 'watch', 'create', 'delete', 'patch'],
    scope: 'cluster',
    why: 'create and delete copy pods; lift the scheduling gate of consumer pods (patch spec.schedulingGates)',
  },
  {
    apiGroup: '',
    resource: 'pods/log',
    verbs: ['get'],
    scope: 'cluster',
    why: "progress and the summary from the copy pod's log",
  },
  {
    apiGroup: '',
    resource: 'pods/eviction',
    verbs: ['create'],
    scope: 'cluster',
    why: 'cutover Evict: through the Eviction API, so PodDisruptionBudgets hold',
  },
  {
    apiGroup: '',
    resource: 'namespaces',
    verbs: ['list', 'watch', 'patch'],
    scope: 'cluster',
    why: 'Pod Security levels and termination of the namespaces migrated in; the label that scopes the webhooks to namespaces with a migration',
  },
  {
    apiGroup: '',
    resource: 'events',
    verbs: ['create'],
    scope: 'cluster',
    why: 'an Event on the claim and the migration at every milestone and failure (each a new Event, never patched)',
  },
  {
    apiGroup: 'apps',
    resource: 'statefulsets',
    verbs: ['list', 'watch'],
    scope: 'cluster',
    why: "a StatefulSet's pvshift.io/target-storage-class annotation is a standing policy for its claims: the controller migrates the existing ones, the webhook creates new ones on the target",
  },
  {
    apiGroup: 'apps',
    resource: 'deployments',
    verbs: ['list', 'watch'],
    scope: 'cluster',
    why: "a Deployment's pvshift.io/target-storage-class annotation migrates the claims its pods mount",
  },
  {
    apiGroup: 'storage.k8s.io',
    resource: 'storageclasses',
    verbs: ['list', 'watch'],
    scope: 'cluster',
    why: 'validate the target class; restore its reclaim policy',
  },
  {
    apiGroup: 'admissionregistration.k8s.io',
    resource: 'mutatingwebhookconfigurations',
    verbs: ['get', 'update'],
    scope: 'cluster',
    resourceName: NAMED_OBJECTS.webhookConfiguration,
    managedCertificatesOnly: true,
    why: "the CA bundle of pvshift's own webhook configuration, and no other",
  },
  // Leader election, in pvshift's namespace.
  {
    apiGroup: 'coordination.k8s.io',
    resource: 'leases',
    verbs: ['create'],
    scope: 'namespace',
    why: 'leader election: the first replica creates the Lease',
  },
  {
    apiGroup: 'coordination.k8s.io',
    resource: 'leases',
    verbs: ['get', 'update'],
    scope: 'namespace',
    resourceName: NAMED_OBJECTS.leaderLease,
    why: 'leader election: read, renew, take over and release the one Lease',
  },
  // The webhook's certificate, in pvshift's namespace.
  {
    apiGroup: '',
    resource: 'secrets',
    verbs: ['create'],
    scope: 'namespace',
    managedCertificatesOnly: true,
    why: 'the first replica creates the Secret with the shared serving certificate and CA',
  },
  {
    apiGroup: '',
    resource: 'secrets',
    verbs: ['get', 'update'],
    scope: 'namespace',
    resourceName: NAMED_OBJECTS.tlsSecret,
    managedCertificatesOnly: true,
    why: 'read and renew that Secret, and no other. No list or watch: it is read by name',
  },
];

/** `why` as a sentence: capitalised, ending with a full stop. */
function sentence(why: string): string {
  const text = why.charAt(0).toUpperCase() + why.slice(1);
  return /[.!?]$/.test(text) ? text : `${text}.`;
}

/** Comment lines of at most `width` columns, each starting with `indent# `. */
function commentLines(text: string, indent: string, width = 80): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/)) {
    if (line && indent.length + 2 + line.length + 1 + word.length > width) {
      lines.push(`${indent}# ${line}`);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(`${indent}# ${line}`);
  return lines;
}

/** A YAML flow sequence of plain scalars (`""` for the core group). */
function flow(items: string[]): string {
  return `[${items.map((i) => (i === '' ? '""' : i)).join(', ')}]`;
}

/**
 * The `rules:` entries of the chart's ClusterRole (`cluster`) or Role
 * (`namespace`) as template text: each permission under its `why`, the named
 * ones by the chart's expression for the name, the managed-mode ones inside an
 * `if`. Lines are indented for a `rules:` key at column 0.
 */
export function chartRules(scope: Permission['scope']): string {
  const lines: string[] = [];
  for (const p of PERMISSIONS.filter((x) => x.scope === scope)) {
    if (p.managedCertificatesOnly) lines.push('  {{- if eq .Values.certificates.mode "managed" }}');
    lines.push(...commentLines(sentence(p.why), '  '));
    lines.push(`  - apiGroups: ${flow([p.apiGroup])}`);
    lines.push(`    resources: ${flow([p.resource])}`);
    const name = p.resourceName?.chartExpression
      ? `{{ ${p.resourceName.chartExpression} | quote }}`
      : p.resourceName?.defaultName;
    if (name) lines.push(`    resourceNames: [${name}]`);
    lines.push(`    verbs: ${flow(p.verbs)}`);
    if (p.managedCertificatesOnly) lines.push('  {{- end }}');
  }
  return lines.join('\n');
}
