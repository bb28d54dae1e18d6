import type http from "node:http";
import type http2 from "node:http2";

type NodeRequest = http.IncomingMessage | http2.Http2ServerRequest;
type NodeResponse = http.ServerResponse | http2.Http2ServerResponse;
type NodeHandler = (request: NodeRequest, response: NodeResponse) => void;

/**
 * grpc-message as the gRPC spec (PROTOCOL-HTTP2.md) asks and grpc-go sends
 * it: UTF-8, with only the bytes outside printable ASCII (0x20–0x7E) and `%`
 * itself percent-encoded. Clients that follow the spec (grpc-js, grpc-go)
 * decode exactly those and show every other byte as it is.
 */
export function encodeGrpcMessage(message: string): string {
  let encoded = "";
  for (const byte of Buffer.from(message, "utf8")) {
    encoded += byte < 0x20 || byte > 0x7e || byte === 0x25 ? `%${byte.toString(16).toUpperCase().padStart(2, "0")}` : String.fromCharCode(byte);
  }
  // HTTP/2 refuses a field value that starts or ends with a space (RFC 9113, 8.2.1: nghttp2 drops the whole field),
  // so a space there is percent-encoded too; every decoder decodes %20.
  return encoded.replace(/^ +| +$/g, (spaces) => "%20".repeat(spaces.length));
}

/**
 * connect-node percent-encodes grpc-message with encodeURIComponent, so a
 * grpc-js caller reads "is pinned%3A unpin it" where the server said "is
 * pinned: unpin it" (grpc-js decodes only what the spec encodes). This wraps
 * a connect-node adapter so that its gRPC and gRPC-Web answers carry the
 * message spec-encoded (encodeGrpcMessage), as the fast routes write it:
 *
 * - gRPC: the trailers, rewritten as connect-node hands them to the response
 *   (`addTrailers`).
 * - gRPC-Web: the trailers travel in the body, in the last message (flag
 *   0x80) as HTTP/1 header lines; connect-node writes each message in one
 *   `write`, so that message is rewritten as it is written.
 *
 * connect-node's encoding is decoded first (decodeURIComponent undoes
 * encodeURIComponent exactly), so nothing of the message is lost or encoded
 * twice. Connect answers carry their message in JSON and are left alone.
 */
export function sendGrpcMessagesAsSpecified(handler: NodeHandler): NodeHandler {
  return (request, response) => {
    const contentType = String(request.headers["content-type"] ?? "").toLowerCase();
    if (contentType.startsWith("application/grpc-web")) rewriteGrpcWebTrailerMessage(response);
    else if (contentType.startsWith("application/grpc")) rewriteTrailers(response);
    handler(request, response);
  };
}

function rewriteTrailers(response: NodeResponse): void {
  const addTrailers = response.addTrailers.bind(response) as (trailers: http.OutgoingHttpHeaders) => void;
  response.addTrailers = (trailers: http.OutgoingHttpHeaders) => {
    const message = trailers["grpc-message"];
    addTrailers(typeof message === "string" ? { ...trailers, "grpc-message": reencode(message) } : trailers);
  };
}

/** The flag of the gRPC-Web message that holds the trailers. */
const TRAILER_FLAG = 0x80;

function rewriteGrpcWebTrailerMessage(response: NodeResponse): void {
  const write = response.write.bind(response) as (chunk: unknown, ...rest: unknown[]) => boolean;
  response.write = ((chunk: unknown, ...rest: unknown[]) =>
    write(chunk instanceof Uint8Array ? withTrailerMessageReencoded(chunk) : chunk, ...rest)) as typeof response.write;
}

/**
 * The chunk with its trailer message's grpc-message line re-encoded, when
 * the chunk is whole messages and one of them is the trailer message; else
 * the chunk itself.
 */
function withTrailerMessageReencoded(chunk: Uint8Array): Uint8Array {
  const view = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  let offset = 0;
  while (offset + 5 <= view.byteLength) {
    const length = view.readUInt32BE(offset + 1);
    const end = offset + 5 + length;
    if (end > view.byteLength) return chunk;
    if ((view[offset]! & TRAILER_FLAG) === TRAILER_FLAG) {
      const lines = view.toString("utf8", offset + 5, end);
      const rewritten = lines.replace(/^(grpc-message:[ \t]*)(.*?)(\r?)$/im, (_, name: string, value: string, cr: string) => `${name}${reencode(value)}${cr}`);
      if (rewritten === lines) return chunk;
      const trailer = Buffer.from(rewritten, "utf8");
      const head = Buffer.allocUnsafe(5);
      head[0] = view[offset]!;
      head.writeUInt32BE(trailer.byteLength, 1);
      return Buffer.concat([view.subarray(0, offset), head, trailer, view.subarray(end)]);
    }
    offset = end;
  }
  return chunk;
}

/** connect-node's encodeURIComponent undone, then encoded as the spec asks; a value it did not encode is left as it is. */
function reencode(value: string): string {
  try {
    return encodeGrpcMessage(decodeURIComponent(value));
  } catch {
    return value;
  }
}
