// The webhook's Prometheus metrics. Children for every label pair are made up
// front: looking a child up by a label object on each request is measurable at
// thousands of requests per second.
import { Counter, Histogram, type Registry } from 'prom-client';

export const RESOURCES = ['persistentvolumeclaims', 'pods'] as const;
export type AdmittedResource = (typeof RESOURCES)[number];

/**
 * allowed: no change; patched: mutated; denied: refused on purpose; errored:
 * refused because pvshift failed or was not ready; invalid: not an
 * AdmissionReview (answered with an HTTP 4xx).
 */
export const RESULTS = ['allowed', 'patched', 'denied', 'errored', 'invalid'] as const;
export type AdmissionResult = (typeof RESULTS)[number];

export interface WebhookMetrics {
  observe(resource: AdmittedResource, result: AdmissionResult, seconds: number): void;
}

export function createWebhookMetrics(register: Registry): WebhookMetrics {
  const requests = new Counter({
    name: 'pvshift_webhook_requests_total',
    help: 'Admission requests handled, by resource and result.',
    labelNames: ['resource', 'result'],
    registers: [register],
  });
  const latency = new Histogram({
    name: 'pvshift_webhook_request_duration_seconds',
    help: 'Time from a parsed body to the response, by resource and result.',
    labelNames: ['resource', 'result'],
    // The API server's own timeout for these webhooks is 5 s (pods) and 10 s
    // (claims); the useful resolution is well below a millisecond up to there.
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5, 10],
    registers: [register],
  });
  const children = new Map<string, { count: Counter.Internal; time: Histogram.Internal<string> }>();
  for (const resource of RESOURCES) {
    for (const result of RESULTS) {
      children.set(`${resource} ${result}`, {
        count: requests.labels(resource, result),
        time: latency.labels(resource, result),
      });
      // Zero series exist from the start, so rate() works before the first event.
      requests.labels(resource, result).inc(0);
    }
  }
  return {
    observe(resource, result, seconds) {
      const child = children.get(`${resource} ${result}`);
      child?.count.inc();
      child?.time.observe(seconds);
    },
  };
}
