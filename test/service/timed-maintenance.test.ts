import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import type { UploadRequestSchema } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import { blobStoreState } from "../support/blob-store-state.ts";
import { openEventWatcher, type EventWatcher } from "../support/event-watcher.ts";
import { expectCode } from "../support/expect-code.ts";
import { minioClient } from "../support/minio-client.ts";
import { BACKENDS, startTestApp, type TestApp } from "../support/test-app.ts";

const GC_GRACE_MS = 1_500;
const SESSION_TTL_MS = 3_000;
const EVENT_RETENTION_MS = 5_000;

/**
 * The server's own maintenance timer, configured short, seen only from
 * outside: through the API, a watcher, the database's records and the blob
 * store itself. Nothing here calls a maintenance function.
 */
describe.each(BACKENDS)("timed maintenance on %s", (backend) => {
  let t: TestApp;
  let watcher: EventWatcher;
  const run = `maint-${Math.random().toString(36).slice(2)}`;
  beforeAll(async () => {
    t = await startTestApp(backend, {
      ARTIFACTD_MAINTENANCE_INTERVAL_MS: "100",
      ARTIFACTD_GC_GRACE_MS: String(GC_GRACE_MS),
      ARTIFACTD_UPLOAD_SESSION_TTL_MS: String(SESSION_TTL_MS),
      ARTIFACTD_EVENT_RETENTION_MS: String(EVENT_RETENTION_MS),
    });
    watcher = await openEventWatcher(t.client(), run);
  });
  afterAll(async () => {
    await watcher?.close();
    await t?.close();
  });

  const storeEntries = async () => (await blobStoreState(t, backend === "postgres+minio" ? minioClient() : undefined)).entries;
  const upload = async (data: Uint8Array, name: string) => {
    async function* messages(): AsyncIterable<MessageInitShape<typeof UploadRequestSchema>> {
      yield { message: { case: "header", value: { spec: { kind: "gc-target", name, provenance: { runId: run } } } } };
      yield { message: { case: "chunk", value: data } };
    }
    return (await t.client().upload(messages())).artifact!;
  };

  it("soft-deletes an unpinned artifact once its expiry passes, keeps a pinned one, and tells the watcher", async () => {
    // The same expiry for both: whichever pass deletes one had the other due too. Far enough ahead to still be
    // in the future when both are saved (a past expiry is refused).
    const expiresAt = timestampFromDate(new Date(Date.now() + 2_000));
    const save = async (name: string, pinned: boolean) =>
      (await t.client().saveInline({ spec: { kind: "expiring", name, pinned, expiresAt, provenance: { runId: run } }, content: { case: "text", value: name } }))
        .artifact!;
    const pinned = await save("pinned", true);
    const unpinned = await save("unpinned", false);

    const deleted = await vi.waitFor(
      async () => {
        const { artifact } = await t.client().getArtifact({ id: unpinned.id });
        if (!artifact!.deletedAt) throw new Error("not expired yet");
        return artifact!;
      },
      { timeout: 10_000, interval: 50 },
    );
    expect(timestampDate(deleted.deletedAt!).getTime()).toBeGreaterThanOrEqual(timestampDate(expiresAt).getTime());
    const listed = async (includeDeleted: boolean) =>
      (await t.client().listArtifacts({ filter: { kind: "expiring", includeDeleted, provenance: { runId: run } } })).artifacts.map((a) => [
        a.name,
        !!a.deletedAt,
      ]);
    expect(await listed(false)).toEqual([["pinned", false]]);
    expect((await listed(true)).sort()).toEqual([
      ["pinned", false],
      ["unpinned", true],
    ]);
    expect((await t.client().getArtifact({ id: pinned.id })).artifact!.deletedAt).toBeUndefined();

    expect(await watcher.waitFor("DELETED", unpinned.id)).toMatchObject({ kind: "expiring" });
    await watcher.sync();
    expect(watcher.events.filter((e) => e.id === pinned.id || e.id === unpinned.id)).toEqual([
      { type: "CREATED", id: pinned.id, kind: "expiring" },
      { type: "CREATED", id: unpinned.id, kind: "expiring" },
      { type: "DELETED", id: unpinned.id, kind: "expiring" },
    ]);
  });

  it("reclaims a deleted artifact's blob row and stored object once the grace has passed, and sends no event for it", async () => {
    const data = randomBytes(64 * 1024);
    const artifact = await upload(data, "reclaimed.bin");
    const blob = await t.app.metadata.findBlob("alpha", artifact.blake3);
    expect(blob, "the upload recorded a blob").toBeDefined();
    const stored = backend === "postgres+minio" ? `object:${blob!.storageKey}` : `blobs:${blob!.storageKey}`;
    expect(await storeEntries()).toContain(stored);

    const { artifact: deleted } = await t.client().deleteArtifact({ id: artifact.id });
    const deletedAt = timestampDate(deleted!.deletedAt!).getTime();
    await watcher.waitFor("DELETED", artifact.id);

    await vi.waitFor(
      async () => {
        if (await t.app.metadata.findBlob("alpha", artifact.blake3)) throw new Error("the blob row is still there");
      },
      { timeout: 10_000, interval: 50 },
    );
    // Not a moment before the grace: the deletion may still be undone by an upload of the same content.
    expect(Date.now()).toBeGreaterThanOrEqual(deletedAt + GC_GRACE_MS);
    // The row goes first and its key is released; the object follows by that key.
    await vi.waitFor(
      async () => {
        expect(await storeEntries()).not.toContain(stored);
      },
      { timeout: 10_000, interval: 50 },
    );

    await watcher.sync();
    expect(watcher.events.filter((e) => e.id === artifact.id)).toEqual([
      { type: "CREATED", id: artifact.id, kind: "gc-target" },
      { type: "DELETED", id: artifact.id, kind: "gc-target" },
    ]);
  });

  it("sweeps an upload session left idle past its expiry: its parts leave the store, its record goes, it answers NOT_FOUND", async () => {
    const before = await storeEntries();
    const part = randomBytes(1024);
    const { session } = await t.client().createUploadSession({
      spec: { kind: "abandoned", provenance: { runId: run } },
      expectedSize: BigInt(part.length),
    });
    const id = session!.sessionId;
    await t.client().uploadPart({ sessionId: id, partNumber: 1, data: part });
    const record = await t.app.metadata.uploadSessions.get("alpha", id);
    expect(record).toBeDefined();
    const partsStored = (await storeEntries()).filter((e) => !before.includes(e));
    expect(partsStored.length, "the part is in the store").toBeGreaterThan(0);

    await vi.waitFor(
      async () => {
        if (await t.app.metadata.uploadSessions.get("alpha", id)) throw new Error("the session record is still there");
      },
      { timeout: SESSION_TTL_MS + 10_000, interval: 50 },
    );
    expect(Date.now()).toBeGreaterThanOrEqual(record!.expiresAt.getTime());
    await vi.waitFor(
      async () => {
        const now = await storeEntries();
        expect(partsStored.filter((e) => now.includes(e))).toEqual([]);
      },
      { timeout: 10_000, interval: 50 },
    );
    await expectCode(t.client().getUploadSession({ sessionId: id }), Code.NotFound, /does not exist or has expired/);
    await expectCode(t.client().uploadPart({ sessionId: id, partNumber: 1, data: part }), Code.NotFound);

    // A session is not an artifact: its sweep is no news to watchers.
    await watcher.sync();
    expect(watcher.events.filter((e) => e.kind === "abandoned")).toEqual([]);
  });

  it("prunes events older than the retention: resuming after one then answers OUT_OF_RANGE", async () => {
    const { artifact } = await t.client().saveInline({ spec: { kind: "short-lived-news", provenance: { runId: run } }, content: { case: "text", value: "x" } });
    const { cursor } = await watcher.waitFor("CREATED", artifact!.id);
    const createdAt = timestampDate(artifact!.createdAt!).getTime();
    // Something after the cursor, so that a resume the log can still serve answers at once.
    await watcher.sync();

    const resumeAnswer = async (): Promise<Code | "event"> => {
      const controller = new AbortController();
      try {
        for await (const _ of t.client().watchArtifacts({ filter: { provenance: { runId: run } }, resumeAfter: cursor }, { signal: controller.signal })) {
          return "event";
        }
        throw new Error("the resumed watch ended without an answer");
      } catch (error) {
        return ConnectError.from(error).code;
      } finally {
        controller.abort();
      }
    };
    expect(await resumeAnswer(), "a resume within the retention is served").toBe("event");
    await vi.waitFor(
      async () => {
        expect(await resumeAnswer()).toBe(Code.OutOfRange);
      },
      { timeout: EVENT_RETENTION_MS + 10_000, interval: 100 },
    );
    expect(Date.now()).toBeGreaterThanOrEqual(createdAt + EVENT_RETENTION_MS);
  });
});
