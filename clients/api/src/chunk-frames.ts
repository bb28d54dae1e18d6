import { Code, ConnectError } from "@connectrpc/connect";
import { ByteQueue } from "./byte-queue.ts";

/**
 * The gRPC frame head of a content message: UploadRequest and
 * DownloadResponse both carry content as `bytes chunk = 2`, so a chunk
 * message is that one length-delimited field, and its whole frame is this
 * head followed by the chunk's own bytes. The service's download route and
 * the Node SDK's uploads write it this way, so content is never copied
 * into a protobuf buffer and then into an envelope.
 */
export function chunkFrameHead(chunkBytes: number): Uint8Array {
  return bytesFieldFrameHead(CHUNK_FIELD_NUMBER, chunkBytes);
}

/**
 * The gRPC frame head of a message built around one large bytes field, for a
 * writer that hands the field's bytes over as they are instead of copying
 * them into the message: the 5-byte envelope (uncompressed, the length of the
 * whole message), the message's bytes before the field (`before`, as
 * protobuf-es encodes the fields numbered below it), the field's tag and its
 * length as a varint. The field's bytes follow the head, then the remaining
 * `afterBytes` of the message (the fields numbered above it).
 */
export function bytesFieldFrameHead(fieldNumber: number, fieldBytes: number, before: Uint8Array = new Uint8Array(0), afterBytes = 0): Uint8Array {
  const tag = varint(fieldNumber * 8 + 2);
  const length = varint(fieldBytes);
  const messageBytes = before.byteLength + tag.length + length.length + fieldBytes + afterBytes;
  // What connect answers a message too long for the envelope's 32-bit length with (its writeMaxBytes is at most that).
  if (messageBytes > MAX_MESSAGE_BYTES) {
    throw new ConnectError(`message size ${messageBytes} is larger than configured writeMaxBytes ${MAX_MESSAGE_BYTES}`, Code.ResourceExhausted);
  }
  const head = new Uint8Array(5 + before.byteLength + tag.length + length.length);
  new DataView(head.buffer).setUint32(1, messageBytes);
  head.set(before, 5);
  head.set(tag, 5 + before.byteLength);
  head.set(length, 5 + before.byteLength + tag.length);
  return head;
}

/** A non-negative integer as a protobuf varint (arithmetic rather than bit operations: lengths may pass 2^31). */
function varint(value: number): number[] {
  const bytes: number[] = [];
  for (let rest = value; ; rest = Math.floor(rest / 128)) {
    if (rest < 128) {
      bytes.push(rest);
      return bytes;
    }
    bytes.push((rest % 128) | 128);
  }
}

const MAX_MESSAGE_BYTES = 0xffff_ffff;

const CHUNK_FIELD_NUMBER = 2;
/** `bytes chunk = 2`, length-delimited. */
const CHUNK_FIELD_TAG = (CHUNK_FIELD_NUMBER << 3) | 2;

/**
 * What a stream of gRPC frames whose content messages are bare chunks holds:
 * a piece of a chunk's bytes (`messageEnds` on a message's last piece), or
 * any other message whole, for the caller to decode with its schema.
 */
export type ChunkFrame =
  | { readonly chunk: Uint8Array; readonly messageEnds: boolean; readonly message?: undefined }
  | { readonly message: Uint8Array; readonly chunk?: undefined };

/**
 * Splits uncompressed gRPC frames (DownloadResponse or UploadRequest) without
 * decoding content messages: a bare chunk's bytes are handed on as views of
 * the buffers they arrived in, so a message split across buffers comes out in
 * several pieces (and an empty chunk as one empty piece). Any other message
 * is handed on whole: a view when it lies in one buffer, else joined. A
 * message over `maxMessageBytes` fails from its head alone, before its bytes
 * arrive, with the error connect answers it with.
 */
export async function* readChunkFrames(body: AsyncIterable<Uint8Array>, maxMessageBytes = 0xffff_ffff): AsyncGenerator<ChunkFrame> {
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
          yield { chunk: piece, messageEnds: chunkLeft === 0 };
        }
        if (chunkLeft > 0) break;
        messageBytes = undefined;
        continue;
      }
      if (messageBytes === undefined) {
        if (queue.bytes < 5) break;
        const head = queue.copy(5);
        if ((head[0]! & 1) === 1) throw new ConnectError("received compressed envelope, but do not know how to decompress", Code.Internal);
        messageBytes = new DataView(head.buffer, head.byteOffset).getUint32(1);
        if (messageBytes > maxMessageBytes) {
          throw new ConnectError(`message size ${messageBytes} is larger than configured readMaxBytes ${maxMessageBytes}`, Code.ResourceExhausted);
        }
      }
      // A bare chunk message is the tag, the varint length, the bytes: up to 6 bytes tell whether this is one.
      const prefix = chunkPrefixLength(queue, messageBytes);
      if (prefix === "more") break;
      if (prefix !== undefined) {
        queue.take(prefix);
        chunkLeft = messageBytes - prefix;
        if (chunkLeft === 0) {
          messageBytes = undefined;
          yield { chunk: new Uint8Array(0), messageEnds: true };
        }
        continue;
      }
      if (queue.bytes < messageBytes) break;
      yield { message: queue.copy(messageBytes) };
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
  if (prefix[0] !== CHUNK_FIELD_TAG) return undefined;
  let length = 0;
  for (let i = 1; i < wanted; i++) {
    const byte = prefix[i]!;
    length += (byte & 0x7f) * 2 ** (7 * (i - 1));
    if (byte < 0x80) return i + 1 + length === messageBytes ? i + 1 : undefined;
  }
  return undefined;
}
