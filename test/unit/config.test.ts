import path from "node:path";
import { describe, expect, it } from "vitest";
import { CONFIG_VARIABLES, ConfigError, DEFAULT_LISTEN, parseHostPort, parseSize, readConfig, type Config } from "../../src/config.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const S3 = { ARTIFACTD_S3_ENDPOINT: "http://127.0.0.1:9000", ARTIFACTD_S3_ACCESS_KEY: "access", ARTIFACTD_S3_SECRET_KEY: "secret" };

/** Every whole-number setting: where it lands, its default and its bounds (the README's configuration table). */
const WHOLE_NUMBERS: [string, (config: Config) => number | undefined, number, number, number][] = [
  ["ARTIFACTD_DATABASE_POOL_SIZE", (c) => c.databasePoolSize, 10, 1, 1000],
  ["ARTIFACTD_DATABASE_STATEMENT_TIMEOUT_MS", (c) => c.databaseStatementTimeoutMs, 30_000, 0, 3_600_000],
  ["ARTIFACTD_S3_PART_SIZE", (c) => c.s3?.partSize, 8 * MiB, 5 * MiB, 5 * GiB],
  ["ARTIFACTD_S3_PART_CONCURRENCY", (c) => c.s3?.partConcurrency, 3, 1, 64],
  ["ARTIFACTD_INLINE_MAX_BYTES", (c) => c.inlineMaxBytes, 256 * KiB, 0, 64 * MiB],
  ["ARTIFACTD_UPLOAD_INLINE_MAX_BYTES", (c) => c.uploadInlineMaxBytes, 64 * KiB, 0, MiB],
  ["ARTIFACTD_UPLOAD_MAX_BYTES", (c) => c.uploadMaxBytes, 5120 * GiB, 0, Number.MAX_SAFE_INTEGER],
  ["ARTIFACTD_DOWNLOAD_CHUNK_BYTES", (c) => c.downloadChunkBytes, 256 * KiB, 16 * KiB, 4 * MiB - 64 * KiB],
  ["ARTIFACTD_SHUTDOWN_GRACE_MS", (c) => c.shutdownGraceMs, 30_000, 0, 3_600_000],
  ["ARTIFACTD_MAINTENANCE_INTERVAL_MS", (c) => c.maintenanceIntervalMs, 60_000, 0, 86_400_000],
  ["ARTIFACTD_GC_GRACE_MS", (c) => c.gcGraceMs, 3_600_000, 0, 30 * 86_400_000],
  ["ARTIFACTD_UPLOAD_STALE_MS", (c) => c.uploadStaleMs, 300_000, 1_000, 86_400_000],
  ["ARTIFACTD_UPLOAD_SESSION_TTL_MS", (c) => c.uploadSessionTtlMs, 6 * 3_600_000, 1_000, 23 * 3_600_000],
  ["ARTIFACTD_SESSION_HASH_AHEAD_BYTES", (c) => c.sessionHashAhead.perSessionBytes, 64 * MiB, 0, 64 * GiB],
  ["ARTIFACTD_SESSION_HASH_AHEAD_TOTAL_BYTES", (c) => c.sessionHashAhead.perServerBytes, 256 * MiB, 0, 64 * GiB],
  ["ARTIFACTD_DOWNLOAD_URL_MAX_TTL_SECONDS", (c) => c.downloadUrlMaxTtlSeconds, 86_400, 1, 7 * 86_400],
  ["ARTIFACTD_EVENT_RETENTION_MS", (c) => c.eventRetentionMs, 86_400_000, 0, 90 * 86_400_000],
  ["ARTIFACTD_TOKEN_CACHE_MS", (c) => c.tokenCacheMs, 5_000, 100, 60_000],
  ["ARTIFACTD_MAX_CONNECTIONS", (c) => c.transport.maxConnections, 1_000, 1, 1_000_000],
  ["ARTIFACTD_HTTP2_MAX_CONCURRENT_STREAMS", (c) => c.transport.http2MaxConcurrentStreams, 100, 1, 10_000],
  ["ARTIFACTD_MAX_HEADER_BYTES", (c) => c.transport.maxHeaderBytes, 16 * KiB, 1024, MiB],
  ["ARTIFACTD_IDLE_CONNECTION_TIMEOUT_MS", (c) => c.transport.idleConnectionTimeoutMs, 120_000, 1_000, 86_400_000],
  ["ARTIFACTD_HEADERS_TIMEOUT_MS", (c) => c.transport.headersTimeoutMs, 10_000, 100, 600_000],
  ["ARTIFACTD_REQUEST_BODY_TIMEOUT_MS", (c) => c.transport.requestBodyTimeoutMs, 300_000, 100, 86_400_000],
  ["ARTIFACTD_STREAM_IDLE_TIMEOUT_MS", (c) => c.transport.streamIdleTimeoutMs, 90_000, 100, 86_400_000],
  ["ARTIFACTD_MAX_CALL_TIMEOUT_MS", (c) => c.transport.maxCallTimeoutMs, 7 * 86_400_000, 1_000, 2 ** 31 - 1],
  ["ARTIFACTD_MAX_FILTER_TERMS", (c) => c.limits.maxFilterTerms, 64, 1, 256],
  ["ARTIFACTD_MAX_PAGE_SIZE", (c) => c.limits.maxPageSize, 1000, 1, 10_000],
  ["ARTIFACTD_MAX_BATCH_ITEMS", (c) => c.limits.maxBatchItems, 1000, 1, 10_000],
  ["ARTIFACTD_MAX_SEARCH_QUERY_CHARS", (c) => c.limits.maxSearchQueryChars, 512, 1, 4096],
  ["ARTIFACTD_MAX_LINEAGE_NODES", (c) => c.limits.maxLineageNodes, 1000, 1, 100_000],
  ["ARTIFACTD_MAX_WATCHERS_PER_TENANT", (c) => c.limits.maxWatchersPerTenant, 100, 1, 100_000],
  ["ARTIFACTD_MAX_WATCHERS", (c) => c.limits.maxWatchers, 1000, 1, 100_000],
  ["ARTIFACTD_MAX_WATCH_BACKLOG", (c) => c.limits.maxWatchBacklog, 10_000, 1, 1_000_000],
  ["ARTIFACTD_UPLOAD_IDLE_TIMEOUT_MS", (c) => c.limits.uploadIdleTimeoutMs, 60_000, 100, 3_600_000],
  ["ARTIFACTD_QUOTA_CONCURRENT_UPLOADS", (c) => c.quotaDefaults.concurrentUploads, 16, 1, 100_000],
  ["ARTIFACTD_QUOTA_CONCURRENT_DOWNLOADS", (c) => c.quotaDefaults.concurrentDownloads, 32, 1, 100_000],
  ["ARTIFACTD_QUOTA_OPEN_SESSIONS", (c) => c.quotaDefaults.openSessions, 100, 1, 10_000_000],
  ["ARTIFACTD_QUOTA_CALLS_PER_SECOND", (c) => c.quotaDefaults.callsPerSecond, 500, 1, 1_000_000],
  ["ARTIFACTD_QUOTA_BURST", (c) => c.quotaDefaults.burst, 1000, 1, 10_000_000],
  ["ARTIFACTD_QUOTA_CACHE_MS", (c) => c.quotaCacheMs, 5_000, 0, 300_000],
];

const refusal = (env: Record<string, string>): string => {
  try {
    readConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).name).toBe("ConfigError");
    return (error as Error).message;
  }
  throw new Error(`readConfig accepted ${JSON.stringify(env)}`);
};

/**
 * The settings that are not whole numbers, each exercised below or, for the
 * log and metrics settings, in test/service/config.test.ts and
 * test/service/metrics-settings.test.ts.
 */
const OTHER_SETTINGS = [
  "ARTIFACTD_LISTEN",
  "ARTIFACTD_DATA_DIR",
  "DATABASE_URL",
  "ARTIFACTD_MIGRATE_ON_START",
  "ARTIFACTD_S3_ENDPOINT",
  "ARTIFACTD_S3_ACCESS_KEY",
  "ARTIFACTD_S3_SECRET_KEY",
  "ARTIFACTD_S3_BUCKET",
  "ARTIFACTD_S3_REGION",
  "ARTIFACTD_DIRECT_DOWNLOAD_ENDPOINT",
  "ARTIFACTD_PUBLIC_URL",
  "ARTIFACTD_CORS_ALLOWED_ORIGINS",
  "ARTIFACTD_URL_SIGNING_KEYS",
  "ARTIFACTD_URL_SIGNING_KEY",
  "ARTIFACTD_QUOTA_STORED_BYTES",
  "ARTIFACTD_LOG_LEVEL",
  "ARTIFACTD_LOG_FORMAT",
  "ARTIFACTD_METRICS_LISTEN",
  "ARTIFACTD_METRICS_TENANT_LABELS",
];

describe("the list of settings", () => {
  it("names exactly the variables readConfig reads", () => {
    expect([...CONFIG_VARIABLES].sort()).toStrictEqual([...WHOLE_NUMBERS.map(([name]) => name), ...OTHER_SETTINGS].sort());
  });
});

describe("whole-number settings", () => {
  it.each(WHOLE_NUMBERS)("%s has its default and takes values from its minimum to its maximum only", (name, read, fallback, min, max) => {
    const base = name.startsWith("ARTIFACTD_S3_") ? S3 : {};
    expect(read(readConfig(base))).toBe(fallback);
    expect(read(readConfig({ ...base, [name]: String(min) }))).toBe(min);
    expect(read(readConfig({ ...base, [name]: ` ${max} ` }))).toBe(max);
    for (const bad of [String(min - 1), String(max + 1)].filter((value) => Number.isSafeInteger(Number(value)))) {
      expect(refusal({ ...base, [name]: bad })).toBe(
        `${name}=${JSON.stringify(bad)} is not valid: give a whole number between ${min} and ${max} (size suffixes KiB, MiB, GiB allowed)`,
      );
    }
  });
});

describe("sizes", () => {
  it("are bytes with an optional KiB, MiB or GiB suffix, any case, K, M, G for short", () => {
    expect(parseSize("0")).toBe(0);
    expect(parseSize("12")).toBe(12);
    expect(parseSize("3k")).toBe(3 * KiB);
    expect(parseSize("3 KiB")).toBe(3 * KiB);
    expect(parseSize("2M")).toBe(2 * MiB);
    expect(parseSize("2mib")).toBe(2 * MiB);
    expect(parseSize("5G")).toBe(5 * GiB);
    expect(parseSize("5GiB")).toBe(5 * GiB);
    for (const bad of ["", "x", "-1", "1.5", "1 MB", "1T", " 1", "1KiBx", "KiB"]) expect(parseSize(bad), bad).toBeUndefined();
  });
});

describe("listen addresses", () => {
  it("are host:port or [IPv6]:port, port 0–65535", () => {
    expect(DEFAULT_LISTEN).toBe("127.0.0.1:8080");
    expect(parseHostPort("0.0.0.0:0")).toStrictEqual({ host: "0.0.0.0", port: 0 });
    expect(parseHostPort("example:65535")).toStrictEqual({ host: "example", port: 65535 });
    expect(parseHostPort("[::]:8080")).toStrictEqual({ host: "::", port: 8080 });
    expect(parseHostPort("[fe80::1.2.3.4]:1")).toStrictEqual({ host: "fe80::1.2.3.4", port: 1 });
    for (const bad of ["host", "host:65536", "host:123456", ":80", "a b:80", "::1:80", "[::1]80", "[g::1]:80", "host:8o", " host:80", "host:80 "]) {
      expect(parseHostPort(bad), bad).toBeUndefined();
    }
    expect(readConfig({ ARTIFACTD_LISTEN: "[::1]:9" }).listen).toStrictEqual({ host: "::1", port: 9 });
    expect(refusal({ ARTIFACTD_LISTEN: "host" })).toBe(
      'ARTIFACTD_LISTEN="host" is not valid: use host:port, e.g. 127.0.0.1:8080 or [::]:8080 (port 0 picks a free one)',
    );
  });
});

describe("readConfig", () => {
  it("reads the data folder, the database URL and the public URL", () => {
    expect(readConfig({}).dataDir).toBe(path.resolve(".artifactd"));
    expect(readConfig({ ARTIFACTD_DATA_DIR: " /srv/artifacts " }).dataDir).toBe("/srv/artifacts");
    for (const url of ["postgres://db/x", "postgresql://u:p@db:5432/x"]) expect(readConfig({ DATABASE_URL: url }).databaseUrl).toBe(url);
    expect(refusal({ DATABASE_URL: "postgresx://db" })).toBe('DATABASE_URL must be a postgres:// or postgresql:// URL, got "postgresx://db"');
    expect(refusal({ DATABASE_URL: "x postgres://db" })).toMatch(/^DATABASE_URL must be/);
    expect(refusal({ DATABASE_URL: "http://app:pw@db/x" })).toBe('DATABASE_URL must be a postgres:// or postgresql:// URL, got "http://app:***@db/x"');
    for (const url of ["https://artifacts.example.com", "http://host:8080/base/path"]) expect(readConfig({ ARTIFACTD_PUBLIC_URL: url }).publicUrl).toBe(url);
    for (const bad of ["ftp://host", "https://", "https:// host", "https://host/a b", "xhttps://host"]) {
      expect(refusal({ ARTIFACTD_PUBLIC_URL: bad })).toBe(
        `ARTIFACTD_PUBLIC_URL=${JSON.stringify(bad)} is not valid: give the base URL clients use, e.g. https://artifacts.example.com`,
      );
    }
  });

  it("reads CORS origins as exact origins, none by default, never *", () => {
    expect(readConfig({}).corsAllowedOrigins).toStrictEqual([]);
    const config = readConfig({ ARTIFACTD_CORS_ALLOWED_ORIGINS: " https://app.example.com, http://127.0.0.1:5173 ,," });
    expect(config.corsAllowedOrigins).toStrictEqual(["https://app.example.com", "http://127.0.0.1:5173"]);
    expect(Object.isFrozen(config.corsAllowedOrigins)).toBe(true);
    expect(refusal({ ARTIFACTD_CORS_ALLOWED_ORIGINS: "https://a.example.com,*" })).toBe(
      "ARTIFACTD_CORS_ALLOWED_ORIGINS may not be *: list the origins of the web apps that call the service, e.g. https://app.example.com,https://admin.example.com",
    );
    // Each of these would never equal a browser's Origin header: refused, not silently useless.
    for (const bad of [
      "https://app.example.com/",
      "https://app.example.com/path",
      "https://App.example.com",
      "https://app.example.com:443",
      "app.example.com",
      "ftp://x",
      "null",
    ]) {
      expect(refusal({ ARTIFACTD_CORS_ALLOWED_ORIGINS: bad })).toBe(
        `ARTIFACTD_CORS_ALLOWED_ORIGINS entry ${JSON.stringify(bad)} is not an origin as browsers send it: give scheme://host[:port], lower case, no path or trailing slash, e.g. https://app.example.com`,
      );
    }
  });

  it("reads booleans in their usual spellings only", () => {
    for (const yes of ["1", "true", "YES", "on"]) expect(readConfig({ ARTIFACTD_MIGRATE_ON_START: yes }).migrateOnStart).toBe(true);
    for (const no of ["0", "False", "no", "OFF"]) expect(readConfig({ ARTIFACTD_MIGRATE_ON_START: no }).migrateOnStart).toBe(false);
    expect(readConfig({}).migrateOnStart).toBe(true);
    for (const bad of ["2", "yes please", "xtrue", "10", "nope"]) {
      expect(refusal({ ARTIFACTD_MIGRATE_ON_START: bad })).toBe(`ARTIFACTD_MIGRATE_ON_START=${JSON.stringify(bad)} is not valid: use true or false`);
    }
  });

  it("reads S3 only with an endpoint, with both keys, and a valid bucket", () => {
    const config = readConfig({ ...S3, ARTIFACTD_S3_BUCKET: "my.bucket-1", ARTIFACTD_S3_REGION: "eu-west-1" });
    expect(config.s3).toStrictEqual({
      endpoint: new URL("http://127.0.0.1:9000"),
      region: "eu-west-1",
      accessKey: "access",
      secretKey: "secret",
      bucket: "my.bucket-1",
      partSize: 8 * MiB,
      partConcurrency: 3,
      directDownloadEndpoint: undefined,
    });
    expect(Object.isFrozen(config.s3)).toBe(true);
    expect(readConfig({ ...S3, ARTIFACTD_S3_ENDPOINT: "https://s3.example.com" }).s3).toMatchObject({ bucket: "artifacts", region: "us-east-1" });
    expect(readConfig({ ARTIFACTD_S3_BUCKET: " " }).s3).toBeUndefined();
    expect(refusal({ ARTIFACTD_S3_REGION: "x", ARTIFACTD_S3_BUCKET: "b" })).toBe(
      "ARTIFACTD_S3_REGION, ARTIFACTD_S3_BUCKET set without ARTIFACTD_S3_ENDPOINT: set the endpoint too, or unset them to use the local folder",
    );
    expect(refusal({ ...S3, ARTIFACTD_S3_ENDPOINT: "not a url" })).toBe('ARTIFACTD_S3_ENDPOINT="not a url" is not a URL: use e.g. http://127.0.0.1:9000');
    expect(refusal({ ...S3, ARTIFACTD_S3_ENDPOINT: "ftp://host" })).toBe('ARTIFACTD_S3_ENDPOINT must start with http:// or https://, got "ftp://host"');
    const bothKeys = "ARTIFACTD_S3_ENDPOINT is set, so ARTIFACTD_S3_ACCESS_KEY and ARTIFACTD_S3_SECRET_KEY must be set too";
    expect(refusal({ ...S3, ARTIFACTD_S3_ACCESS_KEY: "" })).toBe(bothKeys);
    expect(refusal({ ...S3, ARTIFACTD_S3_SECRET_KEY: "" })).toBe(bothKeys);
    for (const name of ["abc", "a".repeat(63), "1.b-c"]) expect(readConfig({ ...S3, ARTIFACTD_S3_BUCKET: name }).s3?.bucket).toBe(name);
    for (const bad of ["ab", "a".repeat(64), "Abc", "-abc", "abc-", "a_c", "xabc!"]) {
      expect(refusal({ ...S3, ARTIFACTD_S3_BUCKET: bad })).toBe(
        `ARTIFACTD_S3_BUCKET=${JSON.stringify(bad)} is not a valid bucket name: 3–63 lowercase letters, digits, dots and hyphens`,
      );
    }
  });

  it("reads the direct-download endpoint only beside an S3 endpoint, as a bare http(s) address", () => {
    expect(readConfig({ ...S3, ARTIFACTD_DIRECT_DOWNLOAD_ENDPOINT: "https://s3.example.com:8443" }).s3?.directDownloadEndpoint).toStrictEqual(
      new URL("https://s3.example.com:8443"),
    );
    expect(readConfig({ ...S3, ARTIFACTD_DIRECT_DOWNLOAD_ENDPOINT: " " }).s3?.directDownloadEndpoint).toBeUndefined();
    expect(refusal({ ARTIFACTD_DIRECT_DOWNLOAD_ENDPOINT: "http://127.0.0.1:9000" })).toBe(
      "ARTIFACTD_DIRECT_DOWNLOAD_ENDPOINT is set without ARTIFACTD_S3_ENDPOINT: direct-to-storage downloads need the S3 blob store; unset it to use the local folder",
    );
    expect(refusal({ ...S3, ARTIFACTD_DIRECT_DOWNLOAD_ENDPOINT: "nope" })).toBe(
      'ARTIFACTD_DIRECT_DOWNLOAD_ENDPOINT="nope" is not a URL: use e.g. http://127.0.0.1:9000',
    );
    expect(refusal({ ...S3, ARTIFACTD_DIRECT_DOWNLOAD_ENDPOINT: "ftp://host" })).toBe(
      'ARTIFACTD_DIRECT_DOWNLOAD_ENDPOINT must start with http:// or https://, got "ftp://host"',
    );
    for (const bad of ["http://h:9000/?x=1", "http://user:pw@h:9000", "http://h#f"]) {
      expect(refusal({ ...S3, ARTIFACTD_DIRECT_DOWNLOAD_ENDPOINT: bad })).toBe(
        `ARTIFACTD_DIRECT_DOWNLOAD_ENDPOINT=${JSON.stringify(bad)} is not valid: give the store's address alone, e.g. https://s3.example.com`,
      );
    }
  });

  it("reads the stored-bytes quota as a size or unlimited", () => {
    expect(readConfig({}).quotaDefaults.storedBytes).toBe(Infinity);
    expect(readConfig({ ARTIFACTD_QUOTA_STORED_BYTES: "UNLIMITED" }).quotaDefaults.storedBytes).toBe(Infinity);
    expect(readConfig({ ARTIFACTD_QUOTA_STORED_BYTES: "2GiB" }).quotaDefaults.storedBytes).toBe(2 * GiB);
    expect(readConfig({ ARTIFACTD_QUOTA_STORED_BYTES: "0" }).quotaDefaults.storedBytes).toBe(0);
    for (const bad of ["unlimitedx", "xunlimited", "lots", "9007199254740992"]) {
      expect(refusal({ ARTIFACTD_QUOTA_STORED_BYTES: bad })).toBe(
        `ARTIFACTD_QUOTA_STORED_BYTES=${JSON.stringify(bad)} is not valid: give bytes per tenant (suffixes KiB, MiB, GiB allowed), or unlimited`,
      );
    }
  });

  it("reads signing keys from the list or the single-key form, never both", () => {
    const secret = "s".repeat(32);
    expect(readConfig({ ARTIFACTD_URL_SIGNING_KEY: secret }).urlSigningKeys).toStrictEqual([{ id: "default", secret }]);
    expect(Object.isFrozen(readConfig({ ARTIFACTD_URL_SIGNING_KEY: secret }).urlSigningKeys)).toBe(true);
    expect(Object.isFrozen(readConfig({ ARTIFACTD_URL_SIGNING_KEY: secret }).urlSigningKeys![0])).toBe(true);
    expect(refusal({ ARTIFACTD_URL_SIGNING_KEY: secret.slice(1) })).toBe(
      "ARTIFACTD_URL_SIGNING_KEY is too short: give at least 32 random characters (e.g. `openssl rand -base64 32`)",
    );
    expect(readConfig({ ARTIFACTD_URL_SIGNING_KEYS: `k1:${secret}` }).urlSigningKeys).toStrictEqual([{ id: "k1", secret }]);
    expect(refusal({ ARTIFACTD_URL_SIGNING_KEYS: `k1:${secret}`, ARTIFACTD_URL_SIGNING_KEY: secret })).toBe(
      "ARTIFACTD_URL_SIGNING_KEYS and ARTIFACTD_URL_SIGNING_KEY are both set: keep ARTIFACTD_URL_SIGNING_KEYS, listing the old key in it as default:<secret>",
    );
    expect(refusal({ ARTIFACTD_URL_SIGNING_KEYS: "k1:short" })).toMatch(/^ARTIFACTD_URL_SIGNING_KEYS is not valid: the secret of key k1 must be/);
  });

  it("freezes what it returns, all the way down", () => {
    const config = readConfig(S3);
    for (const part of [config, config.listen, config.transport, config.limits, config.quotaDefaults, config.s3]) expect(Object.isFrozen(part)).toBe(true);
  });
});
