import { pipeline } from "node:stream/promises";
import { Readable } from "node:stream";
import type { Caller } from "../artifact.ts";
import { ArtifactError } from "../artifact-error.ts";
import type { ArtifactService } from "../service/artifact-service.ts";
import type { ContentMessage } from "../service/download-artifact.ts";
import { DOWNLOAD_PATH_PREFIX, type UrlSigner } from "../service/download-urls.ts";
import { observedCall } from "./call-observation.ts";
import type { HttpRequest, HttpResponse, HttpRoute } from "./http-route.ts";

type Request = HttpRequest;
type Response = HttpResponse;

/**
 * Plain HTTP GET / HEAD for signed download links (service/download-urls.ts).
 *
 * Content is an attachment (`Content-Disposition: attachment`,
 * `X-Content-Type-Options: nosniff` and a sandboxing CSP), so uploaded HTML
 * or SVG never renders in the service's origin. The one exception is a PDF
 * asked for by a frame of the same origin (`Sec-Fetch-Dest: iframe` and
 * `Sec-Fetch-Site: same-origin`, as the web page's preview asks): it is
 * answered inline, still under the sandboxing CSP and only frameable by the
 * service's own pages, so the browser's PDF viewer shows it. Audio and video
 * need no exception: media elements ignore the disposition. One byte range per request
 * (`Range: bytes=…`, 206 / 416); the ETag is the BLAKE3 digest. A bad,
 * tampered, non-canonical or expired link, one whose token is revoked or
 * expired, or an artifact that is gone, answers a bare 403 that tells
 * nothing more. While a store does not answer, a link is answered 503 with
 * Retry-After: that says nothing about the link.
 */
export interface DownloadUrlRouteOptions {
  readonly service: ArtifactService;
  readonly signer: UrlSigner;
  /**
   * Whether the token a link was made with may still be used (not revoked,
   * not expired). Asked on every request whose signature checks out, so a
   * cached answer bounds how long a revoked token's links keep working.
   */
  readonly isTokenActive: (tokenId: string) => Promise<boolean>;
  /** Cuts a download under way when the link's token is revoked or expires (within the same bound). */
  readonly watchCaller?: (caller: Caller) => { readonly signal: AbortSignal; release(): void };
}

export function createDownloadUrlRoute({ service, signer, isTokenActive, watchCaller }: DownloadUrlRouteOptions): HttpRoute {
  return async function route(request: Request, response: Response): Promise<boolean> {
    const target = request.url ?? "/";
    const url = new URL(target, "http://localhost");
    if (!url.pathname.startsWith(DOWNLOAD_PATH_PREFIX)) return false;
    if (request.method !== "GET" && request.method !== "HEAD") {
      plain(response, 405, "method not allowed", { Allow: "GET, HEAD" });
      return true;
    }
    // The target as received, not as URL parsing normalises it: only the canonical spelling is valid.
    const link = signer.verify(target, Math.floor(Date.now() / 1000));
    if (!link) {
      plain(response, 403, "forbidden");
      return true;
    }
    let active: boolean;
    try {
      active = await isTokenActive(link.tokenId);
    } catch {
      // The token store did not answer: that says nothing about the link, so ask the client to retry.
      unavailable(response);
      return true;
    }
    if (!active) {
      plain(response, 403, "forbidden");
      return true;
    }
    const caller: Caller = { tenantId: link.tenantId, principal: "signed-url", tokenId: link.tokenId, scope: "read-only" };
    // A valid link's request is its tenant's, as an admitted call is (what observers count and log).
    const call = observedCall(request);
    if (call !== undefined) call.tenantId = link.tenantId;
    // A link's requests count toward its tenant's calls per second like the tenant's RPCs do.
    try {
      await service.admitCall(caller);
    } catch (error) {
      if (!(error instanceof ArtifactError && error.code === "resource_exhausted")) throw error;
      tooManyRequests(response, error);
      return true;
    }
    const abort = new AbortController();
    const revocation = watchCaller?.(caller);
    revocation?.signal.addEventListener("abort", () => abort.abort(), { once: true });
    response.on("close", () => {
      abort.abort();
      revocation?.release();
    });
    let head;
    try {
      head = await service.getArtifact(caller, link.artifactId, false);
    } catch (error) {
      // A store that did not answer says nothing about the link: retry, as for the token check above.
      if (isStoreUnavailable(error)) unavailable(response);
      else if (error instanceof ArtifactError) plain(response, 403, "forbidden");
      else throw error;
      return true;
    }
    if (head.deletedAt) {
      plain(response, 403, "forbidden");
      return true;
    }
    const size = head.sizeBytes;
    const etag = `"${head.blake3}"`;
    const inline = isPdf(head.mimeType) && isSameOriginFrame(request);
    const headers: Record<string, string> = {
      "Content-Type": head.mimeType || "application/octet-stream",
      "Content-Disposition": contentDisposition(inline ? "inline" : "attachment", head.name || head.id),
      "X-Content-Type-Options": "nosniff",
      "Content-Security-Policy": inline ? "default-src 'none'; sandbox; frame-ancestors 'self'" : "default-src 'none'; sandbox",
      "Accept-Ranges": "bytes",
      ETag: etag,
      "Cache-Control": "private, max-age=60",
      // The disposition depends on these: a cached inline answer must not serve a download.
      // Added to what is set already (CORS's Origin), which writeHead would otherwise replace.
      Vary: [response.getHeader?.("vary"), "Sec-Fetch-Dest, Sec-Fetch-Site"].filter((value) => typeof value === "string" && value !== "").join(", "),
    };
    if (request.headers["if-none-match"] === etag) {
      response.writeHead(304, headers);
      response.end();
      return true;
    }
    let range = { offset: 0, length: size, partial: false };
    const rangeHeader = request.headers.range;
    const ifRange = request.headers["if-range"];
    if (typeof rangeHeader === "string" && (ifRange === undefined || ifRange === etag)) {
      const parsed = parseRange(rangeHeader, size);
      if (parsed === "unsatisfiable") {
        plain(response, 416, "range not satisfiable", { "Content-Range": `bytes */${size}` });
        return true;
      }
      if (parsed) range = { ...parsed, partial: true };
    }
    let content: AsyncIterable<ContentMessage> | undefined;
    if (request.method === "GET" && range.length > 0) {
      // Started before the head goes out, so a refusal by the tenant's download quota can still say so.
      try {
        ({ content } = await service.download(caller, { id: link.artifactId, offset: range.offset, length: range.length }, abort.signal));
      } catch (error) {
        if (error instanceof ArtifactError && error.code === "resource_exhausted") tooManyRequests(response, error);
        else if (isStoreUnavailable(error)) unavailable(response);
        else destroy(response); // as when the content fails after the head: the client sees no complete body
        return true;
      }
    }
    headers["Content-Length"] = String(range.length);
    if (range.partial) headers["Content-Range"] = `bytes ${range.offset}-${range.offset + range.length - 1}/${size}`;
    response.writeHead(range.partial ? 206 : 200, headers);
    if (!content) {
      response.end();
      return true;
    }
    try {
      await pipeline(Readable.from(piecesOf(content)), response as unknown as NodeJS.WritableStream, { signal: abort.signal });
    } catch {
      // Headers are gone: cut the connection so the client sees a short body,
      // never a "complete" corrupt one (a digest mismatch ends up here too).
      destroy(response);
    }
    return true;
  };
}

function unavailable(response: Response): void {
  plain(response, 503, "service unavailable", { "Retry-After": "1" });
}

function plain(response: Response, status: number, text: string, extra: Record<string, string> = {}): void {
  response.writeHead(status, { "Content-Type": "text/plain; charset=utf-8", "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store", ...extra });
  response.end(`${text}\n`);
}

/** 429 with the quota's message and, when waiting helps, Retry-After in whole seconds. */
function tooManyRequests(response: Response, error: ArtifactError): void {
  plain(response, 429, error.message, error.retryAfterMs === undefined ? {} : { "Retry-After": String(Math.ceil(error.retryAfterMs / 1000)) });
}

function destroy(response: Response): void {
  (response.stream ?? response.socket)?.destroy();
}

/** RFC 6266: a safe ASCII fallback and the exact UTF-8 name. */
function contentDisposition(type: "attachment" | "inline", name: string): string {
  const ascii = name.replace(/[^A-Za-z0-9._ ()+-]/g, "_");
  return `${type}; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(name)}`;
}

function isPdf(mimeType: string): boolean {
  return mimeType.split(";")[0]!.trim().toLowerCase() === "application/pdf";
}

/** A frame of a page on this origin loads it (Fetch Metadata, sent by browsers and not settable by scripts). */
function isSameOriginFrame(request: Request): boolean {
  const dest = request.headers["sec-fetch-dest"];
  return (dest === "iframe" || dest === "frame") && request.headers["sec-fetch-site"] === "same-origin";
}

/**
 * One range of `bytes=a-b`, `bytes=a-` or `bytes=-n`. Several ranges or a
 * malformed header: undefined (the whole content is served, as RFC 9110
 * allows). A range that starts past the end: "unsatisfiable".
 */
export function parseRange(header: string, size: number): { offset: number; length: number } | "unsatisfiable" | undefined {
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match || (match[1] === "" && match[2] === "")) return undefined;
  if (size === 0) return "unsatisfiable";
  if (match[1] === "") {
    const suffix = Number(match[2]);
    if (suffix === 0) return "unsatisfiable";
    const length = Math.min(suffix, size);
    return { offset: size - length, length };
  }
  const start = Number(match[1]);
  const end = match[2] === "" ? size - 1 : Math.min(Number(match[2]), size - 1);
  if (start >= size) return "unsatisfiable";
  if (end < start) return undefined;
  return { offset: start, length: end - start + 1 };
}

/** A store that did not answer (adapters raise it from their drivers' errors): worth a retry. */
function isStoreUnavailable(error: unknown): boolean {
  return error instanceof ArtifactError && error.code === "unavailable";
}

/** An HTTP body has no messages: their pieces go out one by one, as read. */
async function* piecesOf(content: AsyncIterable<ContentMessage>): AsyncIterable<Uint8Array> {
  for await (const message of content) yield* message;
}
