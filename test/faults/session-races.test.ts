import { Code } from "@connectrpc/connect";
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { blake3Hex } from "../../src/blake3.ts";
import { hasSessions } from "../../src/ports/blob-store.ts";
import { expectCode } from "../support/expect-code.ts";
import { gate, interpose } from "../support/interpose.ts";
import { storedObjects } from "../support/stored-objects.ts";
import { BACKENDS, startTestApp, type TestApp } from "../support/test-app.ts";

const MiB = 1024 * 1024;

/**
 * Upload session calls racing each other, each order forced: one call is
 * stopped inside the store (at a gate on the app's own store instance) while
 * the other runs to its answer. An Abort and a Complete never both answer
 * OK; two creates with one idempotency key make one session.
 */
describe.each(BACKENDS)("upload session races on %s", (backend) => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp(backend, { ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0" });
  });
  afterAll(async () => {
    await t?.close();
  });

  const download = async (id: string) => {
    const parts: Uint8Array[] = [];
    for await (const r of t.client().download({ id })) if (r.message.case === "chunk") parts.push(r.message.value);
    return Buffer.concat(parts);
  };
  const sessionWithOnePart = async (data: Uint8Array) => {
    const { session } = await t.client().createUploadSession({ spec: { kind: "abort-race" }, partSize: BigInt(5 * MiB) });
    await t.client().uploadPart({ sessionId: session!.sessionId, partNumber: 1, data });
    return session!.sessionId;
  };

  it("gives two creates racing with one idempotency key one session, and removes the loser's upload", async () => {
    const earlier = new Set(await storedObjects(t).unfinishedUploads());
    const keys: string[] = [];
    const restoreBegin = interpose(t.app.metadata.uploadsInFlight, "begin", (begin, tenantId, storageKey) => {
      keys.push(storageKey);
      return begin(tenantId, storageKey);
    });
    // Both creates have found no session for the key and begun an upload before either records its session.
    const bothBegun = gate(2);
    void bothBegun.reached.then(() => bothBegun.open());
    const restoreCreate = interpose(t.app.metadata.uploadSessions, "create", async (create, ...args) => {
      await bothBegun.wait();
      return create(...args);
    });
    try {
      const request = { spec: { kind: "idempotent-race" }, partSize: BigInt(5 * MiB), idempotencyKey: `k-${Math.random().toString(36).slice(2)}` };
      const [a, b] = await Promise.all([t.client().createUploadSession(request), t.client().createUploadSession(request)]);
      expect(a.session!.sessionId, "both creates answer the one session").toBe(b.session!.sessionId);
      expect(keys).toHaveLength(2);
      const winner = (await t.app.metadata.uploadSessions.get("alpha", a.session!.sessionId))!.storageKey;
      const loser = keys.find((key) => key !== winner)!;
      expect(keys).toContain(winner);
      // Entries name the key (S3) or the uuid that ends it (the folder store's session folder).
      const left = (await storedObjects(t).unfinishedUploads()).filter((entry) => !earlier.has(entry));
      expect(left.length, "the session's upload is there").toBeGreaterThan(0);
      expect(
        left.filter((entry) => !entry.includes(winner.slice(-36))),
        "and nothing of the loser's",
      ).toEqual([]);
      expect([...(await t.app.metadata.knownStorageKeys([loser]))], "whose key is no longer held").toEqual([]);
      const data = randomBytes(2000);
      await t.client().uploadPart({ sessionId: a.session!.sessionId, partNumber: 1, data });
      const done = await t.client().completeUploadSession({ sessionId: a.session!.sessionId });
      expect((await download(done.artifact!.id)).equals(data)).toBe(true);
    } finally {
      restoreCreate();
      restoreBegin();
      bothBegun.open();
    }
  });

  it("answers ABORTED to an Abort while a Complete holds the session, and the Complete's artifact stands", async () => {
    const data = randomBytes(3000);
    const id = await sessionWithOnePart(data);
    const blobs = t.app.blobs;
    if (!hasSessions(blobs)) throw new Error("the blob store has no upload sessions");
    // The complete has claimed the session; stop it before it assembles the parts.
    const assembling = gate();
    const restore = interpose(blobs, "completeSession", async (completeSession, ...args) => {
      await assembling.wait();
      return completeSession(...args);
    });
    try {
      const completing = t.client().completeUploadSession({ sessionId: id });
      await assembling.reached;
      await expectCode(t.client().abortUploadSession({ sessionId: id }), Code.Aborted, /being completed/);
      assembling.open();
      const done = await completing;
      expect(done.artifact!.blake3).toBe(blake3Hex(data));
      expect((await t.client().completeUploadSession({ sessionId: id })).artifact!.id, "a retried complete returns the same artifact").toBe(done.artifact!.id);
      await expectCode(t.client().abortUploadSession({ sessionId: id }), Code.FailedPrecondition, /already completed/);
      expect((await download(done.artifact!.id)).equals(data)).toBe(true);
    } finally {
      restore();
      assembling.open();
    }
  });

  it("answers ABORTED to a second Complete while the first holds the session, and a retry returns the first's artifact", async () => {
    const data = randomBytes(3000);
    const id = await sessionWithOnePart(data);
    const blobs = t.app.blobs;
    if (!hasSessions(blobs)) throw new Error("the blob store has no upload sessions");
    // Only the first complete is stopped: a second one reaching the assembly would be the bug.
    const assembling = gate();
    let calls = 0;
    const restore = interpose(blobs, "completeSession", async (completeSession, ...args) => {
      if (calls++ === 0) await assembling.wait();
      return completeSession(...args);
    });
    try {
      const first = t.client().completeUploadSession({ sessionId: id });
      await assembling.reached;
      await expectCode(t.client().completeUploadSession({ sessionId: id }), Code.Aborted, /being completed by another call/);
      assembling.open();
      const done = await first;
      expect((await t.client().completeUploadSession({ sessionId: id })).artifact!.id).toBe(done.artifact!.id);
      expect((await t.client().listArtifacts({ filter: { kind: "abort-race" } })).artifacts.filter((a) => a.blake3 === blake3Hex(data))).toHaveLength(1);
      expect((await download(done.artifact!.id)).equals(data)).toBe(true);
    } finally {
      restore();
      assembling.open();
    }
  });

  it("refuses a part stored while a Complete claimed the session (FAILED_PRECONDITION): the artifact is what was there before", async () => {
    const data = randomBytes(3000);
    const id = await sessionWithOnePart(data);
    const blobs = t.app.blobs;
    if (!hasSessions(blobs)) throw new Error("the blob store has no upload sessions");
    // The part call found the session open and stored its part; stop it before it records the part.
    const stored = gate();
    const restore = interpose(blobs, "putPart", async (putPart, ...args) => {
      const result = await putPart(...args);
      await stored.wait();
      return result;
    });
    try {
      const late = t.client().uploadPart({ sessionId: id, partNumber: 2, data: randomBytes(1000) });
      await stored.reached;
      const done = await t.client().completeUploadSession({ sessionId: id });
      stored.open();
      await expectCode(late, Code.FailedPrecondition, /began completing/);
      expect(done.artifact!.sizeBytes).toBe(BigInt(data.length));
      expect((await download(done.artifact!.id)).equals(data)).toBe(true);
    } finally {
      restore();
      stored.open();
    }
  });

  it("answers NOT_FOUND to a Complete after an Abort dropped the session, and leaves nothing stored", async () => {
    const objects = storedObjects(t);
    const before = await objects.keys();
    const id = await sessionWithOnePart(randomBytes(3000));
    // The abort has dropped the session's row; stop it before it removes the stored parts.
    const dropped = gate();
    const restore = interpose(t.app.metadata.uploadSessions, "abandon", async (abandon, ...args) => {
      const result = await abandon(...args);
      if ("deleted" in result) await dropped.wait();
      return result;
    });
    try {
      const aborting = t.client().abortUploadSession({ sessionId: id });
      await dropped.reached;
      await expectCode(t.client().completeUploadSession({ sessionId: id }), Code.NotFound);
      dropped.open();
      await aborting;
      await expectCode(t.client().getUploadSession({ sessionId: id }), Code.NotFound);
      expect(await objects.keysSince(before), "no object was assembled").toEqual([]);
      expect(await objects.unfinishedUploads(), "and no part is left").toEqual([]);
    } finally {
      restore();
      dropped.open();
    }
  });
});
