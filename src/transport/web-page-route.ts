import { readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { HttpRequest, HttpResponse, HttpRoute } from "./http-route.ts";

export interface WebPageRouteOptions {
  /** The built page (index.html and assets/); clients/web/dist by default, made by `npm run build:web`. */
  readonly root?: string;
}

export const DEFAULT_WEB_ROOT = fileURLToPath(new URL("../../clients/web/dist/", import.meta.url));

/**
 * What the page may do: its own scripts and styles only (no inline code),
 * WebAssembly for BLAKE3 ('wasm-unsafe-eval' allows compiling wasm, not
 * eval), its own worker, calls and images on its own origin, audio and
 * video from its own origin (signed links), and frames of its own origin
 * only (the PDF preview, on a signed link answered under a CSP sandbox). No
 * plugins of its own (object-src falls back to 'none'), forms posting
 * elsewhere, or <base> tricks.
 */
export const WEB_PAGE_CSP = [
  "default-src 'none'",
  "script-src 'self' 'wasm-unsafe-eval'",
  "worker-src 'self'",
  "connect-src 'self'",
  "img-src 'self' data:",
  "media-src 'self'",
  "frame-src 'self'",
  "style-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".map": "application/json",
  ".wasm": "application/wasm",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".woff2": "font/woff2",
};

/** Vite's output names: one path segment of these characters, with an extension. */
const ASSET_NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]*\.[a-z0-9]+$/;

/**
 * The web page at "/" and its files at "/assets/<name>" (GET and HEAD),
 * read from the built folder on each request, so a build made while the
 * server runs is served at once. Asset names carry a content hash and are
 * cached for a year; index.html is revalidated every time.
 *
 * Only single-segment names of known types under assets/ are served, so no
 * path can leave the folder. Every response is `nosniff` under a strict CSP.
 * Without a build the route answers 404 saying how to make one.
 */
export function createWebPageRoute(options: WebPageRouteOptions = {}): HttpRoute {
  const root = path.resolve(options.root ?? DEFAULT_WEB_ROOT);
  const assets = path.join(root, "assets");
  return async function route(request: HttpRequest, response: HttpResponse): Promise<boolean> {
    const pathname = new URL(request.url ?? "/", "http://localhost").pathname;
    let file: string;
    if (pathname === "/" || pathname === "/index.html") {
      file = path.join(root, "index.html");
    } else if (pathname.startsWith("/assets/")) {
      let name: string;
      try {
        name = decodeURIComponent(pathname.slice("/assets/".length));
      } catch {
        name = "";
      }
      if (!ASSET_NAME.test(name) || !(path.extname(name) in CONTENT_TYPES)) {
        plain(response, 404, "not found");
        return true;
      }
      file = path.join(assets, name);
      // Defence in depth: the name pattern already keeps it inside.
      if (path.dirname(file) !== assets) {
        plain(response, 404, "not found");
        return true;
      }
    } else {
      return false;
    }
    if (request.method !== "GET" && request.method !== "HEAD") {
      plain(response, 405, "method not allowed", { Allow: "GET, HEAD" });
      return true;
    }
    let body: Buffer;
    try {
      body = await readFile(file);
    } catch (error) {
      if (!isMissing(error)) throw error;
      const built = await readFile(path.join(root, "index.html")).then(
        () => true,
        () => false,
      );
      plain(response, 404, built ? "not found" : `the web page is not built: run \`npm run build:web\` (it writes ${root})`);
      return true;
    }
    const isIndex = path.basename(file) === "index.html" && path.dirname(file) === root;
    response.writeHead(200, {
      ...SECURITY_HEADERS,
      "Content-Type": CONTENT_TYPES[path.extname(file)]!,
      "Content-Length": String(body.byteLength),
      "Cache-Control": isIndex ? "no-cache" : "public, max-age=31536000, immutable",
    });
    response.end(request.method === "HEAD" ? undefined : body);
    return true;
  };
}

const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  "Content-Security-Policy": WEB_PAGE_CSP,
  "X-Content-Type-Options": "nosniff",
  "Referrer-Policy": "no-referrer",
  "X-Frame-Options": "DENY",
  "Cross-Origin-Opener-Policy": "same-origin",
  "Cross-Origin-Resource-Policy": "same-origin",
};

function plain(response: HttpResponse, status: number, text: string, extra: Record<string, string> = {}): void {
  response.writeHead(status, { ...SECURITY_HEADERS, "Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store", ...extra });
  response.end(`${text}\n`);
}

function isMissing(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === "ENOENT" || code === "ENOTDIR" || code === "EISDIR";
}
