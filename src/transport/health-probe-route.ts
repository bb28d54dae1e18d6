import { Health } from "@artifactd/api/grpc/health/v1/health_pb.js";
import type { HttpRoute } from "./http-route.ts";

/** The paths of the probes, which need no token. */
export const LIVENESS_PATH = "/healthz";
export const READINESS_PATH = "/readyz";

/**
 * Health over plain HTTP, for probes that speak no gRPC (Kubernetes
 * httpGet, load balancers, curl):
 *
 * - `/healthz`, liveness: 200 while the process runs and can answer, during
 *   a graceful shutdown too. Restarting a process that is draining its
 *   calls, or one whose database is down, would help nothing: liveness says
 *   only that this process is not stuck.
 * - `/readyz`, readiness: 200 when the server can do its work (the stores
 *   answer, the schema is migrated, it is not shutting down); otherwise 503
 *   with a short JSON body naming what is lacking, e.g.
 *   `{"ready":false,"unready":{"blob store":"unreachable or not answering"}}`.
 *
 * Both read state kept by the server (./readiness-checks.ts, refreshed
 * every few seconds), so a probe costs no database or store round trip.
 * GET and HEAD only; never cached.
 */
export function createHealthProbeRoute(unready: () => Readonly<Record<string, string>>): HttpRoute {
  return async (request, response) => {
    const path = (request.url ?? "").split("?")[0];
    if (path !== LIVENESS_PATH && path !== READINESS_PATH) return false;
    const headers = { "Content-Type": "application/json", "Cache-Control": "no-store" };
    if (request.method !== "GET" && request.method !== "HEAD") {
      response.writeHead(405, { ...headers, Allow: "GET, HEAD" });
      response.end(JSON.stringify({ error: `${path} answers GET and HEAD` }));
      return true;
    }
    let status = 200;
    let body: object = { alive: true };
    if (path === READINESS_PATH) {
      const lacking = unready();
      const ready = Object.keys(lacking).length === 0;
      status = ready ? 200 : 503;
      body = ready ? { ready } : { ready, unready: lacking };
    }
    response.writeHead(status, headers);
    response.end(request.method === "HEAD" ? undefined : JSON.stringify(body));
    return true;
  };
}

/**
 * Whether a request is a health probe: the HTTP probes or the gRPC Health
 * service. During a graceful shutdown these alone are still answered on new
 * connections (liveness 200, readiness 503, Health NOT_SERVING), so a probe
 * learns the truth instead of a refused connection.
 */
export function isHealthProbe(url: string | undefined): boolean {
  const path = (url ?? "").split("?")[0];
  return path === LIVENESS_PATH || path === READINESS_PATH || path.startsWith(`/${Health.typeName}/`);
}
