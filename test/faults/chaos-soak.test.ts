import { spawn } from "node:child_process";
import path from "node:path";
import { expect, it } from "vitest";
import { NODE, ROOT } from "../support/service-process.ts";
import { describeOn } from "../support/test-backends.ts";

/**
 * The chaos soak (test/soak/chaos-soak.ts) for 45 seconds: the service,
 * MinIO and Postgres each killed at least once while clients write, read and
 * watch, and nothing acknowledged may be lost, damaged, left without its
 * content, or leave stray objects and unfinished uploads behind; the watcher
 * resumes after every disconnect and sees each creation exactly once. It
 * starts its own Postgres and MinIO, so it touches nothing the other tests
 * use; the soak's logs are in .artifactd/soak/.
 */
const SECONDS = 45;

interface SoakReport {
  acked: number;
  service_kills: number;
  minio_kills: number;
  postgres_kills: number;
  lost: number;
  corrupt: number;
  missing_content: number;
  orphan_objects: number;
  unfinished_uploads: number;
  watch_missed: number;
  watch_duplicates: number;
  internal_errors: number;
  /** Failed calls by "<rpc> <code>". */
  failures: Record<string, number>;
  error?: string;
}

describeOn("postgres+minio")("chaos soak", () => {
  it(`loses nothing acknowledged while the service, MinIO and Postgres are killed (${SECONDS} s)`, { timeout: 5 * 60_000 }, async () => {
    const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
      const child = spawn(NODE, [path.join(ROOT, "test/soak/chaos-soak.ts"), "--seconds", String(SECONDS), "--json"], {
        cwd: ROOT,
        stdio: ["ignore", "pipe", "pipe"],
      });
      let out = "";
      let err = "";
      child.stdout.on("data", (d: Buffer) => (out += d));
      child.stderr.on("data", (d: Buffer) => (err += d));
      child.once("error", reject);
      child.once("close", (exitCode) => resolve({ code: exitCode, stdout: out, stderr: err }));
    });
    const lines = stdout.trim().split("\n");
    expect(lines, `the soak prints exactly one JSON line; its progress:\n${stderr.slice(-4_000)}`).toHaveLength(1);
    const report = JSON.parse(lines[0]!) as SoakReport;
    expect(report.error, stderr.slice(-4_000)).toBeUndefined();
    expect(report.acked).toBeGreaterThan(0);
    expect(report.service_kills).toBeGreaterThanOrEqual(1);
    expect(report.minio_kills).toBeGreaterThanOrEqual(1);
    expect(report.postgres_kills).toBeGreaterThanOrEqual(1);
    const failures = {
      lost: report.lost,
      corrupt: report.corrupt,
      missing_content: report.missing_content,
      orphan_objects: report.orphan_objects,
      unfinished_uploads: report.unfinished_uploads,
      watch_missed: report.watch_missed,
      watch_duplicates: report.watch_duplicates,
      internal_errors: report.internal_errors,
    };
    expect(failures, `the soak's report:\n${lines[0]}`).toEqual({
      lost: 0,
      corrupt: 0,
      missing_content: 0,
      orphan_objects: 0,
      unfinished_uploads: 0,
      watch_missed: 0,
      watch_duplicates: 0,
      internal_errors: 0,
    });
    // Every failure the service answered during the faults said what to do: retry (UNAVAILABLE), never INTERNAL.
    expect(
      Object.keys(report.failures).filter((key) => / (Internal|Unknown)$/.test(key)),
      `the soak's report:\n${lines[0]}`,
    ).toEqual([]);
    expect(code).toBe(0);
  });
});
