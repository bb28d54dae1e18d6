import { sql, type Kysely } from "kysely";
import { STATUS_TRANSITIONS, type Artifact, type ArtifactInput, type LineageEdge } from "../../artifact.ts";
import { ArtifactError, failedPrecondition, notFound } from "../../artifact-error.ts";
import {
  BLOB_RECLAIMED,
  storageKeyOf,
  UPLOAD_HOLD_LOST,
  type ApiToken,
  type LineageTooLarge,
  type MetadataStore,
  type NewArtifact,
  type StoredBlob,
} from "../../ports/metadata-store.ts";
import { applyFilter } from "./artifact-filter.ts";
import { bestQuery, listQuery, searchQuery, selectArtifacts } from "./artifact-queries.ts";
import { ARTIFACT_COLUMNS, provenanceColumns, toArtifact, toArtifacts, toStoredBlob, type ArtifactRow, type Queryable } from "./artifact-rows.ts";
import { decodeKeysetToken, decodeOffsetToken, encodeKeysetToken, encodeOffsetToken } from "./page-token.ts";
import { createKyselyInFlightUploads, releaseStorageKey } from "./kysely-in-flight-uploads.ts";
import { createKyselyArtifactEventLog, type PendingEvent } from "../events/kysely-artifact-event-log.ts";
import { createKyselyUploadSessionStore } from "./kysely-upload-session-store.ts";
import { createKyselyTenantQuotas } from "./kysely-tenant-quotas.ts";
import type { ApiTokenTable, Database } from "./schema.ts";
import type { Selectable, Transaction } from "kysely";

/**
 * The metadata store on kysely: the same SQL for the Postgres server
 * (PostgresDialect over pg) and embedded PGlite (./pglite-dialect.ts).
 *
 * Every value from a request reaches SQL as a bound parameter (see
 * ./artifact-filter.ts). Invariants the schema enforces rather than this
 * code: one blob row per (tenant, digest); an artifact row cannot point at a
 * missing blob row (foreign key, ON DELETE RESTRICT) — which is what makes
 * garbage collection safe against concurrent deduplicating uploads.
 *
 * Every write that changes an artifact records its event in the event log
 * (../events/kysely-artifact-event-log.ts) within its own transaction: the change
 * and its event commit together or not at all.
 */
/** A blob an upload has taken a hold on (holdBlob), by the database's clock. */
const HELD = sql<boolean>`coalesce(held_until >= now(), false)`;

export function createKyselyMetadataStore(db: Kysely<Database>, options: { onClose?: () => Promise<void> } = {}): MetadataStore {
  const { withEvents, ...eventLog } = createKyselyArtifactEventLog(db);

  return {
    uploadSessions: createKyselyUploadSessionStore(db),
    uploadsInFlight: createKyselyInFlightUploads(db),
    eventLog,
    tenantQuotas: createKyselyTenantQuotas(db),

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
      await db.updateTable("blobs").set({ corrupt_at: sql`now()` }).where("tenant_id", "=", tenantId).where("digest", "=", digest).where("corrupt_at", "is", null).execute();
    },

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
        (await db.selectFrom("blobs").select("digest").where("tenant_id", "=", tenantId).where("digest", "=", digest).where("corrupt_at", "is", null).executeTakeFirst()) !==
        undefined
      );
    },

    async createArtifact(record) {
      return translateDatabaseError(() =>
        withEvents(async (tx, recordEvent) => {
          let blob: StoredBlob | undefined;
          let blobCreated = false;
          if (record.blob && "reuseExisting" in record.blob) {
            // KEY SHARE: garbage collection cannot delete the row until we commit.
            const row = await tx
              .selectFrom("blobs")
              .select(["digest", "size_bytes", "storage_key"])
              .where("tenant_id", "=", record.tenantId)
              .where("digest", "=", record.blake3)
              .where("corrupt_at", "is", null)
              .forKeyShare()
              .executeTakeFirst();
            if (!row) {
              throw new ArtifactError("aborted", BLOB_RECLAIMED);
            }
            blob = toStoredBlob(row);
          } else if (record.blob) {
            const inserted = await tx
              .insertInto("blobs")
              .values({ tenant_id: record.tenantId, digest: record.blake3, size_bytes: record.sizeBytes, storage_key: record.blob.storageKey })
              .onConflict((oc) => oc.columns(["tenant_id", "digest"]).doNothing())
              .returning(["digest", "size_bytes", "storage_key"])
              .executeTakeFirst();
            blobCreated = inserted !== undefined;
            const existing = inserted
              ? undefined
              : await tx
                  .selectFrom("blobs")
                  .select(["digest", "size_bytes", "storage_key", "corrupt_at"])
                  .where("tenant_id", "=", record.tenantId)
                  .where("digest", "=", record.blake3)
                  .forUpdate()
                  .executeTakeFirstOrThrow();
            let row = inserted ?? existing!;
            if (existing && existing.corrupt_at !== null) {
              // Fresh bytes for content known to be corrupt heal it: the blob row takes our copy, the bad one is garbage.
              await tx
                .updateTable("blobs")
                .set({ storage_key: record.blob.storageKey, corrupt_at: null })
                .where("tenant_id", "=", record.tenantId)
                .where("digest", "=", record.blake3)
                .execute();
              await releaseStorageKey(tx, record.tenantId, existing.storage_key);
              row = { ...existing, storage_key: record.blob.storageKey };
            }
            blob = toStoredBlob(row);
          }
          await checkInputs(tx, record.tenantId, record.spec.inputs);

          const { spec } = record;
          const row = await tx
            .insertInto("artifacts")
            .values({
              id: record.id,
              tenant_id: record.tenantId,
              kind: spec.kind,
              artifact_class: spec.artifactClass,
              name: spec.name,
              title: spec.title,
              mime_type: record.mimeType,
              size_bytes: record.sizeBytes,
              blake3: record.blake3,
              storage: record.blob ? "blob" : "inline",
              blob_digest: record.blob ? record.blake3 : null,
              // JSON is kept byte-for-byte as sent (inline_text: what downloads
              // return and the digest covers) and as JSONB for queries.
              inline_text: record.inline ? (record.inline.type === "text" ? record.inline.text : record.inline.json) : null,
              inline_json: record.inline?.type === "json" ? record.inline.json : null,
              labels: JSON.stringify(spec.labels),
              tags: [...spec.tags],
              metrics: JSON.stringify(spec.metrics),
              pinned: spec.pinned,
              status: spec.status,
              ...provenanceColumns(spec.provenance),
              created_at: record.createdAt,
              created_by: record.createdBy,
              deleted_at: null,
              expires_at: spec.expiresAt ?? null,
            })
            .returning(ARTIFACT_COLUMNS)
            .executeTakeFirstOrThrow();
          if (spec.inputs.length > 0) {
            await tx
              .insertInto("artifact_inputs")
              .values(
                spec.inputs.map((input, position) => ({
                  tenant_id: record.tenantId,
                  artifact_id: record.id,
                  input_id: input.artifactId,
                  role: input.role,
                  position,
                })),
              )
              .execute();
          }
          const artifact = toArtifact(row, spec.inputs, false);
          if (record.hold) await endHold(tx, record, blob);
          recordEvent({ type: "created", artifact });
          return { artifact, blobCreated, blob };
        }),
      );
    },

    async checkInputs(tenantId, inputs) {
      await checkInputs(db, tenantId, inputs);
    },

    async getArtifact(tenantId, id, { includeContent = false } = {}) {
      const row = await selectArtifacts(db, tenantId)
        .$if(includeContent, (q) => q.select(["inline_text", "inline_json"]))
        .where("id", "=", id)
        .executeTakeFirst();
      return row && (await toArtifacts(db, [row], includeContent))[0];
    },

    async listArtifacts(tenantId, filter, page) {
      const cursor = page.pageToken === "" ? undefined : decodeKeysetToken(page.pageToken);
      const rows = await listQuery(db, tenantId, filter, cursor, page.pageSize + 1).execute();
      const more = rows.length > page.pageSize;
      const pageRows = more ? rows.slice(0, page.pageSize) : rows;
      const last = pageRows.at(-1);
      return {
        items: await toArtifacts(db, pageRows),
        nextPageToken: more && last ? encodeKeysetToken({ createdAt: new Date(last.created_at), id: last.id }) : "",
      };
    },

    async countArtifacts(tenantId, filter) {
      const row = await applyFilter(
        db.selectFrom("artifacts").select(sql<string>`count(*)`.as("count")).where("tenant_id", "=", tenantId),
        filter,
      ).executeTakeFirstOrThrow();
      return Number(row.count);
    },

    async matchesFilter(tenantId, id, filter) {
      const row = await applyFilter(db.selectFrom("artifacts").select("id").where("tenant_id", "=", tenantId).where("id", "=", id), filter).executeTakeFirst();
      return row !== undefined;
    },

    async searchArtifacts(tenantId, text, filter, page) {
      const offset = page.pageToken === "" ? 0 : decodeOffsetToken(page.pageToken);
      const rows = await searchQuery(db, tenantId, text, filter, offset, page.pageSize + 1).execute();
      const more = rows.length > page.pageSize;
      const pageRows = more ? rows.slice(0, page.pageSize) : rows;
      return { items: await toArtifacts(db, pageRows), nextPageToken: more ? encodeOffsetToken(offset + page.pageSize) : "" };
    },

    async bestArtifact(tenantId, kind, metric, minimize, filter) {
      const row = await bestQuery(db, tenantId, kind, metric, minimize, filter).executeTakeFirst();
      return row && (await toArtifacts(db, [row]))[0];
    },

    async lineage(tenantId, id, depth, limits) {
      // Breadth-first, one query per level and direction; a visited set makes every artifact appear once
      // whatever the graph's shape. Each level's query is limited to the edges the budget has left, plus one:
      // an artifact with a million outputs costs one short read, not a million rows, before it is refused.
      const edges: LineageEdge[] = [];
      let artifactsFound = 0;
      const walk = async (direction: "up" | "down"): Promise<string[] | LineageTooLarge> => {
        const visited = new Set<string>([id]);
        const found: string[] = [];
        let frontier = [id];
        for (let level = 1; level <= depth && frontier.length > 0; level++) {
          const budget = limits.maxEdges - edges.length;
          const rows = await db
            .selectFrom("artifact_inputs")
            .select(["artifact_id", "input_id", "role", "position"])
            .where("tenant_id", "=", tenantId)
            .where(direction === "up" ? "artifact_id" : "input_id", "in", frontier)
            // No ORDER BY: it would make Postgres read every matching row before the LIMIT; sorted below.
            .limit(budget + 1)
            .execute();
          if (rows.length > budget) return { tooLarge: "edges", atDepth: level };
          rows.sort((a, b) => (a.artifact_id < b.artifact_id ? -1 : a.artifact_id > b.artifact_id ? 1 : a.position - b.position));
          const next: string[] = [];
          for (const row of rows) {
            edges.push({ fromId: row.input_id, toId: row.artifact_id, role: row.role });
            const other = direction === "up" ? row.input_id : row.artifact_id;
            if (!visited.has(other)) {
              if (++artifactsFound > limits.maxArtifacts) return { tooLarge: "artifacts", atDepth: level };
              visited.add(other);
              next.push(other);
              found.push(other);
            }
          }
          frontier = next;
        }
        return found;
      };
      const ancestorIds = await walk("up");
      if (!Array.isArray(ancestorIds)) return ancestorIds;
      const descendantIds = await walk("down");
      if (!Array.isArray(descendantIds)) return descendantIds;
      const load = async (ids: string[]): Promise<Artifact[]> => {
        if (ids.length === 0) return [];
        const rows = await selectArtifacts(db, tenantId).where("id", "in", ids).execute();
        const byId = new Map((await toArtifacts(db, rows)).map((a) => [a.id, a]));
        return ids.flatMap((i) => byId.get(i) ?? []);
      };
      const unique = new Map(edges.map((e) => [`${e.fromId}>${e.toId}`, e]));
      return { ancestors: await load(ancestorIds), descendants: await load(descendantIds), edges: [...unique.values()] };
    },

    async softDeleteArtifact(tenantId, id, now) {
      return withEvents(async (tx, recordEvent) => {
        const row = await selectArtifacts(tx, tenantId).where("id", "=", id).forUpdate().executeTakeFirst();
        if (!row) return undefined;
        if (row.deleted_at === null) {
          if (row.pinned) throw failedPrecondition(`artifact ${id} is pinned: unpin it before deleting it`);
          const updated = await tx.updateTable("artifacts").set({ deleted_at: now }).where("id", "=", id).returning(ARTIFACT_COLUMNS).executeTakeFirstOrThrow();
          const artifact = (await toArtifacts(tx, [updated]))[0]!;
          recordEvent({ type: "deleted", artifact });
          return artifact;
        }
        return (await toArtifacts(tx, [row]))[0];
      });
    },

    async setPinned(tenantId, id, pinned) {
      return withEvents(async (tx, recordEvent) => {
        const row = await selectArtifacts(tx, tenantId).where("id", "=", id).forUpdate().executeTakeFirst();
        if (!row) return undefined;
        if (row.deleted_at !== null && pinned) throw failedPrecondition(`artifact ${id} is deleted and cannot be pinned`);
        if (row.pinned === pinned) return (await toArtifacts(tx, [row]))[0]!;
        const updated = await tx.updateTable("artifacts").set({ pinned }).where("id", "=", id).returning(ARTIFACT_COLUMNS).executeTakeFirstOrThrow();
        const artifact = (await toArtifacts(tx, [updated]))[0]!;
        recordEvent({ type: pinned ? "pinned" : "unpinned", artifact });
        return artifact;
      });
    },

    async setStatus(tenantId, id, status) {
      return withEvents(async (tx, recordEvent) => {
        const row = await selectArtifacts(tx, tenantId).where("id", "=", id).forUpdate().executeTakeFirst();
        if (!row) return undefined;
        if (row.status === status) return (await toArtifacts(tx, [row]))[0]!;
        if (row.deleted_at !== null) throw failedPrecondition(`artifact ${id} is deleted; its status can no longer change`);
        const allowed = STATUS_TRANSITIONS[row.status];
        if (!allowed.includes(status)) {
          throw failedPrecondition(
            `artifact ${id} is ${row.status}; it can go to ${allowed.length ? allowed.join(" or ") : "no other status (approved is final)"}, not ${status}`,
          );
        }
        const updated = await tx.updateTable("artifacts").set({ status }).where("id", "=", id).returning(ARTIFACT_COLUMNS).executeTakeFirstOrThrow();
        const artifact = (await toArtifacts(tx, [updated]))[0]!;
        recordEvent({ type: "status_changed", artifact });
        return artifact;
      });
    },

    async archiveRun(tenantId, runId, now) {
      return withEvents(async (tx, recordEvent) => {
        const rows = await tx
          .updateTable("artifacts")
          .set({ deleted_at: now })
          .where("tenant_id", "=", tenantId)
          .where("run_id", "=", runId)
          .where("pinned", "=", false)
          .where("deleted_at", "is", null)
          .returning(ARTIFACT_COLUMNS)
          .execute();
        return recordDeleted(tx, rows, recordEvent);
      });
    },

    async expireArtifacts(now, limit) {
      return withEvents(async (tx, recordEvent) => {
        const rows = await tx
          .updateTable("artifacts")
          .set({ deleted_at: now })
          .where("id", "in", (eb) =>
            eb
              .selectFrom("artifacts")
              .select("id")
              .where("expires_at", "<=", now)
              .where("deleted_at", "is", null)
              .where("pinned", "=", false)
              .limit(limit),
          )
          .where("pinned", "=", false)
          .where("deleted_at", "is", null)
          .returning(ARTIFACT_COLUMNS)
          .execute();
        return recordDeleted(tx, rows, recordEvent);
      });
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
        db.selectFrom("blobs").select("storage_key").where("storage_key", "in", [...keys]).execute(),
        db.selectFrom("upload_sessions").select("storage_key").where("storage_key", "in", [...keys]).where("state", "!=", "completed").execute(),
        db.selectFrom("uploads_in_flight").select("storage_key").where("storage_key", "in", [...keys]).execute(),
      ]);
      return new Set([...blobRows, ...sessionRows, ...inFlightRows].map((r) => r.storage_key));
    },

    async blobHoldsKey(storageKey) {
      return (await db.selectFrom("blobs").select("digest").where("storage_key", "=", storageKey).executeTakeFirst()) !== undefined;
    },

    async createToken(token) {
      await db
        .insertInto("api_tokens")
        .values({
          id: token.id,
          tenant_id: token.tenantId,
          name: token.name,
          token_sha256: token.sha256,
          revoked_at: null,
          scope: token.scope,
          expires_at: token.expiresAt ?? null,
        })
        .execute();
    },

    async findTokenBySha256(sha256) {
      const row = await db.selectFrom("api_tokens").selectAll().where("token_sha256", "=", sha256).executeTakeFirst();
      return row && toApiToken(row);
    },

    async findTokenById(id) {
      const row = await db.selectFrom("api_tokens").selectAll().where("id", "=", id).executeTakeFirst();
      return row && toApiToken(row);
    },

    async listTokens(tenantId) {
      let query = db.selectFrom("api_tokens").selectAll().orderBy("created_at");
      if (tenantId !== undefined) query = query.where("tenant_id", "=", tenantId);
      return (await query.execute()).map(toApiToken);
    },

    async revokeToken(id, now) {
      const result = await db.updateTable("api_tokens").set({ revoked_at: now }).where("id", "=", id).where("revoked_at", "is", null).executeTakeFirst();
      return result.numUpdatedRows > 0n;
    },

    async ping() {
      await sql`select 1`.execute(db);
    },

    async close() {
      await db.destroy();
      await options.onClose?.();
    },
  };
}

/**
 * Ends what held an upload's storage key, inside the transaction that records
 * its artifact: so the artifact and the end of the hold commit together, or
 * neither does. A key the artifact does not use (another upload of the same
 * content won) is released to garbage collection in the same breath.
 */
async function endHold(tx: Transaction<Database>, record: NewArtifact, blob: StoredBlob | undefined): Promise<void> {
  const hold = record.hold!;
  const key = storageKeyOf(hold);
  const used = blob?.storageKey === key;
  if ("session" in hold) {
    const completed = await tx
      .updateTable("upload_sessions")
      .set({ state: "completed", artifact_id: record.id, complete_claim: null, updated_at: sql`now()` })
      .where("id", "=", hold.session.id)
      .where("state", "=", "completing")
      .where("complete_claim", "=", hold.session.claim)
      .executeTakeFirst();
    if (completed.numUpdatedRows === 0n) {
      throw new ArtifactError("aborted", `upload session ${hold.session.id} was taken over by another complete: complete it again to get its artifact`);
    }
    if (!used) await releaseStorageKey(tx, record.tenantId, key);
    return;
  }
  if (!used) {
    await releaseStorageKey(tx, record.tenantId, key);
    return;
  }
  const ended = await tx.deleteFrom("uploads_in_flight").where("storage_key", "=", key).where("released_at", "is", null).executeTakeFirst();
  if (ended.numDeletedRows === 0n) {
    throw new ArtifactError("aborted", UPLOAD_HOLD_LOST);
  }
}

/** Soft-deleted rows → artifacts, each with its deleted event recorded. */
async function recordDeleted(tx: Queryable, rows: readonly ArtifactRow[], recordEvent: (event: PendingEvent) => void): Promise<Artifact[]> {
  const artifacts = await toArtifacts(tx, rows);
  for (const artifact of artifacts) recordEvent({ type: "deleted", artifact });
  return artifacts;
}

async function checkInputs(db: Queryable, tenantId: string, inputs: readonly ArtifactInput[]): Promise<void> {
  if (inputs.length === 0) return;
  const rows = await db
    .selectFrom("artifacts")
    .select(["id", "kind", "artifact_class", "deleted_at"])
    .where("tenant_id", "=", tenantId)
    .where(
      "id",
      "in",
      inputs.map((i) => i.artifactId),
    )
    .forShare()
    .execute();
  const byId = new Map(rows.map((r) => [r.id, r]));
  for (const input of inputs) {
    const row = byId.get(input.artifactId);
    if (!row) throw notFound(`input artifact ${input.artifactId} does not exist: name an existing artifact of your tenant`);
    if (row.deleted_at !== null) throw failedPrecondition(`input artifact ${input.artifactId} is deleted and cannot be used as an input`);
    if (input.requiredClass !== "" && row.artifact_class !== input.requiredClass) {
      throw failedPrecondition(
        `input artifact ${input.artifactId} has class ${JSON.stringify(row.artifact_class)}, but the input requires class ${JSON.stringify(input.requiredClass)}`,
      );
    }
    if (input.requiredKind !== "" && row.kind !== input.requiredKind) {
      throw failedPrecondition(
        `input artifact ${input.artifactId} has kind ${JSON.stringify(row.kind)}, but the input requires kind ${JSON.stringify(input.requiredKind)}`,
      );
    }
  }
}

/**
 * Postgres refuses some values that pass validation — JSON holding \u0000,
 * text it cannot convert. Those are the client's to fix, so they become
 * invalid_argument here, where the driver's codes are known.
 */
async function translateDatabaseError<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (code === "22P05" || code === "22021" || code === "22P02") {
      // The driver's own words stay in the server's log (the error's cause), not in the answer.
      throw new ArtifactError("invalid_argument", "the database refused a value of the request (text it cannot store, such as a NUL character or invalid Unicode): remove it", {
        cause: error,
      });
    }
    throw error;
  }
}

function toApiToken(row: Selectable<ApiTokenTable>): ApiToken {
  return {
    id: row.id,
    tenantId: row.tenant_id,
    name: row.name,
    createdAt: new Date(row.created_at),
    revokedAt: row.revoked_at === null ? undefined : new Date(row.revoked_at),
    scope: row.scope,
    expiresAt: row.expires_at === null ? undefined : new Date(row.expires_at),
  };
}
