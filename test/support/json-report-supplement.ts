import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { SerializedError } from "vitest";
import type { Reporter, TestCase, TestModule, TestRunEndReason, TestSuite, Vitest } from "vitest/node";

/**
 * Writes what vitest's json reporter leaves out, for .ci/count-results.mjs:
 * - errors outside any test: a file that failed to load, a beforeAll/afterAll
 *   that threw (the json report keeps only a file's first error, and none of
 *   a describe block's), and the run's unhandled errors — uncaught exceptions,
 *   unhandled rejections, a worker that exited — which it drops entirely;
 * - the tests that never ran because a hook above them failed, which the json
 *   report lists as "skipped", like a test.skip.
 *
 * Options: `{ outputFile }`, resolved against the project root.
 */
export interface JsonReportSupplement {
  runEnd: TestRunEndReason;
  errorsOutsideTests: ErrorOutsideTests[];
  testsNotRunBecauseAHookFailed: TestNotRun[];
}

export interface ErrorOutsideTests {
  kind: "file" | "suite" | "unhandled";
  /** Absolute path of the test file; null when vitest could not tie the error to one (a worker that died). */
  file: string | null;
  /** The describe block's name for kind "suite", the test's for an unhandled error raised while a test ran. */
  where: string | null;
  message: string;
}

/** Named as in the json report: its file, ancestorTitles and title. */
export interface TestNotRun {
  file: string;
  ancestorTitles: string[];
  title: string;
}

export default class JsonReportSupplementReporter implements Reporter {
  private readonly outputFile: string;
  private root = process.cwd();
  /** Tests vitest began to run: a test that skipped itself did begin; one a failed beforeAll kept out did not. */
  private readonly started = new Set<string>();

  constructor(options: { outputFile?: string } = {}) {
    if (!options.outputFile) throw new Error("json-report-supplement: the reporter needs an outputFile option");
    this.outputFile = options.outputFile;
  }

  onInit(vitest: Vitest): void {
    this.root = vitest.config.root;
  }

  onTestCaseReady(test: TestCase): void {
    this.started.add(test.id);
  }

  onTestRunEnd(modules: ReadonlyArray<TestModule>, unhandledErrors: ReadonlyArray<SerializedError>, reason: TestRunEndReason): void {
    const supplement: JsonReportSupplement = { runEnd: reason, errorsOutsideTests: [], testsNotRunBecauseAHookFailed: [] };
    for (const module of modules) {
      for (const error of module.errors()) supplement.errorsOutsideTests.push({ kind: "file", file: module.moduleId, where: null, message: summarize(error) });
      for (const suite of module.children.allSuites()) {
        for (const error of suite.errors())
          supplement.errorsOutsideTests.push({ kind: "suite", file: module.moduleId, where: suite.fullName, message: summarize(error) });
      }
      for (const test of module.children.allTests()) {
        if (!this.started.has(test.id) && skippedInAFailedBlock(test)) {
          supplement.testsNotRunBecauseAHookFailed.push({ file: module.moduleId, ancestorTitles: ancestorTitles(test), title: test.name });
        }
      }
    }
    for (const error of unhandledErrors) {
      // vitest tags an error with the file and test that were running when it was raised, when it knows them.
      const { VITEST_TEST_PATH, VITEST_TEST_NAME, type } = error as { VITEST_TEST_PATH?: unknown; VITEST_TEST_NAME?: unknown; type?: unknown };
      supplement.errorsOutsideTests.push({
        kind: "unhandled",
        file: typeof VITEST_TEST_PATH === "string" ? VITEST_TEST_PATH : null,
        where: typeof VITEST_TEST_NAME === "string" ? VITEST_TEST_NAME : null,
        message: typeof type === "string" ? `${type}: ${summarize(error)}` : summarize(error),
      });
    }
    const file = path.resolve(this.root, this.outputFile);
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, JSON.stringify(supplement, null, 2));
  }
}

/**
 * A test that was meant to run (not test.skip/todo, not filtered out), ended
 * "skipped", and sits in a file or describe block that failed with errors of
 * its own: unless it began to run, their beforeAll threw and vitest skipped it.
 */
function skippedInAFailedBlock(test: TestCase): boolean {
  if (test.options.mode !== "run" || test.result().state !== "skipped") return false;
  for (let parent: TestSuite | TestModule = test.parent; ; parent = parent.parent) {
    if (parent.errors().length > 0) return true;
    if (parent.type === "module") return false;
  }
}

/** Outermost first, as the json report's ancestorTitles. */
function ancestorTitles(test: TestCase): string[] {
  const titles: string[] = [];
  for (let parent: TestSuite | TestModule = test.parent; parent.type === "suite"; parent = parent.parent) titles.unshift(parent.name);
  return titles;
}

function summarize(error: SerializedError): string {
  const cause = (error as { cause?: { message?: unknown } }).cause;
  const firstLine = (text: string) => text.split("\n", 1)[0]!;
  const message = `${error.name ?? "Error"}: ${firstLine(error.message ?? "")}`;
  return typeof cause?.message === "string" ? `${message} (${firstLine(cause.message)})` : message;
}
