import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type http2 from "node:http2";
import type { Caller } from "../artifact.ts";
import { DownloadRequestSchema, DownloadResponseSchema } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import type { ArtifactService } from "../service/artifact-service.ts";
import type { ContentMessage } from "../service/download-artifact.ts";
import { encodeGrpcMessage, parseGrpcTimeout } from "./admission.ts";
import { toConnectError } from "./connect-error-mapping.ts";
import { artifactToProto, int64FromProto } from "./proto-conversion.ts";

/**
 * Download over plain gRPC (HTTP/2, binary protobuf, no compression), the
 * path Node and grpc-js clients take, written to the HTTP/2 stream without
 * the generic RPC machinery: each content message goes out as a 7–10 byte
 * frame head (gRPC envelope + the protobuf tag and length of
 * DownloadResponse.chunk) followed by the pieces the blob store read it in
 * (service/download-artifact.ts, ContentMessage), all in one corked write,
 * so the bytes are never copied by the server. The benchmark showed the
 * server bound by CPU on downloads, a quarter of it spent encoding and
 * re-framing chunks and collecting the garbage that made.
 *
 * Same use case, same validation, same errors as every other path
 * (service.download, toConnectError); the wire format is the one protoc-gen-es
 * would produce, which the interop and protocol tests read with independent
 * clients. Everything else — gRPC-Web, Connect, JSON, compressed requests —
 * falls through to connect-node (`handle` answers false).
 */
export const DOWNLOAD_PATH = "/artifacts.v1.ArtifactService/Download";

/** The largest DownloadRequest accepted: an id and two integers. */
const MAX_REQUEST_BYTES = 64 * 1024;

export interface GrpcDownloadRouteOptions {
  readonly service: ArtifactService;
  /** Ends the download when the caller's token is revoked or expires (see ./admission.ts for how callers are admitted). */
  readonly watchCaller?: ((caller: Caller) => { readonly signal: AbortSignal; release(): void }) | undefined;
  /** Aborts every download in progress (server shutdown); the reason is the error they end with. */
  readonly shutdownSignal: AbortSignal;
  /** Called when a download starts; the function it returns when it ends (graceful shutdown waits for these). */
  readonly track: () => () => void;
  readonly log: (message: string, error?: unknown) => void;
}

export function createGrpcDownloadRoute(options: GrpcDownloadRouteOptions) {
  /** Serves the request if it is a plain-gRPC Download (answering true); `caller` was admitted from its headers. */
  return function handle(request: http2.Http2ServerRequest, response: http2.Http2ServerResponse, caller: Caller): boolean {
    if (request.method !== "POST" || request.url !== DOWNLOAD_PATH) return false;
    if (!/^application\/grpc(\+proto)?(;|$)/i.test(request.headers["content-type"] ?? "")) return false;
    const encoding = request.headers["grpc-encoding"];
    if (encoding !== undefined && encoding !== "identity") return false;
    const done = options.track();
    // The stream is answered here, not through the compatibility response, which would send its own (empty)
    // trailers first and leave no room for grpc-status.
    response.stream.removeAllListeners("wantTrailers");
    serve(options, request, response.stream, caller).then(done, (error: unknown) => {
      options.log("Download failed", error);
      done();
    });
    return true;
  };
}

async function serve(options: GrpcDownloadRouteOptions, request: http2.Http2ServerRequest, stream: http2.ServerHttp2Stream, caller: Caller): Promise<void> {
  const controller = new AbortController();
  const abort = (reason: unknown) => controller.abort(reason);
  const onShutdown = () => abort(options.shutdownSignal.reason);
  options.shutdownSignal.addEventListener("abort", onShutdown, { once: true });
  const revocation = options.watchCaller?.(caller);
  const onRevoked = () => abort(revocation!.signal.reason);
  revocation?.signal.addEventListener("abort", onRevoked, { once: true });
  stream.once("close", () => abort(new ConnectError("the client cancelled the download", Code.Canceled)));
  let deadline: NodeJS.Timeout | undefined;
  let headersSent = false;
  try {
    const timeoutMs = parseGrpcTimeout(request.headers["grpc-timeout"]);
    if (timeoutMs !== undefined) {
      deadline = setTimeout(() => abort(new ConnectError("the call's deadline passed", Code.DeadlineExceeded)), timeoutMs);
    }
    const message = fromBinary(DownloadRequestSchema, await readSingleMessage(request));
    const { artifact, content } = await options.service.download(
      caller,
      {
        id: message.id,
        offset: int64FromProto("offset", message.offset),
        length: message.length === undefined ? undefined : int64FromProto("length", message.length),
      },
      controller.signal,
    );
    if (controller.signal.aborted) throw controller.signal.reason;
    stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
    headersSent = true;
    const first = toBinary(DownloadResponseSchema, create(DownloadResponseSchema, { message: { case: "artifact", value: artifactToProto(artifact) } }));
    await write(stream, Buffer.concat([envelopeHead(first.byteLength), first]), controller.signal);
    for await (const message of content) {
      if (controller.signal.aborted) throw controller.signal.reason;
      await writeMessage(stream, message, controller.signal);
    }
    if (controller.signal.aborted) throw controller.signal.reason;
    await finish(stream, { "grpc-status": "0" });
  } catch (error) {
    const status = toConnectError(controller.signal.aborted ? controller.signal.reason : error, (e) => options.log("Download failed", e));
    // The refusal's metadata (a quota's retry-after-ms) travels with the status, as connect-node sends it.
    const trailers: Record<string, string> = {
      ...Object.fromEntries(status.metadata),
      "grpc-status": String(status.code),
      "grpc-message": encodeGrpcMessage(status.rawMessage),
    };
    if (stream.destroyed || stream.closed) return;
    if (headersSent) await finish(stream, trailers);
    else {
      // Trailers-only: the status travels in the response headers.
      stream.respond({ ":status": 200, "content-type": "application/grpc", ...trailers }, { endStream: true });
    }
  } finally {
    if (deadline) clearTimeout(deadline);
    options.shutdownSignal.removeEventListener("abort", onShutdown);
    revocation?.signal.removeEventListener("abort", onRevoked);
    revocation?.release();
  }
}

/** Reads the request body: exactly one uncompressed gRPC message. */
async function readSingleMessage(request: http2.Http2ServerRequest): Promise<Uint8Array> {
  const pieces: Buffer[] = [];
  let size = 0;
  for await (const piece of request as AsyncIterable<Buffer>) {
    size += piece.byteLength;
    if (size > MAX_REQUEST_BYTES + 5) throw new ConnectError(`a DownloadRequest must be under ${MAX_REQUEST_BYTES} bytes`, Code.ResourceExhausted);
    pieces.push(piece);
  }
  const body = Buffer.concat(pieces, size);
  if (body.byteLength < 5) throw new ConnectError("the request holds no DownloadRequest message", Code.InvalidArgument);
  if ((body[0]! & 1) === 1) throw new ConnectError("a compressed request needs grpc-encoding; send it uncompressed", Code.Internal);
  const length = body.readUInt32BE(1);
  if (body.byteLength !== 5 + length) throw new ConnectError("a Download call takes exactly one DownloadRequest message", Code.InvalidArgument);
  return body.subarray(5);
}

/** The 5-byte gRPC envelope head: flags (0: uncompressed) and the message length. */
function envelopeHead(messageBytes: number): Buffer {
  const head = Buffer.allocUnsafe(5);
  head[0] = 0;
  head.writeUInt32BE(messageBytes, 1);
  return head;
}

/** Envelope head plus DownloadResponse's `bytes chunk = 2` tag and length: what precedes a chunk's bytes on the wire. */
function chunkHead(chunkBytes: number): Buffer {
  const varint: number[] = [];
  for (let v = chunkBytes; ; v = Math.floor(v / 128)) {
    if (v < 128) {
      varint.push(v);
      break;
    }
    varint.push((v % 128) | 128);
  }
  const head = Buffer.allocUnsafe(5 + 1 + varint.length);
  head[0] = 0;
  head.writeUInt32BE(1 + varint.length + chunkBytes, 1);
  head[5] = (2 << 3) | 2; // field 2, length-delimited
  head.set(varint, 6);
  return head;
}

/**
 * Writes one content message — its head, then its pieces as they are — in one
 * corked batch (one writev into nghttp2, not a write per piece), with
 * backpressure like `write`.
 */
async function writeMessage(stream: http2.ServerHttp2Stream, message: ContentMessage, signal: AbortSignal): Promise<void> {
  let bytes = 0;
  for (const piece of message) bytes += piece.byteLength;
  stream.cork();
  let flowing = stream.write(chunkHead(bytes));
  for (const piece of message) flowing = stream.write(piece);
  stream.uncork();
  if (!flowing) await drained(stream, signal);
}

/** Writes with backpressure: waits for the stream to drain (or to end, or the call to be aborted). */
async function write(stream: http2.ServerHttp2Stream, data: Uint8Array, signal: AbortSignal): Promise<void> {
  if (!stream.write(data)) await drained(stream, signal);
}

async function drained(stream: http2.ServerHttp2Stream, signal: AbortSignal): Promise<void> {
  await new Promise<void>((resolve) => {
    const settle = () => {
      stream.off("drain", settle);
      stream.off("close", settle);
      signal.removeEventListener("abort", settle);
      resolve();
    };
    stream.once("drain", settle);
    stream.once("close", settle);
    signal.addEventListener("abort", settle, { once: true });
  });
  if (signal.aborted) throw signal.reason;
}

/** Ends the response with these trailers, once everything before them is written. */
function finish(stream: http2.ServerHttp2Stream, trailers: Record<string, string>): Promise<void> {
  return new Promise<void>((resolve) => {
    if (stream.destroyed || stream.closed) return resolve();
    stream.once("wantTrailers", () => {
      try {
        stream.sendTrailers(trailers);
      } catch {
        // The stream closed under us: nothing more to tell.
      }
    });
    stream.once("close", () => resolve());
    stream.end();
  });
}
