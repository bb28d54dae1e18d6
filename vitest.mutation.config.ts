import path from "node:path";
import { defineConfig } from "vitest/config";

/** clients/api as seen from this file: inside the mutation run's sandbox, that is the sandbox's (mutated) copy. */
const api = path.join(import.meta.dirname, "clients/api");

/**
 * The unit tests mutation testing runs (npm run test:mutation): pure ones
 * only, with no global setup, so no MinIO or Postgres is started for each of
 * the hundreds of test runs a mutation run makes.
 *
 * `@artifactd/api` is resolved to this tree's clients/api, as its package
 * exports map it: the run's sandbox shares node_modules with the project, and
 * the workspace link there leads to the project's own, unmutated copy, so
 * mutants of clients/api would never be run.
 */
export default defineConfig({
  resolve: {
    alias: [
      { find: /^@artifactd\/api$/, replacement: path.join(api, "src/index.ts") },
      { find: /^@artifactd\/api\/(artifacts|grpc)\/(.*)$/, replacement: `${api}/gen/$1/$2` },
    ],
  },
  test: {
    include: ["test/unit/**/*.test.ts"],
    testTimeout: 10_000,
    hookTimeout: 10_000,
  },
});
