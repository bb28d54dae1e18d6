import { DIRECT_DOWNLOAD_UNAVAILABLE } from "@artifactd/api";
import { cors as connectCors } from "@connectrpc/connect";
import { QUOTA_EXCEEDED, RETRY_AFTER_MS } from "./connect-error-mapping.ts";
import type { HttpRequest, HttpResponse } from "./http-route.ts";

/** What CORS needs of a response: headers set now go out with whatever answers the request later. */
type CorsResponse = HttpResponse & { setHeader(name: string, value: string): unknown };

export interface CorsOptions {
  /**
   * Origins (`scheme://host[:port]`, as browsers send them in `Origin`) whose
   * pages may call the service; exact matches only. Empty: none, and the
   * server sends no CORS headers at all.
   */
  readonly allowedOrigins: readonly string[];
}

/**
 * Cross-origin calls from web apps served elsewhere (ARTIFACTD_CORS_ALLOWED_ORIGINS).
 * The lists are connect-es' own (what Connect and gRPC-Web need), plus what
 * this service adds: `authorization` for the token, `Range` for signed
 * links read in part, and the headers a page must be able to read back —
 * the signed-link route's (Content-Range, ETag, Content-Disposition, …) and
 * the refusals' metadata (retry-after-ms, quota-exceeded,
 * direct-download-unavailable).
 */
export const CORS_ALLOWED_METHODS: readonly string[] = [...connectCors.allowedMethods];
export const CORS_ALLOWED_HEADERS: readonly string[] = [...connectCors.allowedHeaders, "Authorization", "Range", "If-Range"];
export const CORS_EXPOSED_HEADERS: readonly string[] = [
  ...connectCors.exposedHeaders,
  RETRY_AFTER_MS,
  QUOTA_EXCEEDED,
  DIRECT_DOWNLOAD_UNAVAILABLE,
  "Content-Range",
  "Content-Length",
  "Content-Disposition",
  "Accept-Ranges",
  "ETag",
  "Retry-After",
];
/** How long a browser may reuse a preflight's answer, in seconds (Chromium caps it at 2 hours). */
export const CORS_MAX_AGE_SECONDS = 7200;

export interface Cors {
  /**
   * Called first for every request. A preflight (OPTIONS with
   * Access-Control-Request-Method) is answered here, before admission —
   * browsers send it without the token — and true is returned. Any other
   * request from an allowed origin gets the CORS headers set on its
   * response, to go out with whatever answers it (refusals included, so a
   * page reads why), and false is returned.
   */
  answer(request: HttpRequest, response: CorsResponse): boolean;
}

/**
 * A request from an origin that is not allowed gets no CORS header at all,
 * so the browser keeps the answer from the page; the origin is never
 * reflected unless it is on the list.
 */
export function createCors(options: CorsOptions): Cors {
  const allowed = new Set(options.allowedOrigins);
  return {
    answer(request, response) {
      if (allowed.size === 0) return false;
      const origin = request.headers.origin;
      const preflight = request.method === "OPTIONS" && request.headers["access-control-request-method"] !== undefined;
      const allowedOrigin = typeof origin === "string" && allowed.has(origin);
      // Caches must not hand one origin's answer to another.
      if (origin !== undefined) response.setHeader("Vary", "Origin");
      if (allowedOrigin) {
        response.setHeader("Access-Control-Allow-Origin", origin);
        if (!preflight) response.setHeader("Access-Control-Expose-Headers", CORS_EXPOSED_HEADERS.join(", "));
      }
      if (!preflight) return false;
      if (allowedOrigin) {
        response.writeHead(204, {
          "Access-Control-Allow-Methods": CORS_ALLOWED_METHODS.join(", "),
          "Access-Control-Allow-Headers": CORS_ALLOWED_HEADERS.join(", "),
          "Access-Control-Max-Age": String(CORS_MAX_AGE_SECONDS),
        });
        response.end();
      } else {
        response.writeHead(403, { "Content-Type": "text/plain; charset=utf-8" });
        response.end("origin not allowed (ARTIFACTD_CORS_ALLOWED_ORIGINS)\n");
      }
      return true;
    },
  };
}
