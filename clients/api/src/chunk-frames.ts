/**
 * The gRPC frame head of a content message: UploadRequest and
 * DownloadResponse both carry content as `bytes chunk = 2`, so a chunk
 * message is that one length-delimited field, and its whole frame is this
 * head followed by the chunk's own bytes. The service's download route and
 * the Node SDK's uploads write it this way, so content is never copied
 * into a protobuf buffer and then into an envelope.
 *
 * The head: the 5-byte gRPC envelope (uncompressed, the message's length),
 * the field's tag ((2 << 3) | 2) and the chunk's length as a varint.
 */
export function chunkFrameHead(chunkBytes: number): Uint8Array {
  const varint: number[] = [];
  for (let rest = chunkBytes; ; rest = Math.floor(rest / 128)) {
    if (rest < 128) {
      varint.push(rest);
      break;
    }
    varint.push((rest % 128) | 128);
  }
  const head = new Uint8Array(5 + 1 + varint.length);
  new DataView(head.buffer).setUint32(1, 1 + varint.length + chunkBytes);
  head[5] = CHUNK_FIELD_TAG;
  head.set(varint, 6);
  return head;
}

/** `bytes chunk = 2`, length-delimited. */
const CHUNK_FIELD_TAG = (2 << 3) | 2;
