import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { Client } from "minio";
import { randomBytes } from "node:crypto";
import { readdirSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { UploadRequestSchema } from "../src/gen/artifacts/v1/artifact_service_pb.js";
import { expectCode } from "./support/expect-code.ts";
import { BACKENDS, startTestApp, type TestApp } from "./support/test-app.ts";

/**
 * An upload that fails, is cancelled or runs out of time leaves no artifact
 * and nothing in the blob store: no object, no incomplete multipart upload,
 * no file.
 */
const MiB = 1024 * 1024;
type UploadInit = MessageInitShape<typeof UploadRequestSchema>;

describe.each(BACKENDS)("interrupted uploads on %s", (backend) => {
  let t: TestApp;
  let minio: Client | undefined;
  beforeAll(async () => {
    t = await startTestApp(backend, { ARTIFACTD_S3_PART_SIZE: "5MiB", ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0" });
    if (backend === "postgres+minio") {
      const { endpoint, accessKey, secretKey } = inject("minio");
      const url = new URL(endpoint);
      minio = new Client({ endPoint: url.hostname, port: Number(url.port), useSSL: false, accessKey, secretKey });
    }
  });
  afterAll(async () => {
    await t?.close();
  });

  /** Everything the blob store holds, committed or not. */
  const stored = async (): Promise<string[]> => {
    if (minio) {
      for (let attempt = 0; ; attempt++) {
        try {
          const found: string[] = [];
          for await (const u of minio.listIncompleteUploads(t.bucket!, "", true)) found.push(`multipart:${(u as { key: string }).key}`);
          for await (const o of minio.listObjectsV2(t.bucket!, "", true)) found.push(`object:${(o as { name: string }).name}`);
          return found.sort();
        } catch (error) {
          // Listing an upload's parts races with its abort: look again.
          if ((error as { code?: string }).code !== "NoSuchUpload" || attempt > 20) throw error;
        }
      }
    }
    const root = path.join(t.dataDir, "blobs");
    return ["incoming", "blobs"].flatMap((dir) =>
      readdirSync(path.join(root, dir), { recursive: true, withFileTypes: true })
        .filter((e) => e.isFile())
        .map((e) => `${dir}:${e.name}`),
    ).sort();
  };
  /** The abort is asynchronous on the server: poll until the store is back where it was. */
  const expectStoreBackTo = async (before: string[]) => {
    let now = await stored();
    for (let i = 0; i < 50 && JSON.stringify(now) !== JSON.stringify(before); i++) {
      await new Promise((r) => setTimeout(r, 100));
      now = await stored();
    }
    expect(now).toEqual(before);
  };
  const count = async () => (await t.client().listArtifacts({ filter: { kind: "interrupted", includeDeleted: true }, includeTotalCount: true })).totalCount;

  async function* slowStream(bytes: number, after?: () => void): AsyncIterable<UploadInit> {
    yield { message: { case: "header", value: { spec: { kind: "interrupted" } } } };
    for (let sent = 0; sent < bytes; sent += MiB) yield { message: { case: "chunk", value: randomBytes(MiB) } };
    after?.();
    // Hold the stream open until the caller gives up.
    await new Promise((r) => setTimeout(r, 30_000));
  }

  it("a client cancel mid-stream, after several parts", async () => {
    const before = await stored();
    const controller = new AbortController();
    const done = expectCode(t.client().upload(slowStream(12 * MiB, () => setTimeout(() => controller.abort(), 300)), { signal: controller.signal }), Code.Canceled);
    await done;
    await expectStoreBackTo(before);
    expect(await count()).toBe(0n);
  });

  it("a deadline that runs out mid-stream", async () => {
    const before = await stored();
    await expectCode(t.client().upload(slowStream(11 * MiB), { timeoutMs: 1_500 }), Code.DeadlineExceeded);
    await expectStoreBackTo(before);
    expect(await count()).toBe(0n);
  });

  it("a wrong declared digest discovered after several parts", async () => {
    const before = await stored();
    async function* stream(): AsyncIterable<UploadInit> {
      yield { message: { case: "header", value: { spec: { kind: "interrupted" }, expectedBlake3: "f".repeat(64) } } };
      for (let i = 0; i < 12; i++) yield { message: { case: "chunk", value: randomBytes(MiB) } };
    }
    await expectCode(t.client().upload(stream()), Code.InvalidArgument, /BLAKE3/);
    await expectStoreBackTo(before);
    expect(await count()).toBe(0n);
  });

  it("a client that ends its stream early while the server is still reading (wrong size)", async () => {
    const before = await stored();
    async function* stream(): AsyncIterable<UploadInit> {
      yield { message: { case: "header", value: { spec: { kind: "interrupted" }, expectedSize: BigInt(20 * MiB) } } };
      for (let i = 0; i < 11; i++) yield { message: { case: "chunk", value: randomBytes(MiB) } };
    }
    await expectCode(t.client().upload(stream()), Code.InvalidArgument, /expected_size/);
    await expectStoreBackTo(before);
    expect(await count()).toBe(0n);
  });
});
