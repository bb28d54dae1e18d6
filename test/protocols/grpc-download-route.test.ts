import { fromBinary } from "@bufbuild/protobuf";
import { randomBytes } from "node:crypto";
import http2 from "node:http2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DownloadResponseSchema } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import { BACKENDS, startTestApp, type TestApp } from "../support/test-app.ts";

interface RawCall {
  status: number | undefined;
  headers: http2.IncomingHttpHeaders;
  trailers: http2.IncomingHttpHeaders;
  body: Buffer;
}

/**
 * The plain-gRPC Download path (src/transport/grpc-download-route.ts) read
 * by a bare node:http2 client, so the frames themselves are checked: what
 * generated gRPC clients of any language will parse.
 */
describe.each(BACKENDS)("gRPC Download on the wire on %s", (backend) => {
  let t: TestApp;
  let session: http2.ClientHttp2Session;
  beforeAll(async () => {
    t = await startTestApp(backend, { ARTIFACTD_S3_PART_SIZE: "5MiB" });
    session = http2.connect(t.url);
  });
  afterAll(async () => {
    session?.close();
    await t?.close();
  });

  /** One DownloadRequest {id = 1, offset = 2}, hand-encoded, in a gRPC envelope. */
  const request = (id: string, offset = 0) => {
    const idBytes = Buffer.from(id, "utf8");
    const message = Buffer.concat([Buffer.from([0x0a, idBytes.length]), idBytes, offset ? Buffer.from([0x10, offset]) : Buffer.alloc(0)]);
    const head = Buffer.alloc(5);
    head.writeUInt32BE(message.length, 1);
    return Buffer.concat([head, message]);
  };
  const call = (body: Buffer, headers: Record<string, string> = {}) =>
    new Promise<RawCall>((resolve, reject) => {
      const stream = session.request({
        ":method": "POST",
        ":path": "/artifacts.v1.ArtifactService/Download",
        "content-type": "application/grpc",
        te: "trailers",
        authorization: `Bearer ${t.tokens.alpha}`,
        ...headers,
      });
      const result: RawCall = { status: undefined, headers: {}, trailers: {}, body: Buffer.alloc(0) };
      const pieces: Buffer[] = [];
      stream.on("response", (h) => ((result.status = h[":status"] as number), (result.headers = h)));
      stream.on("trailers", (h) => (result.trailers = h));
      stream.on("data", (d: Buffer) => pieces.push(d));
      stream.on("end", () => resolve({ ...result, body: Buffer.concat(pieces) }));
      stream.on("error", reject);
      stream.end(body);
    });
  /** Splits a response body into its gRPC messages, checking every envelope is uncompressed. */
  const messages = (body: Buffer) => {
    const out = [];
    for (let at = 0; at < body.length; ) {
      expect(body[at], "compressed flag").toBe(0);
      const length = body.readUInt32BE(at + 1);
      out.push(fromBinary(DownloadResponseSchema, body.subarray(at + 5, at + 5 + length)));
      at += 5 + length;
    }
    return out;
  };
  const upload = async (data: Buffer) =>
    (
      await t.client().upload(
        (async function* () {
          yield { message: { case: "header" as const, value: { spec: { kind: "wire" } } } };
          yield { message: { case: "chunk" as const, value: data } };
        })(),
      )
    ).artifact!;

  it("sends the artifact, then the content in uncompressed messages, then grpc-status 0", async () => {
    const data = randomBytes(3 * 1024 * 1024 + 17);
    const artifact = await upload(data);
    const response = await call(request(artifact.id), { "grpc-accept-encoding": "gzip" });
    expect(response.status).toBe(200);
    expect(response.headers["content-type"]).toBe("application/grpc");
    expect(response.headers["grpc-encoding"]).toBeUndefined();
    expect(response.trailers["grpc-status"]).toBe("0");
    const [first, ...rest] = messages(response.body);
    expect(first!.message.case).toBe("artifact");
    expect(first!.message.value).toMatchObject({ id: artifact.id, blake3: artifact.blake3 });
    expect(rest.every((m) => m.message.case === "chunk")).toBe(true);
    expect(Buffer.concat(rest.map((m) => m.message.value as Uint8Array)).equals(data)).toBe(true);
    // A range: offset 7.
    const ranged = messages((await call(request(artifact.id, 7))).body).slice(1);
    expect(Buffer.concat(ranged.map((m) => m.message.value as Uint8Array)).equals(data.subarray(7))).toBe(true);
  });

  it("answers refusals trailers-only, with the code and a percent-encoded message", async () => {
    const unknown = await call(request(`art_${"0".repeat(26)}`));
    expect(unknown.status).toBe(200);
    expect(unknown.headers["grpc-status"]).toBe("5");
    expect(decodeURIComponent(String(unknown.headers["grpc-message"]))).toMatch(/does not exist/);
    expect(unknown.body.length).toBe(0);
    const malformed = await call(request("../etc/passwd"));
    expect(malformed.headers["grpc-status"]).toBe("3");
    const anonymous = await call(request(`art_${"0".repeat(26)}`), { authorization: "Bearer nope" });
    expect(anonymous.headers["grpc-status"]).toBe("16");
    const badTimeout = await call(request(`art_${"0".repeat(26)}`), { "grpc-timeout": "soon" });
    expect(badTimeout.headers["grpc-status"]).toBe("3");
    expect(decodeURIComponent(String(badTimeout.headers["grpc-message"]))).toMatch(/grpc-timeout "soon" is not valid/);
    const twoMessages = await call(Buffer.concat([request(`art_${"0".repeat(26)}`), request(`art_${"0".repeat(26)}`)]));
    expect(twoMessages.headers["grpc-status"]).toBe("3");
  });

  /** A Download in Connect or gRPC-Web (binary) over HTTP/1.1, as browsers send it; its frames with their flags. */
  const webCall = async (contentType: string, body: Buffer, headers: Record<string, string> = {}) => {
    const response = await fetch(`${t.url}/artifacts.v1.ArtifactService/Download`, {
      method: "POST",
      headers: { "content-type": contentType, authorization: `Bearer ${t.tokens.alpha}`, ...headers },
      body,
    });
    const bytes = Buffer.from(await response.arrayBuffer());
    const frames: { flags: number; data: Buffer }[] = [];
    for (let at = 0; at < bytes.length; ) {
      const length = bytes.readUInt32BE(at + 1);
      frames.push({ flags: bytes[at]!, data: bytes.subarray(at + 5, at + 5 + length) });
      at += 5 + length;
    }
    return { status: response.status, contentType: response.headers.get("content-type"), frames };
  };
  const contentOf = (frames: { flags: number; data: Buffer }[]) => {
    const [first, ...rest] = frames.filter((f) => f.flags === 0).map((f) => fromBinary(DownloadResponseSchema, f.data));
    expect(first!.message.case).toBe("artifact");
    expect(rest.every((m) => m.message.case === "chunk" && m.message.value.byteLength <= 256 * 1024)).toBe(true);
    return Buffer.concat(rest.map((m) => m.message.value as Uint8Array));
  };

  it("serves Connect and gRPC-Web downloads in the same messages, ended by each protocol's status frame", async () => {
    const data = randomBytes(2 * 1024 * 1024 + 5);
    const artifact = await upload(data);
    const connect = await webCall("application/connect+proto", request(artifact.id, 3));
    expect(connect.status).toBe(200);
    expect(connect.contentType).toBe("application/connect+proto");
    expect(contentOf(connect.frames).equals(data.subarray(3))).toBe(true);
    expect(connect.frames.at(-1)!.flags).toBe(0x02);
    expect(JSON.parse(connect.frames.at(-1)!.data.toString())).toEqual({});

    const grpcWeb = await webCall("application/grpc-web+proto", request(artifact.id), { "x-grpc-web": "1" });
    expect(grpcWeb.status).toBe(200);
    expect(grpcWeb.contentType).toBe("application/grpc-web+proto");
    expect(contentOf(grpcWeb.frames).equals(data)).toBe(true);
    expect(grpcWeb.frames.at(-1)!.flags).toBe(0x80);
    expect(grpcWeb.frames.at(-1)!.data.toString()).toMatch(/^grpc-status: 0\r\n$/);

    // Connect over HTTP/2 too (the compatibility response under the same route).
    const overHttp2 = await call(request(artifact.id), { "content-type": "application/connect+proto" });
    expect(overHttp2.headers["content-type"]).toBe("application/connect+proto");
    const frames: { flags: number; data: Buffer }[] = [];
    for (let at = 0; at < overHttp2.body.length; at += 5 + overHttp2.body.readUInt32BE(at + 1)) {
      frames.push({ flags: overHttp2.body[at]!, data: overHttp2.body.subarray(at + 5, at + 5 + overHttp2.body.readUInt32BE(at + 1)) });
    }
    expect(contentOf(frames).equals(data)).toBe(true);
    expect(frames.at(-1)!.flags).toBe(0x02);
  });

  it("answers a Connect or gRPC-Web download that fails with the code in the status frame", async () => {
    const unknown = request(`art_${"0".repeat(26)}`);
    const connect = await webCall("application/connect+proto", unknown);
    expect(connect.frames).toHaveLength(1);
    expect(connect.frames[0]!.flags).toBe(0x02);
    expect(JSON.parse(connect.frames[0]!.data.toString()).error).toMatchObject({ code: "not_found", message: expect.stringMatching(/does not exist/) });
    const grpcWeb = await webCall("application/grpc-web+proto", unknown, { "x-grpc-web": "1" });
    expect(grpcWeb.frames).toHaveLength(1);
    expect(grpcWeb.frames[0]!.flags).toBe(0x80);
    expect(grpcWeb.frames[0]!.data.toString()).toMatch(/grpc-status: 5\r\n/);
    const twoMessages = await webCall("application/connect+proto", Buffer.concat([unknown, unknown]));
    expect(JSON.parse(twoMessages.frames.at(-1)!.data.toString()).error.code).toBe("invalid_argument");
  });

  it("ends a download whose deadline passes with DEADLINE_EXCEEDED in the trailers", async () => {
    const artifact = await upload(randomBytes(32 * 1024 * 1024));
    const stream = session.request({
      ":method": "POST",
      ":path": "/artifacts.v1.ArtifactService/Download",
      "content-type": "application/grpc",
      authorization: `Bearer ${t.tokens.alpha}`,
      "grpc-timeout": "300m",
    });
    stream.end(request(artifact.id));
    // Read nothing for a while: the flow-control window fills and the server waits, until its deadline.
    stream.pause();
    await new Promise((resolve) => setTimeout(resolve, 700));
    const trailers = new Promise<http2.IncomingHttpHeaders>((resolve) => stream.on("trailers", resolve));
    stream.resume();
    expect((await trailers)["grpc-status"]).toBe("4");
  });
});
