import { clearField, type DescField, type DescMessage, type DescMethodUnary, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createContextValues, type Interceptor, type UnaryResponse } from "@connectrpc/connect";
import {
  type Compression,
  createMethodSerializationLookup,
  createMethodUrl,
  encodeEnvelope,
  pipeTo,
  runUnaryCall,
  transformDecompressEnvelope,
  transformParseEnvelope,
  transformSplitEnvelope,
  type UniversalClientFn,
} from "@connectrpc/connect/protocol";
import { headerGrpcStatus, requestHeaderWithCompression, validateResponseWithCompression, validateTrailer } from "@connectrpc/connect/protocol-grpc";
import { bytesFieldFrameHead } from "@artifactd/api";
import { ArtifactService, type UploadPartRequest, UploadPartRequestSchema } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import { MAX_MESSAGE_BYTES, onlyMessage } from "./lean-unary.ts";

/** What the calls framed by hand are sent with: the same as the transport they stand in for. */
export interface LeanTransportOptions {
  readonly baseUrl: string;
  readonly httpClient: UniversalClientFn;
  readonly interceptors: Interceptor[];
  /** Response encodings accepted by unary calls (streams accept none). */
  readonly acceptCompression: Compression[];
}

/**
 * UploadPart as connect's gRPC transport calls it (its protocol helpers:
 * interceptors, deadline, headers, response, trailers and every error the
 * same), except that the request's `data` is handed to the HTTP/2 stream as
 * it is (uploadPartFrames) instead of being copied by protobuf-es into a
 * buffer and then into an envelope: for parts of 8 MiB or more those copies
 * were most of the client's CPU per uploaded byte.
 */
export function leanUploadPart(options: LeanTransportOptions) {
  const uploadPart = ArtifactService.method.uploadPart;
  const serialization = createMethodSerializationLookup(uploadPart, undefined, undefined, {
    readMaxBytes: MAX_MESSAGE_BYTES,
    writeMaxBytes: MAX_MESSAGE_BYTES,
  });
  return function unary<I extends DescMessage, O extends DescMessage>(
    method: DescMethodUnary<I, O>,
    signal: AbortSignal | undefined,
    timeoutMs: number | undefined,
    header: ConstructorParameters<typeof Headers>[0] | undefined,
    input: MessageInitShape<I>,
    contextValues?: ReturnType<typeof createContextValues>,
  ): Promise<UnaryResponse<I, O>> {
    const deadline = timeoutMs !== undefined && timeoutMs > 0 ? timeoutMs : undefined;
    return runUnaryCall<I, O>({
      interceptors: options.interceptors,
      ...(signal ? { signal } : {}),
      ...(deadline !== undefined ? { timeoutMs: deadline } : {}),
      req: {
        stream: false,
        service: method.parent,
        method,
        requestMethod: "POST",
        url: createMethodUrl(options.baseUrl, method),
        header: requestHeaderWithCompression(true, deadline, header, options.acceptCompression, null),
        contextValues: contextValues ?? createContextValues(),
        message: input,
      },
      next: async (req) => {
        const response = await options.httpClient({
          url: req.url,
          method: "POST",
          header: req.header,
          signal: req.signal,
          // Built anew for each attempt: a retried call sends its frame again.
          body: uploadPartFrames(req.message as unknown as UploadPartRequest, (message) => serialization.getI(true).serialize(message)),
        });
        const { compression, headerError } = validateResponseWithCompression(options.acceptCompression, response.status, response.header);
        const message = await pipeTo(
          response.body,
          transformSplitEnvelope(MAX_MESSAGE_BYTES),
          transformDecompressEnvelope(compression ?? null, MAX_MESSAGE_BYTES),
          transformParseEnvelope(serialization.getO(true)),
          onlyMessage,
          { propagateDownStreamError: false },
        );
        // From here on, connect's own unary transport word for word: a status in the trailers, else what is missing.
        validateTrailer(response.trailer, response.header);
        if (message === undefined) {
          if (headerError) throw headerError;
          throw new ConnectError(
            "protocol error: missing output message for unary method",
            response.trailer.has(headerGrpcStatus) ? Code.Unimplemented : Code.Unknown,
          );
        }
        if (headerError) throw new ConnectError("protocol error: received output message for unary method with error status", Code.Unknown);
        return { stream: false, service: method.parent, method, header: response.header, message, trailer: response.trailer } as UnaryResponse<I, O>;
      },
    });
  };
}

const dataField = UploadPartRequestSchema.field.data;

/**
 * The gRPC frame of an UploadPart request, in pieces: the envelope with the
 * fields numbered below `data` and `data`'s tag and length, then `data`
 * itself (the caller's bytes, never copied), then the fields numbered above
 * it and any unknown fields. protobuf-es writes fields in field-number order
 * and unknown fields last, so the bytes are those it would write. An empty
 * `data` is a field protobuf-es leaves out: that frame is serialized whole.
 */
export async function* uploadPartFrames(message: UploadPartRequest, serialize: (message: UploadPartRequest) => Uint8Array): AsyncIterable<Uint8Array> {
  const { data } = message;
  if (data.byteLength === 0) {
    yield encodeEnvelope(0, serialize(message));
    return;
  }
  const before = serialize(onlyFields(message, (field) => field.number < dataField.number, false));
  const after = serialize(onlyFields(message, (field) => field.number > dataField.number, true));
  yield bytesFieldFrameHead(dataField.number, data.byteLength, before, after.byteLength);
  yield data;
  if (after.byteLength > 0) yield after;
}

/** A shallow copy of the message with only the fields `keep` picks set (`data` is never copied, only referred to). */
function onlyFields(message: UploadPartRequest, keep: (field: DescField) => boolean, withUnknown: boolean): UploadPartRequest {
  const copy = { ...message };
  for (const field of UploadPartRequestSchema.fields) if (!keep(field)) clearField(copy, field);
  if (!withUnknown) delete copy.$unknown;
  return copy;
}
