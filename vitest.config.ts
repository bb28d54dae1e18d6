import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts", "clients/node/test/**/*.test.ts"],
    globalSetup: ["test/support/global-setup.ts"],
    // An unexpected internal error logged by an in-process server fails the test.
    setupFiles: ["test/support/fail-on-server-errors.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Two cores: files run in parallel, but not more than the machine holds.
    maxWorkers: 2,
    // .ci/run counts the run from the json report and its supplement (what the json report leaves out).
    reporters: ["default", "json", ["./test/support/json-report-supplement.ts", { outputFile: ".artifactd/test-results-supplement.json" }]],
    outputFile: { json: ".artifactd/test-results.json" },
  },
});
