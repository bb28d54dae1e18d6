/**
 * A real artifactd for the tests of clients written in other languages (the
 * Go client's `go test`): MinIO (built once and cached, ./minio-server.ts),
 * a fresh Postgres database (./postgres.ts) and the service as a child
 * process (`node src/main.ts serve`, as `npm start` runs it), with
 * direct-to-storage downloads on. Prints one JSON line on stdout once
 * everything serves:
 *
 *   {"url", "tokens": {"alpha", "beta"}, "s3": {"endpoint", "bucket"}, "logFile"}
 *
 * then reads JSON requests on stdin, one a line, answering each with one
 * JSON line ({"ok": …} or {"error": "…"}):
 *
 *   {"op": "corrupt", "tenant", "blake3"}        flips the last byte of that stored blob in MinIO itself
 *   {"op": "saveDir", "dir", "spec"}             the Node SDK's saveDir (as tenant alpha): {"ok": "<id>"}
 *   {"op": "restoreDir", "id", "target"}         the Node SDK's restoreDir
 *   {"op": "eventCursor"}                        a watch cursor of the newest event recorded now (any tenant's), or
 *                                                "" when there is none: a watch resumed from it misses nothing after
 *   {"op": "startService", "direct"}             another service over the same database and bucket (its tokens work
 *                                                there too) with other direct-download settings: "none" (it offers no
 *                                                direct links) or "closed" (its direct endpoint is a closed port, a
 *                                                store the client cannot reach): {"ok": "<url>"}; stopped with the rest
 *
 * and stops everything (service, MinIO, database, folders) when stdin closes.
 *
 *   node test/support/serve-for-client-tests.ts
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { promisify } from "node:util";
import { Client as MinioClient } from "minio";
import pg from "pg";
import { createArtifactClient } from "../../clients/node/src/index.ts";
import { encodeEventCursor } from "../../src/service/watch-artifacts.ts";
import { ensureMinioBinary, freePort, startMinio } from "./minio-server.ts";
import { createTestDatabase } from "./postgres.ts";
import { isServing } from "./service-process.ts";

const ROOT = path.resolve(import.meta.dirname, "../..");
const MAIN = path.join(ROOT, "src/main.ts");
const log = (line: string) => process.stderr.write(`serve-for-client-tests: ${line}\n`);

const work = mkdtempSync(path.join(os.tmpdir(), "artifactd-client-tests-"));
const cleanups: Array<() => Promise<void> | void> = [() => rmSync(work, { recursive: true, force: true })];
let stopping: Promise<void> | undefined;
const stop = () =>
  (stopping ??= (async () => {
    for (const cleanup of cleanups.reverse()) await Promise.resolve(cleanup()).catch((error) => log(`cleanup failed: ${error}`));
  })());
process.on("SIGTERM", () => void stop().then(() => process.exit(143)));
process.on("SIGINT", () => void stop().then(() => process.exit(130)));

try {
  const minio = await startMinio(ensureMinioBinary(log));
  cleanups.push(() => minio.stop());
  const database = await createTestDatabase();
  cleanups.push(() => database.drop());
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const bucket = `go-${Math.random().toString(36).slice(2, 12)}`;
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    HOME: process.env.HOME ?? "/tmp",
    ARTIFACTD_LISTEN: `127.0.0.1:${port}`,
    ARTIFACTD_DATA_DIR: path.join(work, "data"),
    DATABASE_URL: database.url,
    ARTIFACTD_S3_ENDPOINT: minio.endpoint,
    ARTIFACTD_S3_ACCESS_KEY: minio.accessKey,
    ARTIFACTD_S3_SECRET_KEY: minio.secretKey,
    ARTIFACTD_S3_BUCKET: bucket,
    ARTIFACTD_DIRECT_DOWNLOAD_ENDPOINT: minio.endpoint,
  };
  const logFile = path.join(work, "service.log");
  const serve = async (serviceEnv: Record<string, string>, serviceUrl: string, serviceLog: string) => {
    const fd = openSync(serviceLog, "a");
    const service: ChildProcess = spawn(process.execPath, ["--max-semi-space-size=2", MAIN, "serve"], {
      cwd: ROOT,
      env: serviceEnv,
      stdio: ["ignore", fd, fd],
    });
    closeSync(fd);
    cleanups.push(async () => {
      if (service.exitCode !== null || service.signalCode !== null) return;
      const exited = new Promise((resolve) => service.once("exit", resolve));
      service.kill("SIGTERM");
      const timer = setTimeout(() => service.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(timer);
    });
    await waitServing(serviceUrl, service, serviceLog);
  };
  await serve(env, url, logFile);

  const run = promisify(execFile);
  const token = async (tenant: string) => {
    const { stdout } = await run(process.execPath, [MAIN, "token", "create", "--tenant", tenant, "--json"], { cwd: ROOT, env });
    return (JSON.parse(stdout.trim().split("\n").at(-1)!) as { token: string }).token;
  };
  const tokens = { alpha: await token("alpha"), beta: await token("beta") };
  const nodeClient = createArtifactClient({ baseUrl: url, token: tokens.alpha, cacheDir: path.join(work, "node-cache") });
  cleanups.push(() => nodeClient.close());
  const minioClient = new MinioClient({
    endPoint: "127.0.0.1",
    port: minio.port,
    useSSL: false,
    accessKey: minio.accessKey,
    secretKey: minio.secretKey,
  });

  process.stdout.write(`${JSON.stringify({ url, tokens, s3: { endpoint: minio.endpoint, bucket }, logFile })}\n`);

  const handlers: Record<string, (request: Record<string, unknown>) => Promise<unknown>> = {
    async corrupt({ tenant, blake3 }) {
      const db = new pg.Client({ connectionString: database.url });
      await db.connect();
      try {
        const { rows } = await db.query<{ storage_key: string }>("select storage_key from blobs where tenant_id = $1 and digest = $2", [tenant, blake3]);
        if (rows.length !== 1) throw new Error(`no blob ${blake3} of tenant ${tenant}`);
        const key = rows[0]!.storage_key;
        const stream = await minioClient.getObject(bucket, key);
        const parts: Buffer[] = [];
        for await (const part of stream) parts.push(part as Buffer);
        const damaged = Buffer.concat(parts);
        damaged[damaged.length - 1]! ^= 0xff;
        await minioClient.putObject(bucket, key, damaged, damaged.length);
        return key;
      } finally {
        await db.end();
      }
    },
    async saveDir({ dir, spec }) {
      return (await nodeClient.saveDir(String(dir), spec as Parameters<typeof nodeClient.saveDir>[1])).id;
    },
    async restoreDir({ id, target }) {
      const manifest = await nodeClient.restoreDir(String(id), String(target));
      return manifest.entries.length;
    },
    async eventCursor() {
      const db = new pg.Client({ connectionString: database.url });
      await db.connect();
      try {
        const { rows } = await db.query<{ seq: string | null }>("select max(seq)::text as seq from artifact_events");
        return rows[0]?.seq == null ? "" : encodeEventCursor(Number(rows[0].seq));
      } finally {
        await db.end();
      }
    },
    async startService({ direct }) {
      const otherPort = await freePort();
      const otherEnv: Record<string, string> = {
        ...env,
        ARTIFACTD_LISTEN: `127.0.0.1:${otherPort}`,
        ARTIFACTD_DATA_DIR: path.join(work, `data-${otherPort}`),
        // The first service does the maintenance (expiry, garbage collection) of the shared database.
        ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0",
      };
      if (direct === "none") delete otherEnv.ARTIFACTD_DIRECT_DOWNLOAD_ENDPOINT;
      else if (direct === "closed") otherEnv.ARTIFACTD_DIRECT_DOWNLOAD_ENDPOINT = `http://127.0.0.1:${await freePort()}`;
      else throw new Error(`direct must be "none" or "closed", got ${JSON.stringify(direct)}`);
      const otherUrl = `http://127.0.0.1:${otherPort}`;
      await serve(otherEnv, otherUrl, path.join(work, `service-${otherPort}.log`));
      return otherUrl;
    },
  };
  for await (const line of createInterface({ input: process.stdin })) {
    if (line.trim() === "") continue;
    let answer: unknown;
    try {
      const request = JSON.parse(line) as Record<string, unknown>;
      const handler = handlers[String(request.op)];
      if (!handler) throw new Error(`unknown op ${JSON.stringify(request.op)}`);
      answer = { ok: await handler(request) };
    } catch (error) {
      answer = { error: error instanceof Error ? `${error.name}: ${error.message}` : String(error) };
    }
    process.stdout.write(`${JSON.stringify(answer)}\n`);
  }
} catch (error) {
  log(error instanceof Error ? (error.stack ?? error.message) : String(error));
  process.exitCode = 1;
} finally {
  await stop();
}

async function waitServing(url: string, service: ChildProcess, logFile: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (service.exitCode !== null || service.signalCode !== null)
      throw new Error(`the service exited at start:\n${readFileSync(logFile, "utf8").slice(-4000)}`);
    if (await isServing(url)) return;
    if (Date.now() > deadline) throw new Error(`the service did not serve within 60 s:\n${readFileSync(logFile, "utf8").slice(-4000)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
