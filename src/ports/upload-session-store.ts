import type { ArtifactSpec } from "../artifact.ts";

/**
 * Where upload sessions are kept: in the metadata database, so every replica
 * sees the same sessions. Reached as MetadataStore.uploadSessions.
 */
export interface UploadSessionStore {
  /**
   * Records a new session. With an idempotency key already used by a live
   * session of the tenant, returns that one instead (`created` false) and
   * the caller drops what it prepared.
   */
  create(session: NewUploadSession): Promise<{ session: UploadSessionRecord; created: boolean }>;
  findByIdempotencyKey(tenantId: string, key: string): Promise<UploadSessionRecord | undefined>;
  /** A session of the tenant, with its parts; expired ones included (the caller decides). */
  get(tenantId: string, id: string): Promise<UploadSessionRecord | undefined>;
  /** Records (or replaces) a stored part; false if the session is no longer open. */
  recordPart(id: string, part: SessionPart): Promise<boolean>;
  /**
   * Moves an open session to completing. A session stuck completing for
   * longer than `staleBefore` (a crashed replica) may be taken over.
   * Returns the session as it now is, or undefined if it does not exist.
   */
  beginCompleting(tenantId: string, id: string, staleBefore: Date): Promise<{ session: UploadSessionRecord; acquired: boolean } | undefined>;
  /** completing → open, after a failure that leaves the parts usable. */
  reopen(id: string): Promise<void>;
  markCompleted(id: string, artifactId: string): Promise<void>;
  delete(id: string): Promise<void>;
  /** Sessions whose expires_at has passed, oldest first. */
  listExpired(now: Date, limit: number): Promise<UploadSessionRecord[]>;
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
  readonly createdAt: Date;
  /** Ascending by part number. */
  readonly parts: readonly SessionPart[];
}
