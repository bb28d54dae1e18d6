import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium, type Browser, type BrowserContextOptions, type Locator, type Page } from "playwright-core";
import { afterAll, beforeAll, expect } from "vitest";
import { WEB_PAGE_CSP } from "../../src/transport/web-page-route.ts";
import { CHROMIUM_ARGS, ensureChromium } from "../support/ensure-chromium.ts";
import { startTestApp, type TestApp } from "../support/test-app.ts";
import { ensureWebBuild } from "./web-build.ts";

const SCREENSHOTS = fileURLToPath(new URL("../../docs/screenshots/", import.meta.url));
const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

export interface OpenedPage {
  readonly page: Page;
  /** Page errors, CSP reports, dialogs (dismissed) and, unless downloads are accepted, downloads: each one a test should not see. */
  readonly problems: string[];
  close(): Promise<void>;
}

export interface PageUnderTest {
  /** The service on Postgres and MinIO, its maintenance off. */
  readonly t: TestApp;
  readonly browser: Browser;
  /** A temporary folder of the suite's, removed after it. */
  readonly dir: string;
  /** A new browser profile with the page open and `token` (alpha's by default) saved. */
  openPage(options?: { token?: string; context?: BrowserContextOptions }): Promise<OpenedPage>;
  /**
   * An element screenshot, checked to be a PNG with something drawn, written
   * to docs/screenshots when ARTIFACTD_UPDATE_SCREENSHOTS=1 (to be
   * committed for the README), else to the suite's temporary folder.
   */
  screenshot(element: Locator, name: string): Promise<void>;
}

/**
 * The page the service serves, in headless Chromium, for one describe
 * block: registers the beforeAll that starts the service, builds the page
 * and launches the browser, and the afterAll that stops them. The fields
 * are read once the suite runs.
 */
export function usePageUnderTest(): PageUnderTest {
  let t: TestApp | undefined;
  let browser: Browser | undefined;
  let dir: string | undefined;
  beforeAll(async () => {
    const [executablePath] = await Promise.all([ensureChromium(), ensureWebBuild()]);
    t = await startTestApp("postgres+minio", { ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0" });
    browser = await chromium.launch({ executablePath, args: CHROMIUM_ARGS, timeout: 30_000 });
    dir = mkdtempSync(path.join(os.tmpdir(), "artifactd-browser-"));
  }, 600_000);
  afterAll(async () => {
    await browser?.close();
    await t?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  const started = <T>(value: T | undefined, what: string): T => {
    if (value === undefined) throw new Error(`${what} is not started: use it inside the suite's tests`);
    return value;
  };

  return {
    get t() {
      return started(t, "the service");
    },
    get browser() {
      return started(browser, "the browser");
    },
    get dir() {
      return started(dir, "the temporary folder");
    },

    async openPage(options = {}) {
      const app = started(t, "the service");
      const context = await started(browser, "the browser").newContext(options.context ?? { viewport: { width: 1200, height: 900 } });
      const page = await context.newPage();
      page.setDefaultTimeout(20_000);
      const problems: string[] = [];
      page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
      page.on("console", (message) => {
        if (message.type() === "error" && /Content.Security.Policy|Refused to/i.test(message.text())) problems.push(`CSP: ${message.text()}`);
      });
      page.on("dialog", (dialog) => {
        problems.push(`dialog: ${dialog.message()}`);
        void dialog.dismiss();
      });
      if (!options.context?.acceptDownloads) page.on("download", (download) => problems.push(`download: ${download.suggestedFilename()}`));
      const response = await page.goto(`${app.url}/`);
      expect(response?.status()).toBe(200);
      expect(response?.headers()["content-security-policy"]).toBe(WEB_PAGE_CSP);
      await page.fill("#token", options.token ?? app.tokens.alpha);
      await page.click("#token-form button[type=submit]");
      return { page, problems, close: () => context.close() };
    },

    async screenshot(element, name) {
      const target = process.env.ARTIFACTD_UPDATE_SCREENSHOTS === "1" ? SCREENSHOTS : started(dir, "the temporary folder");
      mkdirSync(target, { recursive: true });
      const png = await element.screenshot({ animations: "disabled" });
      expect(png.subarray(0, 8).equals(PNG_SIGNATURE)).toBe(true);
      // A blank element of this size compresses to well under this.
      expect(png.length).toBeGreaterThan(2_000);
      writeFileSync(path.join(target, name), png);
    },
  };
}
