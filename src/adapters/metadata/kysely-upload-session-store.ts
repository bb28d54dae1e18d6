import { sql, type Kysely, type Selectable, type Transaction } from "kysely";
import type { ArtifactSpec } from "../../artifact.ts";
import { WRITER_LEASE_MS, type SessionPart, type UploadSessionRecord, type UploadSessionStore } from "../../ports/upload-session-store.ts";
import { releaseStorageKey } from "./kysely-in-flight-uploads.ts";
import type { Database, UploadSessionTable } from "./schema.ts";

/** A lease or claim older than this many milliseconds, by the database's clock. */
const olderThan = (ms: number) => sql<Date>`now() - ${ms} * interval '1 millisecond'`;
/** A streaming writer holds the session: its lease was renewed within WRITER_LEASE_MS. */
const WRITER_LIVE = sql<boolean>`coalesce(writer_id is not null and writer_renewed_at >= ${olderThan(WRITER_LEASE_MS)}, false)`;

/**
 * Upload sessions in the metadata database (see the upload_sessions and
 * uploads_in_flight migrations). Every change of state is one conditional
 * statement, or one transaction that locks the row first: two calls racing
 * on a session never both succeed.
 */
export function createKyselyUploadSessionStore(db: Kysely<Database>): UploadSessionStore {
  /** A row with its parts; `writer_live` where the query asked for it (else no writer is reported). */
  const load = async (
    row: (Selectable<UploadSessionTable> & { writer_live?: boolean }) | undefined,
    from: Kysely<Database> | Transaction<Database> = db,
  ): Promise<UploadSessionRecord | undefined> => {
    if (!row) return undefined;
    const parts = await from
      .selectFrom("upload_session_parts")
      .select(["part_number", "size_bytes", "etag"])
      .where("session_id", "=", row.id)
      .orderBy("part_number")
      .execute();
    return toRecord(
      row,
      parts.map((p) => ({ partNumber: p.part_number, sizeBytes: Number(p.size_bytes), etag: p.etag })),
      row.writer_live === true,
    );
  };
  const byId = (tenantId: string, id: string) =>
    db.selectFrom("upload_sessions").selectAll().select(WRITER_LIVE.as("writer_live")).where("tenant_id", "=", tenantId).where("id", "=", id);

  return {
    async create(session) {
      return db.transaction().execute(async (tx) => {
        const inserted = await tx
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
        if (inserted) {
          // From here the session row holds the key.
          await tx.deleteFrom("uploads_in_flight").where("storage_key", "=", session.storageKey).execute();
          return { session: (await load(inserted, tx))!, created: true };
        }
        const existing = await tx
          .selectFrom("upload_sessions")
          .selectAll()
          .where("tenant_id", "=", session.tenantId)
          .where("idempotency_key", "=", session.idempotencyKey ?? "")
          .executeTakeFirstOrThrow();
        return { session: (await load(existing, tx))!, created: false };
      });
    },

    async findByIdempotencyKey(tenantId, key) {
      return load(await db.selectFrom("upload_sessions").selectAll().where("tenant_id", "=", tenantId).where("idempotency_key", "=", key).executeTakeFirst());
    },

    async get(tenantId, id) {
      return load(await byId(tenantId, id).executeTakeFirst());
    },

    async recordPart(id, part, writerId) {
      return db.transaction().execute(async (tx) => {
        // FOR SHARE: a concurrent complete or abort (which update or delete the row) waits for this part, and a
        // part cannot slip in after completing began.
        const row = await tx
          .selectFrom("upload_sessions")
          .select(["state", "assembled_blake3", "writer_id", WRITER_LIVE.as("writer_live")])
          .where("id", "=", id)
          .forShare()
          .executeTakeFirst();
        if (row?.state !== "open" || row.assembled_blake3 !== null) return "closed";
        if (writerId !== undefined ? row.writer_id !== writerId : row.writer_live) return "held";
        await tx
          .insertInto("upload_session_parts")
          .values({ session_id: id, part_number: part.partNumber, size_bytes: part.sizeBytes, etag: part.etag })
          .onConflict((oc) => oc.columns(["session_id", "part_number"]).doUpdateSet({ size_bytes: part.sizeBytes, etag: part.etag, uploaded_at: new Date() }))
          .execute();
        return "recorded";
      });
    },

    async acquireWriter(id, writerId) {
      const acquired = await db
        .updateTable("upload_sessions")
        .set({ writer_id: writerId, writer_renewed_at: sql`now()` })
        .where("id", "=", id)
        .where("state", "=", "open")
        .where("assembled_blake3", "is", null)
        .where((eb) => eb.or([eb("writer_id", "is", null), eb("writer_renewed_at", "<", olderThan(WRITER_LEASE_MS))]))
        .executeTakeFirst();
      if (acquired.numUpdatedRows > 0n) return "acquired";
      const row = await db.selectFrom("upload_sessions").select(["state", "assembled_blake3"]).where("id", "=", id).executeTakeFirst();
      return row?.state === "open" && row.assembled_blake3 === null ? "held" : "closed";
    },

    async renewWriter(id, writerId) {
      const renewed = await db
        .updateTable("upload_sessions")
        .set({ writer_renewed_at: sql`now()` })
        .where("id", "=", id)
        .where("writer_id", "=", writerId)
        .executeTakeFirst();
      return renewed.numUpdatedRows > 0n;
    },

    async releaseWriter(id, writerId) {
      await db
        .updateTable("upload_sessions")
        .set({ writer_id: null, writer_renewed_at: null })
        .where("id", "=", id)
        .where("writer_id", "=", writerId)
        .execute();
    },

    async beginCompleting(tenantId, id, claim, staleMs) {
      const updated = await db
        .updateTable("upload_sessions")
        .set({ state: "completing", complete_claim: claim, updated_at: sql`now()` })
        .where("tenant_id", "=", tenantId)
        .where("id", "=", id)
        .where((eb) => eb.or([eb("state", "=", "open"), eb.and([eb("state", "=", "completing"), eb("updated_at", "<", olderThan(staleMs))])]))
        .returningAll()
        .executeTakeFirst();
      if (updated) return { session: (await load(updated))!, acquired: true };
      const current = await load(await byId(tenantId, id).executeTakeFirst());
      return current && { session: current, acquired: false };
    },

    async renewClaim(id, claim) {
      const renewed = await db
        .updateTable("upload_sessions")
        .set({ updated_at: sql`now()` })
        .where("id", "=", id)
        .where("state", "=", "completing")
        .where("complete_claim", "=", claim)
        .executeTakeFirst();
      return renewed.numUpdatedRows > 0n;
    },

    async markAssembled(id, claim, size, digest) {
      await db
        .updateTable("upload_sessions")
        .set({ assembled_size: size, assembled_blake3: digest, updated_at: sql`now()` })
        .where("id", "=", id)
        .where("complete_claim", "=", claim)
        .execute();
    },

    async reopen(id, claim) {
      await db
        .updateTable("upload_sessions")
        .set({ state: "open", complete_claim: null, updated_at: sql`now()` })
        .where("id", "=", id)
        .where("state", "=", "completing")
        .where("complete_claim", "=", claim)
        .execute();
    },

    async abandon(tenantId, id, allowed) {
      return db.transaction().execute(async (tx) => {
        const row = await tx.selectFrom("upload_sessions").selectAll().where("tenant_id", "=", tenantId).where("id", "=", id).forUpdate().executeTakeFirst();
        if (!row) return { kept: "missing" as const };
        if (!allowed.states.includes(row.state) || (allowed.claim !== undefined && row.complete_claim !== allowed.claim)) return { kept: row.state };
        const session = (await load(row, tx))!;
        await tx.deleteFrom("upload_sessions").where("id", "=", id).execute();
        if (row.state !== "completed") {
          // Whatever is stored under the key (parts, an assembled object) is garbage now: collection takes it.
          await releaseStorageKey(tx, row.tenant_id, row.storage_key);
        }
        return { deleted: session };
      });
    },

    async listExpired(now, limit) {
      const rows = await db.selectFrom("upload_sessions").selectAll().where("expires_at", "<", now).orderBy("expires_at").limit(limit).execute();
      const records: UploadSessionRecord[] = [];
      for (const row of rows) records.push((await load(row))!);
      return records;
    },
    async countOpen(now) {
      const row = await db
        .selectFrom("upload_sessions")
        .select(sql<string>`count(*)`.as("n"))
        .where("state", "in", ["open", "completing"])
        .where("expires_at", ">", now)
        .executeTakeFirstOrThrow();
      return Number(row.n);
    },
  };
}

function toRecord(row: Selectable<UploadSessionTable>, parts: SessionPart[], writerLive: boolean): UploadSessionRecord {
  const spec = row.spec as Omit<ArtifactSpec, "versioned" | "project"> & Partial<Pick<ArtifactSpec, "versioned" | "project">> & { expiresAt?: string };
  return {
    id: row.id,
    tenantId: row.tenant_id,
    idempotencyKey: row.idempotency_key ?? undefined,
    // Sessions opened before versions existed have no versioned / project.
    spec: { ...spec, versioned: spec.versioned ?? false, project: spec.project ?? "", expiresAt: spec.expiresAt ? new Date(spec.expiresAt) : undefined },
    expectedSize: row.expected_size === null ? undefined : Number(row.expected_size),
    expectedBlake3: row.expected_blake3 ?? undefined,
    partSize: Number(row.part_size),
    storageKey: row.storage_key,
    multipartId: row.multipart_id,
    createdBy: row.created_by,
    expiresAt: new Date(row.expires_at),
    state: row.state,
    artifactId: row.artifact_id ?? undefined,
    assembled: row.assembled_blake3 === null ? undefined : { size: Number(row.assembled_size), digest: row.assembled_blake3 },
    writerId: writerLive ? (row.writer_id ?? undefined) : undefined,
    createdAt: new Date(row.created_at),
    parts,
  };
}
