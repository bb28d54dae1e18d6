import { sql, type Kysely } from "kysely";

/**
 * Versions and aliases (ArtifactSpec.versioned, SetAlias; see
 * ../kysely-artifact-versions.ts).
 *
 * artifacts.project: the artifact's project, '' for the tenant's default.
 * artifacts.version: its number within (tenant, project, name), NULL when it
 * was saved without versioning; unique, so two versions can never share a
 * number whatever a bug elsewhere does.
 *
 * artifact_version_counters: the last number given out per name. A save
 * takes the next one in its own transaction with an upsert, whose row lock
 * orders the saves of one name (and only of that name) through their
 * commits: numbers follow commit order, and a save that rolls back gives its
 * number back, so the numbers have no gaps.
 *
 * artifact_aliases: where each alias points now. `latest` is never stored:
 * it is computed (the newest version not deleted) when read.
 * artifact_alias_moves: every set, move and removal of an alias, for
 * ListAliasHistory.
 *
 * artifact_events gains the type alias_moved and, for it, the move as JSON.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .alterTable("artifacts")
    .addColumn("project", "text", (c) => c.notNull().defaultTo(""))
    .addColumn("version", "int8")
    .execute();
  await sql`create unique index artifacts_version on artifacts (tenant_id, project, name, version) where version is not null`.execute(db);

  await db.schema
    .createTable("artifact_version_counters")
    .addColumn("tenant_id", "text", (c) => c.notNull())
    .addColumn("project", "text", (c) => c.notNull())
    .addColumn("name", "text", (c) => c.notNull())
    .addColumn("last_version", "int8", (c) => c.notNull())
    .addPrimaryKeyConstraint("artifact_version_counters_pkey", ["tenant_id", "project", "name"])
    .execute();

  await db.schema
    .createTable("artifact_aliases")
    .addColumn("tenant_id", "text", (c) => c.notNull())
    .addColumn("project", "text", (c) => c.notNull())
    .addColumn("name", "text", (c) => c.notNull())
    .addColumn("alias", "text", (c) => c.notNull())
    .addColumn("artifact_id", "text", (c) => c.notNull().references("artifacts.id"))
    .addColumn("moved_by", "text", (c) => c.notNull())
    .addColumn("moved_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint("artifact_aliases_pkey", ["tenant_id", "project", "name", "alias"])
    .execute();
  await sql`create index artifact_aliases_artifact on artifact_aliases (artifact_id)`.execute(db);

  await db.schema
    .createTable("artifact_alias_moves")
    .addColumn("seq", "int8", (c) => c.primaryKey().generatedAlwaysAsIdentity())
    .addColumn("tenant_id", "text", (c) => c.notNull())
    .addColumn("project", "text", (c) => c.notNull())
    .addColumn("name", "text", (c) => c.notNull())
    .addColumn("alias", "text", (c) => c.notNull())
    .addColumn("from_artifact_id", "text")
    .addColumn("to_artifact_id", "text")
    .addColumn("from_version", "int8")
    .addColumn("to_version", "int8")
    .addColumn("moved_by", "text", (c) => c.notNull())
    .addColumn("moved_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn("reason", "text", (c) => c.notNull().defaultTo(""))
    .execute();
  await sql`create index artifact_alias_moves_name on artifact_alias_moves (tenant_id, project, name, seq desc)`.execute(db);

  await sql`alter table artifact_events drop constraint artifact_events_type_check`.execute(db);
  await sql`alter table artifact_events add constraint artifact_events_type_check
    check (type in ('created', 'status_changed', 'pinned', 'unpinned', 'deleted', 'alias_moved'))`.execute(db);
  await db.schema.alterTable("artifact_events").addColumn("alias_move", "jsonb").execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`delete from artifact_events where type = 'alias_moved'`.execute(db);
  await db.schema.alterTable("artifact_events").dropColumn("alias_move").execute();
  await sql`alter table artifact_events drop constraint artifact_events_type_check`.execute(db);
  await sql`alter table artifact_events add constraint artifact_events_type_check
    check (type in ('created', 'status_changed', 'pinned', 'unpinned', 'deleted'))`.execute(db);
  await db.schema.dropTable("artifact_alias_moves").execute();
  await db.schema.dropTable("artifact_aliases").execute();
  await db.schema.dropTable("artifact_version_counters").execute();
  await sql`drop index artifacts_version`.execute(db);
  await db.schema.alterTable("artifacts").dropColumn("version").dropColumn("project").execute();
}
