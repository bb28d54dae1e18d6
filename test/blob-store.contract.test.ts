import { Client } from "minio";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createFsBlobStore } from "../src/adapters/blob/fs-blob-store.ts";
import { createS3BlobStore } from "../src/adapters/blob/s3-blob-store.ts";
import { blake3Hex } from "../src/blake3.ts";
import type { BlobStore } from "../src/ports/blob-store.ts";

/**
 * One suite for the BlobStore port, run against every adapter: a real MinIO
 * (small parts, so multipart is exercised) and a real temporary folder.
 */
const MiB = 1024 * 1024;

interface Subject {
  store: BlobStore;
  /** Whatever the adapter still holds that is not a committed blob: must be empty after abort. */
  leftovers(): Promise<string[]>;
  close(): Promise<void>;
}

const adapters: Record<string, () => Promise<Subject>> = {
  async s3() {
    const minio = inject("minio");
    const bucket = `contract-${Math.random().toString(36).slice(2, 10)}`;
    const endpoint = new URL(minio.endpoint);
    const store = await createS3BlobStore({
      endpoint,
      region: "us-east-1",
      accessKey: minio.accessKey,
      secretKey: minio.secretKey,
      bucket,
      partSize: 5 * MiB,
      partConcurrency: 2,
    });
    const client = new Client({ endPoint: endpoint.hostname, port: Number(endpoint.port), useSSL: false, accessKey: minio.accessKey, secretKey: minio.secretKey });
    return {
      store,
      async leftovers() {
        const uploads: string[] = [];
        for await (const upload of client.listIncompleteUploads(bucket, "", true)) uploads.push(`multipart:${(upload as { key: string }).key}`);
        return uploads;
      },
      close: () => store.close(),
    };
  },
  async fs() {
    const root = mkdtempSync(path.join(os.tmpdir(), "artifactd-fs-contract-"));
    const store = await createFsBlobStore(root);
    return {
      store,
      async leftovers() {
        return readdirSync(path.join(root, "incoming")).map((f) => `incoming:${f}`);
      },
      async close() {
        await store.close();
        rmSync(root, { recursive: true, force: true });
      },
    };
  },
};

async function readAll(store: BlobStore, key: string, offset: number, length: number): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const chunk of store.read(key, { offset, length })) parts.push(chunk);
  return Buffer.concat(parts);
}

describe.each(Object.keys(adapters))("BlobStore contract: %s", (name) => {
  let subject: Subject;
  beforeAll(async () => {
    subject = await adapters[name]!();
  });
  afterAll(async () => {
    await subject?.close();
  });

  it("writes a multi-part blob and reads it back whole and in ranges", async () => {
    const data = randomBytes(12 * MiB + 7);
    const writer = await subject.store.createWriter("tenant-a", subject.store.newKey("tenant-a"));
    for (let i = 0; i < data.length; i += 300_000) await writer.write(data.subarray(i, i + 300_000));
    const key = await writer.commit(blake3Hex(data));
    expect(await subject.store.stat(key)).toEqual({ size: data.length });
    expect((await readAll(subject.store, key, 0, data.length)).equals(data)).toBe(true);
    expect((await readAll(subject.store, key, 5 * MiB - 3, 10)).equals(data.subarray(5 * MiB - 3, 5 * MiB + 7))).toBe(true);
    expect((await readAll(subject.store, key, 0, 0)).length).toBe(0);
    expect(await subject.leftovers()).toEqual([]);
  });

  it("stores small and empty blobs", async () => {
    for (const data of [Buffer.alloc(0), Buffer.from("x"), randomBytes(100_000)]) {
      const writer = await subject.store.createWriter("tenant-a", subject.store.newKey("tenant-a"));
      await writer.write(data);
      const key = await writer.commit(blake3Hex(data));
      expect(await subject.store.stat(key)).toEqual({ size: data.length });
      expect((await readAll(subject.store, key, 0, data.length)).equals(data)).toBe(true);
    }
  });

  it("gives two writers of the same content two keys, each deletable alone", async () => {
    const data = randomBytes(1000);
    const keys: string[] = [];
    for (let i = 0; i < 2; i++) {
      const writer = await subject.store.createWriter("tenant-a", subject.store.newKey("tenant-a"));
      await writer.write(data);
      keys.push(await writer.commit(blake3Hex(data)));
    }
    expect(keys[0]).not.toBe(keys[1]);
    await subject.store.delete(keys[1]!);
    expect(await subject.store.stat(keys[1]!)).toBeUndefined();
    expect((await readAll(subject.store, keys[0]!, 0, 1000)).equals(data)).toBe(true);
  });

  it("abort after several parts leaves nothing behind", async () => {
    const writer = await subject.store.createWriter("tenant-a", subject.store.newKey("tenant-a"));
    const data = randomBytes(11 * MiB);
    for (let i = 0; i < data.length; i += MiB) await writer.write(data.subarray(i, i + MiB));
    await writer.abort();
    await writer.abort();
    expect(await subject.leftovers()).toEqual([]);
    await expect(writer.write(Buffer.from("more"))).rejects.toThrow();
  });

  it("deleting a missing key is not an error", async () => {
    const writer = await subject.store.createWriter("tenant-a", subject.store.newKey("tenant-a"));
    const key = await writer.commit(blake3Hex(new Uint8Array(0)));
    await subject.store.delete(key);
    await subject.store.delete(key);
    expect(await subject.store.stat(key)).toBeUndefined();
  });
});
