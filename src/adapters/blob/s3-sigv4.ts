import { createHash, createHmac } from "node:crypto";

/**
 * The pieces of AWS Signature Version 4 both S3 request signers share: the
 * reads the store sends itself (./s3-object-reader.ts, signed in headers)
 * and the links it hands out (./s3-presign.ts, signed in the query).
 */
export const SIGV4_ALGORITHM = "AWS4-HMAC-SHA256";

/** The signing moment as SigV4 writes it (X-Amz-Date), e.g. 20130524T000000Z; its first 8 characters are the day. */
export function amzDateOf(date: Date): string {
  return date
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d{3}/, "");
}

/** The credential scope of a day: `<day>/<region>/s3/aws4_request`. */
export function credentialScope(day: string, region: string): string {
  return `${day}/${region}/s3/aws4_request`;
}

/** The key a day's signatures are made with, derived from the secret key (the same all day). */
export function signingKeyOf(secretKey: string, day: string, region: string): Buffer {
  const hmac = (key: string | Buffer, data: string) => createHmac("sha256", key).update(data).digest();
  return hmac(hmac(hmac(hmac(`AWS4${secretKey}`, day), region), "s3"), "aws4_request");
}

/** The signature (lowercase hex) of a canonical request, made at `amzDate` within `scope`. */
export function signatureOf(signingKey: Buffer, amzDate: string, scope: string, canonicalRequest: string): string {
  const stringToSign = [SIGV4_ALGORITHM, amzDate, scope, createHash("sha256").update(canonicalRequest).digest("hex")].join("\n");
  return createHmac("sha256", signingKey).update(stringToSign).digest("hex");
}

/** SigV4's URI encoding: everything but A–Z a–z 0–9 - . _ ~ percent-encoded (UTF-8, upper-case hex). */
export function uriEncode(value: string): string {
  return encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}
