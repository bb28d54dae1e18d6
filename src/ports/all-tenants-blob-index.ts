import type { StoredBlob } from "./tenant-blob-index.ts";

/**
 * The blob index as garbage collection sees it: every tenant's blobs at
 * once, and the storage keys anything in the database still holds. Nothing
 * here is reachable from a request; a use case serving a tenant reads its
 * blobs through ./tenant-blob-index.ts.
 */
export interface AllTenantsBlobIndex {
  /** Blobs marked corrupt, for the operator (gc --dry-run lists them). */
  listCorruptBlobs(limit: number): Promise<(StoredBlob & { tenantId: string; corruptAt: Date })[]>;
  /**
   * Blobs no live artifact references, recorded before `cutoff`, with no
   * artifact deleted after it (the grace period) and not held (holdBlob).
   */
  findReclaimableBlobs(cutoff: Date, limit: number): Promise<(StoredBlob & { tenantId: string })[]>;
  /**
   * Removes one blob row if it is still unreferenced by any live artifact
   * and not held, detaching soft-deleted artifacts from it and releasing its
   * storage key (see InFlightUploads), in one transaction. Returns
   * false when an artifact took a reference meanwhile (the race with a
   * deduplicating upload): the foreign key makes that check race-free.
   */
  reclaimBlob(tenantId: string, digest: string, cutoff: Date): Promise<boolean>;
  /** Which of these storage keys a blob row, an upload in flight or an unfinished upload session holds. */
  knownStorageKeys(keys: readonly string[]): Promise<Set<string>>;
  /** Whether a blob row names this storage key. */
  blobHoldsKey(storageKey: string): Promise<boolean>;
}
