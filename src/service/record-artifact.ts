import type { Artifact, ArtifactSpec, InlineContent } from "../artifact.ts";
import { ArtifactError } from "../artifact-error.ts";
import { defaultPrefix, newArtifactId } from "../artifact-id.ts";
import type { BlobStore } from "../ports/blob-store.ts";
import type { AllTenantsBlobIndex } from "../ports/all-tenants-blob-index.ts";
import { BLOB_RECLAIMED, storageKeyOf, type ArtifactRecords, type NewArtifact, type UploadHold } from "../ports/artifact-records.ts";
import type { InFlightUploads } from "../ports/in-flight-uploads.ts";
import type { TenantBlobIndex } from "../ports/tenant-blob-index.ts";

/** What an upload hands over to be recorded: its copy of the content, if any, and what holds the copy's key. */
export interface UploadedContent {
  /** What holds our copy's storage key; undefined when the upload stored nothing (hash-only). */
  readonly hold: UploadHold | undefined;
  /** Makes our copy durable. Only called when the tenant does not have this digest yet. */
  store(): Promise<void>;
  /** Drops our copy before it was made durable (nothing can reference it yet). */
  discard(): Promise<void>;
}

/** An artifact's record, without its content: what recordArtifact (a blob) and SaveInline (inline content) store. */
export type ArtifactRecord = Omit<NewArtifact, "blob" | "inline" | "hold">;

/**
 * The record of a new artifact: the spec's media type, or the default for
 * its content (application/octet-stream for a blob; JSON or UTF-8 text for
 * inline content), and an id with the spec's type prefix, or the one its
 * media type suggests.
 */
export function newArtifactRecord(fields: {
  readonly tenantId: string;
  readonly spec: ArtifactSpec;
  readonly sizeBytes: number;
  readonly blake3: string;
  readonly createdBy: string;
  readonly createdAt?: Date;
  /** Set for inline content: its type sets the default media type and id prefix (binary: as for a blob). */
  readonly inline?: InlineContent["type"];
}): ArtifactRecord {
  const { spec, inline } = fields;
  const mimeType = spec.mimeType || (inline === "json" ? "application/json" : inline === "text" ? "text/plain; charset=utf-8" : "application/octet-stream");
  return {
    id: newArtifactId(spec.typePrefix || defaultPrefix(mimeType, inline)),
    tenantId: fields.tenantId,
    spec,
    mimeType,
    sizeBytes: fields.sizeBytes,
    blake3: fields.blake3,
    createdAt: fields.createdAt ?? new Date(),
    createdBy: fields.createdBy,
  };
}

/**
 * Records an artifact whose content has been received and verified,
 * deduplicating against what the tenant already has. Shared by streaming
 * uploads and upload sessions.
 *
 * The artifact row and the end of the upload's hold on its storage key commit
 * in one transaction (ArtifactRecords.createArtifact with `hold`). So no error
 * path here ever deletes stored content: after a commit whose outcome is
 * unknown, our copy may be what the artifact references. Content that turns
 * out to be unreferenced — a copy that lost a deduplication race, a copy
 * whose recording failed — is released to garbage collection, which reclaims
 * it by key; a surplus copy known to be unreferenced (the commit succeeded
 * and names another key) is discarded at once.
 */
/** What recording an uploaded artifact reads and writes: the row and its blob, and the key in flight it ends. */
export type ArtifactRecording = Pick<ArtifactRecords, "createArtifact"> &
  Pick<TenantBlobIndex, "findBlob"> &
  Pick<AllTenantsBlobIndex, "blobHoldsKey"> & { readonly uploadsInFlight: InFlightUploads };

export async function recordArtifact(
  deps: { readonly metadata: ArtifactRecording; readonly blobs: BlobStore; readonly log?: (message: string, error?: unknown) => void },
  record: ArtifactRecord,
  content: UploadedContent,
  signal?: AbortSignal,
): Promise<{ artifact: Artifact; deduplicated: boolean }> {
  const { metadata } = deps;
  // The last moment a cancelled call can still leave nothing behind.
  const stillWanted = () => {
    if (signal?.aborted) throw signal.reason;
  };
  const existing = await metadata.findBlob(record.tenantId, record.blake3);
  if (existing && !existing.corrupt) {
    stillWanted();
    try {
      // Our key, unused, is released in the same transaction.
      const { artifact } = await metadata.createArtifact({ ...record, blob: { reuseExisting: true }, ...(content.hold ? { hold: content.hold } : {}) });
      const dropped = await content.discard().then(
        () => true,
        (error: unknown) => {
          deps.log?.("dropping a deduplicated upload's copy failed (garbage collection takes it)", error);
          return false;
        },
      );
      if (content.hold) {
        const key = storageKeyOf(content.hold);
        // A writer aborted before it committed left nothing under its key: only the record is left to drop.
        if (dropped && "inFlight" in content.hold) {
          // The key was released by the commit: a record left behind is garbage collection's.
          await metadata.uploadsInFlight
            .forget(key)
            .catch((error: unknown) => deps.log?.(`forgetting the released storage key ${key} failed; garbage collection will retry`, error));
        } else await discardReleased(deps, key);
      }
      return { artifact, deduplicated: true };
    } catch (error) {
      // Reclaimed by garbage collection meanwhile: store our copy instead.
      if (!(error instanceof ArtifactError && error.message === BLOB_RECLAIMED)) throw error;
    }
  }
  if (!content.hold) {
    throw new ArtifactError("aborted", BLOB_RECLAIMED);
  }
  stillWanted();
  await content.store();
  stillWanted();
  const key = storageKeyOf(content.hold);
  const result = await metadata.createArtifact({ ...record, blob: { storageKey: key }, hold: content.hold });
  if (result.blob?.storageKey !== key) {
    // Another upload of the same content was recorded first: ours is surplus, released by the same commit.
    await discardReleased(deps, key);
  }
  return { artifact: result.artifact, deduplicated: !result.blobCreated };
}

/**
 * Removes what is stored under a key released to garbage collection, and then
 * the key's record. A failure leaves both for the next collection (logged).
 */
export async function discardReleased(
  deps: {
    readonly metadata: Pick<AllTenantsBlobIndex, "blobHoldsKey"> & { readonly uploadsInFlight: InFlightUploads };
    readonly blobs: BlobStore;
    readonly log?: (message: string, error?: unknown) => void;
  },
  key: string,
): Promise<void> {
  try {
    if (await deps.metadata.blobHoldsKey(key)) return;
    await deps.blobs.discard(key);
    await deps.metadata.uploadsInFlight.forget(key);
  } catch (error) {
    deps.log?.(`discarding released storage ${key} failed; garbage collection will retry`, error);
  }
}
