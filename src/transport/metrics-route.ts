import http from "node:http";
import type net from "node:net";
import type { Metrics } from "../observability/metrics.ts";
import type { HttpRequest, HttpResponse, HttpRoute } from "./http-route.ts";
import { METRICS_PATH } from "./routes.ts";

/**
 * GET /metrics: every series in Prometheus' text format. No token: a
 * scraper has none, and what it reads is the operator's (counts,
 * durations, pool sizes; tenant ids only with
 * ARTIFACTD_METRICS_TENANT_LABELS). So on the service's own port it is
 * open to whoever reaches the port: in production serve it on an address
 * of its own (ARTIFACTD_METRICS_LISTEN) or keep /metrics from the outside
 * at the proxy.
 */
export function createMetricsRoute(metrics: Metrics): HttpRoute {
  return async (request: HttpRequest, response: HttpResponse) => {
    if (new URL(request.url ?? "/", "http://localhost").pathname !== METRICS_PATH) return false;
    if (request.method !== "GET" && request.method !== "HEAD") {
      response.writeHead(405, { Allow: "GET, HEAD", "Content-Type": "text/plain; charset=utf-8" });
      response.end("method not allowed\n");
      return true;
    }
    const { contentType, body } = await metrics.render();
    response.writeHead(200, { "Content-Type": contentType, "Cache-Control": "no-store" });
    response.end(request.method === "HEAD" ? undefined : body);
    return true;
  };
}

export interface MetricsServer {
  /** http://host:port */
  readonly url: string;
  close(): Promise<void>;
}

/** /metrics alone, on an address of its own (ARTIFACTD_METRICS_LISTEN): plain HTTP/1.1, anything else 404. */
export async function startMetricsServer(metrics: Metrics, address: { readonly host: string; readonly port: number }): Promise<MetricsServer> {
  const route = createMetricsRoute(metrics);
  const server = http.createServer((request, response) => {
    route(request, response).then(
      (handled) => {
        if (handled) return;
        response.writeHead(404, { "Content-Type": "text/plain; charset=utf-8" });
        response.end("not found: metrics are at /metrics\n");
      },
      () => {
        if (!response.headersSent) response.writeHead(500);
        response.end();
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(address.port, address.host, () => resolve());
  });
  const bound = server.address() as net.AddressInfo;
  const host = bound.family === "IPv6" ? `[${bound.address}]` : bound.address;
  return {
    url: `http://${host}:${bound.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
