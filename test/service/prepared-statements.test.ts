import { sql } from "kysely";
import { afterAll, beforeAll, expect, it } from "vitest";
import { openDatabase } from "../../src/adapters/metadata/open-metadata-store.ts";
import { PREPARED_STATEMENT_MARK } from "../../src/adapters/metadata/prepared-statements.ts";
import { createTestDatabase } from "../support/postgres.ts";
import { describeOn } from "../support/test-backends.ts";

/**
 * Statements marked PREPARED_STATEMENT_MARK (src/adapters/metadata/prepared-statements.ts)
 * reach Postgres as named statements, prepared once per connection; others
 * stay unnamed.
 */
describeOn("postgres+minio")("prepared statements on the Postgres pool", () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let opened: Awaited<ReturnType<typeof openDatabase>>;
  beforeAll(async () => {
    database = await createTestDatabase();
    // One connection: every statement below runs in the session whose prepared statements it reads.
    opened = await openDatabase({ databaseUrl: database.url, pgliteDir: "", poolSize: 1, migrate: false });
  });
  afterAll(async () => {
    await opened?.db.destroy();
    await opened?.close();
    await database?.drop();
  });

  it("prepares a marked text once per connection and binds it on every later call", async () => {
    const marked = (n: number) => sql<{ n: number }>`${sql.raw(PREPARED_STATEMENT_MARK)}select ${n}::int4 as n`.execute(opened.db);
    const answers = [await marked(1), await marked(2), await marked(3)].map((r) => r.rows[0]!.n);
    await sql`select ${4}::int4 as n`.execute(opened.db);
    const { rows } = await sql<{ name: string; statement: string }>`select name, statement from pg_prepared_statements`.execute(opened.db);
    expect(answers).toEqual([1, 2, 3]);
    expect(rows).toHaveLength(1);
    expect(rows[0]!.name).toMatch(/^artifactd_\d+$/);
    expect(rows[0]!.statement.startsWith(PREPARED_STATEMENT_MARK)).toBe(true);
  });
});
