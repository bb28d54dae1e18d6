import { Code, ConnectError } from "@connectrpc/connect";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { blake3Hex } from "../../../src/blake3.ts";
import { startCuttingProxy, type CuttingProxy } from "../../../test/support/cutting-proxy.ts";
import { captureStorageKeys, expectNothingStored, untilStored } from "../../../test/support/nothing-stored.ts";
import { BACKENDS, startTestApp, type TestApp } from "../../../test/support/test-app.ts";
import { createArtifactClient, createRetryPolicy, type ArtifactClient } from "../src/index.ts";

const MiB = 1024 * 1024;
const codeOf = (error: unknown) => ConnectError.from(error).code;

describe.each(BACKENDS)("retries and resumed transfers on %s", (backend) => {
  let t: TestApp;
  let proxy: CuttingProxy;
  let client: ArtifactClient;
  let work: string;
  let retries: string[];
  beforeAll(async () => {
    // No maintenance pass: an aborted upload's session and parts must be gone by its own doing, not collected.
    t = await startTestApp(backend, { ARTIFACTD_S3_PART_SIZE: "5MiB", ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0" });
    proxy = await startCuttingProxy(t.url);
    work = mkdtempSync(path.join(os.tmpdir(), "artifactd-resume-test-"));
    client = createArtifactClient({
      baseUrl: proxy.url,
      token: t.tokens.alpha,
      timeoutMs: 30_000,
      cacheDir: path.join(work, "cache"),
      retry: { maxAttempts: 6, initialDelayMs: 50, maxDelayMs: 400, onRetry: (e) => retries.push(Code[e.error.code]) },
    });
  });
  afterAll(async () => {
    await client?.close();
    await proxy?.close();
    await t?.close();
    rmSync(work, { recursive: true, force: true });
  });
  beforeEach(() => {
    retries = [];
    proxy.resetCounts();
  });
  /** Ids of the open upload sessions of tenant alpha for artifacts of `kind`, read from the server's own store (no RPC lists sessions). */
  const liveSessions = async (kind: string) =>
    (await t.app.metadata.uploadSessions.listExpired(new Date("9999-12-31T00:00:00Z"), 1_000))
      .filter((s) => s.tenantId === "alpha" && s.spec.kind === kind)
      .map((s) => s.id);

  /**
   * With the upload of `kind` held by the proxy, waits until the server has stored at least 16 MiB of it, then
   * cuts every connection and lets traffic flow again: the cut lands at a known stored offset instead of
   * wherever a busy machine's server happened to be.
   */
  const cutOnceStored = async (kind: string) => {
    const [sessionId] = await liveSessions(kind);
    expect(sessionId, "the upload went through no session").toBeDefined();
    let committed = 0;
    for (const deadline = Date.now() + 20_000; committed < 16 * MiB && Date.now() < deadline; ) {
      committed = Number((await t.client().getUploadSession({ sessionId: sessionId! })).session!.resumeOffset);
      if (committed < 16 * MiB) await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(committed, "the server stored under 16 MiB of the 26 MiB it was sent").toBeGreaterThanOrEqual(16 * MiB);
    const sentBeforeCut = proxy.bytes.up;
    proxy.cutNow();
    proxy.resumeUp();
    return { committed, sentBeforeCut };
  };

  it("resumes a large file upload after the connection is cut, instead of starting over", async () => {
    const kind = "resumed-dataset";
    const size = 40 * MiB + 12_345;
    const file = path.join(work, "large.bin");
    const data = randomBytes(size);
    writeFileSync(file, data);
    // Hold the upload after 26 MiB, let the server store what reached it, then cut.
    const paused = proxy.pauseUpAfter(26 * MiB);
    const progress: number[] = [];
    const upload = client.uploadFile(file, { kind, name: "large.bin" }, { onProgress: (p) => progress.push(p.bytes) });
    await paused;
    const { committed, sentBeforeCut } = await cutOnceStored(kind);
    const { artifact } = await upload;
    expect(retries.length).toBeGreaterThan(0);
    expect(artifact!.blake3).toBe(blake3Hex(data));
    expect(Number(artifact!.sizeBytes)).toBe(size);
    // Starting over would send the whole file again; resuming sends only what the server had not stored
    // (plus framing and the few small calls that find the session again).
    expect(proxy.bytes.up - sentBeforeCut).toBeLessThan(size - committed + MiB);
    expect(progress.at(-1)).toBe(size);
    expect((await client.loadBytes(artifact!.id, { maxBytes: 64 * MiB })).equals(data)).toBe(true);
  });

  it("resumes a resumable writer fed from a source that cannot be read again, after the connection is cut", async () => {
    const kind = "resumed-stream";
    const size = 40 * MiB + 777;
    const data = randomBytes(size);
    const paused = proxy.pauseUpAfter(26 * MiB);
    const writer = client.openWriter({ kind, name: "stdin.bin" }, { resumable: true });
    const writing = (async () => {
      for (let at = 0; at < size; at += MiB) {
        await writer.write(data.subarray(at, at + MiB));
        if (at === 10 * MiB) writer.addLabels({ half: "way" });
      }
      writer.addMetrics({ bytes: size });
      return writer.commit();
    })();
    await paused;
    const { committed, sentBeforeCut } = await cutOnceStored(kind);
    const { artifact } = await writing;
    expect(retries.length).toBeGreaterThan(0);
    expect(artifact!.blake3).toBe(blake3Hex(data));
    expect(artifact!.labels).toEqual({ half: "way" });
    expect(artifact!.metrics).toEqual({ bytes: size });
    // Only what the server had not stored went again (the writer kept it; the source was never re-read).
    expect(proxy.bytes.up - sentBeforeCut).toBeLessThan(size - committed + MiB);
    expect((await client.loadBytes(artifact!.id, { maxBytes: 64 * MiB })).equals(data)).toBe(true);
    // One session, completed with this artifact (kept so that a retried completion finds it).
    const sessions = (await t.app.metadata.uploadSessions.listExpired(new Date("9999-12-31T00:00:00Z"), 1_000)).filter((s) => s.spec.kind === kind);
    expect(sessions.map((s) => [s.state, s.artifactId])).toEqual([["completed", artifact!.id]]);
  });

  it("an aborted resumable writer records nothing and leaves no session, nor any of its stored parts", async () => {
    const kind = "aborted-resumable-writer";
    using storage = captureStorageKeys(t);
    const writer = client.openWriter({ kind }, { resumable: true });
    await writer.write(randomBytes(12 * MiB));
    const sessionIds = await liveSessions(kind);
    expect(sessionIds).toHaveLength(1);
    // Parts stored under the session's key, so the abort has something to remove.
    await untilStored(t, storage.keys, 5 * MiB);
    await writer.abort();
    // Sessions live 6 hours and no maintenance runs: only AbortUploadSession can remove it, and its parts.
    await expectNothingStored(t, { keys: storage.keys, sessionIds });
    expect((await client.listPage({ kind, includeDeleted: true })).artifacts).toEqual([]);
  });

  it("an aborted resumable upload records nothing, leaves no session nor stored part, and ends at once", async () => {
    const kind = "aborted-upload";
    using storage = captureStorageKeys(t);
    const file = path.join(work, "aborted.bin");
    writeFileSync(file, randomBytes(24 * MiB));
    const controller = new AbortController();
    let sessionIds: string[] | undefined;
    const error = await client
      .uploadFile(
        file,
        { kind },
        {
          signal: controller.signal,
          onProgress: (p) => {
            if (p.bytes <= 10 * MiB || sessionIds) return;
            sessionIds = [];
            // The session is known once bytes flow; its id is read before the abort removes it.
            void liveSessions(kind).then((ids) => {
              sessionIds!.push(...ids);
              controller.abort(new Error("stop"));
            });
          },
        },
      )
      .catch((e: unknown) => e);
    expect(codeOf(error)).toBe(Code.Canceled);
    expect(retries).toEqual([]);
    expect(sessionIds).toHaveLength(1);
    expect(storage.keys).toHaveLength(1);
    await expectNothingStored(t, { keys: storage.keys, sessionIds: sessionIds! });
    expect((await client.listPage({ kind, includeDeleted: true })).artifacts).toEqual([]);
  });

  it("an abort during the backoff after a cut ends at once and aborts the upload session, its stored parts removed", async () => {
    const kind = "aborted-in-backoff";
    using storage = captureStorageKeys(t);
    const file = path.join(work, "aborted-in-backoff.bin");
    writeFileSync(file, randomBytes(24 * MiB));
    const controller = new AbortController();
    let abortedAt = 0;
    const backoffs: number[] = [];
    const patient = createArtifactClient({
      baseUrl: proxy.url,
      token: t.tokens.alpha,
      cacheDir: path.join(work, "cache"),
      // Called as the backoff begins: aborting here is the caller giving up while the client waits to resume.
      retry: {
        maxAttempts: 5,
        initialDelayMs: 10_000,
        maxDelayMs: 10_000,
        onRetry: (e) => {
          backoffs.push(e.attempt);
          abortedAt = Date.now();
          controller.abort(new Error("user pressed stop"));
        },
      },
    });
    try {
      const cut = proxy.cutAfter("up", 12 * MiB);
      const upload = patient.uploadFile(file, { kind }, { signal: controller.signal }).catch((e: unknown) => e);
      // The session exists from before the first byte until the abort; catch its id in between.
      let sessionId: string | undefined;
      while (!sessionId && !controller.signal.aborted) {
        sessionId = (await liveSessions(kind))[0];
        if (!sessionId) await new Promise((resolve) => setTimeout(resolve, 2));
      }
      expect(sessionId, "the upload session was never seen open").toBeDefined();
      const error = await upload;
      await cut;
      expect(codeOf(error)).toBe(Code.Canceled);
      expect(backoffs).toEqual([1]);
      expect(Date.now() - abortedAt).toBeLessThan(1_000);
      expect(
        codeOf(
          await t
            .client()
            .getUploadSession({ sessionId: sessionId! })
            .catch((e: unknown) => e),
        ),
      ).toBe(Code.NotFound);
      await expectNothingStored(t, { keys: storage.keys, sessionIds: [sessionId!] });
      expect((await client.listPage({ kind, includeDeleted: true })).artifacts).toEqual([]);
    } finally {
      await patient.close();
    }
  });

  it("resumes a download after the connection is cut, and still verifies it", async () => {
    const data = randomBytes(24 * MiB);
    const { artifact } = await client.uploadStream([data], { kind: "dataset" });
    proxy.resetCounts();
    retries = [];
    const cut = proxy.cutAfter("down", 10 * MiB);
    const target = path.join(work, "downloaded.bin");
    await client.downloadToFile(artifact!.id, target);
    await cut;
    expect(retries.length).toBeGreaterThan(0);
    expect(readFileSync(target).equals(data)).toBe(true);
    expect(proxy.bytes.down).toBeLessThan(1.5 * data.byteLength);
  });

  it("retries a unary call across a dropped connection", async () => {
    const saved = await client.saveText("still here", { kind: "note" });
    proxy.cutNow();
    expect((await client.get(saved.id)).id).toBe(saved.id);
    const cut = proxy.cutAfter("up", 1);
    expect((await client.get(saved.id)).id).toBe(saved.id);
    await cut;
    expect(retries.length).toBeGreaterThan(0);
  });

  it("retries an UploadPart cut off while its data was going up, sending the whole part again", async () => {
    const part = randomBytes(5 * MiB);
    const { session } = await client.rpc.createUploadSession({ spec: { kind: "cut-part" }, expectedSize: BigInt(part.length), partSize: BigInt(5 * MiB) });
    const cut = proxy.cutAfter("up", 2 * MiB);
    const { session: after } = await client.rpc.uploadPart({ sessionId: session!.sessionId, partNumber: 1, data: part, partBlake3: blake3Hex(part) });
    await cut;
    expect(retries.length).toBeGreaterThan(0);
    expect(after).toMatchObject({ committedParts: [1], committedBytes: BigInt(part.length) });
    const { artifact } = await client.rpc.completeUploadSession({ sessionId: session!.sessionId });
    expect((await client.loadBytes(artifact!.id)).equals(part)).toBe(true);
  });

  it("does not retry what the server refused", async () => {
    await client.listPage({}, { pageSize: 1 }); // an open connection, so a retry would show as a second call, not a reconnect
    retries = [];
    const before = proxy.connections;
    const error = await client.get(`art_${"0".repeat(26)}`).catch((e: unknown) => e);
    expect(codeOf(error)).toBe(Code.NotFound);
    expect(retries).toEqual([]);
    expect(proxy.connections).toBe(before);
  });
});

describe("retries against a service that is down", () => {
  let closedPort: number;
  beforeAll(async () => {
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    closedPort = (server.address() as net.AddressInfo).port;
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it("gives up with UNAVAILABLE after the configured attempts, in bounded time", async () => {
    const attempts: number[] = [];
    const client = createArtifactClient({
      baseUrl: `http://127.0.0.1:${closedPort}`,
      token: "adt_none",
      retry: { maxAttempts: 4, initialDelayMs: 20, maxDelayMs: 100, onRetry: (e) => attempts.push(e.attempt) },
    });
    const started = Date.now();
    const error = await client.get(`art_${"0".repeat(26)}`).catch((e: unknown) => e);
    expect(codeOf(error)).toBe(Code.Unavailable);
    expect(attempts).toEqual([1, 2, 3]);
    expect(Date.now() - started).toBeLessThan(5_000);
    await client.close();
  });

  it("stops waiting at once when the signal aborts during a backoff", async () => {
    const client = createArtifactClient({
      baseUrl: `http://127.0.0.1:${closedPort}`,
      token: "adt_none",
      retry: { maxAttempts: 10, initialDelayMs: 10_000, maxDelayMs: 10_000 },
    });
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error("user pressed stop")), 200);
    const started = Date.now();
    const error = await client.get(`art_${"0".repeat(26)}`, { signal: controller.signal }).catch((e: unknown) => e);
    expect(codeOf(error)).toBe(Code.Canceled);
    expect(Date.now() - started).toBeLessThan(2_000);
    await client.close();
  });

  it("can be turned off", async () => {
    let calls = 0;
    const failing = async () => {
      calls++;
      throw new ConnectError("down", Code.Unavailable);
    };
    await expect(createRetryPolicy(false).run(failing)).rejects.toThrow(/down/);
    expect(calls).toBe(1);
    await expect(createRetryPolicy({ maxAttempts: 3, initialDelayMs: 1, maxDelayMs: 1 }).run(failing)).rejects.toThrow(/down/);
    expect(calls).toBe(4);
  });
});
