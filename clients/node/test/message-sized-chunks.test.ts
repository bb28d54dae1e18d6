import { describe, expect, it } from "vitest";
import { messageSizedChunks } from "../src/message-sized-chunks.ts";

const KiB = 1024;

async function collect(source: Iterable<Uint8Array | string> | AsyncIterable<Uint8Array | string>, size?: number) {
  const pieces: { bytes: Buffer; backing: number }[] = [];
  for await (const piece of messageSizedChunks(source, size)) pieces.push({ bytes: Buffer.from(piece), backing: piece.buffer.byteLength });
  return pieces;
}

describe("messageSizedChunks", () => {
  it("stages a small content in a buffer of about its own size, not of a whole message", async () => {
    const content = Buffer.alloc(4 * KiB, 7);
    const [only, ...rest] = await collect([content]);
    expect(rest).toEqual([]);
    expect(only!.bytes.equals(content)).toBe(true);
    // A 256 KiB staging buffer per small upload kept Node's external-memory accounting starting full collections.
    expect(only!.backing).toBeLessThanOrEqual(64 * KiB);
  });

  it("regroups small pieces into whole messages, growing its staging buffer up to one message", async () => {
    const source = Array.from({ length: 70 }, (_, i) => Buffer.alloc(10 * KiB, i));
    const pieces = await collect(source, 256 * KiB);
    expect(pieces.map((piece) => piece.bytes.byteLength)).toEqual([256 * KiB, 256 * KiB, 700 * KiB - 512 * KiB]);
    expect(Buffer.concat(pieces.map((piece) => piece.bytes)).equals(Buffer.concat(source))).toBe(true);
  });

  it("passes whole messages through uncopied, and strings as UTF-8", async () => {
    const whole = Buffer.alloc(512 * KiB, 1);
    const pieces: Uint8Array[] = [];
    for await (const piece of messageSizedChunks([whole, "é"], 256 * KiB)) pieces.push(piece);
    expect(pieces[0]!.buffer).toBe(whole.buffer);
    expect(Buffer.from(pieces[1]!).toString("utf8")).toBe("é");
  });
});
