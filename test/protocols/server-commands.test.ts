import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { afterAll, describe, expect, inject, it } from "vitest";
import { openEventWatcher } from "../support/event-watcher.ts";
import { createTestDatabase } from "../support/postgres.ts";
import { startTestApp } from "../support/test-app.ts";
import { testsBackend } from "../support/test-backends.ts";

const ROOT = path.resolve(import.meta.dirname, "../..");
const NODE = path.join(ROOT, "node_modules/.bin/node");
const MAIN = path.join(ROOT, "src/main.ts");

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * The server half of the real `artifactd` command (token, gc, migrate), on
 * the embedded stores in folders of the test's own: where each setting comes
 * from, and what a wrong call says.
 */
describe("artifactd server commands", () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "artifactd-server-cli-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const folder = (name: string) => path.join(dir, name);

  /** Runs the command with nothing of this machine's artifactd settings, plus `env`. */
  const cli = (args: string[], env: Record<string, string> = {}) =>
    new Promise<Run>((resolve) => {
      const child = spawn(NODE, [MAIN, ...args], { cwd: dir, env: { PATH: process.env.PATH ?? "", HOME: dir, ...env }, stdio: ["ignore", "pipe", "pipe"] });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (d: Buffer) => (stdout += d));
      child.stderr.on("data", (d: Buffer) => (stderr += d));
      child.on("exit", (code) => resolve({ code, stdout, stderr }));
    });
  const ok = (run: Run) => {
    expect(run.code, run.stderr).toBe(0);
    return run.stdout;
  };
  const configFile = (name: string, settings: Record<string, unknown>) => {
    const file = folder(name);
    writeFileSync(file, JSON.stringify(settings));
    return file;
  };

  it("takes each setting from the flag, else the environment, else the config file", async () => {
    const file = configFile("server.json", { ARTIFACTD_DATA_DIR: folder("from-file") });
    // Flag over environment over file.
    ok(
      await cli(["token", "create", "--tenant", "acme", "--json", "--config", file, "--data-dir", folder("from-flag")], {
        ARTIFACTD_DATA_DIR: folder("from-env"),
      }),
    );
    expect([existsSync(folder("from-flag/pglite")), existsSync(folder("from-env")), existsSync(folder("from-file"))]).toEqual([true, false, false]);
    // Environment over file.
    ok(await cli(["token", "create", "--tenant", "acme", "--config", file], { ARTIFACTD_DATA_DIR: folder("from-env") }));
    expect([existsSync(folder("from-env/pglite")), existsSync(folder("from-file"))]).toEqual([true, false]);
    // The file, named by ARTIFACTD_SERVER_CONFIG, when nothing else says.
    ok(await cli(["token", "create", "--tenant", "acme"], { ARTIFACTD_SERVER_CONFIG: file }));
    expect(existsSync(folder("from-file/pglite"))).toBe(true);
  });

  it("creates, lists and revokes tokens; the secret is shown once and never listed", async () => {
    const dataDir = ["--data-dir", folder("tokens")];
    const created = JSON.parse(ok(await cli(["token", "create", "--tenant", "acme", "--name", "ci", "--json", ...dataDir]))) as {
      id: string;
      tenant: string;
      token: string;
    };
    expect(created.tenant).toBe("acme");
    expect(created.token.length).toBeGreaterThan(20);
    ok(await cli(["token", "revoke", created.id, ...dataDir]));
    const listed = ok(await cli(["token", "list", "--tenant", "acme", "--json", ...dataDir]));
    expect(listed).not.toContain(created.token);
    const tokens = JSON.parse(listed) as { id: string; name: string; revokedAt: string | null }[];
    expect(tokens.map((t) => [t.id, t.name, typeof t.revokedAt])).toEqual([[created.id, "ci", "string"]]);
    const again = await cli(["token", "revoke", created.id, ...dataDir]);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain(`no active token with id ${created.id}`);
  });

  it("creates tokens with a scope and an expiry; read-write without --scope", async () => {
    const dataDir = ["--data-dir", folder("scoped-tokens")];
    const before = Date.now();
    const reader = JSON.parse(ok(await cli(["token", "create", "--tenant", "acme", "--scope", "read-only", "--expires-in", "12h", "--json", ...dataDir]))) as {
      scope: string;
      expiresAt: string;
    };
    expect(reader.scope).toBe("read-only");
    const expiresIn = Date.parse(reader.expiresAt) - before;
    expect(expiresIn).toBeGreaterThan(12 * 3_600_000 - 60_000);
    expect(expiresIn).toBeLessThan(12 * 3_600_000 + 60_000);
    const writer = JSON.parse(ok(await cli(["token", "create", "--tenant", "acme", "--json", ...dataDir]))) as { scope: string; expiresAt: string | null };
    expect(writer).toMatchObject({ scope: "read-write", expiresAt: null });
    const listed = ok(await cli(["token", "list", ...dataDir]));
    expect(listed).toMatch(/\tread-only\t.*\texpires 20/);
    expect(listed).toMatch(/\tread-write\t.*\tno expiry/);
  });

  it("runs as the package's bin (any Node on PATH starts it on the project's Node 24), passing exit codes through", async () => {
    const bin = path.join(ROOT, "src/cli/artifactd-bin.mjs");
    const run = (args: string[]) =>
      new Promise<Run>((resolve) => {
        const child = spawn(bin, args, { cwd: dir, env: { PATH: process.env.PATH ?? "", HOME: dir }, stdio: ["ignore", "pipe", "pipe"] });
        let stdout = "";
        let stderr = "";
        child.stdout.on("data", (d: Buffer) => (stdout += d));
        child.stderr.on("data", (d: Buffer) => (stderr += d));
        child.on("exit", (code) => resolve({ code, stdout, stderr }));
      });
    const help = await run(["--help"]);
    expect(help.code, help.stderr).toBe(0);
    expect(help.stdout).toMatch(/^usage: artifactd <command>/);
    const wrong = await run(["gc", "--bogus"]);
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toMatch(/gc: Unknown option '--bogus'/);
  });

  it.skipIf(!testsBackend("postgres+minio"))(
    "tenant set-quota overrides a tenant's quotas (on Postgres), show-quota shows them with their usage, --clear drops them",
    async () => {
      const database = await createTestDatabase();
      try {
        const env = { DATABASE_URL: database.url, ARTIFACTD_QUOTA_OPEN_SESSIONS: "7" };
        type Shown = { tenant: string; limits: Record<string, number | null>; overrides: Record<string, number>; usage: Record<string, number> };
        const args = [
          "tenant",
          "set-quota",
          "acme",
          "--stored-bytes",
          "10GiB",
          "--concurrent-uploads",
          "2",
          "--calls-per-second",
          "50",
          "--burst",
          "80",
          "--json",
        ];
        const set = JSON.parse(ok(await cli(args, env))) as Shown;
        expect(set.overrides).toEqual({ storedBytes: 10 * 1024 ** 3, concurrentUploads: 2, callsPerSecond: 50, burst: 80 });
        // The others keep the configured defaults, the environment's included.
        expect(set.limits).toEqual({
          storedBytes: 10 * 1024 ** 3,
          concurrentUploads: 2,
          concurrentDownloads: 32,
          openSessions: 7,
          callsPerSecond: 50,
          burst: 80,
        });
        expect(set.usage).toEqual({ storedBytes: 0, openSessions: 0 });
        // One override back to its default, another added; then the readable form.
        ok(await cli(["tenant", "set-quota", "acme", "--burst", "default", "--open-sessions", "3"], env));
        const text = ok(await cli(["tenant", "show-quota", "acme"], env));
        expect(text).toMatch(/stored-bytes\s+10737418240\s+\(override\)/);
        expect(text).toMatch(/burst\s+1000\s+\(default\)/);
        expect(text).toMatch(/open-sessions\s+3\s+\(override\)/);
        expect(text).toContain("usage: 0 bytes stored, 0 open upload session(s)");
        const cleared = JSON.parse(ok(await cli(["tenant", "set-quota", "acme", "--clear", "--json"], env))) as Shown;
        expect(cleared.overrides).toEqual({});
        expect(cleared.limits.storedBytes).toBeNull(); // unlimited
      } finally {
        await database.drop();
      }
      // Wrong calls say what is wrong, with exit code 2, before opening any store.
      const never = ["--data-dir", folder("never")];
      const badValue = await cli(["tenant", "set-quota", "acme", "--concurrent-uploads", "0", ...never]);
      expect([badValue.code, badValue.stderr]).toEqual([2, expect.stringContaining('--concurrent-uploads "0" is not valid')]);
      const badSize = await cli(["tenant", "set-quota", "acme", "--stored-bytes", "lots", ...never]);
      expect([badSize.code, badSize.stderr]).toEqual([2, expect.stringContaining('--stored-bytes "lots" is not valid')]);
      const nothing = await cli(["tenant", "set-quota", "acme", ...never]);
      expect([nothing.code, nothing.stderr]).toEqual([2, expect.stringContaining("needs either quota flags")]);
      const noTenant = await cli(["tenant", "show-quota", ...never]);
      expect([noTenant.code, noTenant.stderr]).toEqual([2, expect.stringContaining("needs the tenant id")]);
      expect(existsSync(folder("never"))).toBe(false);
    },
  );

  it("gc --dry-run --json reports what it would reclaim", async () => {
    const report = JSON.parse(ok(await cli(["gc", "--dry-run", "--json", "--data-dir", folder("gc")]))) as Record<string, number>;
    expect(report).toMatchObject({ expired: 0, blobs: 0, bytes: 0 });
  });

  it.skipIf(!testsBackend("postgres+minio"))(
    "gc beside a running server expires what is due, and the server's watchers hear it as from its own timer",
    async () => {
      // The server's own timer is off: only the command's pass can expire the artifact.
      const t = await startTestApp("postgres+minio", { ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0" });
      const runId = `gc-${Math.random().toString(36).slice(2)}`;
      const watcher = await openEventWatcher(t.client(), runId);
      try {
        const expiresAt = timestampFromDate(new Date(Date.now() + 1_500));
        const { artifact } = await t
          .client()
          .saveInline({ spec: { kind: "expiring", expiresAt, provenance: { runId } }, content: { case: "text", value: "due" } });
        await new Promise((resolve) => setTimeout(resolve, 2_000));
        const minio = inject("minio");
        const stores = {
          DATABASE_URL: t.databaseUrl!,
          ARTIFACTD_S3_ENDPOINT: minio.endpoint,
          ARTIFACTD_S3_ACCESS_KEY: minio.accessKey,
          ARTIFACTD_S3_SECRET_KEY: minio.secretKey,
          ARTIFACTD_S3_BUCKET: t.bucket!,
          ARTIFACTD_DATA_DIR: folder("gc-beside-a-server"),
        };
        const report = JSON.parse(ok(await cli(["gc", "--json"], stores))) as Record<string, number>;
        expect(report).toMatchObject({ expired: 1 });
        expect(await watcher.waitFor("DELETED", artifact!.id)).toMatchObject({ kind: "expiring" });
      } finally {
        await watcher.close();
        await t.close();
      }
    },
  );

  it("says what is wrong with a call, with exit code 2, before opening any store", async () => {
    const unknown = await cli(["token", "list", "--bogus", "--data-dir", folder("never")]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/token: Unknown option '--bogus'/);
    expect(unknown.stderr).toContain("artifactd --help");
    const stray = await cli(["migrate", "now", "--data-dir", folder("never")]);
    expect(stray.code).toBe(2);
    expect(stray.stderr).toContain("migrate takes no arguments, only flags (got now)");
    const badKey = await cli(["migrate", "--config", configFile("typo.json", { ARTIFACTD_LISTN: "x" }), "--data-dir", folder("never")]);
    expect(badKey.code).toBe(2);
    expect(badKey.stderr).toContain("ARTIFACTD_LISTN in the server config file");
    const badValue = await cli(["serve", "--listen", "localhost:99999", "--data-dir", folder("never")]);
    expect(badValue.code).toBe(2);
    expect(badValue.stderr).toContain("ARTIFACTD_LISTEN");
    const badScope = await cli(["token", "create", "--tenant", "acme", "--scope", "owner", "--data-dir", folder("never")]);
    expect(badScope.code).toBe(2);
    expect(badScope.stderr).toContain("--scope must be one of read-only, read-write, admin");
    const badExpiry = await cli(["token", "create", "--tenant", "acme", "--expires-in", "soon", "--data-dir", folder("never")]);
    expect(badExpiry.code).toBe(2);
    expect(badExpiry.stderr).toContain("--expires-in takes a duration such as 90s, 30m, 12h or 30d");
    const missing = await cli(["gc", "--config", folder("absent.json")]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("(from --config) does not exist");
    expect(existsSync(folder("never"))).toBe(false);
  });
});
