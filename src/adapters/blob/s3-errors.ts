import { ArtifactError, storageFull, storeUnavailable } from "../../artifact-error.ts";
import { classifyWithCauses, SOCKET_ERROR_CODES } from "../driver-errors.ts";

/**
 * What S3 / MinIO failures (minio-js' S3Error, and the sockets under it) mean
 * for a caller, as ArtifactErrors with the driver's error as their cause.
 * Every call into the S3 blob store passes through here
 * (./translate-blob-store-errors.ts, applied where ./s3-blob-store.ts makes
 * the store); errors not listed stay as they are (the store's own NoSuchKey
 * and NoSuchUpload checks happen inside it, before this).
 */
export type S3Failure = "unavailable" | "full";

/** S3 and MinIO error codes that mean: try again. */
const UNAVAILABLE_CODES = new Set([
  "SlowDown",
  "ServiceUnavailable",
  "InternalError",
  "RequestTimeout",
  "RequestTimeTooSkewed",
  "XMinioServerNotInitialized",
  "XMinioReadQuorum",
  "XMinioWriteQuorum",
]);
/** Answers with only an HTTP status that mean the same: internal error, unavailable, too many requests. */
const UNAVAILABLE_STATUSES = new Set([500, 503, 429]);
/** Node's HTTP client reports a dropped keep-alive connection in words. */
const CONNECTION_LOST = /socket hang up/i;

export function classifyS3Error(error: unknown): S3Failure | undefined {
  return classifyWithCauses<S3Failure>(error, ({ code, message, statusCode }) => {
    if (code === "XMinioStorageFull") return "full";
    if (typeof code === "string" && (UNAVAILABLE_CODES.has(code) || SOCKET_ERROR_CODES.has(code))) return "unavailable";
    if (typeof statusCode === "number" && UNAVAILABLE_STATUSES.has(statusCode)) return "unavailable";
    if (typeof message === "string" && CONNECTION_LOST.test(message)) return "unavailable";
    return undefined;
  });
}

/** The ArtifactError an S3 failure means, or the error itself when it means nothing to a caller. */
export function fromS3Error(error: unknown): unknown {
  if (error instanceof ArtifactError) return error;
  switch (classifyS3Error(error)) {
    case "unavailable":
      return storeUnavailable(error);
    case "full":
      return storageFull(error);
    default:
      return error;
  }
}

/** No object under the key: S3's NoSuchKey, or NotFound for an answer without a body (HEAD). */
export function isMissingS3Object(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === "NoSuchKey" || code === "NotFound";
}
