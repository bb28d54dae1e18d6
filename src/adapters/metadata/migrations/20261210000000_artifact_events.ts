import { sql, type Kysely } from "kysely";

/**
 * artifact_events: the event log (outbox) Watch reads, one row per change,
 * written in the change's own transaction (see ../../events/kysely-artifact-event-log.ts
 * for how seq order is made to match commit order). No foreign key to
 * artifacts: appending must take no lock on the artifact beyond the
 * change's own.
 *
 * artifact_events_pruned: one row, the highest seq pruning has deleted, so a
 * resume cursor at or past it can be told apart from one whose events are
 * gone.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable("artifact_events")
    .addColumn("seq", "int8", (c) => c.primaryKey().generatedAlwaysAsIdentity())
    .addColumn("tenant_id", "text", (c) => c.notNull())
    .addColumn("type", "text", (c) => c.notNull().check(sql`type in ('created', 'status_changed', 'pinned', 'unpinned', 'deleted')`))
    .addColumn("artifact_id", "text", (c) => c.notNull())
    .addColumn("status", "text", (c) => c.notNull())
    .addColumn("pinned", "boolean", (c) => c.notNull())
    .addColumn("deleted_at", "timestamptz")
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await sql`create index artifact_events_tenant_seq on artifact_events (tenant_id, seq)`.execute(db);
  await sql`create index artifact_events_created_at on artifact_events (created_at)`.execute(db);

  await db.schema
    .createTable("artifact_events_pruned")
    .addColumn("only_row", "boolean", (c) => c.primaryKey().defaultTo(true).check(sql`only_row`))
    .addColumn("through_seq", "int8", (c) => c.notNull())
    .execute();
  await sql`insert into artifact_events_pruned (through_seq) values (0)`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable("artifact_events_pruned").execute();
  await db.schema.dropTable("artifact_events").execute();
}
