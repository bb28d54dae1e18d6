import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import type { Client as MinioClient } from "minio";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, readdirSync } from "node:fs";
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { partPlan } from "../../src/adapters/blob/s3-blob-store.ts";
import { hasSessions } from "../../src/ports/blob-store.ts";
import { blake3Hex } from "../../src/blake3.ts";
import { Status } from "@artifactd/api/artifacts/v1/artifact_pb.js";
import type { UploadRequestSchema } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import { collectGarbage } from "../../src/service/maintenance.ts";
import { expectCode } from "../support/expect-code.ts";
import { captureStorageKeys, expectNothingStored } from "../support/nothing-stored.ts";
import { minioClient } from "../support/minio-client.ts";
import { startTestApp, type TestApp } from "../support/test-app.ts";
import { describeOn, testsBackend } from "../support/test-backends.ts";

/**
 * Faults with real parts: Postgres backends terminated in the middle of calls
 * (pg_terminate_backend), races forced between calls, stored objects
 * overwritten or removed behind the service's back, a real full file system.
 * Each asserts the answer's code and that nothing acknowledged was lost.
 */
const MiB = 1024 * 1024;
type UploadInit = MessageInitShape<typeof UploadRequestSchema>;

type UploadHeaderInit = Extract<NonNullable<UploadInit["message"]>, { case: "header" }>;

async function* uploadMessages(header: UploadHeaderInit, chunks: Iterable<Uint8Array> | AsyncIterable<Uint8Array>): AsyncIterable<UploadInit> {
  yield { message: header };
  for await (const chunk of chunks) yield { message: { case: "chunk", value: chunk } };
}

/** The content in two pieces, the second held back until `release()`: an upload paused mid-stream. */
function pausedAfter(first: Uint8Array, rest: Uint8Array): { chunks: AsyncIterable<Uint8Array>; release: () => void } {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  async function* chunks(): AsyncIterable<Uint8Array> {
    yield first;
    await gate;
    yield rest;
  }
  return { chunks: chunks(), release };
}

describeOn("postgres+minio")("faults on postgres+minio", () => {
  let t: TestApp;
  let admin: pg.Client;
  let minio: MinioClient;
  beforeAll(async () => {
    t = await startTestApp("postgres+minio", { ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0" });
    admin = new pg.Client({ connectionString: t.databaseUrl });
    await admin.connect();
    minio = minioClient();
  });
  afterAll(async () => {
    await admin?.end();
    await t?.close();
  });

  const download = async (id: string) => {
    const parts: Uint8Array[] = [];
    for await (const r of t.client().download({ id })) if (r.message.case === "chunk") parts.push(r.message.value);
    return Buffer.concat(parts);
  };
  /** A second server on the same database and bucket, with its own upload stale setting. */
  const startReplica = (uploadStaleMs: number) =>
    startTestApp("postgres+minio", {
      DATABASE_URL: t.databaseUrl!,
      ARTIFACTD_S3_BUCKET: t.bucket!,
      ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0",
      ARTIFACTD_UPLOAD_STALE_MS: String(uploadStaleMs),
    });
  const save = async (kind: string, data: Uint8Array) =>
    (await t.client().upload(uploadMessages({ case: "header", value: { spec: { kind } } }, [data]))).artifact!;

  /** Holds row locks in a transaction of its own until released. */
  const lockRows = async (statement: string, values: unknown[]) => {
    const client = new pg.Client({ connectionString: t.databaseUrl });
    await client.connect();
    await client.query("begin");
    await client.query(statement, values);
    return async () => {
      await client.query("rollback").catch(() => {});
      await client.end();
    };
  };
  /** Terminates the service's backend that waits on a lock, once it does. */
  const terminateWaitingBackend = async () => {
    for (let i = 0; i < 200; i++) {
      const { rows } = await admin.query(
        "select pid from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock' and pid <> pg_backend_pid()",
      );
      if (rows.length > 0) {
        await admin.query("select pg_terminate_backend($1)", [rows[0].pid]);
        return;
      }
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error("no backend ever waited on the lock");
  };
  const serverStillServes = async () => {
    const saved = await t.client().saveInline({ spec: { kind: "alive" }, content: { case: "text", value: "still here" } });
    const read = await t.client().getArtifact({ id: saved.artifact!.id, includeContent: true });
    expect(read.artifact!.id).toBe(saved.artifact!.id);
  };

  it("fails only the call whose Postgres connection is terminated (SetPinned waiting on a lock), with UNAVAILABLE", async () => {
    const artifact = await save("pin-target", randomBytes(1000));
    const release = await lockRows("select id from artifacts where id = $1 for update", [artifact.id]);
    try {
      // The expectation is attached at once: the call fails while the termination is still being made.
      const pinning = expectCode(t.client().setPinned({ id: artifact.id, pinned: true }), Code.Unavailable, /unreachable or busy: retry later/);
      await terminateWaitingBackend();
      await pinning;
    } finally {
      await release();
    }
    await serverStillServes();
    // The pool replaced the lost connection: the same call now works.
    expect((await t.client().setPinned({ id: artifact.id, pinned: true })).artifact!.pinned).toBe(true);
  });

  // Each call waits on a lock the test holds — the target artifact's row, or a whole table for calls that only
  // read — and its backend is terminated there. Then the same call must work again.
  // `target`: an id the call works on; by default a fresh artifact.
  const cutCalls: [string, string, (target: string) => Promise<unknown>, (() => Promise<string>)?][] = [
    ["SetStatus", "row", (id) => t.client().setStatus({ id, status: Status.REVIEW })],
    ["DeleteArtifact", "row", (id) => t.client().deleteArtifact({ id })],
    ["ArchiveRun", "row", () => t.client().archiveRun({ runId: "cut-run" })],
    [
      "Upload (its inputs checked in the recording transaction)",
      "row",
      (id) =>
        t
          .client()
          .upload(
            uploadMessages({ case: "header", value: { spec: { kind: "cut-upload", inputs: [{ artifactId: id, role: "source" }] } } }, [randomBytes(9 * MiB)]),
          ),
    ],
    ["GetArtifact", "artifacts", (id) => t.client().getArtifact({ id })],
    ["ListArtifacts", "artifacts", () => t.client().listArtifacts({ filter: { kind: "cut-target" } })],
    ["SearchArtifacts", "artifacts", () => t.client().searchArtifacts({ query: "cut" })],
    ["GetLineage", "artifacts", (id) => t.client().getLineage({ id, depth: 1 })],
    [
      "Download",
      "artifacts",
      async (id) => {
        for await (const _ of t.client().download({ id })) void _;
      },
    ],
    ["CreateUploadSession", "uploads_in_flight", () => t.client().createUploadSession({ spec: { kind: "cut-session" } })],
    [
      "UploadPart",
      "upload_sessions",
      (sessionId) => t.client().uploadPart({ sessionId, partNumber: 1, data: randomBytes(100) }),
      async () => (await t.client().createUploadSession({ spec: { kind: "cut-part" } })).session!.sessionId,
    ],
  ];
  it.each(cutCalls)("fails only a %s whose connection is terminated mid-transaction, then works again", async (_, lock, call, prepare) => {
    const target = prepare
      ? await prepare()
      : (
          await t
            .client()
            .upload(uploadMessages({ case: "header", value: { spec: { kind: "cut-target", provenance: { runId: "cut-run" } } } }, [randomBytes(500)]))
        ).artifact!.id;
    const release =
      lock === "row"
        ? await lockRows("select id from artifacts where id = $1 for update", [target])
        : await lockRows(`lock table ${lock} in access exclusive mode`, []);
    try {
      const calling = expectCode(call(target), Code.Unavailable, /unreachable or busy: retry later/);
      await terminateWaitingBackend();
      await calling;
    } finally {
      await release();
    }
    await serverStillServes();
    await call(target);
  });

  it("fails only a SaveInline whose connection is terminated mid-transaction, and records nothing", async () => {
    const input = await save("inline-input", randomBytes(100));
    const lastEvent = (await admin.query("select coalesce(max(seq), 0)::int8 as seq from artifact_events")).rows[0].seq as string;
    const release = await lockRows("select id from artifacts where id = $1 for update", [input.id]);
    try {
      const saving = expectCode(
        t.client().saveInline({ spec: { kind: "inline-cut", inputs: [{ artifactId: input.id, role: "source" }] }, content: { case: "text", value: "x" } }),
        Code.Unavailable,
      );
      await terminateWaitingBackend();
      await saving;
    } finally {
      await release();
    }
    // Read from the tables themselves, soft-deleted rows included: no artifact, no lineage edge to the input, no event.
    const { rows } = await admin.query(
      `select (select count(*)::int from artifacts where kind = 'inline-cut') as artifacts,
              (select count(*)::int from artifact_inputs where input_id = $1) as inputs,
              (select count(*)::int from artifact_events where seq > $2) as events`,
      [input.id, lastEvent],
    );
    expect(rows[0]).toEqual({ artifacts: 0, inputs: 0, events: 0 });
    await serverStillServes();
  });

  it("completes a session whose recording transaction was cut: the retry returns the artifact, and the content stays readable and deduplicable", async () => {
    const input = await save("session-input", randomBytes(100));
    const data = randomBytes(6 * MiB + 17);
    const { session } = await t.client().createUploadSession({
      spec: { kind: "cut-complete", inputs: [{ artifactId: input.id, role: "source" }] },
      partSize: BigInt(5 * MiB),
    });
    const id = session!.sessionId;
    await t.client().uploadPart({ sessionId: id, partNumber: 1, data: data.subarray(0, 5 * MiB) });
    await t.client().uploadPart({ sessionId: id, partNumber: 2, data: data.subarray(5 * MiB) });
    // The input is checked inside the recording transaction: holding it makes that transaction wait, then we cut it.
    const release = await lockRows("select id from artifacts where id = $1 for update", [input.id]);
    try {
      const completing = expectCode(t.client().completeUploadSession({ sessionId: id }), Code.Unavailable);
      await terminateWaitingBackend();
      await completing;
    } finally {
      await release();
    }
    const retried = await t.client().completeUploadSession({ sessionId: id });
    expect(retried.artifact!.blake3).toBe(blake3Hex(data));
    expect((await download(retried.artifact!.id)).equals(data)).toBe(true);
    // A second retry answers the same artifact, never NOT_FOUND.
    expect((await t.client().completeUploadSession({ sessionId: id })).artifact!.id).toBe(retried.artifact!.id);
    // Later uploads of the same bytes deduplicate onto content that is really there.
    const again = await t.client().upload(uploadMessages({ case: "header", value: { spec: { kind: "cut-complete-again" } } }, [data]));
    expect(again.deduplicated).toBe(true);
    expect((await download(again.artifact!.id)).equals(data)).toBe(true);
  });

  it("completes a session an earlier complete assembled without recording (its answer or read-back lost)", async () => {
    const data = randomBytes(5 * MiB + 3);
    const { session } = await t.client().createUploadSession({ spec: { kind: "assembled-before" }, partSize: BigInt(5 * MiB) });
    const id = session!.sessionId;
    await t.client().uploadPart({ sessionId: id, partNumber: 1, data: data.subarray(0, 5 * MiB) });
    await t.client().uploadPart({ sessionId: id, partNumber: 2, data: data.subarray(5 * MiB) });
    // What a complete that died right after S3 assembled the parts leaves: no multipart upload, the object there.
    const record = (await t.app.metadata.uploadSessions.get("alpha", id))!;
    const blobs = t.app.blobs;
    if (!hasSessions(blobs)) throw new Error("the blob store has no upload sessions");
    await blobs.completeSession("alpha", record.storageKey, record.multipartId, record.parts);
    const done = await t.client().completeUploadSession({ sessionId: id });
    expect(done.artifact!.blake3).toBe(blake3Hex(data));
    expect((await download(done.artifact!.id)).equals(data)).toBe(true);
  });

  it("gives a session one writer: a second stream or a part call while a stream holds it gets ABORTED, and the bytes never mix", async () => {
    const { session } = await t.client().createUploadSession({ spec: { kind: "one-writer" }, partSize: BigInt(5 * MiB) });
    const id = session!.sessionId;
    const first = randomBytes(5 * MiB);
    const second = randomBytes(5 * MiB);
    let finish!: () => void;
    const held = new Promise<void>((resolve) => (finish = resolve));
    let firstPartStored!: () => void;
    const stored = new Promise<void>((resolve) => (firstPartStored = resolve));
    async function* slowWriter(): AsyncIterable<UploadInit> {
      yield { message: { case: "header", value: { sessionId: id, offset: 0n } } };
      yield { message: { case: "chunk", value: first } };
      firstPartStored();
      await held;
    }
    const writing = t.client().upload(slowWriter());
    await stored;
    // Wait until the first writer holds the session (its first part recorded).
    for (let i = 0; i < 100 && (await t.client().getUploadSession({ sessionId: id })).session!.committedParts.length === 0; i++)
      await new Promise((r) => setTimeout(r, 50));
    await expectCode(
      t.client().upload(uploadMessages({ case: "header", value: { sessionId: id, offset: 0n } }, [second])),
      Code.Aborted,
      /held by a streaming upload/,
    );
    await expectCode(t.client().uploadPart({ sessionId: id, partNumber: 1, data: second }), Code.Aborted, /held by a streaming upload/);
    finish();
    const done = await writing;
    expect((await download(done.artifact!.id)).equals(first)).toBe(true);
  });

  it("aborts a session whose complete died with its replica once the claim is stale, and not before", async () => {
    const { session } = await t.client().createUploadSession({ spec: { kind: "stale-complete" }, partSize: BigInt(5 * MiB) });
    const id = session!.sessionId;
    await t.client().uploadPart({ sessionId: id, partNumber: 1, data: randomBytes(1000) });
    // What a complete leaves when its server is killed mid-way: the session claimed, the claim no longer renewed.
    await admin.query("update upload_sessions set state = 'completing', complete_claim = 'dead-replica', updated_at = now() where id = $1", [id]);
    await expectCode(t.client().abortUploadSession({ sessionId: id }), Code.Aborted, /being completed/);
    await admin.query("update upload_sessions set updated_at = now() - interval '1 hour' where id = $1", [id]);
    await t.client().abortUploadSession({ sessionId: id });
    await expectCode(t.client().getUploadSession({ sessionId: id }), Code.NotFound);
    const record = (await admin.query("select count(*)::int as n from upload_sessions where id = $1", [id])).rows[0];
    expect(record.n).toBe(0);
  });

  it("frees a session whose writer's server died once the writer's lease lapses", async () => {
    const { session } = await t.client().createUploadSession({ spec: { kind: "lapsed-writer" }, partSize: BigInt(5 * MiB) });
    const id = session!.sessionId;
    // What a writer leaves when its server is killed: its lease, no longer renewed.
    await admin.query("update upload_sessions set writer_id = 'dead-writer', writer_renewed_at = now() where id = $1", [id]);
    await expectCode(t.client().uploadPart({ sessionId: id, partNumber: 1, data: randomBytes(100) }), Code.Aborted, /held by a streaming upload/);
    await admin.query("update upload_sessions set writer_renewed_at = now() - interval '1 minute' where id = $1", [id]);
    const data = randomBytes(100);
    await t.client().uploadPart({ sessionId: id, partNumber: 1, data });
    const done = await t.client().completeUploadSession({ sessionId: id });
    expect((await download(done.artifact!.id)).equals(data)).toBe(true);
  });

  it("holds back the last chunk of a corrupt download, ends it with DATA_LOSS, marks the blob and heals on a fresh upload", async () => {
    const data = randomBytes(3 * MiB);
    const artifact = await save("corrupt", data);
    const { rows } = await admin.query("select storage_key from blobs where digest = $1", [artifact.blake3]);
    // Same size, one byte changed, behind the service's back.
    const damaged = Buffer.from(data);
    damaged[damaged.length - 1]! ^= 0xff;
    await minio.putObject(t.bucket!, rows[0].storage_key, damaged, damaged.length);

    let received = 0;
    const reading = (async () => {
      for await (const r of t.client().download({ id: artifact.id })) if (r.message.case === "chunk") received += r.message.value.byteLength;
    })();
    await expectCode(reading, Code.DataLoss, /no longer matches its BLAKE3/);
    expect(received, "the client must never hold the whole corrupt content").toBeLessThan(data.length);
    // Marked: the next read fails at once, and the operator's dry run lists it.
    let early = 0;
    const again = (async () => {
      for await (const r of t.client().download({ id: artifact.id })) if (r.message.case === "chunk") early += r.message.value.byteLength;
    })();
    await expectCode(again, Code.DataLoss, /is corrupt/);
    expect(early).toBe(0);
    const report = await collectGarbage({ metadata: t.app.metadata, blobs: t.app.blobs, uploadStaleMs: 300_000 }, { graceMs: 3_600_000, dryRun: true });
    expect(report.corruptBlobs.map((b) => b.digest)).toContain(artifact.blake3);
    // The same content uploaded again replaces the bad copy.
    const healer = await save("corrupt-healer", data);
    expect((await download(artifact.id)).equals(data)).toBe(true);
    expect((await download(healer.id)).equals(data)).toBe(true);
  });

  it("sends a client that verifies the content itself every byte unhashed, and marks nothing until a read it verifies finds the damage", async () => {
    const data = randomBytes(3 * MiB);
    const artifact = await save("corrupt-client-verifies", data);
    const { rows } = await admin.query("select storage_key from blobs where digest = $1", [artifact.blake3]);
    const damaged = Buffer.from(data);
    damaged[damaged.length - 1]! ^= 0xff;
    await minio.putObject(t.bucket!, rows[0].storage_key, damaged, damaged.length);

    // client_verifies: the whole content as stored, the check left to the client.
    const received: Uint8Array[] = [];
    for await (const r of t.client().download({ id: artifact.id, clientVerifies: true })) if (r.message.case === "chunk") received.push(r.message.value);
    expect(Buffer.concat(received).equals(damaged)).toBe(true);
    const marked = await admin.query("select corrupt_at from blobs where digest = $1", [artifact.blake3]);
    expect(marked.rows[0].corrupt_at, "the server did not hash it, so it cannot know").toBeNull();

    // The read the client makes once it found the damage: the server checks, answers DATA_LOSS and marks the blob.
    const reading = (async () => {
      for await (const _ of t.client().download({ id: artifact.id })) void _;
    })();
    await expectCode(reading, Code.DataLoss, /no longer matches its BLAKE3/);
    const after = await admin.query("select corrupt_at from blobs where digest = $1", [artifact.blake3]);
    expect(after.rows[0].corrupt_at).not.toBeNull();
    // Marked: a verifying client is refused at once too.
    const verifying = (async () => {
      for await (const _ of t.client().download({ id: artifact.id, clientVerifies: true })) void _;
    })();
    await expectCode(verifying, Code.DataLoss, /is corrupt/);
  });

  it("answers DATA_LOSS naming the artifact when its stored object is gone", async () => {
    const artifact = await save("vanished", randomBytes(4000));
    const { rows } = await admin.query("select storage_key from blobs where digest = $1", [artifact.blake3]);
    await minio.removeObject(t.bucket!, rows[0].storage_key);
    const reading = (async () => {
      for await (const _ of t.client().download({ id: artifact.id })) void _;
    })();
    await expectCode(reading, Code.DataLoss, new RegExp(`artifact ${artifact.id}.*missing`));
  });

  it("reclaims what a dead upload stored once its heartbeat is stale, and never a live upload's, whatever its age", async () => {
    // A dead upload: its key recorded, content stored, never recorded as an artifact (its server died).
    const deadKey = t.app.blobs.newKey("alpha");
    await t.app.metadata.uploadsInFlight.begin("alpha", deadKey);
    const writer = await t.app.blobs.createWriter("alpha", deadKey);
    await writer.write(randomBytes(7 * MiB));
    await writer.commit("unused");
    await admin.query("update uploads_in_flight set heartbeat_at = now() - interval '1 hour' where storage_key = $1", [deadKey]);

    // A live upload, mid-stream, older than the stale setting: its heartbeat keeps it.
    const live = await startReplica(1_500);
    try {
      const data = randomBytes(12 * MiB);
      const slow = pausedAfter(data.subarray(0, 9 * MiB), data.subarray(9 * MiB));
      const uploading = live.client(t.tokens.alpha).upload(uploadMessages({ case: "header", value: { spec: { kind: "live-upload" } } }, slow.chunks));
      await new Promise((r) => setTimeout(r, 3_500));
      const gcDeps = { metadata: live.app.metadata, blobs: live.app.blobs, uploadStaleMs: 1_500 };
      const report = await collectGarbage(gcDeps, { graceMs: 0, dryRun: false });
      expect(report.releasedKeys).toBeGreaterThanOrEqual(1);
      expect(await t.app.blobs.stat(deadKey)).toBeUndefined();
      // Its record stays while the claim is young (an owner only slow to notice might still store under it)…
      const recordsOf = async (key: string) => (await admin.query("select count(*)::int as n from uploads_in_flight where storage_key = $1", [key])).rows[0].n;
      expect(await recordsOf(deadKey)).toBe(1);
      // …and goes once the claim itself is stale; the live upload, still mid-stream, renewed its heartbeat meanwhile.
      await new Promise((r) => setTimeout(r, 1_600));
      await collectGarbage(gcDeps, { graceMs: 0, dryRun: false });
      expect(await recordsOf(deadKey)).toBe(0);
      slow.release();
      const done = await uploading;
      expect((await download(done.artifact!.id)).equals(data)).toBe(true);
    } finally {
      await live.close();
    }
  });

  it("an upload that commits under a key garbage collection already claimed and discarded answers ABORTED, and a later pass removes what it stored", async () => {
    const slowBeat = await startReplica(60_000);
    try {
      const paused = pausedAfter(randomBytes(2 * MiB), randomBytes(MiB));
      const before = new Set((await admin.query("select storage_key from uploads_in_flight")).rows.map((r) => r.storage_key as string));
      const uploading = slowBeat
        .client(t.tokens.alpha)
        .upload(uploadMessages({ case: "header", value: { spec: { kind: "claimed-mid-commit" } } }, paused.chunks));
      let key: string | undefined;
      for (let i = 0; i < 200 && !key; i++) {
        key = (await admin.query("select storage_key from uploads_in_flight")).rows.map((r) => r.storage_key as string).find((k) => !before.has(k));
        if (!key) await new Promise((r) => setTimeout(r, 25));
      }
      expect(key).toBeDefined();
      // Garbage collection's claim, as it makes it for a stale heartbeat, and its pass over the key — before the
      // upload (whose next renewal is far off) commits its content under it.
      await admin.query("update uploads_in_flight set released_at = now(), claimed_at = now() where storage_key = $1", [key]);
      const gcDeps = { metadata: t.app.metadata, blobs: t.app.blobs, uploadStaleMs: 60_000 };
      await collectGarbage(gcDeps, { graceMs: 0, dryRun: false });
      paused.release();
      await expectCode(uploading, Code.Aborted, /taken for dead/);
      expect(await t.app.blobs.stat(key!)).toEqual({ size: 3 * MiB });
      expect((await t.client().listArtifacts({ filter: { kind: "claimed-mid-commit" } })).artifacts).toEqual([]);
      // The claim is young, so the key is still collected: the next pass removes what came late.
      await collectGarbage(gcDeps, { graceMs: 0, dryRun: false });
      expect(await t.app.blobs.stat(key!)).toBeUndefined();
      // Once the claim is stale, the record goes too.
      await admin.query("update uploads_in_flight set claimed_at = now() - interval '2 minutes' where storage_key = $1", [key]);
      await collectGarbage(gcDeps, { graceMs: 0, dryRun: false });
      expect((await admin.query("select count(*)::int as n from uploads_in_flight where storage_key = $1", [key])).rows[0].n).toBe(0);
    } finally {
      await slowBeat.close();
    }
  });

  it("stops a garbage collection pass at its next step when shutdown cancels it", async () => {
    const stop = new AbortController();
    stop.abort(new Error("the server is stopping"));
    const deleted = await save("gc-cancelled", randomBytes(3000));
    await t.client().deleteArtifact({ id: deleted.id });
    await expect(
      collectGarbage(
        { metadata: t.app.metadata, blobs: t.app.blobs, uploadStaleMs: 300_000 },
        { graceMs: 0, dryRun: false, now: new Date(Date.now() + 60_000), signal: stop.signal },
      ),
    ).rejects.toThrow("the server is stopping");
    // Nothing was taken: the pass stopped before its first step.
    expect(await t.app.metadata.findBlob("alpha", deleted.blake3)).toBeDefined();
  });

  it("plans part sizes so that any upload up to 5 TiB fits in S3's 10,000 parts, with bounded memory", () => {
    for (const partSize of [5 * MiB, 8 * MiB, 64 * MiB]) {
      const plan = partPlan(partSize, 3);
      let total = 0;
      for (let n = 1; n <= 10_000; n++) {
        const size = plan.sizeOf(n);
        expect(size).toBeGreaterThanOrEqual(5 * MiB);
        expect(size).toBeLessThanOrEqual(5 * 1024 * MiB);
        expect(size * plan.concurrencyOf(n)).toBeLessThanOrEqual(Math.max(size, partSize * 3));
        total += size;
      }
      expect(total).toBeGreaterThanOrEqual(5 * 1024 ** 4);
      // Small uploads keep the configured part size.
      expect(plan.sizeOf(1)).toBe(partSize);
      expect(plan.sizeOf(500)).toBe(partSize);
    }
    // With the size declared, one part size covers it.
    expect(partPlan(8 * MiB, 3, 200 * 1024 ** 3).sizeOf(1) * 10_000).toBeGreaterThanOrEqual(200 * 1024 ** 3);
    expect(partPlan(8 * MiB, 3, 10 * MiB).sizeOf(1)).toBe(8 * MiB);
  });
});

// A real full file system needs a mount: root on Linux, as CI runs.
const canMount = process.platform === "linux" && process.getuid?.() === 0;

describe.runIf(canMount && testsBackend("pglite+fs"))("a full blob folder (a real 8 MiB tmpfs)", () => {
  let t: TestApp;
  let blobsDir: string;
  beforeAll(async () => {
    t = await startTestApp("pglite+fs", { ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0" });
    // Remount the running store's folder on a small tmpfs: the same path, now with 8 MiB.
    blobsDir = path.join(t.dataDir, "blobs");
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=8m", "tmpfs", blobsDir]);
    for (const sub of ["incoming", "sessions", "blobs"]) mkdirSync(path.join(blobsDir, sub), { recursive: true });
  });
  afterAll(async () => {
    if (blobsDir) execFileSync("umount", ["-l", blobsDir]);
    await t?.close();
  });

  it("answers RESOURCE_EXHAUSTED on ENOSPC, leaves nothing behind, and keeps serving", async () => {
    const big = randomBytes(12 * MiB);
    using storage = captureStorageKeys(t);
    await expectCode(
      t.client().upload(uploadMessages({ case: "header", value: { spec: { kind: "too-big" } } }, [big.subarray(0, 6 * MiB), big.subarray(6 * MiB)])),
      Code.ResourceExhausted,
      /storage is full/,
    );
    expect(readdirSync(path.join(blobsDir, "incoming"))).toEqual([]);
    expect((await t.client().listArtifacts({ filter: { kind: "too-big" } })).artifacts).toEqual([]);
    await expectNothingStored(t, { keys: storage.keys });
    const small = randomBytes(1000);
    const saved = await t.client().upload(uploadMessages({ case: "header", value: { spec: { kind: "fits" } } }, [small]));
    const parts: Uint8Array[] = [];
    for await (const r of t.client().download({ id: saved.artifact!.id })) if (r.message.case === "chunk") parts.push(r.message.value);
    expect(Buffer.concat(parts).equals(small)).toBe(true);
  });
});
