import { clearField, type DescField } from "@bufbuild/protobuf";
import { encodeEnvelope } from "@connectrpc/connect/protocol";
import { bytesFieldFrameHead } from "@artifactd/api";
import { type UploadPartRequest, UploadPartRequestSchema } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";

/**
 * UploadPart's request framed around the caller's bytes, for the lean unary
 * path (./lean-unary.ts, given this as the method's framing by
 * ./lean-upload-transport.ts): the part's `data` is handed to the HTTP/2
 * stream as it is instead of being copied by protobuf-es into a buffer and
 * then into an envelope; for parts of 8 MiB or more those copies were most
 * of the client's CPU per uploaded byte.
 */
const dataField = UploadPartRequestSchema.field.data;

/**
 * The gRPC frame of an UploadPart request, in pieces: the envelope with the
 * fields numbered below `data` and `data`'s tag and length, then `data`
 * itself (the caller's bytes, never copied), then the fields numbered above
 * it and any unknown fields. protobuf-es writes fields in field-number order
 * and unknown fields last, so the bytes are those it would write. An empty
 * `data` is a field protobuf-es leaves out: that frame is serialized whole.
 */
export function uploadPartFrames(message: UploadPartRequest, serialize: (message: UploadPartRequest) => Uint8Array): Uint8Array[] {
  const { data } = message;
  if (data.byteLength === 0) return [encodeEnvelope(0, serialize(message))];
  const before = serialize(onlyFields(message, (field) => field.number < dataField.number, false));
  const after = serialize(onlyFields(message, (field) => field.number > dataField.number, true));
  const frame = [bytesFieldFrameHead(dataField.number, data.byteLength, before, after.byteLength), data];
  if (after.byteLength > 0) frame.push(after);
  return frame;
}

/** A shallow copy of the message with only the fields `keep` picks set (`data` is never copied, only referred to). */
function onlyFields(message: UploadPartRequest, keep: (field: DescField) => boolean, withUnknown: boolean): UploadPartRequest {
  const copy = { ...message };
  for (const field of UploadPartRequestSchema.fields) if (!keep(field)) clearField(copy, field);
  if (!withUnknown) delete copy.$unknown;
  return copy;
}
