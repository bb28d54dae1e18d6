import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { blake3Hex } from "../src/blake3.ts";
import type { UploadRequestSchema } from "../src/gen/artifacts/v1/artifact_service_pb.js";
import { parseRange } from "../src/transport/download-url-route.ts";
import { BACKENDS, startTestApp, type TestApp } from "./support/test-app.ts";
import { expectCode } from "./support/expect-code.ts";

type UploadInit = MessageInitShape<typeof UploadRequestSchema>;


describe("Range header parsing", () => {
  it("handles the single-range forms", () => {
    expect(parseRange("bytes=0-9", 100)).toEqual({ offset: 0, length: 10 });
    expect(parseRange("bytes=90-", 100)).toEqual({ offset: 90, length: 10 });
    expect(parseRange("bytes=-5", 100)).toEqual({ offset: 95, length: 5 });
    expect(parseRange("bytes=-500", 100)).toEqual({ offset: 0, length: 100 });
    expect(parseRange("bytes=50-5000", 100)).toEqual({ offset: 50, length: 50 });
    expect(parseRange("bytes=100-", 100)).toBe("unsatisfiable");
    expect(parseRange("bytes=0-0", 0)).toBe("unsatisfiable");
    expect(parseRange("bytes=5-1", 100)).toBeUndefined();
    expect(parseRange("bytes=0-1,5-6", 100)).toBeUndefined();
    expect(parseRange("items=0-1", 100)).toBeUndefined();
  });
});

describe.each(BACKENDS)("signed download URLs on %s", (backend) => {
  let t: TestApp;
  let data: Buffer;
  let id: string;
  beforeAll(async () => {
    t = await startTestApp(backend);
    data = randomBytes(300_000);
    async function* messages(): AsyncIterable<UploadInit> {
      yield { message: { case: "header", value: { spec: { kind: "report", name: "résumé <script>.html", mimeType: "text/html" } } } };
      yield { message: { case: "chunk", value: data } };
    }
    id = (await t.client().upload(messages())).artifact!.id;
  });
  afterAll(async () => {
    await t?.close();
  });

  it("downloads the content as an attachment, valid 15 minutes by default", async () => {
    const before = Date.now();
    const { url, expiresAt } = await t.client().createDownloadUrl({ id });
    const expiry = Number(expiresAt!.seconds) * 1000;
    expect(expiry).toBeGreaterThanOrEqual(before + 899_000);
    expect(expiry).toBeLessThanOrEqual(Date.now() + 901_000);
    expect(url.startsWith(t.url)).toBe(true);
    const response = await fetch(url);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-length")).toBe(String(data.length));
    expect(response.headers.get("etag")).toBe(`"${blake3Hex(data)}"`);
    expect(response.headers.get("content-disposition")).toMatch(/^attachment; filename="r_sum_ _script_.html"; filename\*=UTF-8''r%C3%A9sum%C3%A9%20%3Cscript%3E\.html$/);
    expect(response.headers.get("x-content-type-options")).toBe("nosniff");
    expect(response.headers.get("content-security-policy")).toContain("sandbox");
    expect(Buffer.from(await response.arrayBuffer()).equals(data)).toBe(true);
    const head = await fetch(url, { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(head.headers.get("content-length")).toBe(String(data.length));
  });

  it("serves byte ranges", async () => {
    const { url } = await t.client().createDownloadUrl({ id, ttlSeconds: 60 });
    const partial = await fetch(url, { headers: { Range: "bytes=1000-1999" } });
    expect(partial.status).toBe(206);
    expect(partial.headers.get("content-range")).toBe(`bytes 1000-1999/${data.length}`);
    expect(Buffer.from(await partial.arrayBuffer()).equals(data.subarray(1000, 2000))).toBe(true);
    const suffix = await fetch(url, { headers: { Range: "bytes=-10" } });
    expect(Buffer.from(await suffix.arrayBuffer()).equals(data.subarray(-10))).toBe(true);
    const beyond = await fetch(url, { headers: { Range: `bytes=${data.length}-` } });
    expect(beyond.status).toBe(416);
    expect(beyond.headers.get("content-range")).toBe(`bytes */${data.length}`);
    await beyond.arrayBuffer();
    const cached = await fetch(url, { headers: { "If-None-Match": `"${blake3Hex(data)}"` } });
    expect(cached.status).toBe(304);
  });

  it("refuses tampered, expired and deleted links with a bare 403", async () => {
    const { url } = await t.client().createDownloadUrl({ id, ttlSeconds: 1 });
    const parsed = new URL(url);
    const tamperedSig = new URL(url);
    tamperedSig.searchParams.set("sig", Buffer.alloc(32, 7).toString("base64url"));
    const laterExpiry = new URL(url);
    laterExpiry.searchParams.set("expires", String(Number(parsed.searchParams.get("expires")) + 3600));
    const otherTenant = new URL(url.replace("/alpha/", "/beta/"));
    for (const bad of [tamperedSig, laterExpiry, otherTenant]) {
      const response = await fetch(bad);
      expect(response.status, bad.toString()).toBe(403);
      expect(await response.text()).toBe("forbidden\n");
    }
    await new Promise((r) => setTimeout(r, 2100));
    const expired = await fetch(url);
    expect(expired.status).toBe(403);
    await expired.text();

    const { artifact } = await t.client().saveInline({ spec: { kind: "note" }, content: { case: "text", value: "soon gone" } });
    const { url: doomed } = await t.client().createDownloadUrl({ id: artifact!.id });
    expect(await (await fetch(doomed)).text()).toBe("soon gone");
    await t.client().deleteArtifact({ id: artifact!.id });
    const gone = await fetch(doomed);
    expect(gone.status).toBe(403);
    await gone.text();
    await expectCode(t.client().createDownloadUrl({ id: artifact!.id }), Code.NotFound, /deleted/);
  });

  it("validates the request", async () => {
    await expectCode(t.client().createDownloadUrl({ id, ttlSeconds: 8 * 86_400 }), Code.InvalidArgument, /ttl_seconds/);
    await expectCode(t.client().createDownloadUrl({ id: "art_00000000000000000000000000" }), Code.NotFound);
    await expectCode(t.client(t.tokens.beta).createDownloadUrl({ id }), Code.NotFound);
    const notFound = await fetch(`${t.url}/nothing-here`);
    expect(notFound.status).toBe(404);
    await notFound.text();
  });
});
