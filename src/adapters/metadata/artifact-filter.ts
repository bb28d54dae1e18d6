import { sql, type SelectQueryBuilder } from "kysely";
import { PROVENANCE_FIELDS, type ArtifactFilter } from "../../artifact.ts";
import { jsonFilterTerms } from "./json-filter.ts";
import type { Database } from "./schema.ts";

/**
 * An ArtifactFilter as WHERE clauses. Every value is a bound parameter; the
 * shapes are the ones the indexes of the migrations serve:
 * - labels: one JSONB containment `labels @> $1` (GIN jsonb_path_ops), so
 *   keys and values with quotes, dots, `$` or JSON-path syntax match
 *   literally — no JSON path is ever built from input;
 * - tags: array containment / overlap (GIN);
 * - name prefix: LIKE with the prefix's own %, _ and \ escaped
 *   (text_pattern_ops btree);
 * - metric ranges: `metrics ? $name` (GIN) and a numeric comparison;
 * - inline JSON: containment and path conditions (./json-filter.ts).
 *
 * Filters reach it validated (the service's validateFilter refuses, among
 * others, text holding a NUL character, which Postgres cannot take).
 */
export function applyFilter<O>(query: SelectQueryBuilder<Database, "artifacts", O>, filter: ArtifactFilter): SelectQueryBuilder<Database, "artifacts", O> {
  let q = query;
  if (!filter.includeDeleted) q = q.where("artifacts.deleted_at", "is", null);
  if (filter.kind) q = q.where("artifacts.kind", "=", filter.kind);
  if (filter.artifactClass) q = q.where("artifacts.artifact_class", "=", filter.artifactClass);
  if (filter.mimeType) q = q.where("artifacts.mime_type", "=", filter.mimeType);
  if (filter.namePrefix) q = q.where("artifacts.name", "like", `${escapeLike(filter.namePrefix)}%`);
  if (filter.name !== undefined) q = q.where("artifacts.name", "=", filter.name);
  if (filter.project !== undefined) q = q.where("artifacts.project", "=", filter.project);
  if (filter.status) q = q.where("artifacts.status", "=", filter.status);
  if (filter.storage) q = q.where("artifacts.storage", "=", filter.storage);
  if (filter.pinned !== undefined) q = q.where("artifacts.pinned", "=", filter.pinned);
  if (filter.createdAfter) q = q.where("artifacts.created_at", ">=", filter.createdAfter);
  if (filter.createdBefore) q = q.where("artifacts.created_at", "<", filter.createdBefore);
  for (const field of PROVENANCE_FIELDS) {
    const value = filter.provenance?.[field];
    if (value) q = q.where(`artifacts.${field}`, "=", value);
  }
  if (filter.labels && Object.keys(filter.labels).length > 0) {
    q = q.where(sql<boolean>`artifacts.labels @> ${JSON.stringify(filter.labels)}::jsonb`);
  }
  if (filter.tagsAll && filter.tagsAll.length > 0) q = q.where(sql<boolean>`artifacts.tags @> ${[...filter.tagsAll]}::text[]`);
  if (filter.tagsAny && filter.tagsAny.length > 0) q = q.where(sql<boolean>`artifacts.tags && ${[...filter.tagsAny]}::text[]`);
  for (const range of filter.metricRanges ?? []) {
    q = q.where(sql<boolean>`artifacts.metrics ? ${range.name}`);
    if (range.min !== undefined) q = q.where(sql<boolean>`(artifacts.metrics ->> ${range.name})::float8 >= ${range.min}`);
    if (range.max !== undefined) q = q.where(sql<boolean>`(artifacts.metrics ->> ${range.name})::float8 <= ${range.max}`);
  }
  for (const term of jsonFilterTerms(filter.inlineJsonContains, filter.jsonConditions ?? [])) q = q.where(term);
  return q;
}

/** LIKE's default escape character is backslash. */
function escapeLike(text: string): string {
  return text.replace(/[\\%_]/g, (c) => `\\${c}`);
}
