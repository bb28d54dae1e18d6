import { Client } from "minio";
import { inject } from "vitest";

/** Where a MinIO server answers and the credentials it takes: the run's (test/support/global-setup.ts) or a private one (a MinioServer from test/support/minio-server.ts). */
export interface MinioAddress {
  /** http://<host>:<port> */
  readonly endpoint: string;
  readonly accessKey: string;
  readonly secretKey: string;
}

/** A client of a MinIO server, by default the run's, to read or change a bucket directly rather than through the service. */
export function minioClient(server: MinioAddress | undefined = inject("minio")): Client {
  if (!server) throw new Error('this run has no MinIO (ARTIFACTD_TEST_BACKENDS leaves postgres+minio out): skip the block with describeOn("postgres+minio")');
  const endpoint = new URL(server.endpoint);
  return new Client({ endPoint: endpoint.hostname, port: Number(endpoint.port), useSSL: false, accessKey: server.accessKey, secretKey: server.secretKey });
}
