import { create, toBinary } from "@bufbuild/protobuf";
import type { ConnectError, ContextValues } from "@connectrpc/connect";
import type http2 from "node:http2";
import { readChunkFrames } from "@artifactd/api";
import { UploadRequestSchema, UploadResponseSchema } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import type { Caller } from "../artifact.ts";
import type { ArtifactService } from "../service/artifact-service.ts";
import type { UploadMessage } from "../service/upload-header.ts";
import { parseGrpcTimeout } from "./admission.ts";
import {
  envelopeHead,
  isPlainGrpc,
  type NodeRequest,
  type NodeResponse,
  openCallSignal,
  openGrpcResponse,
  parseRequestMessage,
} from "./grpc-response-framing.ts";
import { artifactToProto } from "./proto-conversion.ts";
import { assertNodeRequestCompleted, requestContextValues } from "./request-ended.ts";
import { uploadMessageFromProto } from "./upload-messages.ts";

/**
 * Upload over plain gRPC, read without the generic RPC machinery. The
 * benchmark showed the server paying 3–4 CPU-seconds per GiB uploaded, much
 * of it before the use case sees a byte: connect-node copies every message
 * into a buffer of its own, decodes it, and passes it through several async
 * iterators. Here the frames are split in place (readChunkFrames in
 * @artifactd/api, the same reader the Node SDK downloads with): a chunk
 * message (`bytes chunk = 2`, what the SDK writes) is never decoded, its
 * bytes go to the use case as they are, a view of the HTTP/2 stream's own
 * buffer when the message lies in one (see uploadMessagesOf). Header and
 * trailer messages are decoded with the generated schema and converted as on
 * the connect path.
 *
 * Everything else is the connect path's: the same use case and limits
 * (connect's message size limit, the idle timeout inside the use case, the
 * request's own deadline), the same check that the client finished its
 * stream rather than cancelled it (./request-ended.ts), and the same
 * mapping of failures to statuses (server.ts's answerFailure). Compressed
 * requests, Connect, gRPC-Web and JSON fall through to connect-node
 * (`handle` answers false).
 */
const UPLOAD_PATH = "/artifacts.v1.ArtifactService/Upload";

export interface GrpcUploadRouteOptions {
  readonly service: ArtifactService;
  /** Ends the upload when the caller's token is revoked or expires (see ./admission.ts for how callers are admitted). */
  readonly watchCaller?: ((caller: Caller) => { readonly signal: AbortSignal; release(): void }) | undefined;
  /** Aborts every upload in progress (server shutdown); the reason is the error they end with. */
  readonly shutdownSignal: AbortSignal;
  /** Called when an upload starts; the function it returns when it ends (graceful shutdown waits for these). */
  readonly track: () => () => void;
  /** The largest message accepted: connect-node's readMaxBytes. */
  readonly readMaxBytes: number;
  /** The status a failed call is answered with, as for every call through connect-node (server.ts). */
  readonly answerFailure: (call: { readonly signal: AbortSignal; readonly contextValues: ContextValues }, error: unknown, context: string) => ConnectError;
  readonly log: (message: string, error?: unknown) => void;
}

export function createGrpcUploadRoute(options: GrpcUploadRouteOptions) {
  /** Serves the request if it is an Upload over plain, uncompressed gRPC (answering true). `caller` was admitted from its headers. */
  return function handle(request: NodeRequest, response: NodeResponse, caller: Caller): boolean {
    if (request.method !== "POST" || request.url !== UPLOAD_PATH || !isPlainGrpc(request)) return false;
    const done = options.track();
    serve(options, request, response, caller).then(done, (error: unknown) => {
      options.log("Upload failed", error);
      done();
    });
    return true;
  };
}

async function serve(options: GrpcUploadRouteOptions, request: http2.Http2ServerRequest, response: NodeResponse, caller: Caller): Promise<void> {
  const framing = openGrpcResponse(response);
  const revocation = options.watchCaller?.(caller);
  const call = openCallSignal({
    shutdownSignal: options.shutdownSignal,
    revocation,
    framing,
    timeoutMs: parseGrpcTimeout(request.headers["grpc-timeout"]),
    what: "upload",
  });
  const { signal } = call;
  try {
    const messages = uploadMessagesOf(request, options.readMaxBytes, signal);
    const result = await options.service.upload(caller, messages, signal);
    const answer = toBinary(
      UploadResponseSchema,
      create(UploadResponseSchema, { artifact: artifactToProto(result.artifact), deduplicated: result.deduplicated }),
    );
    framing.start();
    await framing.write([envelopeHead(answer.byteLength), answer], signal);
    call.end();
    await framing.finish(undefined);
  } catch (error) {
    const failed = { signal, contextValues: requestContextValues(request) };
    const status = options.answerFailure(failed, revocation?.signal.aborted ? revocation.signal.reason : error, "Upload failed");
    call.end();
    if (!framing.closed) await framing.finish(status);
  } finally {
    call.end();
  }
}

/**
 * The request's frames as the use case's messages, one per UploadRequest;
 * ends only once the client finished its stream itself. A chunk message is
 * handed on as the views of the buffers it arrived in (most span several:
 * HTTP/2 delivers ~12 KiB at a time), never joined: the use case hashes each
 * piece and the sink copies each into its part buffer, so a message costs
 * one round of per-message work and no copy of its own. (Joining each
 * message first cost the server ~0.3 CPU-s per GiB and, with a fresh buffer
 * per message, most of its garbage collection; handing each piece on as a
 * message of its own cost a round of per-message work every ~12 KiB.)
 */
async function* uploadMessagesOf(request: http2.Http2ServerRequest, readMaxBytes: number, signal: AbortSignal): AsyncGenerator<UploadMessage> {
  let pieces: Uint8Array[] = [];
  let bytes = 0;
  for await (const frame of readChunkFrames(bodyOf(request, signal), readMaxBytes)) {
    if (frame.message !== undefined) {
      yield uploadMessageFromProto(parseRequestMessage(UploadRequestSchema, frame.message));
      continue;
    }
    pieces.push(frame.chunk);
    bytes += frame.chunk.byteLength;
    if (!frame.messageEnds) continue;
    yield { type: "chunk", pieces, byteLength: bytes };
    pieces = [];
    bytes = 0;
  }
  await assertNodeRequestCompleted(request, signal);
}

/** Bytes read ahead of the use case before the request is paused (HTTP/2 flow control then holds the client). */
const READ_AHEAD_BYTES = 1024 * 1024;

/**
 * The request body's buffers one by one, as they arrived, until it ends or
 * the call is aborted (its deadline, the server's shutdown, the token's
 * revocation: a read waiting for the client fails with the reason).
 *
 * Read in flowing mode, not with read() or the stream's async iterator:
 * those join everything buffered into one new buffer, a copy of every byte.
 * Stopping early leaves the request as it is: the response ends the stream
 * (./grpc-response-framing.ts).
 */
async function* bodyOf(request: http2.Http2ServerRequest, signal: AbortSignal): AsyncGenerator<Uint8Array> {
  const queue: Buffer[] = [];
  let queuedBytes = 0;
  let ended = false;
  let failure: { readonly error: unknown } | undefined;
  let wake: (() => void) | undefined;
  const notify = () => {
    const woken = wake;
    wake = undefined;
    woken?.();
  };
  const onData = (data: Buffer) => {
    queue.push(data);
    queuedBytes += data.byteLength;
    if (queuedBytes >= READ_AHEAD_BYTES) request.pause();
    notify();
  };
  const onEnd = () => {
    ended = true;
    notify();
  };
  const onError = (error: unknown) => {
    failure ??= { error };
    notify();
  };
  const onAbort = () => onError(signal.reason);
  request.on("data", onData);
  request.once("end", onEnd);
  request.once("close", onEnd);
  request.once("error", onError);
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    for (;;) {
      if (signal.aborted) throw signal.reason;
      if (failure) throw failure.error;
      const next = queue.shift();
      if (next !== undefined) {
        queuedBytes -= next.byteLength;
        yield next;
        continue;
      }
      if (ended) return;
      request.resume();
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
    }
  } finally {
    // Without a reader, a client still sending is held by flow control until the response ends the stream.
    request.pause();
    request.off("data", onData);
    request.off("end", onEnd);
    request.off("close", onEnd);
    request.off("error", onError);
    signal.removeEventListener("abort", onAbort);
  }
}
