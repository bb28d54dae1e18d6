import { Code, ConnectError } from "@connectrpc/connect";
import { ArtifactError, type ArtifactErrorCode } from "../artifact-error.ts";

/**
 * The one place where errors become gRPC / Connect status codes.
 *
 * ArtifactErrors keep their code and message. An abort that reached a handler
 * through its signal (client cancel, deadline, shutdown) keeps its own code.
 * Errors from drivers (Postgres, S3, the file system) that nothing
 * translated are classified by what a client should do: UNAVAILABLE (retry)
 * when a store could not be reached, dropped the connection, or asked us to
 * slow down; RESOURCE_EXHAUSTED when storage is full, and when Postgres
 * cancelled a statement that ran past ARTIFACTD_DATABASE_STATEMENT_TIMEOUT_MS
 * (the request asked for more work than the server allows one statement:
 * RESOURCE_EXHAUSTED like every other per-request cap, rather than
 * DEADLINE_EXCEEDED, which clients read as their own deadline running out);
 * else INTERNAL. The answer never carries the driver's text: that goes to
 * the log.
 */
const CODES: Record<ArtifactErrorCode, Code> = {
  invalid_argument: Code.InvalidArgument,
  not_found: Code.NotFound,
  already_exists: Code.AlreadyExists,
  failed_precondition: Code.FailedPrecondition,
  aborted: Code.Aborted,
  out_of_range: Code.OutOfRange,
  resource_exhausted: Code.ResourceExhausted,
  data_loss: Code.DataLoss,
  unauthenticated: Code.Unauthenticated,
  permission_denied: Code.PermissionDenied,
  cancelled: Code.Canceled,
  deadline_exceeded: Code.DeadlineExceeded,
  unavailable: Code.Unavailable,
  unimplemented: Code.Unimplemented,
  internal: Code.Internal,
};

/** Socket errors, Postgres codes (admin shutdown, crash shutdown, cannot connect now, too many connections) and S3 codes that mean: try again. */
const UNREACHABLE = new Set([
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
  "57P01",
  "57P02",
  "57P03",
  "53300",
  "40001",
  "40P01",
  "SlowDown",
  "ServiceUnavailable",
  "InternalError",
  "RequestTimeout",
  "RequestTimeTooSkewed",
  "XMinioServerNotInitialized",
  "XMinioReadQuorum",
  "XMinioWriteQuorum",
]);
/** Storage full: the file system's, Postgres' (disk full, out of memory), MinIO's. */
const FULL = new Set(["ENOSPC", "EDQUOT", "53100", "53200", "XMinioStorageFull"]);
/**
 * query_canceled: a statement cancelled by statement_timeout (or by an
 * operator's pg_cancel_backend). The connection is left usable.
 */
const STATEMENT_CANCELLED = "57014";
/** node-postgres reports a lost connection in words, without a code. */
const CONNECTION_LOST = /Connection terminated|not queryable|timeout exceeded when trying to connect|Connection ended unexpectedly|socket hang up/i;

export type StoreFailure = "unavailable" | "full" | "statement_timeout" | undefined;

/** What a driver error means for the caller, looking through causes and aggregated errors. */
export function classifyStoreError(error: unknown, depth = 0): StoreFailure {
  if (error === null || typeof error !== "object" || depth > 4) return undefined;
  const { code, message, cause, errors, statusCode } = error as { code?: unknown; message?: unknown; cause?: unknown; errors?: unknown; statusCode?: unknown };
  if (typeof code === "string" && FULL.has(code)) return "full";
  if (code === STATEMENT_CANCELLED) return "statement_timeout";
  if (typeof code === "string" && (UNREACHABLE.has(code) || code.startsWith("08"))) return "unavailable";
  // S3 answers 500/503 with its own codes, but some responses carry only the status.
  if (typeof statusCode === "number" && (statusCode === 503 || statusCode === 500 || statusCode === 429)) return "unavailable";
  if (typeof message === "string" && CONNECTION_LOST.test(message)) return "unavailable";
  for (const inner of [cause, ...(Array.isArray(errors) ? errors : [])]) {
    const found = classifyStoreError(inner, depth + 1);
    if (found) return found;
  }
  return undefined;
}

/**
 * The machine-readable part of a refusal, sent as response trailers (gRPC) or
 * headers (Connect unary): `retry-after-ms` when waiting is expected to help,
 * `quota-exceeded` naming the tenant quota that refused the call.
 */
function errorMetadata(error: ArtifactError): Headers | undefined {
  if (error.retryAfterMs === undefined && error.quota === undefined) return undefined;
  const metadata = new Headers();
  if (error.retryAfterMs !== undefined) metadata.set(RETRY_AFTER_MS, String(Math.max(0, Math.ceil(error.retryAfterMs))));
  if (error.quota !== undefined) metadata.set(QUOTA_EXCEEDED, error.quota);
  return metadata;
}

export const RETRY_AFTER_MS = "retry-after-ms";
export const QUOTA_EXCEEDED = "quota-exceeded";

export function toConnectError(error: unknown, log: (error: unknown) => void = () => {}): ConnectError {
  if (error instanceof ConnectError) return error;
  if (error instanceof ArtifactError) {
    // The error itself, not only its cause: the log then shows the code the caller was answered.
    if (error.cause !== undefined) log(error);
    return new ConnectError(error.message, CODES[error.code], errorMetadata(error));
  }
  log(error);
  switch (classifyStoreError(error)) {
    case "unavailable":
      return new ConnectError("a backing store (database or blob store) is unreachable or busy: retry later", Code.Unavailable);
    case "statement_timeout":
      return new ConnectError(
        "a database statement ran longer than this server allows (ARTIFACTD_DATABASE_STATEMENT_TIMEOUT_MS) and was cancelled: narrow the filter, ask for a smaller page or depth, or retry later if the server is busy",
        Code.ResourceExhausted,
      );
    case "full":
      return new ConnectError("the server's storage is full: nothing was stored; retry later or ask the operator to free space", Code.ResourceExhausted);
    default:
      return new ConnectError("internal error: the server logged the details", Code.Internal);
  }
}
