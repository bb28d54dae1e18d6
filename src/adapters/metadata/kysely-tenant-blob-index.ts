import { sql, type Kysely } from "kysely";
import type { TenantBlobIndex } from "../../ports/tenant-blob-index.ts";
import { toStoredBlob } from "./artifact-rows.ts";
import type { Database } from "./schema.ts";

/**
 * A tenant's blob index on kysely: the blobs table, one row per (tenant,
 * digest), which the schema keeps unique. Rows are written as artifacts are
 * recorded (./kysely-artifact-records.ts: the first of their content, or
 * fresh bytes healing a corrupt copy) and removed only by garbage collection
 * (./kysely-all-tenants-blob-index.ts); here they are read, marked corrupt,
 * or held for an upload about to reference one.
 */
export function createKyselyTenantBlobIndex(db: Kysely<Database>): TenantBlobIndex {
  return {
    async findBlob(tenantId, digest) {
      const row = await db
        .selectFrom("blobs")
        .select(["digest", "size_bytes", "storage_key", "corrupt_at"])
        .where("tenant_id", "=", tenantId)
        .where("digest", "=", digest)
        .executeTakeFirst();
      return row && { ...toStoredBlob(row), corrupt: row.corrupt_at !== null };
    },

    async markBlobCorrupt(tenantId, digest) {
      await db
        .updateTable("blobs")
        .set({ corrupt_at: sql`now()` })
        .where("tenant_id", "=", tenantId)
        .where("digest", "=", digest)
        .where("corrupt_at", "is", null)
        .execute();
    },

    async holdBlob(tenantId, digest, holdMs) {
      // The database's clock, the one garbage collection compares with: no skew between replicas.
      const until = sql<Date>`now() + ${holdMs} * interval '1 millisecond'`;
      const held = await db
        .updateTable("blobs")
        .set({ held_until: until })
        .where("tenant_id", "=", tenantId)
        .where("digest", "=", digest)
        // Content known to be corrupt is not worth referencing: the upload stores its own bytes.
        .where("corrupt_at", "is", null)
        // Never shortens a longer hold another upload has.
        .where((eb) => eb.or([eb("held_until", "is", null), eb("held_until", "<", until)]))
        .executeTakeFirst();
      if (held.numUpdatedRows > 0n) return true;
      return (
        (await db
          .selectFrom("blobs")
          .select("digest")
          .where("tenant_id", "=", tenantId)
          .where("digest", "=", digest)
          .where("corrupt_at", "is", null)
          .executeTakeFirst()) !== undefined
      );
    },
  };
}
