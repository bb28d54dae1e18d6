import { randomUUID } from "node:crypto";
import http from "node:http";
import https from "node:https";
import { Client } from "minio";
import type { BlobLister, BlobSessions, BlobStore, BlobWriter, ByteRange } from "../../ports/blob-store.ts";
import { fromS3Error, isMissingS3Object } from "./s3-errors.ts";
import { createS3ObjectReader } from "./s3-object-reader.ts";
import { s3DirectReads } from "./s3-presign.ts";
import { translateBlobStoreErrors } from "./translate-blob-store-errors.ts";

/**
 * A blob store on S3 / MinIO.
 *
 * Layout in the bucket: `<tenant>/<uuid>`, one object per distinct content of
 * a tenant. Keys are random rather than the digest because the digest is only
 * known after the last byte, and S3 cannot rename; the metadata store's
 * `blobs` table is the content-addressed index.
 *
 * Writing: bytes are gathered into parts of `partSize`. A blob that fits in
 * one part is stored with a single PUT at commit (empty blobs too). A larger
 * one becomes a multipart upload: the upload is initiated when the first part
 * is full, up to `partConcurrency` parts are in flight at once, and `write`
 * does not resolve while all slots are busy — that is the backpressure that
 * reaches the gRPC stream, so memory per upload stays near
 * partSize × (partConcurrency + 1) whatever the blob's size. `commit`
 * completes the upload; `abort`, or any failed part, aborts it, so S3 keeps no
 * parts. (If the process dies mid-upload, its key is still recorded as an
 * upload in flight: garbage collection discards it once its heartbeat is
 * stale.) Part sizes follow `partPlan`, so any upload fits in 10,000 parts.
 *
 * Upload sessions are S3 multipart uploads whose id the metadata store
 * keeps, so any replica can add parts or complete them. Completing only
 * assembles: S3 checks every part against the etag recorded for it, and the
 * service hashes the parts it stored itself, reading back from the assembled
 * object only those it no longer holds (src/service/session-digests.ts).
 *
 * Reading: ranged GETs over undici (./s3-object-reader.ts), a pool of
 * keep-alive connections to the endpoint, signed per request; every other
 * call goes through minio-js. Reads are what downloads relay, and node:http
 * under minio-js cost more server CPU per byte than the rest of the relay.
 *
 * Unfinished multipart uploads are journaled: an empty object
 * `_unfinished/<key>` is stored before an upload to `<key>` is initiated and
 * removed as it is completed or aborted (see UploadJournal). The
 * journal is what listUnfinishedUploads reads, because MinIO cannot list such
 * uploads itself after a restart.
 *
 * Permissions needed: s3:PutObject, s3:GetObject, s3:DeleteObject,
 * s3:AbortMultipartUpload, s3:ListBucket, s3:ListBucketMultipartUploads, and
 * s3:CreateBucket when the bucket does not exist yet.
 */
export interface S3BlobStoreOptions {
  /** The S3 service, http: or https: (which decides TLS); path-style addressing, so MinIO needs no DNS per bucket. */
  readonly endpoint: URL;
  /** The region requests are signed for, and a bucket this store creates is made in. Default "us-east-1". */
  readonly region?: string;
  readonly accessKey: string;
  readonly secretKey: string;
  /** Created when missing (by whichever replica gets there first). */
  readonly bucket: string;
  /**
   * Bytes per multipart part, and the size at and below which a blob is one
   * PUT. S3 allows 5 MiB – 5 GiB. Parts grow from this for uploads of
   * unknown length (see partPlan). Default 8 MiB.
   */
  readonly partSize?: number;
  /** Parts uploaded at once per upload; memory per upload is about partSize × (this + 1). Default 3. */
  readonly partConcurrency?: number;
  /** Where clients reach the store: set, the store offers DirectReads (presigned ranged GETs, ./s3-presign.ts) for that address. */
  readonly directReadEndpoint?: URL;
}

/** What S3BlobStoreOptions leaves unset. */
const S3_BLOB_STORE_DEFAULTS = { region: "us-east-1", partSize: 8 * 1024 * 1024, partConcurrency: 3 };

/** Opens the store on its bucket, creating the bucket when it does not exist. */
export async function createS3BlobStore(
  s3: S3BlobStoreOptions,
  options: {
    /** Part sizes for one upload; tests choose a small schedule to see parts of several sizes. */
    readonly planParts?: (expectedSize: number | undefined) => PartPlan;
    /** Age after which a journal entry with no upload under its key is a leftover (see UploadJournal); tests shorten it. */
    readonly journalLeftoverMs?: number;
  } = {},
): Promise<BlobStore & BlobLister & BlobSessions> {
  const config = { ...S3_BLOB_STORE_DEFAULTS, ...s3 };
  const planParts = options.planParts ?? ((expectedSize) => partPlan(config.partSize, config.partConcurrency, expectedSize));
  const useSSL = config.endpoint.protocol === "https:";
  const agentOptions = { keepAlive: true, maxSockets: 256 };
  const client = new Client({
    endPoint: config.endpoint.hostname.replace(/^\[|\]$/g, ""),
    port: Number(config.endpoint.port || (useSSL ? 443 : 80)),
    useSSL,
    accessKey: config.accessKey,
    secretKey: config.secretKey,
    region: config.region,
    pathStyle: true,
    transportAgent: useSSL ? new https.Agent(agentOptions) : new http.Agent(agentOptions),
  });
  const bucket = config.bucket;
  const reader = createS3ObjectReader({ ...config, connections: agentOptions.maxSockets });
  // minio-js signs plain-HTTP bodies with their SHA-256, computed on the event
  // loop: a quarter of the server's CPU during uploads in the bench. Content
  // integrity is ours already (BLAKE3 over every byte, checked on every full
  // read), so parts go as UNSIGNED-PAYLOAD, as they do over HTTPS anyway.
  (client as unknown as { enableSHA256: boolean }).enableSHA256 = false;

  if (!(await client.bucketExists(bucket))) {
    try {
      await client.makeBucket(bucket, config.region);
    } catch (error) {
      // Another replica may have created it in the meantime.
      if (!(await client.bucketExists(bucket))) throw error;
    }
  }

  async function* read(key: string, range: ByteRange, signal?: AbortSignal): AsyncIterable<Uint8Array> {
    if (range.length === 0) return;
    yield* reader.read(bucket, key, range.offset, range.length, signal);
  }

  async function statKey(key: string): Promise<{ size: number } | undefined> {
    try {
      const info = await client.statObject(bucket, key);
      return { size: info.size };
    } catch (error) {
      if (isMissingS3Object(error)) return undefined;
      throw error;
    }
  }

  /** Unfinished multipart uploads to exactly this key: listed by the key as prefix, which MinIO answers from disk. */
  async function* unfinishedUploadsOf(key: string): AsyncIterable<{ uploadId: string; initiated: Date }> {
    // One upload per key is all this store makes: a single page holds them.
    const { uploads } = await client.listIncompleteUploadsQuery(bucket, key, "", "", "");
    for (const upload of uploads) if (upload.key === key && upload.uploadId) yield { uploadId: upload.uploadId, initiated: upload.initiated };
  }

  /**
   * Every unfinished upload in the bucket by an empty prefix: complete on S3, but on MinIO only those begun since
   * it last started (see listUnfinishedUploads). Paged by hand: minio-js also lists each upload's parts, which fails
   * the whole listing when an upload is aborted meanwhile.
   */
  async function* bucketListingOfUploads(): AsyncIterable<{ key: string; uploadId: string; initiated: Date }> {
    let keyMarker = "";
    let uploadIdMarker = "";
    for (;;) {
      const page = await client.listIncompleteUploadsQuery(bucket, "", keyMarker, uploadIdMarker, "");
      for (const upload of page.uploads) if (upload.key && upload.uploadId) yield upload;
      const last = page.uploads.at(-1);
      if (!page.isTruncated || !last || (last.key === keyMarker && last.uploadId === uploadIdMarker)) return;
      // minio-js drops NextUploadIdMarker; the last upload of the page is that marker by definition.
      keyMarker = last.key;
      uploadIdMarker = last.uploadId;
    }
  }

  const journal = new UploadJournal(client, bucket);
  const leftoverMs = options.journalLeftoverMs ?? UploadJournal.LEFTOVER_MS;

  // What callers see of S3's failures: ./s3-errors.ts.
  return translateBlobStoreErrors<BlobStore & BlobLister & BlobSessions>(
    {
      ...(config.directReadEndpoint ? s3DirectReads({ ...config, endpoint: config.directReadEndpoint }) : {}),
      newKey: (tenantId) => `${tenantId}/${randomUUID()}`,
      async createWriter(_tenantId, key, expectedSize) {
        return new S3BlobWriter(client, bucket, key, planParts(expectedSize), journal);
      },
      read,
      async beginSession(_tenantId, key) {
        await journal.add(key);
        try {
          const ref = await client.initiateNewMultipartUpload(bucket, key, {});
          return { key, ref };
        } catch (error) {
          await journal.remove(key);
          throw error;
        }
      },
      async putPart(key, ref, partNumber, data) {
        const payload = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
        const { etag } = await client.uploadPart({ bucketName: bucket, objectName: key, uploadID: ref, partNumber, headers: {} }, payload);
        return { etag };
      },
      async completeSession(_tenantId, key, ref, parts) {
        if (parts.length === 0) {
          // S3 cannot complete a multipart upload without parts: store the empty blob directly.
          await client.abortMultipartUpload(bucket, key, ref).catch(ignoreNoSuchUpload);
          await journal.remove(key);
          await client.putObject(bucket, key, Buffer.alloc(0), 0);
          return { key, size: 0 };
        }
        await journal.remove(key);
        try {
          await client.completeMultipartUpload(
            bucket,
            key,
            ref,
            parts.map((p) => ({ part: p.partNumber, etag: p.etag })),
          );
        } catch (error) {
          // An earlier try assembled it and failed afterwards (its answer lost): the upload is gone and the
          // object is there, assembled from the same parts (the session took none since). Answer it as if this try had.
          if ((error as { code?: string }).code !== "NoSuchUpload" || !(await statKey(key))) throw error;
        }
        // On a failure from here the object stays: the session (its row) still holds the key.
        const info = await client.statObject(bucket, key);
        return { key, size: info.size };
      },
      async abortSession(key, ref) {
        await client.abortMultipartUpload(bucket, key, ref).catch(ignoreNoSuchUpload);
        await journal.remove(key);
      },
      async discard(key) {
        for await (const { uploadId } of unfinishedUploadsOf(key)) await client.abortMultipartUpload(bucket, key, uploadId).catch(ignoreNoSuchUpload);
        await client.removeObject(bucket, key);
        await journal.remove(key);
      },
      stat: statKey,
      async delete(key) {
        await client.removeObject(bucket, key);
      },
      async ping() {
        await client.bucketExists(bucket);
      },
      async *listBlobs() {
        for await (const item of client.listObjectsV2(bucket, "", true) as AsyncIterable<{ name?: string; size: number; lastModified: Date }>) {
          if (item.name && !UploadJournal.holds(item.name)) yield { key: item.name, size: item.size, lastModified: item.lastModified };
        }
      },
      /**
       * MinIO (the build the tests use; measured by starting multipart uploads, SIGKILLing and restarting it) answers
       * ListMultipartUploads with an empty prefix from memory: only uploads begun since it started, with or without a
       * delimiter or key-marker. Any other prefix it takes as one exact object key: the full key finds its uploads
       * before and after a restart, but a tenant prefix (`alpha/`, `alpha`) or part of a key finds nothing, even
       * before. So the uploads are found by their keys, from the journal (objects, which MinIO lists from disk), and
       * the bucket-wide listing adds those begun without a journal entry (by an earlier version) that it still shows.
       */
      async *listUnfinishedUploads() {
        const listed = new Set<string>();
        for await (const entry of journal.entries()) {
          let found = false;
          for await (const { uploadId, initiated } of unfinishedUploadsOf(entry.key)) {
            found = true;
            listed.add(uploadId);
            yield { key: entry.key, ref: uploadId, startedAt: initiated };
          }
          if (!found && entry.writtenAt.getTime() <= Date.now() - leftoverMs) await journal.remove(entry.key);
        }
        for await (const upload of bucketListingOfUploads()) {
          if (!listed.has(upload.uploadId)) yield { key: upload.key, ref: upload.uploadId, startedAt: upload.initiated };
        }
      },
      async close() {
        await reader.close();
      },
    },
    { translate: fromS3Error, isMissing: isMissingS3Object },
  );
}

/** S3's limits on one multipart upload. */
const MAX_PARTS = 10_000;
const MAX_PART_BYTES = 5 * 1024 ** 3;
const MAX_OBJECT_BYTES = 5 * 1024 ** 4;

/**
 * Part sizes for one upload, so that whatever its length — up to S3's 5 TiB
 * object — it fits in S3's 10,000 parts. With the size known, one part size
 * (at least the configured one) covers it. Unknown, the part size doubles
 * every `partsPerDoubling` parts, starting from the configured size: small
 * uploads keep small parts, and a 5 TiB one still ends within the limit.
 * Parts in flight shrink as parts grow, so memory stays near the configured
 * partSize × partConcurrency, or one or two parts once a part is larger.
 */
export interface PartPlan {
  sizeOf(partNumber: number): number;
  concurrencyOf(partNumber: number): number;
}

export function partPlan(partSize: number, partConcurrency: number, expectedSize?: number): PartPlan {
  const budget = partSize * partConcurrency;
  const concurrencyFor = (size: number) => Math.max(1, Math.floor(budget / size));
  if (expectedSize !== undefined) {
    const size = Math.min(MAX_PART_BYTES, Math.max(partSize, Math.ceil(expectedSize / MAX_PARTS)));
    return { sizeOf: () => size, concurrencyOf: () => concurrencyFor(size) };
  }
  const perDoubling = partsPerDoubling(partSize);
  const sizeAt = (partNumber: number) => growingPartSize(partSize, perDoubling, partNumber);
  return { sizeOf: sizeAt, concurrencyOf: (n) => concurrencyFor(sizeAt(n)) };
}

/**
 * The slowest growth (most parts per doubling) with which 10,000 parts
 * starting at `partSize` still hold the largest object. Found once per part
 * size: the search adds up 10,000 parts a few dozen times, not a cost for
 * every upload.
 */
const growingPartSize = (partSize: number, perDoubling: number, partNumber: number) =>
  Math.min(MAX_PART_BYTES, partSize * 2 ** Math.floor((partNumber - 1) / perDoubling));

const partsPerDoublingBySize = new Map<number, number>();
function partsPerDoubling(partSize: number): number {
  let perDoubling = partsPerDoublingBySize.get(partSize);
  if (perDoubling !== undefined) return perDoubling;
  perDoubling = MAX_PARTS;
  for (;;) {
    let total = 0;
    for (let n = 1; n <= MAX_PARTS; n++) total += growingPartSize(partSize, perDoubling, n);
    if (total >= MAX_OBJECT_BYTES || perDoubling === 1) break;
    perDoubling = Math.max(1, Math.floor(perDoubling * 0.9));
  }
  partsPerDoublingBySize.set(partSize, perDoubling);
  return perDoubling;
}

function ignoreNoSuchUpload(error: { code?: string }): void {
  if (error.code !== "NoSuchUpload") throw error;
}

/** Where the S3 store journals its unfinished uploads (see UploadJournal); tests read the bucket with it. */
export const UPLOAD_JOURNAL_PREFIX = "_unfinished/";

/**
 * The keys of the multipart uploads this store began and has not yet seen
 * completed or aborted, as empty objects under `_unfinished/`: no blob key
 * starts with `_` (tenant ids start with a letter or digit). An entry is
 * written before its upload is initiated and removed after it is aborted, so
 * an abandoned upload always has one. It is removed just *before* an upload
 * is completed: the service recorded the key before the upload began and
 * still holds it then (an upload in flight, a session), so an upload left by
 * a failed completion is found by that record; and a store that dies at that
 * moment leaves no entry behind for a completed blob.
 */
class UploadJournal {
  /**
   * An entry this old with no upload under its key is a leftover: its upload ended but removing the entry failed,
   * or the process died before initiating it, or MinIO dropped the stale upload by itself. An hour is far beyond the
   * moment between writing an entry and initiating its upload. listUnfinishedUploads removes such entries as it
   * meets them, in a dry run of garbage collection too: they are this store's bookkeeping, not anyone's content.
   */
  static readonly LEFTOVER_MS = 3_600_000;
  readonly #client: Client;
  readonly #bucket: string;

  constructor(client: Client, bucket: string) {
    this.#client = client;
    this.#bucket = bucket;
  }

  static holds(objectName: string): boolean {
    return objectName.startsWith(UPLOAD_JOURNAL_PREFIX);
  }

  async add(key: string): Promise<void> {
    await this.#client.putObject(this.#bucket, UPLOAD_JOURNAL_PREFIX + key, Buffer.alloc(0), 0);
  }

  /** Never fails: the upload itself is done either way, and a leftover entry is removed by a later listing. */
  async remove(key: string): Promise<void> {
    await this.#client.removeObject(this.#bucket, UPLOAD_JOURNAL_PREFIX + key).catch(() => {});
  }

  async *entries(): AsyncIterable<{ key: string; writtenAt: Date }> {
    const objects = this.#client.listObjectsV2(this.#bucket, UPLOAD_JOURNAL_PREFIX, true) as AsyncIterable<{ name?: string; lastModified: Date }>;
    for await (const item of objects) {
      if (item.name) yield { key: item.name.slice(UPLOAD_JOURNAL_PREFIX.length), writtenAt: item.lastModified };
    }
  }
}

class S3BlobWriter implements BlobWriter {
  readonly #client: Client;
  readonly #bucket: string;
  readonly #key: string;
  readonly #plan: PartPlan;
  readonly #journal: UploadJournal;

  /** The part being filled; grows from 256 KiB so small blobs stay small. */
  #buffer: Buffer = Buffer.alloc(0);
  #filled = 0;
  /** Full-size part buffers whose upload finished, reused instead of reallocated. */
  readonly #spare: Buffer[] = [];
  #uploadId: Promise<string> | undefined;
  #nextPart = 1;
  readonly #etags: { part: number; etag: string }[] = [];
  readonly #inFlight = new Set<Promise<void>>();
  #failure: unknown;
  #state: "open" | "committed" | "aborted" = "open";

  constructor(client: Client, bucket: string, key: string, plan: PartPlan, journal: UploadJournal) {
    this.#client = client;
    this.#bucket = bucket;
    this.#key = key;
    this.#plan = plan;
    this.#journal = journal;
  }

  async write(content: Uint8Array | readonly Uint8Array[]): Promise<void> {
    this.#throwIfFailed();
    // Awaits only when a part fills: copying a piece is synchronous, and a message comes in dozens of pieces.
    for (const chunk of content instanceof Uint8Array ? [content] : content) {
      let offset = 0;
      while (offset < chunk.byteLength) {
        const partSize = this.#plan.sizeOf(this.#nextPart);
        this.#reserve(Math.min(this.#filled + chunk.byteLength - offset, partSize), partSize);
        const take = Math.min(chunk.byteLength - offset, partSize - this.#filled);
        this.#buffer.set(chunk.subarray(offset, offset + take), this.#filled);
        this.#filled += take;
        offset += take;
        if (this.#filled === partSize) await this.#flushPart();
      }
    }
  }

  async commit(_digest: string): Promise<string> {
    this.#throwIfFailed();
    try {
      if (this.#uploadId === undefined) {
        // Everything fits in one part: a single PUT, no multipart round trips.
        await this.#client.putObject(this.#bucket, this.#key, this.#buffer.subarray(0, this.#filled), this.#filled);
      } else {
        if (this.#filled > 0) await this.#flushPart();
        await Promise.all(this.#inFlight);
        this.#throwIfFailed();
        const uploadId = await this.#uploadId;
        this.#etags.sort((a, b) => a.part - b.part);
        await this.#journal.remove(this.#key);
        await this.#client.completeMultipartUpload(this.#bucket, this.#key, uploadId, this.#etags);
      }
      this.#state = "committed";
      return this.#key;
    } catch (error) {
      await this.abort();
      throw error;
    }
  }

  async abort(): Promise<void> {
    if (this.#state !== "open") return;
    this.#state = "aborted";
    await Promise.allSettled(this.#inFlight);
    if (this.#uploadId !== undefined) {
      const uploadId = await this.#uploadId.catch(() => undefined);
      if (uploadId !== undefined) await this.#client.abortMultipartUpload(this.#bucket, this.#key, uploadId);
      await this.#journal.remove(this.#key);
    }
  }

  async #flushPart(): Promise<void> {
    while (this.#inFlight.size >= this.#plan.concurrencyOf(this.#nextPart)) {
      await Promise.race(this.#inFlight);
      this.#throwIfFailed();
    }
    this.#uploadId ??= this.#journal.add(this.#key).then(() => this.#client.initiateNewMultipartUpload(this.#bucket, this.#key, {}));
    const part = this.#nextPart++;
    const full = this.#buffer;
    const payload = this.#filled === full.length ? full : full.subarray(0, this.#filled);
    // Hand the buffer to the part upload and fill another meanwhile; at most
    // partConcurrency + 1 buffers exist per writer, recycled part to part.
    this.#buffer = this.#spare.pop() ?? Buffer.alloc(0);
    this.#filled = 0;
    const upload = this.#uploadPart(part, payload).then(
      () => {
        this.#inFlight.delete(upload);
        if (full.length === this.#plan.sizeOf(this.#nextPart)) this.#spare.push(full);
      },
      (error: unknown) => {
        this.#inFlight.delete(upload);
        this.#failure ??= error;
      },
    );
    this.#inFlight.add(upload);
  }

  async #uploadPart(part: number, payload: Buffer): Promise<void> {
    const uploadID = await this.#uploadId!;
    if (this.#state === "aborted") return;
    const { etag } = await this.#client.uploadPart({ bucketName: this.#bucket, objectName: this.#key, uploadID, partNumber: part, headers: {} }, payload);
    this.#etags.push({ part, etag });
  }

  get key(): string {
    return this.#key;
  }

  /** Makes room for `needed` bytes in the current buffer, growing it by doubling up to partSize. */
  #reserve(needed: number, partSize: number): void {
    if (needed <= this.#buffer.length) return;
    let capacity = Math.max(this.#buffer.length, 256 * 1024);
    while (capacity < needed) capacity *= 2;
    const grown = Buffer.allocUnsafe(Math.min(capacity, partSize));
    this.#buffer.copy(grown, 0, 0, this.#filled);
    this.#buffer = grown;
  }

  #throwIfFailed(): void {
    if (this.#state === "aborted") throw new Error("blob writer was aborted");
    if (this.#failure !== undefined) throw this.#failure;
  }
}
