import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createRouterTransport } from "@connectrpc/connect";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { blake3Hex } from "../../../src/blake3.ts";
import { ArtifactSchema } from "@artifactd/api/artifacts/v1/artifact_pb.js";
import { ArtifactService, type UploadRequest } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import { ArtifactIntegrityError, createArtifactClient } from "../src/index.ts";

/**
 * Client behaviour that a real server cannot provoke on demand, against an
 * in-memory service: a server that stops reading (backpressure), and one
 * that sends content not matching the digest it announced.
 */
const KiB = 1024;
const tick = (ms = 20) => new Promise((resolve) => setTimeout(resolve, ms));

/** An Upload handler that reads only when told to, and reports what it read. */
function slowUploadServer() {
  const received: UploadRequest[] = [];
  let allowed = 1; // the header
  let wake: (() => void) | undefined;
  const transport = createRouterTransport((router) =>
    router.service(ArtifactService, {
      async upload(requests) {
        const iterator = requests[Symbol.asyncIterator]();
        for (;;) {
          while (received.length >= allowed) await new Promise<void>((resolve) => (wake = resolve));
          const next = await iterator.next();
          if (next.done) break;
          received.push(next.value);
        }
        const bytes = Buffer.concat(received.flatMap((r) => (r.message.case === "chunk" ? [r.message.value] : [])));
        const trailer = received.find((r) => r.message.case === "trailer")?.message.value;
        return {
          artifact: { id: "art_test", sizeBytes: BigInt(bytes.length), blake3: blake3Hex(bytes), labels: trailer && "labels" in trailer ? trailer.labels : {} },
        };
      },
    }),
  );
  return {
    transport,
    received,
    allow(n: number) {
      allowed += n;
      wake?.();
    },
  };
}

/** A Download handler that announces `announced` but sends `sent`. */
function lyingDownloadServer(announced: Buffer, sent: Buffer) {
  return createRouterTransport((router) =>
    router.service(ArtifactService, {
      async *download() {
        yield {
          message: { case: "artifact", value: create(ArtifactSchema, { id: "art_lie", sizeBytes: BigInt(announced.length), blake3: blake3Hex(announced) }) },
        };
        for (let offset = 0; offset < sent.length; offset += 64 * KiB) yield { message: { case: "chunk", value: sent.subarray(offset, offset + 64 * KiB) } };
      },
    }),
  );
}

describe("ArtifactWriter against an in-memory service", () => {
  it("holds the writer back while the server does not read (one message in flight, nothing buffered)", async () => {
    const server = slowUploadServer();
    const client = createArtifactClient({ baseUrl: "http://in-memory", token: "t", transport: server.transport });
    const writer = client.openWriter({ kind: "slow" });
    let resolvedWrites = 0;
    const writing = (async () => {
      for (let i = 0; i < 20; i++) {
        await writer.write(Buffer.alloc(64 * KiB, i));
        resolvedWrites++;
      }
    })();
    await tick(100);
    // The server has read only the header: at most a message or two can be in the pipeline.
    expect(server.received).toHaveLength(1);
    expect(resolvedWrites).toBeLessThanOrEqual(2);
    server.allow(5);
    for (let i = 0; i < 100 && server.received.length < 6; i++) await tick(10);
    await tick(50);
    expect(server.received).toHaveLength(6);
    expect(resolvedWrites).toBeGreaterThanOrEqual(4);
    expect(resolvedWrites).toBeLessThanOrEqual(7);
    server.allow(1_000);
    await writing;
    writer.addLabels({ late: "yes" });
    const { artifact } = await writer.commit();
    expect(resolvedWrites).toBe(20);
    expect(artifact?.sizeBytes).toBe(BigInt(20 * 64 * KiB));
    expect(artifact?.labels).toEqual({ late: "yes" });
  });

  it("keeps the order of writes that were not awaited one by one", async () => {
    const server = slowUploadServer();
    server.allow(1_000);
    const client = createArtifactClient({ baseUrl: "http://in-memory", token: "t", transport: server.transport });
    const writer = client.openWriter({ kind: "unawaited" });
    const parts = [randomBytes(300 * KiB), randomBytes(10), randomBytes(600 * KiB), randomBytes(1)];
    await Promise.all(parts.map((part) => writer.write(part)));
    const { artifact } = await writer.commit();
    expect(artifact?.blake3).toBe(blake3Hex(Buffer.concat(parts)));
    // Large writes go out as messages of at most 256 KiB.
    const chunkSizes = server.received.flatMap((r) => (r.message.case === "chunk" ? [r.message.value.byteLength] : []));
    expect(Math.max(...chunkSizes)).toBe(256 * KiB);
  });

  it("sends small pieces of a stream as messages of 256 KiB, and reused buffers intact", async () => {
    const server = slowUploadServer();
    server.allow(1_000);
    const client = createArtifactClient({ baseUrl: "http://in-memory", token: "t", transport: server.transport });
    const expected: Buffer[] = [];
    // A producer that refills one buffer: each piece is only valid until the next is asked for.
    async function* pieces() {
      const buffer = Buffer.alloc(10 * KiB);
      for (let i = 0; i < 60; i++) {
        buffer.fill(i);
        expected.push(Buffer.from(buffer));
        yield buffer;
      }
    }
    const { artifact } = await client.uploadStream(pieces(), { kind: "pieces" });
    const chunkSizes = server.received.flatMap((r) => (r.message.case === "chunk" ? [r.message.value.byteLength] : []));
    expect(chunkSizes).toEqual([256 * KiB, 256 * KiB, 600 * KiB - 512 * KiB]);
    expect(artifact?.blake3).toBe(blake3Hex(Buffer.concat(expected)));
  });

  it("uploadFile declares the file's size in the header", async () => {
    const server = slowUploadServer();
    server.allow(1_000);
    const client = createArtifactClient({ baseUrl: "http://in-memory", token: "t", transport: server.transport });
    const dir = mkdtempSync(path.join(os.tmpdir(), "artifactd-client-file-"));
    try {
      const file = path.join(dir, "a.bin");
      const data = randomBytes(1_300 * KiB + 7);
      writeFileSync(file, data);
      const { artifact } = await client.uploadFile(file, { kind: "file", name: "a.bin" });
      const header = server.received[0]?.message;
      expect(header?.case).toBe("header");
      expect(header?.case === "header" ? header.value.expectedSize : undefined).toBe(BigInt(data.length));
      expect(header?.case === "header" ? header.value.spec?.name : undefined).toBe("a.bin");
      expect(artifact?.blake3).toBe(blake3Hex(data));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("surfaces the server's refusal from write and leaves the writer aborted", async () => {
    const transport = createRouterTransport((router) =>
      router.service(ArtifactService, {
        async upload() {
          throw new ConnectError("spec.kind is required", Code.InvalidArgument);
        },
      }),
    );
    const client = createArtifactClient({ baseUrl: "http://in-memory", token: "t", transport });
    const writer = client.openWriter({ kind: "" });
    const error = await (async () => {
      for (let i = 0; i < 10; i++) await writer.write(Buffer.alloc(64 * KiB));
      return writer.commit();
    })().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConnectError);
    expect((error as ConnectError).code).toBe(Code.InvalidArgument);
  });

  it("commit is idempotent, and a later commit gives the same result", async () => {
    const server = slowUploadServer();
    server.allow(1_000);
    const client = createArtifactClient({ baseUrl: "http://in-memory", token: "t", transport: server.transport });
    const response = await client.withWriter({ kind: "twice" }, async (writer) => {
      await writer.write("abc");
      await writer.commit();
    });
    expect(response.artifact?.sizeBytes).toBe(3n);
    expect(server.received.filter((r) => r.message.case === "trailer")).toHaveLength(1);
  });
});

describe("verified downloads against a server that sends the wrong bytes", () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "artifactd-client-lies-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const good = randomBytes(300 * KiB);
  const cases = [
    { name: "different bytes of the same length", sent: randomBytes(good.length), message: /BLAKE3/ },
    { name: "too few bytes", sent: good.subarray(0, good.length - 1), message: /received 307199 bytes, expected 307200/ },
    { name: "too many bytes", sent: Buffer.concat([good, Buffer.from("x")]), message: /received 307201 bytes/ },
  ];

  it.each(cases)("the content iterator throws ArtifactIntegrityError for $name", async ({ sent, message }) => {
    const client = createArtifactClient({ baseUrl: "http://in-memory", token: "t", transport: lyingDownloadServer(good, sent) });
    const { content } = await client.download("art_lie");
    let received = 0;
    const error = await (async () => {
      for await (const chunk of content) received += chunk.byteLength;
    })().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ArtifactIntegrityError);
    expect(String(error)).toMatch(message);
    expect(received).toBe(sent.length);
  });

  it.each(cases)("downloadToFile and loadBytes reject $name and leave no file", async ({ sent }) => {
    const client = createArtifactClient({ baseUrl: "http://in-memory", token: "t", transport: lyingDownloadServer(good, sent) });
    const target = path.join(dir, "lie.bin");
    await expect(client.downloadToFile("art_lie", target)).rejects.toBeInstanceOf(ArtifactIntegrityError);
    await expect(client.loadBytes(`art_${"0".repeat(26)}`)).rejects.toBeInstanceOf(ArtifactIntegrityError);
    expect(existsSync(target)).toBe(false);
    expect(readdirSync(dir)).toEqual([]);
  });

  it("a ranged download is not checked against the whole-content digest", async () => {
    const client = createArtifactClient({ baseUrl: "http://in-memory", token: "t", transport: lyingDownloadServer(good, good.subarray(0, 10)) });
    const { content } = await client.download("art_lie", { offset: 0, length: 10 });
    const parts: Uint8Array[] = [];
    for await (const chunk of content) parts.push(chunk);
    expect(Buffer.concat(parts).equals(good.subarray(0, 10))).toBe(true);
  });

  it("the same content passes", async () => {
    const client = createArtifactClient({ baseUrl: "http://in-memory", token: "t", transport: lyingDownloadServer(good, good) });
    const target = path.join(dir, "truth.bin");
    const artifact = await client.downloadToFile("art_lie", target);
    expect(artifact.id).toBe("art_lie");
    expect(existsSync(target)).toBe(true);
    rmSync(target);
  });
});
