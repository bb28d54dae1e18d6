import { createHash, randomBytes } from "node:crypto";
import type { Caller } from "../artifact.ts";
import { ArtifactError, invalidArgument } from "../artifact-error.ts";
import { newArtifactId } from "../artifact-id.ts";
import type { MetadataStore } from "../ports/metadata-store.ts";

/**
 * API tokens: `adt_` + 32 random bytes in base64url. Only their SHA-256 is
 * stored, so a database leak does not leak usable tokens; SHA-256 without a
 * salt is enough because the tokens themselves carry 256 random bits.
 */
const TENANT_PATTERN = /^[a-z0-9][a-z0-9_-]{0,62}$/;
const TOKEN_PATTERN = /^adt_[A-Za-z0-9_-]{43}$/;

export async function createApiToken(
  metadata: MetadataStore,
  tenantId: string,
  name: string,
): Promise<{ id: string; token: string }> {
  if (!TENANT_PATTERN.test(tenantId)) {
    throw invalidArgument(`tenant ${JSON.stringify(tenantId)} is not valid: use 1–63 characters of a-z 0-9 _ -, starting with a letter or digit`);
  }
  if (!/^[\w.@:-]{1,128}$/.test(name)) {
    throw invalidArgument(`token name ${JSON.stringify(name)} is not valid: use 1–128 characters of letters, digits and . _ @ : -`);
  }
  const token = `adt_${randomBytes(32).toString("base64url")}`;
  const id = newArtifactId("tok");
  await metadata.createToken({ id, tenantId, name, sha256: sha256Hex(token) });
  return { id, token };
}

/**
 * Resolves `authorization: Bearer <token>` to the caller, or throws
 * unauthenticated with what to do about it.
 */
export async function authenticate(metadata: MetadataStore, authorization: string | null | undefined): Promise<Caller> {
  if (!authorization) {
    throw new ArtifactError("unauthenticated", "missing credentials: send the metadata header `authorization: Bearer <token>` (create a token with `artifactd token create`)");
  }
  const match = /^Bearer\s+(\S+)$/i.exec(authorization.trim());
  if (!match) throw new ArtifactError("unauthenticated", "the authorization header must read `Bearer <token>`");
  const token = match[1]!;
  if (!TOKEN_PATTERN.test(token)) throw new ArtifactError("unauthenticated", "the API token is malformed: tokens look like adt_ followed by 43 characters");
  const found = await metadata.findTokenBySha256(sha256Hex(token));
  if (!found || found.revokedAt) throw new ArtifactError("unauthenticated", "the API token is unknown or revoked: create a new one with `artifactd token create`");
  return { tenantId: found.tenantId, principal: found.name };
}

function sha256Hex(token: string): string {
  return createHash("sha256").update(token).digest("hex");
}
