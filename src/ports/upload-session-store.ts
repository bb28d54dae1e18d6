import type { ArtifactSpec } from "../artifact.ts";

/**
 * Where upload sessions are kept: in the metadata database, so every replica
 * sees the same sessions. Reached as MetadataStore.uploadSessions.
 */
/**
 * How long a streaming writer's hold on a session lasts without renewal: a
 * writer whose server died frees its session this long after, for the client
 * to resume through another replica.
 */
export const WRITER_LEASE_MS = 30_000;

export interface UploadSessionStore {
  /**
   * Records a new session, ending the in-flight record of its storage key in
   * the same transaction. With an idempotency key already used by a live
   * session of the tenant, returns that one instead (`created` false) and the
   * caller gives up what it prepared.
   */
  create(session: NewUploadSession): Promise<{ session: UploadSessionRecord; created: boolean }>;
  findByIdempotencyKey(tenantId: string, key: string): Promise<UploadSessionRecord | undefined>;
  /** A session of the tenant, with its parts; expired ones included (the caller decides). */
  get(tenantId: string, id: string): Promise<UploadSessionRecord | undefined>;
  /**
   * Records (or replaces) a stored part, if the session is still open and not
   * assembled, and the part comes from its writer: `writerId` for the
   * streaming writer holding the session, undefined for a part call, which
   * only lands while no live writer holds it.
   */
  recordPart(id: string, part: SessionPart, writerId: string | undefined): Promise<"recorded" | "closed" | "held">;
  /**
   * Binds the session's one streaming writer (a lease renewed with
   * renewWriter, lapsed after WRITER_LEASE_MS without). "held": another
   * writer's lease is live.
   */
  acquireWriter(id: string, writerId: string): Promise<"acquired" | "closed" | "held">;
  renewWriter(id: string, writerId: string): Promise<boolean>;
  releaseWriter(id: string, writerId: string): Promise<void>;
  /**
   * Claims an open session for completing (compare-and-set, one statement).
   * A claim not renewed for `staleMs` (its replica died) may be taken over.
   * Returns the session as it now is, or undefined if it does not exist.
   */
  beginCompleting(tenantId: string, id: string, claim: string, staleMs: number): Promise<{ session: UploadSessionRecord; acquired: boolean } | undefined>;
  /** Renews a claim; false when it was lost. */
  renewClaim(id: string, claim: string): Promise<boolean>;
  /** Records that the parts were assembled into the object at the storage key (a retry records it without assembling). */
  markAssembled(id: string, claim: string, size: number, digest: string): Promise<void>;
  /** completing → open, after a failure that leaves the session usable; the claim is given up. */
  reopen(id: string, claim: string): Promise<void>;
  /**
   * Abandons a session in one transaction: deletes it if `allowed` includes
   * its state (and, when given, the claim is ours), and releases its storage
   * key to garbage collection unless it was completed (then a blob row names
   * it). Returns the deleted session, or the state that kept it.
   */
  abandon(
    tenantId: string,
    id: string,
    allowed: { readonly states: readonly UploadSessionState[]; readonly claim?: string },
  ): Promise<{ deleted: UploadSessionRecord } | { kept: UploadSessionState | "missing" }>;
  /** Sessions whose expires_at has passed, oldest first. */
  listExpired(now: Date, limit: number): Promise<UploadSessionRecord[]>;
  /** Sessions of every tenant neither completed nor aborted, and not expired at `now`: what operators watch (a metric). */
  countOpen(now: Date): Promise<number>;
}

export interface SessionPart {
  readonly partNumber: number;
  readonly sizeBytes: number;
  readonly etag: string;
}

export type UploadSessionState = "open" | "completing" | "completed";

export interface NewUploadSession {
  readonly id: string;
  readonly tenantId: string;
  readonly idempotencyKey: string | undefined;
  readonly spec: ArtifactSpec;
  readonly expectedSize: number | undefined;
  readonly expectedBlake3: string | undefined;
  readonly partSize: number;
  readonly storageKey: string;
  readonly multipartId: string;
  readonly createdBy: string;
  readonly expiresAt: Date;
}

export interface UploadSessionRecord extends NewUploadSession {
  readonly state: UploadSessionState;
  readonly artifactId: string | undefined;
  /** Set once the parts were assembled into the object at storageKey. */
  readonly assembled: { readonly size: number; readonly digest: string } | undefined;
  /** The streaming writer holding the session, while its lease is live. */
  readonly writerId: string | undefined;
  readonly createdAt: Date;
  /** Ascending by part number. */
  readonly parts: readonly SessionPart[];
}
