import { Code } from "@connectrpc/connect";
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, expect, it } from "vitest";
import { inject } from "vitest";
import { blake3Hex } from "../../src/blake3.ts";
import { createApiToken } from "../../src/service/api-tokens.ts";
import { startCuttingProxy, type CuttingProxy } from "../support/cutting-proxy.ts";
import { expectCode } from "../support/expect-code.ts";
import { startTestApp, type TestApp } from "../support/test-app.ts";
import { describeOn } from "../support/test-backends.ts";

const MiB = 1024 * 1024;

/** The store's answer to a direct link, fetched as a client would (or with other headers). */
async function fetchLink(url: string, headers: Record<string, string>): Promise<{ status: number; body: Buffer }> {
  const response = await fetch(url, { headers });
  return { status: response.status, body: Buffer.from(await response.arrayBuffer()) };
}

describeOn("postgres+minio")("direct-to-storage download links on postgres+minio", () => {
  let t: TestApp;
  let proxy: CuttingProxy;
  let data: Buffer;
  let id: string;
  let inlineId: string;
  beforeAll(async () => {
    // Clients reach the store through a relay of their own: a different address from the service's, as in production.
    proxy = await startCuttingProxy(inject("minio").endpoint);
    t = await startTestApp("postgres+minio", { ARTIFACTD_DIRECT_DOWNLOAD_ENDPOINT: proxy.url });
    data = randomBytes(3 * MiB + 123);
    id = (await t.client().upload(upload({ kind: "model", name: "direct.bin" }, data))).artifact!.id;
    inlineId = (await t.client().saveInline({ spec: { kind: "note", name: "inline" }, content: { case: "text", value: "in the database" } })).artifact!.id;
  });
  afterAll(async () => {
    await t?.close();
    await proxy?.close();
  });

  it("answers a presigned GET of the whole content at the client's address, with the range signed in and the digest", async () => {
    const before = Date.now();
    const link = await t.client().createDownloadUrl({ id, directToStorage: true });
    expect(link.directToStorage).toBe(true);
    expect(new URL(link.url).origin).toBe(proxy.url);
    expect(new URL(link.url).searchParams.get("X-Amz-SignedHeaders")).toBe("host;range");
    expect(link.headers).toEqual({ range: `bytes=0-${data.length - 1}` });
    expect(link.blake3).toBe(blake3Hex(data));
    expect([link.sizeBytes, link.offset, link.length]).toEqual([BigInt(data.length), 0n, BigInt(data.length)]);
    expect(link.artifact?.id).toBe(id);
    // 60 s by default, counted from the signing second.
    const expiresAt = Number(link.expiresAt!.seconds) * 1000;
    expect(expiresAt).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000 + 60_000);
    expect(expiresAt).toBeLessThanOrEqual(Date.now() + 60_000);
    proxy.resetCounts();
    const { status, body } = await fetchLink(link.url, link.headers);
    expect(status).toBe(206);
    expect(blake3Hex(body)).toBe(link.blake3);
    expect(body.equals(data)).toBe(true);
    // From the store, through the clients' address.
    expect(proxy.bytes.down).toBeGreaterThanOrEqual(data.length);
  });

  it("reads exactly the range asked for, cut at the end", async () => {
    const link = await t.client().createDownloadUrl({ id, directToStorage: true, offset: 1_000_000n, length: 5_000n });
    expect([link.offset, link.length, link.sizeBytes]).toEqual([1_000_000n, 5_000n, BigInt(data.length)]);
    const { status, body } = await fetchLink(link.url, link.headers);
    expect(status).toBe(206);
    expect(body.equals(data.subarray(1_000_000, 1_005_000))).toBe(true);

    const tail = await t.client().createDownloadUrl({ id, directToStorage: true, offset: BigInt(data.length - 10), length: 1_000n });
    expect(tail.length).toBe(10n);
    expect((await fetchLink(tail.url, tail.headers)).body.equals(data.subarray(data.length - 10))).toBe(true);

    // Nothing to read: no link to the store at all.
    const empty = await t.client().createDownloadUrl({ id, directToStorage: true, offset: BigInt(data.length) });
    expect([empty.url, empty.length, empty.headers]).toEqual(["", 0n, {}]);
  });

  it("is refused by the store with any range but the signed one, or none", async () => {
    const link = await t.client().createDownloadUrl({ id, directToStorage: true, offset: 0n, length: 10n });
    expect((await fetchLink(link.url, link.headers)).status).toBe(206);
    for (const headers of [{ range: `bytes=0-${data.length - 1}` }, { range: "bytes=0-10" }, { range: "bytes=10-19" }]) {
      expect({ headers, status: (await fetchLink(link.url, headers)).status }).toEqual({ headers, status: 403 });
    }
    // Without the header MinIO answers 400 (a signed header is missing) where S3 answers 403: refused either way.
    const bare = await fetchLink(link.url, {});
    expect([400, 403]).toContain(bare.status);
    expect(bare.body.includes(data.subarray(0, 10))).toBe(false);
    // The signature covers the query too: a longer lifetime or another object breaks it.
    expect((await fetchLink(link.url.replace("X-Amz-Expires=60", "X-Amz-Expires=600"), link.headers)).status).toBe(403);
  });

  it("lives at most 60 s, and no longer than asked", async () => {
    const capped = await t.client().createDownloadUrl({ id, directToStorage: true, ttlSeconds: 3_600 });
    expect(new URL(capped.url).searchParams.get("X-Amz-Expires")).toBe("60");
    expect(Number(capped.expiresAt!.seconds) * 1000).toBeLessThanOrEqual(Date.now() + 60_000);
    await expectCode(t.client().createDownloadUrl({ id, directToStorage: true, ttlSeconds: -1 }), Code.InvalidArgument, /ttl_seconds -1 is not valid/);

    const short = await t.client().createDownloadUrl({ id, directToStorage: true, ttlSeconds: 1, length: 10n });
    expect(new URL(short.url).searchParams.get("X-Amz-Expires")).toBe("1");
    // Polled: the store refuses it once its second is over (well within the deadline).
    const deadline = Date.now() + 10_000;
    let status = 0;
    while (Date.now() < deadline && (status = (await fetchLink(short.url, short.headers)).status) !== 403) await new Promise((r) => setTimeout(r, 100));
    expect(status).toBe(403);
  });

  it("checks deletion when the link is made: a deleted artifact gets none, a link already handed out lives on to its expiry", async () => {
    const doomed = randomBytes(300_000);
    const doomedId = (await t.client().upload(upload({ kind: "model", name: "doomed.bin" }, doomed))).artifact!.id;
    const earlier = await t.client().createDownloadUrl({ id: doomedId, directToStorage: true });
    await t.client().deleteArtifact({ id: doomedId });
    await expectCode(t.client().createDownloadUrl({ id: doomedId, directToStorage: true }), Code.NotFound, /does not exist any more \(it was deleted\)/);
    // The documented trade-off: the store knows nothing of the soft delete.
    const { status, body } = await fetchLink(earlier.url, earlier.headers);
    expect(status).toBe(206);
    expect(body.equals(doomed)).toBe(true);
  });

  it("answers another tenant NOT_FOUND, and any token of the tenant its link", async () => {
    await expectCode(t.client(t.tokens.beta).createDownloadUrl({ id, directToStorage: true }), Code.NotFound, /does not exist/);
    const reader = (await createApiToken(t.app.metadata, "alpha", "direct-reader", { scope: "read-only" })).token;
    const link = await t.client(reader).createDownloadUrl({ id, directToStorage: true, length: 100n });
    expect((await fetchLink(link.url, link.headers)).body.equals(data.subarray(0, 100))).toBe(true);
  });

  it("refuses bad ranges as Download does, and offers no direct link to inline content", async () => {
    await expectCode(t.client().createDownloadUrl({ id, directToStorage: true, offset: BigInt(data.length + 1) }), Code.OutOfRange, /past the end/);
    await expectCode(t.client().createDownloadUrl({ id, directToStorage: true, offset: -1n }), Code.InvalidArgument, /offset -1 is not valid/);
    await expectCode(t.client().createDownloadUrl({ id, directToStorage: true, length: -5n }), Code.InvalidArgument, /length -5 is not valid/);
    await expectCode(t.client().createDownloadUrl({ id, offset: 5n }), Code.InvalidArgument, /offset and length are for direct_to_storage links/);
    const inline = await expectCode(t.client().createDownloadUrl({ id: inlineId, directToStorage: true }), Code.FailedPrecondition, /stored inline/);
    expect(inline.metadata.get("direct-download-unavailable")).toBe("inline");
  });

  it("offers none on a replica without ARTIFACTD_DIRECT_DOWNLOAD_ENDPOINT", async () => {
    const plain = await startTestApp("postgres+minio", {
      DATABASE_URL: t.databaseUrl!,
      ARTIFACTD_S3_BUCKET: t.bucket!,
      ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0",
    });
    try {
      const refusal = await expectCode(
        plain.client(t.tokens.alpha).createDownloadUrl({ id, directToStorage: true }),
        Code.FailedPrecondition,
        /does not offer direct-to-storage downloads \(ARTIFACTD_DIRECT_DOWNLOAD_ENDPOINT is not set\)/,
      );
      expect(refusal.metadata.get("direct-download-unavailable")).toBe("server");
      // Tenancy first: another tenant learns nothing of what the server offers.
      await expectCode(plain.client(t.tokens.beta).createDownloadUrl({ id, directToStorage: true }), Code.NotFound, /does not exist/);
    } finally {
      await plain.closeApp();
    }
  });
});

describeOn("pglite+fs")("direct-to-storage download links on pglite+fs", () => {
  let t: TestApp;
  afterAll(async () => {
    await t?.close();
  });

  it("are not offered by the folder store", async () => {
    t = await startTestApp("pglite+fs");
    const id = (await t.client().upload(upload({ kind: "model", name: "local.bin" }, randomBytes(100_000)))).artifact!.id;
    const refusal = await expectCode(t.client().createDownloadUrl({ id, directToStorage: true }), Code.FailedPrecondition, /does not offer direct-to-storage/);
    expect(refusal.metadata.get("direct-download-unavailable")).toBe("server");
  });
});

async function* upload(spec: { kind: string; name: string }, content: Uint8Array) {
  yield { message: { case: "header" as const, value: { spec } } };
  yield { message: { case: "chunk" as const, value: content } };
}
