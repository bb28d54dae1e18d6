import { execFile } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const run = promisify(execFile);
const repo = fileURLToPath(new URL("../../", import.meta.url));
const web = path.join(repo, "clients/web");
/** The workspace package the page imports the API from (generated code and shared contract facts). */
const api = path.join(repo, "clients/api");

/**
 * Builds the web page (`npm run build:web`) unless clients/web/dist is newer
 * than every source file (its own and @artifactd/api's): `npm test` builds it first, but a bare
 * `npx vitest run` may find it missing or stale.
 */
export async function ensureWebBuild(): Promise<void> {
  const built = mtime(path.join(web, "dist/index.html"));
  const sources = [
    path.join(web, "index.html"),
    path.join(web, "vite.config.ts"),
    ...files(path.join(web, "src")),
    ...files(path.join(api, "gen")),
    ...files(path.join(api, "src")),
  ];
  if (built !== undefined && sources.every((file) => (mtime(file) ?? 0) <= built)) return;
  const vite = path.join(repo, "node_modules/vite/bin/vite.js");
  await run(process.execPath, [vite, "build", "--config", path.join(web, "vite.config.ts")], { cwd: repo, maxBuffer: 16 * 1024 * 1024 });
}

function mtime(file: string): number | undefined {
  try {
    return statSync(file).mtimeMs;
  } catch {
    return undefined;
  }
}

function files(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile())
    .map((entry) => path.join(entry.parentPath, entry.name));
}
