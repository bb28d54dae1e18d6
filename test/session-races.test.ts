import { Code } from "@connectrpc/connect";
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { blake3Hex } from "../src/blake3.ts";
import { hasSessions } from "../src/ports/blob-store.ts";
import { expectCode } from "./support/expect-code.ts";
import { gate, interpose } from "./support/interpose.ts";
import { storedObjects } from "./support/stored-objects.ts";
import { BACKENDS, startTestApp, type TestApp } from "./support/test-app.ts";

const MiB = 1024 * 1024;

/**
 * An Abort and a Complete of one upload session never both answer OK. Each
 * order is forced: one call is stopped inside the store, at the moment its
 * compare-and-set has committed, while the other runs to its answer.
 */
describe.each(BACKENDS)("an Abort racing a Complete on %s", (backend) => {
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
