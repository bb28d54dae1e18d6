import type { Kysely } from "kysely";

/**
 * blobs.held_until: a lease an upload takes on content it will reference but
 * does not store again (declared digest the tenant already has). Garbage
 * collection leaves a held blob alone, whatever its grace period.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable("blobs").addColumn("held_until", "timestamptz").execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable("blobs").dropColumn("held_until").execute();
}
