import { Code, ConnectError } from "@connectrpc/connect";
import { onTestFinished } from "vitest";
import { toConnectError } from "../../src/transport/connect-error-mapping.ts";

export interface ServerLogEntry {
  readonly message: string;
  readonly error: unknown;
  /** An error the server could only answer as INTERNAL: a bug, unless the test caused it on purpose. */
  readonly internal: boolean;
}

/**
 * What an in-process test server logs, kept so a test can read it and so an
 * unexpected internal error fails the test that caused it
 * (./fail-on-server-errors.ts), instead of vanishing into a no-op logger.
 *
 * Expected failures — a store taken down on purpose, a refused call — are
 * classified by the same mapping the server answers with, so they never
 * count: only what would be answered INTERNAL does. A test that provokes one
 * on purpose says so with `allowInternal`.
 */
export class ServerLog {
  readonly entries: ServerLogEntry[] = [];
  /** Entries up to here have been checked by a test's end. */
  checked = 0;
  private readonly allowed: { pattern: RegExp; untilTestEnds: boolean }[] = [];

  readonly label: string;

  constructor(label: string) {
    this.label = label;
    LOGS.add(this);
  }

  readonly record = (message: string, error?: unknown): void => {
    const internal = error !== undefined && !(error instanceof ConnectError) && toConnectError(error).code === Code.Internal;
    this.entries.push({ message, error, internal });
    // ARTIFACTD_TEST_LOG=1 shows everything as it happens.
    if (process.env.ARTIFACTD_TEST_LOG) console.error(`[${this.label}] ${message}`, error ?? "");
  };

  /**
   * Internal errors whose log line matches `pattern` are expected: for the
   * rest of the current test when called inside one, else for the rest of
   * the file.
   */
  allowInternal(pattern: RegExp): void {
    const entry = { pattern, untilTestEnds: false };
    try {
      onTestFinished(() => {
        this.allowed.splice(this.allowed.indexOf(entry), 1);
      });
      entry.untilTestEnds = true;
    } catch {
      // Outside a test (beforeAll): the allowance stays for the file.
    }
    this.allowed.push(entry);
  }

  /** Unexpected internal errors logged since the last check, and marks them checked. */
  takeUnexpected(): ServerLogEntry[] {
    const fresh = this.entries.slice(this.checked);
    this.checked = this.entries.length;
    return fresh.filter((entry) => entry.internal && !this.allowed.some(({ pattern }) => pattern.test(describeEntry(entry))));
  }

  /** Its server is gone: checked once more, for what it logged while closing, then forgotten. */
  retire(): void {
    this.retired = true;
  }
  retired = false;
}

const LOGS = new Set<ServerLog>();

export function describeEntry(entry: ServerLogEntry): string {
  const error = entry.error instanceof Error ? `${entry.error.name}: ${entry.error.message}` : String(entry.error);
  return `${entry.message}: ${error}`;
}

/** Every live test server's unexpected internal errors since the last check, described. */
export function unexpectedServerErrors(): string[] {
  const found: string[] = [];
  for (const log of [...LOGS]) {
    for (const entry of log.takeUnexpected()) found.push(`[${log.label}] ${describeEntry(entry)}`);
    if (log.retired) LOGS.delete(log);
  }
  return found;
}
