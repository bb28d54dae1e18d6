import { createHmac, timingSafeEqual } from "node:crypto";
import type { Artifact, Caller } from "../artifact.ts";
import { ArtifactError, invalidArgument, notFound } from "../artifact-error.ts";
import { isArtifactId } from "../artifact-id.ts";
import type { ArtifactQueries } from "../ports/artifact-queries.ts";
import { URL_SIGNING_KEY_ID_PATTERN, type UrlSigningKey } from "../url-signing-keys.ts";
import { requireArtifactId } from "./validate-spec.ts";

/**
 * Signed download links:
 *
 *     <base>/download/v1/<tenant>/<artifact id>?expires=<unix s>&token_id=<token id>&key_id=<key id>&sig=<mac>
 *
 * where mac is HMAC-SHA256, under the key named by key_id, of everything
 * before `&sig=` (path and query exactly as written), in unpadded base64url
 * (43 characters). Served by the service itself
 * (transport/download-url-route.ts), so they work the same on S3 and on the
 * local folder, and a deleted artifact's links stop working at once.
 *
 * - One spelling per link. Verification rebuilds the link from the values it
 *   parsed and requires the request's path and query to be byte for byte
 *   that: the same parameters in the same order, none twice or extra, no
 *   percent-encoded variant, expires a plain decimal, the signature the
 *   canonical encoding of the MAC. Decoders forgive (base64url drops the
 *   unused bits of its last character and skips stray characters; Number()
 *   reads `0…` and `….0`), so each forgiven variant would be a second valid
 *   spelling of the same link, and a cache or log keyed by URL would see two
 *   links where there is one.
 * - Bound to the token that made it: token_id is signed, and the route
 *   serves the link only while that token is active, so revoking a token (or
 *   its expiry) ends its links too.
 * - Never longer than ARTIFACTD_DOWNLOAD_URL_MAX_TTL_SECONDS from now,
 *   whatever was signed: whoever obtains a key still cannot mint a link that
 *   outlives the cap (beyond a few seconds of clock skew between replicas).
 * - Keys rotate with overlap (../url-signing-keys.ts): the newest signs, any
 *   listed key verifies, key_id says which. A link whose key was removed is
 *   refused.
 */
export const DEFAULT_URL_TTL_SECONDS = 900;
export const DOWNLOAD_PATH_PREFIX = "/download/v1/";
/** How far past the cap a link's expiry may lie: the clocks of the replica that signed and the one that verifies may differ by this much. */
export const URL_EXPIRY_SKEW_SECONDS = 5;

/** What a valid link grants: one artifact of one tenant, on behalf of one token, until a moment. */
export interface DownloadLink {
  readonly tenantId: string;
  readonly artifactId: string;
  readonly tokenId: string;
  readonly expiresAtSeconds: number;
}

export interface UrlSigner {
  /** The path and query of a link, signed with the newest key (append it to the base URL). */
  sign(link: DownloadLink): string;
  /**
   * What the request target (path and query exactly as received) grants, if
   * it is a canonical link signed by a configured key and unexpired within
   * the cap; undefined otherwise. Whether its token is still active is for
   * the caller to check.
   */
  verify(target: string, nowSeconds: number): DownloadLink | undefined;
}

const EXPIRES_PATTERN = /^[1-9][0-9]{0,15}$/;
const SIGNATURE_PATTERN = /^[A-Za-z0-9_-]{43}$/;

export function createUrlSigner(keys: readonly UrlSigningKey[], options: { maxTtlSeconds: number }): UrlSigner {
  const signingKey = keys[0];
  if (!signingKey) throw new Error("download links need at least one signing key");
  const secrets = new Map(keys.map((key) => [key.id, Buffer.from(key.secret, "utf8")]));
  const mac = (secret: Buffer, unsigned: string) => createHmac("sha256", secret).update(unsigned).digest("base64url");
  return {
    sign(link) {
      const unsigned = unsignedTarget(link, signingKey.id);
      return `${unsigned}&sig=${mac(secrets.get(signingKey.id)!, unsigned)}`;
    },
    verify(target, now) {
      const parsed = parseTarget(target);
      if (!parsed) return undefined;
      const { link, keyId, signature } = parsed;
      // Rebuilt from the parsed values: anything but this exact spelling is refused before any MAC.
      const unsigned = unsignedTarget(link, keyId);
      if (target !== `${unsigned}&sig=${signature}`) return undefined;
      const secret = secrets.get(keyId);
      if (!secret) return undefined;
      // Both are 43 ASCII characters here; comparing the encodings, not the decoded bytes, also refuses a
      // signature whose last character differs only in bits the decoder drops.
      if (!timingSafeEqual(Buffer.from(signature), Buffer.from(mac(secret, unsigned)))) return undefined;
      if (link.expiresAtSeconds <= now || link.expiresAtSeconds > now + options.maxTtlSeconds + URL_EXPIRY_SKEW_SECONDS) return undefined;
      return link;
    },
  };
}

/** The canonical link up to (not including) `&sig=`: what is MACed. */
function unsignedTarget(link: DownloadLink, keyId: string): string {
  return (
    `${DOWNLOAD_PATH_PREFIX}${encodeURIComponent(link.tenantId)}/${link.artifactId}` +
    `?expires=${link.expiresAtSeconds}&token_id=${link.tokenId}&key_id=${keyId}`
  );
}

/** The values a target names, each of the shape it must have; undefined for anything else. */
function parseTarget(target: string): { link: DownloadLink; keyId: string; signature: string } | undefined {
  const question = target.indexOf("?");
  if (question < 0 || !target.startsWith(DOWNLOAD_PATH_PREFIX)) return undefined;
  const segments = target.slice(DOWNLOAD_PATH_PREFIX.length, question).split("/");
  if (segments.length !== 2) return undefined;
  let tenantId: string;
  try {
    tenantId = decodeURIComponent(segments[0]!);
  } catch {
    return undefined;
  }
  const artifactId = segments[1]!;
  const query = new URLSearchParams(target.slice(question + 1));
  const expires = query.get("expires") ?? "";
  const tokenId = query.get("token_id") ?? "";
  const keyId = query.get("key_id") ?? "";
  const signature = query.get("sig") ?? "";
  if (
    tenantId === "" ||
    !isArtifactId(artifactId) ||
    !isArtifactId(tokenId) ||
    !EXPIRES_PATTERN.test(expires) ||
    !URL_SIGNING_KEY_ID_PATTERN.test(keyId) ||
    !SIGNATURE_PATTERN.test(signature)
  ) {
    return undefined;
  }
  return { link: { tenantId, artifactId, tokenId, expiresAtSeconds: Number(expires) }, keyId, signature };
}

/** The CreateDownloadUrl use case. */
export async function createDownloadUrl(
  deps: { metadata: ArtifactQueries; signer: UrlSigner; maxTtlSeconds: number },
  caller: Caller,
  request: { id: string; ttlSeconds: number; baseUrl: string },
): Promise<{ url: string; expiresAt: Date }> {
  const id = requireArtifactId("id", request.id);
  const ttl = downloadUrlTtl(deps, "ttl_seconds", request.ttlSeconds);
  const artifact = await deps.metadata.getArtifact(caller.tenantId, id);
  if (!artifact || artifact.deletedAt) throw notFound(`artifact ${id} does not exist${artifact ? " any more (it was deleted)" : ""}`);
  return signDownloadUrl(deps, caller, { id, ttl, baseUrl: request.baseUrl });
}

/** The lifetime a request asks of a link, checked: 0 for the default; `field` names it in the refusal. */
export function downloadUrlTtl(deps: { maxTtlSeconds: number }, field: string, ttlSeconds: number): number {
  const ttl = ttlSeconds || DEFAULT_URL_TTL_SECONDS;
  if (!Number.isInteger(ttl) || ttl < 1 || ttl > deps.maxTtlSeconds) {
    throw invalidArgument(`${field} ${ttlSeconds} is not valid: give 1–${deps.maxTtlSeconds} seconds, or 0 for ${DEFAULT_URL_TTL_SECONDS}`);
  }
  return ttl;
}

/** A link to an artifact the caller may read and that is not deleted (the caller checked), valid `ttl` seconds (checked by downloadUrlTtl). */
export function signDownloadUrl(
  deps: { signer: UrlSigner },
  caller: Caller,
  request: { id: string; ttl: number; baseUrl: string },
): { url: string; expiresAt: Date } {
  const { id, ttl } = request;
  // The link is bound to the token that asks for it (the route serves it only while that token is active).
  if (caller.tokenId === "") throw new ArtifactError("permission_denied", "download links are made on behalf of an API token, and this call carries none");
  const expires = Math.floor(Date.now() / 1000) + ttl;
  const path = deps.signer.sign({ tenantId: caller.tenantId, artifactId: id, tokenId: caller.tokenId, expiresAtSeconds: expires });
  return { url: request.baseUrl.replace(/\/+$/, "") + path, expiresAt: new Date(expires * 1000) };
}

/**
 * GetArtifact's include_download_url: the link CreateDownloadUrl would make
 * for the artifact just read, or none for a deleted one (its content can no
 * longer be read). `ttlSeconds` is download_url_ttl_seconds, which means
 * nothing without include_download_url.
 */
export function downloadUrlOf(
  deps: { signer: UrlSigner; maxTtlSeconds: number },
  caller: Caller,
  artifact: Artifact,
  request: { include: boolean; ttlSeconds: number; baseUrl: string },
): { url: string; expiresAt: Date } | undefined {
  if (!request.include) {
    if (request.ttlSeconds !== 0) throw invalidArgument("download_url_ttl_seconds needs include_download_url: set it to get a link, or leave the ttl unset");
    return undefined;
  }
  const ttl = downloadUrlTtl(deps, "download_url_ttl_seconds", request.ttlSeconds);
  if (artifact.deletedAt) return undefined;
  return signDownloadUrl(deps, caller, { id: artifact.id, ttl, baseUrl: request.baseUrl });
}
