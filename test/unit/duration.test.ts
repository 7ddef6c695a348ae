// Durations of the VolumeMigration spec (resyncInterval, maxDowntime): what
// parseDuration reads, and that the CRD's pattern and default say the same.
import fs from 'node:fs';
import t from 'tap';
import { parse } from 'yaml';
import { DURATION_PATTERN, parseDuration } from '../../src/duration.js';
import { DEFAULT_RESYNC_INTERVAL, maxDowntimeMs, resyncIntervalMs } from '../../src/volume-migration.js';

t.test('durations as Kubernetes users write them (Go syntax, ms to h)', (t) => {
  const cases: [string | undefined, number | undefined][] = [
    ['0', 0],
    ['30s', 30_000],
    ['5m', 300_000],
    ['1h30m', 5_400_000],
    ['1m30s', 90_000],
    ['1.5s', 1500],
    ['250ms', 250],
    ['2h0m5s', 7_205_000],
    [undefined, undefined],
    ['', undefined],
    ['5', undefined],
    ['-5m', undefined],
    ['5 m', undefined],
    ['5d', undefined],
    ['1us', undefined],
    ['PT5M', undefined],
    ['m', undefined],
  ];
  for (const [text, ms] of cases) t.equal(parseDuration(text), ms, JSON.stringify(text));
  t.end();
});

t.test('resyncInterval: default 5m, 0 turns it off; maxDowntime: unset is none', (t) => {
  const spec = { claimName: 'data', targetStorageClassName: 'fast' };
  t.equal(resyncIntervalMs(spec), 300_000, 'default');
  t.equal(resyncIntervalMs({ ...spec, resyncInterval: '2s' }), 2000);
  t.equal(resyncIntervalMs({ ...spec, resyncInterval: '0' }), undefined, 'off');
  t.equal(resyncIntervalMs({ ...spec, resyncInterval: 'soon' }), undefined, 'malformed: off, doing less');
  t.equal(maxDowntimeMs(spec), undefined);
  t.equal(maxDowntimeMs({ ...spec, maxDowntime: '30s' }), 30_000);
  t.end();
});

t.test('the CRD validates both fields with the pattern parseDuration reads, and defaults resyncInterval alike', (t) => {
  const crd = parse(
    fs.readFileSync(new URL('../../charts/pvshift/crds/volumemigrations.pvshift.io.yaml', import.meta.url), 'utf8'),
  ) as {
    spec: {
      versions: {
        schema: {
          openAPIV3Schema: {
            properties: { spec: { properties: Record<string, { pattern?: string; default?: string }> } };
          };
        };
      }[];
    };
  };
  const fields = crd.spec.versions[0]!.schema.openAPIV3Schema.properties.spec.properties;
  t.equal(fields.resyncInterval?.pattern, DURATION_PATTERN);
  t.equal(fields.maxDowntime?.pattern, DURATION_PATTERN);
  t.equal(fields.resyncInterval?.default, DEFAULT_RESYNC_INTERVAL);
  t.equal(fields.maxDowntime?.default, undefined, 'maxDowntime has no default: unset means evict at once');
  t.end();
});
