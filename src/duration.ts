// Durations in a VolumeMigration's spec (resyncInterval, maxDowntime), written
// as Kubernetes users write them elsewhere (metav1.Duration, e.g. a probe's or
// an HPA behaviour's): Go's time.ParseDuration syntax, "90s", "5m", "1h30m".
// Parsed here, once; the CRD's pattern (DURATION_PATTERN) admits exactly what
// parseDuration accepts.

/** The units pvshift accepts: Go's less the sub-millisecond ones, which no copy schedule needs. */
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** The CRD's pattern of a duration field: `0`, or one or more number-and-unit parts. */
export const DURATION_PATTERN = '^(0|([0-9]+(\\.[0-9]+)?(ms|s|m|h))+)$';
const DURATION = new RegExp(DURATION_PATTERN);
const PART = /([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)/g;

/** Milliseconds of a duration such as `5m`, `1m30s` or `0`; undefined if malformed. */
export function parseDuration(text: string | undefined): number | undefined {
  if (text === undefined || !DURATION.test(text)) return undefined;
  if (text === '0') return 0;
  let ms = 0;
  for (const [, number, unit] of text.matchAll(PART)) ms += Number(number) * UNIT_MS[unit!]!;
  return ms;
}
