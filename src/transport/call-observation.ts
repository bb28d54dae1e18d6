import { Code } from "@connectrpc/connect";
import { codeFromHttpStatus } from "@connectrpc/connect/protocol-connect";
import type http from "node:http";
import http2 from "node:http2";
import { ArtifactService } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import type { CallObserver, CallRecord } from "../observability/calls.ts";
import { httpRouteOf, PUBLIC_SERVICES } from "./routes.ts";

/**
 * Where the server tells its CallObservers about each request (the seam of
 * ../observability/calls.ts), at its one dispatch point: every HTTP/1.1 and
 * HTTP/2 request, whichever route answers it (admission's refusals, the fast
 * routes, connect-node, the public services, plain HTTP routes).
 *
 * Bytes and the gRPC code are read where every route's answer passes,
 * so no route has to report them and none can forget: the request body as
 * the connection pushes it into the request (one integer addition a buffer,
 * no allocation), the response body as it is written, and grpc-status as it
 * goes out in HTTP/2 headers (trailers-only) or trailers. What the wire does
 * not show — a gRPC-Web or Connect status inside the body, a Connect unary
 * error's code — the routes report where they decide it (reportCallCode:
 * server.ts's interceptor, admission's refusals, the fast download route).
 * A call whose response never completed (the client went away, the stream
 * was reset) without a status is CANCELLED; a Connect unary answer without
 * a report takes the code of its HTTP status. One case stays blind: a
 * gRPC-Web or Connect streaming call that connect-node refuses before its
 * interceptors run (a malformed envelope) answers 200 with the error in
 * its body, and counts as OK.
 *
 * With no observer the server never calls in here (server.ts): the hot paths
 * pay nothing.
 */
type NodeRequest = http.IncomingMessage | http2.Http2ServerRequest;
type NodeResponse = http.ServerResponse | http2.Http2ServerResponse;

/** A method outside the server's services, in a record's `method` (and so in every metric label): one value for all. */
export const UNKNOWN_METHOD = "unknown";

interface MethodInfo {
  readonly service: string;
  readonly method: string;
  readonly streaming: boolean;
}

const METHODS = new Map<string, MethodInfo>();
const SERVICE_NAMES = new Set<string>();
for (const service of [ArtifactService, ...PUBLIC_SERVICES]) {
  SERVICE_NAMES.add(service.typeName);
  for (const method of service.methods) {
    METHODS.set(`/${service.typeName}/${method.name}`, { service: service.typeName, method: method.name, streaming: method.methodKind !== "unary" });
  }
}

/** The record as the server fills it in: what the wire showed, and what a route reported, until it is finished. */
interface ObservedCall extends CallRecord {
  /** grpc-status as sent in HTTP/2 headers or trailers. */
  wireCode: Code | 0 | undefined;
  /** The code a route decided (reportCallCode). */
  reportedCode: Code | 0 | undefined;
}

const calls = new WeakMap<NodeRequest, ObservedCall>();

/** The record of a request being observed, for a route that knows more than the wire shows; undefined when nobody observes. */
export function observedCall(request: object | undefined): CallRecord | undefined {
  return request === undefined ? undefined : calls.get(request as NodeRequest);
}

/**
 * The status a route answered a call with, where the wire does not show it
 * to the server (gRPC-Web and Connect put it in the body, Connect unary in
 * the HTTP status). The first report stands: the one closest to the cause.
 */
export function reportCallCode(call: CallRecord | undefined, code: Code | 0, error?: unknown): void {
  const observed = call as ObservedCall | undefined;
  if (observed === undefined || observed.reportedCode !== undefined) return;
  observed.reportedCode = code;
  if (error !== undefined && observed.error === undefined) observed.error = error;
}

export interface CallObservation {
  /**
   * Observes one request: its record made, every observer's `started`,
   * `serve` run inside every observer's `within` (in list order, the first
   * outermost), and `finished` once the response has closed.
   */
  observe(request: NodeRequest, response: NodeResponse, serve: () => void): void;
}

/** Undefined without observers: the server then dispatches as if this did not exist. */
export function createCallObservation(observers: readonly CallObserver[]): CallObservation | undefined {
  if (observers.length === 0) return undefined;
  const starting = observers.filter((o) => o.started !== undefined);
  const wrapping = observers.filter((o) => o.within !== undefined);
  const finishing = observers.filter((o) => o.finished !== undefined);
  const runWithin = (call: CallRecord, index: number, serve: () => void): void => {
    if (index === wrapping.length) serve();
    else wrapping[index]!.within!(call, () => runWithin(call, index + 1, serve));
  };
  return {
    observe(request, response, serve) {
      const call = recordOf(request);
      calls.set(request, call);
      countBodies(call, request, response);
      response.once("close", () => {
        settle(call, response);
        for (const observer of finishing) observer.finished!(call);
      });
      for (const observer of starting) observer.started!(call);
      runWithin(call, 0, serve);
    },
  };
}

function recordOf(request: NodeRequest): ObservedCall {
  const url = request.url ?? "/";
  const query = url.indexOf("?");
  const path = query === -1 ? url : url.slice(0, query);
  const contentType = String(request.headers["content-type"] ?? "");
  let info = METHODS.get(path);
  if (info === undefined) {
    const service = path.slice(1, path.lastIndexOf("/"));
    if (SERVICE_NAMES.has(service)) info = { service, method: UNKNOWN_METHOD, streaming: false };
    else if (contentType.startsWith("application/grpc") || contentType.startsWith("application/connect+")) {
      info = { service: UNKNOWN_METHOD, method: UNKNOWN_METHOD, streaming: false };
    }
  }
  const socket = request.socket as { remoteAddress?: string; remotePort?: number } | null;
  const peer = socket?.remoteAddress === undefined ? undefined : `${socket.remoteAddress}:${socket.remotePort}`;
  return {
    service: info?.service ?? "http",
    method: info?.method ?? httpRouteOf(path) ?? "not found",
    protocol: info === undefined ? "http" : protocolOf(contentType),
    headers: request.headers,
    peer,
    startedAt: process.hrtime.bigint(),
    streaming: info?.streaming ?? false,
    tenantId: undefined,
    traceId: undefined,
    bytesReceived: 0,
    bytesSent: 0,
    code: undefined,
    httpStatus: undefined,
    error: undefined,
    wireCode: undefined,
    reportedCode: undefined,
  };
}

function protocolOf(contentType: string): CallRecord["protocol"] {
  if (contentType.startsWith("application/grpc-web")) return "grpc-web";
  if (contentType.startsWith("application/grpc")) return "grpc";
  return "connect";
}

type Push = (chunk: unknown, encoding?: BufferEncoding) => boolean;
type Write = (chunk: unknown, encoding?: unknown, callback?: unknown) => unknown;

function byteLength(chunk: unknown): number {
  if (chunk === null || chunk === undefined || typeof chunk === "function") return 0;
  if (typeof chunk === "string") return Buffer.byteLength(chunk);
  return (chunk as Uint8Array).byteLength ?? 0;
}

/**
 * Counts the bodies where every route's bytes pass: the request's push (how
 * both HTTP versions hand a request its body) and the writes of the HTTP/2
 * stream or HTTP/1.1 response (the fast routes write to the stream
 * directly; the compatibility response writes through it). Reads the
 * grpc-status of HTTP/2 headers and trailers on the way out.
 */
function countBodies(call: ObservedCall, request: NodeRequest, response: NodeResponse): void {
  const readable = request as unknown as { push: Push };
  const push = readable.push;
  readable.push = function (this: unknown, chunk, encoding) {
    call.bytesReceived += byteLength(chunk);
    return push.call(this, chunk, encoding);
  };
  const target = ("stream" in response ? response.stream : response) as unknown as { write: Write; end: Write };
  const write = target.write;
  const end = target.end;
  // Arguments passed on one by one, not as a rest array: these run once per written buffer.
  target.write = function (this: unknown, chunk, encoding, callback) {
    call.bytesSent += byteLength(chunk);
    return write.call(this, chunk, encoding, callback);
  };
  target.end = function (this: unknown, chunk, encoding, callback) {
    call.bytesSent += byteLength(chunk);
    return end.call(this, chunk, encoding, callback);
  };
  if (!("stream" in response)) return;
  const stream = response.stream as unknown as {
    respond: (headers?: http2.OutgoingHttpHeaders, options?: unknown) => void;
    sendTrailers: (headers: http2.OutgoingHttpHeaders) => void;
  };
  const respond = stream.respond;
  const sendTrailers = stream.sendTrailers;
  stream.respond = function (this: unknown, headers, options) {
    noteGrpcStatus(call, headers);
    return respond.call(this, headers, options);
  };
  stream.sendTrailers = function (this: unknown, headers) {
    noteGrpcStatus(call, headers);
    return sendTrailers.call(this, headers);
  };
}

function noteGrpcStatus(call: ObservedCall, headers: http2.OutgoingHttpHeaders | undefined): void {
  const status = headers?.["grpc-status"];
  if (status !== undefined) call.wireCode = Number(status) as Code | 0;
}

/** The call's outcome, once its response has closed. */
function settle(call: ObservedCall, response: NodeResponse): void {
  // An HTTP/2 stream that closed with an error code was reset (by the client, or cut by the server's timeouts).
  const completed = "stream" in response ? response.stream.rstCode === http2.constants.NGHTTP2_NO_ERROR : response.writableFinished;
  if (call.protocol === "http") {
    call.httpStatus = response.headersSent ? response.statusCode : undefined;
    return;
  }
  if (call.wireCode !== undefined) call.code = call.wireCode;
  else if (call.reportedCode !== undefined) call.code = call.reportedCode;
  else if (!completed) call.code = Code.Canceled;
  else if (response.statusCode !== 200) call.code = codeFromHttpStatus(response.statusCode);
  else call.code = 0;
}
