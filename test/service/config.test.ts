import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { CONFIG_VARIABLES, ConfigError, readConfig } from "../../src/config.ts";
import { freePort } from "../support/minio-server.ts";

const ROOT = path.resolve(import.meta.dirname, "../..");
const NODE = path.join(ROOT, "node_modules/.bin/node");

describe("configuration from the environment", () => {
  it("lists in the README's configuration table exactly the variables it reads", () => {
    const readme = readFileSync(path.join(ROOT, "README.md"), "utf8");
    const table = readme.slice(readme.indexOf("## Configuration"), readme.indexOf("## The API at a glance"));
    const documented = [...table.matchAll(/^\| `([A-Z0-9_]+)` \|/gm)].map((m) => m[1]);
    expect(documented).toEqual([...CONFIG_VARIABLES]);
    // And readConfig's own code reads every one of them.
    const source = readFileSync(path.join(ROOT, "src/config.ts"), "utf8");
    const body = source.slice(source.indexOf("export function readConfig"));
    for (const name of CONFIG_VARIABLES) expect(body, name).toContain(`"${name}"`);
  });

  it("has working defaults: embedded database and local blobs on 127.0.0.1:8080", () => {
    const config = readConfig({});
    expect(config.listen).toEqual({ host: "127.0.0.1", port: 8080 });
    expect(config.databaseUrl).toBeUndefined();
    expect(config.s3).toBeUndefined();
    expect(config.inlineMaxBytes).toBe(256 * 1024);
    expect(config.dataDir).toBe(path.resolve(".artifactd"));
    expect(config.migrateOnStart).toBe(true);
    expect(config.shutdownGraceMs).toBe(30_000);
    expect(config.maintenanceIntervalMs).toBe(60_000);
    expect(config.downloadChunkBytes).toBe(256 * 1024);
    expect(config.publicUrl).toBeUndefined();
    expect(config.urlSigningKeys).toBeUndefined();
    expect(config.limits.maxWatchBacklog).toBe(10_000);
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.listen)).toBe(true);
  });

  it("treats blank values as unset and reads the usual spellings of booleans", () => {
    expect(readConfig({ ARTIFACTD_LISTEN: "  ", DATABASE_URL: "" }).listen.port).toBe(8080);
    for (const no of ["false", "0", "no", "OFF"]) expect(readConfig({ ARTIFACTD_MIGRATE_ON_START: no }).migrateOnStart).toBe(false);
    for (const yes of ["true", "1", "yes", "On"]) expect(readConfig({ ARTIFACTD_MIGRATE_ON_START: yes }).migrateOnStart).toBe(true);
  });

  it("reads S3, sizes with units and IPv6 listen addresses", () => {
    const config = readConfig({
      ARTIFACTD_LISTEN: "[::1]:9090",
      ARTIFACTD_S3_ENDPOINT: "http://127.0.0.1:9000",
      ARTIFACTD_S3_ACCESS_KEY: "a",
      ARTIFACTD_S3_SECRET_KEY: "b",
      ARTIFACTD_S3_PART_SIZE: "32MiB",
      ARTIFACTD_INLINE_MAX_BYTES: "1KiB",
    });
    expect(config.listen).toEqual({ host: "::1", port: 9090 });
    expect(config.s3?.partSize).toBe(32 * 1024 * 1024);
    expect(config.s3?.bucket).toBe("artifacts");
    expect(config.s3?.partConcurrency).toBe(3);
    expect(config.s3?.region).toBe("us-east-1");
    expect(Object.isFrozen(config.s3)).toBe(true);
    expect(config.inlineMaxBytes).toBe(1024);
  });

  it.each([
    ["ARTIFACTD_LISTEN", { ARTIFACTD_LISTEN: "nonsense" }],
    ["ARTIFACTD_LISTEN", { ARTIFACTD_LISTEN: "127.0.0.1:99999" }],
    [
      "ARTIFACTD_S3_PART_SIZE",
      { ARTIFACTD_S3_ENDPOINT: "http://x:9000", ARTIFACTD_S3_ACCESS_KEY: "a", ARTIFACTD_S3_SECRET_KEY: "b", ARTIFACTD_S3_PART_SIZE: "1MiB" },
    ],
    ["ARTIFACTD_S3_ACCESS_KEY", { ARTIFACTD_S3_ENDPOINT: "http://x:9000" }],
    ["ARTIFACTD_S3_ENDPOINT", { ARTIFACTD_S3_BUCKET: "artifacts" }],
    ["ARTIFACTD_S3_ENDPOINT", { ARTIFACTD_S3_ENDPOINT: "ftp://x" }],
    [
      "ARTIFACTD_S3_BUCKET",
      { ARTIFACTD_S3_ENDPOINT: "http://x:9000", ARTIFACTD_S3_ACCESS_KEY: "a", ARTIFACTD_S3_SECRET_KEY: "b", ARTIFACTD_S3_BUCKET: "Bad_Bucket" },
    ],
    ["DATABASE_URL", { DATABASE_URL: "mysql://x" }],
    ["ARTIFACTD_MIGRATE_ON_START", { ARTIFACTD_MIGRATE_ON_START: "maybe" }],
    ["ARTIFACTD_INLINE_MAX_BYTES", { ARTIFACTD_INLINE_MAX_BYTES: "-1" }],
    ["ARTIFACTD_URL_SIGNING_KEY", { ARTIFACTD_URL_SIGNING_KEY: "short" }],
    ["ARTIFACTD_URL_SIGNING_KEYS", { ARTIFACTD_URL_SIGNING_KEYS: "k1:short" }],
    ["ARTIFACTD_URL_SIGNING_KEYS", { ARTIFACTD_URL_SIGNING_KEYS: `${"x".repeat(40)}` }],
    ["ARTIFACTD_URL_SIGNING_KEYS", { ARTIFACTD_URL_SIGNING_KEYS: `key/1:${"x".repeat(40)}` }],
    ["ARTIFACTD_URL_SIGNING_KEYS", { ARTIFACTD_URL_SIGNING_KEYS: `k1:${"x".repeat(40)},k1:${"y".repeat(40)}` }],
    ["ARTIFACTD_URL_SIGNING_KEYS", { ARTIFACTD_URL_SIGNING_KEYS: `k1:${"x".repeat(40)}`, ARTIFACTD_URL_SIGNING_KEY: "y".repeat(40) }],
    ["ARTIFACTD_PUBLIC_URL", { ARTIFACTD_PUBLIC_URL: "not a url" }],
    ["ARTIFACTD_S3_SECRET_KEY", { ARTIFACTD_S3_ENDPOINT: "http://x:9000", ARTIFACTD_S3_ACCESS_KEY: "a" }],
    [
      "ARTIFACTD_S3_PART_SIZE",
      { ARTIFACTD_S3_ENDPOINT: "http://x:9000", ARTIFACTD_S3_ACCESS_KEY: "a", ARTIFACTD_S3_SECRET_KEY: "b", ARTIFACTD_S3_PART_SIZE: "8 MB" },
    ],
    [
      "ARTIFACTD_S3_PART_SIZE",
      { ARTIFACTD_S3_ENDPOINT: "http://x:9000", ARTIFACTD_S3_ACCESS_KEY: "a", ARTIFACTD_S3_SECRET_KEY: "b", ARTIFACTD_S3_PART_SIZE: "6GiB" },
    ],
    [
      "ARTIFACTD_S3_PART_CONCURRENCY",
      { ARTIFACTD_S3_ENDPOINT: "http://x:9000", ARTIFACTD_S3_ACCESS_KEY: "a", ARTIFACTD_S3_SECRET_KEY: "b", ARTIFACTD_S3_PART_CONCURRENCY: "0" },
    ],
    ["ARTIFACTD_DATABASE_POOL_SIZE", { ARTIFACTD_DATABASE_POOL_SIZE: "0" }],
    ["ARTIFACTD_UPLOAD_MAX_BYTES", { ARTIFACTD_UPLOAD_MAX_BYTES: "lots" }],
    ["ARTIFACTD_DOWNLOAD_CHUNK_BYTES", { ARTIFACTD_DOWNLOAD_CHUNK_BYTES: "4MiB" }],
    ["ARTIFACTD_SHUTDOWN_GRACE_MS", { ARTIFACTD_SHUTDOWN_GRACE_MS: "soon" }],
    ["ARTIFACTD_MAINTENANCE_INTERVAL_MS", { ARTIFACTD_MAINTENANCE_INTERVAL_MS: "-5" }],
    ["ARTIFACTD_GC_GRACE_MS", { ARTIFACTD_GC_GRACE_MS: "1.5" }],
    ["ARTIFACTD_UPLOAD_SESSION_TTL_MS", { ARTIFACTD_UPLOAD_SESSION_TTL_MS: String(24 * 3_600_000) }],
    ["ARTIFACTD_DOWNLOAD_URL_MAX_TTL_SECONDS", { ARTIFACTD_DOWNLOAD_URL_MAX_TTL_SECONDS: "0" }],
    ["ARTIFACTD_MAX_WATCH_BACKLOG", { ARTIFACTD_MAX_WATCH_BACKLOG: "0" }],
  ])("refuses a bad %s with a message naming it", (variable, env) => {
    expect(() => readConfig(env)).toThrow(ConfigError);
    expect(() => readConfig(env)).toThrow(variable);
  });

  it("reads the tenant quota defaults: generous unless set, stored bytes unlimited or a size", () => {
    expect(readConfig({}).quotaDefaults).toEqual({
      storedBytes: Infinity,
      concurrentUploads: 16,
      concurrentDownloads: 32,
      openSessions: 100,
      callsPerSecond: 500,
      burst: 1000,
    });
    expect(readConfig({}).quotaCacheMs).toBe(5_000);
    const set = readConfig({
      ARTIFACTD_QUOTA_STORED_BYTES: "10GiB",
      ARTIFACTD_QUOTA_CONCURRENT_UPLOADS: "2",
      ARTIFACTD_QUOTA_BURST: "20",
      ARTIFACTD_QUOTA_CACHE_MS: "0",
    });
    expect(set.quotaDefaults).toMatchObject({ storedBytes: 10 * 1024 ** 3, concurrentUploads: 2, burst: 20 });
    expect(set.quotaCacheMs).toBe(0);
    expect(Object.isFrozen(set.quotaDefaults)).toBe(true);
    expect(readConfig({ ARTIFACTD_QUOTA_STORED_BYTES: "Unlimited" }).quotaDefaults.storedBytes).toBe(Infinity);
    expect(() => readConfig({ ARTIFACTD_QUOTA_STORED_BYTES: "lots" })).toThrow(/ARTIFACTD_QUOTA_STORED_BYTES="lots" is not valid: .*or unlimited/);
    expect(() => readConfig({ ARTIFACTD_QUOTA_CALLS_PER_SECOND: "0" })).toThrow(/ARTIFACTD_QUOTA_CALLS_PER_SECOND/);
    expect(() => readConfig({ ARTIFACTD_QUOTA_CONCURRENT_DOWNLOADS: "many" })).toThrow(/ARTIFACTD_QUOTA_CONCURRENT_DOWNLOADS/);
  });

  it("reads download-link keys newest first, and the single-key form as the key `default`", () => {
    const [newest, older] = ["n".repeat(43), "o".repeat(43)];
    expect(readConfig({ ARTIFACTD_URL_SIGNING_KEYS: ` k2:${newest}, k1:${older} ` }).urlSigningKeys).toEqual([
      { id: "k2", secret: newest },
      { id: "k1", secret: older },
    ]);
    expect(readConfig({ ARTIFACTD_URL_SIGNING_KEY: older }).urlSigningKeys).toEqual([{ id: "default", secret: older }]);
    expect(Object.isFrozen(readConfig({ ARTIFACTD_URL_SIGNING_KEYS: `k1:${older}` }).urlSigningKeys)).toBe(true);
    // A secret that is wrong is still a secret: errors name the key, never repeat it.
    expect(() => readConfig({ ARTIFACTD_URL_SIGNING_KEYS: `k1:${newest},k2:sh0rt-s3cret` })).toThrow(/k2/);
    expect(() => readConfig({ ARTIFACTD_URL_SIGNING_KEYS: `k1:${newest},k2:sh0rt-s3cret` })).not.toThrow(/sh0rt-s3cret/);
  });

  it("reads the log and metrics settings, naming the variable of a bad value", () => {
    const defaults = readConfig({});
    expect(defaults.log).toEqual({ level: "info", format: "json" });
    expect(defaults.metrics).toEqual({ listen: "service", tenantLabels: false });
    const set = readConfig({
      ARTIFACTD_LOG_LEVEL: "debug",
      ARTIFACTD_LOG_FORMAT: "pretty",
      ARTIFACTD_METRICS_LISTEN: "9464",
      ARTIFACTD_METRICS_TENANT_LABELS: "true",
    });
    expect(set.log).toEqual({ level: "debug", format: "pretty" });
    expect(set.metrics).toEqual({ listen: { host: "127.0.0.1", port: 9464 }, tenantLabels: true });
    expect(readConfig({ ARTIFACTD_METRICS_LISTEN: "[::1]:9464" }).metrics.listen).toEqual({ host: "::1", port: 9464 });
    expect(readConfig({ ARTIFACTD_METRICS_LISTEN: "off" }).metrics.listen).toBe("off");
    expect(() => readConfig({ ARTIFACTD_LOG_LEVEL: "loud" })).toThrow(/ARTIFACTD_LOG_LEVEL="loud" is not valid: use one of fatal, error, warn, info, debug/);
    expect(() => readConfig({ ARTIFACTD_LOG_FORMAT: "xml" })).toThrow(/ARTIFACTD_LOG_FORMAT="xml" is not valid: use one of json, pretty/);
    expect(() => readConfig({ ARTIFACTD_METRICS_LISTEN: "everywhere" })).toThrow(/ARTIFACTD_METRICS_LISTEN="everywhere" is not valid/);
    expect(() => readConfig({ ARTIFACTD_METRICS_LISTEN: "70000" })).toThrow(/ARTIFACTD_METRICS_LISTEN/);
    expect(() => readConfig({ ARTIFACTD_METRICS_TENANT_LABELS: "maybe" })).toThrow(/ARTIFACTD_METRICS_TENANT_LABELS="maybe" is not valid/);
  });

  it("does not repeat a database password in its error", () => {
    expect(() => readConfig({ DATABASE_URL: "mysql://app:hunter2@db:3306/x" })).toThrow(ConfigError);
    expect(() => readConfig({ DATABASE_URL: "mysql://app:hunter2@db:3306/x" })).toThrow(/DATABASE_URL.*app:\*\*\*@db/);
    expect(() => readConfig({ DATABASE_URL: "mysql://app:hunter2@db:3306/x" })).not.toThrow(/hunter2/);
  });
});

describe("the artifactd process", () => {
  it("stops at start-up on a bad setting, naming the variable", async () => {
    const { code, output } = await run(["serve"], { ARTIFACTD_LISTEN: "not-an-address" });
    expect(code).toBe(2);
    expect(output).toMatch(/ARTIFACTD_LISTEN/);
    const s3 = await run(["serve"], {
      ARTIFACTD_S3_ENDPOINT: "http://127.0.0.1:9",
      ARTIFACTD_S3_ACCESS_KEY: "a",
      ARTIFACTD_S3_SECRET_KEY: "b",
      ARTIFACTD_S3_PART_SIZE: "1MiB",
    });
    expect(s3.code).toBe(2);
    expect(s3.output).toMatch(/^artifactd: ARTIFACTD_S3_PART_SIZE="1MiB" is not valid/m);
  });

  it("runs on the embedded default, makes a first token, and stops cleanly on SIGTERM", async () => {
    const dataDir = mkdtempSync(path.join(os.tmpdir(), "artifactd-process-"));
    const port = await freePort();
    try {
      const child = spawn(NODE, ["src/main.ts", "serve"], {
        cwd: ROOT,
        env: { ...process.env, DATABASE_URL: "", ARTIFACTD_DATA_DIR: dataDir, ARTIFACTD_LISTEN: `127.0.0.1:${port}`, ARTIFACTD_MAINTENANCE_INTERVAL_MS: "200" },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let output = "";
      child.stdout.on("data", (d: Buffer) => (output += d));
      child.stderr.on("data", (d: Buffer) => (output += d));
      for (let i = 0; i < 300 && !output.includes("serving"); i++) await new Promise((r) => setTimeout(r, 100));
      expect(output).toMatch(/serving gRPC, gRPC-Web and Connect/);
      // The log is JSON lines on stdout: the start line names where it serves, and where its metrics are.
      const start = output
        .split("\n")
        .filter((line) => line.startsWith("{"))
        .map((line) => JSON.parse(line) as Record<string, unknown>)
        .find((line) => String(line.msg).startsWith("serving"));
      expect(start).toMatchObject({ level: "info", url: `http://127.0.0.1:${port}`, metrics: `http://127.0.0.1:${port}/metrics`, metadata: "pglite" });
      const token = readFileSync(path.join(dataDir, "bootstrap-token"), "utf8").trim();
      expect(token).toMatch(/^adt_/);
      const health = await fetch(`http://127.0.0.1:${port}/grpc.health.v1.Health/Check`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: "{}",
      });
      expect(await health.json()).toEqual({ status: "SERVING" });
      const lines = () =>
        output
          .split("\n")
          .filter((line) => line !== "")
          .map((line) => JSON.parse(line) as Record<string, unknown>);
      // Each maintenance pass has its line, with what it did.
      for (let i = 0; i < 100 && !lines().some((line) => line.msg === "maintenance pass"); i++) await new Promise((r) => setTimeout(r, 100));
      expect(lines().find((line) => line.msg === "maintenance pass")).toMatchObject({ level: "info" });
      const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      expect(await exited).toBe(0);
      // The shutdown in the log, every line of it JSON (lines() parses each).
      const messages = lines().map((line) => String(line.msg));
      expect(messages).toContainEqual(expect.stringMatching(/^SIGTERM: finishing calls in flight/));
      expect(messages.at(-1)).toBe("stopped");
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

function run(args: string[], env: Record<string, string>): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(NODE, ["src/main.ts", ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (d: Buffer) => (output += d));
    child.stderr.on("data", (d: Buffer) => (output += d));
    child.on("exit", (code) => resolve({ code, output }));
  });
}
