import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Storage } from "@artifactd/api/artifacts/v1/artifact_pb.js";
import type { UploadRequestSchema } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import { createArtifactClient } from "../../clients/node/src/index.ts";
import { blake3Hex } from "../../src/blake3.ts";
import { createApiToken } from "../../src/service/api-tokens.ts";
import { expectCode } from "../support/expect-code.ts";
import { captureStorageKeys } from "../support/nothing-stored.ts";
import { storedObjects } from "../support/stored-objects.ts";
import { BACKENDS, startTestApp, type TestApp } from "../support/test-app.ts";

/**
 * Uploads that declare a size within ARTIFACTD_UPLOAD_INLINE_MAX_BYTES are
 * kept in the artifact's row (storage INLINE), not in the blob store: every
 * way of reading them returns the same bytes, and they obey the same rules
 * as a blob upload (declared size and digest, quotas, cancellation). The
 * rest of the suite runs with the limit at 0 (test/support/test-app.ts), so
 * this file is where the database path is tested.
 */
type UploadInit = MessageInitShape<typeof UploadRequestSchema>;
const LIMIT = 16 * 1024;

async function* uploadOf(
  data: Uint8Array,
  header: { expectedSize?: bigint; expectedBlake3?: string; mimeType?: string } = {},
  pieces = 3,
): AsyncGenerator<UploadInit> {
  const { mimeType, ...declared } = header;
  yield { message: { case: "header", value: { spec: { kind: "small", name: "small.bin", ...(mimeType ? { mimeType } : {}) }, ...declared } } };
  const step = Math.ceil(data.length / pieces) || 1;
  for (let at = 0; at < data.length; at += step) yield { message: { case: "chunk", value: data.subarray(at, at + step) } };
}

describe.each(BACKENDS)("small uploads kept in the database on %s", (backend) => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp(backend, { ARTIFACTD_UPLOAD_INLINE_MAX_BYTES: String(LIMIT), ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0" });
  });
  afterAll(async () => {
    await t?.close();
  });

  const download = async (id: string, range: { offset?: bigint; length?: bigint } = {}) => {
    const parts: Uint8Array[] = [];
    for await (const r of t.client().download({ id, ...range })) if (r.message.case === "chunk") parts.push(r.message.value);
    return Buffer.concat(parts);
  };

  it("stores a declared small upload in its row: nothing in the blob store, and every read returns its bytes", async () => {
    const stored = storedObjects(t);
    const before = await stored.keys();
    using storage = captureStorageKeys(t);
    const data = randomBytes(4096);
    const { artifact } = await t.client().upload(uploadOf(data, { expectedSize: BigInt(data.length) }));
    expect(artifact).toMatchObject({ storage: Storage.INLINE, sizeBytes: 4096n, blake3: blake3Hex(data), mimeType: "application/octet-stream" });
    expect(artifact!.id).toMatch(/^art_/);
    expect(storage.keys).toEqual([]);
    expect(await stored.keysSince(before)).toEqual([]);
    expect(await stored.unfinishedUploads()).toEqual([]);

    expect(await download(artifact!.id)).toEqual(data);
    expect(await download(artifact!.id, { offset: 1000n, length: 96n })).toEqual(data.subarray(1000, 1096));
    const { artifact: got } = await t.client().getArtifact({ id: artifact!.id, includeContent: true });
    expect(got!.inlineContent?.content).toEqual({ case: "binary", value: new Uint8Array(data) });
    const { artifact: withoutContent } = await t.client().getArtifact({ id: artifact!.id });
    expect(withoutContent!.inlineContent).toBeUndefined();

    const { url } = await t.client().createDownloadUrl({ id: artifact!.id });
    const response = await fetch(url);
    expect(response.status).toBe(200);
    expect(Buffer.from(await response.arrayBuffer())).toEqual(data);
    const partial = await fetch(url, { headers: { Range: "bytes=10-19" } });
    expect(partial.status).toBe(206);
    expect(Buffer.from(await partial.arrayBuffer())).toEqual(data.subarray(10, 20));

    // The Node SDK verifies the digest of what it reads, as for a blob.
    const client = createArtifactClient({ baseUrl: t.url, token: t.tokens.alpha });
    try {
      const read = await client.download(artifact!.id);
      const chunks: Uint8Array[] = [];
      for await (const chunk of read.content) chunks.push(chunk);
      expect(Buffer.concat(chunks)).toEqual(data);
    } finally {
      await client.close();
    }
  });

  it("keeps the media type and the trailer's metadata, and stores an empty upload too", async () => {
    const data = Buffer.from("%PDF-1.7 small");
    const { artifact } = await t.client().upload(
      (async function* (): AsyncGenerator<UploadInit> {
        yield* uploadOf(data, { expectedSize: BigInt(data.length), mimeType: "application/pdf" });
        yield { message: { case: "trailer", value: { labels: { stage: "done" }, tags: ["small"], metrics: { pages: 1 } } } };
      })(),
    );
    expect(artifact).toMatchObject({ storage: Storage.INLINE, mimeType: "application/pdf", labels: { stage: "done" }, tags: ["small"], metrics: { pages: 1 } });
    expect(artifact!.id).toMatch(/^doc_/);
    expect(await download(artifact!.id)).toEqual(data);

    const { artifact: empty } = await t.client().upload(uploadOf(new Uint8Array(0), { expectedSize: 0n }));
    expect(empty).toMatchObject({ storage: Storage.INLINE, sizeBytes: 0n, blake3: blake3Hex(new Uint8Array(0)) });
    expect(await download(empty!.id)).toEqual(Buffer.alloc(0));
  });

  it("sends uploads over the limit, or of undeclared size, to the blob store", async () => {
    const over = randomBytes(LIMIT + 1);
    const { artifact: big } = await t.client().upload(uploadOf(over, { expectedSize: BigInt(over.length) }));
    expect(big!.storage).toBe(Storage.BLOB);
    const small = randomBytes(100);
    const { artifact: undeclared } = await t.client().upload(uploadOf(small));
    expect(undeclared!.storage).toBe(Storage.BLOB);
    expect(await download(big!.id)).toEqual(over);
    expect(await download(undeclared!.id)).toEqual(small);
  });

  it("refuses a stream that breaks its declared size or digest, recording nothing", async () => {
    const data = randomBytes(2000);
    const artifactsBefore = (await t.client().listArtifacts({ filter: { kind: "small" } })).artifacts.length;
    await expectCode(t.client().upload(uploadOf(data, { expectedSize: 1999n })), Code.InvalidArgument, /more than the declared expected_size of 1999/);
    await expectCode(
      t.client().upload(uploadOf(data, { expectedSize: 2001n })),
      Code.InvalidArgument,
      /received 2000 bytes but the header declared expected_size 2001/,
    );
    await expectCode(
      t.client().upload(uploadOf(data, { expectedSize: 2000n, expectedBlake3: blake3Hex(Buffer.from("other")) })),
      Code.InvalidArgument,
      /the content's BLAKE3 is [0-9a-f]{64} but the header declared/,
    );
    expect((await t.client().listArtifacts({ filter: { kind: "small" } })).artifacts.length).toBe(artifactsBefore);
  });

  it("records nothing for a client that cancels before the end", async () => {
    const artifactsBefore = (await t.client().listArtifacts({ filter: { kind: "small" } })).artifacts.length;
    const controller = new AbortController();
    let sentFirst!: () => void;
    const firstSent = new Promise<void>((resolve) => (sentFirst = resolve));
    const outcome = expectCode(
      t.client().upload(
        (async function* (): AsyncGenerator<UploadInit> {
          yield { message: { case: "header", value: { spec: { kind: "small" }, expectedSize: 1000n } } };
          yield { message: { case: "chunk", value: randomBytes(500) } };
          sentFirst();
          await new Promise((resolve) => controller.signal.addEventListener("abort", resolve, { once: true }));
        })(),
        { signal: controller.signal },
      ),
      Code.Canceled,
    );
    await firstSent;
    controller.abort();
    await outcome;
    await expect.poll(() => t.app.server.callsInFlight, { timeout: 5_000 }).toBe(0);
    expect((await t.client().listArtifacts({ filter: { kind: "small" } })).artifacts.length).toBe(artifactsBefore);
  });

  it("offers no direct-to-storage link for it: its content is in the database", async () => {
    const data = randomBytes(64);
    const { artifact } = await t.client().upload(uploadOf(data, { expectedSize: BigInt(data.length) }));
    await expectCode(t.client().createDownloadUrl({ id: artifact!.id, directToStorage: true }), Code.FailedPrecondition);
  });
});

describe.each(BACKENDS)("the stored-bytes quota counts small uploads kept in the database on %s", (backend) => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp(backend, { ARTIFACTD_UPLOAD_INLINE_MAX_BYTES: String(LIMIT), ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0" });
  });
  afterAll(async () => {
    await t?.close();
  });

  it("refuses the upload that would take the tenant over its quota, before it stores anything", async () => {
    await t.app.metadata.tenantQuotas.set("small-quota", { storedBytes: 10_000 });
    const { token } = await createApiToken(t.app.metadata, "small-quota", "quota", { scope: "read-write" });
    const first = randomBytes(6000);
    expect((await t.client(token).upload(uploadOf(first, { expectedSize: 6000n }))).artifact!.storage).toBe(Storage.INLINE);
    await expectCode(t.client(token).upload(uploadOf(randomBytes(6000), { expectedSize: 6000n })), Code.ResourceExhausted, /stored-bytes|quota/);
    expect((await t.client(token).listArtifacts({})).artifacts.map((a) => a.sizeBytes)).toEqual([6000n]);
  });
});
