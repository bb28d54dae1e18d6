/**
 * Query plans and timings on a large artifacts table: `npm run bench:query`
 * (`-- --rows N`, default 1,000,000; `-- --json` ends with one JSON line).
 *
 * Makes a fresh Postgres database (DATABASE_URL's server, default
 * 127.0.0.1:5432), runs the real migrations, fills it with generated
 * artifacts spread over 20 tenants, then for each main filter runs the
 * store's own query (the same kysely code the service runs, bound
 * parameters and all) several times and prints the median time, with the
 * plan's index use from EXPLAIN (ANALYZE, BUFFERS).
 */
import { Kysely, PostgresDialect, sql } from "kysely";
import pg from "pg";
import type { ArtifactFilter } from "../../src/artifact.ts";
import { bestQuery, listQuery, metricOrderQuery, searchQuery } from "../../src/adapters/metadata/artifact-query-builders.ts";
import { createKyselyMetadataStore } from "../../src/adapters/metadata/kysely-metadata-store.ts";
import { migrateToLatest } from "../../src/adapters/metadata/open-metadata-store.ts";
import { decodeMetricToken } from "../../src/adapters/metadata/page-token.ts";
import type { Database } from "../../src/adapters/metadata/schema.ts";
import { createTestDatabase } from "../support/postgres.ts";

const args = process.argv.slice(2);
const rows = Number(args[args.indexOf("--rows") + 1] || 0) || 1_000_000;
const json = args.includes("--json");

const database = await createTestDatabase();
const pool = new pg.Pool({ connectionString: database.url, max: 4 });
const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
try {
  await migrateToLatest(db);
  const started = Date.now();
  console.log(`filling ${rows.toLocaleString()} artifacts…`);
  // Generated in SQL: 20 tenants (g % 20), and within a tenant (h = g / 20)
  // 12 kinds, runs of 50 artifacts, a few labels, tags and metrics per row,
  // names and titles with words to search, inline JSON on every other row.
  const batch = 100_000;
  for (let offset = 0; offset < rows; offset += batch) {
    await sql`
      insert into artifacts (id, tenant_id, kind, artifact_class, name, title, mime_type, size_bytes, blake3, storage,
        inline_text, inline_json, labels, tags, metrics, pinned, status, run_id, graph_id, node_id, user_id, app_id, session_id,
        created_at, created_by)
      select
        'art_' || lpad(to_hex(g), 26, '0'),
        'tenant-' || (g % 20),
        (array['model','dataset','log','report','image','video','audio','doc','metric','chart','config','trace'])[1 + h % 12],
        (array['visual','video','research','knowledge',''])[1 + h % 5],
        (array['resnet','bert','forecast','revenue','churn','summary','weekly','eval'])[1 + h % 8] || '-' || h,
        (array['quarterly revenue report','training run metrics','customer churn model','image batch','weekly summary'])[1 + h % 5],
        'application/octet-stream', 100 + g % 1000, md5(g::text) || md5((g + 1)::text), 'inline', 'x',
        case when h % 2 = 0 then jsonb_build_object('rows', h % 5000, 'status', (array['ok','failed','partial'])[1 + h % 3],
          'eval', jsonb_build_object('f1', (h % 997) / 997.0), 'note', (array['weekly summary','backfill','rerun after outage'])[1 + h % 3]) end,
        jsonb_build_object('team', 'team-' || (h % 50), 'env', (array['prod','dev','staging'])[1 + h % 3], 'split', (array['train','test'])[1 + h % 2]),
        array['t' || (h % 100), 'w' || (h % 7)],
        jsonb_build_object('accuracy', (h % 1000) / 1000.0, 'loss', (h % 777) / 777.0),
        h % 97 = 0, (array['draft','review','approved','rejected'])[1 + h % 4],
        'run-' || (h / 50), 'graph-' || (h / 500), 'node-' || (h % 40), 'user-' || (h % 300), 'app-' || (h % 5), 'session-' || (h / 20),
        timestamptz '2026-01-01' + (g || ' seconds')::interval, 'bench'
      from (select g, g / 20 as h from generate_series(${offset}::int, ${Math.min(offset + batch, rows) - 1}::int) as g) as numbers`.execute(db);
    process.stdout.write(`  ${Math.min(offset + batch, rows).toLocaleString()}\r`);
  }
  await sql`vacuum analyze artifacts`.execute(db);
  await sql`vacuum analyze artifact_metrics`.execute(db);
  console.log(`filled in ${((Date.now() - started) / 1000).toFixed(1)} s`);

  const store = createKyselyMetadataStore(db);
  const tenant = "tenant-7";
  const cases: { name: string; run: () => Promise<unknown>; explain: () => Promise<string[]> }[] = [];
  // The plans explained are those of the store's own queries (artifact-queries.ts), as the store runs them.
  const listCase = (name: string, filter: ArtifactFilter) =>
    cases.push({
      name,
      run: () => store.listArtifacts(tenant, filter, { pageSize: 50, pageToken: "" }),
      explain: () => explain(listQuery(db, tenant, filter, undefined, 51)),
    });
  listCase("newest page (no filter)", {});
  listCase("kind", { kind: "model" });
  listCase("run_id", { provenance: { run_id: "run-507" } });
  listCase("user_id + kind", { provenance: { user_id: "user-27" }, kind: "report" });
  listCase("labels (2 keys)", { labels: { team: "team-7", env: "dev" } });
  listCase("tags all", { tagsAll: ["t7", "w0"] });
  listCase("name prefix", { namePrefix: "revenue-3" });
  listCase("status + pinned", { status: "approved", pinned: true });
  listCase("metric range + kind", { kind: "model", metricRanges: [{ name: "accuracy", min: 0.99, max: undefined }] });
  listCase("created window", { createdAfter: new Date("2026-01-05T00:00:00Z"), createdBefore: new Date("2026-01-05T01:00:00Z") });
  cases.push({
    name: "search 'revenue report'",
    run: () => store.searchArtifacts(tenant, "revenue report", {}, { pageSize: 50, pageToken: "" }),
    explain: () => explain(searchQuery(db, tenant, "revenue report", {}, undefined, 51)),
  });
  cases.push({
    name: "search name fragment 'nue-1234'",
    run: () => store.searchArtifacts(tenant, "nue-1234", {}, { pageSize: 50, pageToken: "" }),
    explain: () => explain(searchQuery(db, tenant, "nue-1234", {}, undefined, 51)),
  });
  const byAccuracy = { metric: "accuracy", ascending: false };
  cases.push({
    name: "list by metric accuracy, first page",
    run: () => store.listArtifacts(tenant, {}, { pageSize: 50, pageToken: "" }, byAccuracy),
    explain: () => explain(metricOrderQuery(db, tenant, {}, byAccuracy, undefined, 51)),
  });
  // The token of page 21 (rows 1,001–1,050), fetched page by page as a client would.
  let laterToken = "";
  for (let page = 0; page < 20; page++) laterToken = (await store.listArtifacts(tenant, {}, { pageSize: 50, pageToken: laterToken }, byAccuracy)).nextPageToken;
  cases.push({
    name: "list by metric accuracy, page 21 (keyset)",
    run: () => store.listArtifacts(tenant, {}, { pageSize: 50, pageToken: laterToken }, byAccuracy),
    explain: () => explain(metricOrderQuery(db, tenant, {}, byAccuracy, decodeMetricToken(laterToken, byAccuracy), 51)),
  });
  listCase("JSON containment {rows: 1234, status: ok}", { inlineJsonContains: '{"rows": 1234, "status": "ok"}' });
  listCase("JSON path $.eval.f1 >= 0.99", { jsonConditions: [{ path: "$.eval.f1", comparison: "ge", value: "0.99" }] });
  listCase("JSON path $.rows == 1234", { jsonConditions: [{ path: "$.rows", comparison: "eq", value: "1234" }] });
  cases.push({
    name: "best model by accuracy in a run",
    run: () => store.bestArtifacts(tenant, "model", "accuracy", false, { provenance: { run_id: "run-507" } }, 1),
    explain: () => explain(bestQuery(db, tenant, "model", "accuracy", false, { provenance: { run_id: "run-507" } })),
  });
  cases.push({
    name: "best model by accuracy (whole tenant)",
    run: () => store.bestArtifacts(tenant, "model", "accuracy", false, {}, 1),
    explain: () => explain(bestQuery(db, tenant, "model", "accuracy", false, {})),
  });
  cases.push({
    name: "best top-10 models by accuracy",
    run: () => store.bestArtifacts(tenant, "model", "accuracy", false, {}, 10),
    explain: () => explain(bestQuery(db, tenant, "model", "accuracy", false, {}, 10)),
  });

  const results: Record<string, { median_ms: number; indexes: string[] }> = {};
  for (const c of cases) {
    await c.run();
    const times: number[] = [];
    for (let i = 0; i < 7; i++) {
      const t0 = performance.now();
      await c.run();
      times.push(performance.now() - t0);
    }
    times.sort((a, b) => a - b);
    const plan = await c.explain();
    const indexes = [
      ...new Set(plan.flatMap((line) => [...line.matchAll(/(?:Index(?: Only)? Scan|Bitmap Index Scan)(?: Backward)? (?:using|on) (\w+)/g)].map((m) => m[1]!))),
    ];
    results[c.name] = { median_ms: Number(times[3]!.toFixed(2)), indexes };
    console.log(`\n== ${c.name}: median ${times[3]!.toFixed(2)} ms (7 runs)\n${plan.map((l) => `   ${l}`).join("\n")}`);
  }
  console.log("\n| query | median ms | indexes used |\n|---|---|---|");
  for (const [name, r] of Object.entries(results)) console.log(`| ${name} | ${r.median_ms} | ${r.indexes.join(", ") || "(sequential scan)"} |`);
  if (json) console.log(JSON.stringify({ rows, queries: results }));
} finally {
  await db.destroy();
  await database.drop();
}

async function explain(query: { compile(): { sql: string; parameters: readonly unknown[] } }): Promise<string[]> {
  const compiled = query.compile();
  const result = await pool.query(`explain (analyze, buffers, costs off) ${compiled.sql}`, [...compiled.parameters]);
  return result.rows.map((r: Record<string, string>) => r["QUERY PLAN"]!);
}
