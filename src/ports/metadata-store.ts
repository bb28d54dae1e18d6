import type { AllTenantsBlobIndex } from "./all-tenants-blob-index.ts";
import type { ArtifactEventLog } from "./artifact-event-log.ts";
import type { ArtifactQueries } from "./artifact-queries.ts";
import type { ArtifactExpiry, ArtifactRecords } from "./artifact-records.ts";
import type { ArtifactVersions } from "./artifact-versions.ts";
import type { InFlightUploads } from "./in-flight-uploads.ts";
import type { TenantBlobIndex } from "./tenant-blob-index.ts";
import type { TenantQuotaStore } from "./tenant-quota-store.ts";
import type { TokenStore } from "./token-store.ts";
import type { UploadSessionStore } from "./upload-session-store.ts";

export type { AllTenantsBlobIndex } from "./all-tenants-blob-index.ts";
export type { ArtifactQueries, LineageLimits, LineageTooLarge, Page, PageRequest } from "./artifact-queries.ts";
export {
  BLOB_RECLAIMED,
  storageKeyOf,
  UPLOAD_HOLD_LOST,
  type ArtifactExpiry,
  type ArtifactRecords,
  type NewArtifact,
  type UploadHold,
} from "./artifact-records.ts";
export type { StoredBlob, TenantBlobIndex } from "./tenant-blob-index.ts";
export type { ApiToken, TokenStore } from "./token-store.ts";

/**
 * The metadata database as one object: every narrow port it serves, opened
 * and closed together. The composition root (app.ts) opens it and hands each
 * use case the port it needs; a use case names only that port in its types.
 *
 * One adapter (adapters/metadata/kysely-metadata-store.ts) serves both
 * Postgres and the embedded PGlite through kysely dialects, one file per
 * port; test/metadata-store.contract runs the same suite against both.
 */
export interface MetadataStore extends ArtifactQueries, ArtifactRecords, ArtifactExpiry, TenantBlobIndex, AllTenantsBlobIndex, TokenStore {
  /** Resumable upload sessions, in the same database. */
  readonly uploadSessions: UploadSessionStore;
  /** Storage keys of uploads in flight, in the same database. */
  readonly uploadsInFlight: InFlightUploads;
  /** The events of the artifact changes (ArtifactRecords, ArtifactExpiry), in commit order. */
  readonly eventLog: ArtifactEventLog;
  /** Per-tenant quota overrides and the usage they are checked against. */
  readonly tenantQuotas: TenantQuotaStore;
  /** Versions, aliases and the resolution of references by name. */
  readonly versions: ArtifactVersions;

  /** Fails when the database cannot be reached: the health check's probe. */
  ping(): Promise<void>;
  /**
   * The migrations this build knows that the database has not applied, by
   * name (none: the schema is what the code expects). Readiness asks it, so
   * a database restored from an older backup, or migrated down, takes the
   * server out of service instead of failing calls one by one.
   */
  missingMigrations(): Promise<string[]>;
  close(): Promise<void>;
}
