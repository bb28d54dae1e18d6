import type { ArtifactSpec, Caller } from "../artifact.ts";
import { ArtifactError } from "../artifact-error.ts";
import type { BlobStore, BlobWriter } from "../ports/blob-store.ts";
import { UPLOAD_HOLD_LOST, type ArtifactRecords } from "../ports/artifact-records.ts";
import type { TenantBlobIndex } from "../ports/tenant-blob-index.ts";
import { keepAlive, type KeepAlive } from "./keep-alive.ts";
import { newArtifactRecord, recordArtifact, type ArtifactRecording } from "./record-artifact.ts";
import type { TenantQuotas } from "./tenant-quotas.ts";
import type { WholeContentSink } from "./upload-stream-reader.ts";

/** How long a hash-only upload holds the blob it will reference; renewed every half of it while bytes flow. */
export const BLOB_HOLD_MS = 10 * 60_000;

export interface BlobWriterSinkDeps {
  readonly metadata: ArtifactRecording & Pick<ArtifactRecords, "checkInputs"> & Pick<TenantBlobIndex, "holdBlob">;
  readonly blobs: BlobStore;
  /** An upload in flight renews its heartbeat every third of this; garbage collection takes it for dead past it. */
  readonly uploadStaleMs: number;
  /** The stored-bytes quota is checked against the declared size, then as bytes arrive. */
  readonly quotas: TenantQuotas;
  readonly log?: (message: string, error?: unknown) => void;
}

/**
 * Where a streaming upload of a new artifact puts its bytes: a new blob.
 *
 * Order of events, and why:
 * 1. Opening checks the spec's inputs, then (unless the content is known)
 *    records the storage key as an upload in flight, before the first byte
 *    is stored; its heartbeat is renewed while the call runs, and the
 *    recording transaction ends it (./record-artifact.ts).
 * 2. Every chunk is handed to a blob writer; awaiting the write is the
 *    backpressure that keeps memory bounded. When the client declared a
 *    digest the tenant already has, bytes are only hashed (by the reader),
 *    never stored, and that blob is held against garbage collection.
 * 3. Once the reader has checked size and digest, if the tenant already has
 *    this content the artifact row is committed pointing at that blob
 *    (locked against garbage collection in the same transaction) and the
 *    writer is aborted: nothing new stored.
 * 4. Otherwise the blob is committed, then the artifact row with its blob
 *    row, in one transaction. If another upload of the same content won the
 *    race, the row points at its blob and ours is discarded.
 * A failure or cancellation before the content is made durable aborts the
 * writer and forgets the key: no artifact, no parts or files left. After
 * that, the key is only released: garbage collection reclaims it if the
 * artifact was not recorded, and nothing if it was.
 */
export async function openBlobWriterSink(
  deps: BlobWriterSinkDeps,
  caller: Caller,
  declared: { readonly spec: ArtifactSpec; readonly expectedSize: number | undefined; readonly expectedBlake3: string | undefined },
  signal: AbortSignal,
): Promise<WholeContentSink> {
  const { spec, expectedSize, expectedBlake3 } = declared;
  await deps.metadata.checkInputs(caller.tenantId, spec.inputs);

  // Declared content the tenant already has: hash only, store nothing, and hold the blob against garbage
  // collection while the bytes stream in (renewed as they flow), so the reference at the end finds it.
  const hold = () => deps.metadata.holdBlob(caller.tenantId, expectedBlake3!, BLOB_HOLD_MS);
  const known = expectedBlake3 !== undefined && (await hold());
  // Bytes that will be stored count against the tenant's stored-bytes quota: all the declared ones at once (a
  // doomed upload fails before its first byte), else each chunk before it is written. Refused: nothing is recorded,
  // and the failure path discards what was stored.
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
  const sink: WholeContentSink = {
    carries: "whole content",
    startOffset: 0,
    expectedSize,
    expectedBlake3,
    metadata: spec,

    async write(pieces, byteLength) {
      if (expectedSize === undefined) await storage?.add(byteLength);
      if (heartbeat?.lost) throw takenForDead();
      if (writer) await writer.write(pieces);
      else if (Date.now() - heldAt > BLOB_HOLD_MS / 2) {
        await hold();
        heldAt = Date.now();
      }
    },

    async finish({ size, blake3, metadata }) {
      const record = newArtifactRecord({ tenantId: caller.tenantId, spec: { ...spec, ...metadata }, sizeBytes: size, blake3, createdBy: caller.principal });
      const result = await recordArtifact(
        deps,
        record,
        {
          hold: key === undefined ? undefined : { inFlight: key },
          store: async () => {
            if (heartbeat?.lost) throw takenForDead();
            storing = true;
            await writer!.commit(blake3);
          },
          discard: async () => writer?.abort(),
        },
        signal,
      );
      stored = !result.deduplicated;
      return result;
    },

    async fail() {
      if (key !== undefined) await giveUp(deps, key, storing ? undefined : writer);
    },

    async close() {
      storage?.release(stored);
      heartbeat?.stop();
    },
  };
  if (key !== undefined) {
    try {
      writer = await deps.blobs.createWriter(caller.tenantId, key, expectedSize);
    } catch (error) {
      await sink.fail();
      await sink.close();
      throw error;
    }
  }
  return sink;
}

/**
 * After a failed upload. Content never made durable is aborted and its key
 * forgotten: nothing can reference it. Content that was (or may have been)
 * made durable is only released: if the commit's outcome is unknown, the
 * artifact may reference it, and garbage collection knows which.
 */
async function giveUp(deps: BlobWriterSinkDeps, key: string, uncommitted: BlobWriter | undefined): Promise<void> {
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
