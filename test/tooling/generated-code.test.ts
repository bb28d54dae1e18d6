import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { expect, it } from "vitest";

/**
 * Generated code is generated: `buf generate` from proto/ must reproduce every committed file exactly, the
 * TypeScript of @artifactd/api and the Go of clients/go/gen alike. The Go plugins are `go tool`s of clients/go
 * (clients/go/tools/protoc-plugin.sh): on a fresh machine the first run downloads and builds them, hence the time.
 */
it("the committed generated code is what buf generate makes from proto/", { timeout: 300_000 }, () => {
  const root = path.resolve(import.meta.dirname, "../..");
  const out = mkdtempSync(path.join(os.tmpdir(), "artifactd-gen-"));
  try {
    execFileSync(path.join(root, "node_modules/.bin/buf"), ["generate", "-o", out], { cwd: root, stdio: "pipe" });
    const generatedDirs = readFileSync(path.join(root, "buf.gen.yaml"), "utf8")
      .split("\n")
      .map((line) => /^\s*out:\s*(\S+)/.exec(line)?.[1])
      .filter((dir): dir is string => dir !== undefined);
    expect(generatedDirs.length).toBeGreaterThan(0);
    for (const dir of generatedDirs) {
      const fresh = listFiles(path.join(out, dir));
      const committed = listFiles(path.join(root, dir));
      expect(committed, dir).toEqual(fresh);
      for (const file of fresh) {
        expect(readFileSync(path.join(root, dir, file), "utf8"), `${dir}/${file}`).toBe(readFileSync(path.join(out, dir, file), "utf8"));
      }
    }
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

function listFiles(dir: string, prefix = ""): string[] {
  return readdirSync(dir)
    .flatMap((name) => (statSync(path.join(dir, name)).isDirectory() ? listFiles(path.join(dir, name), `${prefix}${name}/`) : [`${prefix}${name}`]))
    .sort();
}
