import { LATEST_ALIAS } from "@artifactd/api";
import { CompiledQuery, sql, type Insertable, type Kysely, type RawBuilder, type Transaction } from "kysely";
import type { Artifact, ArtifactEventType, ArtifactInput } from "../../artifact.ts";
import { ArtifactError, failedPrecondition, notFound } from "../../artifact-error.ts";
import { BLOB_RECLAIMED, storageKeyOf, UPLOAD_HOLD_LOST, type ArtifactExpiry, type ArtifactRecords, type NewArtifact } from "../../ports/artifact-records.ts";
import type { StoredBlob } from "../../ports/tenant-blob-index.ts";
import { statementEventOf, type PendingEvent, type WithEvents, type WithStatementEvents } from "../events/kysely-artifact-event-log.ts";
import { selectArtifacts } from "./artifact-query-builders.ts";
import { ARTIFACT_COLUMNS, artifactValues, toArtifact, toArtifacts, toStoredBlob, type ArtifactRow, type Queryable } from "./artifact-rows.ts";
import { releaseStorageKey } from "./kysely-in-flight-uploads.ts";
import { inlineArtifactBatches } from "./inline-artifact-batches.ts";
import { changeStatus } from "./artifact-status-change.ts";
import { describeName, inputsNeedResolving, lockAliasesOf, removeAlias, resolveInputs, takeVersion } from "./kysely-artifact-versions.ts";
import { PREPARED_STATEMENT_MARK } from "./prepared-statements.ts";
import type { ArtifactTable, Database } from "./schema.ts";

/**
 * Changing artifacts on kysely (Postgres and PGlite).
 *
 * Every write runs in `withEvents` (../events/kysely-artifact-event-log.ts):
 * the change and its events commit together or not at all. Every value from
 * a request reaches SQL as a bound parameter. Recording an artifact that
 * stores content writes its blob row in the same transaction; one blob row
 * per (tenant, digest) is the schema's invariant, so of two uploads of the
 * same content the second finds the first's row and points at it.
 */
export function createKyselyArtifactRecords(
  db: Kysely<Database>,
  withEvents: WithEvents,
  withStatementEvents: WithStatementEvents,
): ArtifactRecords & ArtifactExpiry {
  const createInlineArtifact = inlineArtifactBatches(db, withStatementEvents, inlineArtifactWriter(db, withStatementEvents));
  return {
    async createArtifact(record) {
      // A version takes its number, and a reference its id, in the recording transaction below.
      if (!record.blob && !record.hold && !record.spec.versioned && !inputsNeedResolving(record.spec.inputs)) {
        // Inline content: one statement, one round trip, in the common case.
        const artifact = await translateDatabaseError(() => createInlineArtifact(record));
        if (artifact) return { artifact, blobCreated: false, blob: undefined };
        // An input is missing, deleted or of the wrong class or kind: the transaction below says which (or, if that
        // changed meanwhile, records the artifact after all).
      }
      return translateDatabaseError(() =>
        withEvents(async (tx, recordEvent) => {
          let blob: StoredBlob | undefined;
          let blobCreated = false;
          if (record.blob && "reuseExisting" in record.blob) {
            // KEY SHARE: garbage collection cannot delete the row until we commit.
            const row = await tx
              .selectFrom("blobs")
              .select(["digest", "size_bytes", "storage_key"])
              .where("tenant_id", "=", record.tenantId)
              .where("digest", "=", record.blake3)
              .where("corrupt_at", "is", null)
              .forKeyShare()
              .executeTakeFirst();
            if (!row) {
              throw new ArtifactError("aborted", BLOB_RECLAIMED);
            }
            blob = toStoredBlob(row);
          } else if (record.blob) {
            const inserted = await tx
              .insertInto("blobs")
              .values({ tenant_id: record.tenantId, digest: record.blake3, size_bytes: record.sizeBytes, storage_key: record.blob.storageKey })
              .onConflict((oc) => oc.columns(["tenant_id", "digest"]).doNothing())
              .returning(["digest", "size_bytes", "storage_key"])
              .executeTakeFirst();
            blobCreated = inserted !== undefined;
            const existing = inserted
              ? undefined
              : await tx
                  .selectFrom("blobs")
                  .select(["digest", "size_bytes", "storage_key", "corrupt_at"])
                  .where("tenant_id", "=", record.tenantId)
                  .where("digest", "=", record.blake3)
                  .forUpdate()
                  .executeTakeFirstOrThrow();
            let row = inserted ?? existing!;
            if (existing && existing.corrupt_at !== null) {
              // Fresh bytes for content known to be corrupt heal it: the blob row takes our copy, the bad one is garbage.
              await tx
                .updateTable("blobs")
                .set({ storage_key: record.blob.storageKey, corrupt_at: null })
                .where("tenant_id", "=", record.tenantId)
                .where("digest", "=", record.blake3)
                .execute();
              await releaseStorageKey(tx, record.tenantId, existing.storage_key);
              row = { ...existing, storage_key: record.blob.storageKey };
            }
            blob = toStoredBlob(row);
          }
          const inputs = await resolveInputs(tx, record.tenantId, record.spec.inputs);
          await checkInputs(tx, record.tenantId, inputs);

          const spec = { ...record.spec, inputs };
          // Last before the insert: the name's counter stays locked from here to the commit (./kysely-artifact-versions.ts).
          const version = spec.versioned ? await takeVersion(tx, record.tenantId, spec) : null;
          const row = await tx
            .insertInto("artifacts")
            .values({ ...artifactValues(record), version })
            .returning(ARTIFACT_COLUMNS)
            .executeTakeFirstOrThrow();
          if (spec.inputs.length > 0) {
            await tx
              .insertInto("artifact_inputs")
              .values(
                spec.inputs.map((input, position) => ({
                  tenant_id: record.tenantId,
                  artifact_id: record.id,
                  input_id: input.artifactId,
                  role: input.role,
                  position,
                })),
              )
              .execute();
          }
          // Just recorded, so the newest version: `latest` points at it, and no other alias can yet.
          const artifact = { ...toArtifact(row, spec.inputs, false), aliases: version === null ? [] : [LATEST_ALIAS] };
          if (record.hold) await endHold(tx, record, blob);
          recordEvent({ type: "created", artifact });
          return { artifact, blobCreated, blob };
        }),
      );
    },

    async checkInputs(tenantId, inputs) {
      await checkInputs(db, tenantId, await resolveInputs(db, tenantId, inputs));
    },

    async softDeleteArtifact(tenantId, id, now, aliases) {
      return withEvents(async (tx, recordEvent) => {
        const row = await selectArtifacts(tx, tenantId).where("id", "=", id).forUpdate().executeTakeFirst();
        if (!row) return undefined;
        if (row.deleted_at === null) {
          if (row.pinned) throw failedPrecondition(`artifact ${id} is pinned: unpin it before deleting it`);
          const pointing = row.version === null ? [] : await lockAliasesOf(tx, tenantId, id);
          if (pointing.length > 0 && !aliases?.force) {
            throw failedPrecondition(
              `artifact ${id} is what alias${pointing.length > 1 ? "es" : ""} ${pointing.map((a) => JSON.stringify(a.alias)).join(", ")} of ${describeName(row)} point${pointing.length > 1 ? "" : "s"} at: move ${pointing.length > 1 ? "them" : "it"} first, or delete with force to remove ${pointing.length > 1 ? "them" : "it"} too`,
            );
          }
          for (const alias of pointing) await removeAlias(tx, recordEvent, tenantId, alias, aliases?.by ?? { movedBy: "", reason: "" });
          const updated = await tx.updateTable("artifacts").set({ deleted_at: now }).where("id", "=", id).returning(ARTIFACT_COLUMNS).executeTakeFirstOrThrow();
          const artifact = (await toArtifacts(tx, [updated]))[0]!;
          recordEvent({ type: "deleted", artifact });
          return artifact;
        }
        return (await toArtifacts(tx, [row]))[0];
      });
    },

    async setPinned(tenantId, id, pinned) {
      return withEvents(async (tx, recordEvent) => {
        const row = await selectArtifacts(tx, tenantId).where("id", "=", id).forUpdate().executeTakeFirst();
        if (!row) return undefined;
        if (row.deleted_at !== null && pinned) throw failedPrecondition(`artifact ${id} is deleted and cannot be pinned`);
        if (row.pinned === pinned) return (await toArtifacts(tx, [row]))[0]!;
        const updated = await tx.updateTable("artifacts").set({ pinned }).where("id", "=", id).returning(ARTIFACT_COLUMNS).executeTakeFirstOrThrow();
        const artifact = (await toArtifacts(tx, [updated]))[0]!;
        recordEvent({ type: pinned ? "pinned" : "unpinned", artifact });
        return artifact;
      });
    },

    async setStatus(tenantId, id, status) {
      return withEvents(async (tx, recordEvent) => {
        const changed = await changeStatus(tx, recordEvent, tenantId, id, status);
        return changed && (await toArtifacts(tx, [changed.row]))[0]!;
      });
    },

    async archiveRun(tenantId, runId, now) {
      return withEvents(async (tx, recordEvent) => {
        const candidates = await tx
          .selectFrom("artifacts")
          .select("id")
          .where("tenant_id", "=", tenantId)
          .where("run_id", "=", runId)
          .where("pinned", "=", false)
          .where(notAliased)
          .where("deleted_at", "is", null)
          .forUpdate()
          .execute();
        return recordDeleted(tx, await deleteUnlessAliased(tx, candidates, now), recordEvent);
      });
    },

    async expireArtifacts(now, limit) {
      return withEvents(async (tx, recordEvent) => {
        const candidates = await tx
          .selectFrom("artifacts")
          .select("id")
          .where("expires_at", "<=", now)
          .where("deleted_at", "is", null)
          .where("pinned", "=", false)
          .where(notAliased)
          .limit(limit)
          .forUpdate()
          .execute();
        return recordDeleted(tx, await deleteUnlessAliased(tx, candidates, now), recordEvent);
      });
    },
  };
}

/**
 * Records an artifact with inline content in one statement (so one round
 * trip, and its own transaction): its inputs checked and share-locked as
 * checkInputs does, the row, its input edges, and its created event
 * (../events/kysely-artifact-event-log.ts). Undefined, having recorded
 * nothing, when an input does not pass the check; the transaction of
 * createArtifact then says why.
 *
 * The statement's text is the same for every artifact (the inputs go as
 * arrays), so it is compiled once and prepared (./prepared-statements.ts);
 * each call only binds its parameters. Postgres takes their types from the
 * columns they are inserted into, so the values need no casts.
 */
function inlineArtifactWriter(db: Kysely<Database>, withStatementEvents: WithStatementEvents) {
  let text: string | undefined;
  return (record: NewArtifact): Promise<Artifact | undefined> =>
    withStatementEvents(async (eventsOf) => {
      const { parameters, columns } = inlineArtifactParameters(record);
      text ??= compileOnce(inlineArtifactStatement(parameters, columns, eventsOf).compile(db), parameters);
      const { rows } = await db.executeQuery<ArtifactRow & { event_seq: string | number | bigint }>(CompiledQuery.raw(text, parameters));
      const row = rows[0];
      return { value: row && toArtifact(row, record.spec.inputs, false), appended: row ? [statementEventOf("created", row)] : [] };
    });
}

/** The marked text of a statement compiled once, having checked that it binds `parameters` as they are ordered. */
function compileOnce(compiled: CompiledQuery, parameters: readonly unknown[]): string {
  if (compiled.parameters.length !== parameters.length || compiled.parameters.some((p, i) => p !== parameters[i])) {
    throw new Error("the statement binds its parameters in another order than they are listed");
  }
  return PREPARED_STATEMENT_MARK + compiled.sql;
}

/**
 * inlineArtifactStatement's parameters, in the order it binds them (the
 * order they appear in its text); the
 * artifact's values last, in the order of `columns` (artifactValues' keys,
 * the same for every artifact).
 */
function inlineArtifactParameters(record: NewArtifact): { parameters: unknown[]; columns: readonly (keyof Insertable<ArtifactTable>)[] } {
  const { inputs } = record.spec;
  const values = artifactValues(record);
  const columns = Object.keys(values) as (keyof typeof values)[];
  const parameters = [
    inputs.map((i) => i.artifactId),
    inputs.map((i) => i.role),
    inputs.map((i) => i.requiredClass),
    inputs.map((i) => i.requiredKind),
    record.tenantId,
    ...columns.map((c) => values[c]),
    inputs.length,
  ];
  return { parameters, columns };
}

function inlineArtifactStatement(
  parameters: readonly unknown[],
  columns: readonly (keyof Insertable<ArtifactTable>)[],
  eventsOf: (source: string, type: ArtifactEventType) => RawBuilder<unknown>,
) {
  const [ids, roles, classes, kinds, tenantId, ...values] = parameters.map((p) => sql.val(p));
  const inputCount = values.pop();
  return sql`with wanted as (
    select * from unnest(${ids}::text[], ${roles}::text[], ${classes}::text[], ${kinds}::text[])
      with ordinality as w(input_id, role, required_class, required_kind, position)
  ),
  usable as (
    select input.id from artifacts as input join wanted on input.id = wanted.input_id
    where input.tenant_id = ${tenantId} and input.deleted_at is null
      and (wanted.required_class = '' or input.artifact_class = wanted.required_class)
      and (wanted.required_kind = '' or input.kind = wanted.required_kind)
    for share of input
  ),
  created as (
    insert into artifacts (${sql.join(columns.map((c) => sql.ref(c)))})
    select ${sql.join(values)}
    where (select count(*) from usable) = ${inputCount}
    returning ${sql.join(ARTIFACT_COLUMNS.map((c) => sql.ref(c)))}
  ),
  linked as (
    insert into artifact_inputs (tenant_id, artifact_id, input_id, role, position)
    select created.tenant_id, created.id, wanted.input_id, wanted.role, wanted.position - 1 from created, wanted
  )
  ${eventsOf("created", "created")}
  select created.*, appended_events.event_seq from created join appended_events on appended_events.artifact_id = created.id`;
}

/**
 * Ends what held an upload's storage key, inside the transaction that records
 * its artifact: so the artifact and the end of the hold commit together, or
 * neither does. A key the artifact does not use (another upload of the same
 * content won) is released to garbage collection in the same breath.
 */
async function endHold(tx: Transaction<Database>, record: NewArtifact, blob: StoredBlob | undefined): Promise<void> {
  const hold = record.hold!;
  const key = storageKeyOf(hold);
  const used = blob?.storageKey === key;
  if ("session" in hold) {
    const completed = await tx
      .updateTable("upload_sessions")
      .set({ state: "completed", artifact_id: record.id, complete_claim: null, updated_at: sql`now()` })
      .where("id", "=", hold.session.id)
      .where("state", "=", "completing")
      .where("complete_claim", "=", hold.session.claim)
      .executeTakeFirst();
    if (completed.numUpdatedRows === 0n) {
      throw new ArtifactError("aborted", `upload session ${hold.session.id} was taken over by another complete: complete it again to get its artifact`);
    }
    if (!used) await releaseStorageKey(tx, record.tenantId, key);
    return;
  }
  if (!used) {
    await releaseStorageKey(tx, record.tenantId, key);
    return;
  }
  const ended = await tx.deleteFrom("uploads_in_flight").where("storage_key", "=", key).where("released_at", "is", null).executeTakeFirst();
  if (ended.numDeletedRows === 0n) {
    throw new ArtifactError("aborted", UPLOAD_HOLD_LOST);
  }
}

/**
 * Deletes no one asked for by id (a run archived, an artifact expired) spare
 * the versions an alias points at, as they spare pinned artifacts: an alias
 * is someone's word that the version is in use, and DeleteArtifact itself
 * refuses them without force.
 */
const notAliased = sql<boolean>`not exists (select 1 from artifact_aliases where artifact_aliases.artifact_id = artifacts.id)`;

/**
 * The second step of such a delete: the candidates were locked first (FOR
 * UPDATE; a SetAlias holds its version FOR SHARE until it commits, so the
 * lock waits for it). This statement's snapshot is taken after those locks,
 * so it sees every alias committed until then, even one committed after the
 * candidates were chosen; a single UPDATE would re-check a row it waited for
 * with the snapshot it began with, blind to that alias. A SetAlias that
 * starts now waits for this transaction, then finds its version deleted and
 * refuses.
 */
async function deleteUnlessAliased(tx: Queryable, candidates: readonly { id: string }[], now: Date): Promise<ArtifactRow[]> {
  if (candidates.length === 0) return [];
  return (
    tx
      .updateTable("artifacts")
      .set({ deleted_at: now })
      // One array parameter, however many: a run may hold more artifacts than a statement takes parameters.
      .where(sql<boolean>`id = any(${candidates.map((c) => c.id)}::text[])`)
      .where(notAliased)
      .returning(ARTIFACT_COLUMNS)
      .execute()
  );
}

/** Soft-deleted rows → artifacts, each with its deleted event recorded. */
async function recordDeleted(tx: Queryable, rows: readonly ArtifactRow[], recordEvent: (event: PendingEvent) => void): Promise<Artifact[]> {
  const artifacts = await toArtifacts(tx, rows);
  for (const artifact of artifacts) recordEvent({ type: "deleted", artifact });
  return artifacts;
}

async function checkInputs(db: Queryable, tenantId: string, inputs: readonly ArtifactInput[]): Promise<void> {
  if (inputs.length === 0) return;
  const rows = await db
    .selectFrom("artifacts")
    .select(["id", "kind", "artifact_class", "deleted_at"])
    .where("tenant_id", "=", tenantId)
    .where(
      "id",
      "in",
      inputs.map((i) => i.artifactId),
    )
    .forShare()
    .execute();
  const byId = new Map(rows.map((r) => [r.id, r]));
  for (const input of inputs) {
    const row = byId.get(input.artifactId);
    if (!row) throw notFound(`input artifact ${input.artifactId} does not exist: name an existing artifact of your tenant`);
    if (row.deleted_at !== null) throw failedPrecondition(`input artifact ${input.artifactId} is deleted and cannot be used as an input`);
    if (input.requiredClass !== "" && row.artifact_class !== input.requiredClass) {
      throw failedPrecondition(
        `input artifact ${input.artifactId} has class ${JSON.stringify(row.artifact_class)}, but the input requires class ${JSON.stringify(input.requiredClass)}`,
      );
    }
    if (input.requiredKind !== "" && row.kind !== input.requiredKind) {
      throw failedPrecondition(
        `input artifact ${input.artifactId} has kind ${JSON.stringify(row.kind)}, but the input requires kind ${JSON.stringify(input.requiredKind)}`,
      );
    }
  }
}

/**
 * Postgres refuses some values that pass validation — JSON holding \u0000,
 * text it cannot convert. Those are the client's to fix, so they become
 * invalid_argument here, where the driver's codes are known.
 */
async function translateDatabaseError<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (code === "22P05" || code === "22021" || code === "22P02") {
      // The driver's own words stay in the server's log (the error's cause), not in the answer.
      throw new ArtifactError(
        "invalid_argument",
        "the database refused a value of the request (text it cannot store, such as a NUL character or invalid Unicode): remove it",
        {
          cause: error,
        },
      );
    }
    throw error;
  }
}
