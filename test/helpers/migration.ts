// Helpers of the migration tests: data a user would care about, and waits on
// what a user would watch (the VolumeMigration's phase, the events).
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { CoreV1Event } from '@kubernetes/client-node';
import { GiveUp, waitFor } from '../../cluster/index.js';
import { paths, type Kube } from '../../src/kube.js';
import { ANNOTATION_TARGET_CLASS } from '../../src/names.js';
import type { Phase, VolumeMigration } from '../../src/volume-migration.js';
import { snapshotTree } from '../runner/fixtures/trees.js';

export { snapshotTree };

/**
 * Fills a volume with what a real one holds: owners other than root, modes
 * with setuid and sticky bits, nanosecond mtimes, hard and symbolic links,
 * xattrs, an empty directory, a name with spaces, and `megabytes` of random data.
 */
export function fillVolume(dir: string, megabytes = 1): void {
  fs.mkdirSync(path.join(dir, 'db', 'wal'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'empty dir'), { recursive: true });
  const chunk = 1024 * 1024;
  for (let i = 0; i < megabytes; i++)
    fs.writeFileSync(path.join(dir, 'db', `segment-${String(i).padStart(4, '0')}`), randomBytes(chunk));
  fs.writeFileSync(path.join(dir, 'db', 'wal', 'log 0001'), 'begin;\ninsert;\ncommit;\n');
  fs.writeFileSync(path.join(dir, 'config.yaml'), 'replicas: 3\n');
  fs.chownSync(path.join(dir, 'config.yaml'), 999, 998);
  fs.chmodSync(path.join(dir, 'config.yaml'), 0o4640);
  fs.chmodSync(path.join(dir, 'empty dir'), 0o1777);
  fs.linkSync(path.join(dir, 'config.yaml'), path.join(dir, 'db', 'config-link'));
  fs.symlinkSync('../config.yaml', path.join(dir, 'db', 'config-symlink'));
  execFileSync('setfattr', ['-n', 'user.origin', '-v', 'pvshift-test', path.join(dir, 'config.yaml')]);
  execFileSync('touch', ['-h', '-d', '2021-02-03 04:05:06.123456789', path.join(dir, 'db', 'wal', 'log 0001')]);
}

export async function migrationOf(kube: Kube, namespace: string, name: string): Promise<VolumeMigration | undefined> {
  return kube.get<VolumeMigration>(paths.migrations(namespace, name));
}

export function waitForPhase(
  kube: Kube,
  namespace: string,
  name: string,
  phases: Phase[],
  timeoutMs = 120_000,
): Promise<VolumeMigration> {
  return waitFor(
    `VolumeMigration ${namespace}/${name} in ${phases.join('|')}`,
    async () => {
      const m = await migrationOf(kube, namespace, name);
      const phase = m?.status?.phase ?? 'Pending';
      if (m && phases.includes(phase)) return m;
      if (m && ['Failed', 'RolledBack', 'Aborted'].includes(phase) && !phases.includes(phase)) {
        throw new GiveUp(
          `${namespace}/${name}: migration ended ${phase} while waiting for ${phases.join('|')}: ${m.status?.message}`,
        );
      }
      return undefined;
    },
    timeoutMs,
    200,
  );
}

export async function annotateClaim(
  kube: Kube,
  namespace: string,
  claim: string,
  targetClass: string,
  extra: Record<string, string> = {},
): Promise<void> {
  await kube.patch(paths.claims(namespace, claim), {
    metadata: { annotations: { [ANNOTATION_TARGET_CLASS]: targetClass, ...extra } },
  });
}

export async function eventReasons(
  kube: Kube,
  namespace: string,
  objectName: string,
  kind?: string,
): Promise<string[]> {
  const events = await kube.list<CoreV1Event>(paths.events(namespace), {
    fieldSelector: `involvedObject.name=${objectName}`,
  });
  return events.items.filter((e) => !kind || e.involvedObject.kind === kind).map((e) => e.reason ?? '');
}

export function createMigration(
  kube: Kube,
  namespace: string,
  name: string,
  spec: VolumeMigration['spec'],
): Promise<VolumeMigration> {
  return kube.create<VolumeMigration>(paths.migrations(namespace), {
    apiVersion: 'pvshift.io/v1alpha1',
    kind: 'VolumeMigration',
    metadata: { name, namespace },
    spec,
  });
}

/**
 * The reasons of the events on an object, once all of `expected` are there (or
 * after 10 s): events are written right after the status change they report.
 */
export async function eventReasonsWith(
  kube: Kube,
  namespace: string,
  objectName: string,
  kind: string,
  expected: string[],
): Promise<string[]> {
  let last: string[] = [];
  try {
    return await waitFor(
      `events ${expected.join(', ')} on ${kind} ${objectName}`,
      async () => {
        last = await eventReasons(kube, namespace, objectName, kind);
        return expected.every((r) => last.includes(r)) ? last : undefined;
      },
      10_000,
    );
  } catch {
    return last;
  }
}
