import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { inject } from "vitest";
import { createFsBlobStore } from "../../src/adapters/blob/fs-blob-store.ts";
import { createS3BlobStore } from "../../src/adapters/blob/s3-blob-store.ts";
import type { BlobLister, BlobSessions, BlobStore } from "../../src/ports/blob-store.ts";
import { bucketState } from "./blob-store-state.ts";
import { minioClient } from "./minio-client.ts";
import type { Backend } from "./test-backends.ts";

export const MiB = 1024 * 1024;

/** Every blob store adapter has every capability today; a new one that lacks some joins only the suites it has. */
export type FullBlobStore = BlobStore & BlobLister & BlobSessions;

/** One adapter of the blob store port under test, on a bucket or folder of its own. */
export interface BlobStoreSubject {
  store: FullBlobStore;
  /** Whatever the adapter still holds that is not a committed blob: must be empty after abort. */
  leftovers(): Promise<string[]>;
  /** A second store on the same bucket or folder, as a restarted server opens it. */
  reopen(): Promise<FullBlobStore>;
  close(): Promise<void>;
}

/**
 * The blob store adapters the contract suites run against (blob-store,
 * blob-sessions, blob-lister): a real MinIO with 5 MiB parts (S3's smallest,
 * so multipart is exercised) and a real temporary folder. A third adapter
 * (GCS, Azure Blob) is added here.
 */
export const BLOB_STORE_ADAPTERS: Record<string, { readonly backend: Backend; readonly open: () => Promise<BlobStoreSubject> }> = {
  s3: {
    backend: "postgres+minio",
    async open() {
      const minio = inject("minio");
      const bucket = `contract-${Math.random().toString(36).slice(2, 10)}`;
      const endpoint = new URL(minio.endpoint);
      const config = { endpoint, region: "us-east-1", accessKey: minio.accessKey, secretKey: minio.secretKey, bucket, partSize: 5 * MiB, partConcurrency: 2 };
      const store = await createS3BlobStore(config);
      const client = minioClient();
      return {
        store,
        async leftovers() {
          return (await bucketState(client, bucket)).entries.filter((entry) => !entry.startsWith("object:"));
        },
        reopen: () => createS3BlobStore(config),
        close: () => store.close(),
      };
    },
  },
  fs: {
    backend: "pglite+fs",
    async open() {
      const root = mkdtempSync(path.join(os.tmpdir(), "artifactd-fs-contract-"));
      const store = await createFsBlobStore(root);
      return {
        store,
        async leftovers() {
          return [
            ...readdirSync(path.join(root, "incoming")).map((f) => `incoming:${f}`),
            ...readdirSync(path.join(root, "sessions")).map((f) => `session:${f}`),
          ];
        },
        reopen: () => createFsBlobStore(root),
        async close() {
          await store.close();
          rmSync(root, { recursive: true, force: true });
        },
      };
    },
  },
};
