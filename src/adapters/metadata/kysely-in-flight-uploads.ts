import { sql, type Kysely, type Transaction } from "kysely";
import type { InFlightUploads } from "../../ports/in-flight-uploads.ts";
import type { Database } from "./schema.ts";

/**
 * Records a storage key as released, whether or not an upload had it in
 * flight, inside the caller's transaction: whatever is stored under it is
 * garbage from that commit on, and collection discards it. For the stores
 * that drop what held a key (a reclaimed blob, an abandoned session, a copy
 * that lost a deduplication race).
 */
export async function releaseStorageKey(tx: Transaction<Database>, tenantId: string, storageKey: string): Promise<void> {
  await tx
    .insertInto("uploads_in_flight")
    .values({ storage_key: storageKey, tenant_id: tenantId, released_at: sql`now()` })
    .onConflict((oc) => oc.column("storage_key").doUpdateSet({ released_at: sql`coalesce(uploads_in_flight.released_at, now())` }))
    .execute();
}

/** Uploads in flight in the metadata database (see the uploads_in_flight migration). Times are the database's. */
export function createKyselyInFlightUploads(db: Kysely<Database>): InFlightUploads {
  return {
    async begin(tenantId, storageKey) {
      await db.insertInto("uploads_in_flight").values({ storage_key: storageKey, tenant_id: tenantId }).execute();
    },

    async renew(storageKey) {
      const renewed = await db
        .updateTable("uploads_in_flight")
        .set({ heartbeat_at: sql`now()` })
        .where("storage_key", "=", storageKey)
        .where("released_at", "is", null)
        .executeTakeFirst();
      return renewed.numUpdatedRows > 0n;
    },

    async release(storageKey) {
      await db
        .updateTable("uploads_in_flight")
        .set({ released_at: sql`now()` })
        .where("storage_key", "=", storageKey)
        .where("released_at", "is", null)
        .execute();
    },

    async claimReclaimable(staleMs, limit) {
      // Claiming sets released_at: from then on neither renew nor the recording transaction accepts the key.
      // claimed_at marks a key taken from an owner that may still be running.
      const stale = sql<Date>`now() - ${staleMs} * interval '1 millisecond'`;
      const rows = await db
        .updateTable("uploads_in_flight")
        .set({ released_at: sql`coalesce(released_at, now())`, claimed_at: sql`case when released_at is null then now() else claimed_at end` })
        .where("storage_key", "in", (eb) =>
          eb
            .selectFrom("uploads_in_flight")
            .select("storage_key")
            .where((w) => w.or([w("released_at", "is not", null), w("heartbeat_at", "<", stale)]))
            .orderBy("heartbeat_at")
            .limit(limit),
        )
        .returning(["storage_key", "tenant_id", sql<boolean>`coalesce(claimed_at < ${stale}, true)`.as("settled")])
        .execute();
      return rows.map((r) => ({ storageKey: r.storage_key, tenantId: r.tenant_id, settled: r.settled }));
    },

    async forget(storageKey) {
      await db.deleteFrom("uploads_in_flight").where("storage_key", "=", storageKey).where("released_at", "is not", null).execute();
    },
  };
}
