import http from "node:http";
import type { AddressInfo } from "node:net";
import { expect, inject, it } from "vitest";
import { createS3BlobStore } from "../../src/adapters/blob/s3-blob-store.ts";
import { minioClient } from "../support/minio-client.ts";
import { testsBackend } from "../support/test-backends.ts";

/**
 * Two replicas starting at once on a bucket that does not exist yet both
 * find it missing and both create it; the one that loses must carry on with
 * the bucket the other made (src/adapters/blob/s3-blob-store.ts). Forced: a
 * relay in front of MinIO holds every bucket creation until both have
 * arrived, so both existence checks have answered "missing" first.
 */
it.skipIf(!testsBackend("postgres+minio"))(
  "two stores opened at once on a missing bucket both start, one having created it and the other finding it made",
  async () => {
    const minio = inject("minio");
    const bucket = `race-${Math.random().toString(36).slice(2, 10)}`;
    const upstream = new URL(minio.endpoint);
    const creations: { status: number }[] = [];
    let heldCreations: (() => void)[] = [];
    const relay = http.createServer((request, response) => {
      const forward = () => {
        const proxied = http.request(
          { host: upstream.hostname, port: upstream.port, method: request.method, path: request.url, headers: request.headers },
          (answer) => {
            if (isCreation) creations.push({ status: answer.statusCode ?? 0 });
            response.writeHead(answer.statusCode ?? 502, answer.headers);
            answer.pipe(response);
          },
        );
        request.pipe(proxied);
      };
      // CreateBucket is a PUT on the bucket itself; held until the second one comes.
      const isCreation = request.method === "PUT" && request.url?.split("?")[0] === `/${bucket}`;
      if (!isCreation) return forward();
      heldCreations.push(forward);
      if (heldCreations.length === 2) {
        for (const release of heldCreations) release();
        heldCreations = [];
      }
    });
    await new Promise<void>((resolve) => relay.listen(0, "127.0.0.1", resolve));
    try {
      const config = {
        endpoint: new URL(`http://127.0.0.1:${(relay.address() as AddressInfo).port}`),
        region: "us-east-1",
        accessKey: minio.accessKey,
        secretKey: minio.secretKey,
        bucket,
        partSize: 5 * 1024 * 1024,
        partConcurrency: 2,
      };
      const opened = await Promise.allSettled([createS3BlobStore(config), createS3BlobStore(config)]);
      expect(opened.map((o) => o.status)).toEqual(["fulfilled", "fulfilled"]);
      // Both creations reached MinIO: one made the bucket, the other was refused as already made.
      expect(creations.map((c) => c.status).sort()).toEqual([200, 409]);
      expect(await minioClient().bucketExists(bucket)).toBe(true);
    } finally {
      relay.closeAllConnections(); // the stores keep their connections alive
      await new Promise((resolve) => relay.close(resolve));
      await minioClient()
        .removeBucket(bucket)
        .catch(() => {});
    }
  },
);
