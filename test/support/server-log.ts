import { closeSync, fstatSync, openSync, readSync, statSync } from "node:fs";
import { StringDecoder } from "node:string_decoder";
import { onTestFinished } from "vitest";

export interface ServerLogEntry {
  readonly message: string;
  /** The error logged with it, as the line carries it (type, message, stack, causes). */
  readonly error: unknown;
  /** An error the server could only answer as INTERNAL: a bug, unless the test caused it on purpose. */
  readonly internal: boolean;
  /** The line as the server wrote it (JSON). */
  readonly line?: string;
  /** One call's access line (src/observability/access-log.ts): kept apart, in `calls`. */
  readonly access?: boolean;
  /** The line holds a secret: a failure whatever the test allows. */
  readonly leak?: boolean;
}

/**
 * Secrets a log line must never hold (src/observability/logger.ts blanks
 * them): an API token, or a signed link's signature. Checked on every line
 * every test server writes, so a leak fails the test that caused it,
 * whichever test it is.
 */
const LEAKS = [/adt_(?!\[redacted\])[A-Za-z0-9_-]{16,}/, /[?&](?:sig|x-amz-signature)=(?!\[redacted\])[^&\s"]{8,}/i];

/** An entry of one JSON line of the server's log; a line that is not JSON (a crash's trace) is a message of its own. */
export function entryOfLine(line: string): ServerLogEntry {
  let parsed: { msg?: unknown; err?: unknown; internal?: unknown } | undefined;
  try {
    parsed = JSON.parse(line) as typeof parsed;
  } catch {
    parsed = undefined;
  }
  const leaked = LEAKS.some((pattern) => pattern.test(line));
  if (leaked) return { message: `a secret reached the log: ${line}`, error: undefined, internal: true, line, leak: true };
  if (parsed === undefined || typeof parsed !== "object") return { message: line, error: undefined, internal: false, line };
  const message = String(parsed.msg ?? "");
  return { message, error: parsed.err, internal: parsed.internal === true, line, access: message === "call" && "rpc" in parsed };
}

/**
 * What an in-process test server logs (its JSON lines: a destination for
 * createLogger), kept so a test can read it and so an
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
  /** Everything but the access lines. */
  readonly entries: ServerLogEntry[] = [];
  /** The access lines, one per call. */
  readonly calls: ServerLogEntry[] = [];
  /** Entries up to here have been checked by a test's end. */
  checked = 0;
  private readonly allowed: { pattern: RegExp; untilTestEnds: boolean }[] = [];

  readonly label: string;

  constructor(label: string) {
    this.label = label;
    LOGS.add(this);
  }

  /** One JSON line from the server's logger. */
  readonly write = (line: string): void => {
    for (const one of line.split("\n")) if (one.trim() !== "") this.add(entryOfLine(one));
    // ARTIFACTD_TEST_LOG=1 shows everything as it happens.
    if (process.env.ARTIFACTD_TEST_LOG) process.stderr.write(`[${this.label}] ${line}`);
  };

  protected add(entry: ServerLogEntry): void {
    (entry.access ? this.calls : this.entries).push(entry);
  }

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
    return fresh.filter((entry) => entry.leak || (entry.internal && !this.allowed.some(({ pattern }) => pattern.test(describeEntry(entry)))));
  }

  /** Its server is gone: checked once more, for what it logged while closing, then forgotten. */
  retire(): void {
    this.retired = true;
  }
  retired = false;
}

const LOGS = new Set<ServerLog>();

export function describeEntry(entry: ServerLogEntry): string {
  if (entry.error === undefined || entry.error === null) return entry.message;
  const { type, message } = entry.error as { type?: string; message?: string };
  return `${entry.message}: ${type ?? "Error"}: ${message ?? JSON.stringify(entry.error)}`;
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

/** Where an entry of a service's output starts: its own JSON lines, and the marks ./service-process.ts writes; the rest (a crash's trace) continues the entry before. */
const ENTRY_START = /^(\{|--- )/;
/** The mark ./service-process.ts writes when a service that was serving exits by itself: a crash, as much a bug as an internal error. */
const CRASH_MARK = /^--- \S+ exited by itself \([^)]*\)$/;

/**
 * What a service run as a child process writes to its log file
 * (./service-process.ts), read into entries each time it is checked, so an
 * unexpected internal error fails the test during which it was written, as
 * an in-process server's does. An entry is one JSON line of the service's
 * log, or one of the harness's marks with whatever follows it up to the next
 * (a crash's trace); it is internal when the service marked it so
 * (`internal: true`), when it is the harness's mark of a crash, or when it
 * holds a secret. `allowInternal` patterns are matched against its
 * description (message, error type and message).
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
      // A JSON line is an entry of its own; what follows it that is not (a crash's trace) is one more.
      const first = block[0]!;
      const json = first.startsWith("{");
      if (json) this.add(entryOfLine(first));
      const rest = json ? block.slice(1) : block;
      if (rest.length > 0) {
        const text = rest.join("\n");
        const leak = entryOfLine(text).leak === true;
        this.entries.push({ message: text, error: undefined, internal: leak || CRASH_MARK.test(rest[0]!), line: text, leak });
      }
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
