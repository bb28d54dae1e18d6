import { type DescMessage, fromBinary, type MessageShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type http from "node:http";
import http2 from "node:http2";
import { parseGrpcTimeout } from "./admission.ts";
import { encodeGrpcMessage } from "./grpc-message-encoding.ts";

/**
 * How the fast routes (./grpc-download-route.ts, ./grpc-upload-route.ts)
 * answer a call without connect-node: which requests are plain gRPC they can
 * take, and the response written straight onto the HTTP/2 stream (headers,
 * messages with backpressure, the status in trailers).
 */
export type NodeRequest = http.IncomingMessage | http2.Http2ServerRequest;
export type NodeResponse = http.ServerResponse | http2.Http2ServerResponse;

/** What the framings write to: an HTTP/2 stream, or a response. */
export interface Writable {
  write(chunk: Uint8Array, callback?: (error?: Error | null) => void): boolean;
  once(event: "drain" | "close", listener: () => void): unknown;
  off(event: "drain" | "close", listener: () => void): unknown;
}

/** One call's response, in the protocol it speaks. */
export interface ResponseFraming {
  /** Sends the response headers: messages follow. */
  start(): void;
  readonly started: boolean;
  /** The client went away, or the response is complete. */
  readonly closed: boolean;
  onClose(listener: () => void): void;
  /** Writes the bytes (message heads and content) in one corked batch, with backpressure. */
  write(pieces: readonly Uint8Array[], signal: AbortSignal): Promise<void>;
  /** Ends the response with the call's status: trailers, or the protocol's end-of-stream message. */
  finish(status: ConnectError | undefined): Promise<void>;
}

/**
 * Whether the request is plain gRPC over HTTP/2 with the binary format, an
 * uncompressed request and a valid grpc-timeout: what the fast routes take.
 * Anything else is connect-node's, which answers it as the protocol says.
 * Which response encodings a client accepts does not matter: the server
 * never compresses (see server.ts), so connect-node would answer
 * uncompressed as well.
 */
export function isPlainGrpc(request: NodeRequest): request is http2.Http2ServerRequest {
  const contentType = (request.headers["content-type"] ?? "").toLowerCase();
  if (!("stream" in request) || !/^application\/grpc(\+proto)?(;|$)/.test(contentType)) return false;
  return uncompressed(request, "grpc-encoding") && validGrpcTimeout(request);
}

/** The request's body is not compressed: the header is absent or says identity. */
export function uncompressed(request: NodeRequest, header: string): boolean {
  const value = request.headers[header];
  const joined = Array.isArray(value) ? value.join(",") : value;
  return joined === undefined || joined.trim() === "identity";
}

export function validGrpcTimeout(request: NodeRequest): boolean {
  try {
    parseGrpcTimeout(request.headers["grpc-timeout"]);
    return true;
  } catch {
    return false;
  }
}

/**
 * Plain gRPC: HTTP/2 only, the status in trailers (or, before any message, in
 * the headers: trailers-only). A client still sending its request when the
 * call ends (it failed early) is told to stop once the trailers are out:
 * RST_STREAM with NO_ERROR, as admission does (./admission.ts).
 */
export function openGrpcResponse(response: NodeResponse): ResponseFraming {
  const stream = (response as http2.Http2ServerResponse).stream;
  // The stream is answered here, not through the compatibility response, which would send its own (empty)
  // trailers first and leave no room for grpc-status.
  stream.removeAllListeners("wantTrailers");
  const request = (response as http2.Http2ServerResponse).req;
  let started = false;
  const stopRequestBody = () => {
    // What the client sent that no one will read is dropped: a paused request holding the end of its body never
    // lets the stream end, so it would never close (a client that finished sending just after the call failed).
    request.resume();
    setImmediate(() => {
      if (!stream.destroyed && !stream.closed && stream.state.remoteClose !== 1) stream.close(http2.constants.NGHTTP2_NO_ERROR);
    });
  };
  return {
    start() {
      stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
      started = true;
    },
    get started() {
      return started;
    },
    get closed() {
      return stream.destroyed || stream.closed;
    },
    onClose: (listener) => stream.once("close", listener),
    write: (pieces, signal) => writeCorked(stream, stream, pieces, signal),
    finish(status) {
      const trailers = grpcStatusHeaders(status);
      if (stream.destroyed || stream.closed) return Promise.resolve();
      return new Promise<void>((resolve) => {
        stream.once("close", () => resolve());
        if (!started) {
          stream.respond({ ":status": 200, "content-type": "application/grpc", ...trailers }, { endStream: true });
          stopRequestBody();
          return;
        }
        stream.once("wantTrailers", () => {
          try {
            stream.sendTrailers(trailers);
            stopRequestBody();
          } catch {
            // The stream closed under us: nothing more to tell.
          }
        });
        stream.end();
      });
    },
  };
}

/**
 * What ends a call on a fast route, as connect-node's calls end: the server's
 * shutdown, the caller's token revoked while the call is open, the client
 * gone (`what`: "upload" or "download"), or the call's deadline, each with
 * its reason. `end` lets go of them all once the call is over (it may be
 * called again): call it before the status goes out, since the stream's
 * 'close' that follows is otherwise taken for the client going away.
 */
export function openCallSignal(options: {
  readonly shutdownSignal: AbortSignal;
  readonly revocation: { readonly signal: AbortSignal; release(): void } | undefined;
  readonly framing: Pick<ResponseFraming, "onClose">;
  readonly timeoutMs: number | undefined;
  readonly what: string;
}): { readonly signal: AbortSignal; end(): void } {
  const { shutdownSignal, revocation } = options;
  const controller = new AbortController();
  const onShutdown = () => controller.abort(shutdownSignal.reason);
  const onRevoked = () => controller.abort(revocation!.signal.reason);
  shutdownSignal.addEventListener("abort", onShutdown, { once: true });
  revocation?.signal.addEventListener("abort", onRevoked, { once: true });
  let ended = false;
  // Once the call has ended, the stream closing is its own end, not the client going away: nothing to abort (an
  // abort builds an error with its stack, and wakes every listener of the signal, on every call).
  options.framing.onClose(() => {
    if (!ended) controller.abort(new ConnectError(`the client cancelled the ${options.what}`, Code.Canceled));
  });
  // connect-node's words for a passed deadline.
  const deadline =
    options.timeoutMs === undefined
      ? undefined
      : setTimeout(() => controller.abort(new ConnectError("the operation timed out", Code.DeadlineExceeded)), options.timeoutMs);
  return {
    signal: controller.signal,
    end() {
      if (ended) return;
      ended = true;
      clearTimeout(deadline);
      shutdownSignal.removeEventListener("abort", onShutdown);
      revocation?.signal.removeEventListener("abort", onRevoked);
      revocation?.release();
    },
  };
}

/** grpc-status, grpc-message and the error's metadata (a quota's retry-after-ms), as connect-node sends them. */
export function grpcStatusHeaders(status: ConnectError | undefined): Record<string, string> {
  if (!status) return { "grpc-status": "0" };
  return {
    ...Object.fromEntries(status.metadata),
    "grpc-status": String(status.code),
    "grpc-message": encodeGrpcMessage(status.rawMessage),
  };
}

/** The 5-byte gRPC envelope head: flags (0: uncompressed) and the message length. */
export function envelopeHead(messageBytes: number): Buffer {
  const head = Buffer.allocUnsafe(5);
  head[0] = 0;
  head.writeUInt32BE(messageBytes, 1);
  return head;
}

/**
 * Writes a message's head and its pieces as they are, in one corked batch
 * (one writev, not a write per piece). When the stream asks to wait, waits
 * until it drains or has written the last piece (an HTTP/1.1 response that
 * buffered the writes before its socket took them emits no drain of its
 * own), or ends, or the call is aborted.
 */
export async function writeCorked(
  corkable: { cork(): void; uncork(): void },
  writable: Writable,
  pieces: readonly Uint8Array[],
  signal: AbortSignal,
): Promise<void> {
  let written: (() => void) | undefined;
  let isWritten = false;
  const onWritten = () => {
    isWritten = true;
    written?.();
  };
  corkable.cork();
  let flowing = true;
  for (let i = 0; i < pieces.length; i++) flowing = i === pieces.length - 1 ? writable.write(pieces[i]!, onWritten) : writable.write(pieces[i]!);
  corkable.uncork();
  if (flowing || isWritten) return;
  await new Promise<void>((resolve) => {
    const settle = () => {
      written = undefined;
      writable.off("drain", settle);
      writable.off("close", settle);
      signal.removeEventListener("abort", settle);
      resolve();
    };
    written = settle;
    writable.once("drain", settle);
    writable.once("close", settle);
    signal.addEventListener("abort", settle, { once: true });
  });
  if (signal.aborted) throw signal.reason;
}

/** A request message decoded with its schema, refused as connect-node refuses one its schema cannot read. */
export function parseRequestMessage<S extends DescMessage>(schema: S, bytes: Uint8Array): MessageShape<S> {
  try {
    return fromBinary(schema, bytes);
  } catch (error) {
    throw new ConnectError(`parse binary: ${error instanceof Error ? error.message : String(error)}`, Code.Internal);
  }
}
