import { sql, type Kysely } from "kysely";

/**
 * Search by fragments, order by a metric, filter inline JSON:
 * - pg_trgm (a trusted extension since Postgres 13: the database's owner, or
 *   any role with CREATE on it, may add it; embedded PGlite loads it at
 *   open). Already there: nothing to do and no privilege needed;
 * - `search_text`: name, title, kind, tags and label values, lower-cased, in
 *   one text with a trigram GIN index, so `%fragment%` matches of any of them
 *   use the index (gin_trgm_ops serves LIKE with 3 or more characters);
 * - `content_search`: a tsvector of the words of inline text, or of the
 *   string and number values of inline JSON (whose inline_text is the JSON
 *   as sent, keys and all, so it is left out), their first 65,536
 *   characters: a tsvector holds at most 1 MB, and inline content may be far
 *   larger; GIN;
 * - `artifacts_inline_json`: GIN jsonb_path_ops on inline_json for `@>`;
 *   `artifacts_tenant_json_created`: a tenant's artifacts with inline JSON,
 *   newest first, for path comparisons no index serves (they are checked on
 *   those rows alone);
 * - `artifact_metrics`: one row per numeric metric, kept by a trigger
 *   (metrics never change after an artifact is recorded), with btree indexes
 *   in both metric orders, newest first within a value: ordering a tenant's
 *   artifacts by any metric, and the best k, read an index in order and stop
 *   at the page's end instead of sorting the tenant's artifacts.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await ensureTrigramExtension(db);

  await sql`create function artifact_search_text(name text, title text, kind text, tags text[], labels jsonb) returns text
    language sql immutable parallel safe as $$
      select lower(name || ' ' || title || ' ' || kind || ' ' || array_to_string(tags, ' ') || ' ' ||
        coalesce((select string_agg(value, ' ') from jsonb_each_text(labels)), ''))
    $$`.execute(db);
  await sql`alter table artifacts add column search_text text generated always as (artifact_search_text(name, title, kind, tags, labels)) stored`.execute(db);
  await sql`create index artifacts_search_text on artifacts using gin (search_text gin_trgm_ops)`.execute(db);

  await sql`create function artifact_content_words(inline_text text, inline_json jsonb) returns tsvector
    language sql immutable parallel safe as $$
      select to_tsvector('english', left(case when inline_json is null then coalesce(inline_text, '') else coalesce((
        select string_agg(v #>> '{}', ' ')
        from jsonb_path_query(inline_json, 'strict $.** ? (@.type() == "string" || @.type() == "number")') as v), '') end, 65536))
    $$`.execute(db);
  await sql`alter table artifacts add column content_search tsvector generated always as (artifact_content_words(inline_text, inline_json)) stored`.execute(db);
  await sql`create index artifacts_content_search on artifacts using gin (content_search)`.execute(db);

  await sql`create index artifacts_inline_json on artifacts using gin (inline_json jsonb_path_ops) where inline_json is not null`.execute(db);
  await sql`create index artifacts_tenant_json_created on artifacts (tenant_id, created_at desc, id desc) where inline_json is not null`.execute(db);

  await sql`create table artifact_metrics (
      artifact_id text not null references artifacts (id) on delete cascade,
      tenant_id text not null,
      metric text not null,
      value float8 not null,
      created_at timestamptz not null,
      primary key (artifact_id, metric)
    )`.execute(db);
  // Read a page at a time, in index order, stopping at the page's end: a parallel plan only adds its workers'
  // start-up (several ms), which the planner, misjudging how far it must read, would otherwise pay.
  await sql`alter table artifact_metrics set (parallel_workers = 0)`.execute(db);
  await sql`create index artifact_metrics_desc on artifact_metrics (tenant_id, metric, value desc, created_at desc, artifact_id desc)`.execute(db);
  await sql`create index artifact_metrics_asc on artifact_metrics (tenant_id, metric, value asc, created_at desc, artifact_id desc)`.execute(db);
  await sql`create function artifact_metrics_record() returns trigger language plpgsql as $$
    begin
      insert into artifact_metrics (artifact_id, tenant_id, metric, value, created_at)
        select new.id, new.tenant_id, m.key, (m.value)::float8, new.created_at
        from jsonb_each(new.metrics) as m where jsonb_typeof(m.value) = 'number';
      return null;
    end
    $$`.execute(db);
  await sql`create trigger artifacts_metrics_recorded after insert on artifacts for each row
    when (new.metrics <> '{}'::jsonb) execute function artifact_metrics_record()`.execute(db);
  await sql`insert into artifact_metrics (artifact_id, tenant_id, metric, value, created_at)
    select a.id, a.tenant_id, m.key, (m.value)::float8, a.created_at
    from artifacts a, jsonb_each(a.metrics) as m where jsonb_typeof(m.value) = 'number'`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop trigger artifacts_metrics_recorded on artifacts`.execute(db);
  await sql`drop function artifact_metrics_record()`.execute(db);
  await sql`drop table artifact_metrics`.execute(db);
  await sql`drop index artifacts_tenant_json_created`.execute(db);
  await sql`drop index artifacts_inline_json`.execute(db);
  await sql`alter table artifacts drop column content_search`.execute(db);
  await sql`drop function artifact_content_words(text, jsonb)`.execute(db);
  await sql`alter table artifacts drop column search_text`.execute(db);
  await sql`drop function artifact_search_text(text, text, text, text[], jsonb)`.execute(db);
  // pg_trgm stays: other schemas may use it, and dropping it needs the privilege adding it did.
}

/**
 * A server that already has pg_trgm needs nothing (and the migration no
 * privilege). Otherwise it is created; where that is not allowed (a role
 * without CREATE on the database, or a server without the contrib package)
 * the migration stops with what an operator must do, rather than a bare
 * Postgres error.
 */
async function ensureTrigramExtension(db: Kysely<any>): Promise<void> {
  const installed = await sql`select 1 from pg_extension where extname = 'pg_trgm'`.execute(db);
  if (installed.rows.length > 0) return;
  const available = await sql`select 1 from pg_available_extensions where name = 'pg_trgm'`.execute(db);
  if (available.rows.length === 0) {
    throw new Error(
      "the Postgres extension pg_trgm is not installed on this server: install the server's contrib package (e.g. postgresql-contrib), then run `create extension pg_trgm;` in this database, or let artifactd's migration do it",
    );
  }
  try {
    await sql`create extension if not exists pg_trgm`.execute(db);
  } catch (error) {
    throw new Error(
      "could not add the Postgres extension pg_trgm (artifactd's database role may not CREATE in this database): run `create extension pg_trgm;` in this database as its owner or a superuser, then migrate again",
      { cause: error },
    );
  }
}
