import type { DescFile, DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter, type ContextValues, type Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import type { Caller } from "../artifact.ts";
import { ArtifactError } from "../artifact-error.ts";
import type { TransportLimits } from "../config.ts";
import { ArtifactService } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import { file_artifacts_v1_artifact_service } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import { Health, file_grpc_health_v1_health } from "@artifactd/api/grpc/health/v1/health_pb.js";
import { ServerReflection } from "@artifactd/api/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ServerReflectionV1Alpha } from "@artifactd/api/grpc/reflection/v1alpha/reflection_pb.js";
import type { ArtifactService as ArtifactUseCases } from "../service/artifact-service.ts";
import { admit, admittedCaller, ARTIFACT_SERVICE_PREFIX, callerKey, refuse, requireAdmittedCaller } from "./admission.ts";
import { createArtifactServiceHandler } from "./artifact-service-handler.ts";
import { createGrpcDownloadRoute } from "./grpc-download-route.ts";
import { createGrpcUnaryRoute } from "./grpc-unary-route.ts";
import { createRequestBodyPool } from "./request-body-pool.ts";
import { createGrpcUploadRoute } from "./grpc-upload-route.ts";
import { toConnectError } from "./connect-error-mapping.ts";
import { sendGrpcMessagesAsSpecified } from "./grpc-message-encoding.ts";
import { createCors } from "./cors.ts";
import { createHealthProbeRoute, isHealthProbe } from "./health-probe-route.ts";
import { createHealthState } from "./health-service.ts";
import { startReadinessChecks, type ReadinessCheck } from "./readiness-checks.ts";
import { createReflectionHandler } from "./reflection-service.ts";
import type { HttpResponse, HttpRoute } from "./http-route.ts";
import { FAST_RPC_ROUTES, httpRouteOf, PUBLIC_SERVICES, type FastRpcRouteName, type HttpRouteName } from "./routes.ts";
import { nodeRequestOf, requestBrokeOff, requestContextValues } from "./request-ended.ts";
import type { CallObserver } from "../observability/calls.ts";
import { createCallObservation, observedCall, reportCallCode } from "./call-observation.ts";

export interface ServerOptions {
  readonly host: string;
  readonly port: number;
  readonly service: ArtifactUseCases;
  /** Resolves a request's `authorization` header to its caller, before its body is read (./admission.ts). */
  readonly authenticate: (authorization: string | null) => Promise<Caller>;
  /** A signal that aborts calls still open when the caller's token is revoked or expires; release when the call ends. */
  readonly watchCaller?: (caller: Caller) => { readonly signal: AbortSignal; release(): void };
  /** Bounds on connections, streams and requests. */
  readonly limits: TransportLimits;
  /** Origins whose web pages may call the service (./cors.ts); none by default. */
  readonly corsAllowedOrigins?: readonly string[];
  /** Base URL for links the server hands out; undefined: taken from each request's host. */
  readonly publicUrl?: string | undefined;
  /** Largest request message accepted (an upload chunk or session part). */
  readonly readMaxBytes?: number;
  /**
   * Plain HTTP routes for requests that are not RPCs, each for its paths
   * (httpRouteOf in ./routes.ts); each answers true if it handled the request.
   * The health probes are the server's own.
   */
  readonly httpRoutes?: { readonly [name in Exclude<HttpRouteName, "health probes">]?: HttpRoute };
  readonly log?: (message: string, error?: unknown) => void;
  /**
   * What the server needs to do its work, by name (the database, the blob store): gRPC health says NOT_SERVING
   * and /readyz 503 while any of them is lacking (checked every READINESS_CHECK_MS).
   */
  readonly readinessChecks?: Readonly<Record<string, ReadinessCheck>>;
  /**
   * Told about every request (../observability/calls.ts): `started` in list
   * order, `within` nested in list order around the dispatch, `finished` once
   * its response has closed. None: nothing is observed, at no cost.
   */
  readonly observers?: readonly CallObserver[];
}

/**
 * HTTP/2 "rapid reset" (CVE-2023-44487): a client may reset at most this
 * many streams at once, and this many per second after that, before the
 * connection is closed (nghttp2's rate limit, as Node configures it).
 */
const STREAM_RESET_BURST = 1_000;
const STREAM_RESET_RATE = 33;

/** Calls whose request is a stream (uploads): their bodies may take as long as they send; every other body is one message. */
const STREAMED_REQUEST_PATHS = new Set(
  ArtifactService.methods
    .filter((m) => m.methodKind === "client_streaming" || m.methodKind === "bidi_streaming")
    .map((m) => `${ARTIFACT_SERVICE_PREFIX}${m.name}`),
);

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
  /**
   * Calls whose handlers have not returned yet (subscriptions, which never
   * finish by themselves, are not counted). A handler returns only after its
   * clean-up, so at 0 nothing a call began is still being stored or undone.
   */
  readonly callsInFlight: number;
}

const MiB = 1024 * 1024;
/** UploadPart bodies kept for reuse while no call holds them (./request-body-pool.ts): four parts of 16 MiB, eight of the default 8 MiB. */
const PART_BODIES_KEPT_BYTES = 64 * MiB;
/** How often readiness asks the stores, and how long an answer may take before they count as unreachable. */
const READINESS_CHECK_MS = 2_000;
/** UNAVAILABLE: clients may retry against another instance. */
const shuttingDownError = () => new ConnectError("the server is shutting down: retry the call", Code.Unavailable);
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
  const limits = options.limits;
  const serviceNames = [ArtifactService.typeName, ...PUBLIC_SERVICES.map((service) => service.typeName)];
  const health = createHealthState(serviceNames);
  const reflection = createReflectionHandler([file_artifacts_v1_artifact_service, file_grpc_health_v1_health] as DescFile[], serviceNames);
  const cors = createCors({ allowedOrigins: options.corsAllowedOrigins ?? [] });
  const httpRoutes = { ...options.httpRoutes, "health probes": createHealthProbeRoute(() => health.unready) };
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
      return { ...response, message: mapStreamErrors(request, response.message, finished) };
    } catch (error) {
      throw answerFailure(request, error, `${request.method.name} failed`);
    } finally {
      if (!streaming) finished();
    }
  };
  /**
   * A call that was aborted — its client went away (cancelled, reset its
   * stream, closed the connection), its deadline passed, the server is
   * shutting down or cut a stream that sent nothing for too long — fails
   * wherever its handler was: often reading the request, as "Premature
   * close". That is the abort, not a fault of the server: it is answered
   * with the abort's own status, and not logged as an internal error. A
   * store that failed under an aborted call (its connection cut with it)
   * counts as the abort too.
   */
  const answerFailure = (request: { readonly signal: AbortSignal; readonly contextValues: ContextValues }, error: unknown, context: string) => {
    const decided = error instanceof ConnectError || (error instanceof ArtifactError && error.code !== "unavailable");
    if (!decided) {
      const reason: unknown = request.signal.aborted ? request.signal.reason : undefined;
      if (reason instanceof ConnectError) return reason;
      if (request.signal.aborted || requestBrokeOff(request.contextValues)) {
        return new ConnectError(
          "the call's stream closed before its request was complete (cancelled by the client, or cut for sending nothing)",
          Code.Canceled,
        );
      }
    }
    const status = toConnectError(error, (e) => log(context, e));
    reportCallCode(observedCall(nodeRequestOf(request.contextValues)), status.code, error);
    return status;
  };
  const done = () => {
    inFlight--;
    if (inFlight === 0) idle?.();
  };
  async function* mapStreamErrors<T>(
    request: { readonly signal: AbortSignal; readonly contextValues: ContextValues },
    messages: AsyncIterable<T>,
    finished: () => void,
  ): AsyncIterable<T> {
    try {
      yield* messages;
    } catch (error) {
      throw answerFailure(request, error, "stream failed");
    } finally {
      finished();
    }
  }

  // The largest session part (64 MiB) plus its message framing.
  const readMaxBytes = options.readMaxBytes ?? 65 * MiB;
  // Two adapters: ArtifactService calls (admitted first, bodies up to a session part) and the public
  // services, Health and reflection, which need no token and so may only send small requests.
  const common = {
    interceptors: [errorMapping],
    acceptCompression: [],
    shutdownSignal: shutdownController.signal,
    maxTimeoutMs: limits.maxCallTimeoutMs,
    contextValues: (request: http.IncomingMessage | http2.Http2ServerRequest) => requestContextValues(request).set(callerKey, admittedCaller(request)),
  };
  const artifactHandlers = createArtifactServiceHandler(options.service, options.publicUrl, options.watchCaller);
  const artifactAdapter = connectNodeAdapter({
    ...common,
    interceptors: [errorMapping, requireAdmittedCaller],
    routes: (router: ConnectRouter) => {
      router.service(ArtifactService, artifactHandlers);
    },
    readMaxBytes,
  });
  const publicAdapter = connectNodeAdapter({
    ...common,
    routes: (router: ConnectRouter) => {
      const implementations = new Map<DescService, unknown>([
        [Health, health.handler],
        [ServerReflection, reflection],
        [ServerReflectionV1Alpha, reflection],
      ]);
      for (const service of PUBLIC_SERVICES) {
        const implementation = implementations.get(service);
        if (implementation === undefined) throw new Error(`public service ${service.typeName} has no implementation`);
        router.service(service, implementation as never);
      }
    },
    readMaxBytes: 64 * 1024,
    fallback: (request, nodeResponse) => {
      const response = nodeResponse as unknown as HttpResponse;
      void (async () => {
        const name = httpRouteOf(new URL(request.url ?? "/", "http://localhost").pathname);
        const route = name === undefined ? undefined : httpRoutes[name];
        if (route && (await route(request, response))) return;
        response.writeHead(404, { "Content-Type": "text/plain; charset=utf-8" });
        response.end("not found\n");
      })().catch((error: unknown) => {
        const call = observedCall(request);
        if (call !== undefined) call.error = error;
        log("HTTP route failed", error);
        if (!response.headersSent) response.writeHead(500);
        response.end();
      });
    },
  });
  // grpc-message as the gRPC spec encodes it, not as connect-node does (./grpc-message-encoding.ts).
  const artifactHandler = sendGrpcMessagesAsSpecified(artifactAdapter);
  const publicHandler = sendGrpcMessagesAsSpecified(publicAdapter);

  /** Every request, HTTP/1.1 or HTTP/2: observed when anyone observes, then admission, then the adapter (or a fast route that takes it). */
  const observation = createCallObservation(options.observers ?? []);
  const dispatch = (request: http.IncomingMessage | http2.Http2ServerRequest, response: http.ServerResponse | http2.Http2ServerResponse) => {
    if (cors.answer(request, response)) return; // a preflight: answered before admission, as it carries no token
    if (observation === undefined) serve(request, response);
    else observation.observe(request, response, () => serve(request, response));
  };
  const serve = (request: http.IncomingMessage | http2.Http2ServerRequest, response: http.ServerResponse | http2.Http2ServerResponse) => {
    admit(request, response, { authenticate: options.authenticate, admitCall: options.service.admitCall, maxCallTimeoutMs: limits.maxCallTimeoutMs, log })
      .then((caller) => {
        if (caller === undefined) return; // refused and answered
        if (caller !== null && observation !== undefined) observedCall(request)!.tenantId = caller.tenantId;
        if (caller === null) return publicHandler(request as http.IncomingMessage, response as http.ServerResponse);
        if (FAST_RPC_ROUTES.some((name) => fastRoutes[name](request, response, caller))) return;
        artifactHandler(request as http.IncomingMessage, response as http.ServerResponse);
      })
      .catch((error: unknown) => {
        log("dispatching a request failed", error);
        refuse(request, response, new ConnectError("the request could not be dispatched", Code.Internal));
      });
  };

  // Binary, uncompressed downloads (plain gRPC, Connect, gRPC-Web), and plain gRPC uploads and unary calls, skip the
  // generic machinery (./grpc-download-route.ts, ./grpc-upload-route.ts, ./grpc-unary-route.ts); every other call
  // goes to connect-node.
  const track = () => {
    inFlight++;
    return done;
  };
  const fastRoutes: Record<FastRpcRouteName, ReturnType<typeof createGrpcDownloadRoute>> = {
    "binary Download": createGrpcDownloadRoute({
      service: options.service,
      watchCaller: options.watchCaller,
      shutdownSignal: shutdownController.signal,
      track,
      log,
    }),
    "binary Upload": createGrpcUploadRoute({
      service: options.service,
      watchCaller: options.watchCaller,
      shutdownSignal: shutdownController.signal,
      track,
      readMaxBytes,
      answerFailure,
      log,
    }),
    "gRPC unary": createGrpcUnaryRoute({
      handlers: artifactHandlers,
      partBodies: createRequestBodyPool(PART_BODIES_KEPT_BYTES),
      shutdownSignal: shutdownController.signal,
      track,
      readMaxBytes,
      answerFailure,
      log,
    }),
  };
  const h2 = http2.createServer(
    {
      settings: {
        initialWindowSize: 8 * MiB,
        maxFrameSize: MiB,
        maxConcurrentStreams: limits.http2MaxConcurrentStreams,
        maxHeaderListSize: limits.maxHeaderBytes,
      },
      maxSessionMemory: 256,
      // Settings and ping floods are bounded by Node's defaults (32 settings per frame, 10 unacknowledged
      // pings); streams refused beyond the concurrency limit and invalid frames close the connection at 100 and 1,000.
      maxSessionRejectedStreams: 100,
      maxSessionInvalidFrames: 1_000,
      streamResetBurst: STREAM_RESET_BURST,
      streamResetRate: STREAM_RESET_RATE,
    },
    (request, response) => {
      limitRequestBody(request);
      // New connections are still taken during shutdown, for probes alone (see shutdown below).
      if (shuttingDown && !isHealthProbe(request.url)) return refuse(request, response, shuttingDownError());
      dispatch(request, response);
    },
  );
  const sessions = new Set<http2.ServerHttp2Session>();
  h2.on("session", (session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
    session.on("error", () => {});
    // The connection-level window, not covered by initialWindowSize.
    session.once("localSettings", () => session.setLocalWindowSize(16 * MiB));
    closeWhenIdle(session);
  });

  /**
   * An HTTP/2 connection with no stream open for idleConnectionTimeoutMs is
   * closed with GOAWAY (clients reconnect when they next call). Counted by
   * open streams, not by traffic, so a quiet Watch keeps its connection.
   */
  function closeWhenIdle(session: http2.ServerHttp2Session): void {
    let open = 0;
    let timer: NodeJS.Timeout | undefined;
    const arm = () => {
      timer = setTimeout(() => session.close(), limits.idleConnectionTimeoutMs);
      timer.unref();
    };
    arm();
    session.on("stream", (stream) => {
      open++;
      clearTimeout(timer);
      stream.once("close", () => {
        if (--open === 0 && !session.closed) arm();
      });
    });
    session.once("close", () => clearTimeout(timer));
  }

  /**
   * Bounds on how a request body may arrive over HTTP/2: a stream that sends
   * nothing for streamIdleTimeoutMs is cut (upload streams included); a unary
   * call's body must be complete within requestBodyTimeoutMs, so a slow
   * sender cannot hold a stream with a byte now and then. Both end when the
   * body does: server-streaming answers (Watch, Download) may be quiet.
   */
  function limitRequestBody(request: http2.Http2ServerRequest): void {
    const stream = request.stream;
    if (stream.state.remoteClose === 1 || request.complete) return;
    const cut = () => {
      if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_CANCEL);
    };
    stream.setTimeout(limits.streamIdleTimeoutMs, cut);
    const bodyDeadline = STREAMED_REQUEST_PATHS.has(request.url) ? undefined : setTimeout(cut, limits.requestBodyTimeoutMs);
    bodyDeadline?.unref();
    const ended = () => {
      stream.setTimeout(0);
      clearTimeout(bodyDeadline);
    };
    stream.once("end", ended);
    stream.once("close", ended);
  }

  // HTTP/1.1 has no GOAWAY: during shutdown, a keep-alive connection's next request is refused (UNAVAILABLE, so
  // clients retry elsewhere) and every response says Connection: close.
  const h1Responses = new Set<http.ServerResponse>();
  const h1 = http.createServer(
    {
      maxHeaderSize: limits.maxHeaderBytes,
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestBodyTimeoutMs,
      keepAliveTimeout: limits.idleConnectionTimeoutMs,
      connectionsCheckingInterval: Math.min(1_000, limits.headersTimeoutMs),
    },
    (request, response) => {
      if (shuttingDown) response.shouldKeepAlive = false;
      if (shuttingDown && !isHealthProbe(request.url)) {
        response.writeHead(503, { "Content-Type": "application/json", Connection: "close" });
        response.end(JSON.stringify({ code: "unavailable", message: "the server is shutting down: retry the call" }));
        return;
      }
      h1Responses.add(response);
      response.once("close", () => h1Responses.delete(response));
      dispatch(request, response);
    },
  );
  // Node enforces headersTimeout / requestTimeout only on connections of a server that listens; this one is handed
  // its sockets by the protocol sniff below, so the tracking 'listening' would start is started here.
  h1.emit("listening");

  const sockets = new Set<net.Socket>();
  const listener = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    // A connection that sends nothing is not kept waiting for its first bytes.
    const silent = () => socket.destroy();
    socket.setTimeout(limits.headersTimeoutMs, silent);
    // Bytes are read until they either match the whole preface or depart from it: "P" alone could still be
    // "POST" (HTTP/1.1) or "PRI" (HTTP/2), and a client may send its first bytes one at a time.
    let seen = Buffer.alloc(0);
    socket.once("readable", function route() {
      const more: Buffer | null = socket.read();
      if (more !== null) seen = Buffer.concat([seen, more]);
      const decided = seen.length >= HTTP2_PREFACE.length || !HTTP2_PREFACE.subarray(0, seen.length).equals(seen);
      if (!decided) {
        socket.once("readable", route);
        return;
      }
      socket.setTimeout(0);
      socket.off("timeout", silent);
      socket.unshift(seen);
      const isHttp2 = HTTP2_PREFACE.equals(seen.subarray(0, HTTP2_PREFACE.length));
      (isHttp2 ? h2 : h1).emit("connection", socket);
    });
  });
  listener.maxConnections = limits.maxConnections;
  await new Promise<void>((resolve, reject) => {
    listener.once("error", reject);
    listener.listen(options.port, options.host, () => resolve());
  });
  const address = listener.address() as net.AddressInfo;
  const hostForUrl = address.family === "IPv6" ? `[${address.address}]` : address.address;

  // Health and readiness follow the stores.
  const readiness = startReadinessChecks({
    checks: options.readinessChecks ?? {},
    intervalMs: READINESS_CHECK_MS,
    onResult: (unready) => health.setUnready(unready),
    log,
  });

  let stopping: Promise<void> | undefined;
  return {
    host: address.address,
    port: address.port,
    url: `http://${hostForUrl}:${address.port}`,
    get callsInFlight() {
      return inFlight;
    },
    shutdown(graceMs) {
      stopping ??= (async () => {
        shuttingDown = true;
        health.setServing(false);
        readiness.stop();
        for (const response of h1Responses) if (!response.headersSent) response.shouldKeepAlive = false;
        // HTTP/2 clients get GOAWAY and finish their streams; idle HTTP/1.1
        // connections are closed. The listener stays open until the end, for
        // probes: Kubernetes keeps probing a pod while it drains, and should
        // read liveness 200 and readiness 503 there, not a refused
        // connection; every other request on a new connection is refused
        // with UNAVAILABLE, so clients go elsewhere.
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
        shutdownController.abort(shuttingDownError());
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
        listener.close();
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
