// Every API call pvshift makes, as RBAC rules, with the reason for each. The
// chart's ClusterRole and Role are checked against this list by a test (with
// the API server's SubjectAccessReview), so the chart grants exactly this.
// Adding a call to the code means adding it here, or that test fails.

export interface Permission {
  apiGroup: string;
  resource: string;
  verbs: string[];
  /** 'cluster': ClusterRole; 'namespace': Role in pvshift's own namespace. */
  scope: 'cluster' | 'namespace';
  resourceNames?: string[];
  why: string;
}

export const PERMISSIONS: Permission[] = [
  // The controller.
  { apiGroup: 'pvshift.io', resource: 'volumemigrations', verbs: ['get', 'list', 'watch', 'create', 'patch', 'update'], scope: 'cluster', why: 'reconcile migrations; create them from the claim annotation; add and remove the cleanup finalizer' },
  { apiGroup: 'pvshift.io', resource: 'volumemigrations/status', verbs: ['get', 'patch', 'update'], scope: 'cluster', why: 'phase, conditions, progress' },
  { apiGroup: '', resource: 'persistentvolumeclaims', verbs: ['get', 'list', 'watch', 'create', 'delete', 'patch'], scope: 'cluster', why: 'snapshot and delete the original claim; create the staging, helper and replacement claims' },
  { apiGroup: '', resource: 'persistentvolumes', verbs: ['get', 'list', 'watch', 'patch', 'delete'], scope: 'cluster', why: 'reclaim policy to Retain and back; claimRef moves; delete a retained source only when sourceRetention allows' },
  { apiGroup: '', resource: 'pods', verbs: ['get', 'list', 'watch', 'create', 'delete', 'patch'], scope: 'cluster', why: 'copy pods; lifting the scheduling gate of consumer pods' },
  { apiGroup: '', resource: 'pods/log', verbs: ['get'], scope: 'cluster', why: "progress lines from the copy pod's log" },
  { apiGroup: '', resource: 'pods/eviction', verbs: ['create'], scope: 'cluster', why: 'cutover: Evict, through the Eviction API so PodDisruptionBudgets hold' },
  { apiGroup: '', resource: 'namespaces', verbs: ['get', 'list', 'watch', 'patch'], scope: 'cluster', why: 'the label that scopes the webhooks to namespaces with a migration' },
  { apiGroup: '', resource: 'events', verbs: ['create', 'patch'], scope: 'cluster', why: 'an Event on the claim and the migration at every milestone and failure' },
  { apiGroup: 'storage.k8s.io', resource: 'storageclasses', verbs: ['get', 'list', 'watch'], scope: 'cluster', why: 'validate the target class; restore its reclaim policy' },
  { apiGroup: 'coordination.k8s.io', resource: 'leases', verbs: ['get', 'create', 'update'], scope: 'namespace', why: 'leader election between replicas' },
  // The webhook.
  { apiGroup: '', resource: 'secrets', verbs: ['get', 'create', 'update'], scope: 'namespace', why: 'the shared serving certificate and CA (managed certificate mode)' },
  { apiGroup: 'admissionregistration.k8s.io', resource: 'mutatingwebhookconfigurations', verbs: ['get', 'update'], scope: 'cluster', resourceNames: ['pvshift'], why: "the CA bundle of pvshift's own webhook configuration" },
];
