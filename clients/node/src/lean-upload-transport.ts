import { create, isMessage, type DescMessage, type DescMethodClientStreaming, type DescMethodStreaming, type MessageInitShape } from "@bufbuild/protobuf";
import { createContextValues, type StreamResponse, type Transport } from "@connectrpc/connect";
import {
  createMethodSerializationLookup,
  createMethodUrl,
  encodeEnvelope,
  pipe,
  runStreamingCall,
  type UniversalClientFn,
  transformParseEnvelope,
  transformSplitEnvelope,
} from "@connectrpc/connect/protocol";
import { requestHeader, validateResponse, validateTrailer } from "@connectrpc/connect/protocol-grpc";
import { chunkFrameHead } from "@artifactd/api";
import { ArtifactService, type UploadPartRequest, type UploadRequest, UploadRequestSchema } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import { uploadPartFrames } from "./lean-upload-part.ts";
import type { WholeUpload } from "./artifact-writer.ts";
import { leanClientStreamingCalls } from "./lean-client-streaming.ts";
import { type LeanUnaryOptions, leanUnaryCalls, type MessageFraming } from "./lean-unary.ts";

/** What the calls framed by hand are sent with: the same as the transport they stand in for, and its HTTP/2 session manager. */
export interface LeanTransportOptions extends Omit<LeanUnaryOptions, "framing"> {
  /** Upload's streaming calls go through connect's HTTP client over the same session manager. */
  readonly httpClient: UniversalClientFn;
}

/**
 * The gRPC transport, except that Upload's chunk messages, and UploadPart's
 * data (./lean-upload-part.ts), are framed by hand around the caller's own
 * bytes.
 *
 * Every unary call, UploadPart included, takes the lean unary path
 * (./lean-unary.ts): one frame on one HTTP/2 stream of the same session
 * manager, without connect's generic per-call machinery.
 *
 * Connect's generic path encodes every message with protobuf-es: a 1 MiB
 * chunk is copied into a growing buffer, then again into its gRPC envelope.
 * Those copies, and the garbage they leave, were most of the client's CPU
 * per uploaded byte (5.4 CPU-s per GiB in a profile of the benchmark's
 * upload, against 0.3 for a direct S3 multipart upload). A chunk message
 * is one length-delimited field, so its frame is a few bytes of head —
 * the 5-byte envelope, the field's tag and the chunk's length — followed
 * by the chunk unchanged: both are handed to the HTTP/2 stream as they
 * are. The bytes on the wire are the same as protobuf-es would write.
 * Header and trailer messages, the response, the streaming calls, and the
 * errors of all of them take connect's own code (its protocol helpers),
 * so statuses and transport failures read exactly as on the generic path.
 */
export function withLeanUploads(inner: Transport, options: LeanTransportOptions): Transport {
  const upload = ArtifactService.method.upload;
  const uploadPart = ArtifactService.method.uploadPart;
  const serialization = createMethodSerializationLookup(upload, undefined, undefined, { readMaxBytes: 0xffffffff, writeMaxBytes: 0xffffffff });
  const partSerialization = createMethodSerializationLookup(uploadPart, undefined, undefined, { readMaxBytes: 0xffffffff, writeMaxBytes: 0xffffffff });
  const partFraming: MessageFraming = (message: UploadPartRequest) => uploadPartFrames(message, (part) => partSerialization.getI(true).serialize(part));
  const unary = leanUnaryCalls({ ...options, framing: new Map([[uploadPart, partFraming]]) });
  return {
    unary,
    stream<I extends DescMessage, O extends DescMessage>(
      method: DescMethodStreaming<I, O>,
      signal: AbortSignal | undefined,
      timeoutMs: number | undefined,
      header: ConstructorParameters<typeof Headers>[0] | undefined,
      input: AsyncIterable<MessageInitShape<I>>,
      contextValues?: ReturnType<typeof createContextValues>,
    ): Promise<StreamResponse<I, O>> {
      if (method !== (upload as unknown)) return inner.stream(method, signal, timeoutMs, header, input, contextValues);
      const deadline = timeoutMs !== undefined && timeoutMs > 0 ? timeoutMs : undefined;
      return runStreamingCall<I, O>({
        interceptors: options.interceptors,
        ...(signal ? { signal } : {}),
        ...(deadline !== undefined ? { timeoutMs: deadline } : {}),
        req: {
          stream: true,
          service: method.parent,
          method,
          requestMethod: "POST",
          url: createMethodUrl(options.baseUrl, method),
          header: requestHeader(true, deadline, header),
          contextValues: contextValues ?? createContextValues(),
          message: input,
        },
        next: async (req) => {
          const response = await options.httpClient({
            url: req.url,
            method: "POST",
            header: req.header,
            signal: req.signal,
            body: uploadFrames(req.message as AsyncIterable<MessageInitShape<typeof UploadRequestSchema>>, (message) =>
              serialization.getI(true).serialize(message),
            ),
          });
          const { foundStatus, headerError } = validateResponse(response.status, response.header);
          if (headerError) throw headerError;
          return {
            ...req,
            header: response.header,
            trailer: response.trailer,
            message: pipe(
              response.body,
              transformSplitEnvelope(0xffffffff),
              transformParseEnvelope(serialization.getO(true)),
              async function* (messages) {
                yield* messages;
                if (!foundStatus) validateTrailer(response.trailer, response.header);
              },
              { propagateDownStreamError: true },
            ),
          } as StreamResponse<I, O>;
        },
      });
    },
  };
}

/**
 * The request body: each message as its gRPC frame. A chunk message is
 * yielded as two pieces, its head and the chunk itself (a view, never
 * copied); any other message is serialized whole.
 */
export async function* uploadFrames(
  messages: AsyncIterable<MessageInitShape<typeof UploadRequestSchema>>,
  serialize: (message: UploadRequest) => Uint8Array,
): AsyncIterable<Uint8Array> {
  for await (const init of messages) {
    // The generated client hands over what the caller wrote: an init shape as often as a message.
    yield* uploadMessageFrames(isMessage(init, UploadRequestSchema) ? init : create(UploadRequestSchema, init), serialize);
  }
}

/** One Upload message as its gRPC frame: a chunk as its head and the chunk itself (a view, never copied), any other serialized whole. */
export function uploadMessageFrames(message: UploadRequest, serialize: (message: UploadRequest) => Uint8Array): Uint8Array[] {
  if (message.message.case !== "chunk") return [encodeEnvelope(0, serialize(message))];
  const chunk = message.message.value;
  return chunk.byteLength > 0 ? [chunkFrameHead(chunk.byteLength), chunk] : [chunkFrameHead(0)];
}

/**
 * A whole Upload — header, chunks, trailer — as one lean client-streaming
 * call (./lean-client-streaming.ts): one request body on one HTTP/2 stream,
 * chunks framed around the caller's bytes as above. For the writer's small
 * contents (artifact-writer.ts), whose every message is known at commit.
 */
export function leanWholeUploads(options: Omit<LeanUnaryOptions, "acceptCompression">): WholeUpload {
  const upload = ArtifactService.method.upload;
  const serialization = createMethodSerializationLookup(upload, undefined, undefined, { readMaxBytes: 0xffffffff, writeMaxBytes: 0xffffffff });
  const serialize = (message: UploadRequest) => serialization.getI(true).serialize(message);
  const framing = new Map<DescMethodClientStreaming, MessageFraming>([[upload, (message: UploadRequest) => uploadMessageFrames(message, serialize)]]);
  const call = leanClientStreamingCalls({ ...options, framing });
  return (messages, signal, timeoutMs, onSent) => call(upload, signal, timeoutMs, undefined, messages, onSent ? { onSent } : {});
}
