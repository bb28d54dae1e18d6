/**
 * Mutation testing (npm run test:mutation; not part of npm test): the
 * modules whose logic is pure, mutated against the unit tests of
 * vitest.mutation.config.ts. See the README's "Mutation testing".
 *
 * @type {import("@stryker-mutator/api/core").PartialStrykerOptions}
 */
export default {
  testRunner: "vitest",
  vitest: { configFile: "vitest.mutation.config.ts" },
  checkers: ["typescript"],
  tsconfigFile: "tsconfig.mutation.json",
  // Only the mutated files are type-checked against each mutant; a mutant that does not compile is not run.
  typescriptChecker: { prioritizePerformanceOverAccuracy: true },
  mutate: [
    "src/service/validate-spec.ts",
    "src/adapters/metadata/artifact-filter.ts",
    "src/adapters/metadata/page-token.ts",
    "src/service/download-urls.ts",
    "src/url-signing-keys.ts",
    "src/config.ts",
    "src/artifact-id.ts",
    "clients/node/src/directory-manifest.ts",
    "clients/node/src/retry-policy.ts",
    "clients/web/src/retry.ts",
    "clients/api/src/transient-failure.ts",
    // The checks of an upload stream's first message, made before storage is first touched.
    "src/service/upload-header.ts",
  ],
  coverageAnalysis: "perTest",
  // Two cores shared with everything else on the machine.
  concurrency: 1,
  // A mutant that makes a test loop forever is cut off and counted as a timeout, so a run cannot hang.
  timeoutMS: 5_000,
  timeoutFactor: 1.5,
  dryRunTimeoutMinutes: 2,
  tempDirName: ".artifactd/stryker-tmp",
  incrementalFile: ".artifactd/stryker-incremental.json",
  reporters: ["clear-text", "progress", "html", "json"],
  htmlReporter: { fileName: ".artifactd/mutation/index.html" },
  jsonReporter: { fileName: ".artifactd/mutation/report.json" },
  thresholds: { high: 90, low: 85, break: null },
  cleanTempDir: "always",
};
