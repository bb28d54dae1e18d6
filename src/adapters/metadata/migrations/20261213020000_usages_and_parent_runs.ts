import { sql, type Kysely } from "kysely";

/**
 * - artifacts.parent_run_id: the run that started the artifact's run (a job,
 *   a sweep, a pipeline run), a provenance field like the others, with the
 *   same partial index the other scope levels have, for the filter on it.
 * - artifact_usages: runs that used an artifact without producing one
 *   (RecordUsage). One row per tenant, artifact, run and role (an empty role
 *   is a role too), so recording the same use again finds the existing row.
 *   The artifact's id is a foreign key: artifacts are only soft-deleted, so
 *   the row of a used artifact is never removed from under its uses.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable("artifacts").addColumn("parent_run_id", "text").execute();
  await sql`create index artifacts_tenant_parent_run_id on artifacts (tenant_id, parent_run_id, created_at desc) where parent_run_id is not null`.execute(db);

  await db.schema
    .createTable("artifact_usages")
    .addColumn("tenant_id", "text", (c) => c.notNull())
    .addColumn("artifact_id", "text", (c) => c.notNull().references("artifacts.id").onDelete("cascade"))
    .addColumn("run_id", "text", (c) => c.notNull())
    .addColumn("role", "text", (c) => c.notNull())
    .addColumn("recorded_at", "timestamptz", (c) => c.notNull())
    .addColumn("recorded_by", "text", (c) => c.notNull())
    .addPrimaryKeyConstraint("artifact_usages_pkey", ["tenant_id", "artifact_id", "run_id", "role"])
    .execute();
  // GetLineage lists an artifact's uses oldest first.
  await sql`create index artifact_usages_artifact_recorded on artifact_usages (tenant_id, artifact_id, recorded_at)`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable("artifact_usages").execute();
  await sql`drop index artifacts_tenant_parent_run_id`.execute(db);
  await db.schema.alterTable("artifacts").dropColumn("parent_run_id").execute();
}
