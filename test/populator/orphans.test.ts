// No pod stays gated forever: a pod gated for a migration that is gone is
// released, but only after the caches had time to agree.
import t from 'tap';
import type { V1Pod } from '@kubernetes/client-node';
import { isOrphanGated, ORPHAN_GRACE_MS } from '../../populator/orphans.js';
import { ANNOTATION_GATED_AT, ANNOTATION_MIGRATION, SCHEDULING_GATE } from '../../src/names.js';
import type { VolumeMigration } from '../../src/volume-migration.js';

const now = new Date('2026-11-21T12:00:00Z');
const longAgo = new Date(now.getTime() - ORPHAN_GRACE_MS - 1000).toISOString();
const justNow = new Date(now.getTime() - 5000).toISOString();

function pod(options: { gated?: boolean; names?: string; gatedAt?: string; otherGate?: boolean } = {}): V1Pod {
  return {
    metadata: {
      name: 'web-0',
      namespace: 'shop',
      creationTimestamp: new Date(longAgo),
      annotations: {
        ...(options.names !== undefined ? { [ANNOTATION_MIGRATION]: options.names } : {}),
        ...(options.gatedAt ? { [ANNOTATION_GATED_AT]: options.gatedAt } : {}),
      },
    },
    spec: {
      containers: [],
      schedulingGates: [
        ...(options.gated === false ? [] : [{ name: SCHEDULING_GATE }]),
        ...(options.otherGate ? [{ name: 'example.com/other' }] : []),
      ],
    },
  };
}

const migration = (name: string, namespace = 'shop'): VolumeMigration => ({
  apiVersion: 'pvshift.io/v1alpha1',
  kind: 'VolumeMigration',
  metadata: { name, namespace },
  spec: { claimName: name, targetStorageClassName: 'fast' },
});

t.test('which gated pods are orphans', (t) => {
  const cases: [string, V1Pod, VolumeMigration[], boolean][] = [
    ['gated long ago for a migration that is gone', pod({ names: 'data-web-0', gatedAt: longAgo }), [], true],
    [
      'gated long ago for a migration of that name in another namespace only',
      pod({ names: 'data-web-0', gatedAt: longAgo }),
      [migration('data-web-0', 'other')],
      true,
    ],
    ['gated long ago with no migration named at all', pod({ gatedAt: longAgo }), [], true],
    [
      'gated long ago, its migration still there',
      pod({ names: 'data-web-0', gatedAt: longAgo }),
      [migration('data-web-0')],
      false,
    ],
    ['gated for two migrations, one still there', pod({ names: 'a,b', gatedAt: longAgo }), [migration('b')], false],
    ['gated a moment ago (the caches may lag)', pod({ names: 'data-web-0', gatedAt: justNow }), [], false],
    ['not gated by pvshift', pod({ gated: false, otherGate: true, names: 'data-web-0', gatedAt: longAgo }), [], false],
  ];
  for (const [name, p, ms, orphan] of cases) t.equal(isOrphanGated(p, ms, now), orphan, name);
  t.end();
});
