import { defineConfig } from "vitest/config";

/**
 * The unit tests mutation testing runs (npm run test:mutation): pure ones
 * only, with no global setup, so no MinIO or Postgres is started for each of
 * the hundreds of test runs a mutation run makes.
 */
export default defineConfig({
  test: {
    include: ["test/unit/**/*.test.ts"],
    testTimeout: 10_000,
    hookTimeout: 10_000,
  },
});
