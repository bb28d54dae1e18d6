import { sql, type Kysely } from "kysely";

// Written against Kysely<any>: a migration must keep working after the
// schema types move on.
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable("api_tokens")
    .addColumn("id", "text", (c) => c.primaryKey())
    .addColumn("tenant_id", "text", (c) => c.notNull())
    .addColumn("name", "text", (c) => c.notNull())
    .addColumn("token_sha256", "text", (c) => c.notNull().unique())
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn("revoked_at", "timestamptz")
    .execute();

  await db.schema
    .createTable("blobs")
    .addColumn("tenant_id", "text", (c) => c.notNull())
    .addColumn("digest", "text", (c) => c.notNull())
    .addColumn("size_bytes", "int8", (c) => c.notNull())
    .addColumn("storage_key", "text", (c) => c.notNull())
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint("blobs_pkey", ["tenant_id", "digest"])
    .execute();

  await db.schema
    .createTable("artifacts")
    .addColumn("id", "text", (c) => c.primaryKey())
    .addColumn("tenant_id", "text", (c) => c.notNull())
    .addColumn("kind", "text", (c) => c.notNull())
    .addColumn("artifact_class", "text", (c) => c.notNull().defaultTo(""))
    .addColumn("name", "text", (c) => c.notNull().defaultTo(""))
    .addColumn("title", "text", (c) => c.notNull().defaultTo(""))
    .addColumn("mime_type", "text", (c) => c.notNull())
    .addColumn("size_bytes", "int8", (c) => c.notNull())
    .addColumn("blake3", "text", (c) => c.notNull())
    .addColumn("storage", "text", (c) => c.notNull().check(sql`storage in ('inline', 'blob')`))
    .addColumn("blob_digest", "text")
    .addColumn("inline_text", "text")
    .addColumn("inline_json", "jsonb")
    .addColumn("labels", "jsonb", (c) => c.notNull().defaultTo(sql`'{}'::jsonb`))
    .addColumn("tags", sql`text[]`, (c) => c.notNull().defaultTo(sql`'{}'::text[]`))
    .addColumn("metrics", "jsonb", (c) => c.notNull().defaultTo(sql`'{}'::jsonb`))
    .addColumn("pinned", "boolean", (c) => c.notNull().defaultTo(false))
    .addColumn("status", "text", (c) => c.notNull().check(sql`status in ('draft', 'review', 'approved', 'rejected')`))
    .addColumn("run_id", "text")
    .addColumn("graph_id", "text")
    .addColumn("node_id", "text")
    .addColumn("tool_name", "text")
    .addColumn("tool_version", "text")
    .addColumn("workflow_id", "text")
    .addColumn("template_id", "text")
    .addColumn("session_id", "text")
    .addColumn("user_id", "text")
    .addColumn("client_id", "text")
    .addColumn("app_id", "text")
    .addColumn("created_at", "timestamptz", (c) => c.notNull())
    .addColumn("created_by", "text", (c) => c.notNull())
    .addColumn("deleted_at", "timestamptz")
    .addColumn("expires_at", "timestamptz")
    // A blob can never be removed while an artifact row points at it.
    .addForeignKeyConstraint("artifacts_blob_fkey", ["tenant_id", "blob_digest"], "blobs", ["tenant_id", "digest"], (c) => c.onDelete("restrict"))
    .addCheckConstraint("artifacts_storage_content", sql`(storage = 'blob') = (blob_digest is not null)`)
    .execute();

  // The default list order, newest first, per tenant; keyset pagination walks it.
  await sql`create index artifacts_tenant_created on artifacts (tenant_id, created_at desc, id desc)`.execute(db);
  await sql`create index artifacts_tenant_kind_created on artifacts (tenant_id, kind, created_at desc, id desc)`.execute(db);
  await sql`create index artifacts_tenant_run on artifacts (tenant_id, run_id) where run_id is not null`.execute(db);
  await sql`create index artifacts_tenant_blob on artifacts (tenant_id, blob_digest) where blob_digest is not null`.execute(db);
  // Containment (@>) on labels and tags, the shape of label and tag filters.
  await sql`create index artifacts_labels on artifacts using gin (labels jsonb_path_ops)`.execute(db);
  await sql`create index artifacts_tags on artifacts using gin (tags)`.execute(db);
  await sql`create index artifacts_metrics on artifacts using gin (metrics)`.execute(db);
  await sql`create index artifacts_expiry on artifacts (expires_at) where expires_at is not null and deleted_at is null`.execute(db);

  await db.schema
    .createTable("artifact_inputs")
    .addColumn("tenant_id", "text", (c) => c.notNull())
    .addColumn("artifact_id", "text", (c) => c.notNull().references("artifacts.id").onDelete("cascade"))
    .addColumn("input_id", "text", (c) => c.notNull().references("artifacts.id").onDelete("restrict"))
    .addColumn("role", "text", (c) => c.notNull().defaultTo(""))
    .addColumn("position", "int4", (c) => c.notNull())
    .addPrimaryKeyConstraint("artifact_inputs_pkey", ["artifact_id", "input_id"])
    .execute();
  await sql`create index artifact_inputs_input on artifact_inputs (tenant_id, input_id)`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable("artifact_inputs").execute();
  await db.schema.dropTable("artifacts").execute();
  await db.schema.dropTable("blobs").execute();
  await db.schema.dropTable("api_tokens").execute();
}
