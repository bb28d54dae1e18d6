import { Code, ConnectError } from "@connectrpc/connect";
import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { blake3Hex } from "../../../src/blake3.ts";
import { startCuttingProxy, type CuttingProxy } from "../../../test/support/cutting-proxy.ts";
import { BACKENDS, startTestApp, type TestApp } from "../../../test/support/test-app.ts";
import {
  createArtifactClient,
  DEFAULT_DIRECTORY_LIMITS,
  DIRECTORY_ENTRY_CLASS,
  DIRECTORY_MANIFEST_FORMAT,
  DIRECTORY_MANIFEST_MIME,
  DirectoryManifestError,
  type ArtifactClient,
  type DirectoryRef,
  type RestoreDirOptions,
  type SaveDirOptions,
  type TransferProgress,
} from "../src/index.ts";

/** Every file under dir (relative path → bytes) and every folder, to compare trees. */
function snapshot(dir: string) {
  const files: Record<string, string> = {};
  const folders: string[] = [];
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    const relative = path.relative(dir, path.join(entry.parentPath, entry.name)).split(path.sep).join("/");
    if (entry.isDirectory()) folders.push(relative);
    else files[relative] = blake3Hex(readFileSync(path.join(dir, relative)));
  }
  return { files, folders: folders.sort() };
}

describe.each(BACKENDS)("directory artifacts on %s", (backend) => {
  let t: TestApp;
  let proxy: CuttingProxy;
  let client: ArtifactClient;
  let work: string;
  let source: string;
  const shared = randomBytes(700_000);
  beforeAll(async () => {
    t = await startTestApp(backend, { ARTIFACTD_S3_PART_SIZE: "5MiB" });
    proxy = await startCuttingProxy(t.url);
    work = mkdtempSync(path.join(os.tmpdir(), "artifactd-dir-test-"));
    client = createArtifactClient({ baseUrl: proxy.url, token: t.tokens.alpha, timeoutMs: 30_000, cacheDir: path.join(work, "cache") });
    source = path.join(work, "source");
    mkdirSync(path.join(source, "data/train/deep"), { recursive: true });
    mkdirSync(path.join(source, "empty-folder/inner-empty"), { recursive: true });
    writeFileSync(path.join(source, "README.txt"), "a model\n");
    writeFileSync(path.join(source, "empty.txt"), "");
    writeFileSync(path.join(source, "data/train/a.bin"), shared);
    writeFileSync(path.join(source, "data/train/deep/copy-of-a.bin"), shared);
    writeFileSync(path.join(source, "data/big.bin"), randomBytes(6 * 1024 * 1024));
    writeFileSync(path.join(source, "run.sh"), "#!/bin/sh\necho hi\n");
    chmodSync(path.join(source, "run.sh"), 0o755);
  });
  afterAll(async () => {
    await client?.close();
    await proxy?.close();
    await t?.close();
    rmSync(work, { recursive: true, force: true });
  });
  beforeEach(() => proxy.resetCounts());

  const entryCount = async () => {
    let n = 0;
    for await (const _ of client.list({ artifactClass: DIRECTORY_ENTRY_CLASS })) n++;
    return n;
  };

  it("round-trips nested folders, empty files and empty folders; identical files are sent once", async () => {
    const entriesBefore = await entryCount();
    const saving: TransferProgress[] = [];
    const dir = await client.saveDir(
      source,
      { kind: "model", labels: { stage: "prod" }, provenance: { runId: "run-dir" } },
      { onProgress: (p) => saving.push(p) },
    );
    const typed: DirectoryRef = dir.id;
    expect(typed.startsWith("dir_")).toBe(true);
    expect(dir.mimeType).toBe(DIRECTORY_MANIFEST_MIME);
    expect(dir.name).toBe("source");
    // 6 files, 5 distinct contents: the duplicate was neither uploaded nor recorded twice.
    expect((await entryCount()) - entriesBefore).toBe(5);
    expect(proxy.bytes.up).toBeLessThan(6 * 1024 * 1024 + 2 * shared.byteLength);

    const target = path.join(work, "restored");
    const restoring: TransferProgress[] = [];
    const manifest = await client.restoreDir(dir.id, target, { onProgress: (p) => restoring.push(p) });
    expect(manifest.format).toBe(DIRECTORY_MANIFEST_FORMAT);
    // Progress over the whole folder, each distinct content counted once, ending at the total.
    const distinctBytes = [...new Map(manifest.entries.flatMap((e) => (e.type === "file" ? [[e.blake3, e.size] as const] : []))).values()].reduce(
      (a, b) => a + b,
      0,
    );
    for (const progress of [saving, restoring]) {
      expect(progress.length).toBeGreaterThan(1);
      expect(progress.every((p) => p.totalBytes === distinctBytes)).toBe(true);
      expect(progress.at(-1)!.bytes).toBe(distinctBytes);
      expect(progress.every((p, i) => i === 0 || p.bytes >= progress[i - 1]!.bytes)).toBe(true);
    }
    expect(snapshot(target)).toEqual(snapshot(source));
    expect(statSync(path.join(target, "run.sh")).mode & 0o111).not.toBe(0);
    expect(statSync(path.join(target, "README.txt")).mode & 0o111).toBe(0);
    expect(readdirSync(work).filter((n) => n.includes(".restore-"))).toEqual([]);
  });

  it("reuses asLocalDir without moving content, and notices a tampered file or a missing folder", async () => {
    const dir = await client.saveDir(source, { kind: "model", labels: { copy: "as-local-dir" } });
    await client.restoreDir(dir.id, path.join(work, "fills-the-file-cache"));
    proxy.resetCounts();
    const local = await client.asLocalDir(dir.id);
    // Every file's content was already in the file cache from the restore: only metadata moved.
    expect(proxy.bytes.down).toBeLessThan(64 * 1024);
    expect(snapshot(local)).toEqual(snapshot(source));
    proxy.resetCounts();
    expect(await client.asLocalDir(dir.id)).toBe(local);
    expect(proxy.bytes.down).toBeLessThan(64 * 1024);

    writeFileSync(path.join(local, "README.txt"), "tampered\n");
    const again = await client.asLocalDir(dir.id);
    expect(readFileSync(path.join(again, "README.txt"), "utf8")).toBe("a model\n");
    expect(snapshot(again)).toEqual(snapshot(source));

    rmSync(path.join(again, "empty-folder/inner-empty"), { recursive: true });
    expect(snapshot(await client.asLocalDir(dir.id))).toEqual(snapshot(source));
  });

  it("a save that fails part-way leaves no live file artifacts behind", async () => {
    const folder = path.join(work, "cut-mid-save");
    mkdirSync(folder);
    for (const name of ["a.bin", "b.bin", "c.bin"]) writeFileSync(path.join(folder, name), randomBytes(2 * 1024 * 1024));
    // No retries, so the cut connection fails the save instead of being resumed.
    const fragile = createArtifactClient({ baseUrl: proxy.url, token: t.tokens.alpha, retry: false, cacheDir: path.join(work, "cache") });
    try {
      const cut = proxy.cutAfter("up", 3 * 1024 * 1024);
      await expect(fragile.saveDir(folder, { kind: "cut-mid-save", pinned: true }, { concurrency: 1 })).rejects.toThrow();
      await cut;
      const entries: { deleted: boolean; pinned: boolean }[] = [];
      for await (const a of client.list({ kind: "cut-mid-save", includeDeleted: true })) entries.push({ deleted: a.deletedAt !== undefined, pinned: a.pinned });
      // The first file was stored before the cut; it is now unpinned and deleted, and no directory artifact exists.
      expect(entries.length).toBeGreaterThanOrEqual(1);
      expect(entries.every((e) => e.deleted && !e.pinned)).toBe(true);
    } finally {
      await fragile.close();
    }
  });

  it("refuses links and special files in saveDir, by name", async () => {
    const withLink = path.join(work, "with-link");
    mkdirSync(withLink);
    writeFileSync(path.join(withLink, "real.txt"), "x");
    symlinkSync("/etc/passwd", path.join(withLink, "sneaky"));
    await expect(client.saveDir(withLink, { kind: "model" })).rejects.toThrow(/sneaky is a symbolic link/);
    const withSocket = path.join(work, "with-socket");
    mkdirSync(withSocket);
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(path.join(withSocket, "control.sock"), resolve));
    try {
      await expect(client.saveDir(withSocket, { kind: "model" })).rejects.toThrow(/control\.sock is not a regular file or folder/);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
    await expect(client.saveDir(path.join(work, "nope"), { kind: "model" })).rejects.toThrow(/is not a directory/);
  });

  it("saveDir refuses a folder past its limits before uploading anything, and what it stores at a limit restores under it", async () => {
    const folder = path.join(work, "limited");
    mkdirSync(path.join(folder, "sub"), { recursive: true });
    for (const name of ["a.bin", "b.bin", "sub/c.bin"]) writeFileSync(path.join(folder, name), randomBytes(100_000));
    // 4 entries (sub, sub/c.bin, a.bin, b.bin), 300,000 bytes.
    const stored = await client.saveDir(folder, { kind: "limits" });
    const manifestBytes = Number(stored.sizeBytes);
    const refusals: [SaveDirOptions, RegExp][] = [
      [{ maxEntries: 3 }, /more than 3 entries, over the limit maxEntries \(3\)/],
      [{ maxManifestBytes: manifestBytes - 1 }, new RegExp(`manifest is ${manifestBytes} bytes, over the limit maxManifestBytes \\(${manifestBytes - 1}\\)`)],
      [{ maxTotalBytes: 299_999 }, /files add up to 300000 bytes, over the limit maxTotalBytes \(299999\)/],
    ];
    for (const [limits, message] of refusals) {
      proxy.resetCounts();
      const error = await client.saveDir(folder, { kind: "limits-refused" }, limits).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(TypeError);
      expect((error as Error).message).toMatch(message);
      expect(proxy.bytes.up).toBe(0); // not a file, not a call
    }
    await expect(client.saveDir(folder, { kind: "limits" }, { maxEntries: 0 })).rejects.toThrow(/maxEntries must be a whole number >= 1/);
    const refusedSaves: string[] = [];
    for await (const a of client.list({ kind: "limits-refused", includeDeleted: true })) refusedSaves.push(a.id);
    expect(refusedSaves).toEqual([]);

    // Exactly at every limit: stored, and restored with the same limits (the manifest's size was measured before the upload).
    const atLimits = { maxEntries: 4, maxManifestBytes: manifestBytes, maxTotalBytes: 300_000 };
    const again = await client.saveDir(folder, { kind: "limits" }, atLimits);
    expect(Number(again.sizeBytes)).toBe(manifestBytes);
    const target = path.join(work, "limited-restored");
    await client.restoreDir(again.id, target, atLimits);
    expect(snapshot(target)).toEqual(snapshot(folder));
  });

  it("restores into an empty folder and refuses one that is not empty", async () => {
    const dir = await client.saveDir(source, { kind: "model" });
    const empty = path.join(work, "empty-target");
    mkdirSync(empty);
    await client.restoreDir(dir.id, empty);
    expect(snapshot(empty)).toEqual(snapshot(source));
    await expect(client.restoreDir(dir.id, empty)).rejects.toThrow(/already exists and is not empty/);
    const nested = path.join(work, "new-parent/deeper/target");
    await client.restoreDir(dir.id, nested);
    expect(snapshot(nested)).toEqual(snapshot(source));
    const file = await client.uploadStream(["x"], { kind: "raw" });
    await expect(client.restoreDir(file.artifact!.id, path.join(work, "not-a-dir"))).rejects.toThrow(/is not a directory artifact/);
  });

  describe("manifests that try to escape the target", () => {
    let fileEntry: { size: number; blake3: string; artifactId: string };
    beforeAll(async () => {
      const content = Buffer.from("payload");
      const { artifact } = await client.uploadStream([content], { kind: "raw" });
      fileEntry = { size: content.byteLength, blake3: blake3Hex(content), artifactId: artifact!.id };
    });
    const plant = async (entries: unknown[]) =>
      (await client.uploadStream([JSON.stringify({ format: DIRECTORY_MANIFEST_FORMAT, entries })], { kind: "model", mimeType: DIRECTORY_MANIFEST_MIME }))
        .artifact!.id;

    it.each([
      ["../escaped.txt", /"\.\." segment/],
      ["/tmp/escaped.txt", /is absolute/],
      ["a/../../escaped.txt", /"\.\." segment/],
      ["a\\..\\..\\escaped.txt", /backslash/],
      ["C:/escaped.txt", /is absolute/],
      ["a//b.txt", /empty segment/],
      ["./a.txt", /"\." segment/],
      ["a\u0000b", /NUL/],
    ])("refuses %j and writes nothing", async (bad, message) => {
      const id = await plant([
        { path: "fine.txt", type: "file", ...fileEntry },
        { path: bad, type: "file", ...fileEntry },
      ]);
      const target = path.join(work, `escape-${randomBytes(4).toString("hex")}`);
      const error = await client.restoreDir(id, target).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DirectoryManifestError);
      expect((error as Error).message).toMatch(message);
      expect(existsSync(target)).toBe(false);
      expect(existsSync(path.join(work, "escaped.txt"))).toBe(false);
      expect(existsSync("/tmp/escaped.txt")).toBe(false);
      expect(readdirSync(work).filter((n) => n.includes(".restore-"))).toEqual([]);
    });

    it("refuses duplicates, paths under a file, links and unknown types", async () => {
      const cases: [unknown[], RegExp][] = [
        [
          [
            { path: "a.txt", type: "file", ...fileEntry },
            { path: "a.txt", type: "file", ...fileEntry },
          ],
          /appears twice/,
        ],
        [
          [
            { path: "a.txt", type: "file", ...fileEntry },
            { path: "a.txt/b.txt", type: "file", ...fileEntry },
          ],
          /lies under the file "a.txt"/,
        ],
        [[{ path: "link", type: "symlink", target: "/etc/passwd" }], /only "file" and "dir" can be restored/],
        [[{ path: "a.txt", type: "file", ...fileEntry, blake3: "zz" }], /no valid BLAKE3/],
      ];
      for (const [entries, message] of cases) {
        const target = path.join(work, `bad-${randomBytes(4).toString("hex")}`);
        await expect(client.restoreDir(await plant(entries), target)).rejects.toThrow(message);
        expect(existsSync(target)).toBe(false);
      }
    });

    it("refuses a manifest whose file artifact holds other content, or is deleted, before fetching or writing any file", async () => {
      const other = (await client.uploadStream(["something else"], { kind: "raw" })).artifact!.id;
      const deleted = (await client.uploadStream([randomBytes(2 * 1024 * 1024)], { kind: "raw" })).artifact!;
      await client.delete(deleted.id);
      // Each manifest names a good file first, content not yet in the cache, then the bad one.
      const twinOf = async (content: Buffer) => (await client.uploadStream([content], { kind: "raw" })).artifact!.id;
      const cases: [(good: typeof fileEntry, content: Buffer) => Promise<unknown[]>, (error: unknown) => boolean][] = [
        [
          async (good) => [{ path: "b.txt", type: "file", ...good, artifactId: other }],
          (e) => e instanceof DirectoryManifestError && /does not hold the content the manifest names/.test(e.message),
        ],
        // Right digest, wrong size: another artifact holding the same content.
        [
          async (good, content) => [{ path: "b.txt", type: "file", ...good, size: good.size + 1, artifactId: await twinOf(content) }],
          (e) => e instanceof DirectoryManifestError && e.path === "b.txt" && /holds 1048576 bytes/.test(e.message),
        ],
        [
          async () => [{ path: "b.bin", type: "file", size: Number(deleted.sizeBytes), blake3: deleted.blake3, artifactId: deleted.id }],
          (e) => ConnectError.from(e).code === Code.NotFound,
        ],
      ];
      for (const [badEntries, expected] of cases) {
        const goodContent = randomBytes(1024 * 1024);
        const good = {
          size: goodContent.byteLength,
          blake3: blake3Hex(goodContent),
          artifactId: (await client.uploadStream([goodContent], { kind: "raw" })).artifact!.id,
        };
        const id = await plant([{ path: "a-good.bin", type: "file", ...good }, ...(await badEntries(good, goodContent))]);
        const target = path.join(work, `mismatch-${randomBytes(4).toString("hex")}`);
        proxy.resetCounts();
        const error = await client.restoreDir(id, target).catch((e: unknown) => e);
        expect(expected(error)).toBe(true);
        expect(proxy.bytes.down).toBeLessThan(64 * 1024); // not even the good file was fetched
        expect(existsSync(target)).toBe(false);
        expect(readdirSync(work).filter((n) => n.includes(".restore-"))).toEqual([]);
      }
    });

    it("refuses a manifest past maxEntries, maxManifestBytes or maxTotalBytes before fetching or writing anything, naming the limit", async () => {
      expect(DEFAULT_DIRECTORY_LIMITS).toEqual({ maxEntries: 100_000, maxManifestBytes: 64 * 1024 * 1024 });
      const expectRefused = async (id: string, options: RestoreDirOptions, message: RegExp, fetchedBelow: number) => {
        for (const restore of [(target: string) => client.restoreDir(id, target, options), () => client.asLocalDir(id, options)]) {
          const target = path.join(work, `limit-${randomBytes(4).toString("hex")}`);
          proxy.resetCounts();
          const error = await restore(target).catch((e: unknown) => e);
          expect(error).toBeInstanceOf(DirectoryManifestError);
          expect((error as Error).message).toMatch(message);
          expect(proxy.bytes.down).toBeLessThan(fetchedBelow);
          expect(existsSync(target)).toBe(false);
        }
        expect(readdirSync(work).filter((n) => n.includes(".restore-"))).toEqual([]);
      };

      // By default: a manifest of 100,001 folders (about 3 MB) is refused whole, none of them made.
      const folders = Array.from({ length: 100_001 }, (_, i) => ({ path: `d${i}`, type: "dir" }));
      const many = await plant(folders);
      await expectRefused(many, {}, /has 100001 entries, over the limit maxEntries \(100000\)/, 4 * 1024 * 1024);
      // A file the manifest names at each of many paths counts once per path: the bytes that would be written.
      const fanOut = await plant(Array.from({ length: 4 }, (_, i) => ({ path: `copy-${i}.txt`, type: "file", ...fileEntry })));
      await expectRefused(fanOut, { maxEntries: 3 }, /has 4 entries, over the limit maxEntries \(3\)/, 64 * 1024);
      await expectRefused(
        fanOut,
        { maxTotalBytes: 4 * fileEntry.size - 1 },
        new RegExp(`add up to ${4 * fileEntry.size} bytes, over the limit maxTotalBytes \\(${4 * fileEntry.size - 1}\\)`),
        64 * 1024,
      );
      // Too large a manifest is refused by its recorded size, before it is fetched: a 200 KB one, limited to 100 KB.
      const padded = await plant(Array.from({ length: 2_000 }, (_, i) => ({ path: `${"p".repeat(80)}-${i}`, type: "dir" })));
      await expectRefused(padded, { maxManifestBytes: 100_000 }, /manifest is \d+ bytes, over the limit maxManifestBytes \(100000\)/, 64 * 1024);

      // The same manifests within their limits restore.
      const target = path.join(work, `limit-ok-${randomBytes(4).toString("hex")}`);
      await client.restoreDir(fanOut, target, { maxEntries: 4, maxTotalBytes: 4 * fileEntry.size });
      expect(readdirSync(target).sort()).toEqual(["copy-0.txt", "copy-1.txt", "copy-2.txt", "copy-3.txt"]);
      await expect(client.restoreDir(fanOut, path.join(work, "x"), { maxTotalBytes: 0.5 })).rejects.toThrow(/maxTotalBytes must be a whole number >= 1/);
    });

    it("never writes through a link planted in or as the target", async () => {
      const id = await plant([{ path: "a.txt", type: "file", ...fileEntry }]);
      const outside = path.join(work, "outside");
      mkdirSync(outside);
      // A target holding a link where the manifest puts a file.
      const target = path.join(work, "planted");
      mkdirSync(target);
      symlinkSync(path.join(outside, "a.txt"), path.join(target, "a.txt"));
      await expect(client.restoreDir(id, target)).rejects.toThrow(/already exists and is not empty/);
      // A target that is itself a link to an empty folder elsewhere.
      const linkedTarget = path.join(work, "linked-target");
      symlinkSync(outside, linkedTarget);
      await expect(client.restoreDir(id, linkedTarget)).rejects.toThrow(/already exists as a link/);
      expect(readdirSync(outside)).toEqual([]);
      expect(readdirSync(target)).toEqual(["a.txt"]);
      expect(lstatSync(linkedTarget).isSymbolicLink()).toBe(true);
    });
  });
});
