import { Code, ConnectError } from "@connectrpc/connect";

/**
 * Whether a failed call is worth making again: the one rule of both
 * clients (the Node SDK's retry policy and the web client's withRetry), so
 * a call the one retries the other does not give up on. Which calls are
 * safe to repeat at all (idempotent RPCs, streams resumed from an upload
 * session or the last byte received) is the caller's choice; this says only
 * whether the failure may pass. Each caller checks its own abort signal
 * first.
 *
 * Code by code:
 *
 * - UNAVAILABLE, retried: the service could not be reached, restarted, is
 *   draining for shutdown, or a proxy in front of it answered 502/503/504.
 * - ABORTED, retried: the service answers it only for a conflict with
 *   another call that passes — an upload session still held by the stream a
 *   dropped connection left, or being completed by another call; a complete
 *   taken over by another; content reclaimed by garbage collection while the
 *   upload ran; an upload taken for dead while the database was away. Every
 *   such message asks for the same call again. Decided by the code, not the
 *   message, so a reworded message cannot turn retries off unnoticed.
 * - RESOURCE_EXHAUSTED, retried only with the service's `retry-after-ms`
 *   (see retryAfterMs): it sends one only for tenant quotas that pass (calls
 *   per second, concurrent transfers, open sessions), refused before
 *   anything was done. Without it (stored bytes, the upload size limit, a
 *   statement timeout) waiting does not help.
 * - INTERNAL and UNKNOWN, retried only when they carry a transport failure:
 *   connect reports an HTTP/2 stream or socket reset as INTERNAL / UNKNOWN
 *   (or ABORTED) with the transport's text, e.g. "read ECONNRESET", and a
 *   browser's failed fetch as UNKNOWN "Failed to fetch" (Chromium),
 *   "NetworkError when attempting to fetch resource." (Firefox), "Load
 *   failed" (Safari). An INTERNAL the service answered itself is a bug, and
 *   the same call meets it again.
 * - CANCELED, retried only as "http/2 stream closed with error code …": a
 *   connection that died under a stream. Any other CANCELED is the caller's
 *   own abort.
 * - DEADLINE_EXCEEDED, final: the caller's time budget is spent (another try
 *   would overrun it), or the service stopped a stream that sent nothing for
 *   ARTIFACTD_UPLOAD_IDLE_TIMEOUT_MS (the fix is to keep sending, not to
 *   start again).
 * - Everything else — INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS,
 *   FAILED_PRECONDITION, OUT_OF_RANGE, PERMISSION_DENIED, UNAUTHENTICATED,
 *   DATA_LOSS, UNIMPLEMENTED — is the service's answer to this request, and
 *   it would answer the same again.
 */
export function isTransientFailure(error: unknown): boolean {
  const connectError = ConnectError.from(error);
  switch (connectError.code) {
    case Code.Unavailable:
    case Code.Aborted:
      return true;
    case Code.ResourceExhausted:
      return retryAfterMs(connectError) !== undefined;
    case Code.Canceled:
      return CONNECTION_DIED_UNDER_STREAM.test(connectError.rawMessage);
    case Code.Internal:
    case Code.Unknown:
      return TRANSPORT_FAILURE.test(connectError.rawMessage) || TRANSPORT_FAILURE.test(String((connectError.cause as Error | undefined)?.message ?? ""));
    default:
      return false;
  }
}

/** The service's `retry-after-ms` (a response header or trailer of a quota refusal), when it sent a number >= 0. */
export function retryAfterMs(error: ConnectError): number | undefined {
  const raw = error.metadata.get("retry-after-ms");
  const ms = raw === null ? Number.NaN : Number(raw);
  return Number.isFinite(ms) && ms >= 0 ? ms : undefined;
}

/** Node's HTTP/2 and socket errors, then the browsers' and undici's failed fetch. */
const TRANSPORT_FAILURE =
  /RST_STREAM|ECONNRESET|EPIPE|ECONNREFUSED|socket hang up|stream closed|session closed|GOAWAY|ERR_HTTP2|premature close|other side closed|Failed to fetch|NetworkError|Load failed|fetch failed|network error|network connection was lost/i;
const CONNECTION_DIED_UNDER_STREAM = /stream closed with error code/;
