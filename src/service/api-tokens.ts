import { createHash, randomBytes } from "node:crypto";
import type { Caller, TokenScope } from "../artifact.ts";
import { TOKEN_SCOPES } from "../artifact.ts";
import { ArtifactError, invalidArgument } from "../artifact-error.ts";
import { newArtifactId } from "../artifact-id.ts";
import type { ApiToken, TokenStore } from "../ports/token-store.ts";

/**
 * API tokens: `adt_` + 32 random bytes in base64url. Only their SHA-256 is
 * stored, so a database leak does not leak usable tokens; SHA-256 without a
 * salt is enough because the tokens themselves carry 256 random bits.
 */
const TENANT_PATTERN = /^[a-z0-9][a-z0-9_-]{0,62}$/;
const TOKEN_PATTERN = /^adt_[A-Za-z0-9_-]{43}$/;

export async function createApiToken(
  metadata: TokenStore,
  tenantId: string,
  name: string,
  options: { scope?: TokenScope; expiresAt?: Date | undefined } = {},
): Promise<{ id: string; token: string; scope: TokenScope; expiresAt: Date | undefined }> {
  if (!TENANT_PATTERN.test(tenantId)) {
    throw invalidArgument(`tenant ${JSON.stringify(tenantId)} is not valid: use 1–63 characters of a-z 0-9 _ -, starting with a letter or digit`);
  }
  if (!/^[\w.@:-]{1,128}$/.test(name)) {
    throw invalidArgument(`token name ${JSON.stringify(name)} is not valid: use 1–128 characters of letters, digits and . _ @ : -`);
  }
  const scope = options.scope ?? "read-write";
  if (!TOKEN_SCOPES.includes(scope)) throw invalidArgument(`token scope ${JSON.stringify(scope)} is not valid: use ${TOKEN_SCOPES.join(", ")}`);
  if (options.expiresAt && !(options.expiresAt.getTime() > Date.now())) throw invalidArgument("a token's expiry must lie in the future");
  const token = `adt_${randomBytes(32).toString("base64url")}`;
  const id = newArtifactId("tok");
  await metadata.createToken({ id, tenantId, name, sha256: sha256Hex(token), scope, expiresAt: options.expiresAt });
  return { id, token, scope, expiresAt: options.expiresAt };
}

/** True while a token may be used: not revoked, not expired. */
export function tokenIsActive(token: ApiToken | undefined, now: number = Date.now()): boolean {
  return token !== undefined && token.revokedAt === undefined && (token.expiresAt === undefined || token.expiresAt.getTime() > now);
}

/**
 * Resolves `authorization: Bearer <token>` to the caller, or throws
 * unauthenticated with what to do about it. Uncached: see ./token-authenticator.ts.
 */
export async function authenticate(metadata: TokenStore, authorization: string | null | undefined): Promise<Caller> {
  return callerOf(await metadata.findTokenBySha256(tokenSha256(authorization)));
}

/** The SHA-256 a well-formed `Bearer <token>` header names; throws unauthenticated for anything else. */
export function tokenSha256(authorization: string | null | undefined): string {
  if (!authorization) {
    throw new ArtifactError(
      "unauthenticated",
      "missing credentials: send the metadata header `authorization: Bearer <token>` (create a token with `artifactd token create`)",
    );
  }
  const match = /^Bearer\s+(\S+)$/i.exec(authorization.trim());
  if (!match) throw new ArtifactError("unauthenticated", "the authorization header must read `Bearer <token>`");
  const token = match[1]!;
  if (!TOKEN_PATTERN.test(token)) throw new ArtifactError("unauthenticated", "the API token is malformed: tokens look like adt_ followed by 43 characters");
  return sha256Hex(token);
}

export function callerOf(found: ApiToken | undefined, now: number = Date.now()): Caller {
  if (found === undefined || !tokenIsActive(found, now)) {
    const expiredAt = found?.revokedAt === undefined ? found?.expiresAt : undefined;
    throw new ArtifactError(
      "unauthenticated",
      expiredAt
        ? `the API token expired at ${expiredAt.toISOString()}: create a new one with \`artifactd token create\``
        : "the API token is unknown or revoked: create a new one with `artifactd token create`",
    );
  }
  return { tenantId: found.tenantId, principal: found.name, tokenId: found.id, scope: found.scope };
}

const SCOPE_RANK: Record<TokenScope, number> = { "read-only": 0, "read-write": 1, admin: 2 };

/** Throws permission_denied unless the caller's token has at least `needed` scope; `action` says what was refused. */
export function requireScope(caller: Caller, needed: TokenScope, action: string): void {
  if (SCOPE_RANK[caller.scope] >= SCOPE_RANK[needed]) return;
  throw new ArtifactError(
    "permission_denied",
    `this token is ${caller.scope} and cannot ${action}: that needs a ${needed} token (\`artifactd token create --scope ${needed}\`)`,
  );
}

function sha256Hex(token: string): string {
  return createHash("sha256").update(token).digest("hex");
}
