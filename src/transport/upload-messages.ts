import type { UploadRequest } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import { invalidArgument } from "../artifact-error.ts";
import type { UploadMessage } from "../service/upload-header.ts";
import { int64FromProto, specFromProto } from "./proto-conversion.ts";

/**
 * One UploadRequest as the use case's tagged message: the same conversion
 * for the stream connect-node decodes (./artifact-service-handler.ts) and
 * for the header and trailer messages the binary gRPC route decodes itself
 * (./grpc-upload-route.ts, which hands chunks on without decoding them).
 */
export function uploadMessageFromProto(request: UploadRequest): UploadMessage {
  const message = request.message;
  switch (message.case) {
    case "header":
      return {
        type: "header",
        spec: specFromProto(message.value.spec),
        expectedSize: message.value.expectedSize === undefined ? undefined : int64FromProto("header.expected_size", message.value.expectedSize),
        expectedBlake3: message.value.expectedBlake3,
        sessionId: message.value.sessionId,
        offset: int64FromProto("header.offset", message.value.offset),
        contentByDigest: message.value.contentByDigest,
      };
    case "chunk":
      return { type: "chunk", pieces: [message.value], byteLength: message.value.byteLength };
    case "trailer":
      return { type: "trailer", labels: message.value.labels, tags: message.value.tags, metrics: message.value.metrics };
    case undefined:
      return { type: "empty" };
    default:
      throw invalidArgument("unknown upload message: send header, chunk or trailer");
  }
}
