import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createServiceProcess, type ServiceProcess } from "../support/service-process.ts";
import { BACKENDS, startTestApp, type Backend, type TestApp } from "../support/test-app.ts";
import { describeOn } from "../support/test-backends.ts";

/**
 * Download-link keys as an operator rotates them: the server makes its key
 * file on first start; `artifactd url-keys rotate` (the real command, run on
 * the data folder between restarts) puts a new key first; after a restart
 * new links are signed with it and links signed with the old key still
 * work; after `url-keys retire <old>` and a restart the old links are
 * refused. And ARTIFACTD_PUBLIC_URL: links are made on that base URL, and
 * what follows the base is a link the server itself serves.
 */

/** A link's path and query, fetched from the server at `baseUrl`: status and body. */
async function follow(baseUrl: string, link: string): Promise<{ status: number; body: string }> {
  const { pathname, search } = new URL(link);
  const response = await fetch(`${baseUrl}${pathname}${search}`);
  return { status: response.status, body: await response.text() };
}
const keyIdOf = (link: string) => new URL(link).searchParams.get("key_id");

// The key file lives in the data folder whatever the stores are: one backend is enough, and the quicker to restart.
describeOn("postgres+minio").each<Backend>(["postgres+minio"])("rotating download-link keys with artifactd url-keys, on %s", (backend) => {
  let dataDir: string;
  /** The CLI on the server's data folder (never started as a server here). */
  let cli: ServiceProcess;
  const apps: TestApp[] = [];
  beforeAll(async () => {
    dataDir = mkdtempSync(path.join(os.tmpdir(), "artifactd-url-key-rotation-"));
    cli = await createServiceProcess({ env: { ARTIFACTD_DATA_DIR: dataDir }, logFile: path.join(dataDir, "cli.log") });
  });
  afterAll(async () => {
    for (const app of apps.splice(0).reverse()) await app.close();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  /** A server on the same data folder (key file, embedded database) and, on postgres+minio, the first one's database and bucket. */
  const start = async () => {
    const first = apps[0];
    const app = await startTestApp(backend, {
      ARTIFACTD_DATA_DIR: dataDir,
      ...(first?.databaseUrl ? { DATABASE_URL: first.databaseUrl, ARTIFACTD_S3_BUCKET: first.bucket! } : {}),
    });
    apps.push(app);
    return app;
  };
  const urlKeys = async (args: string[]) => {
    const result = await cli.runCommand(["url-keys", ...args]);
    expect(result.code, result.stderr).toBe(0);
    return result.stdout;
  };

  it("keeps old links working after rotate and restart, signs new ones with the new key, and refuses the old key's once retired", async () => {
    const first = await start();
    const { artifact } = await first.client().saveInline({ spec: { kind: "note" }, content: { case: "text", value: "rotating" } });
    const oldLink = (await first.client().createDownloadUrl({ id: artifact!.id })).url;
    const oldKey = keyIdOf(oldLink);
    expect(JSON.parse(await urlKeys(["list", "--json"])).keys).toEqual([{ id: oldKey, signs: true }]);
    await first.closeApp();

    const newKey = (JSON.parse(await urlKeys(["rotate", "--json"])) as { id: string }).id;
    expect(newKey).not.toBe(oldKey);
    const rotated = await start();
    const newLink = (await rotated.client().createDownloadUrl({ id: artifact!.id })).url;
    expect(keyIdOf(newLink)).toBe(newKey);
    expect(await follow(rotated.url, oldLink)).toEqual({ status: 200, body: "rotating" });
    expect(await follow(rotated.url, newLink)).toEqual({ status: 200, body: "rotating" });
    await rotated.closeApp();

    await urlKeys(["retire", oldKey!]);
    const retired = await start();
    expect(await follow(retired.url, oldLink)).toEqual({ status: 403, body: "forbidden\n" });
    expect(await follow(retired.url, newLink)).toEqual({ status: 200, body: "rotating" });
    expect(keyIdOf((await retired.client().createDownloadUrl({ id: artifact!.id })).url)).toBe(newKey);
    // Four processes and three server starts on a busy two-core machine.
  }, 120_000);
});

describe.each(BACKENDS)("ARTIFACTD_PUBLIC_URL on %s", (backend) => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp(backend, { ARTIFACTD_PUBLIC_URL: "https://artifacts.example.com/store/" });
  });
  afterAll(async () => {
    await t?.close();
  });

  it("makes download links on the public base URL, whatever host the client called, which the server serves below that base", async () => {
    const { artifact } = await t.client().saveInline({ spec: { kind: "note" }, content: { case: "text", value: "public" } });
    const { url } = await t.client().createDownloadUrl({ id: artifact!.id });
    expect(url).toMatch(new RegExp(`^https://artifacts\\.example\\.com/store/download/v1/alpha/${artifact!.id}\\?expires=`));
    expect(url).not.toContain(new URL(t.url).host);
    // A proxy at the public URL passes on what follows /store.
    const behindTheProxy = url.replace("https://artifacts.example.com/store", t.url);
    const response = await fetch(behindTheProxy);
    expect({ status: response.status, body: await response.text() }).toEqual({ status: 200, body: "public" });
  });
});
