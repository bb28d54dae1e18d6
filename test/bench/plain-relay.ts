/**
 * The benchmark's yardstick for downloads through any Node process: a plain
 * HTTP/1.1 server that pipes one MinIO object to the client and does nothing
 * else (no gRPC, no protobuf, no hashing, no metadata look-up). The S3 GET
 * goes through undici (a minio-js getObject costs 1.5–1.8× the relay's
 * throughput in node:http parsing and copies): a lean relay, not a weak one.
 *
 * Run by transfer-bench.ts as a child process: argv = port, endpoint, access
 * key, secret key. GET /<bucket>/<key> streams the object.
 */
import http from "node:http";
import { pipeline } from "node:stream/promises";
import { Pool } from "undici";
import { signS3Request } from "./s3-direct.ts";

const [port, endpoint, accessKey, secretKey] = process.argv.slice(2) as [string, string, string, string];
const credentials = { endpoint, accessKey, secretKey };
const s3 = new Pool(endpoint, { connections: 4, keepAliveTimeout: 60_000 });

http
  .createServer((request, response) => {
    const [, bucket, key] = (request.url ?? "").split("/");
    void (async () => {
      const signed = signS3Request(credentials, { method: "GET", bucket: bucket!, key: key!, query: {}, payloadSha256: "UNSIGNED-PAYLOAD" });
      const upstream = await s3.request({ method: "GET", path: signed.path, headers: signed.headers });
      if (upstream.statusCode !== 200) throw new Error(`S3 GET: ${upstream.statusCode} ${await upstream.body.text()}`);
      response.writeHead(200, { "content-length": String(upstream.headers["content-length"]), "content-type": "application/octet-stream" });
      await pipeline(upstream.body, response);
    })().catch((error: unknown) => {
      if (!response.headersSent) response.writeHead(500);
      response.end(String(error));
    });
  })
  .listen(Number(port), "127.0.0.1", () => console.log("serving"));
