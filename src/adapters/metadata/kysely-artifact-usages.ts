import { sql, type Kysely, type Selectable } from "kysely";
import type { ArtifactUsage, ArtifactUsageStore } from "../../ports/artifact-usages.ts";
import type { ArtifactUsageTable, Database } from "./schema.ts";

const toUsage = (row: Selectable<ArtifactUsageTable>): ArtifactUsage => ({
  artifactId: row.artifact_id,
  runId: row.run_id,
  role: row.role,
  recordedAt: new Date(row.recorded_at),
  recordedBy: row.recorded_by,
});

/** artifact_usages (see its migration, 20261213020000_usages_and_parent_runs). */
export function createKyselyArtifactUsages(db: Kysely<Database>): ArtifactUsageStore {
  return {
    async recordUsage(tenantId, usage) {
      // Inserted from the artifact's own row, so a use of an artifact deleted a moment ago is never recorded; the
      // primary key makes a repeat insert nothing, and the existing row is then read.
      const inserted = await db
        .insertInto("artifact_usages")
        .columns(["tenant_id", "artifact_id", "run_id", "role", "recorded_at", "recorded_by"])
        .expression((eb) =>
          eb
            .selectFrom("artifacts")
            // Typed casts: a bare parameter in a select list is text to Postgres, which a timestamptz column refuses.
            .select([
              "artifacts.tenant_id",
              "artifacts.id",
              sql<string>`cast(${usage.runId} as text)`.as("run_id"),
              sql<string>`cast(${usage.role} as text)`.as("role"),
              sql<Date>`cast(${usage.recordedAt} as timestamptz)`.as("recorded_at"),
              sql<string>`cast(${usage.recordedBy} as text)`.as("recorded_by"),
            ])
            .where("artifacts.tenant_id", "=", tenantId)
            .where("artifacts.id", "=", usage.artifactId)
            .where("artifacts.deleted_at", "is", null),
        )
        .onConflict((oc) => oc.columns(["tenant_id", "artifact_id", "run_id", "role"]).doNothing())
        .returningAll()
        .executeTakeFirst();
      if (inserted) return toUsage(inserted);
      const existing = await db
        .selectFrom("artifact_usages")
        .selectAll()
        .where("tenant_id", "=", tenantId)
        .where("artifact_id", "=", usage.artifactId)
        .where("run_id", "=", usage.runId)
        .where("role", "=", usage.role)
        .executeTakeFirst();
      return existing && toUsage(existing);
    },

    async listUsages(tenantId, artifactId, limit) {
      const rows = await db
        .selectFrom("artifact_usages")
        .selectAll()
        .where("tenant_id", "=", tenantId)
        .where("artifact_id", "=", artifactId)
        .orderBy("recorded_at")
        .orderBy("run_id")
        .orderBy("role")
        .limit(limit)
        .execute();
      return rows.map(toUsage);
    },
  };
}
