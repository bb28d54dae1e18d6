import type { TokenScope } from "../artifact.ts";

/**
 * API tokens, kept by the SHA-256 of their secret (the secret itself is
 * never stored). Not tenant-scoped: a token is how a caller's tenant is
 * found in the first place.
 */
export interface TokenStore {
  createToken(token: { id: string; tenantId: string; name: string; sha256: string; scope: TokenScope; expiresAt: Date | undefined }): Promise<void>;
  findTokenBySha256(sha256: string): Promise<ApiToken | undefined>;
  findTokenById(id: string): Promise<ApiToken | undefined>;
  /** Every tenant's tokens, or one tenant's; oldest first. */
  listTokens(tenantId?: string): Promise<ApiToken[]>;
  /** False when there is no such token, or it was revoked already. */
  revokeToken(id: string, now: Date): Promise<boolean>;
}

export interface ApiToken {
  readonly id: string;
  readonly tenantId: string;
  readonly name: string;
  readonly createdAt: Date;
  readonly revokedAt: Date | undefined;
  readonly scope: TokenScope;
  readonly expiresAt: Date | undefined;
}
