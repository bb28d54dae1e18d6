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
  /** When trying again is expected to work: the earliest worth trying, in ms (sent as the `retry-after-ms` trailer). */
  readonly retryAfterMs: number | undefined;
  /** For resource_exhausted from a tenant quota: which one (sent as the `quota-exceeded` trailer), e.g. "stored-bytes". */
  readonly quota: string | undefined;

  constructor(code: ArtifactErrorCode, message: string, options?: { cause?: unknown; retryAfterMs?: number; quota?: string }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.retryAfterMs = options?.retryAfterMs;
    this.quota = options?.quota;
  }
}

export const invalidArgument = (message: string) => new ArtifactError("invalid_argument", message);
export const notFound = (message: string) => new ArtifactError("not_found", message);
export const failedPrecondition = (message: string) => new ArtifactError("failed_precondition", message);
