import type { TestProject } from "vitest/node";
import { ensureMinioBinary, startMinio } from "./minio-server.ts";
import { testsBackend } from "./test-backends.ts";

/**
 * Starts what the integration tests need once per run: a real MinIO server
 * (built from source on first use), when the run covers "postgres+minio"
 * (./test-backends.ts). Postgres is the machine's (or
 * DATABASE_URL's); each test file makes its own database (./postgres.ts).
 */
export default async function setup(project: TestProject) {
  // A run on the embedded stores alone needs no MinIO (nor Go to build it).
  if (!testsBackend("postgres+minio")) return;
  const bin = ensureMinioBinary((line) => console.log(line));
  const minio = await startMinio(bin);
  project.provide("minio", { endpoint: minio.endpoint, accessKey: minio.accessKey, secretKey: minio.secretKey });
  return async () => {
    await minio.stop();
  };
}

declare module "vitest" {
  export interface ProvidedContext {
    minio: { endpoint: string; accessKey: string; secretKey: string };
  }
}
