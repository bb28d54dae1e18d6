import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { promisify } from "node:util";

const run = promisify(execFile);

/** Debian's Chromium, which the browser tests drive through playwright-core (no browser download of its own). */
export const CHROMIUM_PATH = "/usr/bin/chromium";

/** Flags for a quiet headless Chromium on a machine without a display, sandbox or outside network. */
export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-quic",
  "--no-first-run",
  "--disable-component-update",
  "--disable-sync",
];

/**
 * Makes sure Chromium is installed, installing Debian's package when it is
 * missing and we are root (a fresh CI machine); anyone else gets a message
 * saying what to install. Returns the executable's path.
 */
export async function ensureChromium(log: (line: string) => void = console.log): Promise<string> {
  if (existsSync(CHROMIUM_PATH)) return CHROMIUM_PATH;
  if (process.platform !== "linux" || process.getuid?.() !== 0 || !existsSync("/usr/bin/apt-get")) {
    throw new Error(`the browser tests need Chromium at ${CHROMIUM_PATH}: install it (Debian/Ubuntu: sudo apt-get install -y chromium) and run the tests again`);
  }
  log(`Chromium is missing: installing Debian's package (apt-get install -y chromium)…`);
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  const install = () => run("apt-get", ["install", "-y", "chromium"], { env, maxBuffer: 64 * 1024 * 1024 });
  try {
    await install();
  } catch {
    // The package lists may be missing or stale on a fresh machine.
    await run("apt-get", ["update"], { env, maxBuffer: 64 * 1024 * 1024 });
    try {
      await install();
    } catch (error) {
      const stderr = (error as { stderr?: string }).stderr ?? "";
      throw new Error(`installing Chromium with apt-get failed: ${stderr.trim().split("\n").slice(-5).join("\n") || String(error)}`);
    }
  }
  if (!existsSync(CHROMIUM_PATH)) throw new Error(`apt-get installed chromium, but ${CHROMIUM_PATH} is still missing`);
  return CHROMIUM_PATH;
}
