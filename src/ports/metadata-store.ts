import type { Artifact, ArtifactFilter, ArtifactInput, ArtifactSpec, InlineContent } from "../artifact.ts";

/**
 * The metadata store port: artifacts, blobs (the content-addressed index)
 * and API tokens. Every artifact read and write is scoped to a tenant.
 *
 * One adapter (adapters/metadata/kysely-metadata-store.ts) serves both
 * Postgres and the embedded PGlite through kysely dialects;
 * test/metadata-store.contract runs the same suite against both.
 */
export interface MetadataStore {
  findBlob(tenantId: string, digest: string): Promise<StoredBlob | undefined>;

  /**
   * Records a new artifact in one transaction, with its blob row when the
   * content is a blob. Inputs are checked inside the same transaction.
   *
   * If another upload recorded a blob with the same digest first, the
   * artifact points at that one and `blobCreated` is false: the caller then
   * owns the key it wrote and must delete it.
   */
  createArtifact(record: NewArtifact): Promise<{ artifact: Artifact; blobCreated: boolean; blob: StoredBlob | undefined }>;

  /** Fails with invalid_argument / not_found / failed_precondition on a bad input. */
  checkInputs(tenantId: string, inputs: readonly ArtifactInput[]): Promise<void>;

  getArtifact(tenantId: string, id: string, options?: { includeContent?: boolean }): Promise<Artifact | undefined>;

  listArtifacts(tenantId: string, filter: ArtifactFilter, page: PageRequest): Promise<Page<Artifact>>;

  /** Sets deleted_at; undefined when there is no such artifact. */
  softDeleteArtifact(tenantId: string, id: string, now: Date): Promise<Artifact | undefined>;

  createToken(token: { id: string; tenantId: string; name: string; sha256: string }): Promise<void>;
  findTokenBySha256(sha256: string): Promise<ApiToken | undefined>;
  listTokens(tenantId?: string): Promise<ApiToken[]>;
  revokeToken(id: string, now: Date): Promise<boolean>;

  ping(): Promise<void>;
  close(): Promise<void>;
}

export interface StoredBlob {
  readonly digest: string;
  readonly sizeBytes: number;
  readonly storageKey: string;
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
  readonly blob?: { readonly storageKey: string };
  readonly inline?: InlineContent;
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
}
