import { timestampFromDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { parseArgs } from "node:util";
import { parseArtifactReference, STATUS_NAMES, statusFromName } from "@artifactd/api";
import { ProvenanceSchema } from "@artifactd/api/artifacts/v1/artifact_pb.js";
import { isArtifactRef, locatorToRequestId, type Status, Storage, type ArtifactFilterInit, type ArtifactSpecInit } from "@artifactd/client";
import { UsageError } from "./client-errors.ts";

/**
 * The flags of the client commands, and how they become an ArtifactSpec
 * (put) or an ArtifactFilter (ls, search).
 *
 * All commands are parsed against one option table, then each command's
 * allowed flags are checked, so `ls --pin` says that ls does not take --pin
 * instead of quietly ignoring it. The provenance ("scope") flags are made
 * from the Provenance message itself — run_id becomes --run-id — so a field
 * added to the proto gets its flag on put, ls and search without an edit here.
 */
export const CLIENT_COMMANDS = ["put", "get", "cat", "ls", "show", "rm", "pin", "unpin", "search", "url"] as const;
export type ClientCommand = (typeof CLIENT_COMMANDS)[number];

/** `--run-id`, `--graph-id`, … one per Provenance field, with the field's name in the message. */
export const SCOPE_FLAGS: readonly { readonly flag: string; readonly field: string }[] = ProvenanceSchema.fields.map((field) => ({
  flag: field.name.replaceAll("_", "-"),
  field: field.localName,
}));

type OptionSpec = { type: "string" | "boolean"; multiple?: boolean; short?: string };

const OPTIONS: Record<string, OptionSpec> = {
  // Every command.
  url: { type: "string" },
  token: { type: "string" },
  config: { type: "string" },
  json: { type: "boolean" },
  quiet: { type: "boolean", short: "q" },
  // put, ls and search.
  kind: { type: "string" },
  class: { type: "string" },
  mime: { type: "string" },
  label: { type: "string", multiple: true },
  tag: { type: "string", multiple: true },
  status: { type: "string" },
  ...Object.fromEntries(SCOPE_FLAGS.map(({ flag }) => [flag, { type: "string" } as OptionSpec])),
  // put.
  name: { type: "string" },
  title: { type: "string" },
  metric: { type: "string", multiple: true },
  input: { type: "string", multiple: true },
  pin: { type: "boolean" },
  "ttl-seconds": { type: "string" },
  "expires-at": { type: "string" },
  "type-prefix": { type: "string" },
  versioned: { type: "boolean" },
  // put, ls and search.
  project: { type: "string" },
  // ls and search.
  "name-prefix": { type: "string" },
  "tag-any": { type: "string", multiple: true },
  pinned: { type: "boolean" },
  "include-deleted": { type: "boolean" },
  "created-after": { type: "string" },
  "created-before": { type: "string" },
  "metric-min": { type: "string", multiple: true },
  "metric-max": { type: "string", multiple: true },
  storage: { type: "string" },
  limit: { type: "string" },
  // get, url.
  output: { type: "string", short: "o" },
  force: { type: "boolean", short: "f" },
  ttl: { type: "string" },
};

const CONNECTION = ["url", "token", "config", "json", "quiet"];
const SCOPE = SCOPE_FLAGS.map(({ flag }) => flag);
const SPEC = [
  "kind",
  "class",
  "name",
  "title",
  "mime",
  "label",
  "tag",
  "metric",
  "input",
  "pin",
  "status",
  "ttl-seconds",
  "expires-at",
  "type-prefix",
  "versioned",
  "project",
  ...SCOPE,
];
const FILTER = [
  ...["kind", "class", "name-prefix", "mime", "label", "tag", "tag-any", "status", "pinned", "include-deleted"],
  ...["created-after", "created-before", "metric-min", "metric-max", "storage", "project", "limit", ...SCOPE],
];
const ALLOWED: Record<ClientCommand, readonly string[]> = {
  put: [...CONNECTION, ...SPEC],
  get: [...CONNECTION, "output", "force"],
  cat: CONNECTION,
  ls: [...CONNECTION, ...FILTER],
  search: [...CONNECTION, ...FILTER],
  show: CONNECTION,
  rm: CONNECTION,
  pin: CONNECTION,
  unpin: CONNECTION,
  url: [...CONNECTION, "ttl"],
};

/** How many arguments besides flags each command takes at most; the commands say what is missing. */
const MAX_POSITIONALS: Record<ClientCommand, number> = { put: 1, get: 1, cat: 1, ls: 0, search: Infinity, show: 1, rm: 1, pin: 1, unpin: 1, url: 1 };

/** Parsed flags, read by name. */
export interface ClientFlags {
  string(name: string): string | undefined;
  strings(name: string): string[];
  boolean(name: string): boolean | undefined;
}

/** Parses a command's arguments; unknown flags, flags the command does not take and missing values are UsageErrors. */
export function parseClientArgs(command: ClientCommand, args: string[]): { flags: ClientFlags; positionals: string[] } {
  let parsed;
  try {
    // allowNegative: --no-pinned lists unpinned artifacts only.
    parsed = parseArgs({ args, options: OPTIONS, allowPositionals: true, allowNegative: true, strict: true });
  } catch (error) {
    throw new UsageError(`${(error as Error).message.split("\n")[0]} (see \`artifactd help\`)`);
  }
  const values = parsed.values as Record<string, string | boolean | (string | boolean)[] | undefined>;
  const allowed = ALLOWED[command];
  for (const name of Object.keys(values)) {
    if (!allowed.includes(name)) throw new UsageError(`${command} does not take --${name} (see \`artifactd help\`)`);
  }
  const extra = parsed.positionals.slice(MAX_POSITIONALS[command]);
  if (extra.length > 0) {
    const takes = MAX_POSITIONALS[command] === 0 ? "takes no arguments besides flags" : "takes one argument";
    throw new UsageError(`${command} ${takes}; unexpected ${extra.map((a) => JSON.stringify(a)).join(" ")} (quote a value that has spaces)`);
  }
  const flags: ClientFlags = {
    string: (name) => {
      const value = values[name];
      return typeof value === "string" ? value : undefined;
    },
    strings: (name) => {
      const value = values[name];
      return Array.isArray(value) ? value.filter((v): v is string => typeof v === "string") : [];
    },
    boolean: (name) => {
      const value = values[name];
      return typeof value === "boolean" ? value : undefined;
    },
  };
  return { flags, positionals: parsed.positionals };
}

/** The ArtifactSpec of `put`: --kind is required; `name` is used when --name is not given. */
export function specFromFlags(flags: ClientFlags, name: string): ArtifactSpecInit {
  const kind = flags.string("kind");
  if (!kind) throw new UsageError("put needs --kind, the artifact's category, e.g. --kind dataset");
  const ttl = flags.string("ttl-seconds");
  const expiresAt = flags.string("expires-at");
  if (ttl !== undefined && expiresAt !== undefined) throw new UsageError("give --ttl-seconds or --expires-at, not both");
  const status = flags.string("status");
  const provenance = provenanceFromFlags(flags);
  return {
    kind,
    name: flags.string("name") ?? name,
    ...defined({
      artifactClass: flags.string("class"),
      title: flags.string("title"),
      mimeType: flags.string("mime"),
      typePrefix: flags.string("type-prefix"),
      versioned: flags.boolean("versioned"),
      project: flags.string("project"),
      status: status === undefined ? undefined : parseStatus(status),
      ttlSeconds: ttl === undefined ? undefined : BigInt(wholeNumber("--ttl-seconds", ttl, 1)),
      expiresAt: expiresAt === undefined ? undefined : parseTime("--expires-at", expiresAt),
      provenance,
    }),
    labels: pairs("--label", flags.strings("label"), (v) => v),
    tags: flags.strings("tag"),
    metrics: pairs("--metric", flags.strings("metric"), (v) => finiteNumber("--metric", v)),
    inputs: flags.strings("input").map(parseInput),
    pinned: flags.boolean("pin") ?? false,
  };
}

/** The ArtifactFilter of `ls` and `search`. */
export function filterFromFlags(flags: ClientFlags): ArtifactFilterInit {
  const status = flags.string("status");
  const storage = flags.string("storage");
  const after = flags.string("created-after");
  const before = flags.string("created-before");
  return {
    ...defined({
      kind: flags.string("kind"),
      artifactClass: flags.string("class"),
      namePrefix: flags.string("name-prefix"),
      mimeType: flags.string("mime"),
      status: status === undefined ? undefined : parseStatus(status),
      pinned: flags.boolean("pinned"),
      includeDeleted: flags.boolean("include-deleted"),
      createdAfter: after === undefined ? undefined : parseTime("--created-after", after),
      createdBefore: before === undefined ? undefined : parseTime("--created-before", before),
      storage: storage === undefined ? undefined : parseStorage(storage),
      project: flags.string("project"),
      provenance: provenanceFromFlags(flags),
    }),
    labels: pairs("--label", flags.strings("label"), (v) => v),
    tagsAll: flags.strings("tag"),
    tagsAny: flags.strings("tag-any"),
    metricRanges: metricRanges(flags),
  };
}

/** A whole number >= `min` from a flag, or `fallback` when the flag is absent. */
export function wholeNumber(flag: string, raw: string | undefined, min = 0, fallback?: number): number {
  if (raw === undefined) {
    if (fallback === undefined) throw new UsageError(`${flag} needs a value`);
    return fallback;
  }
  const n = Number(raw);
  if (raw.trim() === "" || !Number.isSafeInteger(n) || n < min) throw new UsageError(`${flag} needs a whole number >= ${min}, got ${JSON.stringify(raw)}`);
  return n;
}

/**
 * What to send for an artifact argument: an id (bare or artifact://) or a
 * reference the server resolves (name:alias, name@v3, with an optional
 * project/ before the name); a UsageError naming the argument otherwise.
 */
export function artifactId(what: string, raw: string | undefined): string {
  if (raw === undefined) throw new UsageError(`${what} needs an artifact id or reference (like art_01jd…, orders:latest or orders@v3)`);
  try {
    return locatorToRequestId(raw);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

function provenanceFromFlags(flags: ClientFlags): Record<string, string> | undefined {
  const scope = Object.fromEntries(
    SCOPE_FLAGS.flatMap(({ flag, field }) => {
      const value = flags.string(flag);
      return value === undefined ? [] : [[field, value]];
    }),
  );
  return Object.keys(scope).length > 0 ? scope : undefined;
}

/**
 * `--input <id>[:role]` or `--input <reference>[=role]`: a lineage edge. An
 * id has no colon, so what follows one is its role; a reference such as
 * orders:latest has its own, so its role follows `=`.
 */
function parseInput(raw: string): { artifactId: string; role: string } {
  const bare = raw.startsWith("artifact://") ? raw.slice("artifact://".length) : raw;
  const usage = `--input takes <artifact id>[:role] or <reference>[=role], e.g. --input art_01jd…:training-data or --input orders:latest=training-data; got ${JSON.stringify(raw)}`;
  const colon = bare.indexOf(":");
  if (colon >= 0 && isArtifactRef(bare.slice(0, colon))) return { artifactId: bare.slice(0, colon), role: bare.slice(colon + 1) };
  const equals = bare.lastIndexOf("=");
  const target = equals < 0 ? bare : bare.slice(0, equals);
  if (parseArtifactReference(target).kind === "malformed") throw new UsageError(usage);
  return { artifactId: target, role: equals < 0 ? "" : bare.slice(equals + 1) };
}

function metricRanges(flags: ClientFlags): { name: string; min?: number; max?: number }[] {
  const ranges = new Map<string, { name: string; min?: number; max?: number }>();
  for (const [bound, flag] of [
    ["min", "metric-min"],
    ["max", "metric-max"],
  ] as const) {
    for (const [name, value] of Object.entries(pairs(`--${flag}`, flags.strings(flag), (v) => finiteNumber(`--${flag}`, v)))) {
      const range = ranges.get(name) ?? { name };
      range[bound] = value;
      ranges.set(name, range);
    }
  }
  return [...ranges.values()];
}

const STORAGES: Record<string, Storage> = { inline: Storage.INLINE, blob: Storage.BLOB };

function parseStatus(raw: string): Status {
  const status = statusFromName(raw.toLowerCase());
  if (status === undefined) throw new UsageError(`--status takes ${STATUS_NAMES.join(", ")}; got ${JSON.stringify(raw)}`);
  return status;
}

function parseStorage(raw: string): Storage {
  const storage = STORAGES[raw.toLowerCase()];
  if (storage === undefined) throw new UsageError(`--storage takes ${Object.keys(STORAGES).join(" or ")}; got ${JSON.stringify(raw)}`);
  return storage;
}

function parseTime(flag: string, raw: string): Timestamp {
  const date = new Date(raw);
  if (Number.isNaN(date.getTime())) throw new UsageError(`${flag} needs a date and time, e.g. 2025-06-30 or 2025-06-30T12:00:00Z; got ${JSON.stringify(raw)}`);
  return timestampFromDate(date);
}

function finiteNumber(flag: string, raw: string): number {
  const n = Number(raw);
  if (raw.trim() === "" || !Number.isFinite(n)) throw new UsageError(`${flag} needs a number, got ${JSON.stringify(raw)}`);
  return n;
}

function pairs<T>(flag: string, items: string[], convert: (value: string) => T): Record<string, T> {
  const result: Record<string, T> = {};
  for (const item of items) {
    const at = item.indexOf("=");
    if (at <= 0) throw new UsageError(`${flag} takes key=value, got ${JSON.stringify(item)}`);
    result[item.slice(0, at)] = convert(item.slice(at + 1));
  }
  return result;
}

/** The entries whose value is not undefined, so optional fields stay absent (exactOptionalPropertyTypes). */
function defined<T extends Record<string, unknown>>(fields: T): { [K in keyof T]?: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(fields).filter(([, value]) => value !== undefined)) as { [K in keyof T]?: Exclude<T[K], undefined> };
}
