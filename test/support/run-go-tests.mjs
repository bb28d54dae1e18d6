#!/usr/bin/env node
// The Go client's tests, as `npm test` runs them after vitest: `go test -json
// ./...` in clients/go, its events written to .artifactd/go-test-results.json
// (which .ci/count-results.mjs adds to the closing line), and a short account
// printed: each package's result and the output of every failed test. Exits
// with go test's status (1 when Go cannot be found).
//
// Go is the `go` on PATH, else /usr/local/go/bin/go. The tests start their
// own service, MinIO and database (clients/go/artifactd/main_test.go).
import { spawn, spawnSync } from "node:child_process";
import { createWriteStream, mkdirSync } from "node:fs";
import path from "node:path";
import { createInterface } from "node:readline";

const root = path.resolve(import.meta.dirname, "../..");
const reportFile = path.join(root, ".artifactd/go-test-results.json");
mkdirSync(path.dirname(reportFile), { recursive: true });
const report = createWriteStream(reportFile);

const go = ["go", "/usr/local/go/bin/go"].find((candidate) => spawnSync(candidate, ["version"]).status === 0);
if (!go) {
  console.error("run-go-tests: Go was not found on PATH or at /usr/local/go/bin/go; the Go client's tests did not run");
  report.end();
  process.exit(1);
}

const started = Date.now();
const child = spawn(go, ["test", "-json", "-count=1", "-timeout", "10m", "./..."], {
  cwd: path.join(root, "clients/go"),
  // The tests find the repository's Node themselves; Go's own module and build caches are the user's.
  env: process.env,
  stdio: ["ignore", "pipe", "inherit"],
});
const outputOf = new Map();
const counts = { pass: 0, fail: 0, skip: 0 };
for await (const line of createInterface({ input: child.stdout })) {
  report.write(`${line}\n`);
  let event;
  try {
    event = JSON.parse(line);
  } catch {
    console.log(line);
    continue;
  }
  const key = `${event.Package ?? event.ImportPath} ${event.Test ?? ""}`;
  if (event.Action === "output" || event.Action === "build-output") outputOf.set(key, [...(outputOf.get(key) ?? []), event.Output ?? ""]);
  if (event.Test && event.Action in counts) counts[event.Action] += 1;
  if (event.Action === "fail") process.stdout.write((outputOf.get(key) ?? []).join(""));
  if (!event.Test && (event.Action === "pass" || event.Action === "fail") && event.Package) {
    console.log(`go test: ${event.Action === "pass" ? "ok  " : "FAIL"} ${event.Package} (${event.Elapsed ?? "?"} s)`);
  }
  if (event.Action === "pass" || event.Action === "fail" || event.Action === "skip") outputOf.delete(key);
}
const status = await new Promise((resolve) => child.once("close", (code, signal) => resolve(code ?? (signal ? 1 : 0))));
await new Promise((resolve) => report.end(resolve));
// Parents of subtests included here; .ci/count-results.mjs counts them by its own rule.
console.log(
  `go test: ${counts.pass} passed, ${counts.fail} failed, ${counts.skip} skipped (tests and subtests, parents included) in ${((Date.now() - started) / 1000).toFixed(1)} s`,
);
process.exit(status);
