import { type Kysely, Migrator, sql } from "kysely";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, expect, it } from "vitest";
import { createKyselyMetadataStore } from "../../src/adapters/metadata/kysely-metadata-store.ts";
import { migrationProvider } from "../../src/adapters/metadata/migrations/index.ts";
import { openDatabase } from "../../src/adapters/metadata/open-metadata-store.ts";
import type { Database } from "../../src/adapters/metadata/schema.ts";
import { createTestDatabase } from "../support/postgres.ts";
import { describeOn } from "../support/test-backends.ts";

/**
 * Migration 20261213010000_search_and_json on a database that already holds
 * artifacts: the generated search columns are computed for the rows there,
 * their metrics are copied into artifact_metrics, and it goes down and up
 * again cleanly; on Postgres and on embedded PGlite.
 */
const SEARCH_AND_JSON = "20261213010000_search_and_json";
const BEFORE = Object.keys(await migrationProvider.getMigrations())
  .sort()
  .filter((name) => name < SEARCH_AND_JSON)
  .at(-1)!;

for (const database of ["postgres", "pglite"] as const)
  describeOn(database === "postgres" ? "postgres+minio" : "pglite+fs")(`migration ${SEARCH_AND_JSON} on ${database} with artifacts in it`, () => {
    const cleanups: Array<() => Promise<void>> = [];
    afterEach(async () => {
      for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
    });

    it("indexes the artifacts already there for search, metric order and JSON filters, and goes down and up again", async () => {
      let databaseUrl: string | undefined;
      const dir = mkdtempSync(path.join(os.tmpdir(), "artifactd-search-migration-"));
      cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
      if (database === "postgres") {
        const created = await createTestDatabase();
        cleanups.push(created.drop);
        databaseUrl = created.url;
      }
      const { db, close } = await openDatabase({ databaseUrl, pgliteDir: path.join(dir, "pglite"), poolSize: 1, migrate: false });
      cleanups.push(async () => {
        await db.destroy();
        await close();
      });
      const migrator = new Migrator({ db, provider: migrationProvider });
      expect((await migrator.migrateTo(BEFORE)).error).toBeUndefined();
      await insert(db, "art_00000000000000000000000001", "nc-file.bin", { acc: 0.4 }, '{"status": "ok", "rows": 7}');
      await insert(db, "art_00000000000000000000000002", "report", { acc: 0.8, loss: 1 }, null);
      await insert(db, "art_00000000000000000000000003", "notes", {}, null);

      expect((await migrator.migrateToLatest()).error).toBeUndefined();
      const store = createKyselyMetadataStore(db);
      const ids = (page: { items: { id: string }[] }) => page.items.map((a) => a.id);
      const first = { pageSize: 10, pageToken: "" };
      expect(ids(await store.searchArtifacts("t", "nc-fi", {}, first))).toEqual(["art_00000000000000000000000001"]);
      expect(ids(await store.listArtifacts("t", {}, first, { metric: "acc", ascending: false }))).toEqual([
        "art_00000000000000000000000002",
        "art_00000000000000000000000001",
        "art_00000000000000000000000003",
      ]);
      expect(ids(await store.listArtifacts("t", { jsonConditions: [{ path: "$.rows", comparison: "ge", value: "7" }] }, first))).toEqual([
        "art_00000000000000000000000001",
      ]);
      const metrics = await db.selectFrom("artifact_metrics").select(["artifact_id", "metric", "value"]).orderBy("artifact_id").orderBy("metric").execute();
      expect(metrics).toEqual([
        { artifact_id: "art_00000000000000000000000001", metric: "acc", value: 0.4 },
        { artifact_id: "art_00000000000000000000000002", metric: "acc", value: 0.8 },
        { artifact_id: "art_00000000000000000000000002", metric: "loss", value: 1 },
      ]);

      // Down to before it: the migrations after it go first, then it.
      const down = await migrator.migrateTo(BEFORE);
      expect(down.error).toBeUndefined();
      expect(down.results?.map((r) => r.migrationName).at(-1)).toBe(SEARCH_AND_JSON);
      const tables = await sql<{ name: string }>`select table_name as name from information_schema.tables where table_name = 'artifact_metrics'`.execute(db);
      expect(tables.rows).toEqual([]);
      expect((await migrator.migrateToLatest()).error).toBeUndefined();
      expect(ids(await store.searchArtifacts("t", "file", {}, first))).toEqual(["art_00000000000000000000000001"]);
    });
  });

async function insert(db: Kysely<Database>, id: string, name: string, metrics: Record<string, number>, json: string | null): Promise<void> {
  await sql`insert into artifacts (id, tenant_id, kind, name, mime_type, size_bytes, blake3, storage, inline_text, inline_json, metrics, status, created_at, created_by)
    values (${id}, 't', 'item', ${name}, 'application/json', 1, ${"c".repeat(64)}, 'inline', ${json ?? "x"}, ${json}::jsonb, ${JSON.stringify(metrics)}::jsonb, 'draft',
      ${new Date(Date.parse("2026-01-01T00:00:00Z") + Number(id.slice(-1)) * 1000)}, 'test')`.execute(db);
}
