import { sql, type Kysely, type RawBuilder, type Selectable, type Transaction } from "kysely";
import type { Artifact, ArtifactEventType } from "../../artifact.ts";
import type { AliasMove } from "../../artifact-versions.ts";
import type { ArtifactEventLog, LoggedEvent } from "../../ports/artifact-event-log.ts";
import type { ArtifactRow } from "../metadata/artifact-rows.ts";
import type { ArtifactEventTable, Database } from "../metadata/schema.ts";

/**
 * The artifact event log on kysely (Postgres and PGlite), table
 * artifact_events (migration 20261210000000).
 *
 * Order. An identity column alone numbers rows in the order transactions
 * *ask* for numbers, not the order they commit: a reader could see seq 8
 * committed while seq 7's transaction is still running, move on, and never
 * read 7. So appending takes a transaction-scoped advisory lock as the last
 * step of the writing transaction, right before taking its seq numbers, and
 * holds it through commit: transactions take numbers one after another and
 * each is visible before the next one can take any (Postgres makes a commit
 * visible before it releases the committing transaction's locks). Seq order
 * is commit order; only the short tail of writing transactions is serialised.
 *
 * Wake-ups. The appending transaction also sends NOTIFY on EVENTS_CHANNEL
 * (delivered at commit, never for a rollback), its payload the highest seq
 * appended, for other processes; within this process, onAppended listeners
 * are called after the commit, with the events.
 */

/** The NOTIFY channel of appended events: a wake-up whose payload is the highest seq appended; readers read the log. */
export const EVENTS_CHANNEL = "artifactd_events";

/** The advisory lock key that orders appends (any constant no other user of the database takes). */
const APPEND_LOCK_KEY = 4_147_120_325;

export interface PendingEvent {
  readonly type: ArtifactEventType;
  /** The artifact as the change left it (its life-cycle fields are recorded). */
  readonly artifact: Pick<Artifact, "id" | "tenantId" | "status" | "pinned" | "deletedAt">;
  /** For alias_moved: the move, kept with the event for Watch (WatchArtifactsResponse.alias_move). */
  readonly aliasMove?: AliasMove;
}

/**
 * Runs `change` in a transaction in which it records its events through
 * `record`; they are appended as the transaction's last step, so they commit
 * (or roll back) with the change. Listeners of this process are woken after
 * the commit.
 */
export type WithEvents = <T>(change: (tx: Transaction<Database>, record: (event: PendingEvent) => void) => Promise<T>) => Promise<T>;

/**
 * For a change made by a single statement (its own transaction, one round
 * trip): `eventsOf` gives the statement's last common table expressions,
 * which append an event for each row of one of its earlier ones, with the
 * order and the wake-ups appendEvents gives a transaction. Run the statement
 * in `change` and return the events it appended (statementEventOf each
 * returned row); this process's listeners get them after it.
 */
export type WithStatementEvents = <T>(
  change: (eventsOf: (source: string, type: ArtifactEventType) => RawBuilder<unknown>) => Promise<{ value: T; appended: readonly LoggedEvent[] }>,
) => Promise<T>;

export function createKyselyArtifactEventLog(db: Kysely<Database>): ArtifactEventLog & { withEvents: WithEvents; withStatementEvents: WithStatementEvents } {
  const listeners = new Set<(appended: readonly LoggedEvent[]) => void>();
  const tell = (appended: readonly LoggedEvent[]) => {
    if (appended.length > 0) for (const listener of listeners) listener(appended);
  };

  return {
    async withStatementEvents(change) {
      const { value, appended } = await change(statementEvents);
      tell(appended);
      return value;
    },

    async withEvents(change) {
      let appended: readonly LoggedEvent[] = [];
      const result = await db.transaction().execute(async (tx) => {
        const pending: PendingEvent[] = [];
        const value = await change(tx, (event) => pending.push(event));
        appended = await appendEvents(tx, pending);
        return value;
      });
      tell(appended);
      return result;
    },

    async readAfter(afterSeq, limit, tenantId) {
      const rows = await db
        .selectFrom("artifact_events")
        .select(["seq", "tenant_id", "type", "artifact_id", "status", "pinned", "deleted_at", "alias_move"])
        .where("seq", ">", afterSeq)
        .$if(tenantId !== undefined, (q) => q.where("tenant_id", "=", tenantId!))
        .orderBy("seq")
        .limit(limit)
        .execute();
      return rows.map(toLoggedEvent);
    },

    async bounds() {
      const row = await db
        .selectFrom("artifact_events_pruned")
        .select([
          "through_seq",
          (eb) =>
            eb
              .selectFrom("artifact_events")
              .select((e) => e.fn.max("seq").as("m"))
              .as("last_seq"),
        ])
        .executeTakeFirstOrThrow();
      const prunedThrough = Number(row.through_seq);
      return { prunedThrough, lastSeq: Math.max(prunedThrough, Number(row.last_seq ?? 0)) };
    },

    async prune(cutoff) {
      return db.transaction().execute(async (tx) => {
        // Everything up to the newest event older than the cutoff: the log stays one unbroken run of seqs after
        // prunedThrough, even where an older transaction committed after a newer one began.
        const { through } = await tx
          .selectFrom("artifact_events")
          .select((eb) => eb.fn.max("seq").as("through"))
          .where("created_at", "<", cutoff)
          .executeTakeFirstOrThrow();
        if (through === null || through === undefined) return 0;
        const deleted = await tx.deleteFrom("artifact_events").where("seq", "<=", through).executeTakeFirst();
        await tx
          .updateTable("artifact_events_pruned")
          .set({ through_seq: sql`greatest(through_seq, ${through}::int8)` })
          .execute();
        return Number(deleted.numDeletedRows);
      });
    },

    onAppended(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}

/**
 * appendEvents as common table expressions, `, append_lock as (…), … ,
 * appended_events as (…)`, for a statement that already defines `source`
 * (artifact rows: id, tenant_id, status, pinned, deleted_at). The lock is
 * taken only once `source` has its rows (the events' seq numbers wait for
 * it), so as late in the statement as it can be; Postgres holds it through
 * the commit that follows the statement. The statement must read
 * `appended_events` (artifact_id, event_seq: one row per event) for the
 * expressions to run at all.
 */
function statementEvents(source: string, type: ArtifactEventType): RawBuilder<unknown> {
  const from = sql.table(source);
  return sql`, append_lock as (select pg_advisory_xact_lock(${sql.lit(APPEND_LOCK_KEY)}) from (select from ${from} limit 1) as any_row),
  appended as (
    insert into artifact_events (tenant_id, type, artifact_id, status, pinned, deleted_at)
    select changed.tenant_id, ${sql.lit(type)}, changed.id, changed.status, changed.pinned, changed.deleted_at from ${from} as changed, append_lock
    returning artifact_id, seq
  ),
  woken as (select pg_notify(${sql.lit(EVENTS_CHANNEL)}, max(seq)::text) from appended having count(*) > 0),
  appended_events as (select appended.artifact_id, appended.seq as event_seq from appended, (select count(*) from woken) as notified)`;
}

/** The event a statement of withStatementEvents appended for one of its artifact rows (read with its `event_seq`). */
export function statementEventOf(
  type: ArtifactEventType,
  row: { readonly event_seq: string | number | bigint; readonly id: string; readonly tenant_id: string } & Pick<
    ArtifactRow,
    "status" | "pinned" | "deleted_at"
  >,
): LoggedEvent {
  return {
    seq: Number(row.event_seq),
    tenantId: row.tenant_id,
    type,
    artifactId: row.id,
    status: row.status,
    pinned: row.pinned,
    deletedAt: row.deleted_at === null ? undefined : new Date(row.deleted_at),
  };
}

/**
 * Appends in the caller's transaction, as its last step (see the head of
 * this file), in one statement: the lock, then the rows (their seq numbers
 * wait for the lock: the insert reads from it), in the order given, and the
 * NOTIFY. Nothing when there is nothing to append.
 */
async function appendEvents(tx: Transaction<Database>, events: readonly PendingEvent[]): Promise<LoggedEvent[]> {
  if (events.length === 0) return [];
  const column = <T>(of: (event: PendingEvent) => T) => events.map(of);
  const { rows } = await sql<Selectable<ArtifactEventTable>>`with append_lock as (select pg_advisory_xact_lock(${sql.lit(APPEND_LOCK_KEY)})),
  appended as (
    insert into artifact_events (tenant_id, type, artifact_id, status, pinned, deleted_at, alias_move)
    select pending.tenant_id, pending.type, pending.artifact_id, pending.status, pending.pinned, pending.deleted_at, pending.alias_move::jsonb
    from append_lock, unnest(
      ${column((e) => e.artifact.tenantId)}::text[], ${column((e) => e.type)}::text[], ${column((e) => e.artifact.id)}::text[],
      ${column((e) => e.artifact.status)}::text[], ${column((e) => e.artifact.pinned)}::bool[], ${column((e) => e.artifact.deletedAt ?? null)}::timestamptz[],
      ${column((e) => (e.aliasMove ? JSON.stringify(e.aliasMove) : null))}::text[]
    ) with ordinality as pending(tenant_id, type, artifact_id, status, pinned, deleted_at, alias_move, position)
    order by pending.position
    returning seq, tenant_id, type, artifact_id, status, pinned, deleted_at, created_at, alias_move
  ),
  woken as (select pg_notify(${sql.lit(EVENTS_CHANNEL)}, max(seq)::text) from appended)
  select appended.* from appended, (select count(*) from woken) as notified`.execute(tx);
  return rows.map(toLoggedEvent).sort((a, b) => a.seq - b.seq);
}

function toLoggedEvent(
  row: Pick<Selectable<ArtifactEventTable>, "seq" | "tenant_id" | "type" | "artifact_id" | "status" | "pinned" | "deleted_at" | "alias_move">,
): LoggedEvent {
  return {
    ...(row.alias_move ? { aliasMove: aliasMoveFromJson(row.alias_move) } : {}),
    seq: Number(row.seq),
    tenantId: row.tenant_id,
    type: row.type,
    artifactId: row.artifact_id,
    status: row.status,
    pinned: row.pinned,
    deletedAt: row.deleted_at === null ? undefined : new Date(row.deleted_at),
  };
}

/** An alias move as the log keeps it (JSON, as the drivers return jsonb: parsed, or text). */
function aliasMoveFromJson(value: unknown): AliasMove {
  const move = (typeof value === "string" ? JSON.parse(value) : value) as Omit<AliasMove, "movedAt"> & { movedAt: string };
  return { ...move, movedAt: new Date(move.movedAt) };
}
