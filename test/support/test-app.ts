import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { inject } from "vitest";
import { startApp, type App, type AppObservers } from "../../src/app.ts";
import { readConfig } from "../../src/config.ts";
import { createLogger } from "../../src/observability/logger.ts";
import { ArtifactService } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import { createApiToken } from "../../src/service/api-tokens.ts";
import { createTestDatabase } from "./postgres.ts";
import { ServerLog } from "./server-log.ts";
import { BACKENDS, testsBackend, type Backend } from "./test-backends.ts";

export { BACKENDS, type Backend };

/**
 * A running artifactd on a free loopback port for one test file, on either
 * backend pair:
 * - "postgres+minio": the machine's Postgres (a fresh database) and the run's
 *   MinIO server (a fresh bucket);
 * - "pglite+fs": the embedded default, in a temporary folder.
 * BACKENDS holds those this run covers (ARTIFACTD_TEST_BACKENDS, ./test-backends.ts).
 */

export interface TestApp {
  readonly app: App;
  readonly url: string;
  readonly backend: Backend;
  /** Tokens of two tenants, to check isolation. */
  readonly tokens: { readonly alpha: string; readonly beta: string };
  /** A generated-code client over gRPC (HTTP/2) as tenant alpha (or the given token). */
  client(token?: string): Client<typeof ArtifactService>;
  readonly bucket: string | undefined;
  readonly databaseUrl: string | undefined;
  readonly dataDir: string;
  /** What the server logged; an unexpected internal error fails the test (./fail-on-server-errors.ts). */
  readonly serverLog: ServerLog;
  /** Stops the server and closes its stores, keeping the database and data folder (to start another app on them). */
  closeApp(): Promise<void>;
  /** closeApp, then drops the database and removes the data folder. */
  close(): Promise<void>;
}

/** `observers`: told about every call and store operation before the app's own (src/observability/calls.ts). */
export async function startTestApp(backend: Backend, env: Record<string, string> = {}, observers: AppObservers = {}): Promise<TestApp> {
  if (!testsBackend(backend)) {
    throw new Error(
      `this run covers ${BACKENDS.join(", ")} alone (ARTIFACTD_TEST_BACKENDS): a block that starts ${backend} must be skipped, with describeOn("${backend}")`,
    );
  }
  const dataDir = mkdtempSync(path.join(os.tmpdir(), "artifactd-test-"));
  let dropDatabase = async () => {};
  // S3 settings only mean something with an S3 endpoint; the folder backend drops them.
  const shared = backend === "pglite+fs" ? Object.fromEntries(Object.entries(env).filter(([name]) => !name.startsWith("ARTIFACTD_S3_"))) : env;
  const settings: Record<string, string> = {
    ARTIFACTD_LISTEN: "127.0.0.1:0",
    ARTIFACTD_DATA_DIR: dataDir,
    // Tests upload small contents and then look at their blobs (dedup, GC, corruption, faults): small uploads go to
    // the blob store unless a test asks for the database (test/service/inline-uploads.test.ts).
    ARTIFACTD_UPLOAD_INLINE_MAX_BYTES: "0",
    ...shared,
  };
  let bucket: string | undefined;
  let databaseUrl: string | undefined;
  if (backend === "postgres+minio") {
    // A given DATABASE_URL joins another test app's database (a second replica).
    databaseUrl = env.DATABASE_URL;
    if (!databaseUrl) {
      const database = await createTestDatabase();
      dropDatabase = database.drop;
      databaseUrl = database.url;
    }
    const minio = inject("minio");
    bucket = env.ARTIFACTD_S3_BUCKET ?? `t-${Math.random().toString(36).slice(2, 12)}`;
    Object.assign(settings, {
      DATABASE_URL: databaseUrl,
      ARTIFACTD_S3_ENDPOINT: minio.endpoint,
      ARTIFACTD_S3_ACCESS_KEY: minio.accessKey,
      ARTIFACTD_S3_SECRET_KEY: minio.secretKey,
      ARTIFACTD_S3_BUCKET: bucket,
      ...env,
    });
  }
  const config = readConfig(settings);
  const serverLog = new ServerLog(`server ${backend}`);
  const app = await startApp(config, createLogger({ level: "info", destination: serverLog }), observers);
  const alpha = (await createApiToken(app.metadata, "alpha", "alpha-ci", { scope: "admin" })).token;
  const beta = (await createApiToken(app.metadata, "beta", "beta-ci", { scope: "admin" })).token;
  const clients = new Map<string, Client<typeof ArtifactService>>();
  let appClosed: Promise<void> | undefined;
  const closeApp = () => (appClosed ??= app.close(1_000).finally(() => serverLog.retire()));
  return {
    app,
    url: app.server.url,
    backend,
    tokens: { alpha, beta },
    bucket,
    databaseUrl,
    dataDir,
    serverLog,
    client(token = alpha) {
      let client = clients.get(token);
      if (!client) {
        const transport = createGrpcTransport({
          baseUrl: app.server.url,
          interceptors: [
            (next) => (request) => {
              request.header.set("authorization", `Bearer ${token}`);
              return next(request);
            },
          ],
        });
        client = createClient(ArtifactService, transport);
        clients.set(token, client);
      }
      return client;
    },
    closeApp,
    async close() {
      await closeApp();
      await dropDatabase();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
