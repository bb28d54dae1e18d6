import type { Artifact, Caller } from "../artifact.ts";
import { ArtifactError, invalidArgument } from "../artifact-error.ts";
import { defaultPrefix, newArtifactId } from "../artifact-id.ts";
import { BLAKE3_HEX_PATTERN, createBlake3 } from "../blake3.ts";
import type { BlobStore, BlobWriter } from "../ports/blob-store.ts";
import { UPLOAD_HOLD_LOST, type MetadataStore } from "../ports/metadata-store.ts";
import { keepAlive, type KeepAlive } from "./keep-alive.ts";
import { recordArtifact } from "./record-artifact.ts";
import type { TenantQuotas } from "./tenant-quotas.ts";
import { streamIntoSession } from "./upload-sessions.ts";
import { validateLabels, validateMetrics, validateSpec, validateTags, type RawSpec } from "./validate-spec.ts";

/** How long a hash-only upload holds the blob it will reference; renewed every half of it while bytes flow. */
const BLOB_HOLD_MS = 10 * 60_000;

/** One message of an upload stream, as the transport hands it over. */
export type UploadMessage =
  | {
      readonly type: "header";
      readonly spec: RawSpec | undefined;
      readonly expectedSize: number | undefined;
      readonly expectedBlake3: string;
      /** Non-empty: the stream continues an upload session (see streamIntoSession). */
      readonly sessionId: string;
      readonly offset: number;
    }
  | { readonly type: "chunk"; readonly data: Uint8Array }
  | {
      readonly type: "trailer";
      readonly labels: Readonly<Record<string, string>>;
      readonly tags: readonly string[];
      readonly metrics: Readonly<Record<string, number>>;
    }
  | { readonly type: "empty" };

export interface UploadResult {
  readonly artifact: Artifact;
  readonly deduplicated: boolean;
}

export interface UploadDeps {
  readonly metadata: MetadataStore;
  readonly blobs: BlobStore;
  readonly uploadMaxBytes: number;
  readonly sessionTtlMs: number;
  /** An upload in flight renews its heartbeat every third of this; garbage collection takes it for dead past it. */
  readonly uploadStaleMs: number;
  /** The stored-bytes quota is checked against the declared size, then as bytes arrive. */
  readonly quotas: TenantQuotas;
  readonly log?: (message: string, error?: unknown) => void;
}

/**
 * The streaming upload use case.
 *
 * Order of events, and why:
 * 1. The header is validated and the inputs checked before any byte is
 *    stored, so a doomed upload fails at once.
 * 2. Every chunk is hashed and handed to a blob writer; awaiting the write is
 *    the backpressure that keeps memory bounded. When the client declared a
 *    digest the tenant already has, bytes are only hashed, never stored.
 * 3. At the end, size and digest are checked against what was declared.
 * 4. If the tenant already has this content, the artifact row is committed
 *    pointing at that blob (locked against garbage collection in the same
 *    transaction) and the writer is aborted: nothing new stored.
 * 5. Otherwise the blob is committed, then the artifact row with its blob
 *    row, in one transaction. If another upload of the same content won the
 *    race, the row points at its blob and ours is discarded.
 * Before the first byte is stored, the storage key is recorded as an upload
 * in flight, its heartbeat renewed while the call runs, and the recording
 * transaction ends it (./record-artifact.ts). A failure or cancellation
 * before the content is made durable aborts the writer and forgets the key:
 * no artifact, no parts or files left. After that, the key is only released:
 * garbage collection reclaims it if the artifact was not recorded, and
 * nothing if it was.
 */
export async function uploadArtifact(
  deps: UploadDeps,
  caller: Caller,
  messages: AsyncIterable<UploadMessage>,
  signal: AbortSignal,
): Promise<UploadResult> {
  const iterator = messages[Symbol.asyncIterator]();
  const first = await iterator.next();
  if (first.done) throw invalidArgument("the upload stream was empty: send a header message first, then chunks");
  const header = first.value;
  if (header.type !== "header") {
    throw invalidArgument(`the first upload message was a ${header.type}: send the header first, then chunks`);
  }
  if (header.sessionId !== "") {
    if (header.spec !== undefined || header.expectedSize !== undefined || header.expectedBlake3 !== "") {
      throw invalidArgument("with header.session_id, the spec, expected_size and expected_blake3 come from the session: leave them unset");
    }
    try {
      return await streamIntoSession(deps, caller, { sessionId: header.sessionId, offset: header.offset }, iterator, signal);
    } finally {
      await iterator.return?.();
    }
  }
  if (header.offset !== 0) throw invalidArgument("header.offset is only meaningful with header.session_id");
  const now = new Date();
  const spec = validateSpec(header.spec, now);
  const { expectedSize, expectedBlake3 } = header;
  if (expectedSize !== undefined && (!Number.isSafeInteger(expectedSize) || expectedSize < 0)) {
    throw invalidArgument(`header.expected_size ${expectedSize} is not valid: give the content length in bytes (>= 0)`);
  }
  if (expectedSize !== undefined && expectedSize > deps.uploadMaxBytes) {
    throw new ArtifactError("resource_exhausted", `header.expected_size ${expectedSize} exceeds this server's upload limit of ${deps.uploadMaxBytes} bytes`);
  }
  if (expectedBlake3 !== "" && !BLAKE3_HEX_PATTERN.test(expectedBlake3)) {
    throw invalidArgument("header.expected_blake3 must be 64 lowercase hex characters (a BLAKE3-256 digest)");
  }
  await deps.metadata.checkInputs(caller.tenantId, spec.inputs);

  // Declared content the tenant already has: hash only, store nothing, and hold the blob against garbage
  // collection while the bytes stream in (renewed as they flow), so the reference at the end finds it.
  const hold = () => deps.metadata.holdBlob(caller.tenantId, expectedBlake3, BLOB_HOLD_MS);
  const known = expectedBlake3 !== "" && (await hold());
  // Bytes that will be stored count against the tenant's stored-bytes quota: all the declared ones at once (a
  // doomed upload fails before its first byte), else each chunk before it is written. Refused: nothing is recorded,
  // and the failure path below discards what was stored.
  const storage = known ? undefined : deps.quotas.reserveStorage(caller.tenantId);
  let stored = false;
  let heldAt = Date.now();
  let writer: BlobWriter | undefined;
  let heartbeat: KeepAlive | undefined;
  let key: string | undefined;
  let storing = false;
  try {
    if (expectedSize !== undefined) await storage?.add(expectedSize);
    if (!known) {
      key = deps.blobs.newKey(caller.tenantId);
      const inFlight = key;
      await deps.metadata.uploadsInFlight.begin(caller.tenantId, inFlight);
      heartbeat = keepAlive(() => deps.metadata.uploadsInFlight.renew(inFlight), deps.uploadStaleMs / 3);
    }
  } catch (error) {
    storage?.release(false);
    throw error;
  }
  try {
    if (key !== undefined) writer = await deps.blobs.createWriter(caller.tenantId, key, expectedSize);
    const hasher = createBlake3();
    let size = 0;
    let labels = spec.labels;
    let tags = spec.tags;
    let metrics = spec.metrics;
    let trailerSeen = false;
    for (;;) {
      const next = await iterator.next();
      if (next.done) break;
      const message = next.value;
      if (signal.aborted) throw signal.reason;
      if (trailerSeen && message.type !== "empty") {
        throw invalidArgument(`a ${message.type} arrived after the trailer: the trailer must be the last message`);
      }
      switch (message.type) {
        case "header":
          throw invalidArgument("a second header arrived: send exactly one header, first");
        case "empty":
          break;
        case "chunk": {
          size += message.data.byteLength;
          if (expectedSize !== undefined && size > expectedSize) {
            throw invalidArgument(`received more than the declared expected_size of ${expectedSize} bytes`);
          }
          if (size > deps.uploadMaxBytes) {
            throw new ArtifactError("resource_exhausted", `the upload exceeds this server's limit of ${deps.uploadMaxBytes} bytes`);
          }
          if (expectedSize === undefined) await storage?.add(message.data.byteLength);
          hasher.update(message.data);
          if (heartbeat?.lost) throw takenForDead();
          if (writer) await writer.write(message.data);
          else if (Date.now() - heldAt > BLOB_HOLD_MS / 2) {
            await hold();
            heldAt = Date.now();
          }
          break;
        }
        case "trailer":
          trailerSeen = true;
          labels = { ...labels, ...validateLabels("trailer.labels", message.labels) };
          tags = validateTags("trailer.tags", [...tags, ...message.tags]);
          metrics = { ...metrics, ...validateMetrics("trailer.metrics", message.metrics) };
          // Limits apply to the merged sets too.
          validateLabels("labels (header and trailer together)", labels);
          validateMetrics("metrics (header and trailer together)", metrics);
          break;
      }
    }
    if (signal.aborted) throw signal.reason;
    if (expectedSize !== undefined && size !== expectedSize) {
      throw invalidArgument(`received ${size} bytes but the header declared expected_size ${expectedSize}: nothing was stored`);
    }
    const digest = hasher.digestHex();
    if (expectedBlake3 !== "" && digest !== expectedBlake3) {
      throw invalidArgument(`the content's BLAKE3 is ${digest} but the header declared ${expectedBlake3}: nothing was stored`);
    }

    const mimeType = spec.mimeType || "application/octet-stream";
    const record = {
      id: newArtifactId(spec.typePrefix || defaultPrefix(mimeType)),
      tenantId: caller.tenantId,
      spec: { ...spec, labels, tags, metrics },
      mimeType,
      sizeBytes: size,
      blake3: digest,
      createdAt: new Date(),
      createdBy: caller.principal,
    };

    const result = await recordArtifact(
      deps,
      record,
      {
        hold: key === undefined ? undefined : { inFlight: key },
        store: async () => {
          if (heartbeat?.lost) throw takenForDead();
          storing = true;
          await writer!.commit(digest);
        },
        discard: async () => writer?.abort(),
      },
      signal,
    );
    stored = !result.deduplicated;
    return result;
  } catch (error) {
    if (key !== undefined) await giveUp(deps, key, storing ? undefined : writer);
    throw error;
  } finally {
    storage?.release(stored);
    heartbeat?.stop();
    // Tell the transport we stopped reading (ends the request stream early
    // when we failed mid-way).
    await iterator.return?.();
  }
}

/**
 * After a failed upload. Content never made durable is aborted and its key
 * forgotten: nothing can reference it. Content that was (or may have been)
 * made durable is only released: if the commit's outcome is unknown, the
 * artifact may reference it, and garbage collection knows which.
 */
async function giveUp(deps: UploadDeps, key: string, uncommitted: BlobWriter | undefined): Promise<void> {
  try {
    await deps.metadata.uploadsInFlight.release(key);
    if (uncommitted) {
      await uncommitted.abort();
      await deps.metadata.uploadsInFlight.forget(key);
    }
  } catch (error) {
    deps.log?.(`cleaning up after a failed upload (${key}) failed; garbage collection takes it`, error);
  }
}

function takenForDead(): ArtifactError {
  return new ArtifactError("aborted", UPLOAD_HOLD_LOST);
}
