import type { Client as MinioClient } from "minio";
import { existsSync, readdirSync, statSync } from "node:fs";
import path from "node:path";
import { UPLOAD_JOURNAL_PREFIX } from "../../src/adapters/blob/s3-blob-store.ts";
import type { TestApp } from "./test-app.ts";

export interface BlobStoreState {
  /**
   * Sorted: `object:<key>`, `multipart:<key>` and `journal:<key>` (the S3 adapter's record of an upload it began)
   * on S3; `blobs:<path>`, `incoming:<name>` and `sessions:<path>` in the folder store.
   */
  readonly entries: string[];
  /** The bytes each unfinished upload (or upload session part) holds so far. */
  readonly inProgressBytes: number[];
}

/**
 * What a test app's blob store holds, read from the store itself (the
 * bucket, or the data folder), not from the service's records: the check
 * that a failed upload left nothing behind.
 *
 * MinIO lists unfinished uploads by an empty prefix only since it last
 * started, and by any other prefix only for one whole key (see
 * listUnfinishedUploads in src/adapters/blob/s3-blob-store.ts). So uploads
 * are looked up key by key: the keys of the adapter's journal, of every
 * object, of what the empty-prefix listing still shows, and `keys` the
 * caller knows; that holds across a MinIO restart.
 */
export async function blobStoreState(t: TestApp, minio: MinioClient | undefined, keys: Iterable<string> = []): Promise<BlobStoreState> {
  return minio ? bucketState(minio, t.bucket!, keys) : folderState(t.dataDir);
}

/** What a bucket holds (see blobStoreState). */
export async function bucketState(minio: MinioClient, bucket: string, keys: Iterable<string> = []): Promise<BlobStoreState> {
  for (let attempt = 0; ; attempt++) {
    try {
      const entries: string[] = [];
      const candidates = new Set(keys);
      for await (const o of minio.listObjectsV2(bucket, "", true)) {
        const name = (o as { name: string }).name;
        if (name.startsWith(UPLOAD_JOURNAL_PREFIX)) {
          const key = name.slice(UPLOAD_JOURNAL_PREFIX.length);
          entries.push(`journal:${key}`);
          candidates.add(key);
        } else {
          entries.push(`object:${name}`);
          candidates.add(name);
        }
      }
      for await (const u of minio.listIncompleteUploads(bucket, "", true)) candidates.add((u as { key: string }).key);
      const inProgressBytes: number[] = [];
      for (const key of candidates) {
        for (const upload of await unfinishedUploadsOf(minio, bucket, key)) {
          entries.push(`multipart:${key}`);
          inProgressBytes.push(upload.bytes);
        }
      }
      return { entries: entries.sort(), inProgressBytes };
    } catch (error) {
      // Listing an upload's parts races with its abort: look again.
      if ((error as { code?: string }).code !== "NoSuchUpload" || attempt > 20) throw error;
    }
  }
}

/**
 * The unfinished multipart uploads to exactly `key`, with the bytes their
 * parts hold: listed with the key as prefix, which MinIO answers from disk,
 * also after a restart.
 */
export async function unfinishedUploadsOf(minio: MinioClient, bucket: string, key: string): Promise<{ uploadId: string; bytes: number }[]> {
  for (let attempt = 0; ; attempt++) {
    try {
      const found: { uploadId: string; bytes: number }[] = [];
      for await (const u of minio.listIncompleteUploads(bucket, key, true) as AsyncIterable<{ key?: string; uploadId: string; size?: number }>) {
        if (u.key === key) found.push({ uploadId: u.uploadId, bytes: u.size ?? 0 });
      }
      return found;
    } catch (error) {
      // The client lists each upload's parts after listing the uploads: one aborted in between is gone, so look again.
      if ((error as { code?: string }).code !== "NoSuchUpload" || attempt >= 20) throw error;
    }
  }
}

function folderState(dataDir: string): BlobStoreState {
  const root = path.join(dataDir, "blobs");
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
