import type { Artifact, ArtifactFilter, ArtifactInput, ArtifactSpec, ArtifactStatus, InlineContent, Lineage, TokenScope } from "../artifact.ts";
import type { InFlightUploads } from "./in-flight-uploads.ts";
import type { ArtifactEventLog } from "./artifact-event-log.ts";
import type { UploadSessionStore } from "./upload-session-store.ts";
import type { TenantQuotaStore } from "./tenant-quota-store.ts";

/**
 * The metadata store port: artifacts, blobs (the content-addressed index)
 * and API tokens. Every artifact read and write is scoped to a tenant.
 *
 * One adapter (adapters/metadata/kysely-metadata-store.ts) serves both
 * Postgres and the embedded PGlite through kysely dialects;
 * test/metadata-store.contract runs the same suite against both.
 *
 * The writes that change an artifact (createArtifact, softDeleteArtifact,
 * setPinned, setStatus, archiveRun, expireArtifacts) append their events to
 * `eventLog` in the same transaction: a change is never without its event,
 * nor an event without its change.
 */
export interface MetadataStore {
  /** Resumable upload sessions, in the same database. */
  readonly uploadSessions: UploadSessionStore;
  /** Storage keys of uploads in flight, in the same database. */
  readonly uploadsInFlight: InFlightUploads;
  /** The events of the artifact changes below, in commit order. */
  readonly eventLog: ArtifactEventLog;
  /** Per-tenant quota overrides and the usage they are checked against. */
  readonly tenantQuotas: TenantQuotaStore;

  findBlob(tenantId: string, digest: string): Promise<StoredBlob | undefined>;
  /** Marks a blob whose stored bytes no longer match its digest: later reads fail at once. */
  markBlobCorrupt(tenantId: string, digest: string): Promise<void>;
  /** Blobs marked corrupt, for the operator (gc --dry-run lists them). */
  listCorruptBlobs(limit: number): Promise<(StoredBlob & { tenantId: string; corruptAt: Date })[]>;
  /**
   * Holds a recorded blob against garbage collection for `holdMs` from now
   * (a lease, renewed by calling again): for an upload that will reference
   * the content without storing it again. False when no such blob is
   * recorded (any more).
   */
  holdBlob(tenantId: string, digest: string, holdMs: number): Promise<boolean>;

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

  getArtifact(tenantId: string, id: string, options?: { includeContent?: boolean }): Promise<Artifact | undefined>;
  listArtifacts(tenantId: string, filter: ArtifactFilter, page: PageRequest): Promise<Page<Artifact>>;
  countArtifacts(tenantId: string, filter: ArtifactFilter): Promise<number>;
  /** Whether one artifact matches a filter: the same rules as listArtifacts, applied to one row. */
  matchesFilter(tenantId: string, id: string, filter: ArtifactFilter): Promise<boolean>;
  /** Ranked full-text search over name, title and labels. */
  searchArtifacts(tenantId: string, query: string, filter: ArtifactFilter, page: PageRequest): Promise<Page<Artifact>>;
  /** The artifact of `kind` with the highest (or lowest) `metric`; newest wins ties. */
  bestArtifact(tenantId: string, kind: string, metric: string, minimize: boolean, filter: ArtifactFilter): Promise<Artifact | undefined>;
  /**
   * Ancestors and descendants up to `depth` edges away; each artifact once.
   * Stops reading as soon as the walk holds more than `limits` allow, and
   * then says which limit and at what depth instead of answering.
   */
  lineage(tenantId: string, id: string, depth: number, limits: LineageLimits): Promise<Lineage | LineageTooLarge>;

  /** Sets deleted_at; undefined when there is no such artifact. Refuses pinned ones. */
  softDeleteArtifact(tenantId: string, id: string, now: Date): Promise<Artifact | undefined>;
  setPinned(tenantId: string, id: string, pinned: boolean): Promise<Artifact | undefined>;
  /** Applies a status change allowed by STATUS_TRANSITIONS, atomically. */
  setStatus(tenantId: string, id: string, status: ArtifactStatus): Promise<Artifact | undefined>;
  /** Soft-deletes the unpinned, live artifacts of a run; returns them. */
  archiveRun(tenantId: string, runId: string, now: Date): Promise<Artifact[]>;
  /** Soft-deletes up to `limit` unpinned artifacts whose expires_at has passed. */
  expireArtifacts(now: Date, limit: number): Promise<Artifact[]>;

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

  createToken(token: { id: string; tenantId: string; name: string; sha256: string; scope: TokenScope; expiresAt: Date | undefined }): Promise<void>;
  findTokenBySha256(sha256: string): Promise<ApiToken | undefined>;
  findTokenById(id: string): Promise<ApiToken | undefined>;
  listTokens(tenantId?: string): Promise<ApiToken[]>;
  revokeToken(id: string, now: Date): Promise<boolean>;

  ping(): Promise<void>;
  close(): Promise<void>;
}

export interface StoredBlob {
  readonly digest: string;
  readonly sizeBytes: number;
  readonly storageKey: string;
  /** A read found the stored bytes no longer match the digest (see markBlobCorrupt). */
  readonly corrupt?: boolean;
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
export type UploadHold =
  | { readonly inFlight: string }
  | { readonly session: { readonly id: string; readonly claim: string; readonly storageKey: string } };

/** The storage key a hold holds. */
export function storageKeyOf(hold: UploadHold): string {
  return "inFlight" in hold ? hold.inFlight : hold.session.storageKey;
}

export interface PageRequest {
  readonly pageSize: number;
  /** Opaque cursor from a previous page. */
  readonly pageToken: string;
}

export interface Page<T> {
  readonly items: T[];
  readonly nextPageToken: string;
}

export interface ApiToken {
  readonly id: string;
  readonly tenantId: string;
  readonly name: string;
  readonly createdAt: Date;
  readonly revokedAt: Date | undefined;
  readonly scope: TokenScope;
  readonly expiresAt: Date | undefined;
}

export interface LineageLimits {
  /** Ancestors and descendants together. */
  readonly maxArtifacts: number;
  /** Edges read, both directions together. */
  readonly maxEdges: number;
}

/** A lineage walk that went past its limits: which one, and the level (1 = direct inputs or outputs) where it did. */
export interface LineageTooLarge {
  readonly tooLarge: "artifacts" | "edges";
  readonly atDepth: number;
}
