/**
 * One tenant's content-addressed index: the blob stored for each digest it
 * holds. Content is deduplicated per tenant, never across tenants, so every
 * method takes the tenant. Garbage collection sees the same rows across
 * every tenant through ./all-tenants-blob-index.ts.
 */
export interface TenantBlobIndex {
  findBlob(tenantId: string, digest: string): Promise<StoredBlob | undefined>;
  /** Marks a blob whose stored bytes no longer match its digest: later reads fail at once. */
  markBlobCorrupt(tenantId: string, digest: string): Promise<void>;
  /**
   * Holds a recorded blob against garbage collection for `holdMs` from now
   * (a lease, renewed by calling again): for an upload that will reference
   * the content without storing it again. False when no such blob is
   * recorded (any more).
   */
  holdBlob(tenantId: string, digest: string, holdMs: number): Promise<boolean>;
}

export interface StoredBlob {
  readonly digest: string;
  readonly sizeBytes: number;
  readonly storageKey: string;
  /** A read found the stored bytes no longer match the digest (see markBlobCorrupt). */
  readonly corrupt?: boolean;
}
