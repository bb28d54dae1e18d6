import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { Client } from "minio";
import { randomBytes } from "node:crypto";
import { watch } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { UploadRequestSchema } from "../src/gen/artifacts/v1/artifact_service_pb.js";
import { expectCode } from "./support/expect-code.ts";
import { blobStoreState, type BlobStoreState } from "./support/blob-store-state.ts";
import { BACKENDS, startTestApp, type TestApp } from "./support/test-app.ts";

/**
 * An upload that fails, is cancelled or runs out of time leaves no artifact
 * and nothing in the blob store: no object, no incomplete multipart upload,
 * no file. Each case first waits until the server has really stored part of
 * the upload (two 5 MiB parts in an open multipart upload, or 10 MiB in an
 * incoming file), so the clean-up has something to undo.
 */
const MiB = 1024 * 1024;
const PART_SIZE = 5 * MiB;
type UploadInit = MessageInitShape<typeof UploadRequestSchema>;

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => (clearTimeout(timer), resolve()), { once: true });
  });

describe.each(BACKENDS)("interrupted uploads on %s", (backend) => {
  let t: TestApp;
  let minio: Client | undefined;
  /** The store with one committed multipart artifact: what every interrupted upload must leave it as. */
  let committed: BlobStoreState;
  beforeAll(async () => {
    t = await startTestApp(backend, { ARTIFACTD_S3_PART_SIZE: "5MiB", ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0" });
    if (backend === "postgres+minio") {
      const { endpoint, accessKey, secretKey } = inject("minio");
      const url = new URL(endpoint);
      minio = new Client({ endPoint: url.hostname, port: Number(url.port), useSSL: false, accessKey, secretKey });
    }
    const bytes = randomBytes(PART_SIZE + MiB);
    await t.client().upload(
      (async function* (): AsyncIterable<UploadInit> {
        yield { message: { case: "header", value: { spec: { kind: "committed" } } } };
        yield { message: { case: "chunk", value: bytes } };
      })(),
    );
    committed = await storeState();
    expect(committed.entries).toHaveLength(1);
    expect(committed.entries[0]).toMatch(backend === "postgres+minio" ? /^object:/ : /^blobs:/);
    expect(await count()).toBe(1n);
  });
  afterAll(async () => {
    await t?.close();
  });

  const storeState = () => blobStoreState(t, minio);

  /** Waits until the server holds at least `bytes` of an unfinished upload; fails the test if it never does. */
  async function untilStoring(bytes: number): Promise<void> {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const { inProgressBytes } = await storeState();
      if (inProgressBytes.some((b) => b >= bytes)) return;
      if (Date.now() > deadline) throw new Error(`the server never held ${bytes} bytes of the upload (in progress: ${JSON.stringify(inProgressBytes)})`);
      await sleep(25);
    }
  }

  /** The abort is asynchronous on the server: poll until the store is back where it was. */
  const expectStoreBackToCommitted = async () => {
    let now = await storeState();
    for (let i = 0; i < 50 && JSON.stringify(now.entries) !== JSON.stringify(committed.entries); i++) {
      await sleep(100);
      now = await storeState();
    }
    expect(now.entries).toEqual(committed.entries);
    expect(now.inProgressBytes).toEqual([]);
  };
  const count = async () => (await t.client().listArtifacts({ filter: { includeDeleted: true }, includeTotalCount: true })).totalCount;

  /** A header, `bytes` of content, then (unless `end` says otherwise) the stream is held open until `release` aborts. */
  async function* upload(bytes: number, options: { expectedBlake3?: string; expectedSize?: bigint; beforeEnd?: () => Promise<void>; release?: AbortSignal }): AsyncIterable<UploadInit> {
    const header = { spec: { kind: "interrupted" }, expectedBlake3: options.expectedBlake3 ?? "", ...(options.expectedSize === undefined ? {} : { expectedSize: options.expectedSize }) };
    yield { message: { case: "header", value: header } };
    for (let sent = 0; sent < bytes; sent += MiB) yield { message: { case: "chunk", value: randomBytes(MiB) } };
    if (options.beforeEnd) await options.beforeEnd();
    else await sleep(30_000, options.release);
  }

  it("a client cancel mid-stream, after two parts are stored", async () => {
    // On the folder store, watch committed blobs: a cancelled upload is
    // never stored, not even for a moment before it is deleted again.
    const committedFiles: string[] = [];
    const watcher = backend === "pglite+fs" ? watch(path.join(t.dataDir, "blobs", "blobs"), { recursive: true }, (_event, name) => committedFiles.push(String(name))) : undefined;
    try {
      const controller = new AbortController();
      const outcome = expectCode(t.client().upload(upload(12 * MiB, { release: controller.signal }), { signal: controller.signal }), Code.Canceled);
      await untilStoring(2 * PART_SIZE);
      controller.abort();
      await outcome;
      await expectStoreBackToCommitted();
      expect(await count()).toBe(1n);
    } finally {
      watcher?.close();
    }
    expect(committedFiles).toEqual([]);
  });

  it("a deadline that runs out mid-stream, after two parts are stored", async () => {
    const release = new AbortController();
    const outcome = expectCode(t.client().upload(upload(11 * MiB, { release: release.signal }), { timeoutMs: 2_000 }), Code.DeadlineExceeded);
    try {
      await untilStoring(2 * PART_SIZE);
      await outcome;
    } finally {
      release.abort();
    }
    await expectStoreBackToCommitted();
    expect(await count()).toBe(1n);
  });

  it("a wrong declared digest, found at the end of a stream whose parts are stored", async () => {
    const stream = upload(12 * MiB, { expectedBlake3: "f".repeat(64), beforeEnd: () => untilStoring(2 * PART_SIZE) });
    await expectCode(t.client().upload(stream), Code.InvalidArgument, /BLAKE3/);
    await expectStoreBackToCommitted();
    expect(await count()).toBe(1n);
  });

  it("a stream that ends short of its declared size, after its parts are stored", async () => {
    const stream = upload(11 * MiB, { expectedSize: BigInt(20 * MiB), beforeEnd: () => untilStoring(2 * PART_SIZE) });
    await expectCode(t.client().upload(stream), Code.InvalidArgument, /expected_size/);
    await expectStoreBackToCommitted();
    expect(await count()).toBe(1n);
  });
});
