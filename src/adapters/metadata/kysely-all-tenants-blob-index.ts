import { sql, type Kysely } from "kysely";
import type { AllTenantsBlobIndex } from "../../ports/all-tenants-blob-index.ts";
import { toStoredBlob } from "./artifact-rows.ts";
import { releaseStorageKey } from "./kysely-in-flight-uploads.ts";
import type { Database } from "./schema.ts";

/** A blob an upload has taken a hold on (holdBlob), by the database's clock. */
const HELD = sql<boolean>`coalesce(held_until >= now(), false)`;

/**
 * The blob index across every tenant, for garbage collection, on kysely.
 * What makes reclaiming safe against a concurrent deduplicating upload is
 * the schema rather than this code: an artifact row cannot point at a
 * missing blob row (foreign key, ON DELETE RESTRICT), so a delete that
 * races a new reference fails instead of orphaning it.
 */
export function createKyselyAllTenantsBlobIndex(db: Kysely<Database>): AllTenantsBlobIndex {
  return {
    async listCorruptBlobs(limit) {
      const rows = await db
        .selectFrom("blobs")
        .select(["tenant_id", "digest", "size_bytes", "storage_key", "corrupt_at"])
        .where("corrupt_at", "is not", null)
        .orderBy("corrupt_at")
        .limit(limit)
        .execute();
      return rows.map((r) => ({ ...toStoredBlob(r), tenantId: r.tenant_id, corruptAt: new Date(r.corrupt_at!) }));
    },

    async findReclaimableBlobs(cutoff, limit) {
      const rows = await db
        .selectFrom("blobs as b")
        .select(["b.tenant_id", "b.digest", "b.size_bytes", "b.storage_key"])
        .where("b.created_at", "<", cutoff)
        .where(sql<boolean>`not ${HELD}`)
        .where((eb) =>
          eb.not(
            eb.exists(
              eb
                .selectFrom("artifacts as a")
                .select(sql`1`.as("one"))
                .whereRef("a.tenant_id", "=", "b.tenant_id")
                .whereRef("a.blob_digest", "=", "b.digest")
                .where((inner) => inner.or([inner("a.deleted_at", "is", null), inner("a.deleted_at", ">=", cutoff), inner("a.pinned", "=", true)])),
            ),
          ),
        )
        .orderBy("b.created_at")
        .limit(limit)
        .execute();
      return rows.map((r) => ({ tenantId: r.tenant_id, ...toStoredBlob(r) }));
    },

    async reclaimBlob(tenantId, digest, cutoff) {
      try {
        return await db.transaction().execute(async (tx) => {
          // Lock the row first: a hold taken before this wins (an upload is about to reference the content), and
          // one asked for after waits and then finds no blob, so that upload stores its bytes itself.
          const blob = await tx
            .selectFrom("blobs")
            .select([HELD.as("held"), "storage_key"])
            .where("tenant_id", "=", tenantId)
            .where("digest", "=", digest)
            .forUpdate()
            .executeTakeFirst();
          if (!blob || blob.held) return false;
          await tx
            .updateTable("artifacts")
            .set({ blob_digest: null })
            .where("tenant_id", "=", tenantId)
            .where("blob_digest", "=", digest)
            .where("deleted_at", "<", cutoff)
            .where("pinned", "=", false)
            .execute();
          // If any artifact still points here — live, recently deleted, or
          // one a concurrent upload just inserted — the foreign key refuses
          // the delete and the blob stays.
          const deleted = await tx.deleteFrom("blobs").where("tenant_id", "=", tenantId).where("digest", "=", digest).executeTakeFirst();
          if (deleted.numDeletedRows === 0n) return false;
          // Its storage is released in the same breath: collection discards it by key, and retries until it is gone.
          await releaseStorageKey(tx, tenantId, blob.storage_key);
          return true;
        });
      } catch (error) {
        // restrict_violation (ON DELETE RESTRICT) or foreign_key_violation.
        const code = (error as { code?: unknown }).code;
        if (code === "23001" || code === "23503") return false;
        throw error;
      }
    },

    async knownStorageKeys(keys) {
      if (keys.length === 0) return new Set();
      // An unfinished upload session owns its key too: completing assembles the object (on S3 stamped with the
      // session's start time, which may be hours old) and reads it back before any blob row names it. So does an
      // upload in flight, released or not: its own pass reclaims it, by key.
      const [blobRows, sessionRows, inFlightRows] = await Promise.all([
        db
          .selectFrom("blobs")
          .select("storage_key")
          .where("storage_key", "in", [...keys])
          .execute(),
        db
          .selectFrom("upload_sessions")
          .select("storage_key")
          .where("storage_key", "in", [...keys])
          .where("state", "!=", "completed")
          .execute(),
        db
          .selectFrom("uploads_in_flight")
          .select("storage_key")
          .where("storage_key", "in", [...keys])
          .execute(),
      ]);
      return new Set([...blobRows, ...sessionRows, ...inFlightRows].map((r) => r.storage_key));
    },

    async blobHoldsKey(storageKey) {
      return (await db.selectFrom("blobs").select("digest").where("storage_key", "=", storageKey).executeTakeFirst()) !== undefined;
    },
  };
}
