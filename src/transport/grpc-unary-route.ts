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
import { POOLED_BODY_MIN_BYTES, type RequestBodyPool } from "./request-body-pool.ts";
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
  /** Where UploadPart's bodies (a part each) are read into, and given back once the call's handler has settled. */
  readonly partBodies: RequestBodyPool;
  /** The status a failed call is answered with, as for every call through connect-node (server.ts). */
  readonly answerFailure: (call: { readonly signal: AbortSignal; readonly contextValues: ContextValues }, error: unknown, context: string) => ConnectError;
  readonly log: (message: string, error?: unknown) => void;
}

type UnaryMethod = DescMethodUnary;
type UnaryHandler = (request: unknown, context: ReturnType<typeof createHandlerContext>) => Promise<unknown> | unknown;

export function createGrpcUnaryRoute(options: GrpcUnaryRouteOptions) {
  const methods = new Map<string, { readonly method: UnaryMethod; readonly handler: UnaryHandler; readonly bodies: RequestBodyPool | undefined }>();
  for (const method of ArtifactService.methods) {
    if (method.methodKind !== "unary") continue;
    const handler = (options.handlers as unknown as Record<string, UnaryHandler>)[method.localName]!.bind(options.handlers);
    // Only UploadPart's handler is known to hold no view of its request once it has settled (the session digests
    // copy the parts they keep), so only its bodies are pooled.
    const bodies = method.name === "UploadPart" ? options.partBodies : undefined;
    methods.set(`${ARTIFACT_SERVICE_PREFIX}${method.name}`, { method: method as UnaryMethod, handler, bodies });
  }
  /** Serves the request if it is a unary ArtifactService call over plain, uncompressed gRPC (answering true). `caller` was admitted from its headers. */
  return function handle(request: NodeRequest, response: NodeResponse, caller: Caller): boolean {
    if (request.method !== "POST") return false;
    const target = methods.get(request.url ?? "");
    if (target === undefined || !isPlainGrpc(request)) return false;
    const done = options.track();
    serve(options, target, request, response, caller).then(done, (error: unknown) => {
      options.log(`${target.method.name} failed`, error);
      done();
    });
    return true;
  };
}

async function serve(
  options: GrpcUnaryRouteOptions,
  { method, handler, bodies }: { readonly method: UnaryMethod; readonly handler: UnaryHandler; readonly bodies: RequestBodyPool | undefined },
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
  let pooled: Buffer | undefined;
  try {
    const body = await wholeBody(request, options.readMaxBytes, call.signal, bodies);
    pooled = body.pooled;
    const input = parseRequestMessage(method.input, onlyMessageOf(body.bytes));
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
    let output: unknown;
    try {
      output = await handler(input, context);
    } finally {
      // The handler has settled: nothing reads the request's bytes any more.
      if (pooled) bodies!.give(pooled);
      pooled = undefined;
    }
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
    if (pooled) bodies!.give(pooled);
  }
}

/**
 * The request's one message, from its whole body; refused as connect-node
 * refuses it when the body holds none or more than one, or a compressed one
 * (one larger than `readMaxBytes` was refused by wholeBody, by its declared
 * length, before its bytes were read).
 */
function onlyMessageOf(body: Uint8Array): Uint8Array {
  if (body.byteLength === 0) throw new ConnectError("protocol error: missing input message for unary method", Code.Unimplemented);
  if (body.byteLength < 5) throw new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument);
  if ((body[0]! & 1) === 1) throw new ConnectError("received compressed envelope, but do not know how to decompress", Code.Internal);
  const length = new DataView(body.buffer, body.byteOffset, body.byteLength).getUint32(1);
  if (body.byteLength < 5 + length) throw new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument);
  if (body.byteLength > 5 + length) throw new ConnectError("protocol error: received extra input message for unary method", Code.Unimplemented);
  return body.subarray(5);
}

/**
 * The request body, until the client ends it or the call is aborted: the
 * buffer it came in, or its buffers joined. With `pool`, a body whose message
 * head declares POOLED_BODY_MIN_BYTES or more is copied into a pooled buffer
 * as it arrives (`pooled`: give it back once the bytes are no longer read).
 * Stops reading, with RESOURCE_EXHAUSTED, as soon as a message head declares
 * more than `readMaxBytes` or more than that many bytes arrived.
 */
function wholeBody(
  request: http2.Http2ServerRequest,
  readMaxBytes: number,
  signal: AbortSignal,
  pool: RequestBodyPool | undefined,
): Promise<{ readonly bytes: Uint8Array; readonly pooled?: Buffer }> {
  return new Promise((resolve, reject) => {
    let pieces: Buffer[] = [];
    let bytes = 0;
    let declared: number | undefined;
    /** The pooled buffer the body is copied into once its size is known, or undefined while it is gathered in pieces. */
    let target: Buffer | undefined;
    const finish = (error: unknown, body?: { readonly bytes: Uint8Array; readonly pooled?: Buffer }) => {
      request.off("data", onData);
      request.off("end", onEnd);
      request.off("close", onClose);
      request.off("error", finish);
      signal.removeEventListener("abort", onAbort);
      if (error !== undefined) {
        if (target) pool!.give(target);
        target = undefined;
        // The response ends the stream (./grpc-response-framing.ts); nothing more of the body is wanted.
        request.pause();
        reject(error);
      } else resolve(body!);
    };
    const onData = (data: Buffer) => {
      if (target && bytes + data.byteLength > target.byteLength) {
        // More than its head declared (a second message, say): gathered as pieces again, for onlyMessageOf to refuse.
        pieces = [Buffer.from(target.subarray(0, bytes))];
        pool!.give(target);
        target = undefined;
      }
      if (target) target.set(data, bytes);
      else pieces.push(data);
      bytes += data.byteLength;
      if (declared === undefined && bytes >= 5) {
        declared = (pieces.length === 1 ? data : Buffer.concat(pieces, bytes)).readUInt32BE(1);
        // Pooled only while what arrived fits the declared message (more is refused below, from pieces).
        if (pool && declared >= POOLED_BODY_MIN_BYTES && declared <= readMaxBytes && bytes <= 5 + declared) {
          target = pool.take(5 + declared);
          let at = 0;
          for (const piece of pieces) {
            target.set(piece, at);
            at += piece.byteLength;
          }
          pieces = [];
        }
      }
      if ((declared ?? 0) > readMaxBytes || bytes > readMaxBytes + 5) {
        finish(
          new ConnectError(`message size ${Math.max(declared ?? 0, bytes - 5)} is larger than configured readMaxBytes ${readMaxBytes}`, Code.ResourceExhausted),
        );
      }
    };
    const onEnd = () => {
      if (target) finish(undefined, { bytes: target.subarray(0, bytes), pooled: target });
      else finish(undefined, { bytes: pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces, bytes) });
    };
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
