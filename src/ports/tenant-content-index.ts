/**
 * What content one tenant already has, by digest and size, whatever holds
 * it: a blob (./tenant-blob-index.ts) or the row of a live artifact kept
 * inline. Lets a client send only the contents the server lacks
 * (FindMissingContent) and record the rest by digest (Upload with
 * content_by_digest). Never looks at another tenant's content.
 */
export interface TenantContentIndex {
  /**
   * The contents of `contents` the tenant has neither as a blob not marked
   * corrupt nor inline in an artifact that is not deleted, in the order
   * asked (a content asked twice is answered twice). One query.
   */
  findMissingContent(tenantId: string, contents: readonly ContentDigest[]): Promise<ContentDigest[]>;
  /** The bytes of a content kept inline in one of the tenant's artifacts that is not deleted; undefined when none holds it. */
  findInlineContent(tenantId: string, content: ContentDigest): Promise<Uint8Array | undefined>;
}

export interface ContentDigest {
  /** BLAKE3-256, 64 lowercase hex characters. */
  readonly blake3: string;
  readonly sizeBytes: number;
}
