import { type Kysely, Migrator, sql } from "kysely";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, expect, it } from "vitest";
import { openDatabase } from "../../src/adapters/metadata/open-metadata-store.ts";
import { migrationProvider } from "../../src/adapters/metadata/migrations/index.ts";
import type { Database } from "../../src/adapters/metadata/schema.ts";
import { createTestDatabase } from "../support/postgres.ts";
import { createServiceProcess } from "../support/service-process.ts";
import { describeOn } from "../support/test-backends.ts";

/**
 * `artifactd serve` with ARTIFACTD_MIGRATE_ON_START=false on a database one
 * migration behind: the real command, as a child process, must exit at
 * start naming the pending migration and the command to run, and leave the
 * database exactly as it was (no migration applied, no table made, no
 * bootstrap token written). After `artifactd migrate` the same command
 * serves (checked on Postgres).
 */
const ALL = Object.keys(await migrationProvider.getMigrations()).sort();
const LATEST = ALL.at(-1)!;
const ONE_BEHIND = ALL.at(-2)!;

/** What a start could change in the database: the migrations applied and every table and column. */
async function schemaOf(db: Kysely<Database>) {
  const migrations = await sql<{ name: string }>`select name from kysely_migration order by name`.execute(db);
  const columns = await sql<{ table_name: string; column_name: string }>`
    select table_name, column_name from information_schema.columns where table_schema = 'public' order by table_name, column_name`.execute(db);
  return { migrations: migrations.rows.map((r) => r.name), columns: columns.rows.map((r) => `${r.table_name}.${r.column_name}`) };
}

for (const database of ["postgres", "pglite"] as const)
  describeOn(database === "postgres" ? "postgres+minio" : "pglite+fs")(`a server on ${database} with a migration pending`, () => {
    const cleanups: Array<() => Promise<void>> = [];
    afterEach(async () => {
      for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
    });

    it("refuses to start, naming the migration and `artifactd migrate`, and changes nothing (on Postgres, then serves once migrated)", async () => {
      const dataDir = mkdtempSync(path.join(os.tmpdir(), "artifactd-migrations-"));
      cleanups.push(async () => rmSync(dataDir, { recursive: true, force: true }));
      let databaseUrl: string | undefined;
      if (database === "postgres") {
        const created = await createTestDatabase();
        cleanups.push(created.drop);
        databaseUrl = created.url;
      }
      /** Opens the same database the server uses; PGlite allows one opener at a time, so it is closed between looks. */
      const withDatabase = async <T>(use: (db: Kysely<Database>) => Promise<T>): Promise<T> => {
        const { db, close } = await openDatabase({ databaseUrl, pgliteDir: path.join(dataDir, "pglite"), poolSize: 1, migrate: false });
        try {
          return await use(db);
        } finally {
          await db.destroy();
          await close();
        }
      };
      // The database as the release before left it.
      const before = await withDatabase(async (db) => {
        const { error } = await new Migrator({ db, provider: migrationProvider }).migrateTo(ONE_BEHIND);
        expect(error).toBeUndefined();
        return schemaOf(db);
      });
      expect(before.migrations).not.toContain(LATEST);

      const service = await createServiceProcess({
        logFile: path.join(dataDir, "service.log"),
        env: { ARTIFACTD_DATA_DIR: dataDir, ARTIFACTD_MIGRATE_ON_START: "false", ...(databaseUrl ? { DATABASE_URL: databaseUrl } : {}) },
      });
      cleanups.push(() => service.stop(5_000));
      const refused = await service.start().then(
        () => "it served",
        (error: unknown) => String(error),
      );
      expect(refused).toMatch(/the service exited at start/);
      const log = readFileSync(service.logFile, "utf8");
      expect(log).toContain(`the database is missing 1 migration(s) (${LATEST})`);
      expect(log).toContain("run `artifactd migrate`");
      expect(await withDatabase(schemaOf)).toEqual(before);
      expect(existsSync(path.join(dataDir, "bootstrap-token"))).toBe(false);

      // Each PGlite open costs seconds on a busy machine: that the named command fixes it is checked once, on Postgres.
      if (database === "postgres") {
        const migrated = await service.runCommand(["migrate"]);
        expect(migrated.code, migrated.stderr).toBe(0);
        expect((await withDatabase(schemaOf)).migrations).toEqual(ALL);
        await service.start();
        await service.stop(5_000);
      }
    }, 120_000);
  });
