import { sql, type Kysely } from "kysely";
import type { TenantContentIndex } from "../../ports/tenant-content-index.ts";
import type { Database } from "./schema.ts";

/**
 * A tenant's content by digest, on kysely: its blobs (not corrupt) and the
 * inline content of its live artifacts (the partial index
 * artifacts_tenant_inline_content, migration 20261213030000). Both sides of
 * the question are asked in one statement, the digests going as two arrays.
 */
export function createKyselyTenantContentIndex(db: Kysely<Database>): TenantContentIndex {
  return {
    async findMissingContent(tenantId, contents) {
      if (contents.length === 0) return [];
      const digests = contents.map((c) => c.blake3);
      const sizes = contents.map((c) => c.sizeBytes);
      const { rows } = await sql<{ position: string | number | bigint }>`
        select asked.position from unnest(${digests}::text[], ${sizes}::int8[]) with ordinality as asked(digest, size_bytes, position)
        where not exists (
            select 1 from blobs
            where blobs.tenant_id = ${tenantId} and blobs.digest = asked.digest and blobs.size_bytes = asked.size_bytes
              and blobs.corrupt_at is null)
          and not exists (
            select 1 from artifacts
            where artifacts.tenant_id = ${tenantId} and artifacts.blake3 = asked.digest and artifacts.size_bytes = asked.size_bytes
              and artifacts.storage = 'inline' and artifacts.deleted_at is null)
        order by asked.position`.execute(db);
      return rows.map((row) => contents[Number(row.position) - 1]!);
    },

    async findInlineContent(tenantId, content) {
      const row = await db
        .selectFrom("artifacts")
        .select(["inline_bytes", "inline_text"])
        .where("tenant_id", "=", tenantId)
        .where("blake3", "=", content.blake3)
        .where("size_bytes", "=", content.sizeBytes)
        .where("storage", "=", "inline")
        .where("deleted_at", "is", null)
        .limit(1)
        .executeTakeFirst();
      if (!row) return undefined;
      // SaveInline's text and JSON are kept byte for byte as their UTF-8 text: the bytes their digest covers.
      if (row.inline_bytes) return new Uint8Array(row.inline_bytes);
      return row.inline_text === null ? undefined : new Uint8Array(Buffer.from(row.inline_text, "utf8"));
    },
  };
}
