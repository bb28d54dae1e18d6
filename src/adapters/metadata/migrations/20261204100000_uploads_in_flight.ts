import { sql, type Kysely } from "kysely";

/**
 * Every storage object is accounted for.
 *
 * uploads_in_flight: a streaming upload records its storage key before its
 * first byte is stored and renews heartbeat_at while it runs. The transaction
 * that records the artifact removes the row; a failed upload releases it
 * (released_at). Garbage collection reclaims the storage of released rows and
 * of rows whose heartbeat went stale (their server died), after claiming the
 * row so that no upload can record or renew it any more. A row it claimed
 * from a stale heartbeat (claimed_at) is kept, and its key discarded again on
 * every pass, until the claim is itself stale: an upload that was only slow
 * to notice may still store under the key meanwhile.
 *
 * upload_sessions gains the claim of the CompleteUploadSession running on it
 * (complete_claim, renewed through updated_at), the result of an assembly
 * that finished (assembled_*, so a retried complete does not assemble again),
 * and the lease of its one streaming writer (writer_id, writer_renewed_at).
 *
 * blobs.corrupt_at: a download found the stored content no longer matches its
 * digest; later reads fail at once.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable("uploads_in_flight")
    .addColumn("storage_key", "text", (c) => c.primaryKey())
    .addColumn("tenant_id", "text", (c) => c.notNull())
    .addColumn("started_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn("heartbeat_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn("released_at", "timestamptz")
    .addColumn("claimed_at", "timestamptz")
    .execute();
  await sql`create index uploads_in_flight_heartbeat on uploads_in_flight (heartbeat_at)`.execute(db);

  await db.schema
    .alterTable("upload_sessions")
    .addColumn("complete_claim", "text")
    .addColumn("assembled_size", "int8")
    .addColumn("assembled_blake3", "text")
    .addColumn("writer_id", "text")
    .addColumn("writer_renewed_at", "timestamptz")
    .execute();
  await sql`create index upload_sessions_storage_key on upload_sessions (storage_key)`.execute(db);
  await sql`create index blobs_storage_key on blobs (storage_key)`.execute(db);

  await db.schema.alterTable("blobs").addColumn("corrupt_at", "timestamptz").execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable("blobs").dropColumn("corrupt_at").execute();
  await sql`drop index if exists blobs_storage_key`.execute(db);
  await sql`drop index if exists upload_sessions_storage_key`.execute(db);
  await db.schema
    .alterTable("upload_sessions")
    .dropColumn("complete_claim")
    .dropColumn("assembled_size")
    .dropColumn("assembled_blake3")
    .dropColumn("writer_id")
    .dropColumn("writer_renewed_at")
    .execute();
  await db.schema.dropTable("uploads_in_flight").execute();
}
