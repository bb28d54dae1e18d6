import type { Transaction } from "kysely";
import { STATUS_TRANSITIONS, type Artifact } from "../../artifact.ts";
import { failedPrecondition } from "../../artifact-error.ts";
import type { PendingEvent } from "../events/kysely-artifact-event-log.ts";
import { selectArtifacts } from "./artifact-query-builders.ts";
import { ARTIFACT_COLUMNS, toArtifact, type ArtifactRow } from "./artifact-rows.ts";
import type { Database } from "./schema.ts";

/**
 * Applies a status change allowed by STATUS_TRANSITIONS in the caller's
 * transaction, recording its event; the row as it left it (locked), or
 * undefined when there is no such artifact.
 */
export async function changeStatus(
  tx: Transaction<Database>,
  recordEvent: (event: PendingEvent) => void,
  tenantId: string,
  id: string,
  status: Artifact["status"],
): Promise<{ row: ArtifactRow } | undefined> {
  const row = await selectArtifacts(tx, tenantId).where("id", "=", id).forUpdate().executeTakeFirst();
  if (!row) return undefined;
  if (row.status === status) return { row };
  if (row.deleted_at !== null) throw failedPrecondition(`artifact ${id} is deleted; its status can no longer change`);
  const allowed = STATUS_TRANSITIONS[row.status];
  if (!allowed.includes(status)) {
    throw failedPrecondition(
      `artifact ${id} is ${row.status}; it can go to ${allowed.length ? allowed.join(" or ") : "no other status (approved is final)"}, not ${status}`,
    );
  }
  const updated = await tx.updateTable("artifacts").set({ status }).where("id", "=", id).returning(ARTIFACT_COLUMNS).executeTakeFirstOrThrow();
  recordEvent({ type: "status_changed", artifact: toArtifact(updated, [], false) });
  return { row: updated };
}
