import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { NODE, ROOT } from "../support/service-process.ts";

/**
 * The suite's setup file (test/support/fail-on-server-errors.ts) really fails
 * a test during which a server logged an unexpected internal error, though
 * every assertion of it passed: real vitest, with that setup file, on the
 * fixtures in test/fixtures/server-log/ — an in-process server and a service
 * run as a child process, each with a test that provokes an internal error
 * and a control that does not, and a child-process test that declares its
 * internal error expected.
 */
const FIXTURE_CONFIG = path.join(ROOT, "test/fixtures/server-log/vitest.config.ts");
const VITEST = path.join(ROOT, "node_modules/vitest/vitest.mjs");
// A few seconds on an idle machine (two PGlite starts, one of them in the child); this only bounds a hung run.
const RUN_TIMEOUT_MS = 240_000;

interface AssertionResult {
  title: string;
  status: string;
  failureMessages: string[];
}

let work: string;
let vitestExit: { code: number | null; output: string };
let results: Record<string, AssertionResult[]>;

beforeAll(async () => {
  work = mkdtempSync(path.join(os.tmpdir(), "artifactd-server-log-fixtures-"));
  const report = path.join(work, "report.json");
  vitestExit = await new Promise((resolve, reject) => {
    execFile(
      NODE,
      [VITEST, "run", "--config", FIXTURE_CONFIG],
      {
        cwd: ROOT,
        // Only PATH and HOME of ours: the fixtures' run is not this one's (no worker state, no ARTIFACTD_TEST_LOG).
        env: {
          PATH: process.env.PATH ?? "/usr/bin:/bin",
          HOME: process.env.HOME ?? "/tmp",
          SERVER_LOG_FIXTURE_REPORT: report,
          ARTIFACTD_TEST_BACKENDS: "pglite+fs",
        },
        timeout: RUN_TIMEOUT_MS,
        killSignal: "SIGKILL",
        maxBuffer: 16 * 1024 * 1024,
      },
      (error, stdout, stderr) => {
        if (error && typeof error.code !== "number") reject(new Error(`vitest: ${error.message}\n${stdout}\n${stderr}`));
        else resolve({ code: error ? (error.code as number) : 0, output: `${stdout}\n${stderr}` });
      },
    );
  });
  const parsed = JSON.parse(readFileSync(report, "utf8")) as { testResults: { name: string; assertionResults: AssertionResult[] }[] };
  results = Object.fromEntries(parsed.testResults.map((file) => [path.basename(file.name), file.assertionResults]));
}, RUN_TIMEOUT_MS + 10_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

/** Each test's status, by title. */
const statuses = (file: string) => Object.fromEntries((results[file] ?? []).map((test) => [test.title, test.status]));
const failureOf = (file: string, title: string) => results[file]?.find((test) => test.title === title)?.failureMessages.join("\n") ?? "";

it("fails the run", () => {
  expect(vitestExit.code, vitestExit.output).toBe(1);
});

it("fails the test during which the in-process server logged a bug, and passes the control", () => {
  expect(statuses("in-process.fixture.ts"), vitestExit.output).toEqual({
    "answers NOT_FOUND for a missing artifact": "passed",
    "answers INTERNAL for a bug in the metadata store, as its assertion expects": "failed",
  });
  expect(failureOf("in-process.fixture.ts", "answers INTERNAL for a bug in the metadata store, as its assertion expects")).toMatch(
    /the server logged 1 unexpected internal error\(s\) during this test:\n\[server pglite\+fs\] GetArtifact failed: TypeError: a bug in the metadata store/,
  );
});

it("fails the test during which the child-process service logged an internal error, unless the test declared it; passes the control", () => {
  expect(statuses("child-process.fixture.ts"), vitestExit.output).toEqual({
    "answers NOT_FOUND for a missing artifact": "passed",
    "answers INTERNAL for an upload its blob folder cannot take, as its assertion expects": "failed",
    "answers INTERNAL for the same upload, declared expected by the test": "passed",
  });
  expect(failureOf("child-process.fixture.ts", "answers INTERNAL for an upload its blob folder cannot take, as its assertion expects")).toMatch(
    /the server logged 1 unexpected internal error\(s\) during this test:\n\[service on port \d+\] Upload failed: Error: ENOTDIR/,
  );
});
