import { sql, type Kysely, type Selectable, type Transaction } from "kysely";
import {
  PROVENANCE_FIELDS,
  type Artifact,
  type ArtifactFilter,
  type ArtifactInput,
  type Provenance,
} from "../../artifact.ts";
import { ArtifactError, failedPrecondition, notFound } from "../../artifact-error.ts";
import type { ApiToken, MetadataStore, Page, StoredBlob } from "../../ports/metadata-store.ts";
import type { ApiTokenTable, ArtifactTable, Database } from "./schema.ts";

/**
 * The metadata store on kysely: the same SQL for the Postgres server
 * (PostgresDialect over pg) and embedded PGlite (./pglite-dialect.ts).
 *
 * Every value from a request reaches SQL as a bound parameter, filters
 * included: label filters are one JSONB containment (`labels @> $1`), so keys
 * and values full of quotes, dots or JSON-path syntax match literally.
 */
export function createKyselyMetadataStore(db: Kysely<Database>, options: { onClose?: () => Promise<void> } = {}): MetadataStore {
  return {
    async findBlob(tenantId, digest) {
      const row = await db
        .selectFrom("blobs")
        .select(["digest", "size_bytes", "storage_key"])
        .where("tenant_id", "=", tenantId)
        .where("digest", "=", digest)
        .executeTakeFirst();
      return row && toStoredBlob(row);
    },

    async createArtifact(record) {
      return translateDatabaseError(() => db.transaction().execute(async (tx) => {
        let blob: StoredBlob | undefined;
        let blobCreated = false;
        if (record.blob) {
          const inserted = await tx
            .insertInto("blobs")
            .values({
              tenant_id: record.tenantId,
              digest: record.blake3,
              size_bytes: record.sizeBytes,
              storage_key: record.blob.storageKey,
            })
            .onConflict((oc) => oc.columns(["tenant_id", "digest"]).doNothing())
            .returning(["digest", "size_bytes", "storage_key"])
            .executeTakeFirst();
          blobCreated = inserted !== undefined;
          const row =
            inserted ??
            (await tx
              .selectFrom("blobs")
              .select(["digest", "size_bytes", "storage_key"])
              .where("tenant_id", "=", record.tenantId)
              .where("digest", "=", record.blake3)
              .forShare()
              .executeTakeFirstOrThrow());
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
            // JSON is kept byte-for-byte as sent (inline_text, what downloads
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
        return { artifact, blobCreated, blob };
      }));
    },

    async checkInputs(tenantId, inputs) {
      await checkInputs(db, tenantId, inputs);
    },

    async getArtifact(tenantId, id, { includeContent = false } = {}) {
      const row = await db
        .selectFrom("artifacts")
        .select(ARTIFACT_COLUMNS)
        .$if(includeContent, (q) => q.select(["inline_text", "inline_json"]))
        .where("tenant_id", "=", tenantId)
        .where("id", "=", id)
        .executeTakeFirst();
      if (!row) return undefined;
      const inputs = await loadInputs(db, [id]);
      return toArtifact(row, inputs.get(id) ?? [], includeContent);
    },

    async listArtifacts(tenantId, filter, page) {
      const cursor = page.pageToken === "" ? undefined : decodePageToken(page.pageToken);
      let query = applyFilter(db.selectFrom("artifacts").select(ARTIFACT_COLUMNS).where("tenant_id", "=", tenantId), filter);
      if (cursor) {
        query = query.where((eb) =>
          eb.or([eb("created_at", "<", cursor.createdAt), eb.and([eb("created_at", "=", cursor.createdAt), eb("id", "<", cursor.id)])]),
        );
      }
      const rows = await query
        .orderBy("created_at", "desc")
        .orderBy("id", "desc")
        .limit(page.pageSize + 1)
        .execute();
      const more = rows.length > page.pageSize;
      const pageRows = more ? rows.slice(0, page.pageSize) : rows;
      const inputs = await loadInputs(
        db,
        pageRows.map((r) => r.id),
      );
      const items = pageRows.map((r) => toArtifact(r, inputs.get(r.id) ?? [], false));
      const last = pageRows.at(-1);
      return {
        items,
        nextPageToken: more && last ? encodePageToken({ createdAt: new Date(last.created_at), id: last.id }) : "",
      } satisfies Page<Artifact>;
    },

    async softDeleteArtifact(tenantId, id, now) {
      return db.transaction().execute(async (tx) => {
        const row = await tx.selectFrom("artifacts").select(ARTIFACT_COLUMNS).where("tenant_id", "=", tenantId).where("id", "=", id).forUpdate().executeTakeFirst();
        if (!row) return undefined;
        if (row.deleted_at !== null) return toArtifact(row, (await loadInputs(tx, [id])).get(id) ?? [], false);
        if (row.pinned) throw failedPrecondition(`artifact ${id} is pinned: unpin it before deleting it`);
        const updated = await tx
          .updateTable("artifacts")
          .set({ deleted_at: now })
          .where("id", "=", id)
          .returning(ARTIFACT_COLUMNS)
          .executeTakeFirstOrThrow();
        return toArtifact(updated, (await loadInputs(tx, [id])).get(id) ?? [], false);
      });
    },

    async createToken(token) {
      await db
        .insertInto("api_tokens")
        .values({ id: token.id, tenant_id: token.tenantId, name: token.name, token_sha256: token.sha256, revoked_at: null })
        .execute();
    },

    async findTokenBySha256(sha256) {
      const row = await db.selectFrom("api_tokens").selectAll().where("token_sha256", "=", sha256).executeTakeFirst();
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

type Queryable = Kysely<Database> | Transaction<Database>;

/**
 * Postgres refuses some values that pass validation — JSON holding \u0000,
 * text in an encoding it cannot convert. Those are the client's to fix, so
 * they become invalid_argument here, where the driver's codes are known.
 */
async function translateDatabaseError<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (code === "22P05" || code === "22021" || code === "22P02") {
      throw new ArtifactError("invalid_argument", `the database refused a value: ${(error as Error).message}`);
    }
    throw error;
  }
}

/** Every column but the inline content, which only a read that asks for it loads. */
const ARTIFACT_COLUMNS = [
  "id",
  "tenant_id",
  "kind",
  "artifact_class",
  "name",
  "title",
  "mime_type",
  "size_bytes",
  "blake3",
  "storage",
  "blob_digest",
  "labels",
  "tags",
  "metrics",
  "pinned",
  "status",
  ...PROVENANCE_FIELDS,
  "created_at",
  "created_by",
  "deleted_at",
  "expires_at",
] as const satisfies readonly (keyof ArtifactTable)[];

type ArtifactRow = Omit<Selectable<ArtifactTable>, "inline_text" | "inline_json"> & { inline_text?: string | null; inline_json?: unknown };

async function checkInputs(db: Queryable, tenantId: string, inputs: readonly ArtifactInput[]): Promise<void> {
  if (inputs.length === 0) return;
  const rows = await db
    .selectFrom("artifacts")
    .select(["id", "artifact_class", "deleted_at"])
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
  }
}

async function loadInputs(db: Queryable, ids: string[]): Promise<Map<string, { artifactId: string; role: string }[]>> {
  const result = new Map<string, { artifactId: string; role: string }[]>();
  if (ids.length === 0) return result;
  const rows = await db
    .selectFrom("artifact_inputs")
    .select(["artifact_id", "input_id", "role"])
    .where("artifact_id", "in", ids)
    .orderBy("artifact_id")
    .orderBy("position")
    .execute();
  for (const row of rows) {
    const list = result.get(row.artifact_id) ?? [];
    list.push({ artifactId: row.input_id, role: row.role });
    result.set(row.artifact_id, list);
  }
  return result;
}

function applyFilter<Q extends import("kysely").SelectQueryBuilder<Database, "artifacts", any>>(query: Q, filter: ArtifactFilter): Q {
  let q = query as import("kysely").SelectQueryBuilder<Database, "artifacts", any>;
  if (!filter.includeDeleted) q = q.where("deleted_at", "is", null);
  if (filter.kind) q = q.where("kind", "=", filter.kind);
  if (filter.artifactClass) q = q.where("artifact_class", "=", filter.artifactClass);
  if (filter.mimeType) q = q.where("mime_type", "=", filter.mimeType);
  if (filter.namePrefix) q = q.where(sql<boolean>`starts_with(name, ${filter.namePrefix})`);
  if (filter.status) q = q.where("status", "=", filter.status);
  if (filter.storage) q = q.where("storage", "=", filter.storage);
  if (filter.pinned !== undefined) q = q.where("pinned", "=", filter.pinned);
  if (filter.createdAfter) q = q.where("created_at", ">=", filter.createdAfter);
  if (filter.createdBefore) q = q.where("created_at", "<", filter.createdBefore);
  for (const field of PROVENANCE_FIELDS) {
    const value = filter.provenance?.[field];
    if (value) q = q.where(field, "=", value);
  }
  if (filter.labels && Object.keys(filter.labels).length > 0) {
    q = q.where(sql<boolean>`labels @> ${JSON.stringify(filter.labels)}::jsonb`);
  }
  if (filter.tagsAll && filter.tagsAll.length > 0) q = q.where(sql<boolean>`tags @> ${[...filter.tagsAll]}::text[]`);
  if (filter.tagsAny && filter.tagsAny.length > 0) q = q.where(sql<boolean>`tags && ${[...filter.tagsAny]}::text[]`);
  for (const range of filter.metricRanges ?? []) {
    q = q.where(sql<boolean>`metrics ? ${range.name}`);
    if (range.min !== undefined) q = q.where(sql<boolean>`(metrics ->> ${range.name})::float8 >= ${range.min}`);
    if (range.max !== undefined) q = q.where(sql<boolean>`(metrics ->> ${range.name})::float8 <= ${range.max}`);
  }
  return q as Q;
}

function provenanceColumns(provenance: Provenance): Record<(typeof PROVENANCE_FIELDS)[number], string | null> {
  return Object.fromEntries(PROVENANCE_FIELDS.map((f) => [f, provenance[f] || null])) as Record<(typeof PROVENANCE_FIELDS)[number], string | null>;
}

function toStoredBlob(row: { digest: string; size_bytes: string | number | bigint; storage_key: string }): StoredBlob {
  return { digest: row.digest, sizeBytes: Number(row.size_bytes), storageKey: row.storage_key };
}

function toArtifact(row: ArtifactRow, inputs: readonly { artifactId: string; role: string }[], includeContent: boolean): Artifact {
  const provenance: Provenance = {};
  for (const field of PROVENANCE_FIELDS) {
    const value = row[field];
    if (value) provenance[field] = value;
  }
  let inlineContent: Artifact["inlineContent"];
  if (includeContent && row.storage === "inline" && typeof row.inline_text === "string") {
    inlineContent = row.inline_json != null ? { type: "json", json: row.inline_text } : { type: "text", text: row.inline_text };
  }
  return {
    id: row.id,
    tenantId: row.tenant_id,
    kind: row.kind,
    artifactClass: row.artifact_class,
    name: row.name,
    title: row.title,
    mimeType: row.mime_type,
    sizeBytes: Number(row.size_bytes),
    blake3: row.blake3,
    storage: row.storage,
    inlineContent,
    labels: row.labels,
    tags: row.tags,
    metrics: row.metrics,
    pinned: row.pinned,
    status: row.status,
    provenance,
    inputs: inputs.map((i) => ({ artifactId: i.artifactId, role: i.role })),
    createdAt: new Date(row.created_at),
    createdBy: row.created_by,
    deletedAt: row.deleted_at === null ? undefined : new Date(row.deleted_at),
    expiresAt: row.expires_at === null ? undefined : new Date(row.expires_at),
  };
}

function toApiToken(row: Selectable<ApiTokenTable>): ApiToken {
  return {
    id: row.id,
    tenantId: row.tenant_id,
    name: row.name,
    createdAt: new Date(row.created_at),
    revokedAt: row.revoked_at === null ? undefined : new Date(row.revoked_at),
  };
}

function encodePageToken(cursor: { createdAt: Date; id: string }): string {
  return Buffer.from(JSON.stringify({ t: cursor.createdAt.toISOString(), i: cursor.id })).toString("base64url");
}

function decodePageToken(token: string): { createdAt: Date; id: string } {
  try {
    const parsed = JSON.parse(Buffer.from(token, "base64url").toString("utf8")) as { t?: unknown; i?: unknown };
    const createdAt = new Date(String(parsed.t));
    if (typeof parsed.i !== "string" || Number.isNaN(createdAt.getTime())) throw new Error("bad cursor");
    return { createdAt, id: parsed.i };
  } catch {
    throw new ArtifactError("invalid_argument", "page_token is not a token this server issued: pass next_page_token from the previous response unchanged");
  }
}

