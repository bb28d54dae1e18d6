import type { Kysely } from "kysely";

/**
 * inline_bytes: the content of a small Upload (at most
 * ARTIFACTD_UPLOAD_INLINE_MAX_BYTES) kept in the artifact's row, storage
 * 'inline', so that storing it costs one statement instead of a blob-store
 * write plus the blob's bookkeeping. SaveInline's text and JSON stay in
 * inline_text / inline_json.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable("artifacts").addColumn("inline_bytes", "bytea").execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable("artifacts").dropColumn("inline_bytes").execute();
}
