import { create, toBinary } from "@bufbuild/protobuf";
import { encodeEnvelope } from "@connectrpc/connect/protocol";
import { describe, expect, it } from "vitest";
import { UploadPartRequestSchema, UploadRequestSchema } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import { bytesFieldFrameHead, chunkFrameHead } from "@artifactd/api";
import { uploadPartFrames } from "../../clients/node/src/lean-upload-part.ts";
import { uploadFrames } from "../../clients/node/src/lean-upload-transport.ts";

/** What connect's generic path sends for these messages: each serialized by protobuf-es, in its gRPC envelope. */
function genericFrames(messages: Parameters<typeof create<typeof UploadRequestSchema>>[1][]): Buffer {
  return Buffer.concat(messages.map((init) => encodeEnvelope(0, toBinary(UploadRequestSchema, create(UploadRequestSchema, init)))));
}

async function leanFrames(messages: Parameters<typeof create<typeof UploadRequestSchema>>[1][]): Promise<{ bytes: Buffer; pieces: Uint8Array[] }> {
  const pieces: Uint8Array[] = [];
  async function* source() {
    yield* messages.map((init) => init!);
  }
  for await (const piece of uploadFrames(source(), (message) => toBinary(UploadRequestSchema, message))) pieces.push(piece);
  return { bytes: Buffer.concat(pieces), pieces };
}

describe("upload frames written by hand", () => {
  it("are byte for byte what protobuf-es and connect would send, for chunks of every varint length and the messages around them", async () => {
    const sizes = [0, 1, 127, 128, 16_383, 16_384, 1024 * 1024, 2_097_151, 2_097_152 + 3];
    const messages = [
      { message: { case: "header" as const, value: { spec: { kind: "model", name: "m", labels: { a: "b" } }, expectedSize: 42n } } },
      ...sizes.map((size) => ({ message: { case: "chunk" as const, value: new Uint8Array(size).map((_, i) => (i * 31 + size) & 255) } })),
      { message: { case: "trailer" as const, value: { labels: { done: "yes" }, tags: ["t"], metrics: { loss: 0.5 } } } },
    ];
    const lean = await leanFrames(messages);
    expect(lean.bytes.equals(genericFrames(messages))).toBe(true);
  });

  it("hand the caller's chunk over as it is, never a copy", async () => {
    const chunk = new Uint8Array(4096).fill(7);
    const { pieces } = await leanFrames([{ message: { case: "chunk", value: chunk } }]);
    expect(pieces).toHaveLength(2);
    expect(pieces[1]).toBe(chunk);
    expect(Buffer.from(pieces[0]!)).toEqual(Buffer.from([0, 0, 0, 0x10, 0x03, 0x12, 0x80, 0x20]));
  });

  it("take messages that are already built, as well as init shapes", async () => {
    const built = create(UploadRequestSchema, { message: { case: "chunk", value: new Uint8Array([1, 2, 3]) } });
    const { bytes } = await leanFrames([built]);
    expect(bytes.equals(genericFrames([{ message: { case: "chunk", value: new Uint8Array([1, 2, 3]) } }]))).toBe(true);
  });

  it("frame a chunk's head with the envelope's length and the field's varint length", () => {
    // 300 bytes: message = tag (1) + varint 300 (2) + 300 = 303 = 0x12f.
    expect(Buffer.from(chunkFrameHead(300))).toEqual(Buffer.from([0, 0, 0, 0x01, 0x2f, 0x12, 0xac, 0x02]));
  });
});

describe("UploadPart frames written by hand", () => {
  const partFrames = (message: ReturnType<typeof create<typeof UploadPartRequestSchema>>) =>
    uploadPartFrames(message, (part) => toBinary(UploadPartRequestSchema, part));
  const genericFrame = (message: ReturnType<typeof create<typeof UploadPartRequestSchema>>) =>
    Buffer.from(encodeEnvelope(0, toBinary(UploadPartRequestSchema, message)));
  const data = (size: number) => new Uint8Array(size).fill(size & 255, size >> 1);

  it.each([
    ["with part_blake3", { sessionId: "ses_0123456789", partNumber: 3, data: data(1000), partBlake3: "ab".repeat(32) }],
    ["without part_blake3", { sessionId: "ses_0123456789", partNumber: 10_000, data: data(128) }],
    ["with empty data", { sessionId: "ses_0123456789", partNumber: 1, partBlake3: "cd".repeat(32) }],
    ["with only data", { data: data(1) }],
    ["of a large part", { sessionId: "ses_0123456789", partNumber: 2, data: data(64 * 1024 * 1024 + 5), partBlake3: "ef".repeat(32) }],
  ])("are byte for byte what protobuf-es and connect would send, %s", async (_, init) => {
    const message = create(UploadPartRequestSchema, init);
    expect(Buffer.concat(await partFrames(message)).equals(genericFrame(message))).toBe(true);
  });

  it("keep unknown fields where protobuf-es writes them, last", async () => {
    const message = create(UploadPartRequestSchema, { sessionId: "s", partNumber: 1, data: data(300), partBlake3: "0".repeat(64) });
    message.$unknown = [{ no: 9, wireType: 2, data: new Uint8Array([2, 1, 1]) }];
    expect(Buffer.concat(await partFrames(message)).equals(genericFrame(message))).toBe(true);
  });

  it("hand the caller's data over as it is, never a copy, and leave the message alone", async () => {
    const message = create(UploadPartRequestSchema, { sessionId: "s", partNumber: 4, data: data(8 * 1024 * 1024), partBlake3: "1".repeat(64) });
    const pieces = await partFrames(message);
    expect(pieces).toHaveLength(3);
    expect(pieces[1]).toBe(message.data);
    expect(message).toMatchObject({ sessionId: "s", partNumber: 4, partBlake3: "1".repeat(64) });
    expect(Buffer.from(message.data).equals(data(8 * 1024 * 1024))).toBe(true);
  });

  it("refuse a message longer than the envelope can state, as connect does", () => {
    expect(() => bytesFieldFrameHead(3, 2 ** 32)).toThrow(/message size 4294967302 is larger than configured writeMaxBytes 4294967295/);
  });
});
