import { Code, ConnectError } from "@connectrpc/connect";
import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { blake3Hex } from "../../../src/blake3.ts";
import { startCuttingProxy, type CuttingProxy } from "../../../test/support/cutting-proxy.ts";
import { BACKENDS, startTestApp, type TestApp } from "../../../test/support/test-app.ts";
import { artifactUri, createArtifactClient, type ArtifactClient, type ArtifactRef } from "../src/index.ts";

const MiB = 1024 * 1024;

describe.each(BACKENDS)("loaders and the local cache on %s", (backend) => {
  let t: TestApp;
  let proxy: CuttingProxy;
  let client: ArtifactClient;
  let work: string;
  let cacheDir: string;
  beforeAll(async () => {
    t = await startTestApp(backend, { ARTIFACTD_S3_PART_SIZE: "5MiB" });
    proxy = await startCuttingProxy(t.url);
    work = mkdtempSync(path.join(os.tmpdir(), "artifactd-cache-test-"));
    cacheDir = path.join(work, "cache");
    client = createArtifactClient({ baseUrl: proxy.url, token: t.tokens.alpha, timeoutMs: 30_000, cacheDir });
  });
  afterAll(async () => {
    await client?.close();
    await proxy?.close();
    await t?.close();
    rmSync(work, { recursive: true, force: true });
  });

  it("loads inline and blob content by id and by artifact:// URI", async () => {
    const json = await client.saveJson({ rows: 1250, tags: ["a"] }, { kind: "summary" });
    const text = await client.saveText("héllo\nworld", { kind: "note" });
    const blobData = Buffer.from(JSON.stringify({ big: "x".repeat(300_000) }));
    const blob = (await client.uploadStream([blobData], { kind: "summary", mimeType: "application/json" })).artifact!;
    expect(json.id.startsWith("json_")).toBe(true);
    expect(await client.loadJson(json.id)).toEqual({ rows: 1250, tags: ["a"] });
    expect(await client.loadJson(artifactUri(json.id))).toEqual({ rows: 1250, tags: ["a"] });
    expect(await client.loadText(text.id)).toBe("héllo\nworld");
    expect(await client.loadText(artifactUri(text.id))).toBe("héllo\nworld");
    expect((await client.loadBytes(text.id)).equals(Buffer.from("héllo\nworld"))).toBe(true);
    expect(await client.loadJson<{ big: string }>(blob.id as ArtifactRef)).toEqual({ big: "x".repeat(300_000) });
    expect((await client.loadBytes(`artifact://${blob.id}`)).equals(blobData)).toBe(true);
    // Inline content has a place in the cache too, byte for byte as saved.
    expect(readFileSync(await client.asLocalFile(json.id), "utf8")).toBe(JSON.stringify({ rows: 1250, tags: ["a"] }));
    expect(readFileSync(await client.asLocalFile(artifactUri(text.id)), "utf8")).toBe("héllo\nworld");
  });

  it("says what is wrong: bad locators before any call, non-JSON, non-text, too big, unknown", async () => {
    const before = proxy.connections + proxy.bytes.up;
    await expect(client.loadBytes("not-an-id")).rejects.toThrow(TypeError);
    await expect(client.asLocalFile("artifact://img_123")).rejects.toThrow(/"artifact:\/\/img_123" is not an artifact id or reference: it is neither an id/);
    await expect(client.loadJson(`art_${"0".repeat(26)}`, { maxBytes: -1 })).rejects.toThrow(TypeError);
    expect(proxy.connections + proxy.bytes.up).toBe(before);
    const text = await client.saveText("not json {", { kind: "note" });
    await expect(client.loadJson(text.id)).rejects.toThrow(new RegExp(`artifact ${text.id} is not JSON`));
    const binary = (await client.uploadStream([Buffer.from([0xff, 0xfe, 0x00, 0xc3])], { kind: "raw" })).artifact!;
    await expect(client.loadText(binary.id)).rejects.toThrow(/is not UTF-8 text/);
    const big = (await client.uploadStream([randomBytes(2 * MiB)], { kind: "raw" })).artifact!;
    await expect(client.loadBytes(big.id, { maxBytes: MiB })).rejects.toThrow(/use asLocalFile or downloadToFile/);
    const missing = `art_${"0".repeat(26)}`;
    await expect(client.loadBytes(missing)).rejects.toSatisfy((e) => ConnectError.from(e).code === Code.NotFound);
  });

  it("serves a second asLocalFile from the cache without moving the content again", async () => {
    const data = randomBytes(3 * MiB + 17);
    const { artifact } = await client.uploadStream([data], { kind: "video", mimeType: "video/mp4" });
    expect(artifact!.id.startsWith("vid_")).toBe(true);
    proxy.resetCounts();
    const first = await client.asLocalFile(artifact!.id);
    expect(proxy.bytes.down).toBeGreaterThanOrEqual(data.byteLength);
    expect(readFileSync(first).equals(data)).toBe(true);
    expect(first.startsWith(cacheDir)).toBe(true);
    expect(path.basename(first)).toBe(blake3Hex(data));

    proxy.resetCounts();
    const second = await client.asLocalFile(artifactUri(artifact!.id as ArtifactRef));
    expect(second).toBe(first);
    expect(proxy.bytes.down).toBeLessThan(64 * 1024); // the metadata call only
    expect(readFileSync(second).equals(data)).toBe(true);
  });

  it("detects a damaged cache entry and fetches it again", async () => {
    const data = randomBytes(MiB);
    const { artifact } = await client.uploadStream([data], { kind: "raw" });
    const entry = await client.asLocalFile(artifact!.id);
    chmodSync(entry, 0o644);
    const damaged = Buffer.from(data);
    damaged[12345] ^= 0xff;
    writeFileSync(entry, damaged);
    proxy.resetCounts();
    const again = await client.asLocalFile(artifact!.id);
    expect(proxy.bytes.down).toBeGreaterThanOrEqual(data.byteLength);
    expect(readFileSync(again).equals(data)).toBe(true);
  });

  it("refuses a deleted artifact even when its content is cached", async () => {
    const { artifact } = await client.uploadStream([randomBytes(1000)], { kind: "raw" });
    const entry = await client.asLocalFile(artifact!.id);
    expect(existsSync(entry)).toBe(true);
    await client.delete(artifact!.id);
    await expect(client.asLocalFile(artifact!.id)).rejects.toSatisfy((e) => ConnectError.from(e).code === Code.NotFound);
  });

  it("evicts the least recently used entries past the cap", async () => {
    const small = createArtifactClient({ baseUrl: proxy.url, token: t.tokens.alpha, cacheDir: path.join(work, "small-cache"), cacheMaxBytes: 2.5 * MiB });
    try {
      const ids: string[] = [];
      for (let i = 0; i < 3; i++) ids.push((await small.uploadStream([randomBytes(MiB)], { kind: "raw" })).artifact!.id);
      const a = await small.asLocalFile(ids[0]!);
      const b = await small.asLocalFile(ids[1]!);
      await new Promise((r) => setTimeout(r, 20));
      await small.asLocalFile(ids[0]!); // a is now more recent than b
      await new Promise((r) => setTimeout(r, 20));
      const c = await small.asLocalFile(ids[2]!);
      expect(existsSync(a)).toBe(true);
      expect(existsSync(b)).toBe(false);
      expect(existsSync(c)).toBe(true);
    } finally {
      await small.close();
    }
  });

  it("stages a path, ingests it, and reads it back from the cache", async () => {
    const staged = await client.stagePath(".csv");
    expect(staged.endsWith(".csv")).toBe(true);
    expect(existsSync(staged)).toBe(false);
    const data = Buffer.from("a,b\n1,2\n".repeat(50_000));
    writeFileSync(staged, data);
    const artifact = await client.ingestFile(staged, { kind: "dataset", name: "table.csv", typePrefix: "tbl" });
    expect(artifact.id.startsWith("tbl_")).toBe(true);
    expect(existsSync(staged)).toBe(false); // moved into the cache
    proxy.resetCounts();
    const local = await client.asLocalFile(artifact.id);
    expect(proxy.bytes.down).toBeLessThan(64 * 1024);
    expect(readFileSync(local).equals(data)).toBe(true);

    const dir = await client.stageDir("_run");
    expect(statSync(dir).isDirectory()).toBe(true);
    await expect(client.stagePath("../x")).rejects.toThrow(TypeError);
  });
});
