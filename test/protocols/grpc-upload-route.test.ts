import { create, fromBinary, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { randomBytes } from "node:crypto";
import http2 from "node:http2";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chunkFrameHead } from "@artifactd/api";
import { UploadRequestSchema, UploadResponseSchema } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import { blake3Hex } from "../../src/blake3.ts";
import { captureStorageKeys, expectNothingStored, untilStored } from "../support/nothing-stored.ts";
import { BACKENDS, startTestApp, type TestApp } from "../support/test-app.ts";

interface RawAnswer {
  headers: http2.IncomingHttpHeaders;
  trailers: http2.IncomingHttpHeaders;
  body: Buffer;
}

const MiB = 1024 * 1024;

/** One UploadRequest in a gRPC envelope, encoded by the generated schema. */
function frameOf(init: MessageInitShape<typeof UploadRequestSchema>, flags = 0): Buffer {
  const message = toBinary(UploadRequestSchema, create(UploadRequestSchema, init));
  const head = Buffer.alloc(5);
  head[0] = flags;
  head.writeUInt32BE(message.byteLength, 1);
  return Buffer.concat([head, message]);
}
const headerFrame = (kind: string) => frameOf({ message: { case: "header", value: { spec: { kind } } } });
/** A chunk message as the SDK writes it: the frame head, then the bytes. */
const chunkFrame = (data: Buffer) => Buffer.concat([chunkFrameHead(data.byteLength), data]);

/**
 * The plain-gRPC Upload route (src/transport/grpc-upload-route.ts) driven
 * by a bare node:http2 client, so how the frames are cut into HTTP/2 data
 * is the test's to choose, and what goes back is read off the wire.
 */
describe.each(BACKENDS)("gRPC Upload on the wire on %s", (backend) => {
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

  const open = (headers: Record<string, string> = {}) =>
    session.request({
      ":method": "POST",
      ":path": "/artifacts.v1.ArtifactService/Upload",
      "content-type": "application/grpc",
      te: "trailers",
      authorization: `Bearer ${t.tokens.alpha}`,
      ...headers,
    });
  const answerOf = (stream: http2.ClientHttp2Stream) =>
    new Promise<RawAnswer>((resolve, reject) => {
      const answer: RawAnswer = { headers: {}, trailers: {}, body: Buffer.alloc(0) };
      const pieces: Buffer[] = [];
      stream.on("response", (h) => (answer.headers = h));
      stream.on("trailers", (h) => (answer.trailers = h));
      stream.on("data", (d: Buffer) => pieces.push(d));
      stream.on("close", () => resolve({ ...answer, body: Buffer.concat(pieces) }));
      stream.on("error", reject);
    });
  /** Writes each write as its own HTTP/2 data, waiting for it to leave before the next. */
  const send = async (stream: http2.ClientHttp2Stream, writes: Buffer[]) => {
    for (const bytes of writes) {
      await new Promise<void>((resolve, reject) => stream.write(bytes, (error) => (error ? reject(error) : resolve())));
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    stream.end();
  };
  const statusOf = (answer: RawAnswer) => ({
    code: answer.trailers["grpc-status"] ?? answer.headers["grpc-status"],
    message: decodeURIComponent(String(answer.trailers["grpc-message"] ?? answer.headers["grpc-message"] ?? "")),
  });
  const uploaded = (answer: RawAnswer) => {
    expect(statusOf(answer)).toEqual({ code: "0", message: "" });
    expect(answer.body[0], "compressed flag").toBe(0);
    expect(answer.body.readUInt32BE(1)).toBe(answer.body.length - 5);
    return fromBinary(UploadResponseSchema, answer.body.subarray(5)).artifact!;
  };

  it("stores frames split across HTTP/2 data, and several frames in one data, byte for byte", async () => {
    const first = randomBytes(300 * 1024 + 3);
    const second = randomBytes(1000);
    const third = randomBytes(70_000);
    const stream = open();
    const answer = answerOf(stream);
    const split = chunkFrame(first);
    await send(stream, [
      headerFrame("wire-upload"),
      // One frame in three pieces: the head itself cut in two, then the bytes cut anywhere.
      split.subarray(0, 3),
      split.subarray(3, 100_000),
      split.subarray(100_000),
      // Two chunk frames, an empty message and a trailer in one write.
      Buffer.concat([chunkFrame(second), frameOf({}), chunkFrame(third), frameOf({ message: { case: "trailer", value: { labels: { route: "fast" } } } })]),
    ]);
    const raw = await answer;
    expect(raw.headers[":status"]).toBe(200);
    // connect-node would answer application/grpc+proto: this is the route's answer.
    expect(raw.headers["content-type"]).toBe("application/grpc");
    const artifact = uploaded(raw);
    const content = Buffer.concat([first, second, third]);
    expect(Number(artifact.sizeBytes)).toBe(content.length);
    expect(artifact.blake3).toBe(blake3Hex(content));
    expect(artifact.labels).toEqual({ route: "fast" });
    const downloaded: Uint8Array[] = [];
    for await (const message of t.client().download({ id: artifact.id })) if (message.message.case === "chunk") downloaded.push(message.message.value);
    expect(Buffer.concat(downloaded).equals(content)).toBe(true);
  });

  it("leaves a compressed upload to connect-node, which answers it as it answers every compressed request", async () => {
    const stream = open({ "grpc-encoding": "gzip" });
    const answer = answerOf(stream);
    const message = toBinary(UploadRequestSchema, create(UploadRequestSchema, { message: { case: "header", value: { spec: { kind: "gzip" } } } }));
    const compressed = gzipSync(message);
    const head = Buffer.from([1, 0, 0, 0, 0]);
    head.writeUInt32BE(compressed.byteLength, 1);
    // In one write: connect-node answers from the headers alone, and may end the stream before a second one.
    stream.end(Buffer.concat([head, compressed]));
    // The server accepts no request compression (server.ts: acceptCompression is empty); connect says so.
    expect(statusOf(await answer)).toEqual({ code: "12", message: expect.stringMatching(/^unknown compression "gzip"/) });
  });

  it.each([
    {
      what: "a compressed flag without grpc-encoding",
      frame: () => Buffer.concat([Buffer.from([1, 0, 0, 0, 2]), Buffer.from([0x12, 0])]),
      status: { code: "13", message: "received compressed envelope, but do not know how to decompress" },
    },
    {
      what: "a message that is not an UploadRequest",
      frame: () => Buffer.concat([Buffer.from([0, 0, 0, 0, 3]), Buffer.from([0x0a, 0x05, 0x01])]),
      status: { code: "13", message: expect.stringMatching(/^parse binary: /) },
    },
    {
      what: "a message over the size limit, refused from its head",
      frame: () => Buffer.from([0, 0x10, 0, 0, 0]),
      status: { code: "8", message: `message size ${0x1000_0000} is larger than configured readMaxBytes ${65 * MiB}` },
    },
    {
      what: "a stream that ends inside a frame",
      frame: () => chunkFrame(randomBytes(1000)).subarray(0, 500),
      status: { code: "3", message: "protocol error: incomplete envelope" },
    },
  ])("answers $what as connect-node does, storing nothing", async ({ frame, status }) => {
    using storage = captureStorageKeys(t);
    const stream = open();
    const answer = answerOf(stream);
    await send(stream, [headerFrame("malformed"), chunkFrame(randomBytes(2000)), frame()]);
    expect(statusOf(await answer)).toEqual(status);
    await expectNothingStored(t, { keys: storage.keys });
  });

  it("ends a call that failed with more of its body, and the body's end, still to read", async () => {
    // The second header fails the call with 4 MiB behind it, more than the route reads ahead: the rest must be dropped,
    // or the stream, holding data no one reads, would never close and the call would never end.
    using storage = captureStorageKeys(t);
    const stream = open();
    const answer = answerOf(stream);
    stream.end(Buffer.concat([headerFrame("failed-early"), chunkFrame(randomBytes(2000)), headerFrame("again"), chunkFrame(randomBytes(4 * MiB))]));
    expect(statusOf(await answer)).toEqual({ code: "3", message: "a second header arrived: send exactly one header, first" });
    // Also waits for the server to count no call in flight.
    await expectNothingStored(t, { keys: storage.keys }, { deadlineMs: 3_000 });
  });

  it("abandons an upload its client cancels midway: nothing stored, and the call is over", async () => {
    using storage = captureStorageKeys(t);
    const stream = open();
    stream.on("error", () => {});
    stream.write(headerFrame("cancelled"));
    // Past one 5 MiB part, so the cancel has stored bytes to undo.
    for (let i = 0; i < 12; i++) stream.write(chunkFrame(randomBytes(MiB)));
    await untilStored(t, storage.keys, 5 * MiB);
    stream.close(http2.constants.NGHTTP2_CANCEL);
    // Also waits for the server to count no call in flight: the route's call ended, clean-up included.
    await expectNothingStored(t, { keys: storage.keys });
  });

  it("ends an upload whose deadline passes with DEADLINE_EXCEEDED, storing nothing", async () => {
    using storage = captureStorageKeys(t);
    const stream = open({ "grpc-timeout": "400m" });
    const answer = answerOf(stream);
    stream.write(Buffer.concat([headerFrame("deadline"), chunkFrame(randomBytes(1000))]));
    expect(statusOf(await answer)).toEqual({ code: "4", message: "the operation timed out" });
    await expectNothingStored(t, { keys: storage.keys });
  });
});
