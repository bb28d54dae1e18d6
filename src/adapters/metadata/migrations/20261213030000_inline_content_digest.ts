import { sql, type Kysely } from "kysely";

/**
 * artifacts_tenant_inline_content: finds a tenant's live inline content by
 * digest (FindMissingContent, Upload with content_by_digest) without
 * scanning its artifacts. Blob content is found through the blobs table's
 * primary key.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`create index artifacts_tenant_inline_content on artifacts (tenant_id, blake3) where storage = 'inline' and deleted_at is null`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop index if exists artifacts_tenant_inline_content`.execute(db);
}
