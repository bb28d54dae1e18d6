import type { Artifact, ArtifactSpec } from "../artifact.ts";
import { ArtifactError, invalidArgument } from "../artifact-error.ts";
import { createBlake3 } from "../blake3.ts";
import { checkUploadHeader, type UploadMessage, type UploadTarget } from "./upload-header.ts";
import { validateLabels, validateMetrics, validateTags } from "./validate-spec.ts";

export interface UploadResult {
  readonly artifact: Artifact;
  readonly deduplicated: boolean;
}

/** The labels, tags and metrics the artifact gets: the spec's, with the trailer's merged in. */
export type UploadMetadata = Pick<ArtifactSpec, "labels" | "tags" | "metrics">;

/** Where the bytes of an upload stream go: a new blob (./blob-writer-sink.ts) or a session's parts (./session-parts-sink.ts). */
interface SinkBase {
  /** The position of the stream's first byte in the whole content: 0, or where a session stream continues. */
  readonly startOffset: number;
  /** The content's declared length: no byte past it is taken. */
  readonly expectedSize: number | undefined;
  /** The metadata a trailer merges into. */
  readonly metadata: UploadMetadata;
  /** Takes the next bytes, a chunk message's pieces in order; awaiting it is the stream's backpressure. */
  write(pieces: readonly Uint8Array[], byteLength: number): Promise<void>;
  /** The stream failed or was cancelled, before or during finish: the sink gives up what it stored, or keeps it for a resume. */
  fail(): Promise<void>;
  /** Called once, after finish or fail: ends whatever the sink holds (heartbeats, leases, reservations). */
  close(): Promise<void>;
}

/**
 * A sink whose stream carries the whole content, from byte 0: the reader
 * hashes it and checks its size and digest against the declared ones at the
 * end, before anything is recorded.
 */
export interface WholeContentSink extends SinkBase {
  readonly carries: "whole content";
  readonly expectedBlake3: string | undefined;
  finish(content: { readonly size: number; readonly blake3: string; readonly metadata: UploadMetadata }): Promise<UploadResult>;
}

/**
 * A sink whose stream carries the rest of a session's content, from its
 * offset: the bytes before it are not the stream's to hash, so the session
 * checks the assembled whole, its size and digest, when it completes.
 */
export interface RestOfContentSink extends SinkBase {
  readonly carries: "rest of a session";
  finish(content: { readonly metadata: UploadMetadata | undefined }): Promise<UploadResult>;
}

/**
 * A sink whose stream carries no bytes at all: the content is one the
 * tenant already has, named by the header (./content-by-digest.ts). A chunk
 * fails the stream before anything is recorded.
 */
export interface NoContentSink extends SinkBase {
  readonly carries: "no content";
  finish(content: { readonly metadata: UploadMetadata }): Promise<UploadResult>;
}

export type UploadSink = WholeContentSink | RestOfContentSink | NoContentSink;

/**
 * Reads one upload stream: exactly one header, first; then chunks; then at
 * most one trailer; nothing but empty messages after it. The header is
 * checked before any storage is touched, so a doomed upload fails at once;
 * then `openSink` chooses and opens where the bytes go. Every chunk is
 * counted against the declared size and the server's upload limit as it
 * arrives (the client is refused while still sending), hashed when the
 * stream carries the whole content, and handed to the sink. A trailer's
 * labels, tags and metrics are checked as it arrives, alone and merged
 * into the spec's. The sink is finished only when the stream ended
 * normally and, for a whole content, its size and digest are what was
 * declared; otherwise it is failed. Either way it is closed, and the
 * stream's reading ended (the transport ends the request stream early).
 */
export async function readUploadStream(
  limits: { readonly uploadMaxBytes: number },
  messages: AsyncIterable<UploadMessage>,
  signal: AbortSignal,
  openSink: (target: UploadTarget) => Promise<UploadSink>,
): Promise<UploadResult> {
  const iterator = messages[Symbol.asyncIterator]();
  try {
    const first = await iterator.next();
    const sink = await openSink(checkUploadHeader(first.done ? undefined : first.value, limits.uploadMaxBytes));
    try {
      return await readIntoSink(limits, iterator, signal, sink);
    } catch (error) {
      await sink.fail();
      throw error;
    } finally {
      await sink.close();
    }
  } finally {
    await iterator.return?.();
  }
}

/** The messages after the header, into the sink, which is finished once the stream ended normally with what was declared. */
async function readIntoSink(
  limits: { readonly uploadMaxBytes: number },
  iterator: AsyncIterator<UploadMessage>,
  signal: AbortSignal,
  sink: UploadSink,
): Promise<UploadResult> {
  const { expectedSize } = sink;
  const hashing = sink.carries === "whole content";
  const hasher = createBlake3();
  // The position in the whole content, so a resumed session stream is held to the same limits.
  let size = sink.startOffset;
  let metadata: UploadMetadata | undefined;
  for (;;) {
    const next = await iterator.next();
    if (next.done) break;
    const message = next.value;
    if (signal.aborted) throw signal.reason;
    if (metadata && message.type !== "empty") {
      throw invalidArgument(`a ${message.type} arrived after the trailer: the trailer must be the last message`);
    }
    switch (message.type) {
      case "header":
        throw invalidArgument("a second header arrived: send exactly one header, first");
      case "empty":
        break;
      case "chunk":
        if (sink.carries === "no content") {
          throw invalidArgument(
            "a chunk arrived after a header with content_by_digest, which records content the tenant already has and takes no bytes: send the bytes in an upload without content_by_digest",
          );
        }
        size += message.byteLength;
        if (expectedSize !== undefined && size > expectedSize) {
          throw invalidArgument(`received more than the declared expected_size of ${expectedSize} bytes`);
        }
        if (size > limits.uploadMaxBytes) {
          throw new ArtifactError(
            "resource_exhausted",
            `the upload exceeds this server's limit of ${limits.uploadMaxBytes} bytes: nothing past the upload limit of ${limits.uploadMaxBytes} bytes (ARTIFACTD_UPLOAD_MAX_BYTES) is stored`,
          );
        }
        if (hashing) for (const piece of message.pieces) hasher.update(piece);
        await sink.write(message.pieces, message.byteLength);
        break;
      case "trailer":
        metadata = mergeTrailer(sink.metadata, message);
        break;
    }
  }
  if (signal.aborted) throw signal.reason;
  if (sink.carries === "rest of a session") return sink.finish({ metadata });
  if (sink.carries === "no content") return sink.finish({ metadata: metadata ?? sink.metadata });
  if (expectedSize !== undefined && size !== expectedSize) {
    throw invalidArgument(`received ${size} bytes but the header declared expected_size ${expectedSize}: nothing was stored`);
  }
  const digest = hasher.digestHex();
  if (sink.expectedBlake3 !== undefined && digest !== sink.expectedBlake3) {
    throw invalidArgument(`the content's BLAKE3 is ${digest} but the header declared ${sink.expectedBlake3}: nothing was stored`);
  }
  return sink.finish({ size, blake3: digest, metadata: metadata ?? sink.metadata });
}

/**
 * The trailer merged into the spec's metadata (labels and metrics with the
 * same key replace the spec's; tags are added), each part checked alone and
 * the merged sets against the same limits.
 */
function mergeTrailer(spec: UploadMetadata, trailer: Extract<UploadMessage, { type: "trailer" }>): UploadMetadata {
  const labels = { ...spec.labels, ...validateLabels("trailer.labels", trailer.labels) };
  const tags = validateTags("trailer.tags", [...spec.tags, ...trailer.tags]);
  const metrics = { ...spec.metrics, ...validateMetrics("trailer.metrics", trailer.metrics) };
  validateLabels("labels (header and trailer together)", labels);
  validateMetrics("metrics (header and trailer together)", metrics);
  return { labels, tags, metrics };
}
