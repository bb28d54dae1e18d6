import { Code, ConnectError, createContextKey, type Interceptor } from "@connectrpc/connect";
import { codeToHttpStatus, endStreamFlag, errorToJson } from "@connectrpc/connect/protocol-connect";
import type http from "node:http";
import http2 from "node:http2";
import type { Caller } from "../artifact.ts";
import { ArtifactError } from "../artifact-error.ts";
import { ArtifactService } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import { observedCall, reportCallCode } from "./call-observation.ts";
import { toConnectError } from "./connect-error-mapping.ts";
import { encodeGrpcMessage } from "./grpc-message-encoding.ts";

/**
 * Admission before work: every ArtifactService call is authenticated from
 * its request headers alone, before a byte of its body is read or parsed,
 * on every protocol (gRPC, gRPC-Web, Connect) and for the fast download
 * route alike. A refused request is answered here, in its own protocol, and
 * its body is never read: on HTTP/2 the stream is reset with NO_ERROR after
 * the answer (RFC 9113 §8.1: the response is complete, stop sending), on
 * HTTP/1.1 the connection is closed after the answer.
 *
 * So a caller without a valid token costs a header parse and a cached token
 * lookup (service/token-authenticator.ts), never a 64 MiB body buffered for
 * connect-node to decode.
 *
 * That is also why authentication is not itself a Connect interceptor:
 * connect-node reads and decodes a unary call's whole request before the
 * first interceptor runs. Handlers get the admitted caller the way
 * connect-es documents it, as a context value: the adapter's
 * `contextValues` puts it under `callerKey` (./server.ts), and the
 * `requireAdmittedCaller` interceptor lets no ArtifactService call reach its
 * handler without one.
 */
export const ARTIFACT_SERVICE_PREFIX = `/${ArtifactService.typeName}/`;

type NodeRequest = http.IncomingMessage | http2.Http2ServerRequest;
type NodeResponse = http.ServerResponse | http2.Http2ServerResponse;

/**
 * No caller: what `callerKey` holds for a request admit() did not admit. Any
 * use of it throws unauthenticated, so even a handler that were reached
 * without admission could do nothing as anybody.
 */
const NO_CALLER: Caller = Object.freeze({
  get tenantId(): string {
    return notAdmitted();
  },
  get principal(): string {
    return notAdmitted();
  },
  get tokenId(): string {
    return notAdmitted();
  },
  get scope(): Caller["scope"] {
    return notAdmitted();
  },
});

function notAdmitted(): never {
  throw new ConnectError("the call was not authenticated", Code.Unauthenticated);
}

/** The caller of an ArtifactService call, admitted from its headers: `ctx.values.get(callerKey)` in a handler. */
export const callerKey = createContextKey<Caller>(NO_CALLER, { description: "authenticated caller" });
const admitted = new WeakMap<NodeRequest, Caller>();

/**
 * A connection that has sent this many calls without a valid token is
 * closed: each well-formed unknown token costs a database lookup, and a
 * client guessing (or one misconfigured in a retry loop) should not get to
 * make them without end on one connection. A client that reconnects starts
 * over, paying a TCP handshake each time and counted by the connection cap.
 */
export const MAX_REFUSED_AUTHENTICATIONS_PER_CONNECTION = 100;
const refusedAuthentications = new WeakMap<object, number>();

/**
 * Authenticates an ArtifactService request from its headers. Resolves the
 * caller, remembered for the handler (see callerKey); or answers the request
 * with the refusal and resolves undefined. Other paths need no token and
 * resolve null.
 */
export async function admit(
  request: NodeRequest,
  response: NodeResponse,
  options: {
    readonly authenticate: (authorization: string | null) => Promise<Caller>;
    /** The caller's tenant's calls-per-second quota (service/tenant-quotas.ts): refused here too, body unread. */
    readonly admitCall: (caller: Caller) => Promise<void>;
    readonly maxCallTimeoutMs: number;
    readonly log: (message: string, error?: unknown) => void;
  },
): Promise<Caller | null | undefined> {
  const { authenticate, log } = options;
  const tooLong = deadlineOverMaximum(request, options.maxCallTimeoutMs);
  if (tooLong) {
    refuse(request, response, tooLong);
    return undefined;
  }
  if (!(request.url ?? "").startsWith(ARTIFACT_SERVICE_PREFIX)) return null;
  try {
    const caller = await authenticate(request.headers.authorization ?? null);
    await options.admitCall(caller);
    admitted.set(request, caller);
    return caller;
  } catch (error) {
    refuse(
      request,
      response,
      toConnectError(error, (e) => log("admitting a call failed", e)),
    );
    if (error instanceof ArtifactError && error.code === "unauthenticated") countRefusal(request);
    return undefined;
  }
}

function countRefusal(request: NodeRequest): void {
  // HTTP/1.1 refusals already close their connection (see refuse); HTTP/2 sessions carry many calls.
  if (!("stream" in request)) return;
  const session = request.stream.session;
  if (!session) return;
  const refused = (refusedAuthentications.get(session) ?? 0) + 1;
  refusedAuthentications.set(session, refused);
  // GOAWAY: streams already open finish, new ones go elsewhere.
  if (refused >= MAX_REFUSED_AUTHENTICATIONS_PER_CONNECTION && !session.closed) session.close();
}

/**
 * A deadline longer than the maximum is refused, not clamped: the caller
 * asked for something the server will not give, and should know (a clamped
 * deadline would end a call the caller believed had days left). Node's
 * timers hold at most 2^31 - 1 ms, so without this a 720-hour deadline
 * would fire at once.
 */
function deadlineOverMaximum(request: NodeRequest, maxMs: number): ConnectError | undefined {
  const connect = request.headers["connect-timeout-ms"];
  let askedMs: number | undefined;
  try {
    askedMs = parseGrpcTimeout(request.headers["grpc-timeout"]);
  } catch (error) {
    return error as ConnectError;
  }
  if (askedMs === undefined && typeof connect === "string" && /^\d{1,10}$/.test(connect)) askedMs = Number(connect);
  if (askedMs === undefined || askedMs <= maxMs) return undefined;
  return new ConnectError(
    `the call asks for a deadline of ${askedMs} ms, over this server's maximum of ${maxMs} ms (ARTIFACTD_MAX_CALL_TIMEOUT_MS): ask for a shorter one, and for longer work resume (Watch resume_after, upload sessions)`,
    Code.InvalidArgument,
  );
}

/** grpc-timeout: up to 8 digits and a unit (H, M, S, m, u, n), in milliseconds; undefined when absent. */
export function parseGrpcTimeout(value: string | string[] | undefined): number | undefined {
  if (value === undefined) return undefined;
  const match = /^(\d{1,8})([HMSmun])$/.exec(Array.isArray(value) ? (value[0] ?? "") : value);
  if (!match)
    throw new ConnectError(`grpc-timeout ${JSON.stringify(value)} is not valid: give up to 8 digits and a unit (H, M, S, m, u, n)`, Code.InvalidArgument);
  const unitMs = { H: 3_600_000, M: 60_000, S: 1_000, m: 1, u: 0.001, n: 0.000001 }[match[2] as "H" | "M" | "S" | "m" | "u" | "n"];
  return Number(match[1]) * unitMs;
}

/** The caller admit() resolved for this request, or NO_CALLER: for connect-node's context values. */
export function admittedCaller(request: NodeRequest): Caller {
  return admitted.get(request) ?? NO_CALLER;
}

/**
 * The one gate in front of every ArtifactService handler, a method added
 * later included: a call admit() did not admit is refused before its handler
 * runs. (Unreachable while every request passes admit() first; it keeps a
 * new route into the adapter from running handlers unauthenticated.)
 */
export const requireAdmittedCaller: Interceptor = (next) => async (request) => {
  if (request.contextValues.get(callerKey) === NO_CALLER) notAdmitted();
  return next(request);
};

/**
 * Answers a request with an error in the protocol it speaks, without reading
 * its body: gRPC and gRPC-Web as trailers-only responses, Connect streaming
 * as an end-stream message, Connect unary (and GET) with the HTTP status and
 * JSON error body the Connect protocol defines.
 */
export function refuse(request: NodeRequest, response: NodeResponse, error: ConnectError, extraHeaders: Record<string, string> = {}): void {
  reportCallCode(observedCall(request), error.code);
  const contentType = String(request.headers["content-type"] ?? "").toLowerCase();
  const status = { "grpc-status": String(error.code), "grpc-message": encodeGrpcMessage(error.rawMessage) };
  let head: { status: number; headers: Record<string, string>; body?: Uint8Array };
  if (contentType.startsWith("application/grpc-web")) {
    head = { status: 200, headers: { "content-type": contentType.split(";")[0]!, ...status } };
  } else if (contentType.startsWith("application/grpc")) {
    head = { status: 200, headers: { "content-type": "application/grpc", ...status } };
  } else if (contentType.startsWith("application/connect+")) {
    const json = new TextEncoder().encode(JSON.stringify({ error: errorToJson(error, undefined) }));
    const body = new Uint8Array(5 + json.byteLength);
    body[0] = endStreamFlag;
    new DataView(body.buffer).setUint32(1, json.byteLength);
    body.set(json, 5);
    head = { status: 200, headers: { "content-type": contentType.split(";")[0]! }, body };
  } else {
    head = {
      status: codeToHttpStatus(error.code),
      headers: { "content-type": "application/json" },
      body: new TextEncoder().encode(JSON.stringify(errorToJson(error, undefined))),
    };
  }
  // The refusal's metadata (a quota's retry-after-ms and quota-exceeded) goes with it, as connect-node would send it.
  Object.assign(head.headers, Object.fromEntries(error.metadata), extraHeaders);
  if ("stream" in response) {
    const stream = response.stream;
    if (stream.destroyed || stream.headersSent) return;
    // Once the answer is out, tell the client to stop sending its body (NO_ERROR: the response is complete).
    const stopBody = () => {
      if (!stream.destroyed && !stream.closed) stream.close(http2.constants.NGHTTP2_NO_ERROR);
    };
    // Headers already set on the response (CORS) go too, as writeHead would send them.
    stream.respond({ ...response.getHeaders(), ":status": head.status, ...head.headers }, { endStream: head.body === undefined });
    if (head.body) stream.end(head.body, stopBody);
    else setImmediate(stopBody);
    return;
  }
  const socket = response.socket;
  response.shouldKeepAlive = false;
  response.writeHead(head.status, { ...head.headers, connection: "close" });
  response.end(head.body);
  // Node would read the rest of the body to keep the connection; it is closed instead once the answer is sent,
  // and cut if the client does not close its side within a moment.
  response.once("finish", () => {
    socket?.end();
    setTimeout(() => socket?.destroy(), 1_000).unref();
  });
}
