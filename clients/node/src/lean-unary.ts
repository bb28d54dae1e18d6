import type http2 from "node:http2";
import { constants as http2constants } from "node:http2";
import { create, type DescMessage, type DescMethod, type DescMethodUnary, isMessage, type Message, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createContextValues, type Interceptor, type UnaryRequest, type UnaryResponse } from "@connectrpc/connect";
import {
  type Compression,
  createAsyncIterable,
  createMethodSerializationLookup,
  createMethodUrl,
  getAbortSignalReason,
  type MethodSerializationLookup,
  pipeTo,
  transformDecompressEnvelope,
  transformParseEnvelope,
  transformSplitEnvelope,
} from "@connectrpc/connect/protocol";
import { headerGrpcStatus, requestHeaderWithCompression, validateResponseWithCompression, validateTrailer } from "@connectrpc/connect/protocol-grpc";
import type { Http2SessionManager } from "@connectrpc/connect-node";

/** connect-node's default limits, which the transport this stands in for keeps. */
export const MAX_MESSAGE_BYTES = 0xffff_ffff;

/** What lean unary calls are sent with: the same as the generic transport they stand in for, and its HTTP/2 session manager. */
export interface LeanUnaryOptions {
  readonly baseUrl: string;
  readonly sessionManager: Http2SessionManager;
  readonly interceptors: Interceptor[];
  /** Response encodings accepted (advertised in grpc-accept-encoding, decoded when a response uses one). */
  readonly acceptCompression: Compression[];
  /** Framing of the methods that have their own (UploadPart's data around the caller's bytes); the same bytes as protobuf-es would write. */
  readonly framing?: ReadonlyMap<DescMethod, MessageFraming>;
}

/** How a method's request message becomes its gRPC frame, in pieces written as they are. */
export type MessageFraming = (message: never) => readonly Uint8Array[];

export type UnaryCall = <I extends DescMessage, O extends DescMessage>(
  method: DescMethodUnary<I, O>,
  signal: AbortSignal | undefined,
  timeoutMs: number | undefined,
  header: ConstructorParameters<typeof Headers>[0] | undefined,
  input: MessageInitShape<I>,
  contextValues?: ReturnType<typeof createContextValues>,
) => Promise<UnaryResponse<I, O>>;

type UnaryNext = (request: UnaryRequest) => Promise<UnaryResponse>;

/**
 * A unary gRPC call with as little machinery per call as the protocol
 * allows: the request encoded into one envelope, written on one HTTP/2
 * stream of the connection's session manager, the response's frames
 * collected from the stream's own events and decoded once.
 *
 * Why: connect's generic unary path cost the client 0.27–0.5 ms of CPU per
 * small call at 8 in flight, and 0.5–0.95 ms at 1 (SaveInline against a
 * minimal HTTP/2 server, process.cpuUsage over 4,000 calls; a raw
 * node:http2 client sending the same call: 0.04–0.07 and 0.07–0.2 ms). A
 * profile put most of it in the generic plumbing, not in gRPC:
 * async-iterable pipes and generators for a body of one message, the
 * universal HTTP client's sentinel (a ConnectError built per call just to
 * settle a race), Web Headers for every response header and trailer, and an
 * AbortController aborted at the end of every call (about 7 µs for the
 * DOMException alone). This path costs 0.07–0.09 ms at 8 in flight and
 * 0.15–0.2 ms at 1, what is left being mostly Node's HTTP/2 and
 * protobuf-es. Encoding, decoding, Web Headers for the request, connect's
 * status helpers and the interceptors cost a few µs each (the interceptors
 * were below the noise of the measurement), so they are kept.
 *
 * Behaviour is the generic path's: the same interceptors (the token, the
 * retry policy) around the call, the same request headers
 * (requestHeaderWithCompression: grpc-timeout, grpc-accept-encoding), a
 * local deadline and the caller's signal that end the stream (RST_STREAM
 * CANCEL for a cancel, INTERNAL_ERROR for anything else, as connect-node
 * does) and fail with the same ConnectError. A
 * response that is anything but one plain message with grpc-status 0 in its
 * trailers — an error status, a compressed message, an HTTP error, a
 * malformed body — is judged by connect's own code, word for word as its
 * gRPC transport does (validateResponseWithCompression, its envelope
 * transforms, validateTrailer), so errors, codes, details and metadata read
 * the same. Transport failures are mapped as connect-node maps them (its
 * mapping is not exported; see transportError).
 */
export function leanUnaryCalls(options: LeanUnaryOptions): UnaryCall {
  const { sessionManager, acceptCompression } = options;
  const targetOf = methodTargets(options.baseUrl, sessionManager, options.framing);

  const send: UnaryNext = (request) => {
    const target = targetOf(request.method as DescMethodUnary);
    return exchange(sessionManager, target, request, () => target.frame(request.message)).then((answer) =>
      readResponse(acceptCompression, target, request, answer),
    );
  };
  // Built once: the interceptors are the connection's own and keep no state per call.
  const next = options.interceptors.reduceRight<UnaryNext>((inner, interceptor) => interceptor(inner as never) as unknown as UnaryNext, send);

  return function unary<I extends DescMessage, O extends DescMessage>(
    method: DescMethodUnary<I, O>,
    signal: AbortSignal | undefined,
    timeoutMs: number | undefined,
    header: ConstructorParameters<typeof Headers>[0] | undefined,
    input: MessageInitShape<I>,
    contextValues?: ReturnType<typeof createContextValues>,
  ): Promise<UnaryResponse<I, O>> {
    return runLeanCall(signal, timeoutMs, (deadline, callSignal) =>
      next({
        stream: false,
        service: method.parent,
        method,
        requestMethod: "POST",
        url: targetOf(method).url,
        header: requestHeaderWithCompression(true, deadline, header, acceptCompression, null),
        contextValues: contextValues ?? createContextValues(),
        message: isMessage(input, method.input) ? input : create(method.input, input),
        signal: callSignal,
      }),
    ) as Promise<UnaryResponse<I, O>>;
  };
}

/**
 * The call around the attempts, as connect's runUnaryCall / runStreamingCall
 * run it: the call's own signal, which interceptors and the stream see,
 * aborted by the caller's signal or the local deadline (DEADLINE_EXCEEDED,
 * "the operation timed out"); once it is aborted, its reason is the error.
 * It is not aborted when the call succeeds (connect does, for an AbortError
 * that costs more than the rest of the bookkeeping): the listener and the
 * timer are removed instead.
 */
export async function runLeanCall<T>(
  signal: AbortSignal | undefined,
  timeoutMs: number | undefined,
  run: (deadline: number | undefined, callSignal: AbortSignal) => Promise<T>,
): Promise<T> {
  const deadline = timeoutMs !== undefined && timeoutMs > 0 ? timeoutMs : undefined;
  const call = new AbortController();
  const timer = deadline === undefined ? undefined : setTimeout(() => call.abort(new ConnectError("the operation timed out", Code.DeadlineExceeded)), deadline);
  const onCallerAbort = () => call.abort(getAbortSignalReason(signal!));
  if (signal?.aborted) onCallerAbort();
  else signal?.addEventListener("abort", onCallerAbort);
  try {
    return await run(deadline, call.signal);
  } catch (reason) {
    const error = call.signal.aborted ? ConnectError.from(getAbortSignalReason(call.signal), Code.Canceled) : ConnectError.from(reason);
    call.abort(error);
    throw error;
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener("abort", onCallerAbort);
  }
}

/** Where a lean call of a method goes, and how its messages are encoded and decoded. */
export interface MethodTarget extends StreamTarget {
  readonly url: string;
  readonly serialization: MethodSerializationLookup<DescMessage, DescMessage>;
  /** A request message as its frame: `framing`'s, or protobuf-es's encoding in one envelope. */
  readonly frame: (message: Message) => readonly Uint8Array[];
}

/** Each method's target on `baseUrl`, worked out the first time the method is called. */
export function methodTargets(
  baseUrl: string,
  sessionManager: Http2SessionManager,
  framing: ReadonlyMap<DescMethod, MessageFraming> | undefined,
): (method: DescMethod) => MethodTarget {
  const targets = new Map<DescMethod, MethodTarget>();
  return (method) => {
    let target = targets.get(method);
    if (target === undefined) {
      target = methodTarget(baseUrl, sessionManager, method, framing?.get(method));
      targets.set(method, target);
    }
    return target;
  };
}

/** The target of `method` on `baseUrl`, over the session manager's connection. */
function methodTarget(baseUrl: string, sessionManager: Http2SessionManager, method: DescMethod, framing?: MessageFraming): MethodTarget {
  const url = createMethodUrl(baseUrl, method);
  const parsed = new URL(url);
  const serialization = createMethodSerializationLookup(method, undefined, undefined, {
    readMaxBytes: MAX_MESSAGE_BYTES,
    writeMaxBytes: MAX_MESSAGE_BYTES,
  });
  const serialize = serialization.getI(true);
  return {
    url,
    path: parsed.pathname + parsed.search,
    // connect-node's check, so a base URL the session is not connected to fails as on the generic path.
    wrongOrigin:
      parsed.origin === sessionManager.authority
        ? undefined
        : `cannot make a request to ${parsed.origin}: the http2 session is connected to ${sessionManager.authority}`,
    serialization,
    frame: (framing as ((message: Message) => readonly Uint8Array[]) | undefined) ?? ((message) => [envelope(serialize.serialize(message))]),
  };
}

/** Where a lean call goes: the path of its method, and why it cannot go there (a base URL the session is not connected to). */
export interface StreamTarget {
  readonly path: string;
  readonly wrongOrigin: string | undefined;
}

/** What came back on the stream of one attempt: its response headers, its trailers (empty for a trailers-only answer), its body as received. */
export interface RawAnswer {
  readonly headers: http2.IncomingHttpHeaders;
  readonly trailers: http2.IncomingHttpHeaders;
  readonly chunks: Buffer[];
}

/**
 * One attempt: one HTTP/2 stream, the whole request body — the frames of
 * one message or of several (a client-streaming call whose messages are all
 * known) — written with its headers in one go, the response collected from
 * the stream's events. Shared by the unary calls here and the
 * client-streaming calls of ./lean-client-streaming.ts. `body` is built once
 * the call has passed its checks; a failure to build it fails the call
 * (INTERNAL, as transportError maps it). `onSent` is called once the body
 * is written.
 */
export function exchange(
  sessionManager: Http2SessionManager,
  target: StreamTarget,
  request: { readonly header: Headers; readonly signal: AbortSignal },
  body: () => readonly Uint8Array[],
  onSent?: () => void,
): Promise<RawAnswer> {
  const { signal } = request;
  return new Promise<RawAnswer>((resolve, reject) => {
    if (target.wrongOrigin !== undefined) return reject(new ConnectError(target.wrongOrigin, Code.Internal));
    if (signal.aborted) return reject(transportError(getAbortSignalReason(signal)));
    let stream: http2.ClientHttp2Stream | undefined;
    let settled = false;
    const fail = (reason: unknown) => {
      if (settled) return;
      settled = true;
      signal.removeEventListener("abort", onAbort);
      const error = transportError(reason);
      // connect-node's reset codes: CANCEL for a cancelled call, INTERNAL_ERROR for any other failure.
      if (stream !== undefined && !stream.closed) stream.close(error.code === Code.Canceled ? CANCEL : INTERNAL_ERROR);
      reject(error);
    };
    const onAbort = () => fail(getAbortSignalReason(signal));
    signal.addEventListener("abort", onAbort);

    let frames: readonly Uint8Array[];
    try {
      frames = body();
    } catch (error) {
      return fail(error);
    }
    const headers = nodeRequestHeaders(request.header);
    sessionManager.request("POST", target.path, headers, {}).then((opened) => {
      if (settled) {
        if (!opened.closed) opened.close(CANCEL);
        return;
      }
      stream = opened;
      let responseHeaders: http2.IncomingHttpHeaders | undefined;
      let trailers: http2.IncomingHttpHeaders | undefined;
      const chunks: Buffer[] = [];
      opened.on("response", (received) => {
        responseHeaders = received;
      });
      opened.on("data", (chunk: Buffer) => {
        chunks.push(chunk);
        // Keeps the session manager's keep-alive from pinging a connection that is plainly alive.
        sessionManager.notifyResponseByteRead(opened);
      });
      opened.on("trailers", (received) => {
        trailers = received;
      });
      opened.on("error", (error) => {
        // connect-node's exception: the server answered and closed before the request was all written; its answer counts.
        if (opened.writableEnded && nodeErrorCodes(error).includes("ERR_STREAM_WRITE_AFTER_END")) return;
        fail(error);
      });
      // The answer is judged once the stream is closed, not at its end: a stream reset under it (the connection
      // dropped) fails the call even after its headers, as on the generic path, whose body only ends at 'close'.
      opened.on("close", () => {
        const reset = resetError(opened.rstCode);
        if (reset !== undefined) return fail(reset);
        if (settled) return;
        // Closed cleanly before any answer: connect's generic path would wait for good; fail as an answer without status does.
        if (responseHeaders === undefined) return fail(new ConnectError("protocol error: missing status", Code.Internal));
        settled = true;
        signal.removeEventListener("abort", onAbort);
        resolve({ headers: responseHeaders, trailers: trailers ?? {}, chunks });
      });
      writeBody(opened, frames, onSent);
    }, fail);
  });
}

/**
 * The frames written and the stream ended: several frames are corked, so
 * that end() hands them to HTTP/2 in one writev rather than one write each.
 */
function writeBody(stream: http2.ClientHttp2Stream, frames: readonly Uint8Array[], onSent: (() => void) | undefined): void {
  const sent = onSent && ((error?: Error | null) => void (error ? undefined : onSent()));
  if (frames.length > 1) {
    stream.cork();
    for (let i = 0; i < frames.length - 1; i++) stream.write(frames[i]!);
  }
  if (frames.length === 0) stream.end(sent);
  else stream.end(frames[frames.length - 1]!, sent);
}

/** The gRPC envelope of one uncompressed message: a zero flag byte, the length, the message. */
export function envelope(message: Uint8Array): Uint8Array {
  const frame = new Uint8Array(5 + message.byteLength);
  new DataView(frame.buffer).setUint32(1, message.byteLength);
  frame.set(message, 5);
  return frame;
}

function nodeRequestHeaders(header: Headers): http2.OutgoingHttpHeaders {
  const headers: http2.OutgoingHttpHeaders = {};
  header.forEach((value, key) => {
    headers[key] = value;
  });
  return headers;
}

const GRPC_PROTO_CONTENT_TYPE = /^application\/grpc(?:\+proto)?$/i;

/**
 * The common answer — HTTP 200, a protobuf gRPC content type, no encoding,
 * no status in the headers, one uncompressed frame, grpc-status 0 and no
 * status details in the trailers — is decoded at once; every other answer is
 * judged as connect's gRPC transport judges it (judgeAsConnect).
 */
async function readResponse(acceptCompression: Compression[], target: MethodTarget, request: UnaryRequest, answer: RawAnswer): Promise<UnaryResponse> {
  const { headers, trailers, chunks } = answer;
  const body = plainAnswer(answer);
  if (body === undefined) return judgeAsConnect(acceptCompression, target, request, headers, trailers, chunks);
  const message = target.serialization.getO(true).parse(body);
  return new LeanUnaryResponse(request, message, headers, trailers);
}

/** The one message of the common answer, undefined for any other (which connect's own code must judge). */
export function plainAnswer({ headers, trailers, chunks }: RawAnswer): Uint8Array | undefined {
  const encoding = headers["grpc-encoding"] as string | undefined;
  const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
  const plain =
    // Node gives :status as a number, whatever its typings say.
    (headers[":status"] as unknown) === 200 &&
    GRPC_PROTO_CONTENT_TYPE.test(headers["content-type"] ?? "") &&
    (encoding === undefined || encoding.toLowerCase() === "identity") &&
    headers["grpc-status"] === undefined &&
    trailers["grpc-status"] === "0" &&
    trailers["grpc-status-details-bin"] === undefined &&
    body.byteLength >= 5 &&
    body[0] === 0 &&
    body.readUInt32BE(1) === body.byteLength - 5;
  return plain ? body.subarray(5) : undefined;
}

/** connect's gRPC transport's own reading of a unary response (protocol-grpc/transport.ts), on the bytes already received. */
async function judgeAsConnect(
  acceptCompression: Compression[],
  target: MethodTarget,
  request: UnaryRequest,
  nodeHeaders: http2.IncomingHttpHeaders,
  nodeTrailers: http2.IncomingHttpHeaders,
  chunks: Buffer[],
): Promise<UnaryResponse> {
  const header = webHeaders(nodeHeaders);
  const trailer = webHeaders(nodeTrailers);
  const { compression, headerError } = validateResponseWithCompression(acceptCompression, Number(nodeHeaders[":status"] ?? 0), header);
  const message = await pipeTo(
    createAsyncIterable(chunks as Uint8Array[]),
    transformSplitEnvelope(MAX_MESSAGE_BYTES),
    transformDecompressEnvelope(compression ?? null, MAX_MESSAGE_BYTES),
    transformParseEnvelope(target.serialization.getO(true)),
    onlyMessage,
    { propagateDownStreamError: false },
  );
  validateTrailer(trailer, header);
  if (message === undefined) {
    if (headerError) throw headerError;
    throw new ConnectError("protocol error: missing output message for unary method", trailer.has(headerGrpcStatus) ? Code.Unimplemented : Code.Unknown);
  }
  if (headerError) throw new ConnectError("protocol error: received output message for unary method with error status", Code.Unknown);
  return { stream: false, service: request.service, method: request.method, header, message, trailer };
}

/** The one message of a unary answer; a second is a protocol error, as on connect's unary transport. */
export async function onlyMessage<T>(messages: AsyncIterable<T>): Promise<T | undefined> {
  let only: T | undefined;
  for await (const message of messages) {
    if (only !== undefined) throw new ConnectError("protocol error: received extra output message for unary method", Code.Unimplemented);
    only = message;
  }
  return only;
}

/** Response headers and trailers as Web Headers (pseudo-headers left out), as connect-node builds them. */
export function webHeaders(nodeHeaders: http2.IncomingHttpHeaders): Headers {
  const headers = new Headers();
  for (const [key, value] of Object.entries(nodeHeaders)) {
    if (key.startsWith(":") || value === undefined) continue;
    if (Array.isArray(value)) for (const each of value) headers.append(key, each);
    else headers.append(key, String(value));
  }
  return headers;
}

/**
 * A successful answer's header and trailer, made Web Headers only when read:
 * the generated client reads them only for a caller's onHeader / onTrailer,
 * and building them for every call was a visible part of the generic path's
 * cost. Shared with ./lean-client-streaming.ts.
 */
export class LazyAnswerHeaders {
  #nodeHeaders: http2.IncomingHttpHeaders;
  #nodeTrailers: http2.IncomingHttpHeaders;
  #header: Headers | undefined;
  #trailer: Headers | undefined;

  constructor(headers: http2.IncomingHttpHeaders, trailers: http2.IncomingHttpHeaders) {
    this.#nodeHeaders = headers;
    this.#nodeTrailers = trailers;
  }

  get header(): Headers {
    this.#header ??= webHeaders(this.#nodeHeaders);
    return this.#header;
  }

  get trailer(): Headers {
    this.#trailer ??= webHeaders(this.#nodeTrailers);
    return this.#trailer;
  }
}

/** A successful unary response (its headers as LazyAnswerHeaders). */
class LeanUnaryResponse extends LazyAnswerHeaders implements UnaryResponse {
  readonly stream = false as const;
  readonly service: UnaryResponse["service"];
  readonly method: UnaryResponse["method"];
  readonly message: UnaryResponse["message"];

  constructor(request: UnaryRequest, message: UnaryResponse["message"], headers: http2.IncomingHttpHeaders, trailers: http2.IncomingHttpHeaders) {
    super(headers, trailers);
    this.service = request.service;
    this.method = request.method;
    this.message = message;
  }
}

const { NGHTTP2_INTERNAL_ERROR: INTERNAL_ERROR, NGHTTP2_CANCEL: CANCEL } = http2constants;

/** HTTP/2 reset codes as connect-node reads them (NO_ERROR and STREAM_CLOSED are not failures of their own). */
const RESET_CODES = new Map<number, [name: string, code: Code]>([
  [http2constants.NGHTTP2_PROTOCOL_ERROR, ["PROTOCOL_ERROR", Code.Internal]],
  [http2constants.NGHTTP2_INTERNAL_ERROR, ["INTERNAL_ERROR", Code.Internal]],
  [http2constants.NGHTTP2_FLOW_CONTROL_ERROR, ["FLOW_CONTROL_ERROR", Code.Internal]],
  [http2constants.NGHTTP2_SETTINGS_TIMEOUT, ["SETTINGS_TIMEOUT", Code.Internal]],
  [http2constants.NGHTTP2_FRAME_SIZE_ERROR, ["FRAME_SIZE_ERROR", Code.Internal]],
  [http2constants.NGHTTP2_REFUSED_STREAM, ["REFUSED_STREAM", Code.Unavailable]],
  [http2constants.NGHTTP2_CANCEL, ["CANCEL", Code.Canceled]],
  [http2constants.NGHTTP2_COMPRESSION_ERROR, ["COMPRESSION_ERROR", Code.Internal]],
  [http2constants.NGHTTP2_CONNECT_ERROR, ["CONNECT_ERROR", Code.Internal]],
  [http2constants.NGHTTP2_ENHANCE_YOUR_CALM, ["ENHANCE_YOUR_CALM", Code.ResourceExhausted]],
  [http2constants.NGHTTP2_INADEQUATE_SECURITY, ["INADEQUATE_SECURITY", Code.PermissionDenied]],
  [http2constants.NGHTTP2_HTTP_1_1_REQUIRED, ["HTTP_1_1_REQUIRED", Code.PermissionDenied]],
]);

function resetError(rstCode: number | undefined): ConnectError | undefined {
  const known = rstCode === undefined ? undefined : RESET_CODES.get(rstCode);
  return known && new ConnectError(`http/2 stream closed with error code ${known[0]} (0x${rstCode!.toString(16)})`, known[1]);
}

/**
 * A failure of Node's HTTP/2 or socket layer as a ConnectError, with the
 * codes connect-node gives them (its connectErrorFromNodeReason is not
 * exported): a stream cut under the call is ABORTED, an unreachable server
 * UNAVAILABLE, anything else INTERNAL; a ConnectError stays as it is.
 */
export function transportError(reason: unknown): ConnectError {
  if (reason instanceof ConnectError) return reason;
  const codes = nodeErrorCodes(reason);
  const code = codes.some((c) => c === "ERR_STREAM_WRITE_AFTER_END" || c === "ERR_STREAM_DESTROYED" || c === "ERR_HTTP2_INVALID_STREAM" || c === "ECONNRESET")
    ? Code.Aborted
    : codes.some((c) => c === "ETIMEDOUT" || c === "ENOTFOUND" || c === "EAI_AGAIN" || c === "ECONNREFUSED")
      ? Code.Unavailable
      : Code.Internal;
  const error = ConnectError.from(reason, code);
  if (error !== reason) error.cause = reason;
  return error;
}

/** The `code` of an error and of each error in its `cause` chain. */
function nodeErrorCodes(reason: unknown): string[] {
  const codes: string[] = [];
  const seen = new Set<unknown>();
  for (let at = reason; at instanceof Error && !seen.has(at); at = (at as { cause?: unknown }).cause) {
    seen.add(at);
    const code = (at as { code?: unknown }).code;
    if (typeof code === "string") codes.push(code);
  }
  return codes;
}
