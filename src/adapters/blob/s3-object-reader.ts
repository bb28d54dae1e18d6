import { Pool } from "undici";
import { amzDateOf, credentialScope, SIGV4_ALGORITHM, signatureOf, signingKeyOf, uriEncode } from "./s3-sigv4.ts";

/**
 * Ranged object reads from S3 / MinIO over undici, the download path's one
 * hop to the store. minio-js reads over node:http, whose parser and copies of
 * each response piece cost the server about as much CPU per byte as the rest
 * of a download together (measured with the transfer bench's profile);
 * undici parses with llhttp in WebAssembly and hands the socket's buffers
 * through. Everything else the S3 store does stays on minio-js.
 *
 * Each GET is signed with AWS Signature Version 4 in headers, payload
 * `UNSIGNED-PAYLOAD` (a GET has none), at the moment it is sent: the
 * signature never outlives its request, and it is never logged (the
 * errors below carry S3's code and message, not the request). A clock
 * skewed from the store's fails here as it fails minio-js' own calls, with
 * S3's RequestTimeTooSkewed (an "unavailable" store, ./s3-errors.ts).
 */
export interface S3ObjectReader {
  /** The bytes [offset, offset + length) of the object, as the store sends them; `length` > 0. */
  read(bucket: string, key: string, offset: number, length: number, signal?: AbortSignal): AsyncIterable<Uint8Array>;
  close(): Promise<void>;
}

/** An answer from S3 other than the bytes: shaped like minio-js' S3Error (code, statusCode), which ./s3-errors.ts reads. */
export class S3ReadError extends Error {
  readonly code: string;
  readonly statusCode: number;

  constructor(code: string, statusCode: number, message: string) {
    super(message);
    this.name = "S3Error";
    this.code = code;
    this.statusCode = statusCode;
  }
}

/** The most of an error answer read: S3's error documents are a few hundred bytes. */
const MAX_ERROR_BODY_BYTES = 64 * 1024;

export function createS3ObjectReader(options: {
  readonly endpoint: URL;
  readonly region: string;
  readonly accessKey: string;
  readonly secretKey: string;
  /** Connections kept to the store, as minio-js' agent allows. */
  readonly connections: number;
}): S3ObjectReader {
  const pool = new Pool(options.endpoint.origin, {
    connections: options.connections,
    // A download may stop reading for as long as its client stops reading (read-ahead full): no idle limit on
    // the body, as node:http had none. Headers still have to come within undici's default 300 s.
    bodyTimeout: 0,
  });
  const sign = createSigner(options.region, options.accessKey, options.secretKey);
  const host = options.endpoint.host;

  return {
    async *read(bucket, key, offset, length, signal) {
      const path = `/${uriEncode(bucket)}/${key.split("/").map(uriEncode).join("/")}`;
      const { statusCode, headers, body } = await pool.request({
        method: "GET",
        path,
        headers: { ...sign(path, host), range: `bytes=${offset}-${offset + length - 1}` },
        ...(signal ? { signal } : {}),
      });
      try {
        if (statusCode !== 206 && statusCode !== 200) throw await errorFrom(statusCode, headers["x-minio-error-code"], body);
        yield* body as AsyncIterable<Uint8Array>;
      } finally {
        // Read to its end, the body is done; stopped early (abort, a failure downstream), its connection is dropped.
        if (!body.readableEnded) body.destroy();
      }
    },
    async close() {
      await pool.destroy();
    },
  };
}

/** The headers that sign a GET of `path` on `host` now. Signing keys are derived once per day. */
function createSigner(region: string, accessKey: string, secretKey: string) {
  let keyDay = "";
  let signingKey: Buffer = Buffer.alloc(0);
  return (path: string, host: string): Record<string, string> => {
    const amzDate = amzDateOf(new Date());
    const day = amzDate.slice(0, 8);
    if (day !== keyDay) {
      signingKey = signingKeyOf(secretKey, day, region);
      keyDay = day;
    }
    const scope = credentialScope(day, region);
    const signedHeaders = "host;x-amz-content-sha256;x-amz-date";
    const canonicalRequest = [
      "GET",
      path,
      "",
      `host:${host}`,
      "x-amz-content-sha256:UNSIGNED-PAYLOAD",
      `x-amz-date:${amzDate}`,
      "",
      signedHeaders,
      "UNSIGNED-PAYLOAD",
    ].join("\n");
    return {
      "x-amz-date": amzDate,
      "x-amz-content-sha256": "UNSIGNED-PAYLOAD",
      authorization: `${SIGV4_ALGORITHM} Credential=${accessKey}/${scope}, SignedHeaders=${signedHeaders}, Signature=${signatureOf(signingKey, amzDate, scope, canonicalRequest)}`,
    };
  };
}

/**
 * S3's error document (`<Error><Code>…</Code><Message>…</Message>`) as an S3ReadError; an answer without one gets the
 * code minio-js gives it: by its status, or MinIO's x-minio-error-code header.
 */
async function errorFrom(statusCode: number, headerCode: string | string[] | undefined, body: AsyncIterable<Uint8Array>): Promise<S3ReadError> {
  const pieces: Uint8Array[] = [];
  let size = 0;
  for await (const piece of body) {
    pieces.push(piece);
    size += piece.byteLength;
    if (size >= MAX_ERROR_BODY_BYTES) break;
  }
  const text = Buffer.concat(pieces).toString("utf8");
  const field = (name: string) => new RegExp(`<${name}>([^<]*)</${name}>`).exec(text)?.[1];
  const code = field("Code") ?? BARE_STATUS_CODES[statusCode] ?? (typeof headerCode === "string" ? headerCode : "UnknownError");
  return new S3ReadError(code, statusCode, field("Message") ?? `S3 answered the read with HTTP ${statusCode}`);
}

/** What minio-js calls an answer without an error document, by status. */
const BARE_STATUS_CODES: Record<number, string> = {
  301: "MovedPermanently",
  307: "TemporaryRedirect",
  403: "AccessDenied",
  404: "NotFound",
  405: "MethodNotAllowed",
  501: "MethodNotAllowed",
  503: "SlowDown",
};
