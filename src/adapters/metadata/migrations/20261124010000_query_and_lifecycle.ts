import { sql, type Kysely } from "kysely";

/**
 * Search, query indexes and the life cycle:
 * - `search`: a stored tsvector over name and title (weight A) and label keys
 *   and values (weight B), for ranked full-text search;
 * - an index per provenance scope level, for the filters on each;
 * - name prefix through `text_pattern_ops` (LIKE 'prefix%' with the prefix
 *   escaped, so % and _ stay literal);
 * - garbage collection may reclaim the blob of a soft-deleted artifact: the
 *   record keeps its digest for audit, and blob_digest becomes NULL.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`alter table artifacts add column search tsvector generated always as (
      setweight(to_tsvector('english', name || ' ' || title), 'A') ||
      setweight(jsonb_to_tsvector('english', labels, '["key", "string"]'), 'B')
    ) stored`.execute(db);
  await sql`create index artifacts_search on artifacts using gin (search)`.execute(db);

  for (const field of ["graph_id", "node_id", "tool_name", "workflow_id", "template_id", "session_id", "user_id", "client_id", "app_id"]) {
    await sql`create index ${sql.raw(`artifacts_tenant_${field}`)} on artifacts (tenant_id, ${sql.ref(field)}, created_at desc) where ${sql.ref(field)} is not null`.execute(
      db,
    );
  }
  await sql`drop index artifacts_tenant_run`.execute(db);
  await sql`create index artifacts_tenant_run_id on artifacts (tenant_id, run_id, created_at desc) where run_id is not null`.execute(db);
  await sql`create index artifacts_tenant_name on artifacts (tenant_id, name text_pattern_ops)`.execute(db);
  await sql`create index artifacts_tenant_status on artifacts (tenant_id, status, created_at desc)`.execute(db);
  await sql`create index artifacts_tenant_pinned on artifacts (tenant_id, created_at desc) where pinned`.execute(db);
  await sql`create index artifacts_deleted on artifacts (deleted_at) where deleted_at is not null`.execute(db);

  await sql`alter table artifacts drop constraint artifacts_storage_content`.execute(db);
  await sql`alter table artifacts add constraint artifacts_storage_content check (
      (storage = 'inline' and blob_digest is null) or
      (storage = 'blob' and (blob_digest is not null or deleted_at is not null))
    )`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`alter table artifacts drop constraint artifacts_storage_content`.execute(db);
  await sql`alter table artifacts add constraint artifacts_storage_content check ((storage = 'blob') = (blob_digest is not null))`.execute(db);
  for (const index of ["artifacts_deleted", "artifacts_tenant_pinned", "artifacts_tenant_status", "artifacts_tenant_name", "artifacts_tenant_run_id"]) {
    await sql`drop index ${sql.raw(index)}`.execute(db);
  }
  for (const field of ["graph_id", "node_id", "tool_name", "workflow_id", "template_id", "session_id", "user_id", "client_id", "app_id"]) {
    await sql`drop index ${sql.raw(`artifacts_tenant_${field}`)}`.execute(db);
  }
  await sql`create index artifacts_tenant_run on artifacts (tenant_id, run_id) where run_id is not null`.execute(db);
  await sql`alter table artifacts drop column search`.execute(db);
}
