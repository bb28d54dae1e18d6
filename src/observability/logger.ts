import { pino, type DestinationStream, type Logger } from "pino";

export type { Logger };

/**
 * The service's log: one JSON object a line on stdout (pino), for log
 * shippers; or, for a person at a terminal, one readable line each
 * (`pretty`, formatted here: the same fields, no extra dependency).
 *
 * Nothing secret may reach it. Callers log fields they chose (never a
 * request's headers whole, never content), and every line passes
 * `redactSecrets` on its way out, so a token, an Authorization header or a
 * link's signature inside an error's message or stack (a driver quoting a
 * URL, a bug printing a request) is blanked before it is written.
 */
export type LogFormat = "json" | "pretty";
export const LOG_FORMATS: readonly LogFormat[] = ["json", "pretty"];
export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface LoggerOptions {
  /** Lines below this level are dropped; default "info". */
  readonly level?: LogLevel;
  /** Default "json". */
  readonly format?: LogFormat;
  /** Where lines go: stdout by default (a test harness passes its own). */
  readonly destination?: { write(line: string): unknown };
}

/**
 * What an API token, a bearer credential or a signed link's signature look
 * like wherever they appear in a line: tokens (`adt_…`, see
 * service/api-tokens.ts), `Bearer …`, and the signature and credential
 * parameters of our links (`sig=`) and of S3 presigned links.
 */
const SECRETS: readonly [RegExp, string][] = [
  [/adt_[A-Za-z0-9_-]+/g, "adt_[redacted]"],
  [/(bearer\s+)[^\s"\\]+/gi, "$1[redacted]"],
  [/([?&](?:sig|x-amz-signature|x-amz-credential|x-amz-security-token)=)[^&\s"\\]*/gi, "$1[redacted]"],
];

/** The line with every secret it holds blanked (see SECRETS). */
export function redactSecrets(line: string): string {
  let redacted = line;
  for (const [pattern, replacement] of SECRETS) redacted = redacted.replace(pattern, replacement);
  return redacted;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const out = options.destination ?? process.stdout;
  const format = options.format ?? "json";
  const destination: DestinationStream = {
    write: (line: string) => {
      const safe = redactSecrets(line);
      out.write(format === "pretty" ? prettyLine(safe) : safe);
    },
  };
  return pino(
    {
      level: options.level ?? "info",
      base: { service: "artifactd" },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      serializers: { err: pino.stdSerializers.errWithCause },
    },
    destination,
  );
}

/** `time level message key=value …`, the error's stack below it: a JSON line as a person reads it. */
function prettyLine(json: string): string {
  let entry: Record<string, unknown>;
  try {
    entry = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json;
  }
  const { time, level, msg, service: _service, err, pid: _pid, hostname: _hostname, ...fields } = entry;
  const pairs = Object.entries(fields).map(([name, value]) => `${name}=${typeof value === "string" ? value : JSON.stringify(value)}`);
  let line = `${String(time)} ${String(level).toUpperCase().padEnd(5)} ${String(msg ?? "")}${pairs.length ? ` ${pairs.join(" ")}` : ""}\n`;
  if (err !== undefined) {
    const { stack, message } = err as { stack?: string; message?: string };
    line += `${(stack ?? message ?? JSON.stringify(err)).replace(/^/gm, "    ")}\n`;
  }
  return line;
}
