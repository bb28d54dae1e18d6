import { sql, type Kysely, type Selectable, type Transaction } from "kysely";
import { LATEST_ALIAS, parseArtifactReference } from "@artifactd/api";
import type { ArtifactInput } from "../../artifact.ts";
import { ArtifactError, failedPrecondition, invalidArgument, notFound } from "../../artifact-error.ts";
import type { AliasMove, AliasMoveBy, VersionedName } from "../../artifact-versions.ts";
import type { ArtifactVersions, NamedReference, Resolved } from "../../ports/artifact-versions.ts";
import type { PendingEvent, WithEvents } from "../events/kysely-artifact-event-log.ts";
import { selectArtifacts } from "./artifact-query-builders.ts";
import { toArtifacts, type ArtifactRow, type Queryable } from "./artifact-rows.ts";
import { changeStatus } from "./artifact-status-change.ts";
import { decodeBelowToken, encodeBelowToken, pageOf } from "./page-token.ts";
import type { ArtifactAliasMoveTable, Database } from "./schema.ts";

/**
 * Versions and aliases on kysely (Postgres and PGlite): the tables of the
 * versions_and_aliases migration.
 *
 * Numbering. takeVersion runs in the transaction that inserts the artifact,
 * right before the insert: its upsert locks the name's counter row until
 * that transaction ends, so saves of one name take their numbers one after
 * another in commit order, saves of other names never wait, and a rollback
 * gives the number back (no gap).
 *
 * Aliases. Each change locks the alias row (or, for a new alias, relies on
 * the primary key: of two creators one inserts, the other updates or, with
 * a compare-and-set, is refused), records the move in artifact_alias_moves
 * and its alias_moved event, all in one transaction. `latest` is never
 * stored: aliasesOf computes it with the stored ones.
 */
export function createKyselyArtifactVersions(db: Kysely<Database>, withEvents: WithEvents): ArtifactVersions {
  return {
    resolveReference: (tenantId, reference) => resolveReference(db, tenantId, reference),

    async setAlias(tenantId, artifactId, alias, by, expected) {
      return withEvents(async (tx, recordEvent) => {
        const row = await selectArtifacts(tx, tenantId).where("id", "=", artifactId).forShare().executeTakeFirst();
        if (!row) return undefined;
        const move = await moveAlias(tx, recordEvent, { tenantId, row, alias, by, expected });
        return { artifact: (await toArtifacts(tx, [row]))[0]!, move };
      });
    },

    async deleteAlias(tenantId, name, alias, by) {
      return withEvents(async (tx, recordEvent) => {
        const current = await lockAlias(tx, tenantId, name, alias);
        if (!current) return undefined;
        return removeAlias(tx, recordEvent, tenantId, current, by);
      });
    },

    async setStatusMovingAlias(tenantId, artifactId, status, alias, by) {
      return withEvents(async (tx, recordEvent) => {
        const changed = await changeStatus(tx, recordEvent, tenantId, artifactId, status);
        if (!changed) return undefined;
        const move = await moveAlias(tx, recordEvent, { tenantId, row: changed.row, alias, by });
        return { artifact: (await toArtifacts(tx, [changed.row]))[0]!, move };
      });
    },

    async getArtifacts(tenantId, ids, includeContent) {
      if (ids.length === 0) return [];
      const rows = await selectArtifacts(db, tenantId)
        .$if(includeContent, (q) => q.select(["inline_text", "inline_json", "inline_bytes"]))
        .where("id", "in", [...new Set(ids)])
        .execute();
      return toArtifacts(db, rows, includeContent);
    },

    async listVersions(tenantId, name, includeDeleted, page) {
      if (!(await nameExists(db, tenantId, name))) return undefined;
      const after = decodeBelowToken(page.pageToken);
      const rows = await selectArtifacts(db, tenantId)
        .where("project", "=", name.project)
        .where("name", "=", name.name)
        .where("version", "is not", null)
        .$if(!includeDeleted, (q) => q.where("deleted_at", "is", null))
        .$if(after !== undefined, (q) => q.where("version", "<", after!))
        .orderBy("version", "desc")
        .limit(page.pageSize + 1)
        .execute();
      const { rows: pageRows, nextPageToken } = pageOf(rows, page.pageSize, (last) => encodeBelowToken(Number(last.version)));
      return { items: await toArtifacts(db, pageRows), nextPageToken };
    },

    async listAliasHistory(tenantId, name, alias, page) {
      if (!(await nameExists(db, tenantId, name))) return undefined;
      const after = decodeBelowToken(page.pageToken);
      const rows = await db
        .selectFrom("artifact_alias_moves")
        .selectAll()
        .where("tenant_id", "=", tenantId)
        .where("project", "=", name.project)
        .where("name", "=", name.name)
        .$if(alias !== "", (q) => q.where("alias", "=", alias))
        .$if(after !== undefined, (q) => q.where("seq", "<", after!))
        .orderBy("seq", "desc")
        .limit(page.pageSize + 1)
        .execute();
      const { rows: pageRows, nextPageToken } = pageOf(rows, page.pageSize, (last) => encodeBelowToken(Number(last.seq)));
      return { items: pageRows.map(toAliasMove), nextPageToken };
    },
  };
}

/** The next version of a name, taken in the transaction that records it (see the head of this file). */
export async function takeVersion(tx: Transaction<Database>, tenantId: string, name: VersionedName): Promise<number> {
  const row = await tx
    .insertInto("artifact_version_counters")
    .values({ tenant_id: tenantId, project: name.project, name: name.name, last_version: 1 })
    .onConflict((oc) => oc.columns(["tenant_id", "project", "name"]).doUpdateSet({ last_version: sql`artifact_version_counters.last_version + 1` }))
    .returning("last_version")
    .executeTakeFirstOrThrow();
  return Number(row.last_version);
}

/** A reference by name → the id it stands for now, or what is missing. */
export async function resolveReference(db: Queryable, tenantId: string, reference: NamedReference): Promise<Resolved> {
  const name = describeName(reference);
  let id: string | undefined;
  if (reference.kind === "version") {
    const row = await selectId(db, tenantId, reference).where("version", "=", reference.version).executeTakeFirst();
    id = row?.id;
  } else if (reference.alias === LATEST_ALIAS) {
    const row = await selectId(db, tenantId, reference)
      .where("version", "is not", null)
      .where("deleted_at", "is", null)
      .orderBy("version", "desc")
      .limit(1)
      .executeTakeFirst();
    id = row?.id;
  } else {
    const row = await db
      .selectFrom("artifact_aliases")
      .select("artifact_id")
      .where("tenant_id", "=", tenantId)
      .where("project", "=", reference.project)
      .where("name", "=", reference.name)
      .where("alias", "=", reference.alias)
      .executeTakeFirst();
    id = row?.artifact_id;
  }
  if (id !== undefined) return { id };
  const counter = await versionCounter(db, tenantId, reference);
  if (!counter) return { missing: `there is no versioned artifact named ${name}` };
  if (reference.kind === "version") return { missing: `${name} has no version ${reference.version} (its versions are 1–${Number(counter.last_version)})` };
  if (reference.alias === LATEST_ALIAS) return { missing: `${name} has no latest version: every version of it is deleted` };
  return { missing: `${name} has no alias ${JSON.stringify(reference.alias)}` };
}

/** True when an input names its artifact by reference rather than by id (it is resolved when the artifact is recorded). */
export function inputsNeedResolving(inputs: readonly ArtifactInput[]): boolean {
  return inputs.some((input) => parseArtifactReference(input.artifactId).kind !== "id");
}

/**
 * The inputs with each reference replaced by the id it resolves to now (in
 * the recording transaction, so the artifact records what it was made from
 * at its commit); not_found naming the input and what is missing.
 */
export async function resolveInputs(db: Queryable, tenantId: string, inputs: readonly ArtifactInput[]): Promise<ArtifactInput[]> {
  const resolved: ArtifactInput[] = [];
  // One after another: in a transaction the queries share its one connection anyway.
  for (const [i, input] of inputs.entries()) {
    const reference = parseArtifactReference(input.artifactId);
    if (reference.kind === "id") {
      resolved.push(input);
      continue;
    }
    if (reference.kind === "malformed")
      throw invalidArgument(`spec.inputs[${i}].artifact_id ${JSON.stringify(input.artifactId.slice(0, 80))}: ${reference.problem}`);
    const found = await resolveReference(db, tenantId, reference);
    if ("missing" in found) throw notFound(`input ${input.artifactId}: ${found.missing}`);
    resolved.push({ ...input, artifactId: found.id });
  }
  const ids = new Set<string>();
  for (const [i, input] of resolved.entries()) {
    if (ids.has(input.artifactId))
      throw invalidArgument(`spec.inputs[${i}] (${inputs[i]!.artifactId}) names ${input.artifactId}, which another input names too`);
    ids.add(input.artifactId);
  }
  return resolved;
}

/** The stored aliases pointing at an artifact, locked for the transaction (DeleteArtifact checks them). */
export async function lockAliasesOf(tx: Transaction<Database>, tenantId: string, artifactId: string) {
  return tx
    .selectFrom("artifact_aliases")
    .selectAll()
    .where("tenant_id", "=", tenantId)
    .where("artifact_id", "=", artifactId)
    .orderBy("alias")
    .forUpdate()
    .execute();
}

type AliasRow = Selectable<Database["artifact_aliases"]>;

/**
 * Removes an alias row already locked by the transaction, recording the
 * move to nothing (its event's artifact: the one the alias pointed at).
 */
export async function removeAlias(
  tx: Transaction<Database>,
  recordEvent: (event: PendingEvent) => void,
  tenantId: string,
  current: AliasRow,
  by: AliasMoveBy,
): Promise<AliasMove> {
  const from = await selectArtifacts(tx, tenantId).where("id", "=", current.artifact_id).executeTakeFirstOrThrow();
  await tx
    .deleteFrom("artifact_aliases")
    .where("tenant_id", "=", tenantId)
    .where("project", "=", current.project)
    .where("name", "=", current.name)
    .where("alias", "=", current.alias)
    .execute();
  const move = await recordMove(tx, tenantId, current, current.alias, { from, to: undefined, by });
  recordEvent({ type: "alias_moved", artifact: eventArtifact(from), aliasMove: move });
  return move;
}

/**
 * Points `alias` of the row's name at the row, which the transaction holds
 * locked (at least FOR SHARE, so it cannot be deleted meanwhile). A move to
 * where the alias points already records nothing and answers the alias as it
 * is (from = to).
 */
async function moveAlias(
  tx: Transaction<Database>,
  recordEvent: (event: PendingEvent) => void,
  change: { tenantId: string; row: ArtifactRow; alias: string; by: AliasMoveBy; expected?: string | undefined },
): Promise<AliasMove> {
  const { tenantId, row, alias, by, expected } = change;
  if (row.version === null) {
    throw failedPrecondition(`artifact ${row.id} was saved without versioning: only a version of a versioned name (spec.versioned) can take an alias`);
  }
  if (row.deleted_at !== null) throw failedPrecondition(`artifact ${row.id} is deleted: an alias cannot point at it`);
  if (alias === LATEST_ALIAS) throw invalidArgument(`alias "${LATEST_ALIAS}" follows the newest version by itself and cannot be set`);
  const name = { project: row.project, name: row.name };
  const current = await lockAlias(tx, tenantId, name, alias);
  if (expected !== undefined && (current?.artifact_id ?? "") !== expected) {
    throw new ArtifactError(
      "aborted",
      `alias ${JSON.stringify(alias)} of ${describeName(name)} points at ${current ? current.artifact_id : "nothing (it does not exist)"}, not ${expected || "nothing"} as expected_artifact_id says: read it again and decide`,
    );
  }
  const from = current && (await selectArtifacts(tx, tenantId).where("id", "=", current.artifact_id).executeTakeFirstOrThrow());
  if (current?.artifact_id === row.id) {
    return toMove(name, alias, { from: row, to: row, by: { movedBy: current.moved_by, reason: "" }, movedAt: new Date(current.moved_at) });
  }
  const values = { tenant_id: tenantId, project: row.project, name: row.name, alias, artifact_id: row.id, moved_by: by.movedBy, moved_at: new Date() };
  if (current) {
    await tx
      .updateTable("artifact_aliases")
      .set({ artifact_id: row.id, moved_by: by.movedBy, moved_at: values.moved_at })
      .where("tenant_id", "=", tenantId)
      .where("project", "=", row.project)
      .where("name", "=", row.name)
      .where("alias", "=", alias)
      .execute();
  } else {
    // Not there when we looked: another transaction may be creating it now. Ours waits for it on the key; if it
    // committed, ours is a move the caller did not see coming, which a compare-and-set refuses.
    const inserted = await tx
      .insertInto("artifact_aliases")
      .values(values)
      .onConflict((oc) => oc.columns(["tenant_id", "project", "name", "alias"]).doNothing())
      .returning("alias")
      .executeTakeFirst();
    if (!inserted) {
      if (expected !== undefined) {
        throw new ArtifactError(
          "aborted",
          `alias ${JSON.stringify(alias)} of ${describeName(name)} was just created by another call: read it again and decide`,
        );
      }
      return moveAlias(tx, recordEvent, change);
    }
  }
  const move = await recordMove(tx, tenantId, name, alias, { from, to: row, by });
  recordEvent({ type: "alias_moved", artifact: eventArtifact(row), aliasMove: move });
  return move;
}

async function lockAlias(tx: Transaction<Database>, tenantId: string, name: VersionedName, alias: string): Promise<AliasRow | undefined> {
  return tx
    .selectFrom("artifact_aliases")
    .selectAll()
    .where("tenant_id", "=", tenantId)
    .where("project", "=", name.project)
    .where("name", "=", name.name)
    .where("alias", "=", alias)
    .forUpdate()
    .executeTakeFirst();
}

async function recordMove(
  tx: Transaction<Database>,
  tenantId: string,
  name: VersionedName,
  alias: string,
  move: { from: ArtifactRow | undefined; to: ArtifactRow | undefined; by: AliasMoveBy },
): Promise<AliasMove> {
  const row = await tx
    .insertInto("artifact_alias_moves")
    .values({
      tenant_id: tenantId,
      project: name.project,
      name: name.name,
      alias,
      from_artifact_id: move.from?.id ?? null,
      to_artifact_id: move.to?.id ?? null,
      from_version: move.from ? Number(move.from.version) : null,
      to_version: move.to ? Number(move.to.version) : null,
      moved_by: move.by.movedBy,
      reason: move.by.reason,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
  return toAliasMove(row);
}

function toMove(
  name: VersionedName,
  alias: string,
  move: { from: ArtifactRow | undefined; to: ArtifactRow | undefined; by: AliasMoveBy; movedAt: Date },
): AliasMove {
  return {
    project: name.project,
    name: name.name,
    alias,
    fromArtifactId: move.from?.id,
    toArtifactId: move.to?.id,
    fromVersion: move.from ? Number(move.from.version) : undefined,
    toVersion: move.to ? Number(move.to.version) : undefined,
    movedBy: move.by.movedBy,
    movedAt: move.movedAt,
    reason: move.by.reason,
  };
}

function toAliasMove(row: Selectable<ArtifactAliasMoveTable>): AliasMove {
  return {
    project: row.project,
    name: row.name,
    alias: row.alias,
    fromArtifactId: row.from_artifact_id ?? undefined,
    toArtifactId: row.to_artifact_id ?? undefined,
    fromVersion: row.from_version === null ? undefined : Number(row.from_version),
    toVersion: row.to_version === null ? undefined : Number(row.to_version),
    movedBy: row.moved_by,
    movedAt: new Date(row.moved_at),
    reason: row.reason,
  };
}

function eventArtifact(row: ArtifactRow): PendingEvent["artifact"] {
  return {
    id: row.id,
    tenantId: row.tenant_id,
    status: row.status,
    pinned: row.pinned,
    deletedAt: row.deleted_at === null ? undefined : new Date(row.deleted_at),
  };
}

const selectId = (db: Queryable, tenantId: string, name: VersionedName) =>
  db.selectFrom("artifacts").select("id").where("tenant_id", "=", tenantId).where("project", "=", name.project).where("name", "=", name.name);

/** The name's counter row: there is one once the name's first version was recorded. */
const versionCounter = (db: Queryable, tenantId: string, name: VersionedName) =>
  db
    .selectFrom("artifact_version_counters")
    .select("last_version")
    .where("tenant_id", "=", tenantId)
    .where("project", "=", name.project)
    .where("name", "=", name.name)
    .executeTakeFirst();

async function nameExists(db: Queryable, tenantId: string, name: VersionedName): Promise<boolean> {
  return (await versionCounter(db, tenantId, name)) !== undefined;
}

/** `orders`, or `team/orders` in a project, quoted as a client would write it. */
export function describeName(name: VersionedName): string {
  return JSON.stringify(name.project ? `${name.project}/${name.name}` : name.name);
}
