import { ArtifactIntegrityError, Code, ConnectError, DirectoryManifestError } from "@artifactd/client";

/**
 * Exit codes of the client commands, and the one place that turns a failure
 * into a message and a code. Scripts branch on the code; people read the
 * message, which says what was wrong and what to do. Nothing is written to
 * standard output on failure, so `id=$(artifactd put …)` never captures an
 * error. The server commands of `artifactd` throw CliError and UsageError
 * too, so a bad flag fails the same way (exit 2) in either half.
 */
export const EXIT = {
  ok: 0,
  /** Anything not below: a bug, corrupt content, a local file system error. */
  failed: 1,
  /** Bad usage or argument (a flag, an id, a value the service refused as invalid). */
  usage: 2,
  notFound: 3,
  /** No token, a token the service refused, or one not allowed to do this. */
  auth: 4,
  /** The service could not be reached or did not answer in time. */
  unavailable: 5,
  /** Refused by the artifact's state: pinned, deleted, already exists. */
  refused: 6,
  /** Stopped by Ctrl-C (128 + SIGINT, as shells report it). */
  interrupted: 130,
} as const;

/** A failure found by the command itself, with its exit code; the message is shown as is. */
export class CliError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode: number) {
    super(message);
    this.exitCode = exitCode;
  }
}

/** Bad usage: a missing argument, an unknown flag, a malformed value. Exit 2. */
export class UsageError extends CliError {
  constructor(message: string) {
    super(message, EXIT.usage);
  }
}

/** Where the command was talking to, and where those settings came from, for messages that say what to change. */
export interface ConnectionContext {
  readonly baseUrl: string;
  readonly urlSource: string;
  readonly tokenSource: string;
}

/** Writes one message about `error` to standard error and answers the exit code. */
export function reportFailure(error: unknown, connection: ConnectionContext | undefined, writeError: (message: string) => void): number {
  const { message, exitCode } = describeFailure(error, connection);
  writeError(`artifactd: ${message}`);
  return exitCode;
}

function describeFailure(error: unknown, connection: ConnectionContext | undefined): { message: string; exitCode: number } {
  if (error instanceof CliError) return { message: error.message, exitCode: error.exitCode };
  if (error instanceof ArtifactIntegrityError) {
    return { message: `${error.message} (nothing was written; run the command again, and tell the operator if it keeps failing)`, exitCode: EXIT.failed };
  }
  if (error instanceof DirectoryManifestError) return { message: `cannot restore: ${error.message} (nothing was written)`, exitCode: EXIT.failed };
  if (!(error instanceof ConnectError)) {
    const text = error instanceof Error ? error.message : String(error);
    return { message: text, exitCode: EXIT.failed };
  }
  const where = connection ? `the service at ${connection.baseUrl}` : "the service";
  switch (error.code) {
    case Code.InvalidArgument:
    case Code.OutOfRange:
      return { message: error.rawMessage, exitCode: EXIT.usage };
    case Code.NotFound:
      return { message: error.rawMessage, exitCode: EXIT.notFound };
    case Code.Unauthenticated:
      return {
        message:
          `${where} refused the API token${connection ? ` from ${connection.tokenSource}` : ""}: ${error.rawMessage}. ` +
          `Pass a valid token with --token, ARTIFACTD_TOKEN or "token" in the config file.`,
        exitCode: EXIT.auth,
      };
    case Code.PermissionDenied:
      return {
        message: `${error.rawMessage} (the API token${connection ? ` from ${connection.tokenSource}` : ""} is not allowed to do this; use one of the tenant that owns it)`,
        exitCode: EXIT.auth,
      };
    case Code.Unavailable:
      return {
        message:
          `cannot reach ${where}${connection ? ` (from ${connection.urlSource})` : ""}: ${error.rawMessage}. ` +
          `Is it running (\`artifactd serve\`)? Otherwise point --url, ARTIFACTD_URL or "url" in the config file at it.`,
        exitCode: EXIT.unavailable,
      };
    case Code.DeadlineExceeded:
      return {
        message: `${where} did not answer in time: ${error.rawMessage}. Try again; if it persists, check the service's load and logs.`,
        exitCode: EXIT.unavailable,
      };
    case Code.FailedPrecondition:
    case Code.Aborted:
    case Code.AlreadyExists:
      return { message: error.rawMessage, exitCode: EXIT.refused };
    default:
      return { message: error.rawMessage, exitCode: EXIT.failed };
  }
}
