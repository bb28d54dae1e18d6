import { randomBytes } from "node:crypto";
import { Kysely, PostgresDialect, sql } from "kysely";
import pg from "pg";
import { afterAll, beforeAll, expect, it } from "vitest";
import { bestQuery, listQuery, metricOrderQuery, searchTerms } from "../../src/adapters/metadata/artifact-query-builders.ts";
import { migrateToLatest } from "../../src/adapters/metadata/open-metadata-store.ts";
import type { Database } from "../../src/adapters/metadata/schema.ts";
import type { ArtifactFilter } from "../../src/artifact.ts";
import { createTestDatabase } from "../support/postgres.ts";
import { describeOn } from "../support/test-backends.ts";

/**
 * The store's own queries (the builders the service runs) use the indexes
 * migration 20261213010000_search_and_json made for them, on a table large
 * enough that a sequential scan would cost the planner more: 20,000
 * artifacts over 2 tenants, made in one INSERT … SELECT.
 * And the migration's handling of pg_trgm for a role that may not add it.
 */
describeOn("postgres+minio")("search and JSON indexes on Postgres", () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let pool: pg.Pool;
  let db: Kysely<Database>;
  beforeAll(async () => {
    database = await createTestDatabase();
    pool = new pg.Pool({ connectionString: database.url, max: 2 });
    // The database is dropped with (force) at the end: a connection still closing hears it terminated.
    pool.on("error", () => {});
    db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
    await migrateToLatest(db);
    await sql`
      insert into artifacts (id, tenant_id, kind, name, title, mime_type, size_bytes, blake3, storage, inline_text, inline_json,
        labels, tags, metrics, status, run_id, created_at, created_by)
      select 'art_' || lpad(to_hex(g), 26, '0'), 'tenant-' || (g % 2), (array['model','dataset','report','log'])[1 + g % 4],
        (array['resnet','bert','forecast','churn'])[1 + g % 4] || '-' || g, 'run ' || (g / 100), 'application/json', 10,
        md5(g::text) || md5((g + 1)::text), 'inline',
        '{}', jsonb_build_object('rows', g % 1000, 'status', (array['ok','failed'])[1 + g % 2], 'eval', jsonb_build_object('f1', (g % 97) / 97.0)),
        jsonb_build_object('team', 'team-' || (g % 30)), array['t' || (g % 50)],
        case when g % 10 = 0 then '{}'::jsonb else jsonb_build_object('accuracy', (g % 1000) / 1000.0) end,
        'draft', 'run-' || (g / 100), timestamptz '2026-01-01' + (g || ' seconds')::interval, 'test'
      from generate_series(1, 20000) as g`.execute(db);
    await sql`analyze artifacts`.execute(db);
    await sql`analyze artifact_metrics`.execute(db);
  }, 120_000);
  afterAll(async () => {
    await db?.destroy();
    await database?.drop();
  });

  const plan = async (query: { compile(): { sql: string; parameters: readonly unknown[] } }, settings = "") => {
    const compiled = query.compile();
    const client = await pool.connect();
    try {
      await client.query("begin");
      if (settings) await client.query(settings);
      const result = await client.query(`explain ${compiled.sql}`, [...compiled.parameters]);
      return result.rows.map((r: Record<string, string>) => r["QUERY PLAN"]!).join("\n");
    } finally {
      await client.query("rollback");
      client.release();
    }
  };
  const tenant = "tenant-1";

  it("can serve every match term of a search from an index: fragments by trigrams, words by the two tsvectors", async () => {
    // At this size reading the table costs the planner less than three GIN indexes (the benchmark shows its
    // choice at 1,000,000 rows); with that option taken away, and no tenant to narrow by, the store's own match
    // expression must be served by its indexes alone, or the plan would still read the table.
    const matches = db.selectFrom("artifacts").select("id").where(searchTerms("cast-1234").matches);
    const found = await plan(matches, "set local enable_seqscan = off");
    expect(found).toMatch(/BitmapOr/);
    for (const index of ["artifacts_search_text", "artifacts_search", "artifacts_content_search"]) {
      expect(found).toMatch(new RegExp(`Bitmap Index Scan on ${index}\\b`));
    }
    expect(found).not.toMatch(/Seq Scan/);
  });

  it("orders by a metric through artifact_metrics' index of that direction, on the first page and after a cursor", async () => {
    const order = { metric: "accuracy", ascending: false };
    expect(await plan(metricOrderQuery(db, tenant, {}, order, undefined, 51))).toMatch(/Index (Only )?Scan using artifact_metrics_desc/);
    const cursor = { value: 0.5, createdAt: new Date("2026-01-01T05:00:00Z"), id: "art_x" };
    expect(await plan(metricOrderQuery(db, tenant, {}, order, cursor, 51))).toMatch(/Index Cond: .*value <= /);
    expect(await plan(metricOrderQuery(db, tenant, {}, { ...order, ascending: true }, cursor, 51))).toMatch(/Index (Only )?Scan using artifact_metrics_asc/);
    expect(await plan(bestQuery(db, tenant, "model", "accuracy", false, {}, 10))).toMatch(/artifact_metrics_desc/);
  });

  it("ranks the best of a kind by walking the metric's index, not by sorting the kind's artifacts", async () => {
    const best = await plan(bestQuery(db, tenant, "log", "accuracy", false, {}, 10));
    expect(best).toMatch(/Index (Only )?Scan using artifact_metrics_desc/);
    expect(best).not.toMatch(/Sort/);
  });

  it("answers a metric order within one run from the run's artifacts, not by walking the tenant's metric index", async () => {
    const inRun = await plan(bestQuery(db, tenant, "log", "accuracy", false, { provenance: { run_id: "run-17" } }, 10));
    expect(inRun).toMatch(/Index Scan using artifacts_tenant_run_id/);
    expect(inRun).not.toMatch(/Scan using artifact_metrics_desc/);
  });

  it("matches JSON containment and path equality through the inline_json GIN index", async () => {
    const rare: ArtifactFilter = { inlineJsonContains: '{"rows": 123}' };
    expect(await plan(listQuery(db, tenant, rare, undefined, 51))).toMatch(/Bitmap Index Scan on artifacts_inline_json/);
    const path: ArtifactFilter = { jsonConditions: [{ path: "$.rows", comparison: "eq", value: "123" }] };
    expect(await plan(listQuery(db, tenant, path, undefined, 51))).toMatch(/Bitmap Index Scan on artifacts_inline_json/);
  });

  it("answers each of those queries as the plans promise", async () => {
    const rows = await listQuery(db, tenant, { jsonConditions: [{ path: "$.rows", comparison: "eq", value: "123" }] }, undefined, 100).execute();
    // g % 1000 = 123 implies g odd (tenant-1) and g % 4 = 3 (1000 is a multiple of 4): g = 123, 1123, … 19123, all of kind log, named churn-g.
    expect(rows.map((r) => r.name).sort()).toEqual(Array.from({ length: 20 }, (_, k) => `churn-${123 + 1000 * k}`).sort());
    // The tenant's highest accuracy is 0.999 (g % 1000 = 999, also ≡ 3 mod 4), held by 20 logs: newest first among them.
    const best = await bestQuery(db, tenant, "log", "accuracy", false, {}, 3).execute();
    expect(best.map((r) => r.name)).toEqual(["churn-19999", "churn-18999", "churn-17999"]);
    expect(best.map((r) => r.metrics.accuracy)).toEqual([0.999, 0.999, 0.999]);
  });
});

describeOn("postgres+minio")("the pg_trgm extension and the migrating role", () => {
  const role = `artifactd_test_role_${randomBytes(4).toString("hex")}`;
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let admin: pg.Pool;
  beforeAll(async () => {
    database = await createTestDatabase();
    admin = new pg.Pool({ connectionString: database.url, max: 1 });
    admin.on("error", () => {});
    // A role that owns nothing and may not CREATE in the database, as a locked-down service account.
    await admin.query(`create role ${role} login`);
    await admin.query(`grant usage, create on schema public to ${role}`);
  });
  afterAll(async () => {
    await admin?.query(`drop owned by ${role}`);
    await admin?.end();
    await database?.drop();
    const maintenance = new URL(database.url);
    maintenance.pathname = "/postgres";
    const client = new pg.Client({ connectionString: maintenance.toString() });
    await client.connect();
    await client.query(`drop role if exists ${role}`);
    await client.end();
  });

  it("stops with what an operator must do when the role may not add pg_trgm, and needs no privilege once it is there", async () => {
    const url = new URL(database.url);
    url.username = role;
    const asRole = new Kysely<Database>({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: url.toString(), max: 1 }) }) });
    try {
      await expect(migrateToLatest(asRole)).rejects.toThrow(
        /database migration 20261213010000_search_and_json failed: could not add the Postgres extension pg_trgm .*run `create extension pg_trgm;` in this database as its owner or a superuser, then migrate again/,
      );
      await admin.query("create extension pg_trgm");
      const applied = await migrateToLatest(asRole);
      expect(applied).toContain("20261213010000_search_and_json");
    } finally {
      await asRole.destroy();
    }
  });
});
