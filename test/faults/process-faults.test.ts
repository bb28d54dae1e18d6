import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import type { Client as MinioClient } from "minio";
import { createHash, randomBytes } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { afterAll, afterEach, beforeAll, expect, it } from "vitest";
import { blake3Hex, createBlake3 } from "../../src/blake3.ts";
import { ArtifactService, EventType } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "@artifactd/api/grpc/health/v1/health_pb.js";
import { reconcile } from "../soak/soak-reconcile.ts";
import { content, createSoakState, verifyDownload, type Ack } from "../soak/soak-workload.ts";
import { expectCode } from "../support/expect-code.ts";
import { minioClient } from "../support/minio-client.ts";
import { ensureMinioBinary, startMinio, type MinioServer } from "../support/minio-server.ts";
import { startPrivatePostgres, type PrivatePostgres } from "../support/private-postgres.ts";
import { createServiceProcess, ROOT, type ServiceProcess } from "../support/service-process.ts";
import { describeOn } from "../support/test-backends.ts";

/**
 * Faults with real processes: the service runs as a child process on its own
 * Postgres cluster and its own MinIO (not the suite's shared one: these tests
 * kill it), and each test stops or kills one of the three in the middle of
 * calls. Each asserts the codes clients get, that every artifact acknowledged
 * so far still downloads with its BLAKE3, and, where a fault can leave
 * storage behind, that nothing is left once the stale-upload setting is
 * waited out and garbage collection has run (the soak's reconciliation:
 * objects held by blob rows, unfinished uploads listed by key and counted on
 * MinIO's disk).
 *
 * The service's output, and the Postgres log, are kept in
 * .artifactd/process-faults/ (replaced by the next run).
 */
const KiB = 1024;
const MiB = 1024 * KiB;
const BUCKET = "artifacts";
/** Small, so a dead upload's heartbeat goes stale within the test. */
const UPLOAD_STALE_MS = 2_000;
/** Health asks the stores every 2 s and gives each answer 2 s: a change shows within about 4 s. */
const HEALTH_FOLLOWS_MS = 10_000;
const CHUNK = 256 * KiB;
const SESSION_PART = 5 * MiB;

type ArtifactClient = ReturnType<typeof createClient<typeof ArtifactService>>;
type HealthClient = ReturnType<typeof createClient<typeof Health>>;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `probe` until it returns something other than undefined, or throws after `withinMs` saying what was awaited. */
async function waitFor<T>(what: string, withinMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + withinMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${withinMs} ms${last ? ` (last error: ${String(last)})` : ""}`);
    await sleep(100);
  }
}

function codeOf(error: unknown): string {
  return error instanceof ConnectError ? Code[error.code] : `not a ConnectError: ${String(error)}`;
}

/**
 * A streaming upload whose client sends `bytes` in 256 KiB chunks with a
 * short pause between them, and stops at `pauseAt` bytes until `proceed()`.
 * `paused` resolves once it got there.
 */
function gatedUpload(client: ArtifactClient, kind: string, bytes: Buffer, pauseAt: number) {
  let reached!: () => void;
  const paused = new Promise<void>((r) => (reached = r));
  let proceed!: () => void;
  const go = new Promise<void>((r) => (proceed = r));
  async function* messages() {
    yield { message: { case: "header" as const, value: { spec: { kind }, expectedSize: BigInt(bytes.byteLength), expectedBlake3: blake3Hex(bytes) } } };
    for (let offset = 0; offset < bytes.byteLength; offset += CHUNK) {
      if (offset === pauseAt) {
        reached();
        await go;
      }
      yield { message: { case: "chunk" as const, value: bytes.subarray(offset, Math.min(offset + CHUNK, bytes.byteLength)) } };
      await sleep(2);
    }
  }
  const answer = client.upload(messages(), { timeoutMs: 60_000 });
  // Handled here so that a failure before the test awaits it is not an unhandled rejection.
  answer.catch(() => {});
  return { answer, paused: Promise.race([paused, answer.then(() => Promise.reject(new Error("the upload ended before its pause")))]), proceed };
}

/**
 * A download that stops after its first chunk until `proceed()`; resolves
 * with the content's BLAKE3 and size, or with the error the call failed with.
 */
function gatedDownload(client: ArtifactClient, id: string) {
  let reached!: () => void;
  const paused = new Promise<void>((r) => (reached = r));
  let proceed!: () => void;
  const go = new Promise<void>((r) => (proceed = r));
  const outcome = (async () => {
    const hasher = createBlake3();
    let size = 0;
    let first = true;
    try {
      for await (const message of client.download({ id }, { timeoutMs: 60_000 })) {
        if (message.message.case !== "chunk") continue;
        hasher.update(message.message.value);
        size += message.message.value.byteLength;
        if (first) {
          first = false;
          reached();
          await go;
        }
      }
      return { blake3: hasher.digestHex(), size };
    } catch (error) {
      reached();
      return { error };
    }
  })();
  return { outcome, paused, proceed };
}

interface WatchedEvent {
  readonly type: string;
  readonly id: string;
  readonly cursor: string;
}

/**
 * A watcher as the contract asks one to be: it records each event's cursor
 * and, whenever its stream fails or ends, watches again with resume_after the
 * last one. `disconnect()` cuts its stream from the client's side and holds
 * it off until `reconnect()`.
 */
function startWatcher(client: ArtifactClient) {
  const events: WatchedEvent[] = [];
  const failures: string[] = [];
  const resumedAfter: string[] = [];
  let cursor = "";
  const stopped = new AbortController();
  let stream = new AbortController();
  let held: Promise<void> | undefined;
  let release = () => {};
  const done = (async () => {
    while (!stopped.signal.aborted) {
      await held;
      stream = new AbortController();
      const signal = AbortSignal.any([stopped.signal, stream.signal]);
      if (cursor) resumedAfter.push(cursor);
      try {
        for await (const event of client.watchArtifacts({ resumeAfter: cursor }, { signal })) {
          events.push({ type: EventType[event.type] ?? String(event.type), id: event.artifact?.id ?? "", cursor: event.cursor });
          if (event.cursor) cursor = event.cursor;
        }
      } catch (error) {
        if (!signal.aborted) failures.push(codeOf(error));
      }
      if (!stopped.signal.aborted) await sleep(200);
    }
  })();
  return {
    events,
    failures,
    resumedAfter,
    get cursor() {
      return cursor;
    },
    disconnect() {
      held = new Promise((r) => (release = r));
      stream.abort();
    },
    reconnect() {
      release();
      held = undefined;
    },
    async stop() {
      stopped.abort();
      release();
      await done;
    },
  };
}

describeOn("postgres+minio")("process faults: Postgres, MinIO and the service stopped under load", () => {
  const logDir = path.join(ROOT, ".artifactd", "process-faults");
  let workDir: string;
  let postgres: PrivatePostgres | undefined;
  let minio: MinioServer | undefined;
  let service: ServiceProcess | undefined;
  let client: ArtifactClient;
  let health: HealthClient;
  let bucket: MinioClient;
  /** Every artifact acknowledged so far, by every test. */
  const acks: Ack[] = [];

  beforeAll(async () => {
    rmSync(logDir, { recursive: true, force: true });
    mkdirSync(logDir, { recursive: true });
    workDir = mkdtempSync(path.join(os.tmpdir(), "artifactd-process-faults-"));
    const [pgStarted, minioStarted] = await Promise.allSettled([startPrivatePostgres(), startMinio(ensureMinioBinary())]);
    if (pgStarted.status === "fulfilled") postgres = pgStarted.value;
    if (minioStarted.status === "fulfilled") minio = minioStarted.value;
    if (pgStarted.status === "rejected") throw pgStarted.reason;
    if (minioStarted.status === "rejected") throw minioStarted.reason;
    service = await createServiceProcess({
      logFile: path.join(logDir, "service.log"),
      env: {
        DATABASE_URL: postgres!.url,
        ARTIFACTD_S3_ENDPOINT: minio!.endpoint,
        ARTIFACTD_S3_ACCESS_KEY: minio!.accessKey,
        ARTIFACTD_S3_SECRET_KEY: minio!.secretKey,
        ARTIFACTD_S3_BUCKET: BUCKET,
        ARTIFACTD_DATA_DIR: path.join(workDir, "service"),
        ARTIFACTD_UPLOAD_STALE_MS: String(UPLOAD_STALE_MS),
        ARTIFACTD_GC_GRACE_MS: "0",
        // Garbage is collected by the `gc` command the tests run, never behind their backs.
        ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0",
        ARTIFACTD_SHUTDOWN_GRACE_MS: "2000",
      },
    });
    await service.start();
    const token = await service.createToken("faults");
    const auth: Interceptor = (next) => (request) => {
      request.header.set("authorization", `Bearer ${token}`);
      return next(request);
    };
    const transport = createGrpcTransport({ baseUrl: service.url, interceptors: [auth] });
    client = createClient(ArtifactService, transport);
    health = createClient(Health, transport);
    bucket = minioClient(minio!);
  });

  afterAll(async () => {
    await service?.stop(5_000).catch(() => {});
    if (postgres) {
      try {
        copyFileSync(path.join(postgres.dir, "postgres.log"), path.join(logDir, "postgres.log"));
      } catch {
        // no log yet
      }
    }
    await Promise.all([minio?.stop().catch(() => {}), postgres?.destroy().catch(() => {})]);
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  });

  // A test that failed half way leaves the others a whole system, so that each failure is its own.
  afterEach(async () => {
    await postgres?.start();
    await minio?.start();
    await service?.start();
    await waitFor("health SERVING after the test", HEALTH_FOLLOWS_MS, () => healthIs(ServingStatus.SERVING));
  });

  /** Runs one query on the private Postgres with a connection of its own (it may have been restarted since the last one). */
  const query = async <R extends pg.QueryResultRow>(text: string, values: unknown[] = []): Promise<R[]> => {
    const db = new pg.Client({ connectionString: postgres!.url });
    await db.connect();
    try {
      return (await db.query<R>(text, values)).rows;
    } finally {
      await db.end();
    }
  };
  const inFlightKeys = async () => (await query<{ storage_key: string }>("select storage_key from uploads_in_flight")).map((r) => r.storage_key);
  /** The key a streaming upload just recorded: the one in uploads_in_flight that was not there before it began. */
  const newInFlightKey = (before: readonly string[]) =>
    waitFor("the upload's key in uploads_in_flight", 10_000, async () => (await inFlightKeys()).find((key) => !before.includes(key)));
  /** MinIO's folders of unfinished multipart uploads to `key`, read from its disk (see soak-reconcile.ts). */
  const uploadsOnDisk = (key: string): string[] => {
    const folder = path.join(minio!.dataDir, ".minio.sys", "multipart", createHash("sha256").update(`${BUCKET}/${key}`).digest("hex"));
    return existsSync(folder) ? readdirSync(folder) : [];
  };

  const acknowledge = (ack: Ack) => acks.push(ack);
  const upload = async (kind: string, bytes: Buffer) => {
    const answer = await client.upload(
      (async function* () {
        yield { message: { case: "header" as const, value: { spec: { kind }, expectedSize: BigInt(bytes.byteLength) } } };
        for (let offset = 0; offset < bytes.byteLength; offset += CHUNK)
          yield { message: { case: "chunk" as const, value: bytes.subarray(offset, offset + CHUNK) } };
      })(),
      { timeoutMs: 60_000 },
    );
    expect(answer.artifact?.blake3).toBe(blake3Hex(bytes));
    acknowledge({ id: answer.artifact!.id, blake3: blake3Hex(bytes), size: bytes.byteLength, via: "upload" });
    return answer.artifact!;
  };
  const saveInline = async (text: string) => {
    const answer = await client.saveInline({ spec: { kind: "fault-inline" }, content: { case: "text", value: text } }, { timeoutMs: 30_000 });
    const bytes = Buffer.from(text);
    acknowledge({ id: answer.artifact!.id, blake3: blake3Hex(bytes), size: bytes.byteLength, via: "inline" });
    return answer.artifact!;
  };
  const uploadPart = (sessionId: string, bytes: Buffer, partNumber: number) => {
    const data = bytes.subarray((partNumber - 1) * SESSION_PART, Math.min(partNumber * SESSION_PART, bytes.byteLength));
    return client.uploadPart({ sessionId, partNumber, data, partBlake3: blake3Hex(data) }, { timeoutMs: 30_000 });
  };
  /** A session for `bytes` (size and digest declared), with its first two parts uploaded; its id. */
  const sessionWithTwoParts = async (bytes: Buffer) => {
    const created = await client.createUploadSession(
      { spec: { kind: "fault-session" }, expectedSize: BigInt(bytes.byteLength), expectedBlake3: blake3Hex(bytes), partSize: BigInt(SESSION_PART) },
      { timeoutMs: 30_000 },
    );
    const sessionId = created.session!.sessionId;
    await uploadPart(sessionId, bytes, 1);
    await uploadPart(sessionId, bytes, 2);
    return sessionId;
  };

  /** Every artifact acknowledged so far downloads, once, without retries, with its BLAKE3 and size. */
  const expectAcknowledgedIntact = async () => {
    const outcomes: Record<string, string> = {};
    for (const ack of acks) {
      outcomes[ack.id] = await verifyDownload(client, ack, AbortSignal.timeout(60_000)).catch((error: unknown) => `failed: ${codeOf(error)}`);
    }
    expect(Object.entries(outcomes).filter(([, outcome]) => outcome !== "ok")).toEqual([]);
  };

  /**
   * Waits out the stale-upload setting (a heartbeat must have stopped that long: a wait is the point), then runs
   * `gc`; and again, since a key taken from a stale heartbeat keeps its record until the claim is stale too.
   */
  const waitOutStaleUploadsAndCollect = async () => {
    let releasedKeys = 0;
    // What the passes said besides their report (a key they failed to reclaim is logged there): the message of an assertion on them.
    const said: string[] = [];
    for (let pass = 0; pass < 2; pass++) {
      await sleep(UPLOAD_STALE_MS + 1_000);
      const gc = await service!.runCommand(["gc", "--grace-seconds", "0", "--json"]);
      expect(gc.code, `gc failed: ${gc.stderr}`).toBe(0);
      releasedKeys += (JSON.parse(gc.stdout.trim().split("\n").at(-1) ?? "") as { releasedKeys: number }).releasedKeys;
      said.push(`gc pass ${pass + 1}: ${gc.stderr.trim() || "(nothing on stderr)"}`);
    }
    return { releasedKeys, said: said.join("\n") };
  };

  /** Nothing is stored that the metadata does not hold, nothing it holds is missing (the soak's reconciliation). */
  const expectNoLeftovers = async (killedKeys: readonly string[]) => {
    const state = createSoakState(undefined);
    state.acks.push(...acks);
    const result = await reconcile({
      client,
      state,
      databaseUrl: postgres!.url,
      minio: bucket,
      bucket: BUCKET,
      minioDataDir: minio!.dataDir,
      seenKeys: new Set(killedKeys),
    });
    const { lost, corrupt, missing_content, orphan_objects, unfinished_uploads, unfinished_uploads_listed, unfinished_uploads_on_disk } = result;
    expect(
      { lost, corrupt, missing_content, orphan_objects, unfinished_uploads, unfinished_uploads_listed, unfinished_uploads_on_disk },
      JSON.stringify(result.examples),
    ).toEqual({
      lost: 0,
      corrupt: 0,
      missing_content: 0,
      orphan_objects: 0,
      unfinished_uploads: 0,
      unfinished_uploads_listed: 0,
      unfinished_uploads_on_disk: 0,
    });
    expect(await query("select * from uploads_in_flight")).toEqual([]);
  };

  const healthIs = async (status: ServingStatus) => {
    const answer = await health.check({ service: "" }, { timeoutMs: 1_000 });
    return answer.status === status ? true : undefined;
  };

  it("Postgres stopped mid-stream: calls answer UNAVAILABLE, health follows, and the watcher resumes without missing or repeating an event", async () => {
    const watcher = startWatcher(client);
    try {
      // A marker the watcher must see first: from then on it holds a cursor to resume after. A watch from
      // now starts when the server has taken the call, which may be after a save sent a moment later:
      // markers are saved until one comes.
      const marker = await waitFor("the watcher to see a marker", 15_000, async () => {
        const saved = await saveInline(`marker ${randomBytes(8).toString("hex")}`);
        await sleep(500);
        return watcher.events.some((e) => e.id === saved.id) ? saved : undefined;
      });
      const large = await upload("fault-download", content(randomBytes(16).toString("hex"), 16 * MiB));
      await saveInline("before the outage");

      const before = await inFlightKeys();
      const uploading = gatedUpload(client, "fault-upload", content(randomBytes(16).toString("hex"), 2 * MiB), 1 * MiB);
      await uploading.paused;
      await newInFlightKey(before);
      const downloading = gatedDownload(client, large.id);
      await downloading.paused;

      await postgres!.stop("immediate");
      uploading.proceed();
      downloading.proceed();
      await expectCode(uploading.answer, Code.Unavailable);
      // The download needs Postgres only before its first byte: it may finish, or fail as UNAVAILABLE, nothing else.
      const read = await downloading.outcome;
      if ("error" in read) expect(codeOf(read.error)).toBe(Code[Code.Unavailable]);
      else expect(read).toEqual({ blake3: large.blake3, size: 16 * MiB });
      await expectCode(
        client.saveInline({ spec: { kind: "fault-inline" }, content: { case: "text", value: "during the outage" } }, { timeoutMs: 30_000 }),
        Code.Unavailable,
      );
      // The watcher's stream may outlive the outage; cut it, and its tries to resume meanwhile must fail as UNAVAILABLE.
      watcher.disconnect();
      watcher.reconnect();
      await waitFor("health NOT_SERVING while Postgres is down", HEALTH_FOLLOWS_MS, () => healthIs(ServingStatus.NOT_SERVING));
      await waitFor("the watcher's try to resume while Postgres is down to fail", 5_000, async () => (watcher.failures.length > 0 ? true : undefined));

      await postgres!.start();
      await waitFor("health SERVING once Postgres is back", HEALTH_FOLLOWS_MS, () => healthIs(ServingStatus.SERVING));

      // What is acknowledged while the watcher is away must come when it resumes after its last cursor.
      watcher.disconnect();
      await upload("fault-upload", content(randomBytes(16).toString("hex"), 300 * KiB));
      await saveInline("after the outage");
      const sessionBytes = content(randomBytes(16).toString("hex"), 6 * MiB);
      const sessionId = await sessionWithTwoParts(sessionBytes);
      const completed = await client.completeUploadSession({ sessionId }, { timeoutMs: 60_000 });
      expect(completed.artifact?.blake3).toBe(blake3Hex(sessionBytes));
      acknowledge({ id: completed.artifact!.id, blake3: blake3Hex(sessionBytes), size: sessionBytes.byteLength, via: "session" });
      const lastCursor = watcher.cursor;
      watcher.reconnect();

      const expected = acks.slice(acks.findIndex((a) => a.id === marker.id)).map((a) => a.id);
      const createdIds = () => watcher.events.filter((e) => e.type === "CREATED").map((e) => e.id);
      await waitFor("the watcher to see every acknowledged creation", 15_000, async () =>
        expected.every((id) => createdIds().includes(id)) ? true : undefined,
      );
      expect(watcher.resumedAfter).toContain(lastCursor);
      const seen = createdIds();
      expect(expected.map((id) => [id, seen.filter((s) => s === id).length])).toEqual(expected.map((id) => [id, 1]));
      // In order: the acknowledgements came one after another, so their creations must too.
      expect(seen.filter((id) => expected.includes(id))).toEqual(expected);
      expect(watcher.failures.filter((code) => code !== Code[Code.Unavailable])).toEqual([]);
    } finally {
      await watcher.stop();
    }
    await expectAcknowledgedIntact();
    await waitOutStaleUploadsAndCollect();
    await expectNoLeftovers([]);
  });

  it("MinIO killed mid-part: the upload answers UNAVAILABLE, health follows, and gc leaves no unfinished upload", async () => {
    const before = await inFlightKeys();
    const uploading = gatedUpload(client, "fault-upload", content(randomBytes(16).toString("hex"), 12 * MiB), 9 * MiB);
    await uploading.paused;
    const key = await newInFlightKey(before);
    // The first 8 MiB part has started a multipart upload: the kill leaves it unfinished on MinIO's disk.
    await waitFor("the multipart upload on MinIO's disk", 10_000, async () => (uploadsOnDisk(key).length > 0 ? true : undefined));

    await minio!.kill();
    uploading.proceed();
    await expectCode(uploading.answer, Code.Unavailable);
    await waitFor("health NOT_SERVING while MinIO is down", HEALTH_FOLLOWS_MS, () => healthIs(ServingStatus.NOT_SERVING));

    await minio!.start();
    await waitFor("health SERVING once MinIO is back", HEALTH_FOLLOWS_MS, () => healthIs(ServingStatus.SERVING));
    await upload("fault-upload", content(randomBytes(16).toString("hex"), 9 * MiB));
    await expectAcknowledgedIntact();

    const gc = await waitOutStaleUploadsAndCollect();
    expect(gc.releasedKeys, gc.said).toBeGreaterThanOrEqual(1);
    expect(uploadsOnDisk(key)).toEqual([]);
    await expectNoLeftovers([key]);
  });

  it("the service killed mid-stream: the client's session continues after the restart, and gc reclaims the killed upload", async () => {
    const before = await inFlightKeys();
    const uploading = gatedUpload(client, "fault-upload", content(randomBytes(16).toString("hex"), 12 * MiB), 9 * MiB);
    await uploading.paused;
    const key = await newInFlightKey(before);
    await waitFor("the multipart upload on MinIO's disk", 10_000, async () => (uploadsOnDisk(key).length > 0 ? true : undefined));

    const sessionBytes = content(randomBytes(16).toString("hex"), 12 * MiB);
    const sessionId = await sessionWithTwoParts(sessionBytes);

    await service!.kill();
    // The connection dies with the process, so the code is the client library's: connect-node reports a
    // stream closed by a lost HTTP/2 session as CANCELED ("http/2 stream closed with error code CANCEL"),
    // a refused connection as UNAVAILABLE. Either way the call failed and nothing was acknowledged.
    const killed = await uploading.answer.then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(killed, "the upload must fail with the service").toBeInstanceOf(ConnectError);
    expect([Code[Code.Canceled], Code[Code.Unavailable]], (killed as ConnectError).message).toContain(codeOf(killed));
    uploading.proceed();
    await service!.start();

    const session = (await client.getUploadSession({ sessionId }, { timeoutMs: 30_000 })).session!;
    expect(session.committedParts).toEqual([1, 2]);
    expect(session.committedBytes).toBe(BigInt(2 * SESSION_PART));
    await uploadPart(sessionId, sessionBytes, 3);
    const completed = await client.completeUploadSession({ sessionId }, { timeoutMs: 60_000 });
    expect(completed.artifact?.blake3).toBe(blake3Hex(sessionBytes));
    acknowledge({ id: completed.artifact!.id, blake3: blake3Hex(sessionBytes), size: sessionBytes.byteLength, via: "session" });
    await expectAcknowledgedIntact();

    // Nobody released the killed upload's key or aborted its multipart upload: only its stopped heartbeat
    // tells garbage collection it is dead.
    expect(await inFlightKeys()).toContain(key);
    expect(uploadsOnDisk(key)).not.toEqual([]);
    const gc = await waitOutStaleUploadsAndCollect();
    expect(gc.releasedKeys, gc.said).toBeGreaterThanOrEqual(1);
    const stat = await bucket.statObject(BUCKET, key).then(
      () => "exists",
      (error: { code?: string }) => error.code,
    );
    expect(stat).toBe("NotFound");
    expect(uploadsOnDisk(key)).toEqual([]);
    const listed: string[] = [];
    for await (const upload of bucket.listIncompleteUploads(BUCKET, key, true) as AsyncIterable<{ key: string }>) listed.push(upload.key);
    expect(listed).toEqual([]);
    expect(await inFlightKeys()).not.toContain(key);
    await expectNoLeftovers([key]);
  });
});
