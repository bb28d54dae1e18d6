import { describe, expect, it } from "vitest";
import { aliasProblem, formatArtifactReference, parseArtifactReference, projectProblem, versionedNameProblem } from "@artifactd/api";

const ID = "art_01jf3k8z9q4v6w2x7y5t0r1s3m";

describe("artifact references", () => {
  it("read an id, bare or as artifact://", () => {
    expect(parseArtifactReference(ID)).toEqual({ kind: "id", id: ID });
    expect(parseArtifactReference(`artifact://${ID}`)).toEqual({ kind: "id", id: ID });
  });

  it("read name:alias and project/name:alias", () => {
    expect(parseArtifactReference("orders:latest")).toEqual({ kind: "alias", project: "", name: "orders", alias: "latest" });
    expect(parseArtifactReference("team/orders.v2:production")).toEqual({ kind: "alias", project: "team", name: "orders.v2", alias: "production" });
    expect(parseArtifactReference("artifact://team/orders:prod-1")).toEqual({ kind: "alias", project: "team", name: "orders", alias: "prod-1" });
  });

  it("read name@v3 and name@3 as version 3", () => {
    expect(parseArtifactReference("orders@v3")).toEqual({ kind: "version", project: "", name: "orders", version: 3 });
    expect(parseArtifactReference("orders@3")).toEqual({ kind: "version", project: "", name: "orders", version: 3 });
    expect(parseArtifactReference("artifact://a/Orders_1@v120")).toEqual({ kind: "version", project: "a", name: "Orders_1", version: 120 });
  });

  it("refuse what is malformed, saying which part", () => {
    const problem = (text: string) => {
      const parsed = parseArtifactReference(text);
      if (parsed.kind !== "malformed") throw new Error(`${text} parsed as ${parsed.kind}`);
      return parsed.problem;
    };
    expect(problem("")).toMatch(/empty/);
    expect(problem("orders")).toMatch(/neither an id/);
    expect(problem("art_123")).toMatch(/neither an id/);
    expect(problem("artifact://")).toMatch(/neither an id/);
    expect(problem("orders@v0")).toMatch(/^version "v0"/);
    expect(problem("orders@")).toMatch(/^version ""/);
    expect(problem("orders@vx")).toMatch(/^version "vx"/);
    expect(problem("orders@v1234567890123456")).toMatch(/^version/);
    expect(problem("orders:")).toMatch(/^alias ""/);
    expect(problem("orders:Prod")).toMatch(/^alias "Prod"/);
    expect(problem("orders:v3")).toMatch(/names a version/);
    expect(problem("orders:a:b")).toMatch(/^alias "a:b"/);
    expect(problem(":latest")).toMatch(/^name ""/);
    expect(problem("-orders:latest")).toMatch(/^name "-orders"/);
    expect(problem("a/b/orders:latest")).toMatch(/^name "b\/orders"/);
    expect(problem("/orders:latest")).toMatch(/^project ""/);
    expect(problem(`${"p".repeat(65)}/orders:latest`)).toMatch(/^project/);
    expect(problem(`${"n".repeat(129)}:latest`)).toMatch(/^name/);
  });

  it("format back to what they parse from", () => {
    for (const text of ["orders:latest", "team/orders:prod", "orders@v7", "team/orders@v1", ID]) {
      const parsed = parseArtifactReference(text);
      if (parsed.kind === "malformed") throw new Error(parsed.problem);
      expect(formatArtifactReference(parsed)).toBe(text);
    }
  });

  it("check names, projects and aliases by the proto's rules", () => {
    expect(versionedNameProblem("orders.v2_final-1")).toBeUndefined();
    expect(versionedNameProblem("")).toMatch(/needs a name/);
    expect(versionedNameProblem("my orders")).toMatch(/A-Z a-z/);
    expect(versionedNameProblem("n".repeat(128))).toBeUndefined();
    expect(versionedNameProblem("n".repeat(129))).toMatch(/1–128/);
    expect(projectProblem("team-a")).toBeUndefined();
    expect(projectProblem(".team")).toMatch(/starting with/);
    expect(aliasProblem("production")).toBeUndefined();
    expect(aliasProblem("latest")).toBeUndefined();
    expect(aliasProblem("v12")).toMatch(/version/);
    expect(aliasProblem("v12a")).toBeUndefined();
    expect(aliasProblem("1prod")).toMatch(/lowercase letter/);
    expect(aliasProblem("a".repeat(65))).toMatch(/1–64/);
  });
});
