import type { ColumnType } from "kysely";
import type { TokenScope } from "../../artifact.ts";

/**
 * The metadata database as kysely sees it. Migrations in ./migrations create
 * it; this file must describe what they produce.
 *
 * Provenance columns hold NULL when unset (the API's empty string).
 * `size_bytes` is int8, which the drivers return as a string or bigint, so
 * rows are converted with Number() where they are read.
 */
export interface Database {
  api_tokens: ApiTokenTable;
  blobs: BlobTable;
  artifacts: ArtifactTable;
  artifact_inputs: ArtifactInputTable;
  upload_sessions: UploadSessionTable;
  upload_session_parts: UploadSessionPartTable;
  uploads_in_flight: UploadInFlightTable;
  server_settings: { name: string; value: string };
  artifact_events: ArtifactEventTable;
  artifact_events_pruned: { only_row: ColumnType<boolean, never, never>; through_seq: Int8 };
  tenant_quotas: TenantQuotaTable;
  artifact_usages: ArtifactUsageTable;
  artifact_version_counters: ArtifactVersionCounterTable;
  artifact_aliases: ArtifactAliasTable;
  artifact_alias_moves: ArtifactAliasMoveTable;
  artifact_metrics: ArtifactMetricTable;
}

/** One numeric metric of one artifact, written by a trigger on artifacts (migration 20261213010000_search_and_json). */
export interface ArtifactMetricTable {
  artifact_id: string;
  tenant_id: string;
  metric: string;
  value: number;
  created_at: Timestamp;
}

type Timestamp = ColumnType<Date, Date | string, Date | string>;
type Int8 = ColumnType<string | number | bigint, number | bigint, number | bigint>;

export interface ApiTokenTable {
  id: string;
  tenant_id: string;
  name: string;
  /** SHA-256 hex of the token: the token itself is never stored. */
  token_sha256: string;
  created_at: ColumnType<Date, never, never>;
  revoked_at: Timestamp | null;
  scope: TokenScope;
  /** After this the token is refused; null: it never expires. */
  expires_at: Timestamp | null;
}

/** One stored content per tenant and digest; artifacts point at it. */
export interface BlobTable {
  tenant_id: string;
  digest: string;
  size_bytes: Int8;
  storage_key: string;
  created_at: ColumnType<Date, never, never>;
  /** Until then garbage collection leaves the blob alone: an upload will reference it without storing it again. */
  held_until: ColumnType<Date | null, Date | null | undefined, Date | null>;
  /** When a read found the stored bytes no longer match the digest; set, reads fail at once. */
  corrupt_at: ColumnType<Date | null, Date | null | undefined, Date | null>;
}

export interface ArtifactTable {
  id: string;
  tenant_id: string;
  kind: string;
  artifact_class: string;
  name: string;
  title: string;
  mime_type: string;
  size_bytes: Int8;
  blake3: string;
  storage: "inline" | "blob";
  /** Equals blake3 for blob artifacts, NULL for inline ones; foreign key into blobs. */
  blob_digest: string | null;
  inline_text: string | null;
  inline_json: ColumnType<unknown, string | null, string | null> | null;
  /** The bytes of a small Upload kept inline (storage 'inline', inline_text NULL). */
  inline_bytes: Uint8Array | null;
  labels: ColumnType<Record<string, string>, string, string>;
  tags: string[];
  metrics: ColumnType<Record<string, number>, string, string>;
  pinned: boolean;
  status: "draft" | "review" | "approved" | "rejected";
  run_id: string | null;
  graph_id: string | null;
  node_id: string | null;
  tool_name: string | null;
  tool_version: string | null;
  workflow_id: string | null;
  template_id: string | null;
  session_id: string | null;
  user_id: string | null;
  client_id: string | null;
  app_id: string | null;
  parent_run_id: string | null;
  created_at: Timestamp;
  created_by: string;
  deleted_at: Timestamp | null;
  expires_at: Timestamp | null;
  /** '' for the tenant's default project (ArtifactSpec.project). */
  project: ColumnType<string, string | undefined, string>;
  /** Its number within (tenant, project, name); NULL when saved without versioning. */
  version: ColumnType<string | number | bigint | null, number | null | undefined, number | null>;
}

export interface ArtifactInputTable {
  tenant_id: string;
  artifact_id: string;
  input_id: string;
  role: string;
  position: number;
}

export interface UploadSessionTable {
  id: string;
  tenant_id: string;
  idempotency_key: string | null;
  /** The validated ArtifactSpec, as JSON (dates as ISO strings). */
  spec: ColumnType<unknown, string, string>;
  expected_size: Int8 | null;
  expected_blake3: string | null;
  part_size: Int8;
  storage_key: string;
  /** The blob store's multipart upload id. */
  multipart_id: string;
  state: "open" | "completing" | "completed";
  artifact_id: string | null;
  created_by: string;
  created_at: ColumnType<Date, never, never>;
  updated_at: ColumnType<Date, Date | undefined, Date>;
  expires_at: Timestamp;
  /** Token of the CompleteUploadSession holding the session (state completing); renewed through updated_at. */
  complete_claim: ColumnType<string | null, string | null | undefined, string | null>;
  /** Set once the parts were assembled into the object at storage_key: a retried complete records it without assembling again. */
  assembled_size: ColumnType<string | number | bigint | null, number | null | undefined, number | null>;
  assembled_blake3: ColumnType<string | null, string | null | undefined, string | null>;
  /** The one streaming writer bound to the session, while its lease is renewed. */
  writer_id: ColumnType<string | null, string | null | undefined, string | null>;
  writer_renewed_at: ColumnType<Date | null, Date | null | undefined, Date | null>;
}

/** Storage keys of uploads in flight (see the uploads_in_flight migration). */
export interface UploadInFlightTable {
  storage_key: string;
  tenant_id: string;
  started_at: ColumnType<Date, never, never>;
  heartbeat_at: ColumnType<Date, never, Date>;
  released_at: ColumnType<Date | null, Date | null | undefined, Date | null>;
  /** Set when garbage collection claimed the key from a stale heartbeat (its owner may still be running). */
  claimed_at: ColumnType<Date | null, never, Date | null>;
}

export interface UploadSessionPartTable {
  session_id: string;
  part_number: number;
  size_bytes: Int8;
  etag: string;
  uploaded_at: ColumnType<Date, never, Date>;
}

/** The event log Watch reads: one row per change, written in the change's transaction; seq order is commit order. */
export interface ArtifactEventTable {
  seq: ColumnType<string | number | bigint, never, never>;
  tenant_id: string;
  type: "created" | "status_changed" | "pinned" | "unpinned" | "deleted" | "alias_moved";
  artifact_id: string;
  /** The artifact's life-cycle fields as they were at the event. */
  status: "draft" | "review" | "approved" | "rejected";
  pinned: boolean;
  deleted_at: Timestamp | null;
  created_at: ColumnType<Date, never, never>;
  /** For alias_moved: the move (../events/kysely-artifact-event-log.ts, AliasMove as JSON). */
  alias_move: ColumnType<unknown, string | null | undefined, string | null>;
}

/** The last version number given out per versioned name (see the versions_and_aliases migration). */
export interface ArtifactVersionCounterTable {
  tenant_id: string;
  project: string;
  name: string;
  last_version: Int8;
}

/** Where each alias of a versioned name points now; `latest` is computed, never stored. */
export interface ArtifactAliasTable {
  tenant_id: string;
  project: string;
  name: string;
  alias: string;
  artifact_id: string;
  moved_by: string;
  moved_at: ColumnType<Date, Date | undefined, Date>;
}

/** Every set, move and removal of an alias, newest last by seq. */
export interface ArtifactAliasMoveTable {
  seq: ColumnType<string | number | bigint, never, never>;
  tenant_id: string;
  project: string;
  name: string;
  alias: string;
  from_artifact_id: string | null;
  to_artifact_id: string | null;
  from_version: Int8 | null;
  to_version: Int8 | null;
  moved_by: string;
  moved_at: ColumnType<Date, Date | undefined, never>;
  reason: string;
}

/** A tenant's quota overrides; NULL keeps the server's configured default (see the tenant_quotas migration). */
export interface TenantQuotaTable {
  tenant_id: string;
  stored_bytes: Int8 | null;
  concurrent_uploads: number | null;
  concurrent_downloads: number | null;
  open_sessions: number | null;
  calls_per_second: number | null;
  burst: number | null;
  updated_at: ColumnType<Date, never, Date>;
}

/** Runs that used an artifact without producing one (RecordUsage); one row per artifact, run and role. */
export interface ArtifactUsageTable {
  tenant_id: string;
  artifact_id: string;
  run_id: string;
  /** Empty when the use has no role. */
  role: string;
  recorded_at: ColumnType<Date, Date | string, never>;
  recorded_by: string;
}
