import { sql, type Kysely, type RawBuilder } from "kysely";
import type { Artifact, ArtifactFilter, ArtifactOrder, LineageEdge } from "../../artifact.ts";
import type { ArtifactQueries, LineageTooLarge, Page, PageRequest } from "../../ports/artifact-queries.ts";
import { applyFilter } from "./artifact-filter.ts";
import { bestQuery, listQuery, metricOrderQuery, missingMetricQuery, searchQuery, searchTerms, selectArtifacts } from "./artifact-query-builders.ts";
import { type ArtifactRow, toArtifacts } from "./artifact-rows.ts";
import { decodeKeysetToken, decodeMetricToken, decodeRankToken, encodeKeysetToken, encodeMetricToken, encodeRankToken, pageOf } from "./page-token.ts";
import type { Database } from "./schema.ts";

/**
 * Reading a tenant's artifacts on kysely (Postgres and PGlite). The list,
 * search and best queries are built in ./artifact-query-builders.ts, where
 * the query benchmark explains the same SQL. Lists page by keyset
 * (created_at, id), so a page is as cheap at the end as at the start;
 * search pages by keyset too, on (rank, created_at, id); orders by a metric
 * page on (value, created_at, id), then on (created_at, id) through the
 * artifacts without the metric.
 */
export function createKyselyArtifactQueries(db: Kysely<Database>): ArtifactQueries {
  return {
    async getArtifact(tenantId, id, { includeContent = false } = {}) {
      const row = await selectArtifacts(db, tenantId)
        .$if(includeContent, (q) => q.select(["inline_text", "inline_json", "inline_bytes"]))
        .where("id", "=", id)
        .executeTakeFirst();
      return row && (await toArtifacts(db, [row], includeContent))[0];
    },

    async listArtifacts(tenantId, filter, page, order) {
      if (order) return metricOrderPage(db, tenantId, filter, order, page);
      const cursor = page.pageToken === "" ? undefined : decodeKeysetToken(page.pageToken);
      const rows = await listQuery(db, tenantId, filter, cursor, page.pageSize + 1).execute();
      const { rows: pageRows, nextPageToken } = pageOf(rows, page.pageSize, (last) => encodeKeysetToken({ createdAt: new Date(last.created_at), id: last.id }));
      return { items: await toArtifacts(db, pageRows), nextPageToken };
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

    async searchArtifacts(tenantId, text, filter, page, order) {
      if (order) return metricOrderPage(db, tenantId, filter, order, page, searchTerms(text).matches);
      const cursor = page.pageToken === "" ? undefined : decodeRankToken(page.pageToken);
      const rows = await searchQuery(db, tenantId, text, filter, cursor, page.pageSize + 1).execute();
      const { rows: pageRows, nextPageToken } = pageOf(rows, page.pageSize, (last) =>
        encodeRankToken({ rank: Number(last.search_rank), createdAt: new Date(last.created_at), id: last.id }),
      );
      return { items: await toArtifacts(db, pageRows), nextPageToken };
    },

    async bestArtifacts(tenantId, kind, metric, minimize, filter, limit) {
      return toArtifacts(db, await bestQuery(db, tenantId, kind, metric, minimize, filter, limit).execute());
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
  };
}

/**
 * A page in a metric's order: the artifacts having it, then (once those run
 * out, on this page or a later one) those without it, newest first. The
 * token says which part it continues.
 */
async function metricOrderPage(
  db: Kysely<Database>,
  tenantId: string,
  filter: ArtifactFilter,
  order: ArtifactOrder,
  page: PageRequest,
  also?: RawBuilder<boolean>,
): Promise<Page<Artifact>> {
  const cursor = page.pageToken === "" ? undefined : decodeMetricToken(page.pageToken, order);
  const wanted = page.pageSize + 1;
  const withMetric = cursor && cursor.value === undefined ? [] : await metricOrderQuery(db, tenantId, filter, order, cursor, wanted, also).execute();
  const tailCursor = cursor && cursor.value === undefined ? cursor : undefined;
  const without =
    withMetric.length < wanted ? await missingMetricQuery(db, tenantId, filter, order.metric, tailCursor, wanted - withMetric.length, also).execute() : [];
  const rows: (ArtifactRow & { order_value?: number })[] = [...withMetric, ...without];
  const { rows: pageRows, nextPageToken } = pageOf(rows, page.pageSize, (last) => {
    const value = withMetric.includes(last as (typeof withMetric)[number]) ? Number(last.order_value) : undefined;
    return encodeMetricToken(order, { value, createdAt: new Date(last.created_at), id: last.id });
  });
  return { items: await toArtifacts(db, pageRows), nextPageToken };
}
