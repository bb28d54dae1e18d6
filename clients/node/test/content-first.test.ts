import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ArtifactError } from "../../../src/artifact-error.ts";
import { blake3Hex } from "../../../src/blake3.ts";
import { collectGarbage } from "../../../src/service/maintenance.ts";
import { interpose } from "../../../test/support/interpose.ts";
import { storedObjects } from "../../../test/support/stored-objects.ts";
import { BACKENDS, startTestApp, type TestApp } from "../../../test/support/test-app.ts";
import { createArtifactClient, type ArtifactClient, type TransferProgress } from "../src/index.ts";

const ROOT = path.resolve(import.meta.dirname, "../../..");
const NODE = path.join(ROOT, "node_modules/.bin/node");
const MAIN = path.join(ROOT, "src/main.ts");

/**
 * Content first from the client's side: uploadFile, saveDir and the CLI's
 * put hash locally, ask the server what it lacks and send only that. What
 * was sent is measured on the server, as the request bytes its Upload calls
 * received (the call observer every metric and access line reads).
 */
describe.each(BACKENDS)("content first in the Node client and the CLI on %s", (backend) => {
  let t: TestApp;
  let client: ArtifactClient;
  let work: string;
  /** Request bytes received by every Upload call so far, and the methods called. */
  let uploadBytes = 0;
  const methods: string[] = [];
  beforeAll(async () => {
    t = await startTestApp(
      backend,
      // A server limit below the client's batch of 1000: the client must learn it and ask within it.
      { ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0", ARTIFACTD_MAX_BATCH_ITEMS: "2" },
      {
        calls: [
          {
            finished(call) {
              methods.push(call.method);
              if (call.method === "Upload") uploadBytes += call.bytesReceived;
            },
          },
        ],
      },
    );
    work = mkdtempSync(path.join(os.tmpdir(), "artifactd-content-first-"));
    client = createArtifactClient({ baseUrl: t.url, token: t.tokens.alpha, timeoutMs: 30_000, cacheDir: path.join(work, "cache") });
  });
  afterAll(async () => {
    await client?.close();
    await t?.close();
    rmSync(work, { recursive: true, force: true });
  });

  /** The request bytes the server's Upload calls receive while `run` runs (calls end before their answer arrives). */
  const received = async <T>(run: () => Promise<T>): Promise<{ result: T; bytes: number }> => {
    const before = uploadBytes;
    const result = await run();
    return { result, bytes: uploadBytes - before };
  };
  const downloaded = async (id: string) => {
    const { content } = await client.download(id);
    const parts: Uint8Array[] = [];
    for await (const part of content) parts.push(part);
    return Buffer.concat(parts);
  };
  const file = (name: string, data: Uint8Array) => {
    const at = path.join(work, name);
    mkdirSync(path.dirname(at), { recursive: true });
    writeFileSync(at, data);
    return at;
  };

  it("uploadFile of content the tenant has sends no bytes and reports them skipped", async () => {
    const data = randomBytes(300_000);
    const first = await received(() => client.uploadFile(file("known/first.bin", data), { kind: "sdk-known" }));
    expect(first.result.deduplicated).toBe(false);
    expect(first.bytes, "the first upload sent the content").toBeGreaterThanOrEqual(data.length);

    const objects = storedObjects(t);
    const before = await objects.keys();
    const progress: TransferProgress[] = [];
    const again = await received(() =>
      client.uploadFile(file("known/again.bin", data), { kind: "sdk-known", name: "again.bin" }, { onProgress: (p) => progress.push(p) }),
    );
    expect(again.result.deduplicated).toBe(true);
    expect(again.result.artifact!.id).not.toBe(first.result.artifact!.id);
    expect(again.result.artifact!.name).toBe("again.bin");
    expect(again.bytes, "only a header went up").toBeLessThan(1_000);
    expect(progress.at(-1)).toEqual({ bytes: 0, totalBytes: data.length, skippedBytes: data.length, skippedFiles: 1 });
    expect(await objects.keysSince(before)).toEqual([]);
    expect((await downloaded(again.result.artifact!.id)).equals(data)).toBe(true);

    const off = createArtifactClient({ baseUrl: t.url, token: t.tokens.alpha, timeoutMs: 30_000, contentFirst: false });
    try {
      const sent = await received(() => off.uploadFile(file("known/off.bin", data), { kind: "sdk-known" }));
      expect(sent.bytes, "with contentFirst off every byte is sent").toBeGreaterThanOrEqual(data.length);
    } finally {
      await off.close();
    }
  });

  it("saveDir of a folder saved again with one file changed sends only that file's bytes", async () => {
    const folder = path.join(work, "tree");
    const unchanged = { "a.bin": randomBytes(200_000), "nested/b.bin": randomBytes(150_000), "nested/deeper/c.txt": Buffer.from("same text\n") };
    for (const [name, data] of Object.entries(unchanged)) file(path.join("tree", name), data);
    file("tree/changing.bin", randomBytes(120_000));
    const first = await received(() => client.saveDir(folder, { kind: "sdk-tree" }));
    expect(first.bytes).toBeGreaterThanOrEqual(470_000);

    const changed = randomBytes(120_000);
    file("tree/changing.bin", changed);
    const progress: TransferProgress[] = [];
    // What each FindMissingContent call that the server answered asked about.
    const batches: number[] = [];
    const restore = interpose(t.app.metadata, "findMissingContent", (findMissingContent, tenantId, contents) => {
      batches.push(contents.length);
      return findMissingContent(tenantId, contents);
    });
    const second = await received(() => client.saveDir(folder, { kind: "sdk-tree" }, { onProgress: (p) => progress.push(p) })).finally(restore);
    expect(batches, "four contents asked about in batches within the server's limit of 2").toEqual([2, 2]);
    const unchangedBytes = Object.values(unchanged).reduce((sum, d) => sum + d.length, 0);
    expect(second.bytes, "the changed file went up").toBeGreaterThanOrEqual(changed.length);
    // Besides it: the manifest (a few hundred bytes) and a header per file recorded by digest.
    expect(second.bytes, "and none of the unchanged files").toBeLessThan(changed.length + 5_000);
    expect(progress.at(-1)).toEqual({ bytes: changed.length, totalBytes: changed.length + unchangedBytes, skippedBytes: unchangedBytes, skippedFiles: 3 });

    const restored = path.join(work, "tree-restored");
    const manifest = await client.restoreDir(second.result.id, restored);
    expect(manifest.entries.filter((e) => e.type === "file").map((e) => [e.path, e.blake3])).toEqual(
      expect.arrayContaining([...Object.entries(unchanged).map(([name, data]) => [name, blake3Hex(data)]), ["changing.bin", blake3Hex(changed)]]),
    );
  });

  it("sends the bytes when the content vanished between the question and the commit", async () => {
    const data = randomBytes(100_000);
    const first = await client.uploadFile(file("vanishing/first.bin", data), { kind: "sdk-vanishing" });
    await client.delete(first.artifact!.id);
    // The server answers that it has the content, then garbage collection reclaims it before the commit.
    const restore = interpose(t.app.metadata, "findMissingContent", async (findMissingContent, tenantId, contents) => {
      const missing = await findMissingContent(tenantId, contents);
      await collectGarbage(
        { metadata: t.app.metadata, blobs: t.app.blobs, uploadStaleMs: 300_000 },
        { graceMs: 0, dryRun: false, now: new Date(Date.now() + 60_000) },
      );
      return missing;
    });
    try {
      const again = await received(() => client.uploadFile(file("vanishing/again.bin", data), { kind: "sdk-vanishing" }));
      expect(await t.app.metadata.findBlob("alpha", blake3Hex(data)), "stored again").toBeDefined();
      expect(again.result.deduplicated, "its bytes were stored anew").toBe(false);
      expect(again.bytes).toBeGreaterThanOrEqual(data.length);
      expect((await downloaded(again.result.artifact!.id)).equals(data)).toBe(true);
    } finally {
      restore();
    }
  });

  it("sends everything to a server that does not know FindMissingContent, and asks it only once", async () => {
    const older = createArtifactClient({ baseUrl: t.url, token: t.tokens.alpha, timeoutMs: 30_000 });
    const restore = interpose(t.app.metadata, "findMissingContent", async () => {
      throw new ArtifactError("unimplemented", "this server does not serve this call yet");
    });
    try {
      const data = randomBytes(50_000);
      await older.uploadFile(file("older/first.bin", data), { kind: "sdk-older" });
      const asked = methods.filter((m) => m === "FindMissingContent").length;
      const again = await received(() => older.uploadFile(file("older/again.bin", data), { kind: "sdk-older" }));
      expect(again.bytes, "every byte was sent").toBeGreaterThanOrEqual(data.length);
      expect(again.result.deduplicated, "and deduplicated by the server as before").toBe(true);
      expect(methods.filter((m) => m === "FindMissingContent").length, "the client did not ask again").toBe(asked);
    } finally {
      restore();
      await older.close();
    }
  });

  it("artifactd put reports what it skipped, for a file and for a folder", async () => {
    const put = (args: string[]) =>
      new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
        const env: Record<string, string | undefined> = {
          ...process.env,
          ARTIFACTD_URL: t.url,
          ARTIFACTD_TOKEN: t.tokens.alpha,
          ARTIFACTD_DATA_DIR: path.join(work, "no-data-dir"),
          XDG_CONFIG_HOME: path.join(work, "no-config"),
          XDG_CACHE_HOME: path.join(work, "cli-cache"),
        };
        delete env.ARTIFACTD_CONFIG;
        const child = spawn(NODE, [MAIN, "put", ...args, "--json"], { cwd: work, env, stdio: ["ignore", "pipe", "pipe"] });
        let stdout = "";
        let stderr = "";
        child.stdout.on("data", (d: Buffer) => (stdout += d));
        child.stderr.on("data", (d: Buffer) => (stderr += d));
        child.on("exit", (code) => resolve({ code, stdout, stderr }));
      });
    const data = randomBytes(80_000);
    file("cli/one.bin", data);
    file("cli/tree/x.bin", randomBytes(40_000));
    file("cli/tree/y.txt", Buffer.from("y\n"));
    const firstFile = await put(["cli/one.bin", "--kind", "cli-put"]);
    expect(firstFile).toMatchObject({ code: 0, stderr: "" });
    expect(JSON.parse(firstFile.stdout)).toMatchObject({ deduplicated: false, skippedFiles: 0, skippedBytes: 0 });
    file("cli/one-again.bin", data);
    const secondFile = await put(["cli/one-again.bin", "--kind", "cli-put"]);
    expect(JSON.parse(secondFile.stdout)).toMatchObject({ deduplicated: true, skippedFiles: 1, skippedBytes: data.length });

    const firstDir = await put(["cli/tree", "--kind", "cli-put"]);
    expect(JSON.parse(firstDir.stdout)).toMatchObject({ skippedFiles: 0, skippedBytes: 0 });
    const secondDir = await put(["cli/tree", "--kind", "cli-put"]);
    expect(secondDir).toMatchObject({ code: 0, stderr: "" });
    expect(JSON.parse(secondDir.stdout)).toMatchObject({ skippedFiles: 2, skippedBytes: 40_002 });
  });
});
