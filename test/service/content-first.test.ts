import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { UploadRequestSchema } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import { Storage } from "@artifactd/api/artifacts/v1/artifact_pb.js";
import { blake3Hex } from "../../src/blake3.ts";
import { createApiToken } from "../../src/service/api-tokens.ts";
import { collectGarbage } from "../../src/service/maintenance.ts";
import { expectCode } from "../support/expect-code.ts";
import { gate, gateCalls, interpose, recordCalls } from "../support/interpose.ts";
import { storedObjects } from "../support/stored-objects.ts";
import { BACKENDS, startTestApp, type TestApp } from "../support/test-app.ts";
import { openLockWatcher } from "../support/lock-waiters.ts";

type UploadInit = MessageInitShape<typeof UploadRequestSchema>;

/**
 * Content first: FindMissingContent says which contents a tenant lacks, and
 * an Upload with content_by_digest records the others without their bytes,
 * checked against what the server really stored (the bucket or folder, the
 * blob rows) and against garbage collection running at the worst moment.
 */
describe.each(BACKENDS)("content first on %s", (backend) => {
  let t: TestApp;
  beforeAll(async () => {
    // The tests run the collector themselves, at the moments they choose.
    // Uploads declaring at most 4 KiB are kept in their row (inline_bytes): content a tenant has inline too.
    t = await startTestApp(backend, { ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0", ARTIFACTD_MAX_BATCH_ITEMS: "50", ARTIFACTD_UPLOAD_INLINE_MAX_BYTES: "4KiB" });
  });
  afterAll(async () => {
    await t?.close();
  });

  const upload = async (data: Uint8Array, token?: string, kind = "content-first") =>
    t.client(token).upload(
      (async function* (): AsyncIterable<UploadInit> {
        yield { message: { case: "header", value: { spec: { kind } } } };
        yield { message: { case: "chunk", value: data } };
      })(),
    );
  const byDigest = (content: { blake3: string; size: number }, options: { token?: string; kind?: string; after?: UploadInit[] } = {}) =>
    t.client(options.token).upload(
      (async function* (): AsyncIterable<UploadInit> {
        yield {
          message: {
            case: "header",
            value: { spec: { kind: options.kind ?? "by-digest" }, expectedBlake3: content.blake3, expectedSize: BigInt(content.size), contentByDigest: true },
          },
        };
        yield* options.after ?? [];
      })(),
    );
  const download = async (id: string) => {
    const parts: Uint8Array[] = [];
    for await (const r of t.client().download({ id })) if (r.message.case === "chunk") parts.push(r.message.value);
    return Buffer.concat(parts);
  };
  const digestOf = (data: Uint8Array) => ({ blake3: blake3Hex(data), sizeBytes: BigInt(data.byteLength) });
  const missing = async (contents: { blake3: string; sizeBytes: bigint }[], token?: string) =>
    (await t.client(token).findMissingContent({ contents })).missing.map((m) => ({ blake3: m.blake3, sizeBytes: m.sizeBytes }));
  /** An upload declaring its size: at most 4 KiB is kept in the artifact's row. */
  const uploadDeclared = async (data: Uint8Array, kind = "content-first") =>
    t.client().upload(
      (async function* (): AsyncIterable<UploadInit> {
        yield { message: { case: "header", value: { spec: { kind }, expectedSize: BigInt(data.byteLength) } } };
        yield { message: { case: "chunk", value: data } };
      })(),
    );
  const artifactsOfKind = async (kind: string) => (await t.client().listArtifacts({ filter: { kind, includeDeleted: true } })).artifacts;

  describe("FindMissingContent", () => {
    it("counts the tenant's blobs and live inline content, in the order asked, and nothing else", async () => {
      const blobData = randomBytes(20_000);
      await upload(blobData);
      const inlineText = `inline ${randomBytes(8).toString("hex")}`;
      await t.client().saveInline({ spec: { kind: "content-first" }, content: { case: "text", value: inlineText } });
      const json = `{"rows": ${Math.random()}}`;
      await t.client().saveInline({ spec: { kind: "content-first" }, content: { case: "json", value: json } });
      const deletedText = `deleted ${randomBytes(8).toString("hex")}`;
      const deleted = await t.client().saveInline({ spec: { kind: "content-first" }, content: { case: "text", value: deletedText } });
      await t.client().deleteArtifact({ id: deleted.artifact!.id });
      const betaData = randomBytes(10_000);
      await upload(betaData, t.tokens.beta);
      const corruptData = randomBytes(10_000);
      await upload(corruptData);
      await t.app.metadata.markBlobCorrupt("alpha", blake3Hex(corruptData));
      const unknown = randomBytes(100);
      const smallUpload = randomBytes(3_000);
      expect((await uploadDeclared(smallUpload)).artifact!.storage, "kept in its row").toBe(Storage.INLINE);

      const asked = [
        digestOf(unknown),
        digestOf(blobData),
        digestOf(Buffer.from(inlineText)),
        digestOf(Buffer.from(deletedText)),
        digestOf(betaData),
        digestOf(Buffer.from(json)),
        digestOf(corruptData),
        // A known digest with another size is not that content.
        { blake3: blake3Hex(blobData), sizeBytes: BigInt(blobData.byteLength + 1) },
        digestOf(unknown),
        digestOf(smallUpload),
      ];
      const expected = [asked[0], asked[3], asked[4], asked[6], asked[7], asked[8]];
      expect(await missing(asked), "alpha lacks the unknown, deleted-only, beta's, corrupt and mis-sized contents").toEqual(expected);
      expect(await missing([digestOf(betaData), digestOf(blobData)], t.tokens.beta), "beta has its own content, not alpha's").toEqual([digestOf(blobData)]);
      expect(await missing([]), "an empty question has an empty answer").toEqual([]);

      const reader = (await createApiToken(t.app.metadata, "alpha", `content-reader-${Math.random()}`, { scope: "read-only" })).token;
      expect(await missing(asked, reader), "a read-only token may ask").toEqual(expected);
    });

    it("refuses a malformed digest, a negative size and too many entries, naming the entry", async () => {
      const good = digestOf(randomBytes(10));
      await expectCode(missing([good, { blake3: "ABC", sizeBytes: 1n }]), Code.InvalidArgument, /contents\[1\]\.blake3 must be 64 lowercase hex/);
      await expectCode(missing([{ blake3: good.blake3.toUpperCase(), sizeBytes: 1n }]), Code.InvalidArgument, /contents\[0\]\.blake3/);
      await expectCode(missing([good, good, { blake3: good.blake3, sizeBytes: -1n }]), Code.InvalidArgument, /contents\[2\]\.size_bytes -1 is not valid.*>= 0/);
      await expectCode(
        missing(Array.from({ length: 51 }, () => good)),
        Code.InvalidArgument,
        /contents has 51 entries; at most 50 are allowed \(ARTIFACTD_MAX_BATCH_ITEMS\)/,
      );
      expect(await missing(Array.from({ length: 50 }, () => good)), "the limit itself is allowed").toHaveLength(50);
    });
  });

  describe("Upload with content_by_digest", () => {
    it("records a new artifact from the tenant's blob with no bytes sent and nothing stored", async () => {
      const data = randomBytes(50_000);
      const first = await upload(data);
      const blobBefore = await t.app.metadata.findBlob("alpha", blake3Hex(data));
      const objects = storedObjects(t);
      const before = await objects.keys();
      const written: string[] = [];
      const restore = interpose(t.app.blobs, "createWriter", (createWriter, tenantId, key, size) => {
        written.push(key);
        return createWriter(tenantId, key, size);
      });
      try {
        const done = await byDigest(
          { blake3: blake3Hex(data), size: data.byteLength },
          { after: [{ message: { case: "trailer", value: { labels: { stage: "reused" } } } }] },
        );
        expect(done.deduplicated).toBe(true);
        expect(done.artifact!.id).not.toBe(first.artifact!.id);
        expect(done.artifact!.kind).toBe("by-digest");
        expect(done.artifact!.labels, "the trailer's labels are recorded").toEqual({ stage: "reused" });
        expect(done.artifact!.blake3).toBe(blake3Hex(data));
        expect(Number(done.artifact!.sizeBytes)).toBe(data.byteLength);
        expect((await download(done.artifact!.id)).equals(data), "the new artifact downloads (and verifies) as the content").toBe(true);
      } finally {
        restore();
      }
      expect(written, "no blob writer was opened").toEqual([]);
      expect(await objects.keysSince(before), "no object was stored").toEqual([]);
      expect(await t.app.metadata.findBlob("alpha", blake3Hex(data)), "the blob row is the same one").toEqual(blobBefore);
    });

    it("copies content kept inline in one of the tenant's artifacts into the new artifact's row", async () => {
      const json = `{"copied": ${Math.random()}}`;
      await t.client().saveInline({ spec: { kind: "content-first" }, content: { case: "json", value: json } });
      const objects = storedObjects(t);
      const before = await objects.keys();
      const bytes = Buffer.from(json);
      const done = await byDigest({ blake3: blake3Hex(bytes), size: bytes.byteLength });
      expect(done.deduplicated).toBe(true);
      expect(done.artifact!.storage, "kept in the row, as the content it copies").toBe(Storage.INLINE);
      expect((await download(done.artifact!.id)).equals(bytes)).toBe(true);
      expect(await objects.keysSince(before)).toEqual([]);
    });

    it("copies the bytes of a small upload kept in its row", async () => {
      const data = randomBytes(2_500);
      const first = await uploadDeclared(data);
      expect(first.artifact!.storage).toBe(Storage.INLINE);
      const done = await byDigest({ blake3: blake3Hex(data), size: data.byteLength });
      expect(done.deduplicated).toBe(true);
      expect(done.artifact!.storage).toBe(Storage.INLINE);
      expect((await download(done.artifact!.id)).equals(data)).toBe(true);
      // The copy is the new row's own: deleting the first leaves it readable.
      await t.client().deleteArtifact({ id: first.artifact!.id });
      expect((await download(done.artifact!.id)).equals(data)).toBe(true);
    });

    it("answers FAILED_PRECONDITION for content the tenant lacks (unknown, another tenant's, deleted, corrupt) and records nothing", async () => {
      const betaData = randomBytes(8_000);
      await upload(betaData, t.tokens.beta);
      const deletedText = `gone ${randomBytes(8).toString("hex")}`;
      const deleted = await t.client().saveInline({ spec: { kind: "content-first" }, content: { case: "text", value: deletedText } });
      await t.client().deleteArtifact({ id: deleted.artifact!.id });
      const corrupt = randomBytes(8_000);
      await upload(corrupt);
      await t.app.metadata.markBlobCorrupt("alpha", blake3Hex(corrupt));
      const known = randomBytes(8_000);
      await upload(known);
      for (const data of [randomBytes(3000), betaData, Buffer.from(deletedText), corrupt]) {
        await expectCode(
          byDigest({ blake3: blake3Hex(data), size: data.byteLength }, { kind: "lacking" }),
          Code.FailedPrecondition,
          /this tenant has no content with BLAKE3 [0-9a-f]{64} and size \d+ bytes: send the bytes/,
        );
      }
      await expectCode(byDigest({ blake3: blake3Hex(known), size: known.byteLength + 1 }, { kind: "lacking" }), Code.FailedPrecondition, /send the bytes/);
      expect(await artifactsOfKind("lacking"), "nothing was recorded").toEqual([]);
    });

    it("refuses a chunk after the header with INVALID_ARGUMENT and records nothing", async () => {
      const data = randomBytes(5_000);
      await upload(data);
      for (const chunk of [data, new Uint8Array(0)]) {
        await expectCode(
          byDigest({ blake3: blake3Hex(data), size: data.byteLength }, { kind: "chunked", after: [{ message: { case: "chunk", value: chunk } }] }),
          Code.InvalidArgument,
          /a chunk arrived after a header with content_by_digest/,
        );
      }
      expect(await artifactsOfKind("chunked")).toEqual([]);
    });

    it("requires expected_blake3 and expected_size, refuses session_id, and needs a token that may upload", async () => {
      const data = randomBytes(1_000);
      await upload(data);
      const header = (value: Record<string, unknown>) =>
        t.client().upload(
          (async function* (): AsyncIterable<UploadInit> {
            yield { message: { case: "header", value: { contentByDigest: true, ...value } } };
          })(),
        );
      await expectCode(header({ spec: { kind: "bad" }, expectedSize: 1000n }), Code.InvalidArgument, /expected_blake3 and expected_size are required/);
      await expectCode(
        header({ spec: { kind: "bad" }, expectedBlake3: blake3Hex(data) }),
        Code.InvalidArgument,
        /expected_blake3 and expected_size are required/,
      );
      await expectCode(header({ sessionId: "ups_0123456789abcdef" }), Code.InvalidArgument, /content_by_digest cannot continue an upload session/);
      const reader = (await createApiToken(t.app.metadata, "alpha", `digest-reader-${Math.random()}`, { scope: "read-only" })).token;
      await expectCode(byDigest({ blake3: blake3Hex(data), size: data.byteLength }, { token: reader, kind: "bad" }), Code.PermissionDenied);
      expect(await artifactsOfKind("bad")).toEqual([]);
    });
  });

  describe("garbage collection against a by-digest commit", () => {
    const gcDeps = () => ({ metadata: t.app.metadata, blobs: t.app.blobs, uploadStaleMs: 300_000 });
    /** Collection as if the grace period had long passed for everything deleted so far. */
    const collect = (dryRun: boolean) => collectGarbage(gcDeps(), { graceMs: 0, dryRun, now: new Date(Date.now() + 60_000) });
    /** Uploads `data` and deletes its artifact: the blob is unreferenced, reclaimable by the collector. */
    const uploadAndDelete = async (data: Uint8Array) => {
      const first = await upload(data, undefined, "raced");
      await t.client().deleteArtifact({ id: first.artifact!.id });
      return (await t.app.metadata.findBlob("alpha", blake3Hex(data)))!;
    };

    it("holds the blob from the header on: the collector leaves it while the stream is still open", async () => {
      const data = randomBytes(30_000);
      const digest = blake3Hex(data);
      await uploadAndDelete(data);
      expect((await collect(true)).blobs, "reclaimable before the by-digest upload").toBeGreaterThanOrEqual(1);
      const open = gate();
      const done = t.client().upload(
        (async function* (): AsyncIterable<UploadInit> {
          yield {
            message: {
              case: "header",
              value: { spec: { kind: "held-by-digest" }, expectedBlake3: digest, expectedSize: BigInt(data.length), contentByDigest: true },
            },
          };
          await open.wait();
        })(),
      );
      try {
        for (
          const deadline = Date.now() + 10_000;
          (await t.app.metadata.findReclaimableBlobs(new Date(Date.now() + 60_000), 1000)).some((b) => b.digest === digest);
        ) {
          if (Date.now() > deadline) throw new Error("the by-digest upload never held the blob");
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        await collect(false);
        expect(await t.app.metadata.findBlob("alpha", digest), "the held blob was kept").toBeDefined();
      } finally {
        open.open();
      }
      const result = await done;
      expect(result.deduplicated).toBe(true);
      expect((await download(result.artifact!.id)).equals(data)).toBe(true);
    });

    it("keeps the blob when the collector's reclaim, decided before, runs after the by-digest reference", async () => {
      const data = randomBytes(30_000);
      const digest = blake3Hex(data);
      const old = await uploadAndDelete(data);
      const atReclaim = gate();
      const reclaimed: boolean[] = [];
      const restore = gateCalls(t.app.metadata, "reclaimBlob", (_tenantId, blobDigest) => blobDigest === digest, atReclaim, reclaimed);
      try {
        const collecting = collect(false);
        await atReclaim.reached;
        const done = await byDigest({ blake3: digest, size: data.byteLength });
        expect(done.deduplicated).toBe(true);
        atReclaim.open();
        await collecting;
        expect(reclaimed, "the reclaim ran after the reference and was refused").toEqual([false]);
        expect((await t.app.metadata.findBlob("alpha", digest))?.storageKey).toBe(old.storageKey);
        expect(await t.app.blobs.stat(old.storageKey), "the stored object is still there").toBeDefined();
        expect((await download(done.artifact!.id)).equals(data)).toBe(true);
      } finally {
        restore();
        atReclaim.open();
      }
    });

    it("records nothing when the collector reclaimed the blob before the by-digest upload held it", async () => {
      const data = randomBytes(30_000);
      const digest = blake3Hex(data);
      const old = await uploadAndDelete(data);
      const beforeHold = gate();
      const held: boolean[] = [];
      const restore = gateCalls(t.app.metadata, "holdBlob", (_tenantId, blobDigest) => blobDigest === digest, beforeHold, held);
      try {
        const done = byDigest({ blake3: digest, size: data.byteLength }, { kind: "reclaimed-first" });
        await beforeHold.reached;
        expect((await collect(false)).blobs).toBeGreaterThanOrEqual(1);
        expect(await t.app.blobs.stat(old.storageKey), "the collector removed the object").toBeUndefined();
        beforeHold.open();
        await expectCode(done, Code.FailedPrecondition, /send the bytes/);
        expect(held, "the hold found no blob").toEqual([false]);
        expect(await artifactsOfKind("reclaimed-first"), "no artifact points at the reclaimed blob").toEqual([]);
      } finally {
        restore();
        beforeHold.open();
      }
    });

    it("records nothing when the blob is reclaimed between the hold and the commit", async () => {
      const data = randomBytes(30_000);
      const digest = blake3Hex(data);
      await uploadAndDelete(data);
      // The hold is taken and then lapses at once (as after a very long stream), so the collector may take the blob
      // while the stream is still open; the commit then finds it gone.
      let heldOnce!: () => void;
      const held = new Promise<void>((resolve) => (heldOnce = resolve));
      const restoreHold = interpose(t.app.metadata, "holdBlob", async (holdBlob, tenantId, blobDigest, holdMs) => {
        if (blobDigest !== digest) return holdBlob(tenantId, blobDigest, holdMs);
        const outcome = await holdBlob(tenantId, blobDigest, -60_000);
        heldOnce();
        return outcome;
      });
      const open = gate();
      try {
        const done = t.client().upload(
          (async function* (): AsyncIterable<UploadInit> {
            yield {
              message: {
                case: "header",
                value: { spec: { kind: "reclaimed-mid-stream" }, expectedBlake3: digest, expectedSize: BigInt(data.length), contentByDigest: true },
              },
            };
            await open.wait();
          })(),
        );
        await held;
        for (const deadline = Date.now() + 10_000; (await t.app.metadata.findBlob("alpha", digest)) !== undefined; ) {
          if (Date.now() > deadline) throw new Error("the collector never reclaimed the blob");
          await collect(false);
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        open.open();
        await expectCode(done, Code.FailedPrecondition, /send the bytes/);
        expect(await artifactsOfKind("reclaimed-mid-stream"), "no artifact points at the reclaimed blob").toEqual([]);
      } finally {
        restoreHold();
        open.open();
      }
    });

    // Postgres only: there the two transactions overlap (the embedded database runs one at a time). The by-digest
    // commit share-locks the blob row before it inserts its artifact; the collector's reclaim waits for that lock,
    // and then the foreign key holds the blob against it.
    it.runIf(backend === "postgres+minio")("keeps the blob when the collector reclaims it while a by-digest reference is committing", async () => {
      await collect(false);
      const data = randomBytes(30_000);
      const digest = blake3Hex(data);
      const old = await uploadAndDelete(data);
      // A hold that has already lapsed, so the collector does choose the blob.
      const restoreHold = interpose(t.app.metadata, "holdBlob", (holdBlob, tenantId, blobDigest, holdMs) =>
        holdBlob(tenantId, blobDigest, blobDigest === digest ? -60_000 : holdMs),
      );
      const reclaimed: boolean[] = [];
      const restoreReclaim = recordCalls(t.app.metadata, "reclaimBlob", (_tenantId, blobDigest) => blobDigest === digest, reclaimed);
      const admin = await openLockWatcher(t.databaseUrl!);
      try {
        // No artifact row can be inserted until this transaction ends: the by-digest commit stops after its share lock.
        await admin.query("begin");
        await admin.query("lock table artifacts in share mode");
        const done = byDigest({ blake3: digest, size: data.byteLength }, { kind: "committing-by-digest" });
        const [uploadWaiter] = await admin.untilWaiting(1);
        expect(uploadWaiter!.blockers).toEqual([admin.pid]);
        const collecting = collect(false);
        const waiters = await admin.untilWaiting(2);
        const collectorWaiter = waiters.find((w) => w.pid !== uploadWaiter!.pid);
        expect(collectorWaiter?.blockers, "the collector waits on the by-digest commit's lock on the blob row").toEqual([uploadWaiter!.pid]);
        await admin.query("rollback");
        const [result] = await Promise.all([done, collecting]);
        expect(result.deduplicated).toBe(true);
        expect(reclaimed, "the reclaim, waiting on the reference, was refused").toEqual([false]);
        expect((await t.app.metadata.findBlob("alpha", digest))?.storageKey).toBe(old.storageKey);
        expect(await t.app.blobs.stat(old.storageKey)).toBeDefined();
        expect((await download(result.artifact!.id)).equals(data)).toBe(true);
      } finally {
        await admin.close();
        restoreReclaim();
        restoreHold();
      }
    });
  });
});
