import { canListBlobs, hasSessions, type BlobStore } from "../ports/blob-store.ts";
import type { AllTenantsBlobIndex } from "../ports/all-tenants-blob-index.ts";
import type { ArtifactEventLog } from "../ports/artifact-event-log.ts";
import type { ArtifactExpiry } from "../ports/artifact-records.ts";
import type { InFlightUploads } from "../ports/in-flight-uploads.ts";
import type { UploadSessionStore } from "../ports/upload-session-store.ts";
import { expireUploadSessions } from "./upload-sessions.ts";

export interface MaintenanceDeps {
  /** Every tenant at once: what expires, what is reclaimable, and the storage keys still held. */
  readonly metadata: ArtifactExpiry &
    AllTenantsBlobIndex & { readonly uploadsInFlight: InFlightUploads; readonly eventLog: ArtifactEventLog; readonly uploadSessions: UploadSessionStore };
  readonly blobs: BlobStore;
  /** Uploads in flight whose heartbeat is older than this are reclaimed. */
  readonly uploadStaleMs: number;
  readonly log?: (message: string, error?: unknown) => void;
}

export interface MaintenancePassOptions {
  /** Content unreferenced (or deleted) for less than this is kept (ARTIFACTD_GC_GRACE_MS, or `gc --grace-seconds`). */
  readonly graceMs: number;
  /** Artifact events older than this are pruned (ARTIFACTD_EVENT_RETENTION_MS). */
  readonly eventRetentionMs: number;
  /** Report what garbage collection would reclaim and change nothing: no expiry and no pruning either. Default false. */
  readonly dryRun?: boolean;
  /** Stops the pass at its next step (the server is stopping); every step leaves the stores consistent. */
  readonly signal?: AbortSignal;
}

export interface MaintenanceReport {
  /** Artifacts soft-deleted because their expires_at passed (0 in a dry run). */
  readonly expired: number;
  /** Upload sessions past their expiry, dropped with their parts (0 in a dry run). */
  readonly expiredSessions: number;
  readonly garbage: GarbageReport;
  /** Artifact events pruned (0 in a dry run). */
  readonly prunedEvents: number;
}

/**
 * One maintenance pass, the same whoever runs it: the server's timer
 * (ARTIFACTD_MAINTENANCE_INTERVAL_MS) and `artifactd gc`. Expiry first, so
 * what it frees is collected in the same pass; then expired upload sessions,
 * garbage collection and event pruning.
 *
 * Watchers hear the pass the same way whichever process ran it: expiry
 * soft-deletes through the metadata store, which appends each DELETED event
 * to the event log in the same transaction (and, on Postgres, notifies
 * every replica's event feed); nothing here talks to a feed directly.
 */
export async function runMaintenancePass(deps: MaintenanceDeps, options: MaintenancePassOptions): Promise<MaintenanceReport> {
  const { dryRun = false, signal } = options;
  const checkCancelled = () => {
    if (signal?.aborted) throw signal.reason;
  };
  const expired = dryRun ? 0 : await expireArtifacts(deps);
  checkCancelled();
  const expiredSessions = dryRun ? 0 : await expireUploadSessions(deps);
  checkCancelled();
  const garbage = await collectGarbage(deps, { graceMs: options.graceMs, dryRun, ...(signal ? { signal } : {}) });
  checkCancelled();
  // Where the server's maintenance timer is off, `artifactd gc` is what keeps the event log from growing without end.
  const prunedEvents = dryRun ? 0 : await pruneArtifactEvents(deps, options.eventRetentionMs);
  return { expired, expiredSessions, garbage, prunedEvents };
}

/** Soft-deletes unpinned artifacts whose expires_at has passed (the store logs their deleted events). */
export async function expireArtifacts(deps: Pick<MaintenanceDeps, "metadata">, now = new Date()): Promise<number> {
  let total = 0;
  for (;;) {
    const expired = await deps.metadata.expireArtifacts(now, 500);
    total += expired.length;
    if (expired.length < 500) return total;
  }
}

/**
 * Drops artifact events older than the retention. A watcher whose resume
 * cursor is older than what is kept is then answered OUT_OF_RANGE, and lists
 * what changed instead.
 */
export async function pruneArtifactEvents(deps: Pick<MaintenanceDeps, "metadata">, retentionMs: number, now = new Date()): Promise<number> {
  return deps.metadata.eventLog.prune(new Date(now.getTime() - retentionMs));
}

export const MIN_ORPHAN_GRACE_MS = 25 * 3_600_000;

export interface GarbageReport {
  /** Blob rows (and their stored content) reclaimed, or that would be in a dry run. */
  readonly blobs: number;
  readonly bytes: number;
  /** Stored objects no blob row points at (left by a crash), older than the grace period. */
  readonly orphans: number;
  readonly orphanBytes: number;
  /** Uploads started and never finished that no upload session holds (a crash mid-upload), aborted with their parts. */
  readonly abandonedUploads: number;
  /**
   * Storage keys whose content was discarded: released (failed uploads, dropped sessions, blobs reclaimed
   * above) or of uploads whose heartbeat went stale (their server died).
   */
  readonly releasedKeys: number;
  /** Blobs whose stored bytes a read found no longer match their digest (first 100). */
  readonly corruptBlobs: readonly { readonly tenantId: string; readonly digest: string; readonly storageKey: string; readonly corruptAt: Date }[];
  readonly dryRun: boolean;
}

/**
 * Garbage collection: reclaims content no live artifact needs.
 *
 * 1. Blobs that no live, pinned or recently deleted artifact references and
 *    that are older than the grace period. Each is removed from the index in
 *    its own transaction, which releases its storage key; the next pass
 *    removes the object (and a later collection, should that fail). The schema's
 *    foreign key makes this safe against a deduplicating upload that takes
 *    a reference at the same moment: the delete fails and the blob stays
 *    (see AllTenantsBlobIndex.reclaimBlob).
 * 2. Uploads in flight (uploads_in_flight) that were released, or whose
 *    heartbeat is older than `uploadStaleMs`: their server died, or their
 *    recording failed. Each key is claimed first (no upload can record or
 *    renew it from then on), then whatever is stored under it — object,
 *    unfinished multipart upload — is discarded by the key itself (never by
 *    a listing of the whole bucket, which MinIO answers incompletely after a
 *    restart), then its record dropped. A key taken from a stale heartbeat
 *    keeps its record, and is discarded again on each pass, until the claim
 *    is itself `uploadStaleMs` old: an owner that was only slow (a database
 *    outage) may store under it until it learns it lost the key. A live
 *    upload renews its heartbeat, so it is never touched, whatever its age.
 * 3. Stored objects that no blob row, upload in flight or unfinished upload
 *    session names: what no record has ever known (a crash between the
 *    store's start of an upload and its first record, or content from an
 *    older version).
 *    A streaming upload stores its content a moment before recording it, and
 *    S3 stamps a multipart object with the time the upload *began*, so such
 *    objects are only touched when older than `orphanGraceMs`: by default at
 *    least 25 hours whatever `graceMs` is, longer than a streaming upload of
 *    the 5 TiB S3 maximum takes at 60 MB/s, and past MinIO's own 24 h
 *    clean-up of the parts of uploads that never finished.
 * 4. Uploads started and never finished (multipart uploads, session
 *    folders) whose key no record holds, older than the same grace. MinIO
 *    drops such parts after 24 h by itself; S3 keeps them, billed, until
 *    they are aborted. The store's listing must find them after its server
 *    restarted too (see BlobLister.listUnfinishedUploads): MinIO's own
 *    bucket-wide listing forgets them then, so the S3 store finds them by
 *    the keys it journaled.
 *
 * Several replicas may collect at once: only one wins each blob row.
 */
export async function collectGarbage(
  deps: MaintenanceDeps,
  options: { graceMs: number; dryRun: boolean; now?: Date; orphanGraceMs?: number; signal?: AbortSignal },
): Promise<GarbageReport> {
  const checkCancelled = () => {
    if (options.signal?.aborted) throw options.signal.reason;
  };
  const now = options.now ?? new Date();
  const cutoff = new Date(now.getTime() - options.graceMs);
  const orphanCutoff = new Date(now.getTime() - (options.orphanGraceMs ?? Math.max(options.graceMs, MIN_ORPHAN_GRACE_MS)));
  let blobs = 0;
  let bytes = 0;
  const seen = new Set<string>();
  // A dry run changes nothing, so one large batch sees every candidate; a
  // real run works in batches, each one's reclaimed rows gone from the next.
  const batchSize = options.dryRun ? 1_000_000 : 200;
  for (;;) {
    const candidates = (await deps.metadata.findReclaimableBlobs(cutoff, batchSize)).filter((c) => !seen.has(`${c.tenantId}/${c.digest}`));
    if (candidates.length === 0) break;
    for (const candidate of candidates) {
      checkCancelled();
      seen.add(`${candidate.tenantId}/${candidate.digest}`);
      if (!options.dryRun) {
        // Its storage key is released with the row: the next pass removes the object, by key.
        if (!(await deps.metadata.reclaimBlob(candidate.tenantId, candidate.digest, cutoff))) continue;
      }
      blobs++;
      bytes += candidate.sizeBytes;
    }
    if (options.dryRun) break;
  }

  let releasedKeys = 0;
  if (!options.dryRun) {
    for (;;) {
      checkCancelled();
      const claimed = await deps.metadata.uploadsInFlight.claimReclaimable(deps.uploadStaleMs, 100);
      let forgotten = 0;
      for (const { storageKey, settled } of claimed) {
        checkCancelled();
        try {
          // A blob row naming the key means the upload was recorded after all (its record is only a leftover).
          if (!(await deps.metadata.blobHoldsKey(storageKey))) await deps.blobs.discard(storageKey);
          releasedKeys++;
          // A key taken from a running owner is discarded again on later passes until nothing can store under it.
          if (settled) {
            await deps.metadata.uploadsInFlight.forget(storageKey);
            forgotten++;
          }
        } catch (error) {
          // Still claimed: the next pass tries again.
          deps.log?.(`reclaiming the storage of upload ${storageKey} failed`, error);
        }
      }
      if (claimed.length < 100 || forgotten === 0) break;
    }
  }

  let orphans = 0;
  let orphanBytes = 0;
  if (canListBlobs(deps.blobs)) {
    const store = deps.blobs;
    await sweepUnrecorded(
      deps.metadata,
      store.listBlobs(),
      (item) => item.lastModified < orphanCutoff,
      checkCancelled,
      async (item) => {
        if (!options.dryRun) await store.delete(item.key);
        orphans++;
        orphanBytes += item.size;
      },
    );
  }

  let abandonedUploads = 0;
  if (canListBlobs(deps.blobs) && hasSessions(deps.blobs)) {
    const store = deps.blobs;
    await sweepUnrecorded(
      deps.metadata,
      store.listUnfinishedUploads(),
      (upload) => upload.startedAt < orphanCutoff,
      checkCancelled,
      async (upload) => {
        if (!options.dryRun) await store.abortSession(upload.key, upload.ref);
        abandonedUploads++;
      },
    );
  }
  const corruptBlobs = (await deps.metadata.listCorruptBlobs(100)).map(({ tenantId, digest, storageKey, corruptAt }) => ({
    tenantId,
    digest,
    storageKey,
    corruptAt,
  }));
  return { blobs, bytes, orphans, orphanBytes, abandonedUploads, releasedKeys, corruptBlobs, dryRun: options.dryRun };
}

/**
 * Hands `sweep` each item of a store's listing that is old enough and whose
 * key no record holds (no blob row, upload in flight or unfinished session
 * names it): what only a crash, or an older version, can have left.
 */
async function sweepUnrecorded<T extends { readonly key: string }>(
  metadata: AllTenantsBlobIndex,
  listing: AsyncIterable<T>,
  isOld: (item: T) => boolean,
  checkCancelled: () => void,
  sweep: (item: T) => Promise<void>,
): Promise<void> {
  for await (const batch of batches(listing, isOld)) {
    checkCancelled();
    const recorded = await metadata.knownStorageKeys(batch.map((item) => item.key));
    for (const item of batch) if (!recorded.has(item.key)) await sweep(item);
  }
}

/** The items a listing yields that pass `keep`, in batches of up to 500: one metadata query per batch, not per item. */
async function* batches<T>(items: AsyncIterable<T>, keep: (item: T) => boolean): AsyncIterable<T[]> {
  let batch: T[] = [];
  for await (const item of items) {
    if (!keep(item)) continue;
    batch.push(item);
    if (batch.length >= 500) {
      yield batch;
      batch = [];
    }
  }
  if (batch.length > 0) yield batch;
}
