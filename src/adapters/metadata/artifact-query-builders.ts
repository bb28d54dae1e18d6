import { sql, type Kysely, type RawBuilder, type SelectQueryBuilder } from "kysely";
import type { ArtifactFilter, ArtifactOrder } from "../../artifact.ts";
import { applyFilter } from "./artifact-filter.ts";
import { ARTIFACT_COLUMNS, type Queryable } from "./artifact-rows.ts";
import type { MetricCursor, NewestCursor, RankCursor } from "./page-token.ts";
import type { Database } from "./schema.ts";

/**
 * The store's read queries, built but not run: ./kysely-artifact-queries.ts executes
 * them, and `npm run bench:query` explains exactly these, so the plans it
 * reports are the ones production runs.
 */
/** A tenant's artifacts, every column the store maps; in a transaction too. */
export const selectArtifacts = (q: Queryable, tenantId: string) => q.selectFrom("artifacts").select(ARTIFACT_COLUMNS).where("tenant_id", "=", tenantId);

/** One page of a filtered list, newest first, after `cursor` (keyset pagination). */
export function listQuery(db: Kysely<Database>, tenantId: string, filter: ArtifactFilter, cursor: NewestCursor | undefined, limit: number) {
  return newestAfter(applyFilter(selectArtifacts(db, tenantId), filter), cursor).limit(limit);
}

function newestAfter<O>(query: SelectQueryBuilder<Database, "artifacts", O>, cursor: NewestCursor | undefined) {
  let q = query;
  if (cursor) {
    q = q.where((eb) =>
      eb.or([
        eb("artifacts.created_at", "<", cursor.createdAt),
        eb.and([eb("artifacts.created_at", "=", cursor.createdAt), eb("artifacts.id", "<", cursor.id)]),
      ]),
    );
  }
  return q.orderBy("artifacts.created_at", "desc").orderBy("artifacts.id", "desc");
}

/**
 * What a search matches, and how it ranks. Matches any of:
 * - the query as a fragment (substring, case-insensitive, % and _ literal)
 *   of `search_text`: name, title, kind, tags and label values
 *   (trigram GIN artifacts_search_text), so `nc-fi`, `file` and `nc-file`
 *   all find `nc-file.bin`;
 * - its words (websearch_to_tsquery: words, "phrases", -not) in name, title
 *   and labels (`search`, stemmed: `reports` finds `report`), or in inline
 *   text and inline JSON values (`content_search`).
 * Rank, highest first: 20 for a name equal to the query, 10 for a name
 * starting with it, plus trigram word similarity of the query to the name
 * and to the title (0–1 each, the title's weighed less), plus the text rank
 * in name/title/labels and, weighed half, in the content (each normalised to
 * 0–1). Computed in float8 the same way on every page, so it is a keyset.
 */
export function searchTerms(text: string): { matches: RawBuilder<boolean>; rank: RawBuilder<number> } {
  const tsquery = sql`websearch_to_tsquery('english', ${text})`;
  const fragment = `%${escapeLike(text)}%`;
  const prefix = `${escapeLike(text)}%`;
  return {
    matches: sql<boolean>`(artifacts.search_text like lower(${fragment}) or artifacts.search @@ ${tsquery} or artifacts.content_search @@ ${tsquery})`,
    rank: sql<number>`(
      case when lower(artifacts.name) = lower(${text}) then 20 when lower(artifacts.name) like lower(${prefix}) then 10 else 0 end
      + word_similarity(${text}, artifacts.name) + 0.5 * word_similarity(${text}, artifacts.title)
      + ts_rank_cd(artifacts.search, ${tsquery}, 32) + 0.5 * ts_rank_cd(artifacts.content_search, ${tsquery}, 32)
    )::float8`,
  };
}

/** One page of a search by relevance, then newest first among equal ranks, after `cursor`. */
export function searchQuery(db: Kysely<Database>, tenantId: string, text: string, filter: ArtifactFilter, cursor: RankCursor | undefined, limit: number) {
  const { matches, rank } = searchTerms(text);
  let query = applyFilter(selectArtifacts(db, tenantId), filter).select(rank.as("search_rank")).where(matches);
  if (cursor) query = query.where(sql<boolean>`(${rank}, artifacts.created_at, artifacts.id) < (${cursor.rank}::float8, ${cursor.createdAt}, ${cursor.id})`);
  return query.orderBy(sql`search_rank`, "desc").orderBy("artifacts.created_at", "desc").orderBy("artifacts.id", "desc").limit(limit);
}

/**
 * One page of artifacts having the metric, in its order (newest first among
 * equal values), after `cursor`. Reads artifact_metrics through the index of
 * the order's direction (artifact_metrics_desc / _asc), joined to the
 * artifacts it names, so a page costs about its own rows whatever its depth:
 * the keyset's value bound (`value <= v` or `>= v`) is an index condition,
 * the exact keyset a filter on the few rows of equal value.
 * `also` is an extra term (a search's match).
 */
export function metricOrderQuery(
  db: Kysely<Database>,
  tenantId: string,
  filter: ArtifactFilter,
  order: ArtifactOrder,
  cursor: MetricCursor | undefined,
  limit: number,
  also?: RawBuilder<boolean>,
) {
  const joined = db
    .selectFrom("artifacts")
    .innerJoin("artifact_metrics as m", "m.artifact_id", "artifacts.id")
    .select(ARTIFACT_COLUMNS.map((column) => `artifacts.${column}` as const))
    .select("m.value as order_value")
    .where("m.tenant_id", "=", tenantId)
    .where("m.metric", "=", order.metric);
  // applyFilter writes every term on artifacts.<column>, which the join leaves unambiguous.
  let query = applyFilter(joined as unknown as SelectQueryBuilder<Database, "artifacts", object>, filter) as unknown as typeof joined;
  // artifact_metrics rows carry their artifact's tenant (the trigger copies it from the row itself), so the
  // tenant on artifacts is redundant, and the planner, counting the tenant's share a second time, expects
  // about one match per tenant in the metric's index where there is one per entry: it would then sort the
  // tenant's artifacts of a kind rather than read the index for the first ten. It is said only for filters
  // whose own index leads with the tenant and is narrow (a run, a user, a status, a time window, a name
  // prefix), so that one run's best is found from the run's few artifacts, not by walking the whole order.
  if (narrowsByTenantIndex(filter)) query = query.where("artifacts.tenant_id", "=", tenantId);
  if (also) query = query.where(also);
  if (cursor?.value !== undefined) {
    const { value, createdAt, id } = cursor;
    const beyond = order.ascending ? sql`>` : sql`<`;
    query = query
      .where("m.value", order.ascending ? ">=" : "<=", value)
      .where(sql<boolean>`(m.value ${beyond} ${value}::float8 or (m.value = ${value}::float8 and (m.created_at, m.artifact_id) < (${createdAt}, ${id})))`);
  }
  return query
    .orderBy("m.value", order.ascending ? "asc" : "desc")
    .orderBy("m.created_at", "desc")
    .orderBy("m.artifact_id", "desc")
    .limit(limit);
}

/** One page of the order's tail: the artifacts without the metric, newest first, after `cursor`. */
export function missingMetricQuery(
  db: Kysely<Database>,
  tenantId: string,
  filter: ArtifactFilter,
  metric: string,
  cursor: NewestCursor | undefined,
  limit: number,
  also?: RawBuilder<boolean>,
) {
  let query = applyFilter(selectArtifacts(db, tenantId), filter).where(sql<boolean>`not (artifacts.metrics ? ${metric})`);
  if (also) query = query.where(also);
  return newestAfter(query, cursor).limit(limit);
}

/** The `limit` artifacts of `kind` with the highest (or lowest) numeric `metric`; newest wins ties. */
export function bestQuery(db: Kysely<Database>, tenantId: string, kind: string, metric: string, minimize: boolean, filter: ArtifactFilter, limit = 1) {
  return metricOrderQuery(db, tenantId, { ...filter, kind }, { metric, ascending: minimize }, undefined, limit);
}

function narrowsByTenantIndex(filter: ArtifactFilter): boolean {
  const provenance = Object.values(filter.provenance ?? {}).some((value) => value);
  return provenance || filter.status !== undefined || filter.pinned === true || Boolean(filter.namePrefix || filter.createdAfter || filter.createdBefore);
}

/** LIKE's default escape character is backslash. */
function escapeLike(text: string): string {
  return text.replace(/[\\%_]/g, (c) => `\\${c}`);
}
