import { readFile } from "node:fs/promises";
import { mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { build } from "vite";
import { afterAll, beforeAll, expect, it } from "vitest";
import { CORS_MAX_AGE_SECONDS } from "../../src/transport/cors.ts";
import { CHROMIUM_ARGS, ensureChromium } from "../support/ensure-chromium.ts";
import { startTestApp, type TestApp } from "../support/test-app.ts";
import { describeOn } from "../support/test-backends.ts";

/**
 * A web app served from another origin calls the service through
 * @artifactd/web-client in Chromium: ./cross-origin-app, bundled by Vite and
 * served by a static server of its own on another loopback port. Its origin
 * as http://127.0.0.1:<port> is allowed (ARTIFACTD_CORS_ALLOWED_ORIGINS);
 * the same app opened as http://localhost:<port> is another origin, not
 * allowed, and the browser must refuse it every call.
 */
const REPO = path.resolve(import.meta.dirname, "../..");
const APP = path.join(import.meta.dirname, "cross-origin-app");
const TYPES: Record<string, string> = { ".html": "text/html; charset=utf-8", ".js": "text/javascript", ".wasm": "application/wasm" };

describeOn("pglite+fs")("calls from a web app on another origin (CORS) in headless Chromium", () => {
  let t: TestApp;
  let browser: Browser;
  let site: http.Server;
  let outDir: string;
  let allowedOrigin: string;
  let refusedOrigin: string;
  beforeAll(async () => {
    outDir = mkdtempSync(path.join(os.tmpdir(), "artifactd-cross-origin-"));
    const [executablePath] = await Promise.all([
      ensureChromium(),
      build({
        configFile: false,
        root: APP,
        base: "/",
        logLevel: "warn",
        resolve: { alias: { "@artifactd/web-client": path.join(REPO, "clients/web/src/index.ts") } },
        build: { outDir, emptyOutDir: true, target: "es2022", assetsInlineLimit: 0 },
        worker: { format: "es" },
      }),
    ]);
    site = http.createServer((request, response) => {
      const file = path.join(outDir, path.normalize(request.url === "/" ? "/index.html" : (request.url ?? "/")));
      readFile(file).then(
        (body) => {
          response.writeHead(200, { "Content-Type": TYPES[path.extname(file)] ?? "application/octet-stream" });
          response.end(body);
        },
        () => {
          response.writeHead(404);
          response.end();
        },
      );
    });
    await new Promise<void>((resolve) => site.listen(0, "127.0.0.1", resolve));
    const { port } = site.address() as AddressInfo;
    allowedOrigin = `http://127.0.0.1:${port}`;
    refusedOrigin = `http://localhost:${port}`;
    t = await startTestApp("pglite+fs", { ARTIFACTD_CORS_ALLOWED_ORIGINS: `https://app.example.com,${allowedOrigin}` });
    browser = await chromium.launch({ executablePath, args: CHROMIUM_ARGS, timeout: 30_000 });
  }, 600_000);
  afterAll(async () => {
    await browser?.close();
    await t?.close();
    await new Promise((resolve) => site?.close(resolve));
    if (outDir) rmSync(outDir, { recursive: true, force: true });
  });

  async function openApp(origin: string): Promise<{ page: Page; close: () => Promise<void> }> {
    const context = await browser.newContext();
    const page = await context.newPage();
    page.setDefaultTimeout(20_000);
    await page.goto(`${origin}/`);
    await page.waitForSelector("body[data-ready=true]");
    return { page, close: () => context.close() };
  }

  it("an allowed origin uploads, lists and downloads (whole and a range, reading the link's headers) and reads the server's refusals", async () => {
    const { page, close } = await openApp(allowedOrigin);
    try {
      const result = await page.evaluate(
        async ({ baseUrl, token }) => {
          type Api = {
            createWebArtifactClient(options: { baseUrl: string; token: string }): {
              uploadFile(file: Blob, spec: object): Promise<{ artifact: { id: string; sizeBytes: bigint } }>;
              list(filter: object): Promise<{ artifacts: { id: string }[] }>;
              download(id: string, options?: { offset?: number; length?: number }): Promise<Response>;
            };
            grpcWebClient(baseUrl: string, token: string): { getArtifact(request: { id: string }): Promise<unknown> };
          };
          const api = (globalThis as unknown as { crossOrigin: Api }).crossOrigin;
          const failure = (error: unknown) => ({ code: (error as { code?: number }).code, message: (error as { rawMessage?: string }).rawMessage });
          const client = api.createWebArtifactClient({ baseUrl, token });
          const bytes = Uint8Array.from({ length: 300_000 }, (_, i) => i % 251);
          const file = new File([bytes], "cross-origin.bin", { type: "application/octet-stream", lastModified: 1 });
          const { artifact } = await client.uploadFile(file, { kind: "cross-origin" });
          const { artifacts } = await client.list({ kind: "cross-origin" });
          const whole = await client.download(artifact.id);
          const wholeBytes = new Uint8Array(await whole.arrayBuffer());
          const part = await client.download(artifact.id, { offset: 1000, length: 10 });
          return {
            id: artifact.id,
            listed: artifacts.map((a) => a.id),
            sameBytes: wholeBytes.length === bytes.length && wholeBytes.every((b, i) => b === bytes[i]),
            etag: whole.headers.get("etag"),
            disposition: whole.headers.get("content-disposition"),
            contentRange: part.headers.get("content-range"),
            partBytes: Array.from(new Uint8Array(await part.arrayBuffer())),
            // Refusals are answered with the CORS headers too, so the page learns why: admission (a bad token, over
            // Connect) and a handler's error over gRPC-Web (grpc-status and grpc-message exposed).
            badToken: await api
              .createWebArtifactClient({ baseUrl, token: "adt_not-a-token" })
              .list({})
              .then(() => "succeeded", failure),
            grpcWebNotFound: await api
              .grpcWebClient(baseUrl, token)
              .getArtifact({ id: "art_00000000000000000000000000" })
              .then(() => "succeeded", failure),
          };
        },
        { baseUrl: t.url, token: t.tokens.alpha },
      );
      expect(result.listed).toEqual([result.id]);
      expect(result.sameBytes).toBe(true);
      expect(result.etag).toMatch(/^"[0-9a-f]{64}"$/);
      expect(result.disposition).toContain('filename="cross-origin.bin"');
      expect(result.contentRange).toBe("bytes 1000-1009/300000");
      expect(result.partBytes).toEqual(Array.from({ length: 10 }, (_, i) => (1000 + i) % 251));
      expect(result.badToken).toMatchObject({ code: 16 }); // UNAUTHENTICATED
      expect(result.grpcWebNotFound).toMatchObject({ code: 5, message: expect.stringContaining("art_00000000000000000000000000") }); // NOT_FOUND
    } finally {
      await close();
    }
    // The preflight the browser sent: answered without a token, cached for a while.
    const preflight = await fetch(`${t.url}/artifacts.v1.ArtifactService/ListArtifacts`, {
      method: "OPTIONS",
      headers: { origin: allowedOrigin, "access-control-request-method": "POST", "access-control-request-headers": "authorization,content-type" },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get("access-control-allow-origin")).toBe(allowedOrigin);
    expect(preflight.headers.get("access-control-allow-headers")?.toLowerCase()).toContain("authorization");
    expect(preflight.headers.get("access-control-max-age")).toBe(String(CORS_MAX_AGE_SECONDS));
    expect(preflight.headers.get("vary")).toBe("Origin");
  });

  it("an origin not allowed is refused: its calls fail in the page, and the server sent it no Access-Control-Allow-Origin", async () => {
    const saved = (await t.client().saveInline({ spec: { kind: "not-for-others" }, content: { case: "text", value: "x" } })).artifact!;
    const { url: link } = await t.client().createDownloadUrl({ id: saved.id });
    const { page, close } = await openApp(refusedOrigin);
    try {
      const outcome = await page.evaluate(
        async ({ baseUrl, token, link }) => {
          type Api = { createWebArtifactClient(options: { baseUrl: string; token: string }): { list(filter: object): Promise<unknown> } };
          const api = (globalThis as unknown as { crossOrigin: Api }).crossOrigin;
          const failed = (error: unknown) => `failed: ${String(error)}`;
          return {
            list: await api
              .createWebArtifactClient({ baseUrl, token })
              .list({})
              .then(() => "succeeded", failed),
            link: await fetch(link).then(() => "succeeded", failed),
          };
        },
        { baseUrl: t.url, token: t.tokens.alpha, link },
      );
      expect(outcome.list).toMatch(/^failed: .*Failed to fetch/);
      expect(outcome.link).toMatch(/^failed: .*Failed to fetch/);
    } finally {
      await close();
    }
    const preflight = await fetch(`${t.url}/artifacts.v1.ArtifactService/ListArtifacts`, {
      method: "OPTIONS",
      headers: { origin: refusedOrigin, "access-control-request-method": "POST", "access-control-request-headers": "authorization,content-type" },
    });
    expect(preflight.status).toBe(403);
    expect(preflight.headers.get("access-control-allow-origin")).toBeNull();
    // Nor on an answer itself (a simple request needs no preflight): the browser keeps it from the page.
    const answer = await fetch(link, { headers: { origin: refusedOrigin } });
    expect(answer.status).toBe(200);
    expect(answer.headers.get("access-control-allow-origin")).toBeNull();
    // The link's own Vary (its disposition depends on Fetch Metadata) keeps the one CORS set.
    expect(answer.headers.get("vary")).toBe("Origin, Sec-Fetch-Dest, Sec-Fetch-Site");
    await answer.body?.cancel();
  });
});
