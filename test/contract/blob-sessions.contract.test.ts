import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { BlobStore } from "../../src/ports/blob-store.ts";
import { BLOB_STORE_ADAPTERS, MiB, type BlobStoreSubject } from "../support/blob-store-adapters.ts";
import { describeEachAdapter } from "../support/test-backends.ts";

/**
 * One suite for the BlobSessions capability (src/ports/blob-store.ts), run
 * against every adapter that has it: what its doc comments promise. Parts
 * are S3's smallest (5 MiB) but the last, as the service's part sizes are.
 */
async function readAll(store: BlobStore, key: string): Promise<Buffer> {
  const stat = await store.stat(key);
  if (!stat) throw new Error(`nothing is stored under ${key}`);
  const chunks: Uint8Array[] = [];
  for await (const chunk of store.read(key, { offset: 0, length: stat.size })) chunks.push(chunk);
  return Buffer.concat(chunks);
}

describeEachAdapter("BlobSessions contract: %s", BLOB_STORE_ADAPTERS, (_name, open) => {
  let subject: BlobStoreSubject;
  beforeAll(async () => {
    subject = await open();
  });
  afterAll(async () => {
    await subject?.close();
  });
  const unfinishedKeys = async () => {
    const keys: string[] = [];
    for await (const upload of subject.store.listUnfinishedUploads()) keys.push(upload.key);
    return keys;
  };

  it("begins a session under the key it is given, with a ref", async () => {
    const key = subject.store.newKey("tenant-a");
    const session = await subject.store.beginSession("tenant-a", key);
    expect(session.key).toBe(key);
    expect(session.ref).toEqual(expect.any(String));
    expect(session.ref).not.toBe("");
    await subject.store.abortSession(session.key, session.ref);
  });

  it("assembles parts sent in any order into parts 1..N in order, and answers the key and size of the stored bytes", async () => {
    const parts = [randomBytes(5 * MiB), randomBytes(5 * MiB), randomBytes(123_457)];
    const { key, ref } = await subject.store.beginSession("tenant-a", subject.store.newKey("tenant-a"));
    const etags = new Map<number, string>();
    for (const partNumber of [3, 1, 2]) etags.set(partNumber, (await subject.store.putPart(key, ref, partNumber, parts[partNumber - 1]!)).etag);
    const whole = Buffer.concat(parts);

    const completed = await subject.store.completeSession(
      "tenant-a",
      key,
      ref,
      [1, 2, 3].map((partNumber) => ({ partNumber, etag: etags.get(partNumber)! })),
    );
    expect(completed).toEqual({ key, size: whole.length });
    expect(await subject.store.stat(key)).toEqual({ size: whole.length });
    expect((await readAll(subject.store, key)).equals(whole)).toBe(true);
    await subject.store.delete(key);
  });

  it("a part sent again replaces the earlier part of its number", async () => {
    const first = randomBytes(5 * MiB);
    const last = Buffer.from("the last part, second version");
    const { key, ref } = await subject.store.beginSession("tenant-a", subject.store.newKey("tenant-a"));
    const one = await subject.store.putPart(key, ref, 1, first);
    await subject.store.putPart(key, ref, 2, Buffer.from("the last part, first version, longer than the second"));
    const two = await subject.store.putPart(key, ref, 2, last);

    const completed = await subject.store.completeSession("tenant-a", key, ref, [
      { partNumber: 1, etag: one.etag },
      { partNumber: 2, etag: two.etag },
    ]);
    const whole = Buffer.concat([first, last]);
    expect(completed).toEqual({ key, size: whole.length });
    expect((await readAll(subject.store, key)).equals(whole)).toBe(true);
    await subject.store.delete(key);
  });

  it("assembles a part only as the bytes its etag names: completing with a replaced version's etag fails or takes that version", async () => {
    // The service hashes parts from memory and trusts the assembly to hold exactly those bytes (src/service/session-digests.ts).
    const first = randomBytes(1000);
    const second = randomBytes(1000);
    const { key, ref } = await subject.store.beginSession("tenant-a", subject.store.newKey("tenant-a"));
    const replaced = await subject.store.putPart(key, ref, 1, first);
    await subject.store.putPart(key, ref, 1, second);

    const outcome = await subject.store.completeSession("tenant-a", key, ref, [{ partNumber: 1, etag: replaced.etag }]).then(
      () => "assembled",
      () => "refused",
    );
    if (outcome === "assembled") expect((await readAll(subject.store, key)).equals(first)).toBe(true);
    else expect(await subject.store.stat(key)).toBeUndefined();
    await subject.store.abortSession(key, ref);
    await subject.store.delete(key);
  });

  it("shows nothing as a blob until completed: no stat, no listed blob", async () => {
    const { key, ref } = await subject.store.beginSession("tenant-a", subject.store.newKey("tenant-a"));
    const part = await subject.store.putPart(key, ref, 1, randomBytes(1000));
    expect(await subject.store.stat(key)).toBeUndefined();
    const listed: string[] = [];
    for await (const blob of subject.store.listBlobs()) listed.push(blob.key);
    expect(listed).not.toContain(key);

    await subject.store.completeSession("tenant-a", key, ref, [{ partNumber: 1, etag: part.etag }]);
    expect(await subject.store.stat(key)).toEqual({ size: 1000 });
    await subject.store.delete(key);
  });

  it("completes a session without parts as the empty blob", async () => {
    const { key, ref } = await subject.store.beginSession("tenant-a", subject.store.newKey("tenant-a"));
    expect(await subject.store.completeSession("tenant-a", key, ref, [])).toEqual({ key, size: 0 });
    expect(await subject.store.stat(key)).toEqual({ size: 0 });
    expect(await subject.leftovers()).toEqual([]);
    await subject.store.delete(key);
  });

  it("leaves no session behind once completed, and an abort of the finished session changes nothing", async () => {
    const data = randomBytes(2000);
    const { key, ref } = await subject.store.beginSession("tenant-a", subject.store.newKey("tenant-a"));
    const part = await subject.store.putPart(key, ref, 1, data);
    await subject.store.completeSession("tenant-a", key, ref, [{ partNumber: 1, etag: part.etag }]);
    expect(await subject.leftovers()).toEqual([]);
    expect(await unfinishedKeys()).not.toContain(key);

    await subject.store.abortSession(key, ref);
    expect((await readAll(subject.store, key)).equals(data)).toBe(true);
    await subject.store.delete(key);
  });

  it("abort drops the session and its parts, and is safe on a session already dropped", async () => {
    const { key, ref } = await subject.store.beginSession("tenant-a", subject.store.newKey("tenant-a"));
    await subject.store.putPart(key, ref, 1, randomBytes(5 * MiB));
    await subject.store.putPart(key, ref, 2, randomBytes(1000));
    expect(await unfinishedKeys()).toContain(key);

    await subject.store.abortSession(key, ref);
    expect(await subject.leftovers()).toEqual([]);
    expect(await unfinishedKeys()).not.toContain(key);
    expect(await subject.store.stat(key)).toBeUndefined();
    await subject.store.abortSession(key, ref);
  });

  it("outlives the store that began it: another store on the same bucket or folder adds parts and completes it", async () => {
    const parts = [randomBytes(5 * MiB), randomBytes(777)];
    const { key, ref } = await subject.store.beginSession("tenant-a", subject.store.newKey("tenant-a"));
    const one = await subject.store.putPart(key, ref, 1, parts[0]!);
    const other = await subject.reopen();
    try {
      const two = await other.putPart(key, ref, 2, parts[1]!);
      const whole = Buffer.concat(parts);
      const completed = await other.completeSession("tenant-a", key, ref, [
        { partNumber: 1, etag: one.etag },
        { partNumber: 2, etag: two.etag },
      ]);
      expect(completed).toEqual({ key, size: whole.length });
      expect((await readAll(subject.store, key)).equals(whole)).toBe(true);
      await subject.store.delete(key);
    } finally {
      await other.close();
    }
  });
});
