import { sql, type Kysely, type RawBuilder, type Transaction } from "kysely";
import type { Artifact, ArtifactEventType } from "../../artifact.ts";
import type { ArtifactEventLog, LoggedEvent } from "../../ports/artifact-event-log.ts";
import type { Database } from "../metadata/schema.ts";

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
 * (delivered at commit, never for a rollback) for other processes; within
 * this process, onAppended listeners are called after the commit.
 */

/** The NOTIFY channel of appended events: a wake-up without payload, readers read the log. */
export const EVENTS_CHANNEL = "artifactd_events";

/** The advisory lock key that orders appends (any constant no other user of the database takes). */
const APPEND_LOCK_KEY = 4_147_120_325;

export interface PendingEvent {
  readonly type: ArtifactEventType;
  /** The artifact as the change left it (its life-cycle fields are recorded). */
  readonly artifact: Pick<Artifact, "id" | "tenantId" | "status" | "pinned" | "deletedAt">;
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
 * which append an event for each row of one of its earlier ones, in the
 * order and with the wake-ups appendEvents gives a transaction. Run the
 * statement in `change`; this process's listeners are woken after it, when
 * it says it appended.
 */
export type WithStatementEvents = <T>(
  change: (eventsOf: (source: string, type: ArtifactEventType) => RawBuilder<unknown>) => Promise<{ value: T; appended: boolean }>,
) => Promise<T>;

export function createKyselyArtifactEventLog(db: Kysely<Database>): ArtifactEventLog & { withEvents: WithEvents; withStatementEvents: WithStatementEvents } {
  const listeners = new Set<() => void>();

  return {
    async withStatementEvents(change) {
      const { value, appended } = await change(statementEvents);
      if (appended) for (const listener of listeners) listener();
      return value;
    },

    async withEvents(change) {
      let appended = false;
      const result = await db.transaction().execute(async (tx) => {
        const pending: PendingEvent[] = [];
        const value = await change(tx, (event) => pending.push(event));
        appended = await appendEvents(tx, pending);
        return value;
      });
      if (appended) for (const listener of listeners) listener();
      return result;
    },

    async readAfter(afterSeq, limit, tenantId) {
      const rows = await db
        .selectFrom("artifact_events")
        .select(["seq", "tenant_id", "type", "artifact_id", "status", "pinned", "deleted_at"])
        .where("seq", ">", afterSeq)
        .$if(tenantId !== undefined, (q) => q.where("tenant_id", "=", tenantId!))
        .orderBy("seq")
        .limit(limit)
        .execute();
      return rows.map(
        (row): LoggedEvent => ({
          seq: Number(row.seq),
          tenantId: row.tenant_id,
          type: row.type,
          artifactId: row.artifact_id,
          status: row.status,
          pinned: row.pinned,
          deletedAt: row.deleted_at === null ? undefined : new Date(row.deleted_at),
        }),
      );
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
 * appendEvents as common table expressions, `, appended_events as (…)`, for
 * a statement that already defines `source` (artifact rows: id, tenant_id,
 * status, pinned, deleted_at): the lock is taken only once `source` has its
 * rows (the events' seq numbers depend on it), and so as late in the
 * statement as it can be; Postgres holds it through the commit that follows
 * the statement. The statement reads `appended_events` (the number of events
 * appended) for the CTEs to run at all.
 */
function statementEvents(source: string, type: ArtifactEventType): RawBuilder<unknown> {
  const from = sql.table(source);
  return sql`, append_lock as (select pg_advisory_xact_lock(${sql.lit(APPEND_LOCK_KEY)}) from (select 1 from ${from} limit 1) as any_row),
  appended as (
    insert into artifact_events (tenant_id, type, artifact_id, status, pinned, deleted_at)
    select changed.tenant_id, ${sql.lit(type)}, changed.id, changed.status, changed.pinned, changed.deleted_at from ${from} as changed, append_lock
    returning seq
  ),
  appended_events as (select count(*) as appended, (select count(*) from (select pg_notify(${sql.lit(EVENTS_CHANNEL)}, '') from appended limit 1) as woken) as woken from appended)`;
}

/** Appends in the caller's transaction, as its last step (see the head of this file); false when there is nothing to append. */
async function appendEvents(tx: Transaction<Database>, events: readonly PendingEvent[]): Promise<boolean> {
  if (events.length === 0) return false;
  await sql`select pg_advisory_xact_lock(${sql.lit(APPEND_LOCK_KEY)})`.execute(tx);
  await tx
    .insertInto("artifact_events")
    .values(
      events.map(({ type, artifact }) => ({
        tenant_id: artifact.tenantId,
        type,
        artifact_id: artifact.id,
        status: artifact.status,
        pinned: artifact.pinned,
        deleted_at: artifact.deletedAt ?? null,
      })),
    )
    .execute();
  await sql`select pg_notify(${EVENTS_CHANNEL}, '')`.execute(tx);
  return true;
}
