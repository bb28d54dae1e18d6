import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { ConnectError } from "@connectrpc/connect";
import { createNodeHttpClient, type Http2SessionManager } from "@connectrpc/connect-node";
import { createDeadlineSignal, createLinkedAbortController, getAbortSignalReason } from "@connectrpc/connect/protocol";
import { requestHeader, validateResponse, validateTrailer } from "@connectrpc/connect/protocol-grpc";
import { readChunkFrames } from "@artifactd/api";
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

/** Splits the body into DownloadResponses, content as views of the body's own buffers. Exported for its tests. */
export async function* readMessages(body: AsyncIterable<Uint8Array>): AsyncIterable<DownloadResponse> {
  for await (const frame of readChunkFrames(body)) {
    if (frame.message === undefined) yield { $typeName: DownloadResponseSchema.typeName, message: { case: "chunk", value: frame.chunk } };
    else yield fromBinary(DownloadResponseSchema, frame.message);
  }
}
