// The small set of ways pvshift answers an admission request, so that every
// handler builds its response the same way (controller-runtime's admission
// package does the same with Allowed/Denied/Errored/Patched).
import jsonpatch from 'fast-json-patch';
import type { Operation as PatchOperation } from 'fast-json-patch';
import { ADMISSION_API_VERSION, ADMISSION_REVIEW_KIND, type AdmissionResponse, type AdmissionReview } from './types.js';

function withWarnings(response: AdmissionResponse, warnings: readonly string[] | undefined): AdmissionResponse {
  if (warnings && warnings.length > 0) response.warnings = [...warnings];
  return response;
}

/** Allowed as sent. */
export function allowed(uid: string, warnings?: readonly string[]): AdmissionResponse {
  return withWarnings({ uid, allowed: true }, warnings);
}

/**
 * Allowed with the difference between `original` and `mutated` as a JSON Patch.
 * The patch is computed, never written by hand: annotation keys hold `/`, which a
 * hand-built JSON Pointer must escape as `~1` and is easy to get wrong. No
 * difference gives no patch at all (the API server then skips reinvocation).
 */
export function patched(
  uid: string,
  original: unknown,
  mutated: unknown,
  warnings?: readonly string[],
): AdmissionResponse {
  const operations = diff(original, mutated);
  if (operations.length === 0) return allowed(uid);
  return withWarnings(
    {
      uid,
      allowed: true,
      patchType: 'JSONPatch',
      patch: Buffer.from(JSON.stringify(operations)).toString('base64'),
    },
    warnings,
  );
}

/** Refused, with a message kubectl shows after "admission webhook ... denied the request:". */
export function denied(uid: string, message: string, code = 403): AdmissionResponse {
  return { uid, allowed: false, status: { code, message, reason: reasonFor(code) } };
}

/** Refused because pvshift could not decide: an internal failure or a state it cannot serve yet. */
export function errored(uid: string, code: number, message: string): AdmissionResponse {
  return { uid, allowed: false, status: { code, message, reason: reasonFor(code) } };
}

/** Wraps a response in the AdmissionReview envelope the API server expects back. */
export function review(response: AdmissionResponse): AdmissionReview {
  return { apiVersion: ADMISSION_API_VERSION, kind: ADMISSION_REVIEW_KIND, response };
}

/**
 * The JSON Patch from `original` to `mutated` (fast-json-patch `compare`).
 * `compare` returns at once on a subtree that is the same object on both
 * sides, so the copy-on-write mutations pay only for the parts they changed
 * (a real StatefulSet pod review: about 2 µs).
 */
export function diff(original: unknown, mutated: unknown): PatchOperation[] {
  return jsonpatch.compare(original as object, mutated as object);
}

// metav1.StatusReason values for the codes pvshift uses (apimachinery/pkg/apis/meta/v1/types.go).
function reasonFor(code: number): string | undefined {
  switch (code) {
    case 400:
      return 'BadRequest';
    case 403:
      return 'Forbidden';
    case 409:
      return 'Conflict';
    case 500:
      return 'InternalError';
    case 503:
      return 'ServiceUnavailable';
    default:
      return undefined;
  }
}
