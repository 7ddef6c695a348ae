// Events on the user's objects: the claim and the VolumeMigration. One Event per
// milestone or failure, emitted by the step that made it happen.
import { randomBytes } from 'node:crypto';
import type { Logger } from '../src/logger.js';
import { paths, type Kube } from '../src/kube.js';
import { EVENT_REPORTING_COMPONENT } from '../src/names.js';

export interface EventTarget {
  apiVersion: string;
  kind: string;
  name: string;
  namespace: string;
  uid?: string;
}

export class EventRecorder {
  constructor(
    private readonly kube: Kube,
    private readonly logger: Logger,
    private readonly instance: string,
  ) {}

  async record(target: EventTarget, type: 'Normal' | 'Warning', reason: string, message: string): Promise<void> {
    const now = new Date().toISOString();
    try {
      await this.kube.create(paths.events(target.namespace), {
        apiVersion: 'v1',
        kind: 'Event',
        metadata: { name: `${target.name}.${randomBytes(8).toString('hex')}`, namespace: target.namespace },
        involvedObject: {
          apiVersion: target.apiVersion,
          kind: target.kind,
          name: target.name,
          namespace: target.namespace,
          ...(target.uid ? { uid: target.uid } : {}),
        },
        reason,
        message: message.slice(0, 1024),
        type,
        source: { component: 'pvshift' },
        reportingComponent: EVENT_REPORTING_COMPONENT,
        reportingInstance: this.instance,
        firstTimestamp: now,
        lastTimestamp: now,
        count: 1,
      });
    } catch (e: unknown) {
      // An event lost is a log line, never a failed reconcile.
      this.logger.warn({ err: e, reason }, 'could not record event');
    }
  }
}
