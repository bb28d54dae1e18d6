/**
 * The direct baselines at their best, straight to S3 / MinIO with no service
 * in the path:
 * - a multipart upload driven by hand as the service itself sends one
 *   (16 MiB parts, 4 in flight, UNSIGNED-PAYLOAD so no byte is hashed for
 *   the signature, keep-alive connections through undici), instead of
 *   minio-js putObject, which hashes every part with MD5 and SHA-256 and
 *   sends one part at a time (kept as a second, labelled figure);
 * - a GET whose client verifies BLAKE3 as the service's clients do.
 */
import { createHash, createHmac } from "node:crypto";
import type { Readable } from "node:stream";
import type { Client } from "minio";
import { Pool } from "undici";
import { createBlake3 } from "../../src/blake3.ts";

export interface S3Credentials {
  readonly endpoint: string;
  readonly accessKey: string;
  readonly secretKey: string;
  readonly region?: string;
}

const EMPTY_SHA256 = createHash("sha256").update("").digest("hex");

/** RFC 3986 encoding as SigV4 wants it (encodeURIComponent leaves !'()* alone). */
const encode = (value: string) => encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

/**
 * SigV4 header signing for one S3 request. Only what the multipart calls need:
 * the signed headers are host, x-amz-content-sha256 and x-amz-date.
 */
export function signS3Request(
  credentials: S3Credentials,
  request: { method: string; bucket: string; key: string; query: Record<string, string>; payloadSha256: string },
  now = new Date(),
): { path: string; headers: Record<string, string> } {
  const region = credentials.region ?? "us-east-1";
  const host = new URL(credentials.endpoint).host;
  const amzDate = now
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d{3}/, "");
  const day = amzDate.slice(0, 8);
  const canonicalUri = `/${encode(request.bucket)}/${request.key.split("/").map(encode).join("/")}`;
  const canonicalQuery = Object.keys(request.query)
    .sort()
    .map((name) => `${encode(name)}=${encode(request.query[name]!)}`)
    .join("&");
  const headers = { host, "x-amz-content-sha256": request.payloadSha256, "x-amz-date": amzDate };
  const signedHeaders = "host;x-amz-content-sha256;x-amz-date";
  const canonicalRequest = [
    request.method,
    canonicalUri,
    canonicalQuery,
    `host:${host}\nx-amz-content-sha256:${request.payloadSha256}\nx-amz-date:${amzDate}\n`,
    signedHeaders,
    request.payloadSha256,
  ].join("\n");
  const scope = `${day}/${region}/s3/aws4_request`;
  const stringToSign = `AWS4-HMAC-SHA256\n${amzDate}\n${scope}\n${createHash("sha256").update(canonicalRequest).digest("hex")}`;
  const hmac = (key: string | Buffer, data: string) => createHmac("sha256", key).update(data).digest();
  const signingKey = hmac(hmac(hmac(hmac(`AWS4${credentials.secretKey}`, day), region), "s3"), "aws4_request");
  const signature = createHmac("sha256", signingKey).update(stringToSign).digest("hex");
  return {
    path: canonicalQuery ? `${canonicalUri}?${canonicalQuery}` : canonicalUri,
    headers: {
      ...headers,
      authorization: `AWS4-HMAC-SHA256 Credential=${credentials.accessKey}/${scope}, SignedHeaders=${signedHeaders}, Signature=${signature}`,
    },
  };
}

export interface MultipartUploader {
  /** Uploads the bytes of `source` (any chunk sizes) as one object; answers the bytes sent. */
  upload(bucket: string, key: string, source: Iterable<Uint8Array> | AsyncIterable<Uint8Array>): Promise<number>;
  close(): Promise<void>;
}

/**
 * A hand-driven S3 multipart upload: initiate, parts of `partSize` with at
 * most `inFlight` being sent, complete (abort on failure). A part is sent as
 * the pieces it was gathered from (no copy into one buffer), with its length
 * known, over keep-alive connections. The source is not read while `inFlight`
 * parts are being sent and the next one is gathered, so at most
 * `inFlight + 1` parts are held; a stream source (an HTTP request) is paused
 * meanwhile.
 */
export function createMultipartUploader(credentials: S3Credentials, options: { partSize?: number; inFlight?: number } = {}): MultipartUploader {
  const partSize = options.partSize ?? 16 * 1024 * 1024;
  const inFlight = options.inFlight ?? 4;
  const pool = new Pool(credentials.endpoint, { connections: inFlight + 1, keepAliveTimeout: 60_000 });

  const call = async (method: string, bucket: string, key: string, query: Record<string, string>, body?: { pieces: Uint8Array[]; length: number } | string) => {
    const unsigned = typeof body !== "string";
    const payloadSha256 = unsigned ? (body ? "UNSIGNED-PAYLOAD" : EMPTY_SHA256) : createHash("sha256").update(body).digest("hex");
    const signed = signS3Request(credentials, { method, bucket, key, query, payloadSha256 });
    const length = body === undefined ? 0 : typeof body === "string" ? Buffer.byteLength(body) : body.length;
    const response = await pool.request({
      method: method as "PUT",
      path: signed.path,
      headers: { ...signed.headers, "content-length": String(length) },
      // undici writes an iterable body piece by piece (its types list only Readable).
      body: body === undefined ? null : typeof body === "string" ? body : (body.pieces as unknown as Readable),
    });
    const text = await response.body.text();
    // CompleteMultipartUpload may answer 200 with an <Error> in its body.
    if (response.statusCode >= 300 || text.includes("<Error>")) throw new Error(`S3 ${method} ${signed.path}: ${response.statusCode} ${text.slice(0, 500)}`);
    return { text, etag: response.headers.etag as string | undefined };
  };

  return {
    async upload(bucket, key, source) {
      const created = await call("POST", bucket, key, { uploads: "" });
      const uploadId = /<UploadId>([^<]+)<\/UploadId>/.exec(created.text)?.[1];
      if (!uploadId) throw new Error(`no UploadId in ${created.text}`);
      const etags: string[] = [];
      const sending = new Set<Promise<void>>();
      let failure: unknown;
      const send = (partNumber: number, pieces: Uint8Array[], length: number) => {
        const sent: Promise<void> = call("PUT", bucket, key, { partNumber: String(partNumber), uploadId }, { pieces, length }).then(({ etag }) => {
          if (!etag) throw new Error(`part ${partNumber}: no ETag`);
          etags[partNumber - 1] = etag;
        });
        const tracked = sent.catch((error: unknown) => void (failure ??= error)).finally(() => sending.delete(tracked));
        sending.add(tracked);
      };
      let total = 0;
      try {
        let pieces: Uint8Array[] = [];
        let gathered = 0;
        let partNumber = 0;
        for await (const chunk of source) {
          for (let offset = 0; offset < chunk.byteLength; ) {
            const take = Math.min(chunk.byteLength - offset, partSize - gathered);
            pieces.push(offset === 0 && take === chunk.byteLength ? chunk : chunk.subarray(offset, offset + take));
            gathered += take;
            offset += take;
            if (gathered === partSize) {
              while (sending.size >= inFlight) await Promise.race(sending);
              if (failure) throw failure;
              send(++partNumber, pieces, gathered);
              total += gathered;
              pieces = [];
              gathered = 0;
            }
          }
        }
        if (gathered > 0 || partNumber === 0) {
          send(++partNumber, pieces, gathered);
          total += gathered;
        }
        await Promise.all(sending);
        if (failure) throw failure;
        const parts = etags.map((etag, i) => `<Part><PartNumber>${i + 1}</PartNumber><ETag>${etag}</ETag></Part>`).join("");
        await call("POST", bucket, key, { uploadId }, `<CompleteMultipartUpload>${parts}</CompleteMultipartUpload>`);
        return total;
      } catch (error) {
        await Promise.allSettled(sending);
        await call("DELETE", bucket, key, { uploadId }).catch(() => {});
        throw error;
      }
    },
    close: () => pool.close(),
  };
}

/**
 * minio-js getObject read to the end, every chunk through BLAKE3 (the
 * service's own hasher), checked against the digest the reader expects.
 */
export async function verifiedGetObject(client: Client, bucket: string, key: string, expectedBlake3: string): Promise<number> {
  const hasher = createBlake3();
  let received = 0;
  for await (const chunk of (await client.getObject(bucket, key)) as Readable) {
    hasher.update(chunk as Buffer);
    received += (chunk as Buffer).byteLength;
  }
  const digest = hasher.digestHex();
  if (digest !== expectedBlake3) throw new Error(`direct getObject of ${key}: BLAKE3 ${digest}, expected ${expectedBlake3}`);
  return received;
}
