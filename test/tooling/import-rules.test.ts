import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";

/**
 * The layering the README's layout promises, read from the import lines of
 * the hand-written code: adapters know neither use cases nor configuration,
 * src/ reaches the client packages only by name, and no imports go round in
 * a circle.
 */
const ROOT = path.resolve(import.meta.dirname, "../..");
const PACKAGES: Record<string, string> = {
  "@artifactd/api": "clients/api/src/index.ts",
  "@artifactd/client": "clients/node/src/index.ts",
  "@artifactd/cli": "clients/cli/src/index.ts",
};

function sourceFiles(dir: string): string[] {
  return readdirSync(path.join(ROOT, dir), { withFileTypes: true }).flatMap((entry) => {
    const relative = path.join(dir, entry.name);
    if (entry.isDirectory()) return ["gen", "node_modules", "dist"].includes(entry.name) ? [] : sourceFiles(relative);
    return entry.name.endsWith(".ts") ? [relative] : [];
  });
}

/** Each import (static, dynamic or re-export) of a file, as written and resolved to a repository path where it is ours. */
function importsOf(file: string): { specifier: string; target: string | undefined }[] {
  const source = readFileSync(path.join(ROOT, file), "utf8");
  return [...source.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|^import\s+)"([^"]+)"/gm)].map(([, specifier]) => {
    const written = specifier!;
    if (written.startsWith(".")) return { specifier: written, target: path.normalize(path.join(path.dirname(file), written)).replace(/\.js$/, ".ts") };
    return { specifier: written, target: PACKAGES[written] };
  });
}

const files = [...sourceFiles("src"), ...sourceFiles("clients/api/src"), ...sourceFiles("clients/node/src"), ...sourceFiles("clients/cli/src")];

describe("import rules", () => {
  it("finds the code it checks", () => {
    expect(files).toContain("src/adapters/blob/s3-blob-store.ts");
    expect(importsOf("src/app.ts").some(({ target }) => target === "src/config.ts")).toBe(true);
  });

  it("keeps adapters off the use cases and the configuration", () => {
    const outward = files
      .filter((file) => file.startsWith("src/adapters/"))
      .flatMap((file) => importsOf(file).map(({ target }) => ({ file, target })))
      .filter(({ target }) => target !== undefined && (target.startsWith("src/service/") || target === "src/config.ts"));
    expect(outward).toEqual([]);
  });

  it("reaches the client packages from src/ only by their names", () => {
    const internals = files
      .filter((file) => file.startsWith("src/"))
      .flatMap((file) => importsOf(file).map(({ specifier, target }) => ({ file, specifier, target })))
      .filter(({ specifier, target }) => specifier.startsWith(".") && target?.startsWith("clients/"));
    expect(internals).toEqual([]);
  });

  it("has no import cycles", () => {
    const graph = new Map(files.map((file) => [file, importsOf(file).flatMap(({ target }) => (target && files.includes(target) ? [target] : []))]));
    const cycles: string[][] = [];
    const state = new Map<string, "open" | "done">();
    const visit = (file: string, trail: string[]) => {
      if (state.get(file) === "done") return;
      if (state.get(file) === "open") {
        cycles.push([...trail.slice(trail.indexOf(file)), file]);
        return;
      }
      state.set(file, "open");
      for (const next of graph.get(file) ?? []) visit(next, [...trail, file]);
      state.set(file, "done");
    };
    for (const file of files) visit(file, []);
    expect(cycles).toEqual([]);
  });
});
