import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createKyselyMetadataStore } from "../../src/adapters/metadata/kysely-metadata-store.ts";
import { migrateToLatest, openDatabase } from "../../src/adapters/metadata/open-metadata-store.ts";
import { blake3Hex } from "../../src/blake3.ts";
import type { MetadataStore } from "../../src/ports/metadata-store.ts";
import { newArtifactRecord } from "../../src/service/record-artifact.ts";
import { BASE_SPEC } from "../support/metadata-store-adapters.ts";
import { createTestDatabase } from "../support/postgres.ts";

/**
 * The hot path's prepared statements (src/adapters/metadata/prepared-statements.ts)
 * are worth preparing only if Postgres plans them once. It plans a prepared
 * statement afresh for every execution (a "custom" plan) for as long as it
 * costs that cheaper than one generic plan; a statement binding its inputs
 * as arrays was costed that way on some connections and planned on every
 * SaveInline. Read on the store's one connection, from Postgres' own count.
 */
describe("prepared statements on Postgres", () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let store: MetadataStore;
  let query: <R>(statement: ReturnType<typeof sql<R>>) => Promise<R[]>;

  beforeAll(async () => {
    database = await createTestDatabase();
    const opened = await openDatabase({ databaseUrl: database.url, pgliteDir: "", poolSize: 1, migrate: true });
    await migrateToLatest(opened.db);
    store = createKyselyMetadataStore(opened.db, { onClose: opened.close });
    query = async (statement) => (await statement.execute(opened.db)).rows;
  });
  afterAll(async () => {
    await store?.close();
    await database?.drop();
  });

  const note = (i: number) => {
    const text = `a small text ${i}`;
    const record = newArtifactRecord({
      tenantId: "plans",
      spec: { ...BASE_SPEC, kind: "note", name: `note-${i}` },
      sizeBytes: Buffer.byteLength(text),
      blake3: blake3Hex(Buffer.from(text)),
      createdBy: "test",
      inline: "text",
    });
    return { ...record, inline: { type: "text" as const, text } };
  };

  it("records inline artifacts one at a time by a statement Postgres keeps one generic plan for", async () => {
    // A table with statistics, as a running service's has (many to a statement: the batch statements are others).
    await Promise.all(Array.from({ length: 20_000 }, (_, i) => store.createArtifact(note(1_000_000 + i))));
    await query(sql`analyze artifacts`);
    const plans = async () =>
      new Map(
        (
          await query<{ name: string; generic_plans: string; custom_plans: string }>(
            sql`select name, generic_plans, custom_plans from pg_prepared_statements where name like 'artifactd_%'`,
          )
        ).map((p) => [p.name, { generic: Number(p.generic_plans), custom: Number(p.custom_plans) }]),
      );
    const before = await plans();
    for (let i = 0; i < 12; i++) await store.createArtifact(note(i));
    const after = await plans();
    const ran = [...after].map(([name, n]) => ({
      name,
      generic: n.generic - (before.get(name)?.generic ?? 0),
      custom: n.custom - (before.get(name)?.custom ?? 0),
    }));
    const lone = ran.filter((p) => p.generic + p.custom > 0);
    expect(lone).toHaveLength(1);
    expect(lone[0]!.generic + lone[0]!.custom).toBe(12);
    // Postgres tries five custom plans first, then keeps the generic one; planned for every call, all 12 are custom.
    expect(lone[0]!.custom).toBeLessThanOrEqual(5);
  });
});
