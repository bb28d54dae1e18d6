import { Code, ConnectError } from "@connectrpc/connect";
import { ArtifactError, type ArtifactErrorCode } from "../artifact-error.ts";

/**
 * The one place where errors become gRPC / Connect status codes.
 *
 * ArtifactErrors keep their code and message. An abort that reached a handler
 * through its signal (client cancel, deadline, shutdown) keeps its own code.
 * Errors from drivers (Postgres, S3) that nothing translated are reported as
 * UNAVAILABLE when the backing service could not be reached, else INTERNAL
 * with a generic message; the details go to the log, not to the client.
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

const UNREACHABLE = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EHOSTUNREACH", "ENOTFOUND", "EPIPE", "57P01", "57P03", "53300"]);

export function toConnectError(error: unknown, log: (error: unknown) => void = () => {}): ConnectError {
  if (error instanceof ConnectError) return error;
  if (error instanceof ArtifactError) return new ConnectError(error.message, CODES[error.code]);
  const code = (error as { code?: unknown } | undefined)?.code;
  if (typeof code === "string" && UNREACHABLE.has(code)) {
    log(error);
    return new ConnectError("a backing store (database or blob store) is unreachable: retry later", Code.Unavailable);
  }
  log(error);
  return new ConnectError("internal error: the server logged the details", Code.Internal);
}
