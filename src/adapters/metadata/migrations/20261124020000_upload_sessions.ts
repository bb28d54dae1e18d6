import { sql, type Kysely } from "kysely";

/**
 * Resumable upload sessions live in the database, with the blob store's
 * multipart upload id, so any replica can continue a session another one
 * started. Parts are recorded as they are stored.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable("upload_sessions")
    .addColumn("id", "text", (c) => c.primaryKey())
    .addColumn("tenant_id", "text", (c) => c.notNull())
    .addColumn("idempotency_key", "text")
    .addColumn("spec", "jsonb", (c) => c.notNull())
    .addColumn("expected_size", "int8")
    .addColumn("expected_blake3", "text")
    .addColumn("part_size", "int8", (c) => c.notNull())
    .addColumn("storage_key", "text", (c) => c.notNull())
    .addColumn("multipart_id", "text", (c) => c.notNull())
    .addColumn("state", "text", (c) => c.notNull().check(sql`state in ('open', 'completing', 'completed')`))
    .addColumn("artifact_id", "text", (c) => c.references("artifacts.id"))
    .addColumn("created_by", "text", (c) => c.notNull())
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn("updated_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn("expires_at", "timestamptz", (c) => c.notNull())
    .execute();
  await sql`create unique index upload_sessions_idempotency on upload_sessions (tenant_id, idempotency_key) where idempotency_key is not null`.execute(db);
  await sql`create index upload_sessions_expiry on upload_sessions (expires_at)`.execute(db);

  await db.schema
    .createTable("upload_session_parts")
    .addColumn("session_id", "text", (c) => c.notNull().references("upload_sessions.id").onDelete("cascade"))
    .addColumn("part_number", "int4", (c) => c.notNull())
    .addColumn("size_bytes", "int8", (c) => c.notNull())
    .addColumn("etag", "text", (c) => c.notNull())
    .addColumn("uploaded_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint("upload_session_parts_pkey", ["session_id", "part_number"])
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable("upload_session_parts").execute();
  await db.schema.dropTable("upload_sessions").execute();
}
