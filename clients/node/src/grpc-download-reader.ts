import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { createNodeHttpClient, type Http2SessionManager } from "@connectrpc/connect-node";
import { createDeadlineSignal, createLinkedAbortController, getAbortSignalReason } from "@connectrpc/connect/protocol";
import { requestHeader, validateResponse, validateTrailer } from "@connectrpc/connect/protocol-grpc";
import { type DownloadRequest, DownloadRequestSchema, type DownloadResponse, DownloadResponseSchema } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";

/**
 * The Download call over plain gRPC, read without connect's message
 * decoding: connect copies every message into a buffer of its own before
 * decoding it, a copy of every downloaded byte that the client's CPU pays
 * for (the download is bound by the CPU of both ends on a busy machine). Here
 * a content message's bytes are handed on as views of the HTTP/2 stream's own
 * buffers: a message split across buffers comes out in several pieces, which
 * callers of `content` never see as messages anyway. The artifact message,
 * and any message that is not a bare `chunk`, is decoded whole with the
 * generated schema.
 *
 * The request, the response's headers and trailers, and every transport
 * failure pass through connect's own gRPC and HTTP/2 code (requestHeader,
 * validateResponse, validateTrailer, the Node HTTP/2 client over the same
 * session manager), so a call fails with the same ConnectErrors as through
 * the generated client, and is retried and resumed alike.
 */
export type DownloadReader = (request: DownloadRequest, options: { signal?: AbortSignal; timeoutMs?: number }) => AsyncIterable<DownloadResponse>;

const DOWNLOAD_PATH = "/artifacts.v1.ArtifactService/Download";

export function createGrpcDownloadReader(baseUrl: string, sessionManager: Http2SessionManager, headers: () => Record<string, string>): DownloadReader {
  const httpClient = createNodeHttpClient({ httpVersion: "2", sessionProvider: () => sessionManager });
  const url = new URL(DOWNLOAD_PATH.slice(1), baseUrl.endsWith("/") ? baseUrl : `${baseUrl}/`).toString();
  return async function* download(request, options) {
    const deadline = createDeadlineSignal(options.timeoutMs);
    const controller = createLinkedAbortController(options.signal, deadline.signal);
    try {
      const message = toBinary(DownloadRequestSchema, request);
      const envelope = new Uint8Array(5 + message.byteLength);
      new DataView(envelope.buffer).setUint32(1, message.byteLength);
      envelope.set(message, 5);
      const response = await httpClient({
        url,
        method: "POST",
        header: requestHeader(true, options.timeoutMs, headers()),
        body: (async function* () {
          yield envelope;
        })(),
        signal: controller.signal,
      });
      const { foundStatus, headerError } = validateResponse(response.status, response.header);
      if (headerError) throw headerError;
      yield* readMessages(response.body);
      if (!foundStatus) validateTrailer(response.trailer, response.header);
    } catch (error) {
      throw ConnectError.from(controller.signal.aborted ? getAbortSignalReason(controller.signal) : error);
    } finally {
      deadline.cleanup();
      // Ends the HTTP/2 stream when the reader stopped early (or failed); a no-op after the trailers.
      controller.abort();
    }
  };
}

/** The `chunk` field's tag: field 2, length-delimited. */
const CHUNK_TAG = (2 << 3) | 2;

/** Splits the body into DownloadResponses, content as views of the body's own buffers. Exported for its tests. */
export async function* readMessages(body: AsyncIterable<Uint8Array>): AsyncIterable<DownloadResponse> {
  const queue = new ByteQueue();
  /** Bytes of the current message still to come: its head not yet read when undefined. */
  let messageBytes: number | undefined;
  /** Content bytes of the current bare-chunk message still to hand on. */
  let chunkLeft = 0;
  for await (const data of body) {
    queue.push(data);
    for (;;) {
      if (chunkLeft > 0) {
        if (queue.bytes === 0) break;
        for (const piece of queue.take(Math.min(chunkLeft, queue.bytes))) {
          chunkLeft -= piece.byteLength;
          yield { $typeName: DownloadResponseSchema.typeName, message: { case: "chunk", value: piece } };
        }
        if (chunkLeft > 0) break;
        messageBytes = undefined;
        continue;
      }
      if (messageBytes === undefined) {
        if (queue.bytes < 5) break;
        const head = queue.copy(5);
        if ((head[0]! & 1) === 1) throw new ConnectError("protocol error: received a compressed message without grpc-encoding", Code.Internal);
        messageBytes = new DataView(head.buffer, head.byteOffset).getUint32(1);
      }
      // A bare chunk message is the tag, the varint length, the bytes: up to 6 bytes tell whether this is one.
      const prefix = chunkPrefixLength(queue, messageBytes);
      if (prefix === "more") break;
      if (prefix !== undefined) {
        queue.take(prefix);
        chunkLeft = messageBytes - prefix;
        if (chunkLeft === 0) messageBytes = undefined;
        continue;
      }
      if (queue.bytes < messageBytes) break;
      yield fromBinary(DownloadResponseSchema, queue.copy(messageBytes));
      messageBytes = undefined;
    }
  }
  if (messageBytes !== undefined || queue.bytes > 0) throw new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument);
}

/**
 * The length of the tag and varint before a bare `chunk` message's bytes (a message holding the chunk field and
 * nothing else), undefined for any other message, "more" while too few bytes have arrived to tell.
 */
function chunkPrefixLength(queue: ByteQueue, messageBytes: number): number | "more" | undefined {
  const wanted = Math.min(messageBytes, 6);
  if (wanted < 2) return undefined;
  if (queue.bytes < wanted) return "more";
  const prefix = queue.peek(wanted);
  if (prefix[0] !== CHUNK_TAG) return undefined;
  let length = 0;
  for (let i = 1; i < wanted; i++) {
    const byte = prefix[i]!;
    length += (byte & 0x7f) * 2 ** (7 * (i - 1));
    if (byte < 0x80) return i + 1 + length === messageBytes ? i + 1 : undefined;
  }
  return undefined;
}

/** Buffers as they arrived, taken from the front as views (no copy) or, for a few bytes, copied. */
class ByteQueue {
  readonly #pieces: Uint8Array[] = [];
  bytes = 0;

  push(piece: Uint8Array): void {
    if (piece.byteLength === 0) return;
    this.#pieces.push(piece);
    this.bytes += piece.byteLength;
  }

  /** Removes the first `count` bytes (count <= bytes), as views of the buffers they are in. */
  take(count: number): Uint8Array[] {
    const taken: Uint8Array[] = [];
    while (count > 0) {
      const first = this.#pieces[0]!;
      if (first.byteLength <= count) {
        this.#pieces.shift();
        taken.push(first);
        count -= first.byteLength;
        this.bytes -= first.byteLength;
      } else {
        taken.push(first.subarray(0, count));
        this.#pieces[0] = first.subarray(count);
        this.bytes -= count;
        count = 0;
      }
    }
    return taken;
  }

  /** Removes the first `count` bytes as one buffer: a view when they are in one buffer, else a copy. */
  copy(count: number): Uint8Array {
    const taken = this.take(count);
    return taken.length === 1 ? taken[0]! : Buffer.concat(taken, count);
  }

  /** The first `count` bytes (count <= bytes), left in place. */
  peek(count: number): Uint8Array {
    const first = this.#pieces[0]!;
    if (first.byteLength >= count) return first.subarray(0, count);
    const bytes = new Uint8Array(count);
    let offset = 0;
    for (const piece of this.#pieces) {
      const part = piece.subarray(0, count - offset);
      bytes.set(part, offset);
      offset += part.byteLength;
      if (offset === count) break;
    }
    return bytes;
  }
}
