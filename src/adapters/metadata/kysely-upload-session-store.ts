import type { Kysely, Selectable } from "kysely";
import type { ArtifactSpec } from "../../artifact.ts";
import type { SessionPart, UploadSessionRecord, UploadSessionStore } from "../../ports/upload-session-store.ts";
import type { Database, UploadSessionTable } from "./schema.ts";

/** Upload sessions in the metadata database (see the upload_sessions migration). */
export function createKyselyUploadSessionStore(db: Kysely<Database>): UploadSessionStore {
  const load = async (row: Selectable<UploadSessionTable> | undefined): Promise<UploadSessionRecord | undefined> => {
    if (!row) return undefined;
    const parts = await db
      .selectFrom("upload_session_parts")
      .select(["part_number", "size_bytes", "etag"])
      .where("session_id", "=", row.id)
      .orderBy("part_number")
      .execute();
    return toRecord(
      row,
      parts.map((p) => ({ partNumber: p.part_number, sizeBytes: Number(p.size_bytes), etag: p.etag })),
    );
  };

  return {
    async create(session) {
      const inserted = await db
        .insertInto("upload_sessions")
        .values({
          id: session.id,
          tenant_id: session.tenantId,
          idempotency_key: session.idempotencyKey ?? null,
          spec: JSON.stringify(session.spec),
          expected_size: session.expectedSize ?? null,
          expected_blake3: session.expectedBlake3 ?? null,
          part_size: session.partSize,
          storage_key: session.storageKey,
          multipart_id: session.multipartId,
          state: "open",
          artifact_id: null,
          created_by: session.createdBy,
          expires_at: session.expiresAt,
        })
        .onConflict((oc) => oc.columns(["tenant_id", "idempotency_key"]).where("idempotency_key", "is not", null).doNothing())
        .returningAll()
        .executeTakeFirst();
      if (inserted) return { session: (await load(inserted))!, created: true };
      const existing = await db
        .selectFrom("upload_sessions")
        .selectAll()
        .where("tenant_id", "=", session.tenantId)
        .where("idempotency_key", "=", session.idempotencyKey ?? "")
        .executeTakeFirstOrThrow();
      return { session: (await load(existing))!, created: false };
    },

    async findByIdempotencyKey(tenantId, key) {
      return load(await db.selectFrom("upload_sessions").selectAll().where("tenant_id", "=", tenantId).where("idempotency_key", "=", key).executeTakeFirst());
    },

    async get(tenantId, id) {
      return load(await db.selectFrom("upload_sessions").selectAll().where("tenant_id", "=", tenantId).where("id", "=", id).executeTakeFirst());
    },

    async recordPart(id, part) {
      return db.transaction().execute(async (tx) => {
        // FOR SHARE: a concurrent complete (which updates the row) waits for
        // this part, and a part cannot slip in after completing began.
        const row = await tx.selectFrom("upload_sessions").select("state").where("id", "=", id).forShare().executeTakeFirst();
        if (row?.state !== "open") return false;
        await tx
          .insertInto("upload_session_parts")
          .values({ session_id: id, part_number: part.partNumber, size_bytes: part.sizeBytes, etag: part.etag })
          .onConflict((oc) =>
            oc.columns(["session_id", "part_number"]).doUpdateSet({ size_bytes: part.sizeBytes, etag: part.etag, uploaded_at: new Date() }),
          )
          .execute();
        return true;
      });
    },

    async beginCompleting(tenantId, id, staleBefore) {
      const updated = await db
        .updateTable("upload_sessions")
        .set({ state: "completing", updated_at: new Date() })
        .where("tenant_id", "=", tenantId)
        .where("id", "=", id)
        .where((eb) => eb.or([eb("state", "=", "open"), eb.and([eb("state", "=", "completing"), eb("updated_at", "<", staleBefore)])]))
        .returningAll()
        .executeTakeFirst();
      if (updated) return { session: (await load(updated))!, acquired: true };
      const current = await load(await db.selectFrom("upload_sessions").selectAll().where("tenant_id", "=", tenantId).where("id", "=", id).executeTakeFirst());
      return current && { session: current, acquired: false };
    },

    async reopen(id) {
      await db.updateTable("upload_sessions").set({ state: "open", updated_at: new Date() }).where("id", "=", id).where("state", "=", "completing").execute();
    },

    async markCompleted(id, artifactId) {
      await db.updateTable("upload_sessions").set({ state: "completed", artifact_id: artifactId, updated_at: new Date() }).where("id", "=", id).execute();
    },

    async delete(id) {
      await db.deleteFrom("upload_sessions").where("id", "=", id).execute();
    },

    async listExpired(now, limit) {
      const rows = await db.selectFrom("upload_sessions").selectAll().where("expires_at", "<", now).orderBy("expires_at").limit(limit).execute();
      const records: UploadSessionRecord[] = [];
      for (const row of rows) records.push((await load(row))!);
      return records;
    },
  };
}

function toRecord(row: Selectable<UploadSessionTable>, parts: SessionPart[]): UploadSessionRecord {
  const spec = row.spec as ArtifactSpec & { expiresAt?: string };
  return {
    id: row.id,
    tenantId: row.tenant_id,
    idempotencyKey: row.idempotency_key ?? undefined,
    spec: { ...spec, expiresAt: spec.expiresAt ? new Date(spec.expiresAt) : undefined },
    expectedSize: row.expected_size === null ? undefined : Number(row.expected_size),
    expectedBlake3: row.expected_blake3 ?? undefined,
    partSize: Number(row.part_size),
    storageKey: row.storage_key,
    multipartId: row.multipart_id,
    createdBy: row.created_by,
    expiresAt: new Date(row.expires_at),
    state: row.state,
    artifactId: row.artifact_id ?? undefined,
    createdAt: new Date(row.created_at),
    parts,
  };
}

