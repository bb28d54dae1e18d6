import { describe, expect, it } from "vitest";
import { createRequestBodyPool } from "../../src/transport/request-body-pool.ts";

const MiB = 1024 * 1024;

describe("the pool of large request bodies", () => {
  it("hands out buffers of the size asked for, and the same memory again once given back", () => {
    const pool = createRequestBodyPool(64 * MiB);
    const first = pool.take(8 * MiB + 40);
    expect(first.byteLength).toBe(8 * MiB + 40);
    pool.give(first);
    expect(pool.idleBytes()).toBe(9 * MiB);
    // A part of the same session (same part size, another head) rounds to the same capacity.
    const second = pool.take(8 * MiB + 37);
    expect(second.buffer).toBe(first.buffer);
    expect(pool.idleBytes()).toBe(0);
    // While it is taken, another call gets other memory.
    const third = pool.take(8 * MiB + 37);
    expect(third.buffer).not.toBe(second.buffer);
  });

  it("keeps no more idle than its limit, and ignores buffers it did not make", () => {
    const pool = createRequestBodyPool(16 * MiB);
    const taken = [pool.take(8 * MiB), pool.take(8 * MiB), pool.take(8 * MiB)];
    for (const buffer of taken) pool.give(buffer);
    expect(pool.idleBytes()).toBe(16 * MiB);
    pool.give(Buffer.alloc(3 * MiB + 1));
    pool.give(Buffer.allocUnsafeSlow(4 * MiB).subarray(MiB));
    expect(pool.idleBytes()).toBe(16 * MiB);
  });
});
