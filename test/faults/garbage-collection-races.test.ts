import type { MessageInitShape } from "@bufbuild/protobuf";
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { blake3Hex } from "../../src/blake3.ts";
import type { UploadRequestSchema } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import { hasSessions } from "../../src/ports/blob-store.ts";
import { BLOB_RECLAIMED } from "../../src/ports/metadata-store.ts";
import { collectGarbage } from "../../src/service/maintenance.ts";
import { gate, gateCalls, interpose, recordCalls } from "../support/interpose.ts";
import { storedObjects } from "../support/stored-objects.ts";
import { BACKENDS, startTestApp, type TestApp } from "../support/test-app.ts";
import { openLockWatcher } from "../support/lock-waiters.ts";

type UploadInit = MessageInitShape<typeof UploadRequestSchema>;

/**
 * Garbage collection at the worst moment of an upload, forced rather than
 * hoped for: the upload is held mid-stream, or one side is stopped inside
 * the store (at a gate on the app's own store instance) while the other
 * runs, in each order.
 */
describe.each(BACKENDS)("garbage collection against uploads in flight on %s", (backend) => {
  let t: TestApp;
  beforeAll(async () => {
    // The tests run the collector themselves, at the moments they choose.
    t = await startTestApp(backend, { ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0" });
  });
  afterAll(async () => {
    await t?.close();
  });
  const gcDeps = () => ({ metadata: t.app.metadata, blobs: t.app.blobs, uploadStaleMs: 300_000 });
  /** Collection as if the grace period had long passed for everything deleted so far. */
  const collect = (dryRun: boolean) => collectGarbage(gcDeps(), { graceMs: 0, dryRun, now: new Date(Date.now() + 60_000) });
  const download = async (id: string) => {
    const parts: Uint8Array[] = [];
    for await (const r of t.client().download({ id })) if (r.message.case === "chunk") parts.push(r.message.value);
    return Buffer.concat(parts);
  };

  it("keeps the blob a hash-only upload (declared digest) will reference, while its bytes are still coming", async () => {
    const data = randomBytes(300_000);
    const digest = blake3Hex(data);
    const first = await t.client().upload(
      (async function* (): AsyncIterable<UploadInit> {
        yield { message: { case: "header", value: { spec: { kind: "held" } } } };
        yield { message: { case: "chunk", value: data } };
      })(),
    );
    await t.client().deleteArtifact({ id: first.artifact!.id });
    expect((await collect(true)).blobs, "the deleted artifact's blob is reclaimable before the second upload").toBe(1);

    // The second upload declares the digest, so the server only hashes its bytes; hold it after half of them.
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const second = t.client().upload(
      (async function* (): AsyncIterable<UploadInit> {
        yield { message: { case: "header", value: { spec: { kind: "held" }, expectedBlake3: digest, expectedSize: BigInt(data.length) } } };
        yield { message: { case: "chunk", value: data.subarray(0, 150_000) } };
        await gate;
        yield { message: { case: "chunk", value: data.subarray(150_000) } };
      })(),
    );
    try {
      // Once the server has read the header it holds the blob: a dry run stops counting it.
      for (const deadline = Date.now() + 10_000; (await collect(true)).blobs !== 0 && Date.now() < deadline; ) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      const report = await collect(false);
      expect(report.blobs, "the collector reclaimed the blob an upload in flight will reference").toBe(0);
      expect(await t.app.metadata.findBlob("alpha", digest)).toBeDefined();
    } finally {
      release();
    }
    const done = await second;
    expect(done.deduplicated).toBe(true);
    expect((await download(done.artifact!.id)).equals(data)).toBe(true);
  });

  /** Uploads `data` and deletes the artifact: its blob is unreferenced, reclaimable once the grace has passed. */
  const uploadAndDelete = async (data: Uint8Array) => {
    const first = await upload(data);
    await t.client().deleteArtifact({ id: first.artifact!.id });
    const blob = await t.app.metadata.findBlob("alpha", blake3Hex(data));
    expect(blob, "the deleted artifact's blob is still recorded").toBeDefined();
    return blob!;
  };
  const upload = (data: Uint8Array) =>
    t.client().upload(
      (async function* (): AsyncIterable<UploadInit> {
        yield { message: { case: "header", value: { spec: { kind: "raced" } } } };
        yield { message: { case: "chunk", value: data } };
      })(),
    );

  it("keeps a blob a deduplicating upload referenced first: the collector's reclaim, decided before, then fails", async () => {
    const objects = storedObjects(t);
    const before = await objects.keys();
    const data = randomBytes(40_000);
    const digest = blake3Hex(data);
    const old = await uploadAndDelete(data);

    // The collector has found the blob unreferenced; stop it just before it reclaims the row.
    const atReclaim = gate();
    const reclaimed: boolean[] = [];
    const restore = gateCalls(t.app.metadata, "reclaimBlob", (_tenantId, blobDigest) => blobDigest === digest, atReclaim, reclaimed);
    try {
      const collecting = collect(false);
      await atReclaim.reached;
      // Meanwhile an upload of the same content deduplicates: its artifact references the blob.
      const again = await upload(data);
      expect(again.deduplicated, "the upload referenced the existing blob").toBe(true);
      atReclaim.open();
      const report = await collecting;
      expect(reclaimed, "the reclaim ran, after the reference, and was refused").toEqual([false]);
      expect(report.blobs).toBe(0);
      expect((await t.app.metadata.findBlob("alpha", digest))?.storageKey).toBe(old.storageKey);
      expect((await download(again.artifact!.id)).equals(data)).toBe(true);
      expect(await objects.keysSince(before), "the one stored copy is kept, and the upload stored none").toEqual([old.storageKey]);
    } finally {
      restore();
      atReclaim.open();
    }
  });

  it("makes an upload whose blob the collector reclaimed first store its own copy (BLOB_RECLAIMED), and keeps only that", async () => {
    const objects = storedObjects(t);
    const before = await objects.keys();
    const data = randomBytes(40_000);
    const digest = blake3Hex(data);
    const old = await uploadAndDelete(data);

    // The upload has found the blob and will reference it; stop it there.
    const afterFind = gate();
    const restoreFind = interpose(t.app.metadata, "findBlob", async (findBlob, tenantId, blobDigest) => {
      const found = await findBlob(tenantId, blobDigest);
      if (blobDigest === digest && found) await afterFind.wait();
      return found;
    });
    const refused: unknown[] = [];
    const restoreCreate = interpose(t.app.metadata, "createArtifact", async (createArtifact, record) => {
      try {
        return await createArtifact(record);
      } catch (error) {
        refused.push(error);
        throw error;
      }
    });
    try {
      const again = upload(data);
      await afterFind.reached;
      // Meanwhile the collector reclaims the row and removes the stored object.
      const report = await collect(false);
      expect(report.blobs).toBe(1);
      expect(await t.app.metadata.findBlob("alpha", digest)).toBeUndefined();
      expect(await t.app.blobs.stat(old.storageKey), "the reclaimed object is gone").toBeUndefined();
      afterFind.open();
      const done = await again;
      expect(
        refused.map((error) => (error as Error).message),
        "the reference was refused once: the blob was reclaimed",
      ).toEqual([BLOB_RECLAIMED]);
      expect(done.deduplicated, "the upload stored its own copy").toBe(false);
      const blob = await t.app.metadata.findBlob("alpha", digest);
      expect(blob?.storageKey).not.toBe(old.storageKey);
      expect((await download(done.artifact!.id)).equals(data)).toBe(true);
      expect(await objects.keysSince(before), "exactly the live object is stored").toEqual([blob!.storageKey]);
    } finally {
      restoreCreate();
      restoreFind();
      afterFind.open();
    }
  });

  it("makes an upload that declares a digest the collector reclaimed before its hold store the bytes itself", async () => {
    const objects = storedObjects(t);
    const before = await objects.keys();
    const data = randomBytes(40_000);
    const digest = blake3Hex(data);
    const old = await uploadAndDelete(data);
    // The upload is about to hold the blob it will reference instead of storing the bytes; stop it there.
    const beforeHold = gate();
    const held: boolean[] = [];
    const restore = gateCalls(t.app.metadata, "holdBlob", (_tenantId, blobDigest) => blobDigest === digest, beforeHold, held);
    try {
      const again = t.client().upload(
        (async function* (): AsyncIterable<UploadInit> {
          yield { message: { case: "header", value: { spec: { kind: "raced" }, expectedBlake3: digest, expectedSize: BigInt(data.length) } } };
          yield { message: { case: "chunk", value: data } };
        })(),
      );
      await beforeHold.reached;
      expect((await collect(false)).blobs).toBe(1);
      beforeHold.open();
      const done = await again;
      expect(held[0], "the hold found no blob").toBe(false);
      expect(done.deduplicated, "the upload stored the bytes").toBe(false);
      expect((await download(done.artifact!.id)).equals(data)).toBe(true);
      const blob = (await t.app.metadata.findBlob("alpha", digest))!;
      expect(blob.storageKey).not.toBe(old.storageKey);
      expect(await objects.keysSince(before), "exactly the live object is stored").toEqual([blob.storageKey]);
    } finally {
      restore();
      beforeHold.open();
    }
  });

  // Postgres only: there the two transactions can overlap (the embedded database runs one at a time), and the
  // collector's row lock waits for the upload's reference, which the foreign key then holds against it.
  it.runIf(backend === "postgres+minio")("keeps a blob whose deduplicating reference is still committing while the collector reclaims it", async () => {
    const data = randomBytes(40_000);
    const digest = blake3Hex(data);
    const old = await uploadAndDelete(data);
    const reclaimed: boolean[] = [];
    const restore = recordCalls(t.app.metadata, "reclaimBlob", (_tenantId, blobDigest) => blobDigest === digest, reclaimed);
    const admin = await openLockWatcher(t.databaseUrl!);
    try {
      // Artifact rows cannot be inserted until this transaction ends: the upload's recording transaction stops
      // after it took its share lock on the blob row, before its artifact row.
      await admin.query("begin");
      await admin.query("lock table artifacts in share mode");
      const again = upload(data);
      const [uploadWaiter] = await admin.untilWaiting(1);
      expect(uploadWaiter!.blockers, "the upload's recording waits on this transaction's lock alone").toEqual([admin.pid]);
      // The collector still sees the blob unreferenced, and its reclaim waits on the upload's lock.
      const collecting = collect(false);
      const waiters = await admin.untilWaiting(2);
      const collectorWaiter = waiters.find((w) => w.pid !== uploadWaiter!.pid);
      expect(waiters.find((w) => w.pid === uploadWaiter!.pid)?.blockers, "the upload still waits on this transaction").toEqual([admin.pid]);
      expect(collectorWaiter?.blockers, "the collector waits on the upload's lock on the blob row, and on nothing else").toEqual([uploadWaiter!.pid]);
      await admin.query("rollback");
      const [done, report] = await Promise.all([again, collecting]);
      expect(done.deduplicated).toBe(true);
      expect(reclaimed, "the reclaim, waiting on the reference, was refused").toEqual([false]);
      expect(report.blobs).toBe(0);
      expect((await t.app.metadata.findBlob("alpha", digest))?.storageKey).toBe(old.storageKey);
      expect((await download(done.artifact!.id)).equals(data)).toBe(true);
    } finally {
      await admin.close();
      restore();
    }
  });

  it("lets only one of two collectors running at once reclaim a blob, and removes its object", async () => {
    const objects = storedObjects(t);
    const before = await objects.keys();
    const data = randomBytes(30_000);
    const digest = blake3Hex(data);
    const old = await uploadAndDelete(data);
    // Both collectors have found the blob reclaimable before either reclaims it.
    const bothFound = gate(2);
    void bothFound.reached.then(() => bothFound.open());
    const reclaimed: boolean[] = [];
    const restore = gateCalls(t.app.metadata, "reclaimBlob", (_tenantId, blobDigest) => blobDigest === digest, bothFound, reclaimed);
    try {
      const reports = await Promise.all([collect(false), collect(false)]);
      expect(reclaimed.sort(), "one reclaim won, the other found nothing left to take").toEqual([false, true]);
      expect(reports[0]!.blobs + reports[1]!.blobs).toBe(1);
      expect(await t.app.metadata.findBlob("alpha", digest)).toBeUndefined();
      expect(await objects.keysSince(before), "the object went with its row").toEqual([]);
      expect(await t.app.blobs.stat(old.storageKey)).toBeUndefined();
    } finally {
      restore();
      bothFound.open();
    }
  });

  it("aborts uploads nobody finished and no session holds, past the grace, and leaves sessions alone", async () => {
    const blobs = t.app.blobs;
    if (!hasSessions(blobs)) throw new Error("the blob store has no upload sessions");
    // A multipart upload whose server died before it wrote a session row (or mid-stream): one part stored.
    const abandoned = await blobs.beginSession("alpha", blobs.newKey("alpha"));
    await blobs.putPart(abandoned.key || "", abandoned.ref, 1, randomBytes(1000));
    // A live session next to it.
    const data = randomBytes(2000);
    const { session } = await t.client().createUploadSession({ spec: { kind: "kept-session" }, expectedSize: BigInt(data.length) });
    await t.client().uploadPart({ sessionId: session!.sessionId, partNumber: 1, data });

    const young = await collectGarbage(gcDeps(), { graceMs: 0, dryRun: false, now: new Date(Date.now() + 3_600_000) });
    expect(young.abandonedUploads, "an upload an hour old may still be running").toBe(0);
    const dry = await collectGarbage(gcDeps(), { graceMs: 0, dryRun: true, now: new Date(Date.now() + 26 * 3_600_000) });
    expect(dry.abandonedUploads).toBe(1);
    const swept = await collectGarbage(gcDeps(), { graceMs: 0, dryRun: false, now: new Date(Date.now() + 26 * 3_600_000) });
    expect(swept.abandonedUploads).toBe(1);
    // The store itself refuses the aborted upload now.
    await expect(blobs.putPart(abandoned.key || "", abandoned.ref, 2, randomBytes(1000))).rejects.toThrow();
    // The session's upload survived: it completes with its content.
    const done = await t.client().completeUploadSession({ sessionId: session!.sessionId });
    expect((await download(done.artifact!.id)).equals(data)).toBe(true);
  });
});
