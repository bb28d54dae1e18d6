import { ArtifactService } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import { Health } from "@artifactd/api/grpc/health/v1/health_pb.js";
import { ServerReflection } from "@artifactd/api/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ServerReflectionV1Alpha } from "@artifactd/api/grpc/reflection/v1alpha/reflection_pb.js";
import { DOWNLOAD_PATH_PREFIX } from "../service/download-urls.ts";
import { LIVENESS_PATH, READINESS_PATH } from "./health-probe-route.ts";

/**
 * Every route the server mounts on its one port, named. server.ts mounts
 * these lists and nothing else, so a route added to the server is added
 * here, where the tenant-isolation test finds it (and fails until the route
 * has a check there).
 *
 * - ArtifactService: every method, over gRPC, gRPC-Web and Connect, through
 *   connect-node; admitted with a token (./admission.ts).
 * - Its fast routes: methods also served by a route of their own, tried
 *   first for the requests they take (binary Download: gRPC, and Connect
 *   and gRPC-Web with the binary format, uncompressed; binary Upload and
 *   every unary method: plain gRPC, uncompressed).
 * - Public services, which need no token: health and reflection.
 * - Plain HTTP routes for every other request, each for its own paths
 *   (httpRouteOf): the health probes (/healthz, /readyz; the server's own),
 *   signed download links, metrics and the web page (passed in from app.ts).
 */
export const FAST_RPC_ROUTES = ["binary Download", "binary Upload", "gRPC unary"] as const;
export type FastRpcRouteName = (typeof FAST_RPC_ROUTES)[number];

export const PUBLIC_SERVICES = [Health, ServerReflection, ServerReflectionV1Alpha] as const;

export const HTTP_ROUTES = ["health probes", "signed download links", "metrics", "web page"] as const;
export type HttpRouteName = (typeof HTTP_ROUTES)[number];

/** Where Prometheus scrapes the service's metrics when they are served on its own port (ARTIFACTD_METRICS_LISTEN). */
export const METRICS_PATH = "/metrics";

/**
 * The plain HTTP route a path belongs to, or undefined (404). Known before
 * the route runs, so the request is named for observers from its arrival
 * (transport/call-observation.ts) by the same rule that picks its route.
 */
export function httpRouteOf(pathname: string): HttpRouteName | undefined {
  if (pathname === LIVENESS_PATH || pathname === READINESS_PATH) return "health probes";
  if (pathname.startsWith(DOWNLOAD_PATH_PREFIX)) return "signed download links";
  if (pathname === METRICS_PATH) return "metrics";
  if (pathname === "/" || pathname === "/index.html" || pathname.startsWith("/assets/")) return "web page";
  return undefined;
}

/** The names of all of them, in the order above. */
export const SERVER_ROUTES: readonly string[] = [
  ArtifactService.typeName,
  ...FAST_RPC_ROUTES,
  ...PUBLIC_SERVICES.map((service) => service.typeName),
  ...HTTP_ROUTES,
];
