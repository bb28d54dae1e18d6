import { execFile, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NODE, ROOT } from "../support/service-process.ts";

/**
 * .ci/count-results.mjs, the closing line CI reads, on real vitest runs of
 * the deliberately broken fixtures in test/fixtures/ci-count/ (their own
 * config, their own report files in a temporary folder).
 */
const FIXTURE_CONFIG = path.join(ROOT, "test/fixtures/ci-count/vitest.config.ts");
const VITEST = path.join(ROOT, "node_modules/vitest/vitest.mjs");
const COUNT_RESULTS = path.join(ROOT, ".ci/count-results.mjs");
// A fixture run takes a few seconds; this only bounds a hung one.
const RUN_TIMEOUT_MS = 30_000;

interface Outcome {
  code: number | null;
  stdout: string;
  stderr: string;
}

let work: string;
let brokenRun: FixtureRun;
let cleanRun: FixtureRun;

beforeAll(async () => {
  work = mkdtempSync(path.join(os.tmpdir(), "artifactd-ci-count-"));
  [brokenRun, cleanRun] = await Promise.all([runFixtures(path.join(work, "broken"), []), runFixtures(path.join(work, "clean"), ["passing.fixture.ts"])]);
}, RUN_TIMEOUT_MS + 10_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe("the CI count of a run with every kind of failure", () => {
  it("counts failed tests, tests a failed beforeAll kept from running, a test its dead worker never finished, and each error outside a test", async () => {
    expect(brokenRun.vitest.code, brokenRun.vitest.stdout).toBe(1);
    const count = await countResults(brokenRun.report, brokenRun.supplement, brokenRun.vitest.code);
    expect(closingLine(count), count.stdout).toBe("7 passed, 14 failed, 5 skipped");
    expect(count.code).toBe(1);
    // Where each failure comes from, so a miscount says which case broke.
    expect(failuresByFile(count)).toEqual({
      "failing-test.fixture.ts": 1, // its failed assertion
      "failing-before-all.fixture.ts": 4, // the beforeAll and the 3 tests it kept from running
      "failing-describe-hooks.fixture.ts": 3, // a block's beforeAll, the test it kept out, another block's afterAll
      "import-throws.fixture.ts": 1,
      "syntax-error.fixture.mjs": 1,
      "unhandled-errors.fixture.ts": 2, // an unhandled rejection and an uncaught exception
      "worker-crash.fixture.ts": 1, // the test its worker died in
      "(not tied to a file)": 1, // vitest's own report of the dead worker
    });
    expect(skippedLines(count)).toEqual([
      "test/fixtures/ci-count/failing-describe-hooks.fixture.ts > a block whose beforeAll fails > skipped on purpose (skipped)",
      "test/fixtures/ci-count/failing-describe-hooks.fixture.ts > a block whose afterAll fails > skips itself (skipped)",
      "test/fixtures/ci-count/failing-test.fixture.ts > skipped on purpose (skipped)",
      "test/fixtures/ci-count/passing.fixture.ts > skipped on purpose (skipped)",
      "test/fixtures/ci-count/passing.fixture.ts > not written yet (todo)",
    ]);
  });

  it("without the supplement, still counts every failed file from the json report, and the missing supplement", async () => {
    const count = await countResults(brokenRun.report, path.join(work, "no-such-supplement.json"), brokenRun.vitest.code);
    // The failed assertion, the dead worker's test, the 4 files the report marks failed with no failed test, the missing
    // file; the tests the failed beforeAlls kept out are skipped as far as the json report can tell.
    expect(closingLine(count), count.stdout).toBe("7 passed, 7 failed, 9 skipped");
    expect(count.stdout).toContain("no readable json report supplement");
    expect(count.code).toBe(1);
  });
});

describe("the CI count of a clean run", () => {
  it("reports 0 failed and exits 0", async () => {
    expect(cleanRun.vitest.code, cleanRun.vitest.stdout).toBe(0);
    const count = await countResults(cleanRun.report, cleanRun.supplement, cleanRun.vitest.code);
    expect(closingLine(count), count.stdout).toBe("2 passed, 0 failed, 2 skipped");
    expect(count.code).toBe(0);
  });

  it("counts 1 failed when vitest exited non-zero yet nothing in the reports failed", async () => {
    const count = await countResults(cleanRun.report, cleanRun.supplement, 1);
    expect(closingLine(count), count.stdout).toBe("2 passed, 1 failed, 2 skipped");
    expect(count.code).toBe(1);
  });
});

describe("the CI count without a usable report", () => {
  it("counts 1 failed when the report is missing, even if the exit status says the run passed", async () => {
    const count = await countResults(path.join(work, "no-such-report.json"), cleanRun.supplement, 0);
    expect(closingLine(count), count.stdout).toBe("0 passed, 1 failed, 0 skipped");
    expect(count.code).toBe(1);
  });

  it("counts 1 failed when the report is cut short, even if the exit status says the run passed", async () => {
    const truncated = path.join(work, "truncated-report.json");
    writeFileSync(truncated, '{"numTotalTests": 4, "testResults": [');
    const count = await countResults(truncated, cleanRun.supplement, 0);
    expect(closingLine(count), count.stdout).toBe("0 passed, 1 failed, 0 skipped");
    expect(count.code).toBe(1);
  });
});

describe("the CI count with the Go client's tests", () => {
  const go = ["go", "/usr/local/go/bin/go"].find((candidate) => spawnSync(candidate, ["version"]).status === 0);

  it("adds each Go test without subtests, each subtest, a parent failing on its own, a package that did not build and a test whose binary died", async () => {
    expect(go, "Go (on PATH or /usr/local/go/bin/go) runs the Go client's tests").toBeDefined();
    const goReport = path.join(work, "go-test-results.json");
    const goRun = spawnSync(go!, ["test", "-json", "-count=1", "./..."], {
      cwd: path.join(ROOT, "test/fixtures/ci-count/go"),
      encoding: "utf8",
      timeout: 120_000,
      env: process.env,
    });
    expect(goRun.status, goRun.stderr).toBe(1);
    writeFileSync(goReport, goRun.stdout);
    const count = await run(
      NODE,
      [COUNT_RESULTS, "--report", cleanRun.report, "--supplement", cleanRun.supplement, "--exit-status", "1", "--go-report", goReport],
      { PATH: process.env.PATH ?? "/usr/bin:/bin" },
    );
    // vitest's clean run: 2 passed, 2 skipped. Go: TestPasses and the two passing subtests; TestFails, the failing subtest,
    // the parent failing after its subtest passed, the package that does not build, the test whose binary exited.
    expect(closingLine(count), count.stdout).toBe("5 passed, 5 failed, 3 skipped");
    expect(count.code).toBe(1);
    const failed = count.stdout.split("\n").filter((line) => line.startsWith("FAILED "));
    expect(failed.sort()).toEqual(
      [
        "FAILED  ci-count-fixture/broken: broken/broken_test.go:6:37: undefined: undefinedOnPurpose",
        "FAILED  ci-count-fixture > TestFails: counted_test.go:11: fails on purpose",
        "FAILED  ci-count-fixture > TestWithSubtests/fails: counted_test.go:16: a subtest failing on purpose",
        "FAILED  ci-count-fixture > TestFailsAfterItsSubtests: counted_test.go:22: the parent failing on purpose",
        "FAILED  ci-count-fixture/dies > TestExits: never reported a result: the test binary died or the run stopped",
      ].sort(),
    );
    expect(skippedLines(count)).toContain("ci-count-fixture > TestSkipped (skipped)");
  });

  it("counts 1 failed when the Go report is missing", async () => {
    const count = await run(
      NODE,
      [COUNT_RESULTS, "--report", cleanRun.report, "--supplement", cleanRun.supplement, "--exit-status", "0", "--go-report", path.join(work, "none.json")],
      { PATH: process.env.PATH ?? "/usr/bin:/bin" },
    );
    expect(closingLine(count), count.stdout).toBe("2 passed, 1 failed, 2 skipped");
    expect(count.stdout).toContain("no readable go test -json report");
  });
});

interface FixtureRun {
  vitest: Outcome;
  report: string;
  supplement: string;
}

/** vitest on the fixtures (all, or the files named), as a child with only PATH and HOME of ours: not inside this run's worker. */
async function runFixtures(outputDir: string, files: string[]): Promise<FixtureRun> {
  const vitest = await run(NODE, [VITEST, "run", "--config", FIXTURE_CONFIG, ...files], {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    HOME: process.env.HOME ?? "/tmp",
    CI_COUNT_OUTPUT_DIR: outputDir,
  });
  return { vitest, report: path.join(outputDir, "test-results.json"), supplement: path.join(outputDir, "test-results-supplement.json") };
}

function countResults(report: string, supplement: string, vitestExitCode: number | null): Promise<Outcome> {
  return run(NODE, [COUNT_RESULTS, "--report", report, "--supplement", supplement, "--exit-status", String(vitestExitCode)], {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
  });
}

function run(command: string, args: string[], env: Record<string, string>): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { cwd: ROOT, env, timeout: RUN_TIMEOUT_MS, killSignal: "SIGKILL", maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error && typeof error.code !== "number") reject(new Error(`${path.basename(args[0]!)}: ${error.message}\n${stdout}\n${stderr}`));
      else resolve({ code: error ? (error.code as number) : 0, stdout, stderr });
    });
  });
}

function closingLine(outcome: Outcome): string {
  return outcome.stdout.trimEnd().split("\n").at(-1) ?? "";
}

/** FAILED lines start with the file (or "(not tied to a file)"); counted by the file's name. */
function failuresByFile(outcome: Outcome): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const line of outcome.stdout.split("\n")) {
    if (!line.startsWith("FAILED ")) continue;
    const where = line.slice("FAILED ".length).trimStart();
    const file = where.startsWith("(not tied to a file)") ? "(not tied to a file)" : path.basename(where.split(/[ :]/, 1)[0]!);
    counts[file] = (counts[file] ?? 0) + 1;
  }
  return counts;
}

function skippedLines(outcome: Outcome): string[] {
  return outcome.stdout.split("\n").flatMap((line) => (line.startsWith("SKIPPED ") ? [line.slice("SKIPPED ".length)] : []));
}
