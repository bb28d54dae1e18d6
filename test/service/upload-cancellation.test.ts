import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { randomBytes } from "node:crypto";
import { watch } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { UploadRequestSchema } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import { expectCode } from "../support/expect-code.ts";
import { captureStorageKeys, expectNothingStored, untilStored } from "../support/nothing-stored.ts";
import { BACKENDS, startTestApp, type TestApp } from "../support/test-app.ts";

/**
 * An upload that fails, is cancelled or runs out of time records nothing and
 * removes what it stored by itself, before any garbage collection (none runs
 * here): no artifact, blob, in-flight or session record, and nothing in the
 * blob store under its key — no object, no unfinished multipart upload, no
 * file. Each case first waits until the server has really stored part of the
 * upload under that key (two 5 MiB parts in an open multipart upload, or
 * 10 MiB in an incoming file), so the clean-up has something to undo.
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
  beforeAll(async () => {
    t = await startTestApp(backend, { ARTIFACTD_S3_PART_SIZE: "5MiB", ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0" });
  });
  afterAll(async () => {
    await t?.close();
  });

  const untilStoring = (keys: readonly string[], bytes: number) => untilStored(t, keys, bytes);
  const interruptedArtifacts = async () => (await t.client().listArtifacts({ filter: { kind: "interrupted", includeDeleted: true } })).artifacts;

  /** A header, `bytes` of content, then (unless `beforeEnd` says otherwise) the stream is held open until `release` aborts. */
  async function* upload(
    bytes: number,
    options: { expectedBlake3?: string; expectedSize?: bigint; beforeEnd?: () => Promise<void>; release?: AbortSignal },
  ): AsyncIterable<UploadInit> {
    const header = {
      spec: { kind: "interrupted" },
      expectedBlake3: options.expectedBlake3 ?? "",
      ...(options.expectedSize === undefined ? {} : { expectedSize: options.expectedSize }),
    };
    yield { message: { case: "header", value: header } };
    for (let sent = 0; sent < bytes; sent += MiB) yield { message: { case: "chunk", value: randomBytes(MiB) } };
    if (options.beforeEnd) await options.beforeEnd();
    else await sleep(30_000, options.release);
  }

  it("a client cancel mid-stream, after two parts are stored: the upload removes them itself", async () => {
    // On the folder store, watch committed blobs: a cancelled upload is
    // never stored, not even for a moment before it is deleted again.
    const committedFiles: string[] = [];
    const watcher =
      backend === "pglite+fs"
        ? watch(path.join(t.dataDir, "blobs", "blobs"), { recursive: true }, (_event, name) => committedFiles.push(String(name)))
        : undefined;
    using storage = captureStorageKeys(t);
    try {
      const controller = new AbortController();
      const outcome = expectCode(t.client().upload(upload(12 * MiB, { release: controller.signal }), { signal: controller.signal }), Code.Canceled);
      await untilStoring(storage.keys, 2 * PART_SIZE);
      controller.abort();
      await outcome;
      await expectNothingStored(t, { keys: storage.keys });
    } finally {
      watcher?.close();
    }
    expect(committedFiles).toEqual([]);
    expect(await interruptedArtifacts()).toEqual([]);
  });

  it("a deadline that runs out mid-stream, after two parts are stored: the upload removes them itself", async () => {
    using storage = captureStorageKeys(t);
    const release = new AbortController();
    const outcome = expectCode(t.client().upload(upload(11 * MiB, { release: release.signal }), { timeoutMs: 2_000 }), Code.DeadlineExceeded);
    try {
      await untilStoring(storage.keys, 2 * PART_SIZE);
      await outcome;
    } finally {
      release.abort();
    }
    await expectNothingStored(t, { keys: storage.keys });
    expect(await interruptedArtifacts()).toEqual([]);
  });

  it("a wrong declared digest, found at the end of a stream whose parts are stored: the upload removes them itself", async () => {
    using storage = captureStorageKeys(t);
    const stream = upload(12 * MiB, { expectedBlake3: "f".repeat(64), beforeEnd: () => untilStoring(storage.keys, 2 * PART_SIZE) });
    await expectCode(t.client().upload(stream), Code.InvalidArgument, /BLAKE3/);
    await expectNothingStored(t, { keys: storage.keys });
    expect(await interruptedArtifacts()).toEqual([]);
  });

  it("a stream that ends short of its declared size, after its parts are stored: the upload removes them itself", async () => {
    using storage = captureStorageKeys(t);
    const stream = upload(11 * MiB, { expectedSize: BigInt(20 * MiB), beforeEnd: () => untilStoring(storage.keys, 2 * PART_SIZE) });
    await expectCode(t.client().upload(stream), Code.InvalidArgument, /expected_size/);
    await expectNothingStored(t, { keys: storage.keys });
    expect(await interruptedArtifacts()).toEqual([]);
  });
});
