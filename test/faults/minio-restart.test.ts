import type { MessageInitShape } from "@bufbuild/protobuf";
import type { Client } from "minio";
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { UploadRequestSchema } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import { hasSessions } from "../../src/ports/blob-store.ts";
import { collectGarbage } from "../../src/service/maintenance.ts";
import { blobStoreState, unfinishedUploadsOf } from "../support/blob-store-state.ts";
import { minioClient } from "../support/minio-client.ts";
import { ensureMinioBinary, startMinio, type MinioServer } from "../support/minio-server.ts";
import { startTestApp, type TestApp } from "../support/test-app.ts";
import { describeOn } from "../support/test-backends.ts";

const MiB = 1024 * 1024;
const HOUR = 3_600_000;

/**
 * MinIO lists unfinished multipart uploads by an empty prefix from memory:
 * after a restart it shows none of those begun before, though their parts
 * stay on disk. Garbage collection must still find and abort the uploads no
 * record holds. A private MinIO (its own folder and port) is SIGKILLed and
 * started again under an app that uses it.
 */
describeOn("postgres+minio")("unfinished uploads across a MinIO restart", () => {
  let minio: MinioServer;
  let t: TestApp;
  let s3: Client;
  beforeAll(async () => {
    minio = await startMinio(ensureMinioBinary());
    t = await startTestApp("postgres+minio", {
      ARTIFACTD_S3_ENDPOINT: minio.endpoint,
      ARTIFACTD_S3_ACCESS_KEY: minio.accessKey,
      ARTIFACTD_S3_SECRET_KEY: minio.secretKey,
      ARTIFACTD_S3_PART_SIZE: String(5 * MiB),
      ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0",
    });
    s3 = minioClient(minio);
  }, 90_000);
  afterAll(async () => {
    await t?.close();
    await minio?.stop();
  });

  /** What MinIO lists under exactly this key: the one listing it answers from disk. */
  const uploadsUnder = async (key: string) => (await s3.listIncompleteUploadsQuery(t.bucket!, key, "", "", "")).uploads.filter((u) => u.key === key);
  const bucketWideListing = async () => (await s3.listIncompleteUploadsQuery(t.bucket!, "", "", "", "")).uploads;
  const download = async (id: string) => {
    const parts: Uint8Array[] = [];
    for await (const r of t.client().download({ id })) if (r.message.case === "chunk") parts.push(r.message.value);
    return Buffer.concat(parts);
  };

  it("finds and aborts uploads no record holds that were begun before the restart, and touches nothing live", async () => {
    const blobs = t.app.blobs;
    if (!hasSessions(blobs)) throw new Error("the blob store has no upload sessions");

    // Live: a stored artifact, and an open session with a part.
    const kept = randomBytes(12 * MiB);
    const stored = await t.client().upload(
      (async function* (): AsyncIterable<MessageInitShape<typeof UploadRequestSchema>> {
        yield { message: { case: "header", value: { spec: { kind: "kept" } } } };
        yield { message: { case: "chunk", value: kept } };
      })(),
    );
    const sessionPart = randomBytes(2000);
    const { session } = await t.client().createUploadSession({ spec: { kind: "kept-session" }, expectedSize: BigInt(sessionPart.length) });
    await t.client().uploadPart({ sessionId: session!.sessionId, partNumber: 1, data: sessionPart });

    // Abandoned, with no record of their keys: a session whose server died before writing its row, and a
    // streaming upload whose server died after its first part (the writer is simply never committed or aborted).
    const abandonedSession = await blobs.beginSession("alpha", blobs.newKey("alpha"));
    await blobs.putPart(abandonedSession.key, abandonedSession.ref, 1, randomBytes(1000));
    const abandonedStreamKey = blobs.newKey("alpha");
    const abandonedStream = await blobs.createWriter("alpha", abandonedStreamKey);
    await abandonedStream.write(randomBytes(6 * MiB));
    // Until its first 5 MiB part is stored, not only begun: a part still arriving when the test takes its view of
    // the bucket would show up in the view after the restart, as if the restart had changed something.
    const firstPartStored = async () => (await unfinishedUploadsOf(s3, t.bucket!, abandonedStreamKey)).some((upload) => upload.bytes >= 5 * MiB);
    for (const deadline = Date.now() + 10_000; !(await firstPartStored()); ) {
      if (Date.now() > deadline) throw new Error("the streaming upload never stored its first part");
      await new Promise((r) => setTimeout(r, 20));
    }
    const abandonedKeys = [abandonedSession.key, abandonedStreamKey];
    // The test's view of the bucket looks up the keys it knows itself, not only those the store journaled.
    const sessionKey = (await t.app.metadata.uploadSessions.get("alpha", session!.sessionId))!.storageKey;
    const bucketNow = () => blobStoreState(t, s3, [...abandonedKeys, sessionKey]);
    const before = await bucketNow();
    expect(before.entries.filter((entry) => entry.startsWith("multipart:"))).toHaveLength(3);

    await minio.kill();
    await minio.start();

    // The restart is what this test is about: MinIO's bucket-wide listing has forgotten every upload, parts on disk.
    expect(await bucketWideListing()).toEqual([]);
    for (const key of abandonedKeys) expect(await uploadsUnder(key), key).toHaveLength(1);
    expect(await bucketNow(), "the test's own view of the bucket survives the restart").toEqual(before);

    const gcDeps = { metadata: t.app.metadata, blobs, uploadStaleMs: 300_000 };
    const young = await collectGarbage(gcDeps, { graceMs: 0, dryRun: false, now: new Date(Date.now() + HOUR) });
    expect(young.abandonedUploads, "an upload an hour old may still be running").toBe(0);
    const swept = await collectGarbage(gcDeps, { graceMs: 0, dryRun: false, now: new Date(Date.now() + 26 * HOUR) });
    expect(swept.abandonedUploads).toBe(2);

    for (const key of abandonedKeys) expect(await uploadsUnder(key), key).toEqual([]);
    await expect(blobs.putPart(abandonedSession.key, abandonedSession.ref, 2, randomBytes(1000))).rejects.toThrow();
    const after = await bucketNow();
    expect(after.entries).toEqual(before.entries.filter((entry) => !abandonedKeys.some((key) => entry.endsWith(key))));
    expect(
      after.entries.filter((entry) => entry.startsWith("multipart:")),
      "the open session's upload",
    ).toHaveLength(1);

    // Nothing live was touched: the artifact reads back, the session completes with its part.
    expect((await download(stored.artifact!.id)).equals(kept)).toBe(true);
    const done = await t.client().completeUploadSession({ sessionId: session!.sessionId });
    expect((await download(done.artifact!.id)).equals(sessionPart)).toBe(true);
  }, 60_000);
});
