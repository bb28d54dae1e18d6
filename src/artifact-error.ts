/**
 * The one error type of the domain. Code where a failure arises picks the
 * code and writes a message that says what was wrong and what to do; the
 * transport maps codes to gRPC / Connect codes in one place
 * (transport/connect-error-mapping.ts).
 */
export type ArtifactErrorCode =
  | "invalid_argument"
  | "not_found"
  | "already_exists"
  | "failed_precondition"
  | "aborted"
  | "out_of_range"
  | "resource_exhausted"
  | "data_loss"
  | "unauthenticated"
  | "permission_denied"
  | "cancelled"
  | "deadline_exceeded"
  | "unavailable"
  | "unimplemented"
  | "internal";

export class ArtifactError extends Error {
  override readonly name = "ArtifactError";
  readonly code: ArtifactErrorCode;

  constructor(code: ArtifactErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

export const invalidArgument = (message: string) => new ArtifactError("invalid_argument", message);
export const notFound = (message: string) => new ArtifactError("not_found", message);
export const failedPrecondition = (message: string) => new ArtifactError("failed_precondition", message);
