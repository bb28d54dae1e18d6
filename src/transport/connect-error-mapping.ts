import { Code, ConnectError } from "@connectrpc/connect";
import { ArtifactError, type ArtifactErrorCode } from "../artifact-error.ts";

/**
 * The one place where errors become gRPC / Connect status codes.
 *
 * ArtifactErrors keep their code and message; that includes a store that
 * could not be reached (UNAVAILABLE: retry), storage that is full and a
 * database statement cancelled for running too long (RESOURCE_EXHAUSTED),
 * which the adapters raise from their drivers' errors
 * (adapters/metadata/postgres-errors.ts, adapters/blob/s3-errors.ts,
 * adapters/blob/fs-errors.ts). Anything else is a bug: INTERNAL, its text in
 * the log and never in the answer.
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

/**
 * The machine-readable part of a refusal, sent as response trailers (gRPC) or
 * headers (Connect unary): `retry-after-ms` when waiting is expected to help,
 * `quota-exceeded` naming the tenant quota that refused the call, and any
 * other the error carries.
 */
function errorMetadata(error: ArtifactError): Headers | undefined {
  if (error.retryAfterMs === undefined && error.quota === undefined && error.trailers === undefined) return undefined;
  const metadata = new Headers(error.trailers);
  if (error.retryAfterMs !== undefined) metadata.set(RETRY_AFTER_MS, String(Math.max(0, Math.ceil(error.retryAfterMs))));
  if (error.quota !== undefined) metadata.set(QUOTA_EXCEEDED, error.quota);
  return metadata;
}

export const RETRY_AFTER_MS = "retry-after-ms";
export const QUOTA_EXCEEDED = "quota-exceeded";

/**
 * Whether `error` is one toConnectError answers INTERNAL: a bug, not a
 * refusal or a store that could not be reached. (A ConnectError was
 * answered as it is, by whoever decided it.)
 */
export function answersInternal(error: unknown): boolean {
  return !(error instanceof ConnectError) && toConnectError(error).code === Code.Internal;
}

export function toConnectError(error: unknown, log: (error: unknown) => void = () => {}): ConnectError {
  if (error instanceof ConnectError) return error;
  if (error instanceof ArtifactError) {
    // The error itself, not only its cause: the log then shows the code the caller was answered.
    if (error.cause !== undefined) log(error);
    return new ConnectError(error.message, CODES[error.code], errorMetadata(error));
  }
  log(error);
  return new ConnectError("internal error: the server logged the details", Code.Internal);
}
