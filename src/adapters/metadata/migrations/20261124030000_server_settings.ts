import type { Kysely } from "kysely";

/** Settings every replica must share, such as the key that signs download URLs. */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable("server_settings")
    .addColumn("name", "text", (c) => c.primaryKey())
    .addColumn("value", "text", (c) => c.notNull())
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable("server_settings").execute();
}
