import { sql, type Kysely } from "kysely";

/**
 * api_tokens.scope (read-only, read-write, admin) and expires_at. Tokens made
 * before scopes existed could do everything, so they become admin; new tokens
 * always name their scope (the column keeps no default, so none is implied).
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .alterTable("api_tokens")
    .addColumn("scope", "text", (c) => c.notNull().defaultTo("admin").check(sql`scope in ('read-only', 'read-write', 'admin')`))
    .addColumn("expires_at", "timestamptz")
    .execute();
  await sql`alter table api_tokens alter column scope drop default`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable("api_tokens").dropColumn("scope").dropColumn("expires_at").execute();
}
