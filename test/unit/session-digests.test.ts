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

  it("uses no prefix the record does not match, and reads back trailing parts it lacks", async () => {
    const digests = createSessionDigests({ perSessionBytes: 10 * PART, perServerBytes: 10 * PART });
    const data = parts(4);
    for (const [i, d] of data.entries()) digests.partStored(live("a"), identity(i + 1, d), d);
    // Part 2 was replaced elsewhere after this server hashed it: none of the prefix can be used.
    const recorded = [data[0]!, randomBytes(PART), data[2]!, data[3]!];
    const store = assembledStore(Buffer.concat(recorded));
    const result = await digestOfAssembled(
      digests.take("a"),
      recorded.map((d, i) => identity(i + 1, d)),
      PART,
      (range) => store.read(range),
    );
    expect(result).toEqual({ digest: blake3Hex(Buffer.concat(recorded)), size: 4 * PART, readBackBytes: 4 * PART });
    expect(store.ranges).toEqual([{ offset: 0, length: 4 * PART }]);
  });

  it("with nothing known reads back everything, a short last part included, and fails on a short read", async () => {
    const data = [randomBytes(PART), randomBytes(PART), randomBytes(10)];
    const record = data.map((d, i) => identity(i + 1, d));
    const store = assembledStore(Buffer.concat(data));
    expect(await digestOfAssembled(undefined, record, PART, (range) => store.read(range))).toEqual({
      digest: blake3Hex(Buffer.concat(data)),
      size: 2 * PART + 10,
      readBackBytes: 2 * PART + 10,
    });
    const truncated = assembledStore(Buffer.concat(data).subarray(0, 2 * PART));
    await expect(digestOfAssembled(undefined, record, PART, (range) => truncated.read(range))).rejects.toThrow(
      /bytes 0–2010 of an assembled upload gave 2000 bytes, not 2010/,
    );
  });

  it("hashes held parts as soon as the parts before them arrive, and then reads nothing back", async () => {
    const digests = createSessionDigests({ perSessionBytes: 10 * PART, perServerBytes: 10 * PART });
    const data = parts(4);
    for (const n of [4, 3, 2]) digests.partStored(live("a"), identity(n, data[n - 1]!), data[n - 1]!);
    expect(digests.heldBytes()).toBe(3 * PART);
    digests.partStored(live("a"), identity(1, data[0]!), data[0]!);
    expect(digests.heldBytes()).toBe(0);
    const head = digests.take("a")!;
    expect(head.hashed.map((p) => p.partNumber)).toEqual([1, 2, 3, 4]);
    const store = assembledStore(Buffer.concat(data));
    const result = await digestOfAssembled(
      head,
      data.map((d, i) => identity(i + 1, d)),
      PART,
      (range) => store.read(range),
    );
    expect(result).toEqual({ digest: blake3Hex(Buffer.concat(data)), size: 4 * PART, readBackBytes: 0 });
    expect(store.ranges).toEqual([]);
  });

  it("holds nothing with a budget of 0, or a part larger than the budget", () => {
    const none = createSessionDigests({ perSessionBytes: 0, perServerBytes: 0 });
    const small = createSessionDigests({ perSessionBytes: PART - 1, perServerBytes: 10 * PART });
    const data = parts(2);
    for (const digests of [none, small]) {
      digests.partStored(live("a"), identity(2, data[1]!), data[1]!);
      expect(digests.heldBytes()).toBe(0);
      expect([...digests.take("a")!.held.keys()]).toEqual([]);
    }
  });

  it("makes room on a full server from the least recently active of the other sessions", () => {
    const digests = createSessionDigests({ perSessionBytes: 10 * PART, perServerBytes: 3 * PART });
    const data = parts(3);
    // Least recently active of all, but holding nothing to give.
    digests.partStored(live("nothing-held"), identity(1, data[0]!), data[0]!);
    for (const id of ["oldest", "older", "newest"]) digests.partStored(live(id), identity(3, data[2]!), data[2]!);
    // The oldest session stores another part (hashed, not held): now "older" is the least recently active.
    digests.partStored(live("oldest"), identity(1, data[0]!), data[0]!);
    digests.partStored(live("newest"), identity(2, data[1]!), data[1]!);
    expect(digests.heldBytes()).toBe(3 * PART);
    expect([...digests.take("older")!.held.keys()]).toEqual([]);
    expect([...digests.take("oldest")!.held.keys()]).toEqual([3]);
    expect([...digests.take("newest")!.held.keys()].sort()).toEqual([2, 3]);
  });

  it("on a full server with no other session to take from, lets go of its own farthest part for a nearer one", () => {
    const digests = createSessionDigests({ perSessionBytes: 10 * PART, perServerBytes: 2 * PART });
    const data = parts(4);
    for (const n of [4, 3, 2]) digests.partStored(live("a"), identity(n, data[n - 1]!), data[n - 1]!);
    expect([...digests.take("a")!.held.keys()].sort()).toEqual([2, 3]);
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
    expect(digests.take("new")!.hashed).toHaveLength(1);
  });

  it("keeps live sessions when it sweeps", () => {
    let now = 0;
    const digests = createSessionDigests({ perSessionBytes: 10 * PART, perServerBytes: 10 * PART }, () => now);
    const data = parts(2);
    digests.partStored({ id: "live", expiresAt: new Date(60_000) }, identity(2, data[1]!), data[1]!);
    now = 20_000;
    digests.partStored({ id: "other", expiresAt: new Date(60_000) }, identity(1, data[0]!), data[0]!);
    expect(digests.heldBytes()).toBe(PART);
    expect([...digests.take("live")!.held.keys()]).toEqual([2]);
  });
});
