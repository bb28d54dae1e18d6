import { sql, type Kysely } from "kysely";
import type { ArtifactFilter } from "../../artifact.ts";
import { applyFilter } from "./artifact-filter.ts";
import { ARTIFACT_COLUMNS, type Queryable } from "./artifact-rows.ts";
import type { Database } from "./schema.ts";

/**
 * The store's read queries, built but not run: ./kysely-artifact-queries.ts executes
 * them, and `npm run bench:query` explains exactly these, so the plans it
 * reports are the ones production runs.
 */
/** A tenant's artifacts, every column the store maps; in a transaction too. */
export const selectArtifacts = (q: Queryable, tenantId: string) => q.selectFrom("artifacts").select(ARTIFACT_COLUMNS).where("tenant_id", "=", tenantId);

/** One page of a filtered list, newest first, after `cursor` (keyset pagination). */
export function listQuery(db: Kysely<Database>, tenantId: string, filter: ArtifactFilter, cursor: { createdAt: Date; id: string } | undefined, limit: number) {
  let query = applyFilter(selectArtifacts(db, tenantId), filter);
  if (cursor) {
    query = query.where((eb) => eb.or([eb("created_at", "<", cursor.createdAt), eb.and([eb("created_at", "=", cursor.createdAt), eb("id", "<", cursor.id)])]));
  }
  return query.orderBy("created_at", "desc").orderBy("id", "desc").limit(limit);
}

/** Full-text search ranked by ts_rank_cd, newest first among equals. */
export function searchQuery(db: Kysely<Database>, tenantId: string, text: string, filter: ArtifactFilter, offset: number, limit: number) {
  const tsquery = sql`websearch_to_tsquery('english', ${text})`;
  return applyFilter(selectArtifacts(db, tenantId), filter)
    .where(sql<boolean>`search @@ ${tsquery}`)
    .orderBy(sql`ts_rank_cd(search, ${tsquery})`, "desc")
    .orderBy("created_at", "desc")
    .orderBy("id", "desc")
    .offset(offset)
    .limit(limit);
}

/** The artifact of `kind` with the highest (or lowest) numeric `metric`; newest wins ties. */
export function bestQuery(db: Kysely<Database>, tenantId: string, kind: string, metric: string, minimize: boolean, filter: ArtifactFilter) {
  return applyFilter(selectArtifacts(db, tenantId), { ...filter, kind })
    .where(sql<boolean>`metrics ? ${metric}`)
    .where(sql<boolean>`jsonb_typeof(metrics -> ${metric}) = 'number'`)
    .orderBy(sql`(metrics ->> ${metric})::float8`, minimize ? "asc" : "desc")
    .orderBy("created_at", "desc")
    .orderBy("id", "desc")
    .limit(1);
}
