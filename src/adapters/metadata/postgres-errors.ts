import { ArtifactError, storageFull, storeUnavailable } from "../../artifact-error.ts";
import { classifyWithCauses, DISK_FULL_CODES, SOCKET_ERROR_CODES } from "../driver-errors.ts";

/**
 * What Postgres (node-postgres, and embedded PGlite) failures mean for a
 * caller, as ArtifactErrors with the driver's error as their cause. Every
 * statement of the metadata store passes through here
 * (./translate-dialect-errors.ts, applied in ./open-metadata-store.ts);
 * errors not listed stay as they are, for the store's own checks (a unique
 * or foreign-key violation) or as the internal errors they are.
 */
export type PostgresFailure = "unavailable" | "full" | "statement_timeout";

/**
 * SQLSTATEs that mean: try again. admin_shutdown, crash_shutdown,
 * cannot_connect_now, too_many_connections, serialization_failure,
 * deadlock_detected; and class 08, connection exceptions (below).
 */
const UNAVAILABLE_STATES = new Set(["57P01", "57P02", "57P03", "53300", "40001", "40P01"]);
/** disk_full, out_of_memory. */
const FULL_STATES = new Set(["53100", "53200"]);
/**
 * query_canceled: a statement cancelled by statement_timeout (or by an
 * operator's pg_cancel_backend). The connection is left usable.
 */
const STATEMENT_CANCELLED = "57014";
/** node-postgres reports a lost connection in words, without a code. */
const CONNECTION_LOST = /Connection terminated|not queryable|timeout exceeded when trying to connect|Connection ended unexpectedly/i;

export function classifyPostgresError(error: unknown): PostgresFailure | undefined {
  return classifyWithCauses<PostgresFailure>(error, ({ code, message }) => {
    if (typeof code === "string") {
      // PGlite writes its files itself, so the file system's own "full" reaches it too.
      if (FULL_STATES.has(code) || DISK_FULL_CODES.has(code)) return "full";
      if (code === STATEMENT_CANCELLED) return "statement_timeout";
      if (UNAVAILABLE_STATES.has(code) || code.startsWith("08") || SOCKET_ERROR_CODES.has(code)) return "unavailable";
    }
    if (typeof message === "string" && CONNECTION_LOST.test(message)) return "unavailable";
    return undefined;
  });
}

/**
 * The ArtifactError a Postgres failure means, or the error itself when it
 * means nothing to a caller. A cancelled statement is RESOURCE_EXHAUSTED like
 * every other per-request cap (the request asked for more work than the
 * server allows one statement), rather than DEADLINE_EXCEEDED, which clients
 * read as their own deadline running out.
 */
export function fromPostgresError(error: unknown): unknown {
  if (error instanceof ArtifactError) return error;
  switch (classifyPostgresError(error)) {
    case "unavailable":
      return storeUnavailable(error);
    case "full":
      return storageFull(error);
    case "statement_timeout":
      return new ArtifactError(
        "resource_exhausted",
        "a database statement ran longer than this server allows (ARTIFACTD_DATABASE_STATEMENT_TIMEOUT_MS) and was cancelled: narrow the filter, ask for a smaller page or depth, or retry later if the server is busy",
        { cause: error },
      );
    default:
      return error;
  }
}

/**
 * The driver's own error behind one fromPostgresError translated, else the
 * error itself: for whoever starts the server, who needs the driver's words
 * (which host refused, what failed) rather than a caller's retry advice.
 */
export function untranslatedPostgresError(error: unknown): unknown {
  return error instanceof ArtifactError && classifyPostgresError(error.cause) !== undefined ? error.cause : error;
}
