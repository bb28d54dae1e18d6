/**
 * The benchmark's yardsticks for any Node service in the middle: a plain
 * HTTP/1.1 server doing only the essential work of each path (no gRPC, no
 * protobuf, no metadata beyond what is named), so the service's figures can
 * be read against the best a Node process reaches on the same machine.
 * - GET /<bucket>/<key> pipes one MinIO object to the client (no hashing, no
 *   metadata look-up). The S3 GET goes through undici (a minio-js getObject
 *   costs 1.5–1.8× the relay's throughput in node:http parsing and copies):
 *   a lean relay, not a weak one.
 * - PUT /<bucket>/<key> hashes the request body with BLAKE3 and uploads it as
 *   an S3 multipart upload (16 MiB parts, 4 in flight, UNSIGNED-PAYLOAD, as
 *   the service sends one), pausing the request while parts are in flight;
 *   answers the hex digest.
 * - POST /inline?name=<name> stores the body (a small text) as the direct
 *   Postgres case does (inline-row.ts: BLAKE3, one prepared INSERT) through a
 *   pg Pool of 10 (the service's default pool size); answers the new id.
 *
 * Run by transfer-bench.ts as a child process: argv = port, endpoint, access
 * key, secret key, database URL.
 */
import http from "node:http";
import { pipeline } from "node:stream/promises";
import pg from "pg";
import { Pool } from "undici";
import { newArtifactId } from "../../src/artifact-id.ts";
import { createBlake3 } from "../../src/blake3.ts";
import { insertInlineArtifact } from "./inline-row.ts";
import { createMultipartUploader, signS3Request } from "./s3-direct.ts";

const [port, endpoint, accessKey, secretKey, databaseUrl] = process.argv.slice(2) as [string, string, string, string, string];
const credentials = { endpoint, accessKey, secretKey };
const s3 = new Pool(endpoint, { connections: 4, keepAliveTimeout: 60_000 });
const multipart = createMultipartUploader(credentials, { partSize: 16 * 1024 * 1024, inFlight: 4 });
const database = new pg.Pool({ connectionString: databaseUrl, max: 10 });

async function download(bucket: string, key: string, response: http.ServerResponse) {
  const signed = signS3Request(credentials, { method: "GET", bucket, key, query: {}, payloadSha256: "UNSIGNED-PAYLOAD" });
  const upstream = await s3.request({ method: "GET", path: signed.path, headers: signed.headers });
  if (upstream.statusCode !== 200) throw new Error(`S3 GET: ${upstream.statusCode} ${await upstream.body.text()}`);
  response.writeHead(200, { "content-length": String(upstream.headers["content-length"]), "content-type": "application/octet-stream" });
  await pipeline(upstream.body, response);
}

async function upload(bucket: string, key: string, request: http.IncomingMessage, response: http.ServerResponse) {
  const hasher = createBlake3();
  async function* hashed() {
    for await (const chunk of request as AsyncIterable<Buffer>) {
      hasher.update(chunk);
      yield chunk;
    }
  }
  await multipart.upload(bucket, key, hashed());
  response.writeHead(200, { "content-type": "text/plain" }).end(hasher.digestHex());
}

async function saveInline(name: string, request: http.IncomingMessage, response: http.ServerResponse) {
  const pieces: Buffer[] = [];
  for await (const chunk of request as AsyncIterable<Buffer>) pieces.push(chunk);
  // The prefix SaveInline gives a text.
  const id = newArtifactId("txt");
  await insertInlineArtifact(database, { id, name, content: Buffer.concat(pieces) });
  response.writeHead(200, { "content-type": "text/plain" }).end(id);
}

http
  .createServer((request, response) => {
    const url = new URL(request.url ?? "/", "http://relay");
    const [, bucket, key] = url.pathname.split("/") as [string, string, string];
    const handled =
      request.method === "POST" && url.pathname === "/inline"
        ? saveInline(url.searchParams.get("name") ?? "", request, response)
        : request.method === "PUT"
          ? upload(bucket, key, request, response)
          : download(bucket, key, response);
    handled.catch((error: unknown) => {
      if (!response.headersSent) response.writeHead(500);
      response.end(String(error));
    });
  })
  .listen(Number(port), "127.0.0.1", () => console.log("serving"));
