// What the controller's work queue holds: one key per object a write may be
// needed for. A migration is reconciled; a claim gets its annotation shortcut
// applied; a pod gated for a migration that is gone gets its gate lifted; a
// StatefulSet or Deployment gets its policy annotations checked. The
// queue dedups and backs off by the key's text, `<kind>/<namespace>/<name>`
// (neither a namespace nor an object name can hold a `/`), so the text is made
// and read here only.

export type WorkKey =
  | { kind: 'migration'; namespace: string; name: string }
  | { kind: 'claim'; namespace: string; name: string }
  | { kind: 'pod'; namespace: string; name: string }
  | { kind: 'statefulset'; namespace: string; name: string }
  | { kind: 'deployment'; namespace: string; name: string };

export type WorkKind = WorkKey['kind'];

/** A key as the queue holds it: only formatWorkKey makes one. */
export type WorkKeyText = `${WorkKind}/${string}/${string}`;

const KINDS: readonly WorkKind[] = ['migration', 'claim', 'pod', 'statefulset', 'deployment'];

export function formatWorkKey(key: WorkKey): WorkKeyText {
  return `${key.kind}/${key.namespace}/${key.name}`;
}

/** The key of a text formatWorkKey made; undefined for any other text. */
export function parseWorkKey(text: string): WorkKey | undefined {
  const parts = text.split('/');
  if (parts.length !== 3) return undefined;
  const [kind, namespace, name] = parts as [string, string, string];
  if (!namespace || !name || !(KINDS as readonly string[]).includes(kind)) return undefined;
  return { kind: kind as WorkKind, namespace, name };
}

/** The key of an object of the kind, as its informer's cache knows it. */
export function workKeyOf(kind: WorkKind, object: { metadata?: { namespace?: string; name?: string } }): WorkKeyText {
  return formatWorkKey({ kind, namespace: object.metadata?.namespace ?? '', name: object.metadata?.name ?? '' });
}

/** The informer cache key of the key's object (`<namespace>/<name>`, as src/kube.ts keyOf). */
export function cacheKeyOf(key: WorkKey): string {
  return `${key.namespace}/${key.name}`;
}
