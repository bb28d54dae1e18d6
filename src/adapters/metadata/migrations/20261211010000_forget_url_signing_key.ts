import type { Kysely } from "kysely";

/**
 * Deletes the download-link signing key the server used to generate and keep
 * in server_settings: whoever could read the database could forge links with
 * it. Keys now come from configuration or a private file on the server
 * (adapters/keys/url-signing-key-file.ts), and nothing reads this row any
 * more; links signed with it stop working. There is no way down: the key is
 * gone on purpose.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.deleteFrom("server_settings").where("name", "=", "url_signing_key").execute();
}

export async function down(): Promise<void> {}
