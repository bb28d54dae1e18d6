import { create, toBinary } from "@bufbuild/protobuf";
import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { ArtifactSchema } from "@artifactd/api/artifacts/v1/artifact_pb.js";
import { type DownloadResponse, DownloadResponseSchema } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import { readMessages } from "../src/grpc-download-reader.ts";

/** gRPC envelopes of these responses, encoded by the generated schema (as the service's own encoder must match). */
function framesOf(responses: DownloadResponse[]): Buffer {
  return Buffer.concat(
    responses.map((response) => {
      const message = toBinary(DownloadResponseSchema, response);
      const head = Buffer.alloc(5);
      head.writeUInt32BE(message.byteLength, 1);
      return Buffer.concat([head, message]);
    }),
  );
}

/** The bytes in pieces of the given sizes (the last piece takes the rest). */
async function* piecesOf(bytes: Buffer, sizes: () => number): AsyncIterable<Uint8Array> {
  for (let at = 0; at < bytes.length; ) {
    const size = Math.max(1, sizes());
    yield bytes.subarray(at, at + size);
    at += size;
  }
}

async function collect(body: AsyncIterable<Uint8Array>) {
  const artifacts: string[] = [];
  const content: Uint8Array[] = [];
  for await (const response of readMessages(body)) {
    if (response.message.case === "artifact") artifacts.push(response.message.value.id);
    if (response.message.case === "chunk") content.push(response.message.value);
  }
  return { artifacts, content: Buffer.concat(content), pieces: content.length };
}

describe("reading Download frames in place", () => {
  const chunks = [0, 1, 5, 127, 128, 300, 16_384, 70_000].map((size) => randomBytes(size));
  const responses = [
    create(DownloadResponseSchema, { message: { case: "artifact", value: create(ArtifactSchema, { id: "art_0123" }) } }),
    create(DownloadResponseSchema, {}),
    ...chunks.map((chunk) => create(DownloadResponseSchema, { message: { case: "chunk", value: chunk } })),
  ];
  const body = framesOf(responses);
  const expected = Buffer.concat(chunks);

  it("hands on every content byte in order and decodes the artifact, however the body is split", async () => {
    for (const pieceSize of [1, 2, 3, 5, 6, 7, 4096, 65_536, body.length]) {
      const read = await collect(piecesOf(body, () => pieceSize));
      expect(read.artifacts, `pieces of ${pieceSize}`).toEqual(["art_0123"]);
      expect(read.content.equals(expected), `pieces of ${pieceSize}`).toBe(true);
    }
    for (let seed = 1; seed <= 20; seed++) {
      let state = seed;
      const nextSize = () => {
        state = (state * 48271) % 2147483647;
        return state % 9000;
      };
      const read = await collect(piecesOf(body, nextSize));
      expect(read.content.equals(expected)).toBe(true);
    }
  });

  it("hands on content as views of the body's buffers, never copies, also when a message spans several", async () => {
    const frames = framesOf([create(DownloadResponseSchema, { message: { case: "chunk", value: chunks[7]! } })]);
    const seen: Uint8Array[] = [];
    for await (const response of readMessages(piecesOf(frames, () => 10_000))) if (response.message.case === "chunk") seen.push(response.message.value);
    expect(seen.length).toBeGreaterThan(1);
    for (const piece of seen) expect(piece.buffer).toBe(frames.buffer);
    expect(Buffer.concat(seen).equals(chunks[7]!)).toBe(true);
  });

  it("fails a body cut inside a message, and a compressed message", async () => {
    await expect(collect(piecesOf(body.subarray(0, body.length - 10), () => 1000))).rejects.toThrow(/incomplete envelope/);
    await expect(collect(piecesOf(body.subarray(0, 3), () => 1000))).rejects.toThrow(/incomplete envelope/);
    const compressed = Buffer.from(body);
    compressed[0] = 1;
    await expect(collect(piecesOf(compressed, () => 1000))).rejects.toThrow(/compressed/);
  });
});
