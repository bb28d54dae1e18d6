import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, expect, it } from "vitest";
import { blake3Hex } from "../../src/blake3.ts";
import { BLOB_STORE_ADAPTERS, type BlobStoreSubject, type FullBlobStore } from "../support/blob-store-adapters.ts";
import { describeEachAdapter } from "../support/test-backends.ts";

/**
 * One suite for the BlobLister capability (src/ports/blob-store.ts), run
 * against every adapter that has it: what its doc comments promise, which
 * garbage collection relies on to find what a crash left.
 */
async function listBlobs(store: FullBlobStore) {
  const blobs = new Map<string, { size: number; lastModified: Date }>();
  for await (const { key, size, lastModified } of store.listBlobs()) blobs.set(key, { size, lastModified });
  return blobs;
}

async function listUnfinished(store: FullBlobStore) {
  const uploads = new Map<string, { ref: string; startedAt: Date }>();
  for await (const { key, ref, startedAt } of store.listUnfinishedUploads()) uploads.set(key, { ref, startedAt });
  return uploads;
}

describeEachAdapter("BlobLister contract: %s", BLOB_STORE_ADAPTERS, (_name, open) => {
  let subject: BlobStoreSubject;
  beforeAll(async () => {
    subject = await open();
  });
  afterAll(async () => {
    await subject?.close();
  });
  const commit = async (data: Uint8Array) => {
    const writer = await subject.store.createWriter("tenant-a", subject.store.newKey("tenant-a"));
    await writer.write(data);
    return writer.commit(blake3Hex(data));
  };

  it("lists committed blobs with their size and last change, and no longer once deleted", async () => {
    const before = Date.now();
    const small = await commit(randomBytes(10));
    const empty = await commit(new Uint8Array(0));
    const larger = await commit(randomBytes(70_000));
    const listed = await listBlobs(subject.store);
    expect([small, empty, larger].map((key) => listed.get(key)?.size)).toEqual([10, 0, 70_000]);
    for (const key of [small, empty, larger]) {
      const { lastModified } = listed.get(key)!;
      expect(lastModified).toBeInstanceOf(Date);
      // Stores keep whole seconds: the listed time may be up to a second before the write.
      expect(lastModified.getTime()).toBeGreaterThanOrEqual(before - 1_000);
      expect(lastModified.getTime()).toBeLessThanOrEqual(Date.now() + 1_000);
    }

    await subject.store.delete(small);
    expect((await listBlobs(subject.store)).has(small)).toBe(false);
    for (const key of [empty, larger]) await subject.store.delete(key);
  });

  it("lists committed blobs only: neither an unfinished upload nor a session nor the store's own bookkeeping", async () => {
    const committed = await commit(randomBytes(100));
    const session = await subject.store.beginSession("tenant-a", subject.store.newKey("tenant-a"));
    await subject.store.putPart(session.key, session.ref, 1, randomBytes(100));
    const writerKey = subject.store.newKey("tenant-a");
    const writer = await subject.store.createWriter("tenant-a", writerKey);
    await writer.write(randomBytes(100));

    // The store is this suite's alone and the tests before left nothing committed: the one blob is all there is.
    expect([...(await listBlobs(subject.store)).keys()]).toEqual([committed]);

    await writer.abort();
    await subject.store.abortSession(session.key, session.ref);
    await subject.store.delete(committed);
  });

  it("lists an unfinished session with the ref abortSession takes, and a start time", async () => {
    const before = Date.now();
    const session = await subject.store.beginSession("tenant-a", subject.store.newKey("tenant-a"));
    await subject.store.putPart(session.key, session.ref, 1, randomBytes(100));
    const listed = (await listUnfinished(subject.store)).get(session.key);
    expect(listed?.ref).toBe(session.ref);
    expect(listed!.startedAt).toBeInstanceOf(Date);
    expect(listed!.startedAt.getTime()).toBeGreaterThanOrEqual(before - 1_000);
    expect(listed!.startedAt.getTime()).toBeLessThanOrEqual(Date.now() + 1_000);

    // Aborted by what the listing gave: gone from the listing and from the store.
    await subject.store.abortSession(session.key, listed!.ref);
    expect((await listUnfinished(subject.store)).has(session.key)).toBe(false);
    expect(await subject.leftovers()).toEqual([]);
  });

  it("no longer lists a session once completed; its blob is listed instead", async () => {
    const session = await subject.store.beginSession("tenant-a", subject.store.newKey("tenant-a"));
    const part = await subject.store.putPart(session.key, session.ref, 1, randomBytes(321));
    expect((await listUnfinished(subject.store)).has(session.key)).toBe(true);
    await subject.store.completeSession("tenant-a", session.key, session.ref, [{ partNumber: 1, etag: part.etag }]);
    expect((await listUnfinished(subject.store)).has(session.key)).toBe(false);
    expect((await listBlobs(subject.store)).get(session.key)?.size).toBe(321);
    await subject.store.delete(session.key);
  });

  it("lists every unfinished upload begun through the adapter from a store opened anew, its key recorded anywhere or not", async () => {
    const sessions = [];
    for (const tenant of ["tenant-a", "tenant-b"]) {
      const session = await subject.store.beginSession(tenant, subject.store.newKey(tenant));
      await subject.store.putPart(session.key, session.ref, 1, randomBytes(100));
      sessions.push(session);
    }
    const reopened = await subject.reopen();
    try {
      const listed = await listUnfinished(reopened);
      for (const session of sessions) expect(listed.get(session.key)?.ref).toBe(session.ref);
      for (const session of sessions) await reopened.abortSession(session.key, listed.get(session.key)!.ref);
      expect(await subject.leftovers()).toEqual([]);
    } finally {
      await reopened.close();
    }
  });
});
