import { sql, type Kysely, type Selectable } from "kysely";
import type { TenantQuotaOverrides, TenantQuotaStore } from "../../ports/tenant-quota-store.ts";
import type { Database, TenantQuotaTable } from "./schema.ts";

/** Override names ⇄ columns of tenant_quotas (see its migration): NULL keeps the default. */
const COLUMNS = {
  storedBytes: "stored_bytes",
  concurrentUploads: "concurrent_uploads",
  concurrentDownloads: "concurrent_downloads",
  openSessions: "open_sessions",
  callsPerSecond: "calls_per_second",
  burst: "burst",
} as const satisfies Record<keyof TenantQuotaOverrides, keyof TenantQuotaTable>;

function toOverrides(row: Selectable<TenantQuotaTable> | undefined): TenantQuotaOverrides {
  const overrides: Record<string, number> = {};
  if (!row) return overrides;
  for (const [name, column] of Object.entries(COLUMNS)) {
    const value = row[column];
    if (value !== null) overrides[name] = Number(value);
  }
  return overrides;
}

/**
 * Quota overrides and usage in the metadata database. Usage is computed
 * from the rows that hold content, not kept in a counter: nothing can drift,
 * and the sums ride on the tenant's primary-key and index ranges.
 */
export function createKyselyTenantQuotas(db: Kysely<Database>): TenantQuotaStore {
  const read = (tenantId: string) => db.selectFrom("tenant_quotas").selectAll().where("tenant_id", "=", tenantId).executeTakeFirst();
  return {
    async get(tenantId) {
      return toOverrides(await read(tenantId));
    },

    async set(tenantId, changes) {
      const values: Record<string, number | null> = {};
      for (const [name, column] of Object.entries(COLUMNS)) {
        const value = changes[name as keyof TenantQuotaOverrides];
        if (value !== undefined) values[column] = value;
      }
      const row = await db
        .insertInto("tenant_quotas")
        .values({ tenant_id: tenantId, ...values })
        .onConflict((oc) => oc.column("tenant_id").doUpdateSet({ ...values, updated_at: sql`now()` }))
        .returningAll()
        .executeTakeFirstOrThrow();
      return toOverrides(row);
    },

    async clear(tenantId) {
      const deleted = await db.deleteFrom("tenant_quotas").where("tenant_id", "=", tenantId).executeTakeFirst();
      return deleted.numDeletedRows > 0n;
    },

    async usage(tenantId) {
      const row = await db
        .selectNoFrom((eb) => [
          eb.selectFrom("blobs").select(sql<string>`coalesce(sum(size_bytes), 0)`.as("n")).where("tenant_id", "=", tenantId).as("blob_bytes"),
          eb
            .selectFrom("artifacts")
            .select(sql<string>`coalesce(sum(size_bytes), 0)`.as("n"))
            .where("tenant_id", "=", tenantId)
            .where("storage", "=", "inline")
            .where("deleted_at", "is", null)
            .as("inline_bytes"),
          eb
            .selectFrom("upload_session_parts as p")
            .innerJoin("upload_sessions as s", "s.id", "p.session_id")
            .select(sql<string>`coalesce(sum(p.size_bytes), 0)`.as("n"))
            .where("s.tenant_id", "=", tenantId)
            .where("s.state", "in", ["open", "completing"])
            .as("part_bytes"),
          eb
            .selectFrom("upload_sessions")
            .select(sql<string>`count(*)`.as("n"))
            .where("tenant_id", "=", tenantId)
            .where("state", "in", ["open", "completing"])
            .where("expires_at", ">", sql<Date>`now()`)
            .as("open_sessions"),
        ])
        .executeTakeFirstOrThrow();
      return {
        storedBytes: Number(row.blob_bytes) + Number(row.inline_bytes) + Number(row.part_bytes),
        openSessions: Number(row.open_sessions),
      };
    },
  };
}
