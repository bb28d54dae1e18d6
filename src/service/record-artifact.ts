import type { Artifact } from "../artifact.ts";
import { ArtifactError } from "../artifact-error.ts";
import type { BlobStore } from "../ports/blob-store.ts";
import type { MetadataStore, NewArtifact } from "../ports/metadata-store.ts";

/**
 * Records an artifact whose content has been received and verified,
 * deduplicating against what the tenant already has. Shared by streaming
 * uploads and upload sessions.
 *
 * `content.store()` makes our copy durable and returns its key; it is only
 * called when the tenant does not have this digest yet (a streaming upload
 * then never stores a duplicate). `content.discard()` drops our copy when
 * it is not needed. If the existing blob is reclaimed by garbage collection
 * between the lookup and the insert, our copy is stored instead.
 */
export async function recordArtifact(
  metadata: MetadataStore,
  blobs: BlobStore,
  record: Omit<NewArtifact, "blob" | "inline">,
  content: { store(): Promise<string>; discard(): Promise<void> },
  signal?: AbortSignal,
): Promise<{ artifact: Artifact; deduplicated: boolean }> {
  // The last moment a cancelled call can still leave nothing behind.
  const stillWanted = () => {
    if (signal?.aborted) throw signal.reason;
  };
  if (await metadata.findBlob(record.tenantId, record.blake3)) {
    try {
      stillWanted();
      const { artifact } = await metadata.createArtifact({ ...record, blob: { reuseExisting: true } });
      // The artifact is recorded: a failed clean-up must not fail the call
      // (the garbage collector's orphan pass finds what is left).
      await content.discard().catch(() => {});
      return { artifact, deduplicated: true };
    } catch (error) {
      if (!(error instanceof ArtifactError && error.code === "aborted")) throw error;
    }
  }
  const key = await content.store();
  try {
    stillWanted();
    const result = await metadata.createArtifact({ ...record, blob: { storageKey: key } });
    if (!result.blobCreated && result.blob?.storageKey !== key) {
      // Another upload of the same content was recorded first; ours is surplus.
      await blobs.delete(key).catch(() => {});
    }
    return { artifact: result.artifact, deduplicated: !result.blobCreated };
  } catch (error) {
    // Stored but never recorded: nobody else knows this key.
    await blobs.delete(key).catch(() => {});
    throw error;
  }
}
