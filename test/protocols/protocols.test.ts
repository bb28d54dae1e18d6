import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { randomBytes } from "node:crypto";
import http from "node:http";
import http2 from "node:http2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { blake3Hex } from "../../src/blake3.ts";
import { ArtifactService, DownloadRequestSchema, DownloadResponseSchema } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import { startTestApp, type TestApp } from "../support/test-app.ts";
import { describeOn } from "../support/test-backends.ts";

/** One port, three protocols: Connect and gRPC-Web over HTTP/1.1 (as browsers speak them), gRPC over HTTP/2. */

/** An enveloped stream body (gRPC, gRPC-Web, Connect streaming): flags byte, 4-byte length, message. */
function frames(body: Buffer): { flags: number; payload: Buffer }[] {
  const out: { flags: number; payload: Buffer }[] = [];
  for (let at = 0; at < body.length; ) {
    expect(body.length - at, "a whole envelope header").toBeGreaterThanOrEqual(5);
    const length = body.readUInt32BE(at + 1);
    out.push({ flags: body[at]!, payload: body.subarray(at + 5, at + 5 + length) });
    at += 5 + length;
  }
  return out;
}
const envelope = (message: Uint8Array, flags = 0) => {
  const head = Buffer.alloc(5);
  head[0] = flags;
  head.writeUInt32BE(message.byteLength, 1);
  return Buffer.concat([head, message]);
};
/** Bit 0 of an envelope's flags: the message is compressed (gRPC, gRPC-Web and Connect alike). */
const COMPRESSED = 0x01;

/** The blob bytes carried by DownloadResponse messages. */
const chunksOf = (messages: { payload: Buffer }[]) =>
  Buffer.concat(
    messages.map(({ payload }) => {
      const response = fromBinary(DownloadResponseSchema, payload);
      return response.message.case === "chunk" ? response.message.value : new Uint8Array();
    }),
  );

describeOn("pglite+fs")("protocols on one port", () => {
  let t: TestApp;
  let blobId: string;
  let blob: Buffer;
  /** Compresses to almost nothing: if anything gzipped it, the wire would show it. */
  let compressible: { id: string; bytes: Buffer };
  beforeAll(async () => {
    t = await startTestApp("pglite+fs");
    const upload = async (bytes: Buffer) =>
      (
        await t.client().upload(
          (async function* () {
            yield { message: { case: "header" as const, value: { spec: { kind: "blob" } } } };
            yield { message: { case: "chunk" as const, value: bytes } };
          })(),
        )
      ).artifact!.id;
    blob = randomBytes(200_000);
    blobId = await upload(blob);
    const text = Buffer.from("artifact bytes that compress very well. ".repeat(20_000));
    compressible = { id: await upload(text), bytes: text };
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

  /** A request on a fresh HTTP/1.1 connection (node:http speaks nothing else). */
  const http1 = (pathname: string, headers: Record<string, string>, body: Buffer) =>
    new Promise<{ status: number; version: string; headers: http.IncomingHttpHeaders; body: Buffer }>((resolve, reject) => {
      const request = http.request(`${t.url}${pathname}`, { method: "POST", headers, agent: false }, (response) => {
        const parts: Buffer[] = [];
        response.on("data", (part: Buffer) => parts.push(part));
        response.on("end", () =>
          resolve({ status: response.statusCode!, version: response.httpVersion, headers: response.headers, body: Buffer.concat(parts) }),
        );
        response.on("error", reject);
      });
      request.on("error", reject);
      request.end(body);
    });

  /** A request on an HTTP/2 connection, with its trailers. */
  const http2Request = (headers: http2.OutgoingHttpHeaders, body: Buffer) => {
    const session = http2.connect(t.url);
    return new Promise<{ headers: http2.IncomingHttpHeaders; trailers: http2.IncomingHttpHeaders; body: Buffer }>((resolve, reject) => {
      const stream = session.request({ ":method": "POST", ...headers });
      let responseHeaders: http2.IncomingHttpHeaders = {};
      let trailers: http2.IncomingHttpHeaders = {};
      const parts: Buffer[] = [];
      stream.on("response", (h) => (responseHeaders = h));
      stream.on("trailers", (h) => (trailers = h));
      stream.on("data", (part: Buffer) => parts.push(part));
      stream.on("end", () => resolve({ headers: responseHeaders, trailers, body: Buffer.concat(parts) }));
      stream.on("error", reject);
      stream.end(body);
    }).finally(() => session.close());
  };

  it("speaks the Connect protocol with JSON over HTTP/1.1", async () => {
    const saved = await post("SaveInline", { spec: { kind: "note", labels: { via: "curl" } }, text: "hello" });
    expect(saved.status).toBe(200);
    expect(saved.headers.get("content-type")).toBe("application/json");
    const { artifact } = (await saved.json()) as { artifact: { id: string; storage: string } };
    expect(artifact.storage).toBe("STORAGE_INLINE");
    const listed = (await (await post("ListArtifacts", { filter: { labels: { via: "curl" } } })).json()) as { artifacts: { id: string }[] };
    expect(listed.artifacts.map((a) => a.id)).toEqual([artifact.id]);
    const bad = await post("GetArtifact", { id: "not-an-id" });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ code: "invalid_argument", message: expect.stringMatching(/not an artifact id/) });
    const missing = await post("GetArtifact", { id: "art_00000000000000000000000000" });
    expect(missing.status).toBe(404);
    expect(await missing.json()).toMatchObject({ code: "not_found" });
    const unauthenticated = await post("ListArtifacts", {}, "");
    expect(unauthenticated.status).toBe(401);
    expect(await unauthenticated.json()).toMatchObject({ code: "unauthenticated" });

    // And on a connection that is HTTP/1.1 for certain.
    const raw = await http1(
      "/artifacts.v1.ArtifactService/GetArtifact",
      { "content-type": "application/json", authorization: `Bearer ${t.tokens.alpha}` },
      Buffer.from(JSON.stringify({ id: artifact.id })),
    );
    expect(raw.version).toBe("1.1");
    expect(raw.status).toBe(200);
    expect(JSON.parse(raw.body.toString())).toMatchObject({ artifact: { id: artifact.id, storage: "STORAGE_INLINE" } });
  });

  it("speaks gRPC-Web over HTTP/1.1: unary, server streaming and errors", async () => {
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
    let header: string | undefined;
    for await (const message of client.download({ id: blobId })) {
      if (message.message.case === "artifact") header = message.message.value.id;
      if (message.message.case === "chunk") parts.push(message.message.value);
    }
    expect(header).toBe(blobId);
    expect(Buffer.concat(parts).equals(blob)).toBe(true);
    const error = await client.getArtifact({ id: "art_00000000000000000000000000" }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConnectError);
    expect(Code[(error as ConnectError).code]).toBe("NotFound");
  });

  describe("never gzips blob bytes, even for a client that accepts gzip", () => {
    const auth = () => `Bearer ${t.tokens.alpha}`;
    const downloadRequest = () => toBinary(DownloadRequestSchema, create(DownloadRequestSchema, { id: compressible.id }));

    it("gRPC over HTTP/2 with grpc-accept-encoding: gzip", async () => {
      const response = await http2Request(
        {
          ":path": "/artifacts.v1.ArtifactService/Download",
          "content-type": "application/grpc",
          te: "trailers",
          "grpc-accept-encoding": "gzip",
          "accept-encoding": "gzip",
          authorization: auth(),
        },
        envelope(downloadRequest()),
      );
      expect(response.headers[":status"]).toBe(200);
      expect(response.trailers["grpc-status"]).toBe("0");
      expect(response.headers["grpc-encoding"] ?? "identity").toBe("identity");
      expect(response.headers["content-encoding"]).toBeUndefined();
      const messages = frames(response.body);
      expect(messages.filter((m) => m.flags & COMPRESSED)).toEqual([]);
      expect(response.body.length).toBeGreaterThan(compressible.bytes.length);
      expect(chunksOf(messages).equals(compressible.bytes)).toBe(true);
    });

    it("gRPC-Web over HTTP/1.1 with grpc-accept-encoding: gzip", async () => {
      const response = await http1(
        "/artifacts.v1.ArtifactService/Download",
        { "content-type": "application/grpc-web+proto", "x-grpc-web": "1", "grpc-accept-encoding": "gzip", "accept-encoding": "gzip", authorization: auth() },
        envelope(downloadRequest()),
      );
      expect(response.version).toBe("1.1");
      expect(response.status).toBe(200);
      expect(response.headers["grpc-encoding"] ?? "identity").toBe("identity");
      expect(response.headers["content-encoding"]).toBeUndefined();
      const messages = frames(response.body);
      expect(messages.filter((m) => m.flags & COMPRESSED)).toEqual([]);
      // gRPC-Web ends with a trailer frame (flag 0x80) carrying the status.
      const trailer = messages.pop()!;
      expect(trailer.flags).toBe(0x80);
      expect(trailer.payload.toString()).toMatch(/grpc-status:\s*0/);
      expect(response.body.length).toBeGreaterThan(compressible.bytes.length);
      expect(chunksOf(messages).equals(compressible.bytes)).toBe(true);
    });

    it("Connect streaming over HTTP/2 with connect-accept-encoding: gzip", async () => {
      const response = await http2Request(
        {
          ":path": "/artifacts.v1.ArtifactService/Download",
          "content-type": "application/connect+proto",
          "connect-protocol-version": "1",
          "connect-accept-encoding": "gzip",
          "accept-encoding": "gzip",
          authorization: auth(),
        },
        envelope(downloadRequest()),
      );
      expect(response.headers[":status"]).toBe(200);
      expect(response.headers["connect-content-encoding"]).toBeUndefined();
      expect(response.headers["content-encoding"]).toBeUndefined();
      const messages = frames(response.body);
      expect(messages.filter((m) => m.flags & COMPRESSED)).toEqual([]);
      // Connect ends with an end-of-stream frame (flag 0x02): JSON, no error.
      const end = messages.pop()!;
      expect(end.flags).toBe(0x02);
      expect(JSON.parse(end.payload.toString())).not.toHaveProperty("error");
      expect(response.body.length).toBeGreaterThan(compressible.bytes.length);
      expect(chunksOf(messages).equals(compressible.bytes)).toBe(true);
    });
  });
});
