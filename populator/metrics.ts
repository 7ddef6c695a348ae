// The controller's Prometheus metrics.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { PHASES, phaseOf, type VolumeMigration } from '../src/volume-migration.js';

export interface ControllerMetrics {
  bytesCopied: Counter<'pass'>;
  copySeconds: Histogram<'pass'>;
  downtimeSeconds: Histogram;
  reconcileErrors: Counter<'kind'>;
}

export function createControllerMetrics(register: Registry, migrations: () => VolumeMigration[]): ControllerMetrics {
  new Gauge({
    name: 'pvshift_migrations',
    help: 'VolumeMigrations by phase',
    labelNames: ['phase'],
    registers: [register],
    collect() {
      const counts = new Map<string, number>(PHASES.map((p) => [p, 0]));
      for (const m of migrations()) counts.set(phaseOf(m), (counts.get(phaseOf(m)) ?? 0) + 1);
      for (const [phase, count] of counts) this.set({ phase }, count);
    },
  });
  return {
    bytesCopied: new Counter({
      name: 'pvshift_copied_bytes_total',
      help: 'Bytes transferred by copy pods',
      labelNames: ['pass'],
      registers: [register],
    }),
    copySeconds: new Histogram({
      name: 'pvshift_copy_duration_seconds',
      help: 'Duration of copy passes',
      labelNames: ['pass'],
      buckets: [1, 5, 15, 60, 300, 900, 3600, 14400],
      registers: [register],
    }),
    downtimeSeconds: new Histogram({
      name: 'pvshift_downtime_seconds',
      help: 'From the consumer pod gated to the gate lifted',
      buckets: [1, 5, 15, 30, 60, 300, 900, 3600],
      registers: [register],
    }),
    reconcileErrors: new Counter({
      name: 'pvshift_reconcile_errors_total',
      help: 'Reconcile failures by kind',
      labelNames: ['kind'],
      registers: [register],
    }),
  };
}
