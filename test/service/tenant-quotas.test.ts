import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createArtifactClient } from "../../clients/node/src/index.ts";
import { blake3Hex } from "../../src/blake3.ts";
import { ArtifactService, type UploadRequestSchema } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import { ArtifactError } from "../../src/artifact-error.ts";
import type { TenantQuotaOverrides, TenantQuotaStore } from "../../src/ports/tenant-quota-store.ts";
import { createApiToken } from "../../src/service/api-tokens.ts";
import { createTenantQuotas } from "../../src/service/tenant-quotas.ts";
import { expectCode } from "../support/expect-code.ts";
import { minioClient } from "../support/minio-client.ts";
import { startTestApp, type TestApp } from "../support/test-app.ts";
import { describeOn } from "../support/test-backends.ts";

const MiB = 1024 * 1024;
const PART = 5 * MiB;
/** The server re-reads overrides and usage this often. */
const CACHE_MS = 200;
type UploadInit = MessageInitShape<typeof UploadRequestSchema>;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Each tenant quota through the real RPCs, on Postgres and MinIO: what is
 * refused (RESOURCE_EXHAUSTED naming the quota, with the retry hint where
 * waiting helps), that every way a transfer ends gives its place back, and
 * that a refused upload leaves neither an artifact nor stored content.
 * Each test uses tenants of its own, with overrides set in the database as
 * `artifactd tenant set-quota` sets them.
 */
describeOn("postgres+minio")("tenant quotas", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp("postgres+minio", {
      ARTIFACTD_QUOTA_CACHE_MS: String(CACHE_MS),
      ARTIFACTD_UPLOAD_MAX_BYTES: "12MiB",
      ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0",
    });
  });
  afterAll(async () => {
    await t?.close();
  });

  /** A token of a new tenant with these overrides. */
  const tenantWith = async (tenant: string, overrides: Parameters<TestApp["app"]["metadata"]["tenantQuotas"]["set"]>[1]) => {
    await t.app.metadata.tenantQuotas.set(tenant, overrides);
    return (await createApiToken(t.app.metadata, tenant, "quota-test", { scope: "admin" })).token;
  };
  const upload = (token: string, data: Buffer, header: { expectedSize?: bigint; expectedBlake3?: string } = {}) =>
    t.client(token).upload(
      (async function* (): AsyncGenerator<UploadInit> {
        yield { message: { case: "header", value: { spec: { kind: "quota-test" }, ...header } } };
        for (let at = 0; at < data.length; at += 256 * 1024) yield { message: { case: "chunk", value: data.subarray(at, at + 256 * 1024) } };
      })(),
    );
  /** An upload that sends its header and one chunk, then waits until `finish` is called (or its signal aborts). */
  const heldUpload = (token: string, signal?: AbortSignal) => {
    let finish!: () => void;
    const finished = new Promise<void>((resolve) => (finish = resolve));
    const data = randomBytes(64 * 1024);
    const result = t.client(token).upload(
      (async function* (): AsyncGenerator<UploadInit> {
        yield { message: { case: "header", value: { spec: { kind: "held" } } } };
        yield { message: { case: "chunk", value: data } };
        await finished;
      })(),
      signal ? { signal } : {},
    );
    result.catch(() => {});
    return { result, finish };
  };
  const download = async (token: string, id: string, client = t.client(token)) => {
    const parts: Uint8Array[] = [];
    for await (const r of client.download({ id })) if (r.message.case === "chunk") parts.push(r.message.value);
    return Buffer.concat(parts);
  };
  const artifactCount = async (token: string) => (await t.client(token).listArtifacts({ includeTotalCount: true })).totalCount;
  /** Asserts a quota refusal: the code, the quota named in the message and the quota-exceeded trailer, and the retry hint. */
  const expectQuota = async (call: Promise<unknown>, quota: string, message: RegExp) => {
    const error = await expectCode(call, Code.ResourceExhausted, message);
    expect(error.metadata.get("quota-exceeded")).toBe(quota);
    return error;
  };
  /** Objects and unfinished multipart uploads in the bucket under a tenant's prefix. */
  const storedUnder = async (tenant: string) => {
    const objects: string[] = [];
    for await (const o of minioClient().listObjectsV2(t.bucket!, "", true))
      if ((o as { name?: string }).name?.includes(tenant)) objects.push((o as { name: string }).name);
    const unfinished: string[] = [];
    for await (const u of minioClient().listIncompleteUploads(t.bucket!, "", true))
      if ((u as { key: string }).key.includes(tenant)) unfinished.push((u as { key: string }).key);
    return { objects: objects.length, unfinished: unfinished.length };
  };

  it("calls per second: a burst passes, calls past it are refused with retry-after-ms, and pass after that wait", async () => {
    const token = await tenantWith("q-calls", { callsPerSecond: 1, burst: 3 });
    const other = await tenantWith("q-calls-other", {});
    // Six calls at once against a bucket of three (refilled at one a second).
    const burst = await Promise.allSettled(Array.from({ length: 6 }, () => t.client(token).listArtifacts({})));
    const passed = burst.filter((r) => r.status === "fulfilled").length;
    expect(passed).toBeGreaterThanOrEqual(3);
    expect(passed).toBeLessThanOrEqual(4);
    const hints: number[] = [];
    for (const r of burst) {
      if (r.status === "fulfilled") continue;
      const error = await expectQuota(Promise.reject(r.reason), "calls-per-second", /quota of 1 calls per second \(bursts of 3\).*retry after \d+ ms/);
      hints.push(Number(error.metadata.get("retry-after-ms")));
    }
    for (const ms of hints) expect(ms > 0 && ms <= 1000, String(ms)).toBe(true);
    // Another tenant is not held back by this one.
    for (let i = 0; i < 5; i++) await t.client(other).listArtifacts({});
    await sleep(Math.min(...hints) + 20);
    await t.client(token).listArtifacts({});
  });

  it("calls per second count every RPC, downloads on the plain-gRPC fast path included", async () => {
    const token = await tenantWith("q-calls-download", {});
    const data = randomBytes(1000);
    const { artifact } = await upload(token, data);
    await t.app.metadata.tenantQuotas.set("q-calls-download", { callsPerSecond: 1, burst: 2 });
    await sleep(CACHE_MS + 50);
    const downloads = await Promise.allSettled(Array.from({ length: 5 }, () => download(token, artifact!.id)));
    const passed = downloads.filter((r) => r.status === "fulfilled");
    expect(passed.length).toBeGreaterThanOrEqual(2);
    expect(passed.length).toBeLessThanOrEqual(3);
    for (const r of passed) expect(blake3Hex((r as PromiseFulfilledResult<Buffer>).value)).toBe(blake3Hex(data));
    for (const r of downloads) {
      if (r.status === "fulfilled") continue;
      const error = await expectQuota(Promise.reject(r.reason), "calls-per-second", /calls per second/);
      expect(Number(error.metadata.get("retry-after-ms"))).toBeGreaterThan(0);
    }
  });

  it("the Node SDK waits out retry-after-ms for calls safe to repeat; a refusal without the hint is final", async () => {
    const token = await tenantWith("q-sdk", {});
    const { artifact } = await upload(token, randomBytes(100));
    await t.app.metadata.tenantQuotas.set("q-sdk", { callsPerSecond: 1, burst: 1 });
    await sleep(CACHE_MS + 50);
    const waits: number[] = [];
    const client = createArtifactClient({ baseUrl: t.url, token, retry: { onRetry: ({ delayMs }) => waits.push(delayMs) } });
    try {
      // Three reads at once against a bucket of one: the others are refused with a hint, wait it out, then pass.
      const read = await Promise.all([client.get(artifact!.id), client.get(artifact!.id), client.loadBytes(artifact!.id)]);
      expect(read[2].byteLength).toBe(100);
      expect(waits.length).toBeGreaterThanOrEqual(2);
      for (const ms of waits) expect(ms).toBeGreaterThan(0);
      // Stored bytes carry no hint: no retry.
      await t.app.metadata.tenantQuotas.set("q-sdk", { storedBytes: 150, callsPerSecond: 1000, burst: 1000 });
      await sleep(CACHE_MS + 50);
      waits.length = 0;
      await expectCode(client.saveText("z".repeat(100), { kind: "note" }), Code.ResourceExhausted, /stored-bytes quota/);
      expect(waits).toEqual([]);
    } finally {
      await client.close();
    }
  });

  it("calls per second over Connect (HTTP/1.1): the hint is a response header", async () => {
    const token = await tenantWith("q-calls-connect", { callsPerSecond: 1, burst: 1 });
    const call = () =>
      fetch(`${t.url}/artifacts.v1.ArtifactService/ListArtifacts`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
        body: "{}",
      });
    expect((await call()).status).toBe(200);
    const refused = await call();
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get("retry-after-ms"))).toBeGreaterThan(0);
    expect(refused.headers.get("quota-exceeded")).toBe("calls-per-second");
    expect(((await refused.json()) as { code: string }).code).toBe("resource_exhausted");
  });

  it("picks up a changed override within the cache time", async () => {
    const token = await tenantWith("q-change", {});
    await t.client(token).listArtifacts({});
    await t.app.metadata.tenantQuotas.set("q-change", { callsPerSecond: 1, burst: 1 });
    await sleep(CACHE_MS + 50);
    const calls = await Promise.allSettled(Array.from({ length: 3 }, () => t.client(token).listArtifacts({})));
    const refused = calls.filter((r) => r.status === "rejected");
    expect(refused.length).toBeGreaterThanOrEqual(1);
    await expectQuota(Promise.reject((refused[0] as PromiseRejectedResult).reason), "calls-per-second", /quota of 1 calls per second/);
    await t.app.metadata.tenantQuotas.clear("q-change");
    await sleep(CACHE_MS + 1_050);
    for (let i = 0; i < 10; i++) await t.client(token).listArtifacts({});
  });

  it("counts signed-link requests toward the tenant's calls per second: 429 with Retry-After past the quota", async () => {
    const token = await tenantWith("q-link-calls", {});
    const { artifact } = await upload(token, randomBytes(1024));
    const { url } = await t.client(token).createDownloadUrl({ id: artifact!.id });
    await t.app.metadata.tenantQuotas.set("q-link-calls", { callsPerSecond: 1, burst: 2 });
    await sleep(CACHE_MS + 50);
    const statuses: number[] = [];
    let refused: Response | undefined;
    for (let i = 0; i < 4 && !refused; i++) {
      const response = await fetch(url);
      statuses.push(response.status);
      if (response.status === 429) refused = response;
      else await response.arrayBuffer();
    }
    // The burst lets at most two through at once (one more may have refilled meanwhile); then the link is refused.
    expect(statuses.filter((s) => s === 200).length).toBeGreaterThanOrEqual(1);
    expect(refused?.status).toBe(429);
    expect(Number(refused!.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    expect(await refused!.text()).toMatch(/calls per second/);
    await t.app.metadata.tenantQuotas.clear("q-link-calls");
  });

  it("concurrent uploads: refused while the tenant's places are taken; success, failure and cancel each give theirs back", async () => {
    const token = await tenantWith("q-uploads", { concurrentUploads: 1 });
    const first = heldUpload(token);
    await sleep(100);
    const refused = await expectQuota(
      upload(token, randomBytes(10)),
      "concurrent-uploads",
      /is running 1 uploads on this server, as many as its concurrent-uploads quota allows/,
    );
    expect(Number(refused.metadata.get("retry-after-ms"))).toBe(1000);
    // Session parts take the same places.
    const { session } = await t.client(token).createUploadSession({ spec: { kind: "quota-test" }, partSize: BigInt(PART) });
    await expectQuota(
      t.client(token).uploadPart({ sessionId: session!.sessionId, partNumber: 1, data: randomBytes(100) }),
      "concurrent-uploads",
      /concurrent-uploads quota/,
    );
    // Other tenants are not affected.
    await upload(await tenantWith("q-uploads-other", { concurrentUploads: 1 }), randomBytes(10));
    // Success gives the place back.
    first.finish();
    await first.result;
    await upload(token, randomBytes(10));
    // So does a failure (a wrong declared size)…
    await expectCode(upload(token, randomBytes(10), { expectedSize: 11n }), Code.InvalidArgument);
    await upload(token, randomBytes(10));
    // …and a cancelled call.
    const controller = new AbortController();
    const cancelled = heldUpload(token, controller.signal);
    await sleep(100);
    controller.abort();
    await expectCode(cancelled.result, Code.Canceled);
    await sleep(100);
    await upload(token, randomBytes(10));
    await t.client(token).abortUploadSession({ sessionId: session!.sessionId });
  });

  it("concurrent downloads: refused on gRPC, Connect and signed links while the place is taken; freed when the reader stops", async () => {
    const token = await tenantWith("q-downloads", { concurrentDownloads: 1 });
    const data = randomBytes(8 * MiB);
    const { artifact } = await upload(token, data);
    const id = artifact!.id;
    const connect = createClient(
      ArtifactService,
      createConnectTransport({
        baseUrl: t.url,
        httpVersion: "1.1",
        interceptors: [(next) => (req) => (req.header.set("authorization", `Bearer ${token}`), next(req))],
      }),
    );
    const { url } = await t.client(token).createDownloadUrl({ id });

    // A download that reads its first message, then stops reading: the server is held by flow control.
    const controller = new AbortController();
    const stream = t.client(token).download({ id }, { signal: controller.signal })[Symbol.asyncIterator]();
    expect((await stream.next()).value?.message.case).toBe("artifact");
    await expectQuota(download(token, id), "concurrent-downloads", /is running 1 downloads on this server/);
    await expectQuota(download(token, id, connect), "concurrent-downloads", /concurrent-downloads quota/);
    const link = await fetch(url);
    expect(link.status).toBe(429);
    expect(link.headers.get("retry-after")).toBe("1");
    // Cancelling the held download frees its place.
    controller.abort();
    await stream.next().catch(() => {});
    await sleep(100);
    expect(blake3Hex(await download(token, id))).toBe(blake3Hex(data));
    expect(blake3Hex(await download(token, id, connect))).toBe(blake3Hex(data));
    expect(Buffer.from(await (await fetch(url)).arrayBuffer()).equals(data)).toBe(true);
    // A download read to its end frees it too (several in a row, each after the last).
    for (let i = 0; i < 3; i++) await download(token, id);
  });

  it("stored bytes: refused at the start for a declared size, mid-stream otherwise, recording and keeping nothing", async () => {
    const token = await tenantWith("q-stored", { storedBytes: 3 * MiB });
    const kept = randomBytes(2 * MiB);
    await upload(token, kept, { expectedSize: BigInt(kept.length) });
    const before = await storedUnder("q-stored");
    // Declared: refused before a byte is stored.
    const declared = await expectQuota(
      upload(token, randomBytes(2 * MiB), { expectedSize: BigInt(2 * MiB) }),
      "stored-bytes",
      /would take tenant q-stored to \d+ bytes stored.*over its stored-bytes quota of 3145728 bytes: nothing was stored/,
    );
    expect(declared.metadata.get("retry-after-ms")).toBeNull();
    // Undeclared: refused as the bytes arrive.
    await expectQuota(upload(token, randomBytes(2 * MiB)), "stored-bytes", /over its stored-bytes quota/);
    // Two racing uploads that each fit but not together: never both (the bytes of each count while it runs; both may
    // be refused when their partial reservations meet), and every refusal is this quota's.
    const racing = await Promise.allSettled([upload(token, randomBytes(600 * 1024)), upload(token, randomBytes(600 * 1024))]);
    const raced = racing.filter((r) => r.status === "fulfilled").length;
    expect(raced).toBeLessThanOrEqual(1);
    for (const r of racing) if (r.status === "rejected") expect(ConnectError.from(r.reason).metadata.get("quota-exceeded")).toBe("stored-bytes");
    // Sessions: a declared size is refused at create; parts are refused as they would go over.
    await expectQuota(
      t.client(token).createUploadSession({ spec: { kind: "quota-test" }, expectedSize: BigInt(PART), partSize: BigInt(PART) }),
      "stored-bytes",
      /an upload session of expected_size 5242880/,
    );
    const { session } = await t.client(token).createUploadSession({ spec: { kind: "quota-test" }, partSize: BigInt(PART) });
    await expectQuota(t.client(token).uploadPart({ sessionId: session!.sessionId, partNumber: 1, data: randomBytes(PART) }), "stored-bytes", /quota/);
    await t.client(token).abortUploadSession({ sessionId: session!.sessionId });
    // Declared content the tenant already has stores nothing, so it passes.
    await upload(token, kept, { expectedSize: BigInt(kept.length), expectedBlake3: blake3Hex(kept) });
    // Nothing recorded for the refusals, nothing left in the bucket.
    expect(await artifactCount(token)).toBe(BigInt(2 + raced));
    expect(await storedUnder("q-stored")).toEqual({ objects: before.objects + raced, unfinished: 0 });
  });

  it("stored bytes count inline content too", async () => {
    const token = await tenantWith("q-inline", { storedBytes: 1000 });
    await t.client(token).saveInline({ spec: { kind: "note" }, content: { case: "text", value: "x".repeat(600) } });
    await expectQuota(
      t.client(token).saveInline({ spec: { kind: "note" }, content: { case: "text", value: "y".repeat(600) } }),
      "stored-bytes",
      /to 1200 bytes stored \(600 stored, 0 being uploaded\), over its stored-bytes quota of 1000 bytes/,
    );
    expect(await artifactCount(token)).toBe(1n);
  });

  it("open sessions: refused at the quota; aborting one makes room", async () => {
    const token = await tenantWith("q-sessions", { openSessions: 2 });
    const create = () => t.client(token).createUploadSession({ spec: { kind: "quota-test" }, partSize: BigInt(PART) });
    const a = await create();
    await create();
    const refused = await expectQuota(create(), "open-sessions", /has 2 open upload sessions, its open-sessions quota: complete or abort one/);
    expect(Number(refused.metadata.get("retry-after-ms"))).toBe(CACHE_MS);
    await t.client(token).abortUploadSession({ sessionId: a.session!.sessionId });
    await sleep(CACHE_MS + 50);
    await create();
  });

  it("the upload limit applies to sessions: a declared size at create, every part as it arrives", async () => {
    const token = await tenantWith("q-upload-limit", {});
    await expectCode(
      t.client(token).createUploadSession({ spec: { kind: "big" }, expectedSize: BigInt(13 * MiB), partSize: BigInt(PART) }),
      Code.ResourceExhausted,
      /exceeds this server's upload limit of 12582912 bytes/,
    );
    // Undeclared: parts 1 and 2 end at 10 MiB, part 3 would end at 15 MiB.
    const { session } = await t.client(token).createUploadSession({ spec: { kind: "big" }, partSize: BigInt(PART) });
    const sessionId = session!.sessionId;
    const parts = [randomBytes(PART), randomBytes(PART), randomBytes(PART)];
    await t.client(token).uploadPart({ sessionId, partNumber: 1, data: parts[0]! });
    await t.client(token).uploadPart({ sessionId, partNumber: 2, data: parts[1]! });
    await expectCode(
      t.client(token).uploadPart({ sessionId, partNumber: 3, data: parts[2]! }),
      Code.ResourceExhausted,
      /part 3 ends at byte 15728640, past this server's upload limit of 12582912 bytes \(ARTIFACTD_UPLOAD_MAX_BYTES\)/,
    );
    // A part far out, sent first, is refused too.
    await expectCode(t.client(token).uploadPart({ sessionId, partNumber: 9, data: randomBytes(10) }), Code.ResourceExhausted, /part 9 ends at byte/);
    // A stream bound to the session is held to the same limit.
    const { session: streamed } = await t.client(token).createUploadSession({ spec: { kind: "big" }, partSize: BigInt(PART) });
    await expectCode(
      t.client(token).upload(
        (async function* (): AsyncGenerator<UploadInit> {
          yield { message: { case: "header", value: { sessionId: streamed!.sessionId } } };
          for (const part of parts) yield { message: { case: "chunk", value: part } };
        })(),
      ),
      Code.ResourceExhausted,
      /upload limit of 12582912 bytes/,
    );
    // What fits completes.
    const complete = await t.client(token).completeUploadSession({ sessionId });
    expect(complete.artifact!.sizeBytes).toBe(BigInt(2 * PART));
    expect(await artifactCount(token)).toBe(1n);
    await t.client(token).abortUploadSession({ sessionId: streamed!.sessionId });
  });
});

/**
 * The quota service on its own, with a store in memory and a clock of the
 * test's: the bucket's arithmetic, idempotent releases, and what a failed
 * read of the overrides leaves.
 */
describe("tenant quota service", () => {
  const defaults = { storedBytes: 1000, concurrentUploads: 1, concurrentDownloads: 1, openSessions: 1, callsPerSecond: 10, burst: 2 };
  const setup = () => {
    let clock = 0;
    let failReads = false;
    const overrides = new Map<string, TenantQuotaOverrides>();
    const usage = { storedBytes: 0, openSessions: 0 };
    const store: TenantQuotaStore = {
      async get(tenantId) {
        if (failReads) throw new Error("database unreachable");
        return overrides.get(tenantId) ?? {};
      },
      async set() {
        throw new Error("not used");
      },
      async clear() {
        return false;
      },
      async usage() {
        return { ...usage };
      },
    };
    const quotas = createTenantQuotas({ store, defaults, cacheMs: 1_000, now: () => clock });
    return { quotas, overrides, usage, advance: (ms: number) => (clock += ms), failReads: (fail: boolean) => (failReads = fail) };
  };
  const refusal = async (call: Promise<unknown>) => {
    const error = await call.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ArtifactError);
    return error as ArtifactError;
  };

  it("refills the bucket at the rate, up to the burst, and hints the wait for the next call", async () => {
    const { quotas, advance } = setup();
    await quotas.admitCall("a");
    await quotas.admitCall("a");
    const refused = await refusal(quotas.admitCall("a"));
    expect([refused.code, refused.quota, refused.retryAfterMs]).toEqual(["resource_exhausted", "calls-per-second", 100]);
    advance(50);
    expect((await refusal(quotas.admitCall("a"))).retryAfterMs).toBe(50);
    advance(50);
    await quotas.admitCall("a");
    advance(10_000); // a long idle refills to the burst, no more
    await quotas.admitCall("a");
    await quotas.admitCall("a");
    await refusal(quotas.admitCall("a"));
  });

  it("gives a place back once however often it is released; reservations count until released", async () => {
    const { quotas, usage } = setup();
    const slot = await quotas.startUpload("a");
    await refusal(quotas.startUpload("a"));
    slot.release();
    slot.release();
    const again = await quotas.startUpload("a");
    await refusal(quotas.startUpload("a"));
    again.release();
    usage.storedBytes = 500;
    const first = quotas.reserveStorage("a");
    await first.add(300);
    const second = quotas.reserveStorage("a");
    expect((await refusal(second.add(300))).message).toMatch(/to 1100 bytes stored \(500 stored, 300 being uploaded\)/);
    first.release(true);
    first.release(true);
    // What the first stored counts until the next read: 800 of 1000.
    await second.add(200);
    await refusal(second.add(1));
  });

  it("keeps the limits it has when reading them again fails, and reads overrides again after the cache time", async () => {
    const { quotas, overrides, advance, failReads } = setup();
    expect((await quotas.limitsOf("a")).burst).toBe(2);
    overrides.set("a", { burst: 5 });
    expect((await quotas.limitsOf("a")).burst).toBe(2);
    advance(1_000);
    expect((await quotas.limitsOf("a")).burst).toBe(5);
    failReads(true);
    advance(1_000);
    expect((await quotas.limitsOf("a")).burst).toBe(5);
    await expect(quotas.limitsOf("never-read")).rejects.toThrow("database unreachable");
  });
});
