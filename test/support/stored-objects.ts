import { blobStoreState } from "./blob-store-state.ts";
import { minioClient } from "./minio-client.ts";
import type { TestApp } from "./test-app.ts";

/**
 * The committed objects a test app's blob store holds (the bucket's objects,
 * the data folder's blob files), read from the store itself: how a test
 * checks that content was stored once, or that an object is really gone.
 */
export interface StoredObjects {
  /** Storage keys of every committed object, sorted. */
  keys(): Promise<string[]>;
  /** The keys stored since `before` (an earlier `keys()`), sorted. */
  keysSince(before: readonly string[]): Promise<string[]>;
  /** What unfinished uploads hold: multipart uploads, incoming files, session parts (entries as blobStoreState names them). */
  unfinishedUploads(): Promise<string[]>;
}

export function storedObjects(t: TestApp): StoredObjects {
  const minio = t.backend === "postgres+minio" ? minioClient() : undefined;
  // Entries are `object:<key>` on S3 and `blobs:<key>` in the folder store, whose keys begin with "blobs/".
  const committed = /^(object|blobs):/;
  const entries = async () => (await blobStoreState(t, minio)).entries;
  const keys = async () =>
    (await entries())
      .filter((entry) => committed.test(entry))
      .map((entry) => entry.replace(committed, ""))
      .sort();
  return {
    keys,
    async keysSince(before) {
      const earlier = new Set(before);
      return (await keys()).filter((key) => !earlier.has(key));
    },
    async unfinishedUploads() {
      return (await entries()).filter((entry) => !committed.test(entry));
    },
  };
}
