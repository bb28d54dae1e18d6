import { closeSync, fstatSync, openSync, readSync, statSync } from "node:fs";
import { StringDecoder } from "node:string_decoder";
import { onTestFinished } from "vitest";
import { answersInternal } from "../../src/transport/connect-error-mapping.ts";

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
 * (What a service run as a child process writes is read the same way:
 * ServiceLogFile below.)
 *
 * Expected failures — a store taken down on purpose, a refused call — are
 * classified by the same mapping the server answers with, so they never
 * count: only what would be answered INTERNAL does. A test that provokes one
 * on purpose says so with `allowInternal`. A line logged without an error
 * never counts: the server logs no failure that way (only notices, such as
 * a key file made or a listener reconnected).
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
    this.entries.push({ message, error, internal: error !== undefined && answersInternal(error) });
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
  if (entry.error === undefined) return entry.message;
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

/** How the service marks an error it would answer INTERNAL (logToStderr in src/cli/server-commands.ts). */
const INTERNAL_ERROR_LINE = /^artifactd: internal error: /;
/** Where an entry of a service's output starts: its own lines, and the marks ./service-process.ts writes; the rest (stack traces, an error's fields) continues the entry before. */
const ENTRY_START = /^(artifactd: |--- )/;
/** The mark ./service-process.ts writes when a service that was serving exits by itself: a crash, as much a bug as an internal error. */
const CRASH_MARK = /^--- \S+ exited by itself \([^)]*\)$/;

/**
 * What a service run as a child process writes to its log file
 * (./service-process.ts), read into entries each time it is checked, so an
 * unexpected internal error fails the test during which it was written, as
 * an in-process server's does. An entry is one line of the service's with
 * whatever follows it up to the next (an error's stack and fields); it is
 * internal when the service marked it so, or when it is the harness's mark
 * of a crash. Its message is that whole text, which `allowInternal`
 * patterns are matched against.
 */
export class ServiceLogFile extends ServerLog {
  readonly file: string;
  private offset = 0;
  private readonly decoder = new StringDecoder("utf8");
  /** Text after the last complete line read. */
  private partial = "";

  /** Reads from the end of `file` as it is now: what it already holds was written before this service. */
  constructor(label: string, file: string) {
    super(label);
    this.file = file;
    try {
      this.offset = statSync(file).size;
    } catch {
      // Not there yet: read from its start once it is.
    }
  }

  /** Adds what the service wrote since the last read to `entries`; a file not there (not yet, or removed) adds nothing. */
  read(): void {
    let fd: number;
    try {
      fd = openSync(this.file, "r");
    } catch {
      return;
    }
    let text = this.partial;
    try {
      const size = fstatSync(fd).size;
      const buffer = Buffer.alloc(64 * 1024);
      while (this.offset < size) {
        const read = readSync(fd, buffer, 0, Math.min(buffer.length, size - this.offset), this.offset);
        if (read === 0) break;
        this.offset += read;
        text += this.decoder.write(buffer.subarray(0, read));
      }
    } finally {
      closeSync(fd);
    }
    const lines = text.split("\n");
    this.partial = lines.pop() ?? "";
    let block: string[] = [];
    const finish = () => {
      if (block.length === 0) return;
      const first = block[0]!;
      this.entries.push({ message: block.join("\n"), error: undefined, internal: INTERNAL_ERROR_LINE.test(first) || CRASH_MARK.test(first) });
      block = [];
    };
    for (const line of lines) {
      if (ENTRY_START.test(line)) finish();
      block.push(line);
    }
    finish();
  }

  override takeUnexpected(): ServerLogEntry[] {
    this.read();
    return super.takeUnexpected();
  }
}
