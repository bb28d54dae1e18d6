import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { HttpResponse } from "../../src/transport/http-route.ts";
import { createWebPageRoute, WEB_PAGE_CSP } from "../../src/transport/web-page-route.ts";

/** The static route on a real HTTP server and a real temporary folder; requests it declines answer 418 here. */
describe("the web page route", () => {
  let dir: string;
  let root: string;
  let base: string;
  let server: http.Server;
  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "artifactd-web-route-"));
    root = path.join(dir, "dist");
    // Next to the served folder: must never be reachable.
    writeFileSync(path.join(dir, "secret.js"), "secret");
    const route = createWebPageRoute({ root });
    server = http.createServer((request, response) => {
      route(request, response as unknown as HttpResponse).then((handled) => {
        if (!handled) {
          response.writeHead(418);
          response.end();
        }
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise((resolve) => server?.close(resolve));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("says how to build the page when it is not built", async () => {
    const response = await fetch(`${base}/`);
    expect(response.status).toBe(404);
    expect(await response.text()).toContain("npm run build:web");
    expect(response.headers.get("x-content-type-options")).toBe("nosniff");
  });

  it("serves index.html and hashed assets with their types, nosniff and the CSP", async () => {
    mkdirSync(path.join(root, "assets"), { recursive: true });
    writeFileSync(path.join(root, "index.html"), "<!doctype html><title>t</title>");
    writeFileSync(path.join(root, "assets", "index-AbC_12-x.js"), "export {};");
    writeFileSync(path.join(root, "assets", "index-Q1.css"), "body{}");
    writeFileSync(path.join(root, "assets", "notes.txt"), "not a page type");

    const page = await fetch(`${base}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toBe("text/html; charset=utf-8");
    expect(page.headers.get("content-security-policy")).toBe(WEB_PAGE_CSP);
    expect(WEB_PAGE_CSP).toContain("default-src 'none'");
    expect(WEB_PAGE_CSP).not.toContain("unsafe-inline");
    expect(page.headers.get("x-content-type-options")).toBe("nosniff");
    expect(page.headers.get("cache-control")).toBe("no-cache");
    expect(await page.text()).toBe("<!doctype html><title>t</title>");

    const script = await fetch(`${base}/assets/index-AbC_12-x.js`);
    expect(script.headers.get("content-type")).toBe("text/javascript; charset=utf-8");
    expect(script.headers.get("cache-control")).toContain("immutable");
    expect(script.headers.get("content-security-policy")).toBe(WEB_PAGE_CSP);
    expect(await script.text()).toBe("export {};");
    expect((await fetch(`${base}/assets/index-Q1.css`)).headers.get("content-type")).toBe("text/css; charset=utf-8");

    const head = await fetch(`${base}/assets/index-Q1.css`, { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(head.headers.get("content-length")).toBe("6");
    expect(await head.text()).toBe("");
    const post = await fetch(`${base}/`, { method: "POST" });
    expect(post.status).toBe(405);
    await post.arrayBuffer();
  });

  it("serves nothing outside the assets folder, nor unknown types", async () => {
    for (const target of [
      "/assets/..%2fsecret.js",
      "/assets/..%2f..%2fsecret.js",
      "/assets/%2e%2e%2fsecret.js",
      "/assets/..%5csecret.js",
      "/assets/%00.js",
      "/assets/sub/index-AbC_12-x.js",
      "/assets/.hidden.js",
      "/assets/notes.txt",
      "/assets/missing-1.js",
      "/assets/",
    ]) {
      const response = await fetch(`${base}${target}`);
      expect(response.status, target).toBe(404);
      expect(await response.text(), target).not.toContain("secret");
    }
    // Not the route's paths at all (the URL parser resolves dot segments first).
    for (const target of ["/secret.js", "/assets/../secret.js", "/other"]) {
      const response = await fetch(`${base}${target}`);
      expect(response.status, target).toBe(418);
      await response.arrayBuffer();
    }
  });
});
