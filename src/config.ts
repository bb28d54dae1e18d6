import path from "node:path";
import { parseUrlSigningKeys, type UrlSigningKey } from "./url-signing-keys.ts";
import type { TenantQuotaLimits } from "./ports/tenant-quota-store.ts";
import { ConfigError } from "./config-error.ts";
import { readTracingSettings, type TracingSettings } from "./observability/tracing-settings.ts";
import { LOG_FORMATS, LOG_LEVELS, type LogFormat, type LogLevel } from "./observability/logger.ts";

/** quotaDefaults' type, defined with the quota port, whose per-tenant overrides replace its limits one by one. */
export type { TenantQuotaLimits };

/**
 * Service configuration, read once from the environment into a frozen object
 * and passed down explicitly. A bad value stops start-up with a message that
 * names the variable. Every variable is listed in the README's configuration
 * table; keep the two in step.
 */
export interface Config {
  /** host:port for gRPC, gRPC-Web and Connect (HTTP/2 and HTTP/1.1 on one port). */
  readonly listen: { readonly host: string; readonly port: number };
  /** Folder for the embedded database and the local blob store. */
  readonly dataDir: string;
  /** Postgres connection string; undefined means embedded PGlite in dataDir. */
  readonly databaseUrl: string | undefined;
  readonly databasePoolSize: number;
  /**
   * Postgres cancels any one statement running longer than this (0: never),
   * so no request can hold a connection and the database indefinitely.
   * Embedded PGlite has no way to cancel a statement and ignores it.
   */
  readonly databaseStatementTimeoutMs: number;
  /** S3 / MinIO; undefined means the local content-addressed folder in dataDir. */
  readonly s3: S3Config | undefined;
  /** Largest inline (JSON / text) content stored in the database. */
  readonly inlineMaxBytes: number;
  /** An Upload declaring at most this many bytes is kept in the artifact's row, not the blob store (0: never). */
  readonly uploadInlineMaxBytes: number;
  /** Largest blob one upload may carry. */
  readonly uploadMaxBytes: number;
  /** Bytes per message when streaming content out. */
  readonly downloadChunkBytes: number;
  /** How long in-flight calls may run after SIGTERM before they are cancelled. */
  readonly shutdownGraceMs: number;
  /** Run migrations at start-up. */
  readonly migrateOnStart: boolean;
  /** How often the server expires artifacts and collects garbage; 0 turns it off. */
  readonly maintenanceIntervalMs: number;
  /** Unreferenced content younger than this is never reclaimed. */
  readonly gcGraceMs: number;
  /**
   * An upload in flight whose heartbeat is older than this is taken to have
   * died with its server: garbage collection reclaims what it stored.
   */
  readonly uploadStaleMs: number;
  /** Lifetime of a resumable upload session; well under MinIO's 24 h clean-up of stale multipart uploads. */
  readonly uploadSessionTtlMs: number;
  /**
   * Bytes of upload-session parts held in memory ahead of the part their
   * content digest has reached: per session, and all sessions of the server
   * together. Parts beyond are read back from the store at complete.
   */
  readonly sessionHashAhead: { readonly perSessionBytes: number; readonly perServerBytes: number };
  /** Base URL clients reach the service at, for signed download URLs; undefined: the request's host. */
  readonly publicUrl: string | undefined;
  /** Origins (`scheme://host[:port]`) whose web pages may call the service across origins (CORS); empty: none. */
  readonly corsAllowedOrigins: readonly string[];
  /**
   * Keys that sign and verify download links, newest (the signing one) first;
   * undefined: the key file in dataDir (generated on first start).
   */
  readonly urlSigningKeys: readonly UrlSigningKey[] | undefined;
  /** Longest lifetime a signed download URL may be given. */
  readonly downloadUrlMaxTtlSeconds: number;
  /** How long artifact events are kept for watchers to resume after (maintenance prunes older ones). */
  readonly eventRetentionMs: number;
  /** How long a token lookup is trusted: revocation and expiry reach every call, open ones included, within this. */
  readonly tokenCacheMs: number;
  /** Bounds on connections, streams and requests; see TransportLimits. */
  readonly transport: TransportLimits;
  /** Caps on what one request may make the server do; see RequestLimits. */
  readonly limits: RequestLimits;
  /** What the service logs (lines below `level` are dropped) and how: JSON lines, or readable ones. */
  readonly log: { readonly level: LogLevel; readonly format: LogFormat };
  /** Where /metrics is served, and whether its series may be labelled by tenant. */
  readonly metrics: MetricsConfig;
  /** Per-tenant quotas for tenants without an override of their own (`artifactd tenant set-quota`). */
  readonly quotaDefaults: TenantQuotaLimits;
  /** How long a server keeps a tenant's quota overrides and stored usage before reading them again. */
  readonly quotaCacheMs: number;
  /** OpenTelemetry traces, from the standard OTEL_* variables; undefined: off (./observability/tracing-settings.ts). */
  readonly tracing: TracingSettings | undefined;
}

/**
 * Caps on what a single request (or caller) can make the server do. Each is
 * refused with a message naming the limit and its variable, so a client
 * learns what to change and an operator what to raise.
 */
export interface RequestLimits {
  /** Entries in each list of a filter: metric ranges, labels, tags_all, tags_any. */
  readonly maxFilterTerms: number;
  /** Largest page List and Search return (INVALID_ARGUMENT above it). */
  readonly maxPageSize: number;
  /** Ids or references one BatchGetArtifacts takes (INVALID_ARGUMENT above it). */
  readonly maxBatchItems: number;
  /** Longest free-text query Search takes. */
  readonly maxSearchQueryChars: number;
  /** Artifacts one GetLineage answer may hold (ten times as many edges). */
  readonly maxLineageNodes: number;
  /** Open Watch streams per tenant, on this server. */
  readonly maxWatchersPerTenant: number;
  /** Open Watch streams on this server, all tenants together. */
  readonly maxWatchers: number;
  /** Events one Watch stream may have waiting to be sent; a watcher further behind is cut off (RESOURCE_EXHAUSTED). */
  readonly maxWatchBacklog: number;
  /** A streaming upload that receives no message for this long is failed and leaves nothing behind. */
  readonly uploadIdleTimeoutMs: number;
}

/**
 * What one peer may hold of the server, whatever it sends (enforced by
 * transport/server.ts). Each is a setting in the README's configuration table.
 */
export interface TransportLimits {
  /** Open connections, all protocols; more are closed as they arrive. */
  readonly maxConnections: number;
  /** HTTP/2 streams open at once on one connection (SETTINGS_MAX_CONCURRENT_STREAMS); more are refused. */
  readonly http2MaxConcurrentStreams: number;
  /** Largest request header block (HTTP/2 SETTINGS_MAX_HEADER_LIST_SIZE, HTTP/1.1 header size). */
  readonly maxHeaderBytes: number;
  /** A connection with no call open for this long is closed (HTTP/2 GOAWAY; HTTP/1.1 keep-alive timeout). */
  readonly idleConnectionTimeoutMs: number;
  /** A new connection must send its request headers within this (HTTP/1.1 headersTimeout; the protocol sniff). */
  readonly headersTimeoutMs: number;
  /** A unary request's whole body must arrive within this (HTTP/1.1 requestTimeout; HTTP/2 unary calls). */
  readonly requestBodyTimeoutMs: number;
  /** A request stream that sends nothing for this long is cut (HTTP/2; upload streams included). */
  readonly streamIdleTimeoutMs: number;
  /** Largest deadline a call may ask for (grpc-timeout, connect-timeout-ms); larger ones are refused with INVALID_ARGUMENT. */
  readonly maxCallTimeoutMs: number;
}

export interface S3Config {
  readonly endpoint: URL;
  readonly region: string;
  readonly accessKey: string;
  readonly secretKey: string;
  readonly bucket: string;
  /** Multipart part size; S3 allows 5 MiB – 5 GiB. */
  readonly partSize: number;
  /** Parts uploaded at once per upload; memory per upload is about partSize × (this + 1). */
  readonly partConcurrency: number;
  /**
   * The S3 address clients can reach, for direct-to-storage downloads
   * (presigned GETs); undefined: the service offers none, and every download
   * passes through it.
   */
  readonly directDownloadEndpoint: URL | undefined;
}

/** Every variable readConfig reads: the rows of the README's configuration table (a test keeps them in step). */
export const CONFIG_VARIABLES = [
  "ARTIFACTD_LISTEN",
  "ARTIFACTD_DATA_DIR",
  "DATABASE_URL",
  "ARTIFACTD_DATABASE_POOL_SIZE",
  "ARTIFACTD_DATABASE_STATEMENT_TIMEOUT_MS",
  "ARTIFACTD_MIGRATE_ON_START",
  "ARTIFACTD_S3_ENDPOINT",
  "ARTIFACTD_S3_ACCESS_KEY",
  "ARTIFACTD_S3_SECRET_KEY",
  "ARTIFACTD_S3_BUCKET",
  "ARTIFACTD_S3_REGION",
  "ARTIFACTD_S3_PART_SIZE",
  "ARTIFACTD_S3_PART_CONCURRENCY",
  "ARTIFACTD_DIRECT_DOWNLOAD_ENDPOINT",
  "ARTIFACTD_INLINE_MAX_BYTES",
  "ARTIFACTD_UPLOAD_INLINE_MAX_BYTES",
  "ARTIFACTD_UPLOAD_MAX_BYTES",
  "ARTIFACTD_DOWNLOAD_CHUNK_BYTES",
  "ARTIFACTD_SHUTDOWN_GRACE_MS",
  "ARTIFACTD_MAINTENANCE_INTERVAL_MS",
  "ARTIFACTD_UPLOAD_SESSION_TTL_MS",
  "ARTIFACTD_SESSION_HASH_AHEAD_BYTES",
  "ARTIFACTD_SESSION_HASH_AHEAD_TOTAL_BYTES",
  "ARTIFACTD_PUBLIC_URL",
  "ARTIFACTD_CORS_ALLOWED_ORIGINS",
  "ARTIFACTD_URL_SIGNING_KEYS",
  "ARTIFACTD_URL_SIGNING_KEY",
  "ARTIFACTD_DOWNLOAD_URL_MAX_TTL_SECONDS",
  "ARTIFACTD_GC_GRACE_MS",
  "ARTIFACTD_UPLOAD_STALE_MS",
  "ARTIFACTD_EVENT_RETENTION_MS",
  "ARTIFACTD_TOKEN_CACHE_MS",
  "ARTIFACTD_MAX_CONNECTIONS",
  "ARTIFACTD_HTTP2_MAX_CONCURRENT_STREAMS",
  "ARTIFACTD_MAX_HEADER_BYTES",
  "ARTIFACTD_IDLE_CONNECTION_TIMEOUT_MS",
  "ARTIFACTD_HEADERS_TIMEOUT_MS",
  "ARTIFACTD_REQUEST_BODY_TIMEOUT_MS",
  "ARTIFACTD_STREAM_IDLE_TIMEOUT_MS",
  "ARTIFACTD_MAX_CALL_TIMEOUT_MS",
  "ARTIFACTD_MAX_FILTER_TERMS",
  "ARTIFACTD_MAX_PAGE_SIZE",
  "ARTIFACTD_MAX_BATCH_ITEMS",
  "ARTIFACTD_MAX_SEARCH_QUERY_CHARS",
  "ARTIFACTD_MAX_LINEAGE_NODES",
  "ARTIFACTD_MAX_WATCHERS_PER_TENANT",
  "ARTIFACTD_MAX_WATCHERS",
  "ARTIFACTD_MAX_WATCH_BACKLOG",
  "ARTIFACTD_UPLOAD_IDLE_TIMEOUT_MS",
  "ARTIFACTD_QUOTA_STORED_BYTES",
  "ARTIFACTD_QUOTA_CONCURRENT_UPLOADS",
  "ARTIFACTD_QUOTA_CONCURRENT_DOWNLOADS",
  "ARTIFACTD_QUOTA_OPEN_SESSIONS",
  "ARTIFACTD_QUOTA_CALLS_PER_SECOND",
  "ARTIFACTD_QUOTA_BURST",
  "ARTIFACTD_QUOTA_CACHE_MS",
  "ARTIFACTD_LOG_LEVEL",
  "ARTIFACTD_LOG_FORMAT",
  "ARTIFACTD_METRICS_LISTEN",
  "ARTIFACTD_METRICS_TENANT_LABELS",
] as const;

const MiB = 1024 * 1024;

/**
 * Transport limits by default: grpc-go's server allows 100 concurrent
 * streams per connection; the timeouts are Node's HTTP/1.1 server's, made
 * to fire here too, with headers due sooner (10 s, as nginx's 60 s is meant
 * for slow links, not for loopback-speed callers holding sockets).
 */
const DEFAULT_TRANSPORT_LIMITS: TransportLimits = {
  maxConnections: 1_000,
  http2MaxConcurrentStreams: 100,
  maxHeaderBytes: 16 * 1024,
  idleConnectionTimeoutMs: 120_000,
  headersTimeoutMs: 10_000,
  requestBodyTimeoutMs: 300_000,
  // Above the upload idle timeout (ARTIFACTD_UPLOAD_IDLE_TIMEOUT_MS, 60 s), which explains itself to the
  // client (DEADLINE_EXCEEDED); this one is the transport's backstop for every other stream (a bare CANCEL).
  streamIdleTimeoutMs: 90_000,
  maxCallTimeoutMs: 7 * 86_400_000,
};

/**
 * Prometheus metrics: on the service's own port (`service`, the default:
 * nothing more to open), on an address of their own (operators keep it
 * off the network the clients reach), or `off`.
 */
export interface MetricsConfig {
  readonly listen: "service" | "off" | { readonly host: string; readonly port: number };
  /** Label call series by tenant too: one series per tenant and method, so only with few tenants. */
  readonly tenantLabels: boolean;
}

export { ConfigError } from "./config-error.ts";

type Env = Readonly<Record<string, string | undefined>>;

export function readConfig(env: Env = process.env): Config {
  const get = (name: string): string | undefined => {
    const value = env[name];
    return value === undefined || value.trim() === "" ? undefined : value.trim();
  };
  const integer = (name: string, fallback: number, min: number, max: number): number => {
    const raw = get(name);
    if (raw === undefined) return fallback;
    const value = parseSize(raw);
    if (value === undefined || !Number.isSafeInteger(value) || value < min || value > max) {
      throw new ConfigError(`${name}=${JSON.stringify(raw)} is not valid: give a whole number between ${min} and ${max} (size suffixes KiB, MiB, GiB allowed)`);
    }
    return value;
  };
  const bool = (name: string, fallback: boolean): boolean => {
    const raw = get(name);
    if (raw === undefined) return fallback;
    if (/^(1|true|yes|on)$/i.test(raw)) return true;
    if (/^(0|false|no|off)$/i.test(raw)) return false;
    throw new ConfigError(`${name}=${JSON.stringify(raw)} is not valid: use true or false`);
  };

  const listenRaw = get("ARTIFACTD_LISTEN") ?? DEFAULT_LISTEN;
  const listen = parseHostPort(listenRaw);
  if (!listen) {
    throw new ConfigError(
      `ARTIFACTD_LISTEN=${JSON.stringify(listenRaw)} is not valid: use host:port, e.g. 127.0.0.1:8080 or [::]:8080 (port 0 picks a free one)`,
    );
  }

  const databaseUrl = get("DATABASE_URL");
  if (databaseUrl !== undefined && !/^postgres(ql)?:\/\//.test(databaseUrl)) {
    throw new ConfigError(`DATABASE_URL must be a postgres:// or postgresql:// URL, got ${JSON.stringify(redactUrl(databaseUrl))}`);
  }

  let s3: S3Config | undefined;
  const endpointRaw = get("ARTIFACTD_S3_ENDPOINT");
  const strayS3 = Object.keys(env).filter((name) => name.startsWith("ARTIFACTD_S3_") && name !== "ARTIFACTD_S3_ENDPOINT" && get(name) !== undefined);
  if (endpointRaw === undefined && strayS3.length > 0) {
    // Otherwise blobs would quietly go to the local folder.
    throw new ConfigError(`${strayS3.join(", ")} set without ARTIFACTD_S3_ENDPOINT: set the endpoint too, or unset them to use the local folder`);
  }
  const directDownloadRaw = get("ARTIFACTD_DIRECT_DOWNLOAD_ENDPOINT");
  if (endpointRaw === undefined && directDownloadRaw !== undefined) {
    // Refused rather than ignored: whoever set it expects downloads to bypass the server, and the folder store has
    // nothing a client could be sent to.
    throw new ConfigError(
      "ARTIFACTD_DIRECT_DOWNLOAD_ENDPOINT is set without ARTIFACTD_S3_ENDPOINT: direct-to-storage downloads need the S3 blob store; unset it to use the local folder",
    );
  }
  const s3Url = (name: string, raw: string): URL => {
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      throw new ConfigError(`${name}=${JSON.stringify(raw)} is not a URL: use e.g. http://127.0.0.1:9000`);
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new ConfigError(`${name} must start with http:// or https://, got ${JSON.stringify(raw)}`);
    }
    return url;
  };
  if (endpointRaw !== undefined) {
    const endpoint = s3Url("ARTIFACTD_S3_ENDPOINT", endpointRaw);
    const directDownloadEndpoint = directDownloadRaw === undefined ? undefined : s3Url("ARTIFACTD_DIRECT_DOWNLOAD_ENDPOINT", directDownloadRaw);
    if (directDownloadEndpoint && (directDownloadEndpoint.search !== "" || directDownloadEndpoint.hash !== "" || directDownloadEndpoint.username !== "")) {
      throw new ConfigError(
        `ARTIFACTD_DIRECT_DOWNLOAD_ENDPOINT=${JSON.stringify(directDownloadRaw)} is not valid: give the store's address alone, e.g. https://s3.example.com`,
      );
    }
    const accessKey = get("ARTIFACTD_S3_ACCESS_KEY");
    const secretKey = get("ARTIFACTD_S3_SECRET_KEY");
    if (accessKey === undefined || secretKey === undefined) {
      throw new ConfigError("ARTIFACTD_S3_ENDPOINT is set, so ARTIFACTD_S3_ACCESS_KEY and ARTIFACTD_S3_SECRET_KEY must be set too");
    }
    const bucket = get("ARTIFACTD_S3_BUCKET") ?? "artifacts";
    if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) {
      throw new ConfigError(`ARTIFACTD_S3_BUCKET=${JSON.stringify(bucket)} is not a valid bucket name: 3–63 lowercase letters, digits, dots and hyphens`);
    }
    s3 = Object.freeze({
      endpoint,
      region: get("ARTIFACTD_S3_REGION") ?? "us-east-1",
      accessKey,
      secretKey,
      bucket,
      partSize: integer("ARTIFACTD_S3_PART_SIZE", 8 * MiB, 5 * MiB, 5 * 1024 * MiB),
      partConcurrency: integer("ARTIFACTD_S3_PART_CONCURRENCY", 3, 1, 64),
      directDownloadEndpoint,
    });
  }

  const publicUrl = get("ARTIFACTD_PUBLIC_URL");
  if (publicUrl !== undefined && !/^https?:\/\/[^\s/]+(\/[^\s]*)?$/.test(publicUrl)) {
    throw new ConfigError(`ARTIFACTD_PUBLIC_URL=${JSON.stringify(publicUrl)} is not valid: give the base URL clients use, e.g. https://artifacts.example.com`);
  }
  const corsAllowedOrigins = readCorsAllowedOrigins(get("ARTIFACTD_CORS_ALLOWED_ORIGINS"));
  const urlSigningKeys = readUrlSigningKeys(get("ARTIFACTD_URL_SIGNING_KEYS"), get("ARTIFACTD_URL_SIGNING_KEY"));

  const storedBytesRaw = get("ARTIFACTD_QUOTA_STORED_BYTES") ?? "unlimited";
  const storedBytes = /^unlimited$/i.test(storedBytesRaw) ? Infinity : parseSize(storedBytesRaw);
  if (storedBytes === undefined || (storedBytes !== Infinity && !Number.isSafeInteger(storedBytes))) {
    throw new ConfigError(
      `ARTIFACTD_QUOTA_STORED_BYTES=${JSON.stringify(storedBytesRaw)} is not valid: give bytes per tenant (suffixes KiB, MiB, GiB allowed), or unlimited`,
    );
  }
  const quotaDefaults = Object.freeze({
    storedBytes,
    concurrentUploads: integer("ARTIFACTD_QUOTA_CONCURRENT_UPLOADS", 16, 1, 100_000),
    concurrentDownloads: integer("ARTIFACTD_QUOTA_CONCURRENT_DOWNLOADS", 32, 1, 100_000),
    openSessions: integer("ARTIFACTD_QUOTA_OPEN_SESSIONS", 100, 1, 10_000_000),
    callsPerSecond: integer("ARTIFACTD_QUOTA_CALLS_PER_SECOND", 500, 1, 1_000_000),
    burst: integer("ARTIFACTD_QUOTA_BURST", 1000, 1, 10_000_000),
  });

  return Object.freeze({
    listen: Object.freeze(listen),
    dataDir: path.resolve(get("ARTIFACTD_DATA_DIR") ?? ".artifactd"),
    databaseUrl,
    databasePoolSize: integer("ARTIFACTD_DATABASE_POOL_SIZE", 10, 1, 1000),
    databaseStatementTimeoutMs: integer("ARTIFACTD_DATABASE_STATEMENT_TIMEOUT_MS", 30_000, 0, 3_600_000),
    s3,
    inlineMaxBytes: integer("ARTIFACTD_INLINE_MAX_BYTES", 256 * 1024, 0, 64 * MiB),
    uploadInlineMaxBytes: integer("ARTIFACTD_UPLOAD_INLINE_MAX_BYTES", 64 * 1024, 0, MiB),
    uploadMaxBytes: integer("ARTIFACTD_UPLOAD_MAX_BYTES", 5 * 1024 * 1024 * MiB, 0, Number.MAX_SAFE_INTEGER),
    downloadChunkBytes: integer("ARTIFACTD_DOWNLOAD_CHUNK_BYTES", 256 * 1024, 16 * 1024, 4 * MiB - 64 * 1024),
    shutdownGraceMs: integer("ARTIFACTD_SHUTDOWN_GRACE_MS", 30_000, 0, 3_600_000),
    migrateOnStart: bool("ARTIFACTD_MIGRATE_ON_START", true),
    maintenanceIntervalMs: integer("ARTIFACTD_MAINTENANCE_INTERVAL_MS", 60_000, 0, 86_400_000),
    gcGraceMs: integer("ARTIFACTD_GC_GRACE_MS", 3_600_000, 0, 30 * 86_400_000),
    uploadStaleMs: integer("ARTIFACTD_UPLOAD_STALE_MS", 300_000, 1_000, 86_400_000),
    uploadSessionTtlMs: integer("ARTIFACTD_UPLOAD_SESSION_TTL_MS", 6 * 3_600_000, 1_000, 23 * 3_600_000),
    sessionHashAhead: Object.freeze({
      perSessionBytes: integer("ARTIFACTD_SESSION_HASH_AHEAD_BYTES", 64 * MiB, 0, 64 * 1024 * MiB),
      perServerBytes: integer("ARTIFACTD_SESSION_HASH_AHEAD_TOTAL_BYTES", 256 * MiB, 0, 64 * 1024 * MiB),
    }),
    publicUrl,
    corsAllowedOrigins,
    urlSigningKeys,
    downloadUrlMaxTtlSeconds: integer("ARTIFACTD_DOWNLOAD_URL_MAX_TTL_SECONDS", 86_400, 1, 7 * 86_400),
    eventRetentionMs: integer("ARTIFACTD_EVENT_RETENTION_MS", 86_400_000, 0, 90 * 86_400_000),
    tokenCacheMs: integer("ARTIFACTD_TOKEN_CACHE_MS", 5_000, 100, 60_000),
    transport: Object.freeze({
      maxConnections: integer("ARTIFACTD_MAX_CONNECTIONS", DEFAULT_TRANSPORT_LIMITS.maxConnections, 1, 1_000_000),
      http2MaxConcurrentStreams: integer("ARTIFACTD_HTTP2_MAX_CONCURRENT_STREAMS", DEFAULT_TRANSPORT_LIMITS.http2MaxConcurrentStreams, 1, 10_000),
      maxHeaderBytes: integer("ARTIFACTD_MAX_HEADER_BYTES", DEFAULT_TRANSPORT_LIMITS.maxHeaderBytes, 1024, MiB),
      idleConnectionTimeoutMs: integer("ARTIFACTD_IDLE_CONNECTION_TIMEOUT_MS", DEFAULT_TRANSPORT_LIMITS.idleConnectionTimeoutMs, 1_000, 86_400_000),
      headersTimeoutMs: integer("ARTIFACTD_HEADERS_TIMEOUT_MS", DEFAULT_TRANSPORT_LIMITS.headersTimeoutMs, 100, 600_000),
      requestBodyTimeoutMs: integer("ARTIFACTD_REQUEST_BODY_TIMEOUT_MS", DEFAULT_TRANSPORT_LIMITS.requestBodyTimeoutMs, 100, 86_400_000),
      streamIdleTimeoutMs: integer("ARTIFACTD_STREAM_IDLE_TIMEOUT_MS", DEFAULT_TRANSPORT_LIMITS.streamIdleTimeoutMs, 100, 86_400_000),
      // Node's timers hold at most 2^31 - 1 ms: a longer deadline would overflow into an immediate one.
      maxCallTimeoutMs: integer("ARTIFACTD_MAX_CALL_TIMEOUT_MS", DEFAULT_TRANSPORT_LIMITS.maxCallTimeoutMs, 1_000, 2_147_483_647),
    }),
    limits: Object.freeze({
      // The query builder recurses once per WHERE term and overflows the stack somewhere under 3,000 metric
      // ranges (three terms each): 256 stays well below whatever else is on the stack.
      maxFilterTerms: integer("ARTIFACTD_MAX_FILTER_TERMS", 64, 1, 256),
      maxPageSize: integer("ARTIFACTD_MAX_PAGE_SIZE", 1000, 1, 10_000),
      maxBatchItems: integer("ARTIFACTD_MAX_BATCH_ITEMS", 1000, 1, 10_000),
      maxSearchQueryChars: integer("ARTIFACTD_MAX_SEARCH_QUERY_CHARS", 512, 1, 4096),
      maxLineageNodes: integer("ARTIFACTD_MAX_LINEAGE_NODES", 1000, 1, 100_000),
      maxWatchersPerTenant: integer("ARTIFACTD_MAX_WATCHERS_PER_TENANT", 100, 1, 100_000),
      maxWatchers: integer("ARTIFACTD_MAX_WATCHERS", 1000, 1, 100_000),
      maxWatchBacklog: integer("ARTIFACTD_MAX_WATCH_BACKLOG", 10_000, 1, 1_000_000),
      uploadIdleTimeoutMs: integer("ARTIFACTD_UPLOAD_IDLE_TIMEOUT_MS", 60_000, 100, 3_600_000),
    }),
    quotaDefaults,
    quotaCacheMs: integer("ARTIFACTD_QUOTA_CACHE_MS", 5_000, 0, 300_000),
    tracing: readTracingSettings(env),
    log: Object.freeze({
      level: oneOf("ARTIFACTD_LOG_LEVEL", get("ARTIFACTD_LOG_LEVEL"), LOG_LEVELS, "info"),
      format: oneOf("ARTIFACTD_LOG_FORMAT", get("ARTIFACTD_LOG_FORMAT"), LOG_FORMATS, "json"),
    }),
    metrics: Object.freeze({
      listen: readMetricsListen(get("ARTIFACTD_METRICS_LISTEN")),
      tenantLabels: bool("ARTIFACTD_METRICS_TENANT_LABELS", false),
    }),
  });
}

function oneOf<T extends string>(name: string, raw: string | undefined, allowed: readonly T[], fallback: T): T {
  if (raw === undefined) return fallback;
  const value = raw.toLowerCase();
  if (!(allowed as readonly string[]).includes(value)) throw new ConfigError(`${name}=${JSON.stringify(raw)} is not valid: use one of ${allowed.join(", ")}`);
  return value as T;
}

/** `service`, `off`, `host:port`, or a port alone (on 127.0.0.1: metrics are for the operator, not the clients' network). */
function readMetricsListen(raw: string | undefined): MetricsConfig["listen"] {
  if (raw === undefined || raw.toLowerCase() === "service") return "service";
  if (raw.toLowerCase() === "off") return "off";
  const address = /^\d{1,5}$/.test(raw) ? parseHostPort(`127.0.0.1:${raw}`) : parseHostPort(raw);
  if (!address) {
    throw new ConfigError(
      `ARTIFACTD_METRICS_LISTEN=${JSON.stringify(raw)} is not valid: use service (the service's own port), off, a port (on 127.0.0.1) or host:port`,
    );
  }
  return Object.freeze(address);
}

/**
 * ARTIFACTD_CORS_ALLOWED_ORIGINS: exact origins, comma-separated, each as a
 * browser sends it in `Origin` (so a path, a trailing slash or an upper-case
 * host, which would never match, is refused rather than ignored). `*` is
 * refused: the list names the web apps trusted with their users' tokens and
 * links; a wildcard would let every page on the web use a token or link it
 * gets hold of from its users' browsers, and read health and reflection on
 * a server that is only reachable from inside a network.
 */
function readCorsAllowedOrigins(raw: string | undefined): readonly string[] {
  if (raw === undefined) return Object.freeze([]);
  const origins = raw
    .split(",")
    .map((entry) => entry.trim())
    .filter((entry) => entry !== "");
  for (const origin of origins) {
    if (origin === "*") {
      throw new ConfigError(
        "ARTIFACTD_CORS_ALLOWED_ORIGINS may not be *: list the origins of the web apps that call the service, e.g. https://app.example.com,https://admin.example.com",
      );
    }
    let parsed: URL | undefined;
    try {
      parsed = new URL(origin);
    } catch {
      parsed = undefined;
    }
    if (!parsed || (parsed.protocol !== "http:" && parsed.protocol !== "https:") || parsed.origin !== origin) {
      throw new ConfigError(
        `ARTIFACTD_CORS_ALLOWED_ORIGINS entry ${JSON.stringify(origin)} is not an origin as browsers send it: give scheme://host[:port], lower case, no path or trailing slash, e.g. https://app.example.com`,
      );
    }
  }
  return Object.freeze(origins);
}

/**
 * ARTIFACTD_URL_SIGNING_KEYS (`id:secret,…`, newest first), or the older
 * single ARTIFACTD_URL_SIGNING_KEY, which stands for one key with the id
 * `default` — so rotating away from it means listing it as `default:<secret>`
 * after the new key.
 */
function readUrlSigningKeys(list: string | undefined, single: string | undefined): readonly UrlSigningKey[] | undefined {
  if (list !== undefined && single !== undefined) {
    throw new ConfigError(
      "ARTIFACTD_URL_SIGNING_KEYS and ARTIFACTD_URL_SIGNING_KEY are both set: keep ARTIFACTD_URL_SIGNING_KEYS, listing the old key in it as default:<secret>",
    );
  }
  if (single !== undefined) {
    if (single.length < 32) {
      throw new ConfigError("ARTIFACTD_URL_SIGNING_KEY is too short: give at least 32 random characters (e.g. `openssl rand -base64 32`)");
    }
    return Object.freeze([Object.freeze({ id: "default", secret: single })]);
  }
  if (list === undefined) return undefined;
  try {
    return Object.freeze(parseUrlSigningKeys(list));
  } catch (error) {
    throw new ConfigError(`ARTIFACTD_URL_SIGNING_KEYS is not valid: ${(error as Error).message}`);
  }
}

/** A byte count with an optional KiB, MiB or GiB suffix (K, M, G too); undefined when it is not one. */
export function parseSize(raw: string): number | undefined {
  const match = /^(\d+)\s*(k|kib|m|mib|g|gib)?$/i.exec(raw);
  if (!match) return undefined;
  const unit = (match[2] ?? "").toLowerCase();
  const factor = unit.startsWith("k") ? 1024 : unit.startsWith("m") ? MiB : unit.startsWith("g") ? 1024 * MiB : 1;
  return Number(match[1]) * factor;
}

/** Where the service listens without ARTIFACTD_LISTEN (the CLI connects there by default). */
export const DEFAULT_LISTEN = "127.0.0.1:8080";

/** `host:port` or `[v6]:port` as ARTIFACTD_LISTEN takes it; undefined when malformed. */
export function parseHostPort(raw: string): { host: string; port: number } | undefined {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s]+)):(\d{1,5})$/.exec(raw);
  if (!match) return undefined;
  const port = Number(match[3]);
  if (port > 65535) return undefined;
  return { host: match[1] ?? match[2] ?? "", port };
}

function redactUrl(raw: string): string {
  return raw.replace(/\/\/([^:@/]+):[^@/]*@/, "//$1:***@");
}
