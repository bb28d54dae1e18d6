import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { blake3Hex } from "../src/blake3.ts";
import { startTestApp, type TestApp } from "./support/test-app.ts";

/** The real `artifactd` command against a real server. */
const ROOT = path.resolve(import.meta.dirname, "..");
const NODE = path.join(ROOT, "node_modules/.bin/node");

describe("artifactd client commands", () => {
  let t: TestApp;
  let dir: string;
  beforeAll(async () => {
    t = await startTestApp("postgres+minio", { ARTIFACTD_S3_PART_SIZE: "5MiB" });
    dir = mkdtempSync(path.join(os.tmpdir(), "artifactd-cli-"));
  });
  afterAll(async () => {
    await t?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const cli = (args: string[], options: { token?: string; input?: Buffer } = {}) =>
    new Promise<{ code: number | null; stdout: Buffer; stderr: string }>((resolve) => {
      const child = spawn(NODE, [path.join(ROOT, "src/main.ts"), ...args], {
        cwd: dir,
        env: { ...process.env, ARTIFACTD_URL: t.url, ARTIFACTD_TOKEN: options.token ?? t.tokens.alpha, XDG_CONFIG_HOME: dir },
        stdio: ["pipe", "pipe", "pipe"],
      });
      const stdout: Buffer[] = [];
      let stderr = "";
      child.stdout.on("data", (d: Buffer) => stdout.push(d));
      child.stderr.on("data", (d: Buffer) => (stderr += d));
      child.stdin.end(options.input);
      child.on("exit", (code) => resolve({ code, stdout: Buffer.concat(stdout), stderr }));
    });

  it("puts a file larger than several parts and gets it back byte for byte", async () => {
    const data = randomBytes(12 * 1024 * 1024 + 99);
    writeFileSync(path.join(dir, "weights.bin"), data);
    const put = await cli(["put", "weights.bin", "--kind", "model", "--label", "stage=prod", "--tag", "best", "--metric", "acc=0.93", "--run-id", "run-cli", "--json"]);
    expect(put.stderr).toBe("");
    expect(put.code).toBe(0);
    const { artifact } = JSON.parse(put.stdout.toString()) as { artifact: { id: string; blake3: string; labels: Record<string, string>; metrics: Record<string, number> } };
    expect(artifact.blake3).toBe(blake3Hex(data));
    expect(artifact.labels).toEqual({ stage: "prod" });
    expect(artifact.metrics).toEqual({ acc: 0.93 });

    const get = await cli(["get", artifact.id, "-o", "copy.bin"]);
    expect(get.code).toBe(0);
    expect(readFileSync(path.join(dir, "copy.bin")).equals(data)).toBe(true);

    const ls = await cli(["ls", "--run-id", "run-cli", "--json"]);
    expect(ls.code).toBe(0);
    const listed = JSON.parse(ls.stdout.toString()) as { id: string; sizeBytes: number }[];
    expect(listed.map((a) => a.id)).toEqual([artifact.id]);
    expect(listed[0]!.sizeBytes).toBe(data.length);

    const show = await cli(["show", artifact.id]);
    expect(show.stdout.toString()).toMatch(new RegExp(`blake3\\s+${artifact.blake3}`));
    const url = await cli(["url", artifact.id]);
    expect(url.stdout.toString()).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/download\/v1\//);
  });

  it("pipes standard input up and cat down; pins, refuses to delete pinned, deletes", async () => {
    const put = await cli(["put", "-", "--kind", "log", "--name", "run.log"], { input: Buffer.from("line one\nline two\n") });
    expect(put.code).toBe(0);
    const id = put.stdout.toString().trim();
    expect((await cli(["cat", id])).stdout.toString()).toBe("line one\nline two\n");
    expect((await cli(["pin", id])).code).toBe(0);
    const refused = await cli(["rm", id]);
    expect(refused.code).toBe(6);
    expect(refused.stderr).toMatch(/pinned/);
    expect((await cli(["unpin", id])).code).toBe(0);
    expect((await cli(["rm", id])).code).toBe(0);
    const gone = await cli(["cat", id]);
    expect(gone.code).toBe(3);
  });

  it("says what is wrong, with exit codes that mean something", async () => {
    const wrongToken = await cli(["ls"], { token: "adt_" + "x".repeat(43) });
    expect(wrongToken.code).toBe(4);
    expect(wrongToken.stderr).toMatch(/unknown or revoked.*--token/);
    const noKind = await cli(["put", "weights.bin"]);
    expect(noKind.code).toBe(2);
    expect(noKind.stderr).toMatch(/--kind/);
    const missing = await cli(["show", "art_00000000000000000000000000"]);
    expect(missing.code).toBe(3);
    const malformed = await cli(["show", "nope"]);
    expect(malformed.code).toBe(2);
    const badPair = await cli(["put", "weights.bin", "--kind", "x", "--label", "novalue"]);
    expect(badPair.code).toBe(2);
    expect(badPair.stderr).toMatch(/key=value/);
  });
});
