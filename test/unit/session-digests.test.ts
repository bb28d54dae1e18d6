import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { blake3Hex } from "../../src/blake3.ts";
import type { ByteRange } from "../../src/ports/blob-store.ts";
import { createSessionDigests, digestOfAssembled } from "../../src/service/session-digests.ts";

/**
 * The per-server part of session digests: which parts are hashed or held
 * within the budgets, and how a complete finishes the digest from them. The
 * service test (test/service/session-read-back.test.ts) runs it against both
 * stores; this pins the budget rules no single-session test reaches.
 */
const PART = 1000;
const parts = (count: number) => Array.from({ length: count }, () => randomBytes(PART));
const identity = (partNumber: number, data: Uint8Array) => ({ partNumber, sizeBytes: data.byteLength, etag: blake3Hex(data) });
const live = (id: string) => ({ id, expiresAt: new Date(Date.now() + 3_600_000) });

/** The assembled content as a store would read it back, with the ranges asked for. */
function assembledStore(content: Buffer) {
  const ranges: ByteRange[] = [];
  return {
    ranges,
    async *read(range: ByteRange) {
      ranges.push(range);
      yield content.subarray(range.offset, range.offset + range.length);
    },
  };
}

describe("session digests", () => {
  it("finishes the digest from the prefix and held parts, reading back each run of missing parts in one range", async () => {
    const digests = createSessionDigests({ perSessionBytes: 10 * PART, perServerBytes: 10 * PART });
    const data = parts(6);
    // Part 1, then 3 and 6 held; 2, 4 and 5 went to another server.
    for (const n of [1, 3, 6]) digests.partStored(live("a"), identity(n, data[n - 1]!), data[n - 1]!);
    expect(digests.heldBytes()).toBe(2 * PART);
    const store = assembledStore(Buffer.concat(data));
    const result = await digestOfAssembled(
      digests.take("a"),
      data.map((d, i) => identity(i + 1, d)),
      PART,
      (range) => store.read(range),
    );
    expect(result).toEqual({ digest: blake3Hex(Buffer.concat(data)), size: 6 * PART, readBackBytes: 3 * PART });
    expect(store.ranges).toEqual([
      { offset: PART, length: PART },
      { offset: 3 * PART, length: 2 * PART },
    ]);
    expect(digests.heldBytes()).toBe(0);
    expect(digests.take("a")).toBeUndefined();
  });

  it("makes room on a full server from the least recently active session's farthest parts", () => {
    const digests = createSessionDigests({ perSessionBytes: 10 * PART, perServerBytes: 3 * PART });
    const data = parts(5);
    for (const n of [3, 4, 5]) digests.partStored(live("idle"), identity(n, data[n - 1]!), data[n - 1]!);
    digests.partStored(live("busy"), identity(2, data[1]!), data[1]!);
    expect(digests.heldBytes()).toBe(3 * PART);
    const idle = digests.take("idle")!;
    expect([...idle.held.keys()].sort()).toEqual([3, 4]);
    expect([...digests.take("busy")!.held.keys()]).toEqual([2]);
  });

  it("keeps within one session's budget the parts nearest its prefix", () => {
    const digests = createSessionDigests({ perSessionBytes: 2 * PART, perServerBytes: 10 * PART });
    const data = parts(5);
    for (const n of [5, 2, 4, 3]) digests.partStored(live("a"), identity(n, data[n - 1]!), data[n - 1]!);
    expect([...digests.take("a")!.held.keys()].sort()).toEqual([2, 3]);
  });

  it("starts the prefix over when a hashed part comes again with other bytes, and keeps it for the same bytes", async () => {
    const digests = createSessionDigests({ perSessionBytes: 10 * PART, perServerBytes: 10 * PART });
    const data = parts(3);
    for (const [i, d] of data.entries()) digests.partStored(live("a"), identity(i + 1, d), d);
    digests.partStored(live("a"), identity(2, data[1]!), data[1]!);
    expect(digests.take("a")!.hashed).toHaveLength(3);

    for (const [i, d] of data.entries()) digests.partStored(live("b"), identity(i + 1, d), d);
    const other = randomBytes(PART);
    digests.partStored(live("b"), identity(2, other), other);
    const head = digests.take("b")!;
    expect(head.hashed).toEqual([]);
    expect([...head.held.keys()]).toEqual([2]);
  });

  it("forgets sessions past their expiry once it sweeps, with what they held", () => {
    let now = 0;
    const digests = createSessionDigests({ perSessionBytes: 10 * PART, perServerBytes: 10 * PART }, () => now);
    const data = parts(2);
    digests.partStored({ id: "old", expiresAt: new Date(5_000) }, identity(2, data[1]!), data[1]!);
    expect(digests.heldBytes()).toBe(PART);
    now = 20_000;
    digests.partStored({ id: "new", expiresAt: new Date(60_000) }, identity(1, data[0]!), data[0]!);
    expect(digests.heldBytes()).toBe(0);
    expect(digests.take("old")).toBeUndefined();
  });
});
