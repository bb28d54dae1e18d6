import type { Migration, MigrationProvider } from "kysely";
import * as initial from "./20261124000000_initial.ts";
import * as queryAndLifecycle from "./20261124010000_query_and_lifecycle.ts";
import * as uploadSessions from "./20261124020000_upload_sessions.ts";
import * as serverSettings from "./20261124030000_server_settings.ts";
import * as blobHolds from "./20261201000000_blob_holds.ts";
import * as uploadsInFlight from "./20261204100000_uploads_in_flight.ts";
import * as artifactEvents from "./20261210000000_artifact_events.ts";
import * as tokenScopes from "./20261211000000_token_scopes.ts";
import * as forgetUrlSigningKey from "./20261211010000_forget_url_signing_key.ts";
import * as tenantQuotas from "./20261211020000_tenant_quotas.ts";
import * as inlineBytes from "./20261212000000_inline_bytes.ts";
import * as versionsAndAliases from "./20261213000000_versions_and_aliases.ts";
import * as searchAndJson from "./20261213010000_search_and_json.ts";
import * as usagesAndParentRuns from "./20261213020000_usages_and_parent_runs.ts";
import * as inlineContentDigest from "./20261213030000_inline_content_digest.ts";

/**
 * Every migration, by its timestamped name. Listed statically rather than
 * read from the folder so the set is fixed at build time; add new files here.
 */
export const migrationProvider: MigrationProvider = {
  async getMigrations(): Promise<Record<string, Migration>> {
    return {
      "20261124000000_initial": initial,
      "20261124010000_query_and_lifecycle": queryAndLifecycle,
      "20261124020000_upload_sessions": uploadSessions,
      "20261124030000_server_settings": serverSettings,
      "20261201000000_blob_holds": blobHolds,
      "20261204100000_uploads_in_flight": uploadsInFlight,
      "20261210000000_artifact_events": artifactEvents,
      "20261211000000_token_scopes": tokenScopes,
      "20261211010000_forget_url_signing_key": forgetUrlSigningKey,
      "20261211020000_tenant_quotas": tenantQuotas,
      "20261212000000_inline_bytes": inlineBytes,
      "20261213000000_versions_and_aliases": versionsAndAliases,
      "20261213010000_search_and_json": searchAndJson,
      "20261213020000_usages_and_parent_runs": usagesAndParentRuns,
      "20261213030000_inline_content_digest": inlineContentDigest,
    };
  },
};
