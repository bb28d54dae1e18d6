import type { Client as MinioClient } from "minio";
import { existsSync, readdirSync, statSync } from "node:fs";
import path from "node:path";
import type { TestApp } from "./test-app.ts";

export interface BlobStoreState {
  /** Sorted: `object:<key>` and `multipart:<key>` on S3; `blobs:<path>`, `incoming:<name>` and `sessions:<path>` in the folder store. */
  readonly entries: string[];
  /** The bytes each unfinished upload (or upload session part) holds so far. */
  readonly inProgressBytes: number[];
}

/**
 * What a test app's blob store holds, read from the store itself (the
 * bucket, or the data folder), not from the service's records: the check
 * that a failed upload left nothing behind.
 */
export async function blobStoreState(t: TestApp, minio: MinioClient | undefined): Promise<BlobStoreState> {
  if (minio) {
    for (let attempt = 0; ; attempt++) {
      try {
        const entries: string[] = [];
        const inProgressBytes: number[] = [];
        for await (const u of minio.listIncompleteUploads(t.bucket!, "", true)) {
          const upload = u as { key: string; size: number };
          entries.push(`multipart:${upload.key}`);
          inProgressBytes.push(upload.size);
        }
        for await (const o of minio.listObjectsV2(t.bucket!, "", true)) entries.push(`object:${(o as { name: string }).name}`);
        return { entries: entries.sort(), inProgressBytes };
      } catch (error) {
        // Listing an upload's parts races with its abort: look again.
        if ((error as { code?: string }).code !== "NoSuchUpload" || attempt > 20) throw error;
      }
    }
  }
  const root = path.join(t.dataDir, "blobs");
  const files = (dir: string) =>
    existsSync(path.join(root, dir))
      ? readdirSync(path.join(root, dir), { recursive: true, withFileTypes: true })
          .filter((e) => e.isFile())
          .map((e) => path.join(e.parentPath, e.name))
      : [];
  const unfinished = [...files("incoming"), ...files("sessions")];
  const inProgressBytes = unfinished.flatMap((file) => {
    try {
      return [statSync(file).size];
    } catch {
      return []; // removed between listing and stat
    }
  });
  return {
    entries: [
      ...files("incoming").map((f) => `incoming:${path.basename(f)}`),
      ...files("sessions").map((f) => `sessions:${path.relative(path.join(root, "sessions"), f)}`),
      ...files("blobs").map((f) => `blobs:${path.relative(root, f)}`),
    ].sort(),
    inProgressBytes,
  };
}
