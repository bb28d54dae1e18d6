import type http from "node:http";

/**
 * A plain HTTP handler next to the RPCs on the same port (signed downloads,
 * the web page), written against what HTTP/1.1 and HTTP/2 compatibility
 * requests and responses have in common.
 */
export interface HttpRequest {
  readonly method?: string | undefined;
  readonly url?: string | undefined;
  readonly headers: http.IncomingHttpHeaders;
}

export interface HttpResponse {
  readonly headersSent: boolean;
  writeHead(status: number, headers?: Record<string, string>): unknown;
  end(data?: string | Uint8Array): unknown;
  on(event: "close", listener: () => void): unknown;
  /** A header set before the route ran (CORS's Vary, say); both Node responses have it. */
  getHeader?(name: string): number | string | string[] | undefined;
  /** HTTP/2 */
  readonly stream?: { destroy(): void } | undefined;
  /** HTTP/1.1 */
  readonly socket?: { destroy(): void } | null | undefined;
}

/** Answers true when it handled the request. */
export type HttpRoute = (request: HttpRequest, response: HttpResponse) => Promise<boolean>;
