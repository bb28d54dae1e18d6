/**
 * Storage keys of uploads in flight: every object an upload stores is known
 * to the metadata database before its first byte is stored, so garbage
 * collection can tell a live upload (of any age) from what a crash left.
 * Reached as MetadataStore.uploadsInFlight.
 *
 * A key is held from `begin` until the transaction that records the artifact
 * removes it (ArtifactRecords.createArtifact with `hold`), or until `release`.
 * Garbage collection `claim`s released keys and keys whose heartbeat went
 * stale; a claimed key can no longer be renewed or recorded, so reclaiming
 * its storage never races the upload's own commit.
 */
export interface InFlightUploads {
  /** Records a key before anything is stored under it. */
  begin(tenantId: string, storageKey: string): Promise<void>;
  /** Renews the heartbeat; false when the key was released or claimed (the upload must stop). */
  renew(storageKey: string): Promise<boolean>;
  /**
   * Gives a key up: whatever is stored under it is garbage, for the next
   * collection. Safe after an unknown commit outcome: if the artifact was
   * recorded, the row is gone and this changes nothing.
   */
  release(storageKey: string): Promise<void>;
  /**
   * Claims for reclaiming up to `limit` keys that were released, or whose
   * heartbeat is older than `staleMs` by the database's clock. Claimed keys
   * are returned again by later calls until `forget`. `settled`: nothing can
   * store under the key any more — its owner released it, or it was claimed
   * from a stale heartbeat longer than `staleMs` ago (an owner that was only
   * slow renews within that time, learns it lost the key, and stops). Until
   * then the collector discards without forgetting, so what such an owner
   * still stores is discarded on a later pass.
   */
  claimReclaimable(staleMs: number, limit: number): Promise<{ storageKey: string; tenantId: string; settled: boolean }[]>;
  /** Drops a claimed key's record once its storage is gone. */
  forget(storageKey: string): Promise<void>;
}
