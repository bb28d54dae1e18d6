import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import type { Caller } from "../artifact.ts";
import { invalidArgument, notFound } from "../artifact-error.ts";
import { isArtifactId } from "../artifact-id.ts";
import type { MetadataStore } from "../ports/metadata-store.ts";
import { requireArtifactId } from "./validate-spec.ts";

/**
 * Signed download URLs: `<base>/download/v1/<tenant>/<artifact id>?expires=<unix s>&sig=<mac>`,
 * where mac = HMAC-SHA256(key, "v1 <tenant> <id> <expires>"), base64url.
 * Bound to one artifact of one tenant and one expiry; changing any of them
 * breaks the signature. Served by the service itself (transport/download-url-route.ts),
 * so they work the same on S3 and on the local folder, and a deleted
 * artifact's URLs stop working at once.
 *
 * The key comes from ARTIFACTD_URL_SIGNING_KEY, or else is generated once and
 * kept in the database so every replica signs and checks alike.
 */
export const DEFAULT_URL_TTL_SECONDS = 900;
export const DOWNLOAD_PATH_PREFIX = "/download/v1/";

export interface UrlSigner {
  sign(tenantId: string, artifactId: string, expiresAtSeconds: number): string;
  /** The tenant and artifact a valid, unexpired signed path names; undefined otherwise. */
  verify(pathname: string, query: URLSearchParams, nowSeconds: number): { tenantId: string; artifactId: string } | undefined;
}

export async function loadUrlSigningKey(metadata: MetadataStore, configured: string | undefined): Promise<Buffer> {
  const value = configured ?? (await metadata.sharedSetting("url_signing_key", randomBytes(32).toString("base64url")));
  return Buffer.from(value, "utf8");
}

export function createUrlSigner(key: Buffer): UrlSigner {
  const mac = (tenantId: string, artifactId: string, expires: number) =>
    createHmac("sha256", key).update(`v1 ${tenantId} ${artifactId} ${expires}`).digest();
  return {
    sign(tenantId, artifactId, expires) {
      const signature = mac(tenantId, artifactId, expires).toString("base64url");
      return `${DOWNLOAD_PATH_PREFIX}${encodeURIComponent(tenantId)}/${artifactId}?expires=${expires}&sig=${signature}`;
    },
    verify(pathname, query, now) {
      if (!pathname.startsWith(DOWNLOAD_PATH_PREFIX)) return undefined;
      const parts = pathname.slice(DOWNLOAD_PATH_PREFIX.length).split("/");
      if (parts.length !== 2) return undefined;
      let tenantId: string;
      try {
        tenantId = decodeURIComponent(parts[0]!);
      } catch {
        return undefined;
      }
      const artifactId = parts[1]!;
      const expires = Number(query.get("expires"));
      const signature = Buffer.from(query.get("sig") ?? "", "base64url");
      if (!isArtifactId(artifactId) || !Number.isSafeInteger(expires) || expires < now) return undefined;
      const expected = mac(tenantId, artifactId, expires);
      if (signature.length !== expected.length || !timingSafeEqual(signature, expected)) return undefined;
      return { tenantId, artifactId };
    },
  };
}

/** The CreateDownloadUrl use case. */
export async function createDownloadUrl(
  deps: { metadata: MetadataStore; signer: UrlSigner; maxTtlSeconds: number },
  caller: Caller,
  request: { id: string; ttlSeconds: number; baseUrl: string },
): Promise<{ url: string; expiresAt: Date }> {
  const id = requireArtifactId("id", request.id);
  const ttl = request.ttlSeconds || DEFAULT_URL_TTL_SECONDS;
  if (!Number.isInteger(ttl) || ttl < 1 || ttl > deps.maxTtlSeconds) {
    throw invalidArgument(`ttl_seconds ${request.ttlSeconds} is not valid: give 1–${deps.maxTtlSeconds} seconds, or 0 for ${DEFAULT_URL_TTL_SECONDS}`);
  }
  const artifact = await deps.metadata.getArtifact(caller.tenantId, id);
  if (!artifact || artifact.deletedAt) throw notFound(`artifact ${id} does not exist${artifact ? " any more (it was deleted)" : ""}`);
  const expires = Math.floor(Date.now() / 1000) + ttl;
  return { url: request.baseUrl.replace(/\/+$/, "") + deps.signer.sign(caller.tenantId, id, expires), expiresAt: new Date(expires * 1000) };
}
