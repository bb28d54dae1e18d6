import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, expect, inject, it } from "vitest";
import { createS3BlobStore, UPLOAD_JOURNAL_PREFIX } from "../../src/adapters/blob/s3-blob-store.ts";
import { blake3Hex } from "../../src/blake3.ts";
import { canListBlobs, hasSessions, type BlobStore } from "../../src/ports/blob-store.ts";
import { BLOB_STORE_ADAPTERS, MiB, type BlobStoreSubject as Subject } from "../support/blob-store-adapters.ts";
import { bucketState } from "../support/blob-store-state.ts";
import { minioClient } from "../support/minio-client.ts";
import { describeEachAdapter, describeOn } from "../support/test-backends.ts";

/**
 * One suite for the BlobStore port, run against every adapter: a real MinIO
 * (small parts, so multipart is exercised) and a real temporary folder
 * (./support/blob-store-adapters.ts).
 */
async function readAll(store: BlobStore, key: string, offset: number, length: number): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const chunk of store.read(key, { offset, length })) parts.push(chunk);
  return Buffer.concat(parts);
}

describeEachAdapter("BlobStore contract: %s", BLOB_STORE_ADAPTERS, (name, open) => {
  let subject: Subject;
  beforeAll(async () => {
    subject = await open();
  });
  afterAll(async () => {
    await subject?.close();
  });

  it("writes a multi-part blob and reads it back whole and in ranges", async () => {
    const data = randomBytes(12 * MiB + 7);
    const writer = await subject.store.createWriter("tenant-a", subject.store.newKey("tenant-a"));
    for (let i = 0; i < data.length; i += 300_000) await writer.write(data.subarray(i, i + 300_000));
    const key = await writer.commit(blake3Hex(data));
    expect(await subject.store.stat(key)).toEqual({ size: data.length });
    expect((await readAll(subject.store, key, 0, data.length)).equals(data)).toBe(true);
    expect((await readAll(subject.store, key, 5 * MiB - 3, 10)).equals(data.subarray(5 * MiB - 3, 5 * MiB + 7))).toBe(true);
    expect((await readAll(subject.store, key, 0, 0)).length).toBe(0);
    expect(await subject.leftovers()).toEqual([]);
  });

  it("takes a write as pieces, stored as if joined, parts filling across them", async () => {
    const data = randomBytes(12 * MiB + 7);
    // Messages of uneven pieces (as HTTP/2 delivers them), some empty, whose bounds never line up with a part's.
    const messages: Uint8Array[][] = [];
    for (let at = 0; at < data.length; ) {
      const pieces: Uint8Array[] = [];
      for (const size of [12_288, 0, 77_777, 1, 262_144]) {
        pieces.push(data.subarray(at, Math.min(data.length, at + size)));
        at = Math.min(data.length, at + size);
      }
      messages.push(pieces);
    }
    const writer = await subject.store.createWriter("tenant-a", subject.store.newKey("tenant-a"));
    for (const pieces of messages) await writer.write(pieces);
    const key = await writer.commit(blake3Hex(data));
    expect(await subject.store.stat(key)).toEqual({ size: data.length });
    expect((await readAll(subject.store, key, 0, data.length)).equals(data)).toBe(true);
    expect(await subject.leftovers()).toEqual([]);
  });
  it("stores small and empty blobs", async () => {
    for (const data of [Buffer.alloc(0), Buffer.from("x"), randomBytes(100_000)]) {
      const writer = await subject.store.createWriter("tenant-a", subject.store.newKey("tenant-a"));
      await writer.write(data);
      const key = await writer.commit(blake3Hex(data));
      expect(await subject.store.stat(key)).toEqual({ size: data.length });
      expect((await readAll(subject.store, key, 0, data.length)).equals(data)).toBe(true);
    }
  });

  it("gives two writers of the same content two keys, each deletable alone", async () => {
    const data = randomBytes(1000);
    const keys: string[] = [];
    for (let i = 0; i < 2; i++) {
      const writer = await subject.store.createWriter("tenant-a", subject.store.newKey("tenant-a"));
      await writer.write(data);
      keys.push(await writer.commit(blake3Hex(data)));
    }
    expect(keys[0]).not.toBe(keys[1]);
    await subject.store.delete(keys[1]!);
    expect(await subject.store.stat(keys[1]!)).toBeUndefined();
    expect((await readAll(subject.store, keys[0]!, 0, 1000)).equals(data)).toBe(true);
  });

  it("abort after several parts leaves nothing behind", async () => {
    const writer = await subject.store.createWriter("tenant-a", subject.store.newKey("tenant-a"));
    const data = randomBytes(11 * MiB);
    for (let i = 0; i < data.length; i += MiB) await writer.write(data.subarray(i, i + MiB));
    await writer.abort();
    await writer.abort();
    expect(await subject.leftovers()).toEqual([]);
    await expect(writer.write(Buffer.from("more"))).rejects.toThrow();
  });

  it("discards what an upload left under a key, found by the key: a committed object, an unfinished upload, a session's parts", async () => {
    const committed = await subject.store.createWriter("tenant-a", subject.store.newKey("tenant-a"));
    await committed.write(randomBytes(1000));
    const committedKey = await committed.commit("unused");
    const unfinishedKey = subject.store.newKey("tenant-a");
    const unfinished = await subject.store.createWriter("tenant-a", unfinishedKey);
    for (let i = 0; i < 11; i++) await unfinished.write(randomBytes(MiB));
    const sessionKey = subject.store.newKey("tenant-a");
    if (!hasSessions(subject.store)) throw new Error("the store has no upload sessions");
    const session = await subject.store.beginSession("tenant-a", sessionKey);
    await subject.store.putPart(sessionKey, session.ref, 1, randomBytes(1000));
    expect((await subject.leftovers()).length).toBeGreaterThanOrEqual(2);

    for (const key of [committedKey, unfinishedKey, sessionKey]) await subject.store.discard(key);
    expect(await subject.store.stat(committedKey)).toBeUndefined();
    expect(await subject.leftovers()).toEqual([]);
    // A key with nothing under it, or discarded twice: not an error.
    await subject.store.discard(committedKey);
    await subject.store.discard(subject.store.newKey("tenant-a"));
    await unfinished.abort();
  });

  it("lists unfinished uploads and sessions, also from a store opened anew, and neither them nor its bookkeeping as blobs", async () => {
    const store = subject.store;
    if (!hasSessions(store) || !canListBlobs(store)) throw new Error("the store cannot list or has no upload sessions");
    const session = await store.beginSession("tenant-a", store.newKey("tenant-a"));
    await store.putPart(session.key, session.ref, 1, randomBytes(1000));
    const streamKey = store.newKey("tenant-a");
    const stream = await store.createWriter("tenant-a", streamKey);
    for (let i = 0; i < 6; i++) await stream.write(randomBytes(MiB));
    const committed = await store.createWriter("tenant-a", store.newKey("tenant-a"));
    for (let i = 0; i < 6; i++) await committed.write(randomBytes(MiB));
    const committedKey = await committed.commit("unused");

    const reopened = await subject.reopen();
    if (!canListBlobs(reopened)) throw new Error("the reopened store cannot list");
    const unfinished = async () => {
      const keys: string[] = [];
      for await (const upload of reopened.listUnfinishedUploads()) keys.push(upload.key);
      return keys.sort();
    };
    // The streaming writer's folder-store file is not an upload session; on S3 it is a multipart upload like any.
    const expected = name === "s3" ? [session.key, streamKey].sort() : [session.key];
    for (const deadline = Date.now() + 10_000; JSON.stringify(await unfinished()) !== JSON.stringify(expected) && Date.now() < deadline; ) {
      await new Promise((r) => setTimeout(r, 20)); // the writer's first part may still be on its way
    }
    expect(await unfinished()).toEqual(expected);
    const blobs: string[] = [];
    for await (const blob of reopened.listBlobs()) blobs.push(blob.key);
    expect(blobs).toContain(committedKey);
    // Only keys as newKey makes them (tenant, then a uuid), none of an unfinished upload.
    expect(blobs.filter((key) => [session.key, streamKey].includes(key) || !/^(blobs\/)?tenant-a\/([0-9a-f]{2}\/)?[0-9a-f-]{36}$/.test(key))).toEqual([]);

    await store.abortSession(session.key, session.ref);
    await stream.abort();
    expect(await unfinished()).toEqual([]);
    expect(await subject.leftovers()).toEqual([]);
    await reopened.close();
  });

  it("deleting a missing key is not an error", async () => {
    const writer = await subject.store.createWriter("tenant-a", subject.store.newKey("tenant-a"));
    const key = await writer.commit(blake3Hex(new Uint8Array(0)));
    await subject.store.delete(key);
    await subject.store.delete(key);
    expect(await subject.store.stat(key)).toBeUndefined();
  });

  it("reading a key with nothing under it fails with not_found", async () => {
    const writer = await subject.store.createWriter("tenant-a", subject.store.newKey("tenant-a"));
    await writer.write(randomBytes(1000));
    const key = await writer.commit("unused");
    await subject.store.delete(key);
    await expect(readAll(subject.store, key, 0, 1000)).rejects.toMatchObject({ code: "not_found" });
    await expect(readAll(subject.store, subject.store.newKey("tenant-a"), 10, 5)).rejects.toMatchObject({ code: "not_found" });
  });

  it("an aborted read ends with the abort, before the rest of the content", async () => {
    const data = randomBytes(8 * MiB);
    const writer = await subject.store.createWriter("tenant-a", subject.store.newKey("tenant-a"));
    await writer.write(data);
    const key = await writer.commit(blake3Hex(data));
    const controller = new AbortController();
    let received = 0;
    const reading = (async () => {
      for await (const chunk of subject.store.read(key, { offset: 0, length: data.length }, controller.signal)) {
        received += chunk.byteLength;
        controller.abort(new Error("stopped by the reader"));
      }
    })();
    await expect(reading).rejects.toThrow();
    expect(received).toBeGreaterThan(0);
    expect(received).toBeLessThan(data.length);
  });
});

describeOn("postgres+minio")("S3 blob store: parts that grow", () => {
  it("stores and reads back an upload whose parts grow along its plan", async () => {
    const minio = inject("minio");
    const bucket = `growing-${Math.random().toString(36).slice(2, 10)}`;
    // 5, 5, 10, 10, 20 MiB…: the schedule partPlan follows, compressed so a test can see several sizes.
    const sizes: number[] = [];
    const store = await createS3BlobStore(
      {
        endpoint: new URL(minio.endpoint),
        region: "us-east-1",
        accessKey: minio.accessKey,
        secretKey: minio.secretKey,
        bucket,
        partSize: 5 * MiB,
        partConcurrency: 2,
      },
      {
        planParts: () => ({
          sizeOf: (n) => {
            const size = 5 * MiB * 2 ** Math.floor((n - 1) / 2);
            sizes[n - 1] = size;
            return size;
          },
          concurrencyOf: () => 2,
        }),
      },
    );
    const data = randomBytes(42 * MiB + 5);
    const writer = await store.createWriter("tenant-a", store.newKey("tenant-a"));
    for (let i = 0; i < data.length; i += 3 * MiB) await writer.write(data.subarray(i, i + 3 * MiB));
    const key = await writer.commit(blake3Hex(data));
    expect(new Set(sizes.slice(0, 5))).toEqual(new Set([5 * MiB, 10 * MiB, 20 * MiB]));
    expect(await store.stat(key)).toEqual({ size: data.length });
    expect((await readAll(store, key, 0, data.length)).equals(data)).toBe(true);
    await store.discard(key);
    await store.close();
  });
});

describeOn("postgres+minio")("S3 blob store: the journal of unfinished uploads", () => {
  it("drops a leftover entry (no upload under its key) when listing, and keeps the entry of an upload still there", async () => {
    const minio = inject("minio");
    const bucket = `journal-${Math.random().toString(36).slice(2, 10)}`;
    const endpoint = new URL(minio.endpoint);
    // Every entry counts as old enough to be a leftover, so only having an upload under its key keeps it.
    const store = await createS3BlobStore(
      { endpoint, region: "us-east-1", accessKey: minio.accessKey, secretKey: minio.secretKey, bucket, partSize: 5 * MiB, partConcurrency: 2 },
      { journalLeftoverMs: 0 },
    );
    const client = minioClient();
    const live = await store.beginSession("tenant-a", store.newKey("tenant-a"));
    // What a crash between writing an entry and initiating its upload leaves, or MinIO's own clean-up of the upload.
    const leftoverKey = store.newKey("tenant-a");
    await client.putObject(bucket, UPLOAD_JOURNAL_PREFIX + leftoverKey, Buffer.alloc(0), 0);

    const listed: string[] = [];
    for await (const upload of store.listUnfinishedUploads()) listed.push(upload.key);
    expect(listed).toEqual([live.key]);
    expect((await bucketState(client, bucket)).entries).toEqual([`journal:${live.key}`, `multipart:${live.key}`]);

    await store.abortSession(live.key, live.ref);
    expect((await bucketState(client, bucket)).entries).toEqual([]);
    await store.close();
  });
});
