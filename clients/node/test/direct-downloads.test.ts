import { Code, ConnectError } from "@connectrpc/connect";
import { randomBytes } from "node:crypto";
import net from "node:net";
import { afterAll, beforeAll, expect, inject, it } from "vitest";
import { blake3Hex } from "../../../src/blake3.ts";
import { startCuttingProxy, type CuttingProxy } from "../../../test/support/cutting-proxy.ts";
import { minioClient } from "../../../test/support/minio-client.ts";
import { startTestApp, type TestApp } from "../../../test/support/test-app.ts";
import { describeOn } from "../../../test/support/test-backends.ts";
import { ArtifactIntegrityError, createArtifactClient, type ArtifactClient, type DirectDownloadMode } from "../src/index.ts";

const MiB = 1024 * 1024;

async function collect(content: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of content) chunks.push(chunk);
  return Buffer.concat(chunks);
}

/** A loopback port nothing listens on (taken, then freed). */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describeOn("postgres+minio")("Node client: direct-to-storage downloads", () => {
  let t: TestApp;
  /** Between clients and the store: counts what comes from the store, and breaks links mid-body. */
  let storeProxy: CuttingProxy;
  let data: Buffer;
  let id: string;
  const clients: ArtifactClient[] = [];
  const clientOf = (app: TestApp, directDownloads?: DirectDownloadMode) => {
    const client = createArtifactClient({
      baseUrl: app.url,
      token: app.tokens.alpha,
      retry: { initialDelayMs: 10 },
      ...(directDownloads !== undefined ? { directDownloads } : {}),
    });
    clients.push(client);
    return client;
  };

  beforeAll(async () => {
    storeProxy = await startCuttingProxy(inject("minio").endpoint);
    t = await startTestApp("postgres+minio", { ARTIFACTD_DIRECT_DOWNLOAD_ENDPOINT: storeProxy.url, ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0" });
    data = randomBytes(6 * MiB + 77);
    id = (await clientOf(t).uploadStream([data], { kind: "model", name: "direct.bin" })).artifact!.id;
  });
  afterAll(async () => {
    for (const client of clients) await client.close();
    await t?.close();
    await storeProxy?.close();
  });

  it("downloads from the store when the server offers it, whole (verified) and ranged", async () => {
    const client = clientOf(t);
    storeProxy.resetCounts();
    const progress: number[] = [];
    const { artifact, content } = await client.download(id, { onProgress: (p) => progress.push(p.bytes) });
    expect(artifact.id).toBe(id);
    const body = await collect(content);
    expect(blake3Hex(body)).toBe(artifact.blake3);
    expect(body.equals(data)).toBe(true);
    expect(progress.at(-1)).toBe(data.length);
    expect(storeProxy.bytes.down).toBeGreaterThanOrEqual(data.length);

    storeProxy.resetCounts();
    const ranged = await client.download(id, { offset: 1_234_567, length: 100_000 });
    expect((await collect(ranged.content)).equals(data.subarray(1_234_567, 1_334_567))).toBe(true);
    expect(storeProxy.bytes.down).toBeGreaterThanOrEqual(100_000);
    expect(storeProxy.bytes.down).toBeLessThan(200_000);
  });

  it("never goes to the store with directDownloads: false", async () => {
    storeProxy.resetCounts();
    const { content } = await clientOf(t, false).download(id);
    expect((await collect(content)).equals(data)).toBe(true);
    expect(storeProxy.bytes.down).toBe(0);
  });

  it("resumes a link that breaks mid-body from the next byte, with a new link", async () => {
    const connectionsBefore = storeProxy.connections;
    storeProxy.resetCounts();
    const cut = storeProxy.cutAfter("down", 2 * MiB);
    const { content } = await clientOf(t, "always").download(id);
    const body = await collect(content);
    await cut;
    expect(body.equals(data)).toBe(true);
    expect(storeProxy.connections - connectionsBefore).toBeGreaterThanOrEqual(2);
    // Resumed, not restarted: little more than the content crossed.
    expect(storeProxy.bytes.down).toBeLessThan(data.length + 3 * MiB);
  });

  it("ends a direct download past its timeoutMs with DEADLINE_EXCEEDED", async () => {
    // The store never hears the GET: only the download's deadline can end it.
    storeProxy.pauseUp();
    try {
      const started = Date.now();
      const error = await clientOf(t, "always")
        .download(id, { timeoutMs: 1_500 })
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      expect(ConnectError.from(error).code).toBe(Code.DeadlineExceeded);
      expect(Date.now() - started).toBeLessThan(8_000);
    } finally {
      storeProxy.resumeUp();
    }
  });

  it("checks the store's bytes against the digest", async () => {
    const damaged = randomBytes(400_000);
    const damagedId = (await clientOf(t).uploadStream([damaged], { kind: "model", name: "damaged.bin" })).artifact!;
    const blob = await t.app.metadata.findBlob("alpha", damagedId.blake3);
    const flipped = Buffer.from(damaged);
    flipped[200_000]! ^= 1;
    await minioClient().putObject(t.bucket!, blob!.storageKey, flipped);
    const { content } = await clientOf(t, "always").download(damagedId.id);
    await expect(collect(content)).rejects.toBeInstanceOf(ArtifactIntegrityError);
  });

  it("falls back to the service on a server that offers no direct links", async () => {
    const plain = await startTestApp("postgres+minio", {
      DATABASE_URL: t.databaseUrl!,
      ARTIFACTD_S3_BUCKET: t.bucket!,
      ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0",
    });
    try {
      storeProxy.resetCounts();
      const client = clientOf({ ...plain, tokens: t.tokens });
      for (let i = 0; i < 2; i++) expect((await collect((await client.download(id)).content)).equals(data)).toBe(true);
      expect(storeProxy.bytes.down).toBe(0);
      const forced = clientOf({ ...plain, tokens: t.tokens }, "always");
      await expect(forced.download(id)).rejects.toMatchObject({ code: Code.FailedPrecondition });
    } finally {
      await plain.closeApp();
    }
  });

  it("falls back to the service when the store is out of the client's reach", async () => {
    const unreachable = await startTestApp("postgres+minio", {
      DATABASE_URL: t.databaseUrl!,
      ARTIFACTD_S3_BUCKET: t.bucket!,
      ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0",
      ARTIFACTD_DIRECT_DOWNLOAD_ENDPOINT: `http://127.0.0.1:${await closedPort()}`,
    });
    try {
      const client = clientOf({ ...unreachable, tokens: t.tokens });
      const { artifact, content } = await client.download(id);
      expect(artifact.id).toBe(id);
      expect((await collect(content)).equals(data)).toBe(true);
      const forced = clientOf({ ...unreachable, tokens: t.tokens }, "always");
      const error = await forced.download(id).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(ConnectError.from(error).code).toBe(Code.Unavailable);
    } finally {
      await unreachable.closeApp();
    }
  });

  it("falls back to the service for content stored inline", async () => {
    storeProxy.resetCounts();
    const note = await clientOf(t).saveText("kept in the database", { kind: "note", name: "inline" });
    const { content } = await clientOf(t).download(note.id);
    expect((await collect(content)).toString()).toBe("kept in the database");
    expect(storeProxy.bytes.down).toBe(0);
  });
});
