import { sql, type Kysely } from "kysely";
import type { MetadataStore } from "../../ports/metadata-store.ts";
import { createKyselyArtifactEventLog } from "../events/kysely-artifact-event-log.ts";
import { createKyselyAllTenantsBlobIndex } from "./kysely-all-tenants-blob-index.ts";
import { createKyselyArtifactQueries } from "./kysely-artifact-queries.ts";
import { createKyselyArtifactRecords } from "./kysely-artifact-records.ts";
import { createKyselyArtifactVersions } from "./kysely-artifact-versions.ts";
import { createKyselyInFlightUploads } from "./kysely-in-flight-uploads.ts";
import { createKyselyTenantBlobIndex } from "./kysely-tenant-blob-index.ts";
import { createKyselyTenantQuotas } from "./kysely-tenant-quotas.ts";
import { createKyselyTokenStore } from "./kysely-token-store.ts";
import { createKyselyUploadSessionStore } from "./kysely-upload-session-store.ts";
import { migrationProvider } from "./migrations/index.ts";
import type { Database } from "./schema.ts";

/**
 * The metadata store on kysely: the same SQL for the Postgres server
 * (PostgresDialect over pg) and embedded PGlite (./pglite-dialect.ts), one
 * file per port (./kysely-*.ts), all on one database handle.
 *
 * Every write that changes an artifact records its event in the event log
 * (../events/kysely-artifact-event-log.ts) within its own transaction: the
 * change and its event commit together or not at all.
 */
export function createKyselyMetadataStore(db: Kysely<Database>, options: { onClose?: () => Promise<void> } = {}): MetadataStore {
  const { withEvents, withStatementEvents, ...eventLog } = createKyselyArtifactEventLog(db);

  return {
    uploadSessions: createKyselyUploadSessionStore(db),
    uploadsInFlight: createKyselyInFlightUploads(db),
    eventLog,
    tenantQuotas: createKyselyTenantQuotas(db),
    versions: createKyselyArtifactVersions(db, withEvents),
    ...createKyselyArtifactQueries(db),
    ...createKyselyArtifactRecords(db, withEvents, withStatementEvents),
    ...createKyselyTenantBlobIndex(db),
    ...createKyselyAllTenantsBlobIndex(db),
    ...createKyselyTokenStore(db),

    async ping() {
      await sql`select 1`.execute(db);
    },

    async missingMigrations() {
      // One read of kysely's own bookkeeping (Migrator.getMigrations would also introspect every table).
      const known = Object.keys(await migrationProvider.getMigrations());
      const { rows } = await sql<{ name: string }>`select name from kysely_migration`.execute(db);
      const applied = new Set(rows.map((row) => row.name));
      return known.filter((name) => !applied.has(name));
    },

    async close() {
      await db.destroy();
      await options.onClose?.();
    },
  };
}
