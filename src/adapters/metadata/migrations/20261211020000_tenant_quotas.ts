import { sql, type Kysely } from "kysely";

/**
 * tenant_quotas: one row per tenant whose quotas differ from the server's
 * configured defaults (ARTIFACTD_QUOTA_*). A NULL column keeps that quota's
 * default, so an operator overrides only what they mean to. Written by
 * `artifactd tenant set-quota`; servers read it through a short cache.
 *
 * The index on upload_sessions serves the open-sessions count per tenant
 * (and the sum of their parts for stored bytes).
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable("tenant_quotas")
    .addColumn("tenant_id", "text", (c) => c.primaryKey())
    .addColumn("stored_bytes", "int8", (c) => c.check(sql`stored_bytes >= 0`))
    .addColumn("concurrent_uploads", "int4", (c) => c.check(sql`concurrent_uploads >= 1`))
    .addColumn("concurrent_downloads", "int4", (c) => c.check(sql`concurrent_downloads >= 1`))
    .addColumn("open_sessions", "int4", (c) => c.check(sql`open_sessions >= 1`))
    .addColumn("calls_per_second", "int4", (c) => c.check(sql`calls_per_second >= 1`))
    .addColumn("burst", "int4", (c) => c.check(sql`burst >= 1`))
    .addColumn("updated_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await sql`create index upload_sessions_tenant_state on upload_sessions (tenant_id, state)`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop index if exists upload_sessions_tenant_state`.execute(db);
  await db.schema.dropTable("tenant_quotas").execute();
}
