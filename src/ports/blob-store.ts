/**
 * The blob store port: where artifact content lives. Content-addressing is
 * the metadata store's job (the `blobs` table maps tenant + BLAKE3 digest to a
 * storage key); a blob store only writes, reads and deletes byte streams
 * under keys it chooses.
 *
 * Adapters: adapters/blob/s3-blob-store.ts (MinIO / S3, multipart) and
 * adapters/blob/fs-blob-store.ts (a local folder). test/blob-store.contract
 * runs the same suite against both.
 */
export interface BlobStore {
  /**
   * A fresh storage key for a tenant's new blob. Nothing is stored yet: the
   * caller records the key as an upload in flight first (every object is
   * accounted for), then writes under it.
   */
  newKey(tenantId: string): string;
  /**
   * Starts writing a new blob under `key` (from newKey); `expectedSize`, when
   * the client declared it, lets adapters size their parts. Nothing is visible
   * under the key until `commit`; `abort` (or a failed write) leaves nothing
   * behind.
   */
  createWriter(tenantId: string, key: string, expectedSize?: number): Promise<BlobWriter>;
  /**
   * Streams `length` bytes from `offset`. The caller has checked the range
   * against the blob's recorded size. Nothing stored under the key (any
   * more) fails the stream with an ArtifactError `not_found`.
   */
  read(key: string, range: ByteRange, signal?: AbortSignal): AsyncIterable<Uint8Array>;
  /** Size of a stored blob, or undefined if there is none under the key. */
  stat(key: string): Promise<{ size: number } | undefined>;
  /** Removes a blob; removing a missing key is not an error. */
  delete(key: string): Promise<void>;
  /**
   * Removes whatever an upload left under a key: the object, and any
   * unfinished multipart upload (or session folder) to it. Found by the key
   * itself, never by listing everything (MinIO forgets unfinished uploads in
   * such listings when it restarts). A missing key is not an error.
   */
  discard(key: string): Promise<void>;
  /** Verifies the store is reachable (start-up and health checks). */
  ping(): Promise<void>;
  close(): Promise<void>;
}

export interface ByteRange {
  readonly offset: number;
  readonly length: number;
}

export interface BlobWriter {
  /** The key the blob is stored under once committed. */
  readonly key: string;
  /**
   * Appends bytes: one buffer, or pieces written in order as if joined (an
   * upload's chunk message as it arrived, so no layer joins it first).
   * Resolves when the writer can take more, so awaiting each write is the
   * backpressure that bounds memory. The bytes may be kept until the promise
   * resolves; the caller must not reuse their buffers before then.
   */
  write(content: Uint8Array | readonly Uint8Array[]): Promise<void>;
  /**
   * Makes the blob durable under `key` and returns the key. `digest` is the
   * verified BLAKE3 hex of everything written.
   */
  commit(digest: string): Promise<string>;
  /** Discards everything written. Safe to call more than once, and after a failure. */
  abort(): Promise<void>;
}

/**
 * Optional capability: enumerate stored blobs, for garbage collection of
 * objects no blob row points at (left by a crash between storing content
 * and recording it).
 */
export interface BlobLister {
  /** Committed blobs only: whatever the adapter keeps for its own bookkeeping is not listed. */
  listBlobs(): AsyncIterable<{ readonly key: string; readonly size: number; readonly lastModified: Date }>;
  /**
   * Uploads started and never finished (S3: incomplete multipart uploads;
   * folder: session folders), with the `ref` abortSession takes. Real S3
   * keeps these, and bills for their parts, until someone aborts them.
   *
   * Complete across restarts of the store: every unfinished upload begun
   * through this adapter is listed, whether or not its key is recorded
   * anywhere else, also after the store's server restarted. (MinIO's own
   * listing forgets them when it restarts, and answers any prefix but a
   * whole key with nothing: the S3 adapter journals its uploads' keys.)
   */
  listUnfinishedUploads(): AsyncIterable<{ readonly key: string; readonly ref: string; readonly startedAt: Date }>;
}

export function canListBlobs(store: BlobStore): store is BlobStore & BlobLister {
  return typeof (store as Partial<BlobLister>).listBlobs === "function";
}

/**
 * Optional capability: multipart uploads that outlive one request, for
 * resumable upload sessions. Parts arrive by number, in any order, each
 * replacing an earlier part of the same number; nothing is visible as a blob
 * until `completeSession`.
 */
export interface BlobSessions {
  /** Starts a session for a new blob of a tenant under `key` (from newKey); `ref` identifies it in the store. */
  beginSession(tenantId: string, key: string): Promise<{ key: string; ref: string }>;
  putPart(key: string, ref: string, partNumber: number, data: Uint8Array): Promise<{ etag: string }>;
  /**
   * Assembles parts 1..N (in order) into the blob under the session's key and
   * returns its key and size. Each part is exactly the bytes its etag (from
   * putPart) names, or the assembly fails: that is what lets the caller hash
   * the content from the parts it stored itself, reading back from the blob
   * only those it no longer has (src/service/session-digests.ts). No parts:
   * the empty blob. The session is gone afterwards.
   */
  completeSession(tenantId: string, key: string, ref: string, parts: readonly { partNumber: number; etag: string }[]): Promise<{ key: string; size: number }>;
  /** Drops the session and its parts; safe on an unknown or finished session. */
  abortSession(key: string, ref: string): Promise<void>;
}

export function hasSessions(store: BlobStore): store is BlobStore & BlobSessions {
  return typeof (store as Partial<BlobSessions>).beginSession === "function";
}

/**
 * Optional capability: links that read a blob straight from the store, so
 * content need not pass through the service (direct-to-storage downloads).
 * Only a store configured with an address its clients can reach offers it
 * (S3 with ARTIFACTD_DIRECT_DOWNLOAD_ENDPOINT).
 */
export interface DirectReads {
  /**
   * A URL that GETs exactly `range` (length > 0) of the blob under `key` for
   * `expiresSeconds` from now, and the headers the GET must carry (signed
   * in: the store refuses any other range, or none). Nothing is checked
   * against the store: the caller has found the blob in its index.
   */
  presignRead(key: string, range: ByteRange, expiresSeconds: number): Promise<{ url: string; headers: Readonly<Record<string, string>>; expiresAt: Date }>;
}

export function hasDirectReads(store: BlobStore): store is BlobStore & DirectReads {
  return typeof (store as Partial<DirectReads>).presignRead === "function";
}
