import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { openMetadataStore } from "../../src/adapters/metadata/open-metadata-store.ts";
import type { ArtifactSpec } from "../../src/artifact.ts";
import type { MetadataStore } from "../../src/ports/metadata-store.ts";
import { createTestDatabase } from "./postgres.ts";
import type { Backend } from "./test-backends.ts";

/**
 * The metadata store adapters the contract suites run against
 * (metadata-store, upload-session-store): the machine's Postgres (a fresh
 * database) and embedded PGlite (a temporary folder), both migrated.
 */
export const METADATA_STORE_ADAPTERS: Record<
  string,
  { readonly backend: Backend; readonly open: () => Promise<{ store: MetadataStore; close(): Promise<void> }> }
> = {
  postgres: {
    backend: "postgres+minio",
    async open() {
      const database = await createTestDatabase();
      const store = await openMetadataStore({ databaseUrl: database.url, pgliteDir: "", poolSize: 4, migrate: true });
      return {
        store,
        async close() {
          await store.close();
          await database.drop();
        },
      };
    },
  },
  pglite: {
    backend: "pglite+fs",
    async open() {
      const dir = mkdtempSync(path.join(os.tmpdir(), "artifactd-pglite-contract-"));
      const store = await openMetadataStore({ databaseUrl: undefined, pgliteDir: dir, poolSize: 1, migrate: true });
      return {
        store,
        async close() {
          await store.close();
          rmSync(dir, { recursive: true, force: true });
        },
      };
    },
  },
};

/** A spec with every field at its empty value, for records the suites make. */
export const BASE_SPEC: ArtifactSpec = {
  kind: "model",
  artifactClass: "",
  name: "",
  title: "",
  mimeType: "",
  labels: {},
  tags: [],
  metrics: {},
  provenance: {},
  inputs: [],
  pinned: false,
  status: "draft",
  expiresAt: undefined,
  typePrefix: "",
  versioned: false,
  project: "",
};
