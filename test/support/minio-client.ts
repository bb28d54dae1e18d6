import { Client } from "minio";
import { inject } from "vitest";

/** A client of the run's MinIO server (test/support/global-setup.ts), to read a bucket directly rather than through the service. */
export function minioClient(): Client {
  const minio = inject("minio");
  const endpoint = new URL(minio.endpoint);
  return new Client({ endPoint: endpoint.hostname, port: Number(endpoint.port), useSSL: false, accessKey: minio.accessKey, secretKey: minio.secretKey });
}
