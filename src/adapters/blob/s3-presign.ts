import type { DirectReads } from "../../ports/blob-store.ts";
import { amzDateOf, credentialScope, SIGV4_ALGORITHM, signatureOf, signingKeyOf, uriEncode } from "./s3-sigv4.ts";

/**
 * Presigned S3 GETs: AWS Signature Version 4 in the query string
 * (https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html),
 * with node:crypto alone.
 *
 * Any header given is signed in (X-Amz-SignedHeaders lists it beside host):
 * the store then refuses the request unless it carries that header with that
 * value. A `range` header signed this way is what limits a link to one byte
 * range of the object: the same URL with another Range, or none, fails its
 * signature (403).
 *
 * The payload is UNSIGNED-PAYLOAD, as S3 requires of presigned URLs.
 */
export interface PresignGetRequest {
  /** The store as the client will reach it: scheme, host and port (path-style addressing, so no DNS per bucket). */
  readonly endpoint: URL;
  /** Path-style: the bucket is the path's first segment. Undefined: virtual-hosted style, the bucket is in the endpoint's host. */
  readonly bucket: string | undefined;
  readonly key: string;
  readonly region: string;
  readonly accessKey: string;
  readonly secretKey: string;
  /** 1 to 604,800 (7 days), S3's own bounds. */
  readonly expiresSeconds: number;
  /** Headers the GET must carry, signed in; names in any case (they are signed lowercased). */
  readonly headers?: Readonly<Record<string, string>>;
  /** The signing moment (X-Amz-Date); now by default. */
  readonly now?: Date;
}

/** The presigned URL; the GET must carry `request.headers` exactly. */
export function presignGet(request: PresignGetRequest): string {
  if (!Number.isInteger(request.expiresSeconds) || request.expiresSeconds < 1 || request.expiresSeconds > 604_800) {
    throw new RangeError(`a presigned URL lives 1–604800 seconds, not ${request.expiresSeconds}`);
  }
  const amzDate = amzDateOf(request.now ?? new Date());
  const day = amzDate.slice(0, 8);
  const scope = credentialScope(day, request.region);
  // URL.host leaves out the scheme's default port, as HTTP clients do in the Host header they send.
  const headers = new Map<string, string>([["host", request.endpoint.host]]);
  for (const [name, value] of Object.entries(request.headers ?? {})) headers.set(name.toLowerCase(), value.trim());
  const signedHeaders = [...headers.keys()].sort();
  const segments = [...(request.bucket === undefined ? [] : [request.bucket]), ...request.key.split("/")];
  const path = `${request.endpoint.pathname.replace(/\/+$/, "")}/${segments.map(uriEncode).join("/")}`;
  const query = [
    ["X-Amz-Algorithm", SIGV4_ALGORITHM],
    ["X-Amz-Credential", `${request.accessKey}/${scope}`],
    ["X-Amz-Date", amzDate],
    ["X-Amz-Expires", String(request.expiresSeconds)],
    ["X-Amz-SignedHeaders", signedHeaders.join(";")],
  ]
    .map(([name, value]) => `${uriEncode(name!)}=${uriEncode(value!)}`)
    .sort()
    .join("&");
  const canonicalRequest = [
    "GET",
    path,
    query,
    ...signedHeaders.map((name) => `${name}:${headers.get(name)}`),
    "",
    signedHeaders.join(";"),
    "UNSIGNED-PAYLOAD",
  ].join("\n");
  const signature = signatureOf(signingKeyOf(request.secretKey, day, request.region), amzDate, scope, canonicalRequest);
  return `${request.endpoint.protocol}//${request.endpoint.host}${path}?${query}&X-Amz-Signature=${signature}`;
}

/**
 * The S3 blob store's DirectReads: ranged GETs presigned for `endpoint`,
 * the address clients reach the store at (it may differ from the one the
 * service uses). The credentials stay here; a link is all a client gets.
 */
export function s3DirectReads(s3: {
  readonly endpoint: URL;
  readonly bucket: string;
  readonly region: string;
  readonly accessKey: string;
  readonly secretKey: string;
}): DirectReads {
  return {
    async presignRead(key, range, expiresSeconds) {
      if (!(range.length > 0)) throw new RangeError("a direct read needs at least one byte: S3 cannot sign an empty range");
      const now = new Date();
      const headers = { range: `bytes=${range.offset}-${range.offset + range.length - 1}` };
      const url = presignGet({ ...s3, key, expiresSeconds, headers, now });
      return { url, headers, expiresAt: new Date(now.getTime() - (now.getTime() % 1000) + expiresSeconds * 1000) };
    },
  };
}
