#!/usr/bin/env node
// Counts a vitest run for CI and prints its closing line:
//   "N passed, N failed, N skipped"
// preceded by one line per failure and per skipped test. Exits 1 when
// anything failed, else 0.
//
//   node .ci/count-results.mjs --report <vitest json report>
//     --supplement <json-report-supplement output> [--exit-status <the test command's>]
//     [--go-report <go test -json output>]
//
// The json report alone under-counts: it lists tests under a failed
// beforeAll as skipped, keeps only a file's first error and drops unhandled
// errors and dead workers. test/support/json-report-supplement.ts writes
// those; this script reads both. What counts as one failure:
// - a test that failed;
// - a test that never reported a result (its worker died under it);
// - a test that never ran because a beforeAll above it failed;
// - each error outside a test: a file that failed to load, a hook that
//   threw (so a failed beforeAll over 3 tests is 4: the hook and its tests),
//   an unhandled error or rejection, a worker that exited;
// - a file the report marks failed with none of the above to show for it;
// - a report or supplement that is missing or unreadable, a run that was
//   interrupted, or a non-zero exit status with nothing else counted.
//
// The Go client's tests (`go test -json ./...` in clients/go, written by
// test/support/run-go-tests.mjs) are added when --go-report names their
// output. Go reports a test with subtests as passed or failed along with
// them, so the rule is: each test without subtests counts once (each
// subtest is such a test), and a test with subtests counts only when it
// failed while all of its subtests passed (it failed on its own, e.g.
// before running them). Also a failure each: a test that started and never
// reported a result (the binary died under it), a package that failed with
// no failed test to show for it (a build error, a failing TestMain), and a
// report that is missing or unreadable.
import { readFileSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";

const { values: args } = parseArgs({
  options: { report: { type: "string" }, supplement: { type: "string" }, "exit-status": { type: "string" }, "go-report": { type: "string" } },
});
if (!args.report || !args.supplement) {
  console.error("usage: count-results.mjs --report <file> --supplement <file> [--exit-status <n>]");
  process.exit(2);
}

/** Counts of keys, taken one at a time: two tests may share a name. */
class Multiset {
  #counts = new Map();
  constructor(keys) {
    for (const key of keys) this.#counts.set(key, (this.#counts.get(key) ?? 0) + 1);
  }
  take(key) {
    const count = this.#counts.get(key) ?? 0;
    if (count === 0) return false;
    this.#counts.set(key, count - 1);
    return true;
  }
  remaining() {
    return [...this.#counts].flatMap(([key, count]) => Array(count).fill(key));
  }
}

const failures = [];
const skippedTests = [];
let passed = 0;
const fail = (where, why) => failures.push(`${where}: ${why}`);
const shown = (file) => (file ? path.relative(process.cwd(), file) || file : "(not tied to a file)");
const testName = (file, result) => `${shown(file)} > ${[...(result.ancestorTitles ?? []), result.title].join(" > ")}`;

const report = readJson(args.report, "vitest json report", (r) => Array.isArray(r?.testResults));
const supplement = readJson(
  args.supplement,
  "json report supplement",
  (s) => Array.isArray(s?.errorsOutsideTests) && Array.isArray(s?.testsNotRunBecauseAHookFailed),
);

if (report) {
  if (report.testResults.length === 0) fail(shown(args.report), "the report lists no test files");
  const notRun = new Multiset((supplement?.testsNotRunBecauseAHookFailed ?? []).map((t) => testName(t.file, t)));
  const filesWithErrors = new Set((supplement?.errorsOutsideTests ?? []).map((e) => e.file));
  for (const file of report.testResults) {
    const failuresBefore = failures.length;
    for (const result of file.assertionResults ?? []) {
      const name = testName(file.name, result);
      if (result.status === "passed") passed += 1;
      else if (result.status === "failed") fail(name, firstLine(result.failureMessages?.[0] ?? "failed"));
      else if (result.status === "skipped" || result.status === "todo") {
        if (notRun.take(name)) fail(name, "never ran: a beforeAll above it failed");
        else skippedTests.push(`${name} (${result.status})`);
      } else fail(name, `never reported a result (status "${result.status}"): its worker died or the run stopped`);
    }
    if (file.status === "failed" && failures.length === failuresBefore && !filesWithErrors.has(file.name)) {
      fail(shown(file.name), firstLine(file.message || "marked failed by vitest"));
    }
  }
  for (const key of notRun.remaining()) fail(key, "never ran: a beforeAll above it failed (missing from the json report)");
}

if (supplement) {
  for (const error of supplement.errorsOutsideTests) {
    const where = [shown(error.file), error.where].filter(Boolean).join(" > ");
    fail(where, `${describeKind(error.kind)}: ${error.message}`);
  }
  if (supplement.runEnd === "interrupted") fail("vitest", "the run was interrupted");
}

if (args["go-report"]) countGoReport(args["go-report"]);

const exitStatus = args["exit-status"];
if (exitStatus !== undefined && exitStatus !== "0" && failures.length === 0) {
  fail("vitest", `exited with status ${exitStatus} but no failure was counted`);
}

for (const line of failures) console.log(`FAILED  ${line}`);
for (const line of skippedTests) console.log(`SKIPPED ${line}`);
console.log(`${passed} passed, ${failures.length} failed, ${skippedTests.length} skipped`);
process.exit(failures.length === 0 ? 0 : 1);

/** Adds the Go tests of a `go test -json` run (see the rule at the top). */
function countGoReport(file) {
  let text;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    fail(shown(file), `no readable go test -json report (${firstLine(error.message)})`);
    return;
  }
  const events = text
    .split("\n")
    .filter((line) => line.startsWith("{"))
    .map((line) => {
      try {
        return JSON.parse(line);
      } catch {
        return undefined;
      }
    })
    .filter((event) => event && typeof event.Action === "string");
  if (!events.some((event) => event.Package)) {
    fail(shown(file), "the go test -json report lists no package");
    return;
  }
  // Per package: each test's last action, its output, and the package's own result.
  const packages = new Map();
  const packageOf = (name) => {
    if (!packages.has(name)) packages.set(name, { tests: new Map(), output: new Map(), result: undefined, packageOutput: [] });
    return packages.get(name);
  };
  for (const event of events) {
    const name = event.Package ?? event.ImportPath;
    if (!name) continue;
    const entry = packageOf(name.replace(/ \[.*\]$/, ""));
    if (event.Test) {
      if (["run", "pass", "fail", "skip"].includes(event.Action)) entry.tests.set(event.Test, event.Action);
      if (event.Action === "output") entry.output.set(event.Test, [...(entry.output.get(event.Test) ?? []), event.Output]);
    } else if (event.Action === "pass" || event.Action === "fail" || event.Action === "skip") entry.result = event.Action;
    else if (event.Action === "output" || event.Action === "build-output") entry.packageOutput.push(event.Output ?? "");
    else if (event.Action === "build-fail") entry.result = "fail";
  }
  for (const [name, entry] of packages) {
    const where = (test) => `${name} > ${test}`;
    const hasSubtests = (test) => [...entry.tests.keys()].some((other) => other.startsWith(`${test}/`));
    const failuresBefore = failures.length;
    for (const [test, action] of entry.tests) {
      const why = () => firstLine((entry.output.get(test) ?? []).filter((line) => !/^\s*(=== |--- )/.test(line)).join("") || "failed").trim();
      if (hasSubtests(test)) {
        const subtests = [...entry.tests].filter(([other]) => other.startsWith(`${test}/`));
        if (action === "fail" && subtests.every(([, a]) => a !== "fail" && a !== "run")) fail(where(test), why());
        continue;
      }
      if (action === "pass") passed += 1;
      else if (action === "fail") fail(where(test), why());
      else if (action === "skip") skippedTests.push(`${where(test)} (skipped)`);
      else fail(where(test), "never reported a result: the test binary died or the run stopped");
    }
    if (entry.result === "fail" && failures.length === failuresBefore) {
      fail(name, firstLine(entry.packageOutput.filter((line) => !/^(FAIL|ok|#)\s/.test(line)).join("") || "the package failed outside any test"));
    }
    if (entry.result === undefined && entry.tests.size > 0 && failures.length === failuresBefore) fail(name, "the package never reported a result");
  }
}

function readJson(file, what, looksRight) {
  try {
    const parsed = JSON.parse(readFileSync(file, "utf8"));
    if (looksRight(parsed)) return parsed;
    fail(shown(file), `not a ${what}`);
  } catch (error) {
    fail(shown(file), `no readable ${what} (${firstLine(error.message)})`);
  }
  return undefined;
}

function describeKind(kind) {
  if (kind === "file") return "error in the file or a file-level hook";
  if (kind === "suite") return "error in a describe block's hook";
  return "outside any test";
}

function firstLine(text) {
  // Strip colour codes: vitest's messages carry them, a CI log may not render them.
  // biome-ignore lint/suspicious/noControlCharactersInRegex: the escape character is what a colour code starts with.
  const colourCode = /\u001b\[[0-9;]*m/g;
  return (
    String(text)
      .replace(colourCode, "")
      .split("\n")
      .find((line) => line.trim() !== "") ?? ""
  );
}
