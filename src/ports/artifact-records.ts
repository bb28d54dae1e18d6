import type { Artifact, ArtifactInput, ArtifactSpec, ArtifactStatus, InlineContent } from "../artifact.ts";
import type { AliasMoveBy } from "../artifact-versions.ts";
import type { StoredBlob } from "./tenant-blob-index.ts";

/**
 * Changing one tenant's artifacts: every method takes the tenant and
 * touches nothing of any other.
 *
 * Each write appends its events to the artifact event log
 * (./artifact-event-log.ts) in the same transaction: a change is never
 * without its event, nor an event without its change.
 */
export interface ArtifactRecords {
  /**
   * Records a new artifact in one transaction, with its inputs checked in the
   * same transaction.
   *
   * `blob.storageKey`: content the caller stored; if another upload recorded
   * the same digest first, the artifact points at that blob and `blobCreated`
   * is false.
   * `blob.reuseExisting`: point at the blob already recorded for the digest;
   * fails with `aborted` if garbage collection reclaimed it meanwhile.
   * `hold`: what holds the upload's storage key until now; the same
   * transaction ends it (removes the in-flight record, or completes the
   * session), and releases the key to garbage collection when the artifact
   * does not use it. Fails with `aborted`, recording nothing, when the hold
   * was lost meanwhile (claimed by garbage collection, or the session by
   * another complete).
   */
  createArtifact(record: NewArtifact): Promise<{ artifact: Artifact; blobCreated: boolean; blob: StoredBlob | undefined }>;

  /** Fails with not_found / failed_precondition on a bad input. */
  checkInputs(tenantId: string, inputs: readonly ArtifactInput[]): Promise<void>;

  /**
   * Sets deleted_at; undefined when there is no such artifact. Refuses pinned
   * ones, and ones an alias (other than latest) points at unless
   * `aliases.force`: then those aliases are removed in the same transaction,
   * each removal recorded as moved by `aliases.by`.
   */
  softDeleteArtifact(tenantId: string, id: string, now: Date, aliases?: { readonly force: boolean; readonly by: AliasMoveBy }): Promise<Artifact | undefined>;
  setPinned(tenantId: string, id: string, pinned: boolean): Promise<Artifact | undefined>;
  /** Applies a status change allowed by STATUS_TRANSITIONS, atomically. */
  setStatus(tenantId: string, id: string, status: ArtifactStatus): Promise<Artifact | undefined>;
  /** Soft-deletes the unpinned, live artifacts of a run that no alias points at; returns them. */
  archiveRun(tenantId: string, runId: string, now: Date): Promise<Artifact[]>;
}

/**
 * The one artifact write that spans every tenant: expiry, run by
 * maintenance. Its events are recorded like those of ArtifactRecords.
 */
export interface ArtifactExpiry {
  /** Soft-deletes up to `limit` unpinned artifacts no alias points at whose expires_at has passed. */
  expireArtifacts(now: Date, limit: number): Promise<Artifact[]>;
}

export interface NewArtifact {
  readonly id: string;
  readonly tenantId: string;
  readonly spec: ArtifactSpec;
  readonly mimeType: string;
  readonly sizeBytes: number;
  readonly blake3: string;
  readonly createdAt: Date;
  readonly createdBy: string;
  /** Exactly one of the two. */
  readonly blob?: { readonly storageKey: string } | { readonly reuseExisting: true };
  readonly inline?: InlineContent;
  /** With `blob`: what held the upload's storage key (see createArtifact). */
  readonly hold?: UploadHold;
}

/**
 * createArtifact's `aborted` message when `blob.reuseExisting` finds the blob
 * gone (garbage collection took it meanwhile): the caller may store its own
 * copy instead.
 */
export const BLOB_RECLAIMED = "the stored content was reclaimed by garbage collection while this upload ran: retry the upload";

/**
 * createArtifact's `aborted` message when an in-flight hold was claimed by
 * garbage collection (its heartbeat lapsed): nothing was recorded, and nothing
 * can ever record the key, so the upload may discard what it stored.
 */
export const UPLOAD_HOLD_LOST =
  "this upload was taken for dead (its heartbeat lapsed, as when the database was unreachable for longer than ARTIFACTD_UPLOAD_STALE_MS) and its storage reclaimed: upload again";

/** What holds an upload's storage key until its artifact is recorded. */
export type UploadHold = { readonly inFlight: string } | { readonly session: { readonly id: string; readonly claim: string; readonly storageKey: string } };

/** The storage key a hold holds. */
export function storageKeyOf(hold: UploadHold): string {
  return "inFlight" in hold ? hold.inFlight : hold.session.storageKey;
}
