import { sql, type Kysely, type Transaction } from "kysely";
import { LATEST_ALIAS } from "@artifactd/api";
import type { Database } from "./schema.ts";

/** What of an artifacts row its aliases depend on (./artifact-rows.ts reads them with the rest). */
interface VersionedRow {
  readonly id: string;
  readonly tenant_id: string;
  readonly project: string;
  readonly name: string;
  readonly version: string | number | bigint | null;
}

/**
 * The aliases pointing at each of `rows` now, sorted, `latest` included
 * where it is the newest version not deleted: one query for any number of
 * rows (an artifact saved without versioning has none).
 */
export async function aliasesOf(db: Kysely<Database> | Transaction<Database>, rows: readonly VersionedRow[]): Promise<Map<string, string[]>> {
  const aliases = new Map<string, string[]>();
  const versioned = rows.filter((row) => row.version !== null);
  if (versioned.length === 0) return aliases;
  const ids = versioned.map((row) => row.id);
  const names = new Map(versioned.map((row) => [JSON.stringify([row.tenant_id, row.project, row.name]), row]));
  const tenants = [...names.values()].map((row) => row.tenant_id);
  const projects = [...names.values()].map((row) => row.project);
  const nameList = [...names.values()].map((row) => row.name);
  const { rows: found } = await sql<{ artifact_id: string; alias: string }>`
    select artifact_id, alias from artifact_aliases where artifact_id = any(${ids}::text[])
    union all
    select newest.id, ${LATEST_ALIAS} from unnest(${tenants}::text[], ${projects}::text[], ${nameList}::text[]) as wanted(tenant_id, project, name)
    cross join lateral (
      select id from artifacts
      where artifacts.tenant_id = wanted.tenant_id and artifacts.project = wanted.project and artifacts.name = wanted.name
        and artifacts.version is not null and artifacts.deleted_at is null
      order by artifacts.version desc limit 1
    ) as newest
    where newest.id = any(${ids}::text[])`.execute(db);
  for (const row of found) {
    const list = aliases.get(row.artifact_id) ?? [];
    list.push(row.alias);
    aliases.set(row.artifact_id, list);
  }
  for (const list of aliases.values()) list.sort();
  return aliases;
}
