import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it, vi } from "vitest";
import { createServiceProcess } from "../support/service-process.ts";
import { startTestApp } from "../support/test-app.ts";
import { testsBackend } from "../support/test-backends.ts";

/**
 * The data folder holds the embedded database, local blobs and an admin
 * token: owner-only, even when an earlier version (or a deployment script)
 * left it and its contents world-readable.
 */
describe("the data folder's permissions", () => {
  const root = mkdtempSync(path.join(os.tmpdir(), "artifactd-perms-"));
  afterAll(() => rmSync(root, { recursive: true, force: true }));
  const dataDir = path.join(root, "data");
  const tokenFile = path.join(dataDir, "bootstrap-token");
  const mode = (file: string) => statSync(file).mode & 0o777;
  const widen = () => {
    for (const dir of [dataDir, path.join(dataDir, "pglite"), path.join(dataDir, "blobs"), path.join(dataDir, "blobs", "blobs")]) {
      mkdirSync(dir, { recursive: true });
      chmodSync(dir, 0o755);
    }
  };
  const expectPrivate = () => {
    expect(mode(dataDir).toString(8)).toBe("700");
    expect(mode(path.join(dataDir, "pglite")).toString(8)).toBe("700");
    expect(mode(path.join(dataDir, "blobs")).toString(8)).toBe("700");
    expect(mode(path.join(dataDir, "blobs", "blobs")).toString(8)).toBe("700");
    expect(mode(tokenFile).toString(8)).toBe("600");
    expect(mode(path.join(dataDir, "url-signing-keys")).toString(8)).toBe("600");
  };

  it("are 0700 for folders and 0600 for the bootstrap token after start, whatever existed before", async () => {
    widen();
    // A token file left world-readable by something before: replaced by the first run's token, owner-only.
    writeFileSync(tokenFile, "stale\n", { mode: 0o644 });
    chmodSync(tokenFile, 0o644);
    const service = await createServiceProcess({ env: { DATABASE_URL: "", ARTIFACTD_DATA_DIR: dataDir }, logFile: path.join(root, "service.log") });
    await service.start();
    try {
      // The token is written just after the server starts answering.
      await vi.waitFor(() => expect(readFileSync(tokenFile, "utf8")).toMatch(/^adt_/), { timeout: 10_000 });
      expectPrivate();
    } finally {
      await service.stop();
    }

    // A later start, with tokens already made (so none is written), narrows what was widened in between.
    widen();
    chmodSync(tokenFile, 0o644);
    chmodSync(path.join(dataDir, "url-signing-keys"), 0o644);
    const token = readFileSync(tokenFile, "utf8");
    await service.start();
    try {
      await vi.waitFor(expectPrivate, { timeout: 10_000 });
      expect(readFileSync(tokenFile, "utf8")).toBe(token);
    } finally {
      await service.stop();
    }
  });

  it.skipIf(!testsBackend("postgres+minio"))(
    "are 0700 for the folder and 0600 for the key file on Postgres and S3 too, where the folder holds only the download-link keys",
    async () => {
      const keysOnly = path.join(root, "keys-only");
      mkdirSync(keysOnly, { mode: 0o755 });
      chmodSync(keysOnly, 0o755);
      const t = await startTestApp("postgres+minio", { ARTIFACTD_DATA_DIR: keysOnly });
      try {
        expect(mode(keysOnly).toString(8)).toBe("700");
        expect(mode(path.join(keysOnly, "url-signing-keys")).toString(8)).toBe("600");
      } finally {
        await t.close();
      }
    },
  );
});
