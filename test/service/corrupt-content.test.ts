import { Code, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import type { Client as MinioClient } from "minio";
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ArtifactService } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import { expectCode } from "../support/expect-code.ts";
import { minioClient } from "../support/minio-client.ts";
import { BACKENDS, startTestApp, type TestApp } from "../support/test-app.ts";

/**
 * The server's own integrity check on the way out, with clients that verify
 * nothing: the generated client over plain gRPC (the fast download route),
 * over Connect on HTTP/1.1 (connect-node's path), and a signed link read with
 * fetch. None of them hashes what it receives, so only the server can stop a
 * stored object changed behind its back (same length, different bytes) from
 * being delivered whole as OK.
 */
const MiB = 1024 * 1024;
const CHUNK_BYTES = 256 * 1024;

describe.each(BACKENDS)("corrupt stored content on %s", (backend) => {
  let t: TestApp;
  let minio: MinioClient | undefined;
  beforeAll(async () => {
    t = await startTestApp(backend, { ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0", ARTIFACTD_DOWNLOAD_CHUNK_BYTES: String(CHUNK_BYTES) });
    minio = backend === "postgres+minio" ? minioClient() : undefined;
  });
  afterAll(async () => {
    await t?.close();
  });

  /** Uploads `data`, then overwrites its stored object in the store itself with `data` with one byte flipped. */
  const storeThenCorrupt = async (kind: string, data: Buffer) => {
    const { artifact } = await t.client().upload(
      (async function* () {
        yield { message: { case: "header" as const, value: { spec: { kind } } } };
        yield { message: { case: "chunk" as const, value: data } };
      })(),
    );
    const blob = await t.app.metadata.findBlob("alpha", artifact!.blake3);
    const damaged = Buffer.from(data);
    damaged[damaged.length - 1]! ^= 0xff;
    if (minio) await minio.putObject(t.bucket!, blob!.storageKey, damaged, damaged.length);
    else writeFileSync(path.join(t.dataDir, "blobs", blob!.storageKey), damaged);
    return artifact!;
  };

  /** Reads a Download stream as a client that trusts it would: counts the content bytes, checks nothing. */
  const readWithoutVerifying = async (client: ReturnType<typeof t.client>, id: string) => {
    let received = 0;
    const outcome = await (async () => {
      for await (const message of client.download({ id })) if (message.message.case === "chunk") received += message.message.value.byteLength;
    })().then(
      () => undefined,
      (error: unknown) => error,
    );
    return { received, outcome: outcome === undefined ? Promise.resolve("ended OK") : Promise.reject(outcome) };
  };

  it("ends a plain-gRPC download with DATA_LOSS before the whole content, then refuses the next read at once", async () => {
    const data = randomBytes(3 * MiB);
    const artifact = await storeThenCorrupt("corrupt-grpc", data);
    const first = await readWithoutVerifying(t.client(), artifact.id);
    await expectCode(first.outcome, Code.DataLoss, /no longer matches its BLAKE3/);
    expect(first.received, "the client must never hold the whole corrupt content").toBeLessThan(data.length);
    const second = await readWithoutVerifying(t.client(), artifact.id);
    await expectCode(second.outcome, Code.DataLoss, /is corrupt/);
    expect(second.received).toBe(0);
  });

  it("ends a Connect (HTTP/1.1) download with DATA_LOSS before the whole content", async () => {
    const connect = createClient(
      ArtifactService,
      createConnectTransport({
        baseUrl: t.url,
        httpVersion: "1.1",
        interceptors: [(next) => (request) => (request.header.set("authorization", `Bearer ${t.tokens.alpha}`), next(request))],
      }),
    );
    const data = randomBytes(3 * MiB);
    const artifact = await storeThenCorrupt("corrupt-connect", data);
    const read = await readWithoutVerifying(connect, artifact.id);
    await expectCode(read.outcome, Code.DataLoss, /no longer matches its BLAKE3/);
    expect(read.received, "the client must never hold the whole corrupt content").toBeLessThan(data.length);
  });

  it("never completes a signed link's body of corrupt content: it starts as 200, then breaks off before the end", async () => {
    const data = randomBytes(3 * MiB);
    const artifact = await storeThenCorrupt("corrupt-link", data);
    const { url } = await t.client().createDownloadUrl({ id: artifact.id });
    const response = await fetch(url);
    // The server sends the head before it has read the content (it cannot know yet), so the content's own head is out ...
    expect(response.status).toBe(200);
    expect(response.headers.get("content-length")).toBe(String(data.length));
    expect(response.headers.get("etag")).toBe(`"${artifact.blake3}"`);
    expect(response.headers.get("content-disposition")).toMatch(/^attachment; filename=/);
    // ... and the body flows until the server's BLAKE3 check fails at the end, which cuts it short.
    let received = 0;
    const reader = response.body!.getReader();
    const ended = await (async () => {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return "completed";
        received += value.byteLength;
      }
    })().catch((error: unknown) => error);
    expect(ended, "the body broke off").toBeInstanceOf(Error);
    expect(received, "bytes of the body arrived before the check failed").toBeGreaterThan(0);
    expect(received, "the client must never hold the whole corrupt content").toBeLessThan(data.length);
    // The content is now known to be corrupt: the next request is cut before any head.
    await expect(fetch(url)).rejects.toThrow();
  });
});
