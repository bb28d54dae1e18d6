/**
 * The benchmark's yardstick for downloads through any Node process: a plain
 * HTTP/1.1 server that pipes one MinIO object to the client and does nothing
 * else (no gRPC, no protobuf, no hashing, no metadata look-up). Whatever the
 * service's download cannot exceed on a machine is what this reaches, since
 * the bytes cross one more process either way.
 *
 * Run by transfer-bench.ts as a child process: argv = port, endpoint, access
 * key, secret key. GET /<bucket>/<key> streams the object.
 */
import http from "node:http";
import { pipeline } from "node:stream/promises";
import type { Readable } from "node:stream";
import { Client } from "minio";

const [port, endpoint, accessKey, secretKey] = process.argv.slice(2) as [string, string, string, string];
const url = new URL(endpoint);
const minio = new Client({ endPoint: url.hostname, port: Number(url.port), useSSL: false, accessKey, secretKey });

http
  .createServer((request, response) => {
    const [, bucket, key] = (request.url ?? "").split("/");
    void (async () => {
      const { size } = await minio.statObject(bucket!, key!);
      const body = (await minio.getObject(bucket!, key!)) as Readable;
      response.writeHead(200, { "content-length": String(size), "content-type": "application/octet-stream" });
      await pipeline(body, response);
    })().catch((error: unknown) => {
      if (!response.headersSent) response.writeHead(500);
      response.end(String(error));
    });
  })
  .listen(Number(port), "127.0.0.1", () => console.log("serving"));
