import { createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import http2 from "node:http2";
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { blake3Hex } from "../src/blake3.ts";
import { ArtifactService } from "../src/gen/artifacts/v1/artifact_service_pb.js";
import { startTestApp, type TestApp } from "./support/test-app.ts";

/** One port, three protocols: Connect and gRPC-Web over HTTP/1.1 (as browsers speak them), gRPC over HTTP/2. */
describe("protocols on one port", () => {
  let t: TestApp;
  let blobId: string;
  let blob: Buffer;
  beforeAll(async () => {
    t = await startTestApp("pglite+fs");
    blob = randomBytes(200_000);
    const { artifact } = await t.client().upload(
      (async function* () {
        yield { message: { case: "header" as const, value: { spec: { kind: "blob" } } } };
        yield { message: { case: "chunk" as const, value: blob } };
      })(),
    );
    blobId = artifact!.id;
  });
  afterAll(async () => {
    await t?.close();
  });

  const post = (method: string, body: unknown, token = t.tokens.alpha) =>
    fetch(`${t.url}/artifacts.v1.ArtifactService/${method}`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
      body: JSON.stringify(body),
    });

  it("speaks the Connect protocol with JSON over HTTP/1.1", async () => {
    const saved = await post("SaveInline", { spec: { kind: "note", labels: { via: "curl" } }, text: "hello" });
    expect(saved.status).toBe(200);
    const { artifact } = (await saved.json()) as { artifact: { id: string; storage: string } };
    expect(artifact.storage).toBe("STORAGE_INLINE");
    const listed = (await (await post("ListArtifacts", { filter: { labels: { via: "curl" } } })).json()) as { artifacts: { id: string }[] };
    expect(listed.artifacts.map((a) => a.id)).toEqual([artifact.id]);
    const bad = await post("GetArtifact", { id: "not-an-id" });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ code: "invalid_argument", message: expect.stringMatching(/not an artifact id/) });
    const unauthenticated = await post("ListArtifacts", {}, "");
    expect(unauthenticated.status).toBe(401);
    await unauthenticated.text();
  });

  it("speaks gRPC-Web over HTTP/1.1: unary and server streaming", async () => {
    const transport = createGrpcWebTransport({
      baseUrl: t.url,
      interceptors: [
        (next) => (request) => {
          request.header.set("authorization", `Bearer ${t.tokens.alpha}`);
          return next(request);
        },
      ],
    });
    const client = createClient(ArtifactService, transport);
    const got = await client.getArtifact({ id: blobId });
    expect(got.artifact!.blake3).toBe(blake3Hex(blob));
    const parts: Uint8Array[] = [];
    for await (const message of client.download({ id: blobId })) if (message.message.case === "chunk") parts.push(message.message.value);
    expect(blake3Hex(Buffer.concat(parts))).toBe(blake3Hex(blob));
  });

  it("never gzips blob bytes, even for a client that accepts gzip", async () => {
    const session = http2.connect(t.url);
    try {
      const body = Buffer.from(JSON.stringify({ id: blobId }));
      const headers = await new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
        const stream = session.request({
          ":method": "POST",
          ":path": "/artifacts.v1.ArtifactService/Download",
          "content-type": "application/connect+json",
          "connect-accept-encoding": "gzip",
          "accept-encoding": "gzip",
          authorization: `Bearer ${t.tokens.alpha}`,
        });
        // Connect streaming request framing: flags byte, 4-byte length, message.
        const frame = Buffer.alloc(5);
        frame.writeUInt32BE(body.length, 1);
        stream.end(Buffer.concat([frame, body]));
        stream.on("response", resolve);
        stream.on("error", reject);
        stream.resume();
      });
      expect(headers[":status"]).toBe(200);
      expect(headers["connect-content-encoding"]).toBeUndefined();
      expect(headers["content-encoding"]).toBeUndefined();
    } finally {
      session.close();
    }
  });
});
