/**
 * What the store adapters share about the errors their drivers throw:
 * Node's own error codes, and where in an error to look for them. Each
 * adapter's `*-errors.ts` (metadata/postgres-errors.ts, blob/s3-errors.ts,
 * blob/fs-errors.ts) decides what they mean for its store.
 */

/** Socket and DNS failures (Node, and undici under the S3 client): the store could not be reached, or dropped the connection. */
export const SOCKET_ERROR_CODES: ReadonlySet<string> = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EPIPE",
  "EAI_AGAIN",
  "UND_ERR_SOCKET",
]);

/** A full file system, or the user's disk quota. */
export const DISK_FULL_CODES: ReadonlySet<string> = new Set(["ENOSPC", "EDQUOT"]);

/** The fields drivers put their codes in. */
export interface DriverErrorFields {
  readonly code?: unknown;
  readonly message?: unknown;
  /** HTTP status of an S3 answer. */
  readonly statusCode?: unknown;
}

/**
 * The first answer `classify` gives for the error, its causes or an
 * AggregateError's errors (drivers and stream pipelines wrap what they
 * caught), a few levels deep.
 */
export function classifyWithCauses<T>(error: unknown, classify: (fields: DriverErrorFields) => T | undefined, depth = 0): T | undefined {
  if (error === null || typeof error !== "object" || depth > 4) return undefined;
  const found = classify(error as DriverErrorFields);
  if (found !== undefined) return found;
  const { cause, errors } = error as { cause?: unknown; errors?: unknown };
  for (const inner of [cause, ...(Array.isArray(errors) ? errors : [])]) {
    const innerFound = classifyWithCauses(inner, classify, depth + 1);
    if (innerFound !== undefined) return innerFound;
  }
  return undefined;
}
