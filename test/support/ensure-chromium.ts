import { ensureDebianPackage } from "./ensure-debian-package.ts";

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

/** Debian's Chromium, installed when missing (see ensureDebianPackage). Returns the executable's path. */
export function ensureChromium(log: (line: string) => void = console.log): Promise<string> {
  return ensureDebianPackage("chromium", CHROMIUM_PATH, log);
}
