/**
 * The one error type of the domain. Code where a failure arises picks the
 * code and writes a message that says what was wrong and what to do; the
 * transport maps codes to gRPC / Connect codes in one place
 * (transport/connect-error-mapping.ts). That includes the stores: each
 * adapter translates what its driver throws (adapters/metadata/postgres-errors.ts,
 * adapters/blob/s3-errors.ts, adapters/blob/fs-errors.ts), so the transport
 * knows no SQLSTATE, errno or S3 code.
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
  /** Any other machine-readable part of the refusal, sent as trailers beside the message (e.g. `direct-download-unavailable`). */
  readonly trailers: Readonly<Record<string, string>> | undefined;

  constructor(
    code: ArtifactErrorCode,
    message: string,
    options?: { cause?: unknown; retryAfterMs?: number; quota?: string; trailers?: Readonly<Record<string, string>> },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.retryAfterMs = options?.retryAfterMs;
    this.quota = options?.quota;
    this.trailers = options?.trailers;
  }
}

export const invalidArgument = (message: string) => new ArtifactError("invalid_argument", message);
export const notFound = (message: string) => new ArtifactError("not_found", message);
export const failedPrecondition = (message: string) => new ArtifactError("failed_precondition", message);

/**
 * A store could not be reached, dropped the connection or asked us to slow
 * down: the caller should retry. Raised by the adapters that meet the
 * drivers, with the driver's error as the cause: its words go to the log,
 * never to the caller.
 */
export const storeUnavailable = (cause: unknown) =>
  new ArtifactError("unavailable", "a backing store (database or blob store) is unreachable or busy: retry later", { cause });

/** The storage under a store is full (a file system, Postgres' disk, MinIO's drives); raised like storeUnavailable. */
export const storageFull = (cause: unknown) =>
  new ArtifactError("resource_exhausted", "the server's storage is full: nothing was stored; retry later or ask the operator to free space", { cause });
