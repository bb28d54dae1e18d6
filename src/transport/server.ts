import type { DescFile } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter, type Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import type { Caller } from "../artifact.ts";
import { ArtifactService } from "../gen/artifacts/v1/artifact_service_pb.js";
import { file_artifacts_v1_artifact_service } from "../gen/artifacts/v1/artifact_service_pb.js";
import { Health, file_grpc_health_v1_health } from "../gen/grpc/health/v1/health_pb.js";
import { ServerReflection } from "../gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ServerReflectionV1Alpha } from "../gen/grpc/reflection/v1alpha/reflection_pb.js";
import type { ArtifactService as ArtifactUseCases } from "../service/artifact-service.ts";
import { createArtifactServiceHandler } from "./artifact-service-handler.ts";
import { createGrpcDownloadRoute } from "./grpc-download-route.ts";
import { toConnectError } from "./connect-error-mapping.ts";
import { createHealthState } from "./health-service.ts";
import { createReflectionHandler } from "./reflection-service.ts";
import type { HttpResponse, HttpRoute } from "./http-route.ts";
import { requestContextValues } from "./request-ended.ts";

export interface ServerOptions {
  readonly host: string;
  readonly port: number;
  readonly service: ArtifactUseCases;
  readonly authenticate: (authorization: string | null) => Promise<Caller>;
  /** Base URL for links the server hands out; undefined: taken from each request's host. */
  readonly publicUrl?: string | undefined;
  /** Largest request message accepted (an upload chunk or session part). */
  readonly readMaxBytes?: number;
  /** Plain HTTP routes tried, in order, for requests that are not RPCs; each answers true if it handled the request. */
  readonly httpRoutes?: readonly HttpRoute[];
  readonly log?: (message: string, error?: unknown) => void;
  /** Resolves when the stores answer; health reports NOT_SERVING while it fails (checked every STORE_CHECK_MS). */
  readonly checkStores?: () => Promise<void>;
}

export interface RunningServer {
  /** The address actually bound (port 0 resolves to a free port). */
  readonly host: string;
  readonly port: number;
  readonly url: string;
  /**
   * Graceful stop: refuse new connections and calls, let calls in flight
   * finish for up to `graceMs`, then cancel the rest (their handlers see an
   * aborted signal, so uploads abort their multipart uploads) and close.
   */
  shutdown(graceMs: number): Promise<void>;
}

const MiB = 1024 * 1024;
/** How often health asks the stores, and how long an answer may take before they count as unreachable. */
const STORE_CHECK_MS = 2_000;
/** Start of every HTTP/2 connection without TLS (RFC 9113 §3.4). */
const HTTP2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

/**
 * One port, three protocols: gRPC over HTTP/2, and gRPC-Web and Connect over
 * HTTP/1.1 or HTTP/2. Without TLS a server cannot negotiate the protocol, so
 * each new connection is sniffed: the HTTP/2 preface goes to the HTTP/2
 * server, anything else to the HTTP/1.1 server (browsers on localhost).
 *
 * A session may hold 256 MiB in flight (Node's default of 10 MiB refuses
 * parallel session parts with ENHANCE_YOUR_CALM: a browser sending four
 * 16 MiB UploadPart calls at once needs 64 MiB, and each unary body is held
 * whole until its handler runs).
 *
 * HTTP/2 flow-control windows are raised from the 64 KiB default: uploads
 * are bound by the receive window on this path (shared/anchors measured
 * ~240 MB/s at the default and 500–730 MB/s at these sizes). Responses are
 * never compressed: blob bytes rarely compress, and gzip on the event loop
 * caps downloads near 30 MiB/s.
 */
export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const log = options.log ?? (() => {});
  const serviceNames = [ArtifactService.typeName, Health.typeName, ServerReflection.typeName, ServerReflectionV1Alpha.typeName];
  const health = createHealthState(serviceNames);
  const reflection = createReflectionHandler(
    [file_artifacts_v1_artifact_service, file_grpc_health_v1_health] as DescFile[],
    serviceNames,
  );
  const shutdownController = new AbortController();
  let shuttingDown = false;
  let inFlight = 0;
  let idle: (() => void) | undefined;

  // Subscriptions (Health.Watch, WatchArtifacts) never finish by
  // themselves: shutdown does not wait for them, it ends them.
  const isSubscription = (name: string) => name === "Watch" || name === "WatchArtifacts";
  const errorMapping: Interceptor = (next) => async (request) => {
    const tracked = !isSubscription(request.method.name);
    if (tracked) inFlight++;
    const finished = () => {
      if (tracked) done();
    };
    let streaming = false;
    try {
      const response = await next(request);
      if (!response.stream) return response;
      streaming = true;
      return { ...response, message: mapStreamErrors(response.message, finished) };
    } catch (error) {
      throw toConnectError(error, (e) => log(`${request.method.name} failed`, e));
    } finally {
      if (!streaming) finished();
    }
  };
  const done = () => {
    inFlight--;
    if (inFlight === 0) idle?.();
  };
  async function* mapStreamErrors<T>(messages: AsyncIterable<T>, finished: () => void): AsyncIterable<T> {
    try {
      yield* messages;
    } catch (error) {
      throw toConnectError(error, (e) => log("stream failed", e));
    } finally {
      finished();
    }
  }

  const routes = (router: ConnectRouter) => {
    router.service(ArtifactService, createArtifactServiceHandler(options.service, options.authenticate, options.publicUrl));
    router.service(Health, health.handler);
    router.service(ServerReflection, reflection);
    router.service(ServerReflectionV1Alpha, reflection as never);
  };
  const handler = connectNodeAdapter({
    routes,
    interceptors: [errorMapping],
    acceptCompression: [],
    // The largest session part (64 MiB) plus its message framing.
    readMaxBytes: options.readMaxBytes ?? 65 * MiB,
    shutdownSignal: shutdownController.signal,
    contextValues: requestContextValues,
    fallback: (request, nodeResponse) => {
      const response = nodeResponse as unknown as HttpResponse;
      void (async () => {
        for (const route of options.httpRoutes ?? []) if (await route(request, response)) return;
        response.writeHead(404, { "Content-Type": "text/plain; charset=utf-8" });
        response.end("not found\n");
      })().catch((error: unknown) => {
        log("HTTP route failed", error);
        if (!response.headersSent) response.writeHead(500);
        response.end();
      });
    },
  });

  // Plain-gRPC downloads skip the generic machinery (./grpc-download-route.ts); every other call goes to connect-node.
  const grpcDownload = createGrpcDownloadRoute({
    service: options.service,
    authenticate: options.authenticate,
    shutdownSignal: shutdownController.signal,
    track: () => {
      inFlight++;
      return done;
    },
    log,
  });
  const h2 = http2.createServer(
    { settings: { initialWindowSize: 8 * MiB, maxFrameSize: MiB }, maxSessionMemory: 256 },
    (request, response) => {
      if (!grpcDownload(request, response)) handler(request, response);
    },
  );
  const sessions = new Set<http2.ServerHttp2Session>();
  h2.on("session", (session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
    session.on("error", () => {});
    // The connection-level window, not covered by initialWindowSize.
    session.once("localSettings", () => session.setLocalWindowSize(16 * MiB));
  });
  // HTTP/1.1 has no GOAWAY: during shutdown, a keep-alive connection's next request is refused (UNAVAILABLE, so
  // clients retry elsewhere) and every response says Connection: close.
  const h1Responses = new Set<http.ServerResponse>();
  const h1 = http.createServer((request, response) => {
    if (shuttingDown) {
      response.writeHead(503, { "Content-Type": "application/json", Connection: "close" });
      response.end(JSON.stringify({ code: "unavailable", message: "the server is shutting down: retry the call" }));
      return;
    }
    h1Responses.add(response);
    response.once("close", () => h1Responses.delete(response));
    handler(request, response);
  });
  h1.keepAliveTimeout = 65_000;

  const sockets = new Set<net.Socket>();
  const listener = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    socket.once("readable", function route() {
      const head: Buffer | null = socket.read(HTTP2_PREFACE.length) ?? socket.read();
      if (head === null) {
        socket.once("readable", route);
        return;
      }
      socket.unshift(head);
      const isHttp2 = HTTP2_PREFACE.subarray(0, head.length).equals(head.subarray(0, HTTP2_PREFACE.length));
      (isHttp2 ? h2 : h1).emit("connection", socket);
    });
  });
  await new Promise<void>((resolve, reject) => {
    listener.once("error", reject);
    listener.listen(options.port, options.host, () => resolve());
  });
  const address = listener.address() as net.AddressInfo;
  const hostForUrl = address.family === "IPv6" ? `[${address.address}]` : address.address;

  // Health follows the stores: a probe every STORE_CHECK_MS, one at a time, each bounded by the same time.
  let checking = false;
  const storeCheck = setInterval(() => {
    if (!options.checkStores || checking) return;
    checking = true;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${STORE_CHECK_MS} ms`)), STORE_CHECK_MS);
    });
    Promise.race([options.checkStores(), timeout])
      .then(
        () => health.setStoresReachable(true),
        (error: unknown) => {
          log("a store is unreachable: health is NOT_SERVING until it answers", error);
          health.setStoresReachable(false);
        },
      )
      .finally(() => {
        clearTimeout(timer);
        checking = false;
      });
  }, STORE_CHECK_MS);
  storeCheck.unref();

  let stopping: Promise<void> | undefined;
  return {
    host: address.address,
    port: address.port,
    url: `http://${hostForUrl}:${address.port}`,
    shutdown(graceMs) {
      stopping ??= (async () => {
        shuttingDown = true;
        health.setServing(false);
        clearInterval(storeCheck);
        for (const response of h1Responses) if (!response.headersSent) response.shouldKeepAlive = false;
        listener.close();
        // HTTP/2 clients get GOAWAY and finish their streams; idle HTTP/1.1
        // connections are closed.
        h2.close();
        h1.close();
        h1.closeIdleConnections();
        if (inFlight > 0) {
          await new Promise<void>((resolve) => {
            idle = resolve;
            setTimeout(resolve, graceMs).unref();
          });
        }
        // UNAVAILABLE: clients may retry against another instance.
        shutdownController.abort(new ConnectError("the server is shutting down: retry the call", Code.Unavailable));
        if (inFlight > 0) {
          // Give cancelled handlers a moment to clean up (abort multipart uploads).
          await new Promise<void>((resolve) => {
            idle = resolve;
            setTimeout(resolve, 5_000).unref();
          });
        }
        // Handlers are done, but their last responses may still be on the
        // way out: close sessions gracefully (each closes once its streams
        // have ended) and give the sockets a moment before cutting them.
        for (const session of sessions) session.close();
        h1.closeIdleConnections();
        const deadline = Date.now() + 2_000;
        while (sockets.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
        for (const socket of sockets) socket.destroy();
      })();
      return stopping;
    },
  };
}
