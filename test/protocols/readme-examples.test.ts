import { execFile } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, expect, it } from "vitest";
import { startTestApp, type TestApp } from "../support/test-app.ts";
import { describeOn } from "../support/test-backends.ts";

/**
 * The README's Node client examples are the files in clients/node/examples,
 * shown verbatim: each is marked `<!-- example: <path> -->` before its code
 * block. This checks the README still shows each file exactly, and runs each
 * file as its own process against a real service (Postgres + MinIO); the
 * examples assert what they claim, so a wrong example fails here.
 */
const root = path.resolve(import.meta.dirname, "../..");
const examplesDir = path.join(root, "clients/node/examples");
const readme = readFileSync(path.join(root, "README.md"), "utf8");
const shown = [...readme.matchAll(/<!-- example: (\S+) -->\s*```ts\n([\s\S]*?)```/g)].map(([, file, code]) => ({ file: file!, code: code! }));
const examples = readdirSync(examplesDir)
  .filter((name) => name.endsWith(".ts"))
  .sort();
const run = promisify(execFile);

describeOn("postgres+minio")("README examples", () => {
  let t: TestApp;
  let cacheHome: string;
  beforeAll(async () => {
    t = await startTestApp("postgres+minio", { ARTIFACTD_S3_PART_SIZE: "5MiB" });
    cacheHome = mkdtempSync(path.join(os.tmpdir(), "artifactd-examples-cache-"));
  });
  afterAll(async () => {
    await t?.close();
    rmSync(cacheHome, { recursive: true, force: true });
  });

  it("shows every example file, verbatim", () => {
    expect(shown.map((s) => s.file).sort()).toEqual(examples.map((name) => `clients/node/examples/${name}`));
    for (const { file, code } of shown) expect(code, `${file} differs from its README block`).toBe(readFileSync(path.join(root, file), "utf8"));
  });

  it.each(examples)("%s runs and its assertions hold", async (name) => {
    const { stderr } = await run(process.execPath, [path.join(examplesDir, name)], {
      cwd: root,
      // XDG_CACHE_HOME: the examples' local cache goes to a temporary folder, not the home folder.
      env: { ...process.env, ARTIFACTD_URL: t.url, ARTIFACTD_TOKEN: t.tokens.alpha, XDG_CACHE_HOME: cacheHome, NODE_NO_WARNINGS: "1" },
      timeout: 60_000,
    });
    expect(stderr).toBe("");
  });
});
