import type { Insertable, Kysely, Selectable, Transaction } from "kysely";
import { PROVENANCE_FIELDS, type Artifact, type Provenance } from "../../artifact.ts";
import type { NewArtifact } from "../../ports/artifact-records.ts";
import type { StoredBlob } from "../../ports/tenant-blob-index.ts";
import { aliasesOf } from "./artifact-aliases.ts";
import type { ArtifactTable, Database } from "./schema.ts";

/** Rows of the artifacts table ⇄ domain artifacts. */

export type Queryable = Kysely<Database> | Transaction<Database>;

/** Every column but the inline content, which only a read that asks for it loads. */
export const ARTIFACT_COLUMNS = [
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
  "project",
  "version",
] as const satisfies readonly (keyof ArtifactTable)[];

export type ArtifactRow = Omit<Selectable<ArtifactTable>, "inline_text" | "inline_json" | "inline_bytes"> & {
  inline_text?: string | null;
  inline_json?: unknown;
  inline_bytes?: Uint8Array | null;
};

type InputsById = Map<string, { artifactId: string; role: string }[]>;

export async function loadInputs(db: Queryable, ids: readonly string[]): Promise<InputsById> {
  const result: InputsById = new Map();
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

/** Rows → artifacts, with their inputs loaded in one query and their aliases in another (./artifact-aliases.ts). */
export async function toArtifacts(db: Queryable, rows: readonly ArtifactRow[], includeContent = false): Promise<Artifact[]> {
  const inputs = await loadInputs(
    db,
    rows.map((r) => r.id),
  );
  const aliases = await aliasesOf(db, rows);
  return rows.map((row) => ({ ...toArtifact(row, inputs.get(row.id) ?? [], includeContent), aliases: aliases.get(row.id) ?? [] }));
}

export function toArtifact(row: ArtifactRow, inputs: readonly { artifactId: string; role: string }[], includeContent: boolean): Artifact {
  const provenance: Provenance = {};
  for (const field of PROVENANCE_FIELDS) {
    const value = row[field];
    if (value) provenance[field] = value;
  }
  let inlineContent: Artifact["inlineContent"];
  if (includeContent && row.storage === "inline") {
    if (typeof row.inline_text === "string") {
      inlineContent = row.inline_json != null ? { type: "json", json: row.inline_text } : { type: "text", text: row.inline_text };
    } else if (row.inline_bytes) {
      inlineContent = { type: "binary", bytes: row.inline_bytes };
    }
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
    project: row.project,
    version: row.version === null ? undefined : Number(row.version),
    // Only toArtifacts reads them (one query for all its rows).
    aliases: [],
  };
}

export function provenanceColumns(provenance: Provenance): Record<(typeof PROVENANCE_FIELDS)[number], string | null> {
  return Object.fromEntries(PROVENANCE_FIELDS.map((f) => [f, provenance[f] || null])) as Record<(typeof PROVENANCE_FIELDS)[number], string | null>;
}

export function toStoredBlob(row: { digest: string; size_bytes: string | number | bigint; storage_key: string }): StoredBlob {
  return { digest: row.digest, sizeBytes: Number(row.size_bytes), storageKey: row.storage_key };
}

/** The artifacts row of a new artifact. */
export function artifactValues(record: NewArtifact): Insertable<ArtifactTable> {
  const { spec } = record;
  return {
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
    inline_text: record.inline?.type === "text" ? record.inline.text : record.inline?.type === "json" ? record.inline.json : null,
    inline_json: record.inline?.type === "json" ? record.inline.json : null,
    inline_bytes: record.inline?.type === "binary" ? record.inline.bytes : null,
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
    project: spec.project,
    // A versioned artifact takes its number in its recording transaction (./kysely-artifact-versions.ts).
    version: null,
  };
}
