import { create, type DescMethodUnary, isMessage, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, type ContextValues, createHandlerContext, type ServiceImpl } from "@connectrpc/connect";
import type http2 from "node:http2";
import { ArtifactService } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import type { Caller } from "../artifact.ts";
import { ARTIFACT_SERVICE_PREFIX, callerKey, parseGrpcTimeout } from "./admission.ts";
import {
  envelopeHead,
  isPlainGrpc,
  type NodeRequest,
  type NodeResponse,
  openCallSignal,
  openGrpcResponse,
  parseRequestMessage,
} from "./grpc-response-framing.ts";
import { requestContextValues } from "./request-ended.ts";

/**
 * The unary ArtifactService calls over plain gRPC, answered without the
 * generic RPC machinery. A SaveInline through connect-node cost the server
 * 0.8–2.6 ms of CPU (8 and 1 in flight), where node:http2 alone answers a
 * unary gRPC call for 0.04–0.15 ms and the use case with its database
 * statement costs ~0.15: connect's per-call pipeline of async iterators and
 * transforms, its Web headers and its AbortSignals were most of it, and on
 * two cores every millisecond of it is a call not served. Small calls are
 * what services make most (SaveInline, GetArtifact, the session calls), so
 * every unary method takes this route.
 *
 * Everything but the plumbing is the connect path's: the same handlers
 * (artifact-service-handler.ts) with a context of connect's own making, the
 * same message size limit (readMaxBytes) and words when it is passed, the
 * call's deadline, the server's shutdown, the same mapping of failures to
 * statuses (server.ts's answerFailure). Compressed requests, Connect,
 * gRPC-Web and JSON fall through to connect-node (`handle` answers false).
 */
export interface GrpcUnaryRouteOptions {
  /** The ArtifactService handlers connect-node serves too. */
  readonly handlers: ServiceImpl<typeof ArtifactService>;
  /** Aborts every call in progress (server shutdown); the reason is the error they end with. */
  readonly shutdownSignal: AbortSignal;
  /** Called when a call starts; the function it returns when it ends (graceful shutdown waits for these). */
  readonly track: () => () => void;
  /** The largest request message accepted: connect-node's readMaxBytes. */
  readonly readMaxBytes: number;
  /** The status a failed call is answered with, as for every call through connect-node (server.ts). */
  readonly answerFailure: (call: { readonly signal: AbortSignal; readonly contextValues: ContextValues }, error: unknown, context: string) => ConnectError;
  readonly log: (message: string, error?: unknown) => void;
}

type UnaryMethod = DescMethodUnary;
type UnaryHandler = (request: unknown, context: ReturnType<typeof createHandlerContext>) => Promise<unknown> | unknown;

export function createGrpcUnaryRoute(options: GrpcUnaryRouteOptions) {
  const methods = new Map<string, { readonly method: UnaryMethod; readonly handler: UnaryHandler }>();
  for (const method of ArtifactService.methods) {
    if (method.methodKind !== "unary") continue;
    const handler = (options.handlers as unknown as Record<string, UnaryHandler>)[method.localName]!.bind(options.handlers);
    methods.set(`${ARTIFACT_SERVICE_PREFIX}${method.name}`, { method: method as UnaryMethod, handler });
  }
  /** Serves the request if it is a unary ArtifactService call over plain, uncompressed gRPC (answering true). `caller` was admitted from its headers. */
  return function handle(request: NodeRequest, response: NodeResponse, caller: Caller): boolean {
    if (request.method !== "POST") return false;
    const target = methods.get(request.url ?? "");
    if (target === undefined || !isPlainGrpc(request)) return false;
    const done = options.track();
    serve(options, target.method, target.handler, request, response, caller).then(done, (error: unknown) => {
      options.log(`${target.method.name} failed`, error);
      done();
    });
    return true;
  };
}

async function serve(
  options: GrpcUnaryRouteOptions,
  method: UnaryMethod,
  handler: UnaryHandler,
  request: http2.Http2ServerRequest,
  response: NodeResponse,
  caller: Caller,
): Promise<void> {
  const framing = openGrpcResponse(response);
  const timeoutMs = parseGrpcTimeout(request.headers["grpc-timeout"]);
  // Unary calls end with their deadline, the client or the server; a token revoked meanwhile is not checked again
  // (on the connect path neither: only calls that stay open are watched).
  const call = openCallSignal({ shutdownSignal: options.shutdownSignal, revocation: undefined, framing, timeoutMs, what: "call" });
  const contextValues = requestContextValues(request).set(callerKey, caller);
  try {
    const input = parseRequestMessage(method.input, await onlyMessageOf(request, options.readMaxBytes, call.signal));
    const context = createHandlerContext({
      service: ArtifactService,
      method,
      protocolName: "grpc",
      requestMethod: "POST",
      url: `http://${request.authority}${request.url}`,
      requestSignal: call.signal,
      contextValues,
      ...(timeoutMs !== undefined ? { timeoutMs } : {}),
    });
    const output = await handler(input, context);
    const answer = toBinary(method.output, isMessage(output, method.output) ? output : create(method.output, output as never));
    framing.start();
    await framing.write([envelopeHead(answer.byteLength), answer], call.signal);
    call.end();
    await framing.finish(undefined);
  } catch (error) {
    const status = options.answerFailure({ signal: call.signal, contextValues }, error, `${method.name} failed`);
    call.end();
    if (!framing.closed) await framing.finish(status);
  } finally {
    call.end();
  }
}

/**
 * The request's one message, once the client has finished its stream;
 * refused as connect-node refuses it when the body holds none or more than
 * one, a compressed one, or one larger than `readMaxBytes` (refused by its
 * declared length, before its bytes are read).
 */
async function onlyMessageOf(request: http2.Http2ServerRequest, readMaxBytes: number, signal: AbortSignal): Promise<Uint8Array> {
  const body = await wholeBody(request, readMaxBytes, signal);
  if (body.byteLength === 0) throw new ConnectError("protocol error: missing input message for unary method", Code.Unimplemented);
  if (body.byteLength < 5) throw new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument);
  if ((body[0]! & 1) === 1) throw new ConnectError("received compressed envelope, but do not know how to decompress", Code.Internal);
  const length = new DataView(body.buffer, body.byteOffset, body.byteLength).getUint32(1);
  if (body.byteLength < 5 + length) throw new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument);
  if (body.byteLength > 5 + length) throw new ConnectError("protocol error: received extra input message for unary method", Code.Unimplemented);
  return body.subarray(5);
}

/**
 * The request body, joined (a copy only when it came in more than one
 * buffer), until the client ends it or the call is aborted. Stops reading,
 * with RESOURCE_EXHAUSTED, as soon as a message head declares more than
 * `readMaxBytes` or more than that many bytes arrived.
 */
function wholeBody(request: http2.Http2ServerRequest, readMaxBytes: number, signal: AbortSignal): Promise<Uint8Array> {
  return new Promise<Uint8Array>((resolve, reject) => {
    const pieces: Buffer[] = [];
    let bytes = 0;
    let declared: number | undefined;
    const finish = (error: unknown, body?: Uint8Array) => {
      request.off("data", onData);
      request.off("end", onEnd);
      request.off("close", onClose);
      request.off("error", finish);
      signal.removeEventListener("abort", onAbort);
      if (error !== undefined) {
        // The response ends the stream (./grpc-response-framing.ts); nothing more of the body is wanted.
        request.pause();
        reject(error);
      } else resolve(body!);
    };
    const onData = (data: Buffer) => {
      pieces.push(data);
      bytes += data.byteLength;
      if (declared === undefined && bytes >= 5) declared = (pieces.length === 1 ? data : Buffer.concat(pieces, bytes)).readUInt32BE(1);
      if ((declared ?? 0) > readMaxBytes || bytes > readMaxBytes + 5) {
        finish(
          new ConnectError(`message size ${Math.max(declared ?? 0, bytes - 5)} is larger than configured readMaxBytes ${readMaxBytes}`, Code.ResourceExhausted),
        );
      }
    };
    const onEnd = () => finish(undefined, pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces, bytes));
    const onClose = () => finish(signal.aborted ? signal.reason : new ConnectError("the client cancelled the call", Code.Canceled));
    const onAbort = () => finish(signal.reason);
    if (signal.aborted) return onAbort();
    request.on("data", onData);
    request.once("end", onEnd);
    request.once("close", onClose);
    request.once("error", finish);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
