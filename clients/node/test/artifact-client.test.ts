import { Code, ConnectError } from "@connectrpc/connect";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Client } from "minio";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { blake3Hex } from "../../../src/blake3.ts";
import { captureStorageKeys, expectNothingStored, untilStored } from "../../../test/support/nothing-stored.ts";
import { BACKENDS, startTestApp, type TestApp } from "../../../test/support/test-app.ts";
import { ArtifactIntegrityError, createArtifactClient, Storage, type ArtifactClient } from "../src/index.ts";

const MiB = 1024 * 1024;

describe.each(BACKENDS)("Node client on %s", (backend) => {
  let t: TestApp;
  let client: ArtifactClient;
  let dir: string;
  beforeAll(async () => {
    // No maintenance pass: what an abandoned upload stored must be gone by its own doing, not collected.
    t = await startTestApp(backend, { ARTIFACTD_S3_PART_SIZE: "5MiB", ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0" });
    client = createArtifactClient({ baseUrl: t.url, token: t.tokens.alpha, timeoutMs: 30_000 });
    dir = mkdtempSync(path.join(os.tmpdir(), "artifactd-client-"));
  });
  afterAll(async () => {
    await client?.close();
    await t?.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const count = async (kind: string) => {
    let n = 0;
    for await (const _ of client.list({ kind, includeDeleted: true })) n++;
    return n;
  };

  it("commits a writer with labels, metrics and tags added while writing", async () => {
    const writer = client.openWriter({ kind: "model", name: "writer.bin", labels: { stage: "train" } });
    const parts = [randomBytes(300_000), randomBytes(2 * MiB + 5), Buffer.from("tail")];
    await writer.write(parts[0]!);
    writer.addLabels({ epoch: "3" }).addMetrics({ loss: 0.25 });
    await writer.write(parts[1]!);
    writer.addTags("best", "final");
    await writer.write("tail");
    const { artifact, deduplicated } = await writer.commit();
    const data = Buffer.concat(parts);
    expect(deduplicated).toBe(false);
    expect(artifact!.labels).toEqual({ stage: "train", epoch: "3" });
    expect(artifact!.metrics).toEqual({ loss: 0.25 });
    expect(artifact!.tags).toEqual(["best", "final"]);
    expect(artifact!.blake3).toBe(blake3Hex(data));
    expect((await client.loadBytes(artifact!.id)).equals(data)).toBe(true);
    expect(writer.committed).toBe(true);
  });

  /** Until the server has taken on `n` uploads (each asks the store for a key after its header). */
  const untilUploadsBegun = async (keys: readonly string[], n: number) => {
    for (const deadline = Date.now() + 10_000; keys.length < n && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 10));
    expect(keys, `the server took on ${keys.length} of ${n} uploads`).toHaveLength(n);
  };

  it("records and stores nothing on abort, on an exception inside the writer, or when a scope is left without commit: each upload removes what it began itself", async () => {
    const kind = `abort-${backend.replace(/\W/g, "")}`;
    using storage = captureStorageKeys(t);
    const aborted = client.openWriter({ kind });
    await aborted.write(randomBytes(6 * MiB));
    // The server really holds part of the upload (a 5 MiB part, or the incoming file), so the abort has something to undo.
    await untilStored(t, storage.keys, 5 * MiB);
    await aborted.abort();
    expect(aborted.committed).toBe(false);
    await expect(aborted.write(Buffer.from("more"))).rejects.toThrow(/aborted/);
    await expect(aborted.commit()).rejects.toThrow(/aborted/);

    // Past HELD_UPLOAD_MAX_BYTES, so that the writers stream and the server has begun something (a smaller content is
    // held by the writer until commit, and abandoning it sends nothing: small-uploads.test.ts).
    await expect(
      client.withWriter({ kind }, async (writer) => {
        await writer.write(randomBytes(2 * MiB));
        await untilUploadsBegun(storage.keys, 2);
        throw new Error("the job failed half-way");
      }),
    ).rejects.toThrow("the job failed half-way");

    {
      await using scoped = client.openWriter({ kind });
      await scoped.write(randomBytes(2 * MiB));
      await untilUploadsBegun(storage.keys, 3);
    }
    await expectNothingStored(t, { keys: storage.keys });
    expect(await count(kind)).toBe(0);
  });

  it("passes the service's errors through as ConnectErrors with their gRPC code", async () => {
    const unknown = "art_00000000000000000000000000";
    await expect(client.get(unknown)).rejects.toMatchObject({ code: Code.NotFound });
    await expect(client.download(unknown)).rejects.toMatchObject({ code: Code.NotFound });
    await expect(client.downloadToFile(unknown, path.join(dir, "missing.bin"))).rejects.toMatchObject({ code: Code.NotFound });
    expect(existsSync(path.join(dir, "missing.bin"))).toBe(false);
    const refused = createArtifactClient({ baseUrl: t.url, token: "adt_not-a-token" });
    try {
      await expect(refused.get(unknown)).rejects.toMatchObject({ code: Code.Unauthenticated });
    } finally {
      await refused.close();
    }
  });

  it("sends UploadPart through rpc, and reads its refusals and deadlines as the generic gRPC client does", async () => {
    const parts = [randomBytes(5 * MiB), randomBytes(123)];
    const data = Buffer.concat(parts);
    const { session } = await client.rpc.createUploadSession({
      spec: { kind: "parts", name: "parts.bin" },
      expectedSize: BigInt(data.length),
      expectedBlake3: blake3Hex(data),
      partSize: BigInt(5 * MiB),
    });
    const sessionId = session!.sessionId;
    const first = await client.rpc.uploadPart({ sessionId, partNumber: 1, data: parts[0]!, partBlake3: blake3Hex(parts[0]!) });
    expect(first.session).toMatchObject({ committedParts: [1], committedBytes: BigInt(5 * MiB) });
    await client.rpc.uploadPart({ sessionId, partNumber: 2, data: parts[1]! });
    const { artifact } = await client.rpc.completeUploadSession({ sessionId });
    expect(artifact!.blake3).toBe(blake3Hex(data));
    expect((await client.loadBytes(artifact!.id)).equals(data)).toBe(true);

    const { session: open } = await client.rpc.createUploadSession({ spec: { kind: "parts", name: "refused.bin" }, partSize: BigInt(5 * MiB) });
    const refused = [
      { request: { sessionId: `ups_${"0".repeat(26)}`, partNumber: 1, data: parts[1]! }, code: Code.NotFound },
      { request: { sessionId: open!.sessionId, partNumber: 10_001, data: parts[1]! }, code: Code.InvalidArgument },
      { request: { sessionId: open!.sessionId, partNumber: 1, data: parts[0]!, partBlake3: "0".repeat(64) }, code: Code.InvalidArgument },
    ];
    /** The error a call ends with (an OK answer shows as one too, so the comparisons below fail). */
    const refusal = (call: Promise<unknown>) => call.then(() => new ConnectError("answered OK"), ConnectError.from);
    for (const { request, code } of refused) {
      const lean = await refusal(client.rpc.uploadPart(request));
      const generic = await refusal(t.client().uploadPart(request));
      expect(generic.code).toBe(code);
      expect({ code: lean.code, message: lean.rawMessage }).toEqual({ code: generic.code, message: generic.rawMessage });
    }
    const late = await refusal(client.rpc.uploadPart({ sessionId: open!.sessionId, partNumber: 1, data: parts[0]! }, { timeoutMs: 1 }));
    expect(late.code).toBe(Code.DeadlineExceeded);
  });

  it("surfaces server refusals through write or commit", async () => {
    const writer = client.openWriter({ kind: "" });
    const error = await (async () => {
      try {
        await writer.write(randomBytes(10));
        await writer.commit();
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(error).toBeInstanceOf(ConnectError);
    expect((error as ConnectError).code).toBe(Code.InvalidArgument);
    const wrong = client.openWriter({ kind: "x" }, { expectedSize: 5 });
    await wrong.write("123456");
    await expect(wrong.commit()).rejects.toMatchObject({ code: Code.InvalidArgument });
  });

  it("uploads a file larger than several parts and downloads it to a file, verified", async () => {
    const source = path.join(dir, "big.bin");
    const data = randomBytes(12 * MiB + 321);
    writeFileSync(source, data);
    const { artifact } = await client.uploadFile(source, { kind: "dataset", name: "big.bin" });
    expect(artifact!.sizeBytes).toBe(BigInt(data.length));
    const target = path.join(dir, "big.copy");
    const downloaded = await client.downloadToFile(artifact!.id, target);
    expect(downloaded.blake3).toBe(blake3Hex(data));
    const copy = readFileSync(target);
    expect(copy.equals(data)).toBe(true);
    // What `b3sum big.copy` prints, computed over the file as written.
    expect(blake3Hex(copy)).toBe(artifact!.blake3);
    expect(readdirSync(dir).filter((f) => f.includes(".partial-"))).toEqual([]);
    const { content } = await client.download(artifact!.id, { offset: 5 * MiB, length: 10 });
    const parts: Uint8Array[] = [];
    for await (const chunk of content) parts.push(chunk);
    expect(Buffer.concat(parts).equals(data.subarray(5 * MiB, 5 * MiB + 10))).toBe(true);
  });

  it("downloadToFile with overwrite: false never replaces a file, even one that appears while it downloads", async () => {
    const data = randomBytes(2 * MiB);
    const { artifact } = await client.uploadStream([data], { kind: "dataset", name: "race.bin" });
    const target = path.join(dir, "race.bin");
    // Something else writes the file after the download started (after any check a caller could have made).
    const appearing = client.downloadToFile(artifact!.id, target, {
      overwrite: false,
      onProgress: () => {
        if (!existsSync(target)) writeFileSync(target, "appeared meanwhile");
      },
    });
    await expect(appearing).rejects.toMatchObject({ code: "EEXIST" });
    expect(readFileSync(target, "utf8")).toBe("appeared meanwhile");
    expect(readdirSync(dir).filter((f) => f.includes(".partial-"))).toEqual([]);
    // Into a free name it is placed as usual; the default still replaces.
    const free = path.join(dir, "race-free.bin");
    await client.downloadToFile(artifact!.id, free, { overwrite: false });
    expect(readFileSync(free).equals(data)).toBe(true);
    await client.downloadToFile(artifact!.id, target);
    expect(readFileSync(target).equals(data)).toBe(true);
  });

  it("saves JSON and text inline and lists across pages", async () => {
    const run = `run-${Math.random()}`;
    const json = await client.saveJson({ rows: 1250, tables: ["orders"] }, { kind: "summary", provenance: { runId: run } });
    const text = await client.saveText("done\n", { kind: "log", provenance: { runId: run } });
    expect((await client.loadBytes(json.id)).toString()).toBe('{"rows":1250,"tables":["orders"]}');
    expect((await client.get(text.id, { includeContent: true })).inlineContent?.content).toEqual({ case: "text", value: "done\n" });
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await client.saveText(String(i), { kind: "page", provenance: { runId: run } })).id);
    const seen: string[] = [];
    for await (const artifact of client.list({ kind: "page", provenance: { runId: run } }, { pageSize: 2 })) seen.push(artifact.id);
    expect(seen).toEqual(ids.reverse());
  });

  it("saves JSON and text too large for inline storage as blobs with the same id prefix, and loads them back", async () => {
    const rows = Array.from({ length: 20_000 }, (_, i) => ({ i, name: `row-${i}` }));
    const json = await client.saveJson(rows, { kind: "big-json" });
    expect(JSON.stringify(rows).length).toBeGreaterThan(256 * 1024);
    expect(json.id).toMatch(/^json_/);
    expect(json.storage).toBe(Storage.BLOB);
    expect(json.mimeType).toBe("application/json");
    expect(await client.loadJson(json.id)).toEqual(rows);
    const text = "line of a long log\n".repeat(20_000);
    const saved = await client.saveText(text, { kind: "big-log" });
    expect(saved.id).toMatch(/^txt_/);
    expect(saved.storage).toBe(Storage.BLOB);
    expect(await client.loadText(saved.id)).toBe(text);
    // Small content stays inline, where its JSON is queryable.
    expect((await client.saveJson({ small: true }, { kind: "small-json" })).storage).toBe(Storage.INLINE);
  });

  it("falls back to a blob when the server's inline limit is lower than the client's", async () => {
    const strict = await startTestApp(backend, { ARTIFACTD_INLINE_MAX_BYTES: "1KiB" });
    const strictClient = createArtifactClient({ baseUrl: strict.url, token: strict.tokens.alpha });
    try {
      const value = { text: "x".repeat(4000) };
      const saved = await strictClient.saveJson(value, { kind: "medium-json" });
      expect(saved.storage).toBe(Storage.BLOB);
      expect(saved.id).toMatch(/^json_/);
      expect(await strictClient.loadJson(saved.id)).toEqual(value);
    } finally {
      await strictClient.close();
      await strict.close();
    }
  });

  it("ends a writer, an upload and a download past their timeoutMs with DEADLINE_EXCEEDED, recording nothing", async () => {
    using storage = captureStorageKeys(t);
    // Past HELD_UPLOAD_MAX_BYTES, so that both stream and reach the server before their deadline (a smaller content
    // is held until commit: small-uploads.test.ts checks its deadline).
    const writer = client.openWriter({ kind: "too-slow" }, { timeoutMs: 400 });
    await writer.write(randomBytes(2 * MiB));
    await new Promise((resolve) => setTimeout(resolve, 800));
    const late = await writer
      .write(randomBytes(1000))
      .then(() => writer.commit())
      .catch((e: unknown) => e);
    expect(ConnectError.from(late).code).toBe(Code.DeadlineExceeded);
    const slowSource = (async function* () {
      yield randomBytes(2 * MiB);
      await new Promise((resolve) => setTimeout(resolve, 800));
      yield randomBytes(1000);
    })();
    const upload = await client.uploadStream(slowSource, { kind: "too-slow" }, { timeoutMs: 400 }).catch((e: unknown) => e);
    expect(ConnectError.from(upload).code).toBe(Code.DeadlineExceeded);
    expect(await count("too-slow")).toBe(0);
    expect(storage.keys, "both uploads reached the server").toHaveLength(2);
    await expectNothingStored(t, { keys: storage.keys });

    const data = randomBytes(8 * MiB);
    const { artifact } = await client.uploadStream([data], { kind: "deadline-download" });
    const { content } = await client.download(artifact!.id, { timeoutMs: 400 });
    const read = (async () => {
      for await (const _ of content) await new Promise((resolve) => setTimeout(resolve, 100));
    })();
    expect(ConnectError.from(await read.catch((e: unknown) => e)).code).toBe(Code.DeadlineExceeded);
    // With time enough, the same calls succeed.
    expect((await client.loadBytes(artifact!.id, { timeoutMs: 30_000 })).equals(data)).toBe(true);
  });

  /** Replaces the stored copy of a blob with other bytes of the same length, behind the service's back. */
  const corruptStoredBlob = async (digest: string, size: number) => {
    const blob = await t.app.metadata.findBlob("alpha", digest);
    expect(blob, "the blob index has no entry").toBeDefined();
    if (backend === "pglite+fs") {
      const stored = path.join(t.dataDir, "blobs", blob!.storageKey);
      expect(statSync(stored).size).toBe(size);
      writeFileSync(stored, randomBytes(size));
    } else {
      const minio = inject("minio");
      const url = new URL(minio.endpoint);
      const s3 = new Client({ endPoint: url.hostname, port: Number(url.port), useSSL: false, accessKey: minio.accessKey, secretKey: minio.secretKey });
      expect((await s3.statObject(t.bucket!, blob!.storageKey)).size).toBe(size);
      await s3.putObject(t.bucket!, blob!.storageKey, randomBytes(size), size);
    }
  };

  it("detects corrupted stored content and leaves no file behind", async () => {
    const data = randomBytes(2 * MiB);
    const { artifact } = await client.uploadStream(
      (async function* () {
        yield data;
      })(),
      { kind: "fragile" },
    );
    await corruptStoredBlob(artifact!.blake3, data.length);
    const target = path.join(dir, "fragile.bin");
    const error = await client.downloadToFile(artifact!.id, target).then(
      () => undefined,
      (e: unknown) => e,
    );
    // The SDK verifies whole downloads itself, so the server sent the bytes unhashed and the SDK found the damage.
    expect(error, String(error)).toBeInstanceOf(ArtifactIntegrityError);
    expect(existsSync(target)).toBe(false);
    expect(readdirSync(dir).filter((f) => f.startsWith("fragile"))).toEqual([]);
    // It then let the server find it too: the blob is marked, so every client is refused at once from now on.
    const again = (async () => {
      for await (const _ of client.rpc.download({ id: artifact!.id })) void _;
    })();
    await expect(again).rejects.toMatchObject({ code: Code.DataLoss, rawMessage: expect.stringMatching(/is corrupt/) });
  });
});
