import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { ArtifactService } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import { createTestDatabase } from "../support/postgres.ts";
import { createServiceProcess, type ServiceProcess } from "../support/service-process.ts";
import { BACKENDS } from "../support/test-app.ts";

/**
 * The server's memory does not grow with the size of what passes through
 * it: the real service as a child process takes a 512 MiB upload, streamed by
 * the client from a generator, and serves it back, while its resident set
 * (VmRSS from /proc) is sampled. The growth over the idle baseline must stay
 * far below the content's size: part buffers and read-ahead are bounded
 * (about 35 MiB on S3 with the default part size and concurrency); a server
 * that held the content would grow by at least its size.
 */
const MiB = 1024 * 1024;
const SIZE = 512 * MiB;
const CHUNK = MiB;
/** Generous: the README measures ~75 MiB with npm start's flags; this child runs without them. */
const MAX_GROWTH = 300 * MiB;

function residentBytes(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, "utf8")
    .split("\n")
    .find((l) => l.startsWith("VmRSS:"));
  return Number(/(\d+)/.exec(line ?? "")?.[1] ?? Number.NaN) * 1024;
}

/** Samples the process's RSS every 50 ms until `stop()`, which returns the highest seen. */
function sampleResident(pid: number) {
  let peak = residentBytes(pid);
  const timer = setInterval(() => (peak = Math.max(peak, residentBytes(pid))), 50);
  return {
    stop() {
      clearInterval(timer);
      return Math.max(peak, residentBytes(pid));
    },
  };
}

/** Content made chunk by chunk as the upload pulls it: the client never holds more than a chunk or two. */
async function* generatedContent() {
  for (let index = 0; index * CHUNK < SIZE; index++) {
    const chunk = Buffer.allocUnsafe(CHUNK).fill(index % 251);
    chunk.writeUInt32BE(index, 0);
    yield chunk;
  }
}

/** The token a first start on the embedded default writes, just after it starts serving: polled for with a deadline. */
async function bootstrapToken(dataDir: string): Promise<string> {
  const file = path.join(dataDir, "bootstrap-token");
  const deadline = Date.now() + 30_000;
  while (!existsSync(file) || readFileSync(file, "utf8").trim() === "") {
    if (Date.now() > deadline) throw new Error(`${file} was not written within 30 s of the server serving`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return readFileSync(file, "utf8").trim();
}

describe.each(BACKENDS)("server memory for a 512 MiB transfer on %s", (backend) => {
  let service: ServiceProcess;
  let workDir: string;
  let dropDatabase = async () => {};
  let client: ReturnType<typeof createClient<typeof ArtifactService>>;
  beforeAll(async () => {
    workDir = mkdtempSync(path.join(os.tmpdir(), "artifactd-memory-"));
    const env: Record<string, string> = { ARTIFACTD_DATA_DIR: path.join(workDir, "service"), ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0" };
    if (backend === "postgres+minio") {
      const database = await createTestDatabase();
      dropDatabase = database.drop;
      const minio = inject("minio");
      Object.assign(env, {
        DATABASE_URL: database.url,
        ARTIFACTD_S3_ENDPOINT: minio.endpoint,
        ARTIFACTD_S3_ACCESS_KEY: minio.accessKey,
        ARTIFACTD_S3_SECRET_KEY: minio.secretKey,
        ARTIFACTD_S3_BUCKET: `mem-${Math.random().toString(36).slice(2, 12)}`,
      });
    }
    service = await createServiceProcess({ env, logFile: path.join(workDir, "service.log") });
    await service.start();
    // PGlite allows one process in its folder, so the token comes from the server's own bootstrap file there.
    const token = backend === "pglite+fs" ? await bootstrapToken(path.join(workDir, "service")) : await service.createToken("memory");
    client = createClient(
      ArtifactService,
      createGrpcTransport({
        baseUrl: service.url,
        interceptors: [(next) => (request) => (request.header.set("authorization", `Bearer ${token}`), next(request))],
      }),
    );
  });
  afterAll(async () => {
    await service?.stop(5_000);
    await dropDatabase();
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  });

  it("grows by far less than the content while uploading it and while serving it back", async () => {
    const pid = service.pid!;
    // The baseline after one small call of each kind, so lazily loaded code and pools count as idle.
    const warm = await client.upload(
      (async function* () {
        yield { message: { case: "header" as const, value: { spec: { kind: "warm-up" } } } };
        yield { message: { case: "chunk" as const, value: Buffer.alloc(1024, 1) } };
      })(),
    );
    for await (const _ of client.download({ id: warm.artifact!.id })) void _;
    const idle = residentBytes(pid);

    const uploading = sampleResident(pid);
    const { artifact } = await client.upload(
      (async function* () {
        yield { message: { case: "header" as const, value: { spec: { kind: "large" }, expectedSize: BigInt(SIZE) } } };
        for await (const chunk of generatedContent()) yield { message: { case: "chunk" as const, value: chunk } };
      })(),
      { timeoutMs: 120_000 },
    );
    const uploadPeak = uploading.stop();
    expect(artifact!.sizeBytes).toBe(BigInt(SIZE));

    const downloading = sampleResident(pid);
    let received = 0;
    for await (const message of client.download({ id: artifact!.id }, { timeoutMs: 120_000 })) {
      if (message.message.case === "chunk") received += message.message.value.byteLength;
    }
    const downloadPeak = downloading.stop();
    expect(received).toBe(SIZE);

    const growth = { upload: Math.round((uploadPeak - idle) / MiB), download: Math.round((downloadPeak - idle) / MiB) };
    expect(growth.upload, `RSS growth in MiB over an idle ${Math.round(idle / MiB)} MiB: ${JSON.stringify(growth)}`).toBeLessThan(MAX_GROWTH / MiB);
    expect(growth.download, `RSS growth in MiB over an idle ${Math.round(idle / MiB)} MiB: ${JSON.stringify(growth)}`).toBeLessThan(MAX_GROWTH / MiB);
  }, 180_000);
});
