import { CompiledQuery, sql, type Kysely, type RawBuilder } from "kysely";
import type { Artifact, ArtifactEventType } from "../../artifact.ts";
import type { NewArtifact } from "../../ports/artifact-records.ts";
import { statementEventOf, type WithStatementEvents } from "../events/kysely-artifact-event-log.ts";
import { ARTIFACT_COLUMNS, artifactValues, toArtifact, type ArtifactRow } from "./artifact-rows.ts";
import { PREPARED_STATEMENT_MARK } from "./prepared-statements.ts";
import type { Database } from "./schema.ts";

/**
 * Artifacts with inline content and no inputs (SaveInline's common case, a
 * small Upload's) recorded many to a statement.
 *
 * Why: every write of an artifact appends its event under one advisory lock
 * and sends NOTIFY, and Postgres holds both through the commit, WAL flush
 * included (../events/kysely-artifact-event-log.ts): new artifacts commit
 * one after another, each waiting for a flush of its own. Measured on two
 * cores, the store alone recorded ~700–1,000 a second one at a time, and
 * fewer (350–600) with 8 or 32 at once, the waiters only adding handoffs.
 * One statement for every artifact waiting takes the lock, the flush and
 * the NOTIFY once for all of them.
 *
 * A call that finds no statement on its way goes at once, alone: batching
 * adds no wait. Calls that arrive while one is on its way (WRITES_IN_FLIGHT)
 * wait for the next, at most MAX_BATCH to a statement.
 *
 * Failure. The statement commits all its rows or none. A row Postgres
 * refuses for its own values (data exceptions, constraint violations: SQLSTATE
 * classes 22 and 23) fails the whole batch, so then each is written again
 * alone and gets its own answer. Any other failure (connection lost,
 * statement timeout, disk full) is every call's answer, as it would have
 * been alone: a call whose connection was lost cannot know whether it
 * committed, so it is not written again.
 */
export function inlineArtifactBatches(
  db: Kysely<Database>,
  withStatementEvents: WithStatementEvents,
  writeAlone: (record: NewArtifact) => Promise<Artifact | undefined>,
): (record: NewArtifact) => Promise<Artifact | undefined> {
  const waiting: Waiting[] = [];
  let inFlight = 0;
  const statementOf = batchStatements(db);

  const next = () => {
    while (inFlight < WRITES_IN_FLIGHT && waiting.length > 0) {
      const batch = waiting.splice(0, MAX_BATCH);
      inFlight++;
      void write(batch).finally(() => {
        inFlight--;
        next();
      });
    }
  };

  // A lone record goes by the batch statement too (its one-row text), not by writeAlone's: that one binds the
  // inputs as arrays, and Postgres, costing a generic plan for arrays it cannot see, kept planning it afresh
  // for every call on some connections (a SaveInline at 1 in flight went from ~1.5 to 3-6 ms when it did).
  // The batch statement binds only the row's values, and one plan serves them all.
  const write = async (batch: Waiting[]) => {
    let artifacts: Artifact[];
    try {
      artifacts = await withStatementEvents(async (eventsOf) => {
        const { text, parameters } = statementOf(
          batch.map((w) => w.record),
          eventsOf,
        );
        const { rows } = await db.executeQuery<ArtifactRow & { event_seq: string | number | bigint }>(CompiledQuery.raw(text, parameters));
        // In seq order, as the log's listeners expect (the event feed delivers a run of seqs without reading the log).
        const appended = rows.map((row) => statementEventOf("created", row)).sort((a, b) => a.seq - b.seq);
        return { value: rows.map((row) => toArtifact(row, [], false)), appended };
      });
    } catch (error) {
      // Alone, a row refused for its values has its answer already.
      if (batch.length === 1 || !refusedForItsValues(error)) {
        for (const w of batch) w.reject(error);
        return;
      }
      await Promise.all(batch.map((w) => settle(w, () => writeAlone(w.record))));
      return;
    }
    const byId = new Map(artifacts.map((a) => [a.id, a]));
    for (const w of batch) {
      const artifact = byId.get(w.record.id);
      if (artifact) w.resolve(artifact);
      else w.reject(new Error(`the batch statement returned no row for artifact ${w.record.id}`));
    }
  };

  return (record) => {
    if (record.spec.inputs.length > 0 || record.blob || record.hold) return writeAlone(record);
    return new Promise<Artifact | undefined>((resolve, reject) => {
      waiting.push({ record, resolve, reject });
      next();
    });
  };
}

/**
 * Statements on their way at once. One: a second would only wait for the
 * first's lock. Measured with the store alone at 8 at once, one in flight
 * recorded 3,000–3,400 a second, two 2,400–2,600, three 1,100–1,600.
 */
const WRITES_IN_FLIGHT = 1;
/** Rows to a statement (34 parameters each: well within Postgres' 65,535). */
const MAX_BATCH = 64;

interface Waiting {
  readonly record: NewArtifact;
  readonly resolve: (artifact: Artifact | undefined) => void;
  readonly reject: (error: unknown) => void;
}

async function settle(waiting: Waiting, write: () => Promise<Artifact | undefined>): Promise<void> {
  try {
    waiting.resolve(await write());
  } catch (error) {
    waiting.reject(error);
  }
}

function refusedForItsValues(error: unknown): boolean {
  const code = (error as { code?: unknown } | undefined)?.code;
  return typeof code === "string" && (code.startsWith("22") || code.startsWith("23"));
}

/**
 * The statement recording `records` (each without inputs) and their created
 * events: a multi-row INSERT … RETURNING and the event log's expressions. Its
 * text depends only on how many rows it has (the columns are artifactValues'
 * keys, the same for every artifact), so each size is compiled once and
 * prepared (./prepared-statements.ts); Postgres takes the parameters' types
 * from the columns they are inserted into.
 */
function batchStatements(db: Kysely<Database>) {
  const texts = new Map<number, string>();
  return (records: readonly NewArtifact[], eventsOf: (source: string, type: ArtifactEventType) => RawBuilder<unknown>) => {
    const rows = records.map(artifactValues);
    const columns = Object.keys(rows[0]!) as (keyof (typeof rows)[number])[];
    const parameters = rows.flatMap((row) => columns.map((column) => row[column]));
    let text = texts.get(records.length);
    if (text === undefined) {
      const values = rows.map((row) => sql`(${sql.join(columns.map((column) => sql.val(row[column])))})`);
      const compiled = sql`with created as (
    insert into artifacts (${sql.join(columns.map((c) => sql.ref(c)))})
    values ${sql.join(values)}
    returning ${sql.join(ARTIFACT_COLUMNS.map((c) => sql.ref(c)))}
  )
  ${eventsOf("created", "created")}
  select created.*, appended_events.event_seq from created join appended_events on appended_events.artifact_id = created.id`.compile(db);
      if (compiled.parameters.length !== parameters.length || compiled.parameters.some((p, i) => p !== parameters[i])) {
        throw new Error("the batch statement binds its parameters in another order than they are listed");
      }
      text = PREPARED_STATEMENT_MARK + compiled.sql;
      texts.set(records.length, text);
    }
    return { text, parameters };
  };
}
