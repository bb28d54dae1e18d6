import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { randomBytes } from "node:crypto";
import { readdirSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { blake3Hex } from "../../src/blake3.ts";
import { UploadSessionState, type UploadRequestSchema } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import { expireUploadSessions } from "../../src/service/upload-sessions.ts";
import { minioClient } from "../support/minio-client.ts";
import { BACKENDS, startTestApp, type TestApp } from "../support/test-app.ts";
import { expectCode } from "../support/expect-code.ts";

const MiB = 1024 * 1024;
const PART = 5 * MiB;
type UploadInit = MessageInitShape<typeof UploadRequestSchema>;

describe.each(BACKENDS)("upload sessions on %s", (backend) => {
  let t: TestApp;
  let other: TestApp | undefined;
  beforeAll(async () => {
    t = await startTestApp(backend, { ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0" });
  });
  afterAll(async () => {
    await other?.close();
    await t?.close();
  });

  /** What the blob store still holds for sessions: S3 multipart uploads, or session folders. */
  const leftovers = async (): Promise<string[]> => {
    if (backend === "pglite+fs") return readdirSync(path.join(t.dataDir, "blobs", "sessions"));
    const client = minioClient();
    const uploads: string[] = [];
    for await (const u of client.listIncompleteUploads(t.bucket!, "", true)) uploads.push((u as { key: string }).key);
    return uploads;
  };
  const download = async (id: string, client = t.client()) => {
    const parts: Uint8Array[] = [];
    for await (const r of client.download({ id })) if (r.message.case === "chunk") parts.push(r.message.value);
    return Buffer.concat(parts);
  };
  const partsOf = (data: Buffer) => Array.from({ length: Math.ceil(data.length / PART) }, (_, i) => data.subarray(i * PART, (i + 1) * PART));

  it("takes parts out of order and in parallel, then completes with a verified digest", async () => {
    const data = randomBytes(3 * PART + 1234);
    const { session } = await t.client().createUploadSession({
      spec: { kind: "dataset", name: "parallel.bin" },
      expectedSize: BigInt(data.length),
      expectedBlake3: blake3Hex(data),
      partSize: BigInt(PART),
    });
    expect(session!.state).toBe(UploadSessionState.OPEN);
    const parts = partsOf(data);
    await Promise.all(
      [3, 1, 4, 2].map((n) =>
        t.client().uploadPart({ sessionId: session!.sessionId, partNumber: n, data: parts[n - 1]!, partBlake3: blake3Hex(parts[n - 1]!) }),
      ),
    );
    // A duplicate part replaces the earlier one.
    await t.client().uploadPart({ sessionId: session!.sessionId, partNumber: 2, data: parts[1]! });
    const status = await t.client().getUploadSession({ sessionId: session!.sessionId });
    expect(status.session!.committedParts).toEqual([1, 2, 3, 4]);
    expect(status.session!.committedBytes).toBe(BigInt(data.length));
    const done = await t.client().completeUploadSession({ sessionId: session!.sessionId });
    expect(done.artifact!.blake3).toBe(blake3Hex(data));
    expect(done.artifact!.name).toBe("parallel.bin");
    expect((await download(done.artifact!.id)).equals(data)).toBe(true);
    // A retried complete (the response was lost) gives the same artifact, no duplicate.
    const again = await t.client().completeUploadSession({ sessionId: session!.sessionId });
    expect(again.artifact!.id).toBe(done.artifact!.id);
    const listed = await t.client().listArtifacts({ filter: { namePrefix: "parallel.bin" } });
    expect(listed.artifacts).toHaveLength(1);
    expect(await leftovers()).toEqual([]);
  });

  it("returns the same session for a retried create with the same idempotency key", async () => {
    const request = { spec: { kind: "log" }, idempotencyKey: `key-${Math.random()}`, partSize: BigInt(PART) };
    const [a, b] = await Promise.all([t.client().createUploadSession(request), t.client().createUploadSession(request)]);
    const c = await t.client().createUploadSession(request);
    expect(b.session!.sessionId).toBe(a.session!.sessionId);
    expect(c.session!.sessionId).toBe(a.session!.sessionId);
    await t.client().abortUploadSession({ sessionId: a.session!.sessionId });
    await expectCode(t.client().getUploadSession({ sessionId: a.session!.sessionId }), Code.NotFound);
    expect(await leftovers()).toEqual([]);
  });

  it("refuses bad parts and incomplete completes with clear errors", async () => {
    const data = randomBytes(2 * PART + 10);
    const parts = partsOf(data);
    const { session } = await t.client().createUploadSession({ spec: { kind: "x" }, expectedSize: BigInt(data.length), partSize: BigInt(PART) });
    const id = session!.sessionId;
    await expectCode(t.client().uploadPart({ sessionId: id, partNumber: 0, data: parts[0]! }), Code.InvalidArgument, /out of range/);
    await expectCode(t.client().uploadPart({ sessionId: id, partNumber: 10_001, data: parts[0]! }), Code.InvalidArgument, /out of range/);
    await expectCode(t.client().uploadPart({ sessionId: id, partNumber: 1, data: parts[2]! }), Code.InvalidArgument, /must have 5242880/);
    await expectCode(t.client().uploadPart({ sessionId: id, partNumber: 4, data: parts[2]! }), Code.InvalidArgument, /past the end/);
    await expectCode(t.client().uploadPart({ sessionId: id, partNumber: 1, data: parts[0]!, partBlake3: "0".repeat(64) }), Code.InvalidArgument, /BLAKE3/);
    await t.client().uploadPart({ sessionId: id, partNumber: 1, data: parts[0]! });
    await t.client().uploadPart({ sessionId: id, partNumber: 3, data: parts[2]! });
    await expectCode(t.client().completeUploadSession({ sessionId: id }), Code.FailedPrecondition, /missing part\(s\) 2/);
    // Still usable: add the missing part and complete.
    await t.client().uploadPart({ sessionId: id, partNumber: 2, data: parts[1]! });
    const done = await t.client().completeUploadSession({ sessionId: id });
    expect((await download(done.artifact!.id)).equals(data)).toBe(true);

    await expectCode(t.client().getUploadSession({ sessionId: "ups_00000000000000000000000000" }), Code.NotFound, /does not exist or has expired/);
    await expectCode(t.client().getUploadSession({ sessionId: "nope" }), Code.InvalidArgument, /not an upload session id/);
    await expectCode(t.client().createUploadSession({ spec: { kind: "x" }, partSize: 1024n }), Code.InvalidArgument, /part_size/);
    await expectCode(t.client(t.tokens.beta).getUploadSession({ sessionId: id }), Code.NotFound);
  });

  it("refuses a wrong whole-content digest and stores nothing", async () => {
    const data = randomBytes(PART + 5);
    const parts = partsOf(data);
    const { session } = await t
      .client()
      .createUploadSession({ spec: { kind: "x", name: "wrong-digest" }, expectedBlake3: "a".repeat(64), partSize: BigInt(PART) });
    for (const [i, part] of parts.entries()) await t.client().uploadPart({ sessionId: session!.sessionId, partNumber: i + 1, data: part });
    await expectCode(
      t.client().completeUploadSession({ sessionId: session!.sessionId }),
      Code.InvalidArgument,
      /BLAKE3 is [0-9a-f]{64} but the session declared/,
    );
    expect((await t.client().listArtifacts({ filter: { namePrefix: "wrong-digest" } })).artifacts).toEqual([]);
    expect(await t.app.metadata.findBlob("alpha", blake3Hex(data))).toBeUndefined();
    expect(await leftovers()).toEqual([]);
  });

  it("deduplicates completed sessions against stored content, and handles empty uploads", async () => {
    const data = randomBytes(1000);
    const first = await t.client().createUploadSession({ spec: { kind: "x" }, partSize: BigInt(PART) });
    await t.client().uploadPart({ sessionId: first.session!.sessionId, partNumber: 1, data });
    const a = await t.client().completeUploadSession({ sessionId: first.session!.sessionId });
    const second = await t.client().createUploadSession({ spec: { kind: "x" }, partSize: BigInt(PART) });
    await t.client().uploadPart({ sessionId: second.session!.sessionId, partNumber: 1, data });
    const secondKey = (await t.app.metadata.uploadSessions.get("alpha", second.session!.sessionId))!.storageKey;
    const b = await t.client().completeUploadSession({ sessionId: second.session!.sessionId });
    expect(a.deduplicated).toBe(false);
    expect(b.deduplicated).toBe(true);
    // The second session's own copy is surplus: gone at once, not left for a later collection.
    expect(await t.app.blobs.stat(secondKey)).toBeUndefined();
    const empty = await t.client().createUploadSession({ spec: { kind: "x" }, expectedSize: 0n, partSize: BigInt(PART) });
    const e = await t.client().completeUploadSession({ sessionId: empty.session!.sessionId });
    expect(e.artifact!.sizeBytes).toBe(0n);
    expect(await leftovers()).toEqual([]);
  });

  it("expires sessions: the sweeper removes them and their stored parts", async () => {
    const { session } = await t.client().createUploadSession({ spec: { kind: "x" }, partSize: BigInt(PART) });
    await t.client().uploadPart({ sessionId: session!.sessionId, partNumber: 1, data: randomBytes(PART) });
    expect(await leftovers()).toHaveLength(1);
    const removed = await expireUploadSessions({ metadata: t.app.metadata, blobs: t.app.blobs, uploadStaleMs: 300_000 }, new Date(Date.now() + 7 * 3_600_000));
    expect(removed).toBeGreaterThanOrEqual(1);
    expect(await leftovers()).toEqual([]);
    await expectCode(t.client().getUploadSession({ sessionId: session!.sessionId }), Code.NotFound);
  });

  it("resumes a streaming upload after the stream drops", async () => {
    const data = randomBytes(3 * PART + 777);
    const { session } = await t
      .client()
      .createUploadSession({ spec: { kind: "model", name: "resumed" }, expectedBlake3: blake3Hex(data), partSize: BigInt(PART) });
    const sessionId = session!.sessionId;
    // First stream: 2.5 parts, then the client goes away.
    const controller = new AbortController();
    async function* firstStream(): AsyncIterable<UploadInit> {
      yield { message: { case: "header", value: { sessionId } } };
      for (let i = 0; i < 2.5 * PART; i += MiB) yield { message: { case: "chunk", value: data.subarray(i, Math.min(i + MiB, 2.5 * PART)) } };
      // Wait until the server has stored what it can, then drop.
      for (let i = 0; i < 100; i++) {
        const status = await t.client().getUploadSession({ sessionId });
        if (status.session!.resumeOffset >= BigInt(2 * PART)) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      controller.abort();
    }
    await expectCode(t.client().upload(firstStream(), { signal: controller.signal }), Code.Canceled);
    // The client sees its cancel at once; the server lets go of the session only when the dropped stream's handler
    // has ended. A raw client (no retries) that resumed before then would be told ABORTED: the session is held.
    await vi.waitFor(() => expect(t.app.server.callsInFlight, "the dropped stream's handler is still running").toBe(0), { timeout: 10_000, interval: 20 });
    const status = await t.client().getUploadSession({ sessionId });
    const resumeOffset = Number(status.session!.resumeOffset);
    expect(resumeOffset).toBe(2 * PART);
    for (const offset of [123n, BigInt(resumeOffset + PART)]) {
      await expectCode(
        t.client().upload(
          (async function* (): AsyncIterable<UploadInit> {
            yield { message: { case: "header", value: { sessionId, offset } } };
          })(),
        ),
        Code.FailedPrecondition,
        /give a multiple of its part size \(5242880\) no greater than resume_offset \(10485760\)/,
      );
    }
    // One part behind resume_offset (a client that asked a moment too early): that part is sent again and replaces the stored one.
    const from = resumeOffset - PART;
    async function* rest(): AsyncIterable<UploadInit> {
      yield { message: { case: "header", value: { sessionId, offset: BigInt(from) } } };
      for (let i = from; i < data.length; i += MiB) yield { message: { case: "chunk", value: data.subarray(i, i + MiB) } };
      yield { message: { case: "trailer", value: { labels: { resumed: "yes" } } } };
    }
    const done = await t.client().upload(rest());
    expect(done.artifact!.blake3).toBe(blake3Hex(data));
    expect(done.artifact!.labels).toEqual({ resumed: "yes" });
    expect((await download(done.artifact!.id)).equals(data)).toBe(true);
    expect(await leftovers()).toEqual([]);
  });

  it.runIf(backend === "postgres+minio")("lets a second service instance continue a session the first one started", async () => {
    // A second replica on the same database and bucket.
    other = await startTestApp(backend, {
      ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0",
      DATABASE_URL: t.databaseUrl!,
      ARTIFACTD_S3_BUCKET: t.bucket!,
    });
    const data = randomBytes(PART + 99);
    const parts = partsOf(data);
    const { session } = await t.client().createUploadSession({ spec: { kind: "x", name: "two-replicas" }, partSize: BigInt(PART) });
    await t.client().uploadPart({ sessionId: session!.sessionId, partNumber: 1, data: parts[0]! });
    const otherClient = other.client(t.tokens.alpha);
    await otherClient.uploadPart({ sessionId: session!.sessionId, partNumber: 2, data: parts[1]! });
    const done = await otherClient.completeUploadSession({ sessionId: session!.sessionId });
    expect((await download(done.artifact!.id)).equals(data)).toBe(true);
  });

  it("returns the same session for a retried create after an input was deleted or spec.expires_at passed", async () => {
    const input = (await t.client().saveInline({ spec: { kind: "source" }, content: { case: "text", value: "in" } })).artifact!;
    const withInput = {
      spec: { kind: "derived", inputs: [{ artifactId: input.id, role: "source" }] },
      idempotencyKey: `input-${Math.random()}`,
      partSize: BigInt(PART),
    };
    const expiry = new Date(Date.now() + 1500);
    const withExpiry = { spec: { kind: "derived", expiresAt: timestampFromDate(expiry) }, idempotencyKey: `expiry-${Math.random()}`, partSize: BigInt(PART) };
    const a = (await t.client().createUploadSession(withInput)).session!;
    const b = (await t.client().createUploadSession(withExpiry)).session!;
    await t.client().deleteArtifact({ id: input.id });
    await new Promise((r) => setTimeout(r, Math.max(0, expiry.getTime() - Date.now() + 200)));
    expect((await t.client().createUploadSession(withInput)).session!.sessionId).toBe(a.sessionId);
    expect((await t.client().createUploadSession(withExpiry)).session!.sessionId).toBe(b.sessionId);
    // A new key is a new create, checked afresh.
    await expectCode(t.client().createUploadSession({ ...withInput, idempotencyKey: `new-${Math.random()}` }), Code.FailedPrecondition, /deleted/);
    await expectCode(
      t.client().createUploadSession({ ...withExpiry, idempotencyKey: `new-${Math.random()}` }),
      Code.InvalidArgument,
      /expires_at is in the past/,
    );
    await expectCode(
      t.client().createUploadSession({ ...withExpiry, idempotencyKey: "k".repeat(129) }),
      Code.InvalidArgument,
      /idempotency_key is longer than 128/,
    );
    await expectCode(t.client().createUploadSession({ ...withExpiry, idempotencyKey: "k\u0000" }), Code.InvalidArgument, /idempotency_key contains a NUL/);
    for (const session of [a, b]) await t.client().abortUploadSession({ sessionId: session.sessionId });
    expect(await leftovers()).toEqual([]);
  });

  it("replaces a part sent again: wrong bytes first, then the right ones", async () => {
    const data = randomBytes(2 * PART + 321);
    const parts = partsOf(data);
    // No expected_blake3: only the replacement can make the content right.
    const { session } = await t.client().createUploadSession({ spec: { kind: "x", name: "resent-parts" }, partSize: BigInt(PART) });
    const sessionId = session!.sessionId;
    await t.client().uploadPart({ sessionId, partNumber: 1, data: randomBytes(PART) });
    await t.client().uploadPart({ sessionId, partNumber: 2, data: parts[1]! });
    // The last part, wrong and of another length.
    await t.client().uploadPart({ sessionId, partNumber: 3, data: randomBytes(1000) });
    await t.client().uploadPart({ sessionId, partNumber: 1, data: parts[0]! });
    await t.client().uploadPart({ sessionId, partNumber: 3, data: parts[2]! });
    const status = await t.client().getUploadSession({ sessionId });
    expect(status.session!.committedParts).toEqual([1, 2, 3]);
    expect(status.session!.committedBytes).toBe(BigInt(data.length));
    const done = await t.client().completeUploadSession({ sessionId });
    expect(done.artifact!.blake3).toBe(blake3Hex(data));
    expect(done.artifact!.sizeBytes).toBe(BigInt(data.length));
    expect((await download(done.artifact!.id)).equals(data)).toBe(true);
    expect(await leftovers()).toEqual([]);
  });

  it("answers not_found for an expired session the sweeper has not removed yet", async () => {
    // Expiry is decided on each call against the session's expires_at; the sweeper only reclaims space.
    const short = await startTestApp(backend, { ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0", ARTIFACTD_UPLOAD_SESSION_TTL_MS: "1000" });
    try {
      const client = short.client();
      const { session } = await client.createUploadSession({ spec: { kind: "x" }, partSize: BigInt(PART) });
      const sessionId = session!.sessionId;
      await client.uploadPart({ sessionId, partNumber: 1, data: randomBytes(1000) });
      const expiresAt = timestampDate(session!.expiresAt!);
      await new Promise((r) => setTimeout(r, Math.max(0, expiresAt.getTime() - Date.now() + 100)));
      expect((await short.app.metadata.uploadSessions.get("alpha", sessionId))?.id).toBe(sessionId);
      const gone = /upload session ups_\w+ does not exist or has expired: create a new one/;
      await expectCode(client.uploadPart({ sessionId, partNumber: 2, data: randomBytes(1000) }), Code.NotFound, gone);
      await expectCode(client.getUploadSession({ sessionId }), Code.NotFound, gone);
      await expectCode(client.completeUploadSession({ sessionId }), Code.NotFound, gone);
      // Nothing was made of it, and it is still there for the sweeper.
      expect((await client.listArtifacts({})).artifacts).toEqual([]);
      expect(await short.app.metadata.uploadSessions.get("alpha", sessionId)).toBeDefined();
      expect(await expireUploadSessions({ metadata: short.app.metadata, blobs: short.app.blobs, uploadStaleMs: 300_000 })).toBe(1);
      expect(await short.app.metadata.uploadSessions.get("alpha", sessionId)).toBeUndefined();
    } finally {
      await short.close();
    }
  });

  it("refuses at complete a short part that is not the last when no expected_size was given, and stays usable", async () => {
    const { session } = await t.client().createUploadSession({ spec: { kind: "x", name: "short-middle" }, partSize: BigInt(PART) });
    const sessionId = session!.sessionId;
    // Without expected_size any part may turn out to be the last, so both are taken.
    await t.client().uploadPart({ sessionId, partNumber: 1, data: randomBytes(1000) });
    const tail = randomBytes(500);
    await t.client().uploadPart({ sessionId, partNumber: 2, data: tail });
    await expectCode(
      t.client().completeUploadSession({ sessionId }),
      Code.FailedPrecondition,
      /^part 1 has 1000 bytes; every part but the last must have part_size \(5242880\) bytes: upload it again$/,
    );
    expect((await t.client().getUploadSession({ sessionId })).session!.state).toBe(UploadSessionState.OPEN);
    expect((await t.client().listArtifacts({ filter: { namePrefix: "short-middle" } })).artifacts).toEqual([]);
    const head = randomBytes(PART);
    await t.client().uploadPart({ sessionId, partNumber: 1, data: head });
    const done = await t.client().completeUploadSession({ sessionId });
    expect((await download(done.artifact!.id)).equals(Buffer.concat([head, tail]))).toBe(true);
    expect(await leftovers()).toEqual([]);
  });
});
