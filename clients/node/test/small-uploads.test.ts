import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { createAsyncIterable } from "@connectrpc/connect/protocol";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { randomBytes } from "node:crypto";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { blake3Hex } from "../../../src/blake3.ts";
import { BACKENDS, startTestApp, type TestApp } from "../../../test/support/test-app.ts";
import { createArtifactConnection } from "../src/artifact-connection.ts";
import { failureOf } from "./connect-failure.ts";
import {
  createArtifactWriter,
  HELD_UPLOAD_MAX_BYTES,
  type StartUpload,
  type TransferProgress,
  type UploadMessage,
  type WholeUpload,
} from "../src/artifact-writer.ts";
import { createArtifactClient, type ArtifactClient } from "../src/index.ts";

/** Which call each writer the client opened took: the lean whole Upload, or the streaming one. */
const calls = vi.hoisted(() => ({ whole: 0, streaming: 0 }));

vi.mock("../src/artifact-writer.ts", async (importOriginal) => {
  const original = await importOriginal<typeof import("../src/artifact-writer.ts")>();
  return {
    ...original,
    createArtifactWriter: (startUpload: StartUpload, spec: never, options: never, uploadWhole?: WholeUpload) =>
      original.createArtifactWriter(
        (...args) => {
          calls.streaming++;
          return startUpload(...args);
        },
        spec,
        options,
        uploadWhole &&
          ((...args) => {
            calls.whole++;
            return uploadWhole(...args);
          }),
      ),
  };
});

const KiB = 1024;

describe.each(BACKENDS)("small uploads from the Node SDK on %s", (backend) => {
  let t: TestApp;
  let client: ArtifactClient;
  let connection: ReturnType<typeof createArtifactConnection>;
  beforeAll(async () => {
    // As the server runs by default: declared small contents kept in the database.
    t = await startTestApp(backend, {
      ARTIFACTD_UPLOAD_INLINE_MAX_BYTES: "65536",
      ARTIFACTD_S3_PART_SIZE: "5MiB",
      // The concurrent uploads below are more than the default quota of 16 per tenant.
      ARTIFACTD_QUOTA_CONCURRENT_UPLOADS: "100",
    });
    client = createArtifactClient({ baseUrl: t.url, token: t.tokens.alpha, timeoutMs: 30_000 });
    connection = createArtifactConnection({ baseUrl: t.url, token: t.tokens.alpha, retry: false });
  });
  afterAll(async () => {
    await client?.close();
    connection?.close();
    await t?.close();
  });
  beforeEach(() => {
    calls.whole = 0;
    calls.streaming = 0;
  });
  const count = async (kind: string) => {
    let n = 0;
    for await (const _ of client.list({ kind, includeDeleted: true })) n++;
    return n;
  };
  /** The streaming Upload over the same connection: the yardstick. */
  const streamingUpload: StartUpload = (messages, signal, timeoutMs) =>
    connection.rpc.upload(messages, { signal, ...(timeoutMs !== undefined ? { timeoutMs } : {}) });
  const refusedStream: StartUpload = () => Promise.reject(new Error("the streaming Upload call was opened"));

  it("sends a small content as one call at commit, never opening the streaming call", async () => {
    const content = randomBytes(4 * KiB);
    const writer = createArtifactWriter(refusedStream, { kind: "lean-small", name: "one-call" }, { expectedSize: content.length }, connection.uploadWhole);
    await writer.write(content);
    const { artifact } = await writer.commit();
    expect(artifact!.sizeBytes).toBe(BigInt(content.length));
    expect((await client.loadBytes(artifact!.id)).equals(content)).toBe(true);
  });

  it("takes the lean call for the client's small writers and uploadStream, and the bytes and metadata arrive as written", async () => {
    const reused = Buffer.alloc(3 * KiB);
    const parts: Buffer[] = [];
    const progress: TransferProgress[] = [];
    const writer = client.openWriter(
      { kind: "lean-meta", name: "meta.bin", labels: { stage: "train", keep: "spec" } },
      { onProgress: (p) => progress.push(p) },
    );
    for (let i = 0; i < 3; i++) {
      // The caller refills its buffer once write resolves: what was written must be what arrives.
      randomBytes(reused.length).copy(reused);
      parts.push(Buffer.from(reused));
      await writer.write(reused);
      if (i === 0) writer.addLabels({ stage: "eval", epoch: "3" }).addMetrics({ loss: 0.25 });
    }
    await writer.write("tail é");
    parts.push(Buffer.from("tail é"));
    writer.addTags("best", ["final"]).addMetrics({ loss: 0.125, acc: 0.5 });
    // Held, not sent: nothing reported yet.
    expect(progress).toEqual([]);
    const data = Buffer.concat(parts);
    const { artifact, deduplicated } = await writer.commit();
    expect(deduplicated).toBe(false);
    expect(progress).toEqual([{ bytes: data.length, totalBytes: undefined }]);
    expect(artifact!.labels).toEqual({ stage: "eval", keep: "spec", epoch: "3" });
    expect(artifact!.metrics).toEqual({ loss: 0.125, acc: 0.5 });
    expect(artifact!.tags).toEqual(["best", "final"]);
    expect(artifact!.blake3).toBe(blake3Hex(data));
    expect((await client.loadBytes(artifact!.id)).equals(data)).toBe(true);
    expect(writer.committed).toBe(true);
    const again = await writer.commit();
    expect(again.artifact).toBe(artifact);

    const declared = randomBytes(4 * KiB);
    const uploaded = await client.uploadStream(
      [declared],
      { kind: "lean-meta", name: "declared" },
      { expectedSize: declared.length, expectedBlake3: blake3Hex(declared) },
    );
    expect((await client.loadBytes(uploaded.artifact!.id)).equals(declared)).toBe(true);
    const empty = await client.uploadStream([], { kind: "lean-meta", name: "empty" }, { expectedSize: 0 });
    expect(empty.artifact!.sizeBytes).toBe(0n);
    expect(calls).toEqual({ whole: 3, streaming: 0 });
  });

  it("refuses a size or digest mismatch with the same INVALID_ARGUMENT as the streaming call", async () => {
    const content = randomBytes(4 * KiB);
    const upload = async (options: { expectedSize?: number; expectedBlake3?: string }, lean: boolean) => {
      const writer = createArtifactWriter(
        lean ? refusedStream : streamingUpload,
        { kind: "lean-mismatch" },
        options,
        lean ? connection.uploadWhole : undefined,
      );
      // The streaming call may refuse at the write already; the lean one at commit.
      return failureOf(writer.write(content).then(() => writer.commit()));
    };
    for (const options of [{ expectedSize: content.length + 1 }, { expectedSize: content.length - 1 }, { expectedBlake3: blake3Hex(randomBytes(8)) }]) {
      const lean = await upload(options, true);
      const streamed = await upload(options, false);
      expect(lean.code).toBe(Code.InvalidArgument);
      expect({ code: lean.code, message: lean.rawMessage }).toEqual({ code: streamed.code, message: streamed.rawMessage });
    }
    expect(await count("lean-mismatch")).toBe(0);
  });

  it("answers a refused token with the streaming call's error", async () => {
    const refused = createArtifactConnection({ baseUrl: t.url, token: "adt_not_a_token", retry: false });
    try {
      const lean = createArtifactWriter(refusedStream, { kind: "lean-refused" }, {}, refused.uploadWhole);
      await lean.write("x");
      const leanError = await failureOf(lean.commit());
      const streamed = createArtifactWriter((messages, signal) => refused.rpc.upload(messages, { signal }), { kind: "lean-refused" }, {});
      const streamedError = await failureOf(streamed.write("x").then(() => streamed.commit()));
      expect(leanError.code).toBe(Code.Unauthenticated);
      expect({ code: leanError.code, message: leanError.rawMessage }).toEqual({ code: streamedError.code, message: streamedError.rawMessage });
    } finally {
      refused.close();
    }
  });

  it("abort before commit sends nothing and records nothing; an aborted signal fails write and commit with CANCELED", async () => {
    const writer = client.openWriter({ kind: "lean-abort" });
    await writer.write(randomBytes(2 * KiB));
    await writer.abort();
    await expect(writer.commit()).rejects.toThrow(/cannot commit: the writer is aborted/);
    await expect(writer.write("more")).rejects.toThrow(/cannot write: the writer is aborted/);
    expect(writer.committed).toBe(false);

    const controller = new AbortController();
    const signalled = client.openWriter({ kind: "lean-abort" }, { signal: controller.signal });
    await signalled.write("before");
    controller.abort(new Error("the caller gave up"));
    const writeError = await failureOf(signalled.write("after"));
    expect(writeError.code).toBe(Code.Canceled);
    expect(writeError.rawMessage).toBe("the caller gave up");
    const commitError = await failureOf(signalled.commit());
    expect({ code: commitError.code, message: commitError.rawMessage }).toEqual({ code: Code.Canceled, message: "the caller gave up" });

    // `await using` without commit aborts too.
    {
      await using scoped = client.openWriter({ kind: "lean-abort" });
      await scoped.write("scoped");
    }
    expect(calls).toEqual({ whole: 1, streaming: 0 });
    expect(await count("lean-abort")).toBe(0);
  });

  it("fails with DEADLINE_EXCEEDED once the upload's deadline has passed, before or at commit", async () => {
    const writer = client.openWriter({ kind: "lean-deadline" }, { timeoutMs: 50 });
    await writer.write("in time");
    await new Promise((resolve) => setTimeout(resolve, 80));
    const late = await failureOf(writer.write("late"));
    expect({ code: late.code, message: late.rawMessage }).toEqual({ code: Code.DeadlineExceeded, message: "the operation timed out" });
    const commitError = await failureOf(writer.commit());
    expect(commitError.code).toBe(Code.DeadlineExceeded);
    expect(await count("lean-deadline")).toBe(0);
  });

  it("streams an upload that crosses the limit as before: what was held first, then the rest, intact", async () => {
    const parts = [randomBytes(40 * KiB), randomBytes(600 * KiB), randomBytes(300 * KiB)];
    const progress: number[] = [];
    const writer = client.openWriter({ kind: "lean-large", name: "crossing" }, { onProgress: (p) => progress.push(p.bytes) });
    await writer.write(parts[0]!);
    expect(calls).toEqual({ whole: 0, streaming: 0 });
    await writer.write(parts[1]!);
    expect(calls.streaming).toBe(1);
    writer.addLabels({ crossed: "yes" });
    await writer.write(parts[2]!);
    const { artifact } = await writer.commit();
    const data = Buffer.concat(parts);
    expect(artifact!.labels).toEqual({ crossed: "yes" });
    expect(artifact!.blake3).toBe(blake3Hex(data));
    expect((await client.loadBytes(artifact!.id)).equals(data)).toBe(true);
    expect(progress.at(-1)).toBe(data.length);
    expect(progress.length).toBeGreaterThan(3);

    // A declared size above the limit streams from the first write, as before.
    const declared = randomBytes(HELD_UPLOAD_MAX_BYTES + 1);
    const uploaded = await client.uploadStream([declared], { kind: "lean-large", name: "declared" }, { expectedSize: declared.length });
    expect(uploaded.artifact!.blake3).toBe(blake3Hex(declared));
    // Exactly at the limit: still held.
    const atLimit = randomBytes(HELD_UPLOAD_MAX_BYTES);
    expect((await client.uploadStream([atLimit], { kind: "lean-large", name: "at-limit" })).artifact!.blake3).toBe(blake3Hex(atLimit));
    expect(calls).toEqual({ whole: 1, streaming: 2 });
  });

  it("sends concurrent small uploads each intact", async () => {
    const contents = Array.from({ length: 48 }, (_, i) => randomBytes(1 + ((i * 997) % (8 * KiB))));
    const results = await Promise.all(
      contents.map((content, i) =>
        client.uploadStream([content], { kind: "lean-concurrent", name: `c-${i}`, labels: { i: String(i) } }, { expectedSize: content.length }),
      ),
    );
    for (const [i, { artifact }] of results.entries()) {
      expect(artifact!.labels).toEqual({ i: String(i) });
      expect(artifact!.blake3).toBe(blake3Hex(contents[i]!));
    }
    const loaded = await Promise.all(results.map(({ artifact }) => client.loadBytes(artifact!.id)));
    expect(loaded.every((bytes, i) => bytes.equals(contents[i]!))).toBe(true);
    expect(calls).toEqual({ whole: contents.length, streaming: 0 });
  });

  it("leaves a transport of the caller's own, resumable writers and session writers on the streaming call", async () => {
    const auth: Interceptor = (next) => (request) => {
      request.header.set("authorization", `Bearer ${t.tokens.alpha}`);
      return next(request);
    };
    const own = createArtifactClient({ baseUrl: "http://unused", token: "unused", transport: createGrpcTransport({ baseUrl: t.url, interceptors: [auth] }) });
    const content = randomBytes(2 * KiB);
    expect((await own.uploadStream([content], { kind: "lean-own" }, { expectedSize: content.length })).artifact!.blake3).toBe(blake3Hex(content));
    await own.close();
    expect(calls).toEqual({ whole: 0, streaming: 1 });

    const resumable = client.openWriter({ kind: "lean-own", name: "resumable" }, { resumable: true });
    await resumable.write(content);
    expect((await resumable.commit()).artifact!.blake3).toBe(blake3Hex(content));
    expect(calls.whole).toBe(0);
  });
});

describe("the lean whole Upload against a server that does not answer", () => {
  const server = http2.createServer();
  const seen: { headers: http2.IncomingHttpHeaders; body: Buffer; closed: Promise<number> }[] = [];
  let baseUrl: string;
  beforeAll(async () => {
    server.on("stream", (stream, headers) => {
      const chunks: Buffer[] = [];
      stream.on("error", () => {});
      stream.on("data", (chunk: Buffer) => chunks.push(chunk));
      const closed = new Promise<number>((resolve) => stream.on("close", () => resolve(stream.rstCode ?? 0)));
      stream.on("end", () => seen.push({ headers, body: Buffer.concat(chunks), closed }));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  const messages: UploadMessage[] = [
    { message: { case: "header", value: { spec: { kind: "silent" }, expectedSize: 5n } } },
    { message: { case: "chunk", value: Buffer.from("hello") } },
    { message: { case: "trailer", value: { labels: { a: "b" } } } },
  ];

  it("ends at its deadline with the streaming call's DEADLINE_EXCEEDED, having sent the whole request with the token and grpc-timeout", async () => {
    const connection = createArtifactConnection({ baseUrl, token: "adt_silent", retry: false });
    try {
      const started = Date.now();
      const lean = await failureOf(connection.uploadWhole!(messages, new AbortController().signal, 150));
      expect(Date.now() - started).toBeLessThan(5_000);
      const streamed = await failureOf(connection.rpc.upload(createAsyncIterable(messages), { timeoutMs: 150 }));
      expect({ code: lean.code, message: lean.rawMessage }).toEqual({ code: streamed.code, message: streamed.rawMessage });
      expect(lean.code).toBe(Code.DeadlineExceeded);
      expect(seen).toHaveLength(2);
      const [leanRequest, streamedRequest] = seen;
      expect(leanRequest!.headers.authorization).toBe("Bearer adt_silent");
      expect(leanRequest!.headers["grpc-timeout"]).toMatch(/^\d+m$/);
      // The same bytes as the streaming call sends: header, chunk and trailer frames.
      expect(leanRequest!.body.equals(streamedRequest!.body)).toBe(true);
    } finally {
      connection.close();
    }
  });

  it("is cancelled by its signal with CANCELED, resetting the stream as the streaming call does", async () => {
    const connection = createArtifactConnection({ baseUrl, token: "adt_silent", retry: false });
    const cancel = async (call: (signal: AbortSignal) => Promise<unknown>, reason: unknown) => {
      seen.length = 0;
      const controller = new AbortController();
      const running = call(controller.signal);
      for (const deadline = Date.now() + 5_000; seen.length === 0 && Date.now() < deadline; ) await new Promise((resolve) => setTimeout(resolve, 5));
      controller.abort(reason);
      const error = await failureOf(running);
      return { code: error.code, message: error.rawMessage, reset: await seen[0]!.closed };
    };
    try {
      for (const reason of [new Error("stop"), new ConnectError("stop", Code.Canceled)]) {
        const lean = await cancel((signal) => connection.uploadWhole!(messages, signal, undefined), reason);
        const streamed = await cancel((signal) => connection.rpc.upload(createAsyncIterable(messages), { signal }), reason);
        expect(lean).toEqual(streamed);
        expect(lean.code).toBe(Code.Canceled);
      }
    } finally {
      connection.close();
    }
  });
});
