import type { Kysely, Selectable } from "kysely";
import type { ApiToken, TokenStore } from "../../ports/token-store.ts";
import type { ApiTokenTable, Database } from "./schema.ts";

/** API tokens on kysely: the api_tokens table, found by id or by the SHA-256 of the secret (unique). */
export function createKyselyTokenStore(db: Kysely<Database>): TokenStore {
  return {
    async createToken(token) {
      await db
        .insertInto("api_tokens")
        .values({
          id: token.id,
          tenant_id: token.tenantId,
          name: token.name,
          token_sha256: token.sha256,
          revoked_at: null,
          scope: token.scope,
          expires_at: token.expiresAt ?? null,
        })
        .execute();
    },

    async findTokenBySha256(sha256) {
      const row = await db.selectFrom("api_tokens").selectAll().where("token_sha256", "=", sha256).executeTakeFirst();
      return row && toApiToken(row);
    },

    async findTokenById(id) {
      const row = await db.selectFrom("api_tokens").selectAll().where("id", "=", id).executeTakeFirst();
      return row && toApiToken(row);
    },

    async listTokens(tenantId) {
      let query = db.selectFrom("api_tokens").selectAll().orderBy("created_at");
      if (tenantId !== undefined) query = query.where("tenant_id", "=", tenantId);
      return (await query.execute()).map(toApiToken);
    },

    async revokeToken(id, now) {
      const result = await db.updateTable("api_tokens").set({ revoked_at: now }).where("id", "=", id).where("revoked_at", "is", null).executeTakeFirst();
      return result.numUpdatedRows > 0n;
    },
  };
}

function toApiToken(row: Selectable<ApiTokenTable>): ApiToken {
  return {
    id: row.id,
    tenantId: row.tenant_id,
    name: row.name,
    createdAt: new Date(row.created_at),
    revokedAt: row.revoked_at === null ? undefined : new Date(row.revoked_at),
    scope: row.scope,
    expiresAt: row.expires_at === null ? undefined : new Date(row.expires_at),
  };
}
