import type { Artifact, Caller, InlineContent } from "../artifact.ts";
import { ArtifactError, invalidArgument, notFound } from "../artifact-error.ts";
import { createBlake3 } from "../blake3.ts";
import type { BlobStore } from "../ports/blob-store.ts";
import type { ArtifactQueries } from "../ports/artifact-queries.ts";
import type { TenantBlobIndex } from "../ports/tenant-blob-index.ts";
import { readAhead } from "./read-ahead.ts";
import { requireArtifactId } from "./validate-spec.ts";

/** Bytes read from the blob store ahead of the client, per download. */
const READ_AHEAD_BYTES = 8 * 1024 * 1024;

export interface DownloadDeps {
  readonly metadata: ArtifactQueries & TenantBlobIndex;
  readonly blobs: BlobStore;
  /** Bytes per message the content is grouped into (the last may be shorter). */
  readonly chunkBytes: number;
}

/**
 * One message of a download's content: its bytes as the pieces the blob store
 * read them in, in order, never copied into one buffer. A transport writes
 * them after the message's head as they are (grpc-download-route.ts), or
 * joins them where its encoder wants one buffer.
 */
export type ContentMessage = readonly Uint8Array[];

/** The bytes of a message as one buffer: the piece itself when there is one (no copy). */
export function joinMessage(message: ContentMessage): Uint8Array {
  return message.length === 1 ? message[0]! : Buffer.concat(message);
}

export interface DownloadRequest {
  readonly id: string;
  readonly offset: number;
  /** undefined: to the end. */
  readonly length: number | undefined;
  /** The client checks the whole content's digest itself (DownloadRequest.client_verifies): the server does not hash it. */
  readonly clientVerifies?: boolean;
}

/**
 * Resolves what to send, before any byte: the artifact (the first message of
 * the stream) and the content as an async iterable of messages of
 * `chunkBytes` (ContentMessage). Inline artifacts are served the same way as
 * blobs.
 *
 * A whole-content read is hashed as it streams, and its last chunk is held
 * back until the digest is verified: if the bytes do not match, the stream
 * ends with data_loss before the client has the whole content, so it never
 * takes corrupt content for good. The blob is then marked corrupt, and later
 * reads fail at once (until an upload of the same content heals it). A
 * client that verifies the content itself (`clientVerifies`) gets it
 * unhashed: its own check stands in for this one, which would spend the
 * same CPU a second time; its length is still checked. A stored object gone
 * missing is data_loss too, naming the artifact. Ranged reads are not
 * verified here (a range cannot be checked against a whole-file digest).
 */
export async function downloadArtifact(
  deps: DownloadDeps,
  caller: Caller,
  request: DownloadRequest,
  signal: AbortSignal,
): Promise<{ artifact: Artifact; content: AsyncIterable<ContentMessage> }> {
  const id = requireArtifactId("id", request.id);
  if (!Number.isSafeInteger(request.offset) || request.offset < 0) throw invalidArgument(`offset ${request.offset} is not valid: give a byte offset >= 0`);
  if (request.length !== undefined && (!Number.isSafeInteger(request.length) || request.length < 0)) {
    throw invalidArgument(`length ${request.length} is not valid: give a byte count >= 0, or leave it unset to read to the end`);
  }
  const artifact = await deps.metadata.getArtifact(caller.tenantId, id, { includeContent: true });
  if (!artifact || artifact.deletedAt) throw notFound(`artifact ${id} does not exist${artifact ? " any more (it was deleted)" : ""}`);
  if (request.offset > artifact.sizeBytes) {
    throw new ArtifactError("out_of_range", `offset ${request.offset} is past the end of artifact ${id} (${artifact.sizeBytes} bytes)`);
  }
  const length = Math.min(request.length ?? Infinity, artifact.sizeBytes - request.offset);
  const whole = request.offset === 0 && length === artifact.sizeBytes;
  const { inlineContent, ...metadataOnly } = artifact;

  let source: AsyncIterable<Uint8Array>;
  if (artifact.storage === "inline") {
    source = once(inlineBytesOf(inlineContent).subarray(request.offset, request.offset + length));
  } else {
    const storageKey = await readableBlobOf(deps.metadata, caller, artifact);
    source = missingIsDataLoss(deps.blobs.read(storageKey, { offset: request.offset, length }, signal), id);
  }
  const markCorrupt = () =>
    deps.metadata.markBlobCorrupt(caller.tenantId, artifact.blake3).catch(() => {
      // The next whole read finds it again.
    });
  const verified = whole && !request.clientVerifies;
  const content = groupIntoMessages(readAhead(source, READ_AHEAD_BYTES), deps.chunkBytes, verified ? artifact.blake3 : undefined, length, id, markCorrupt);
  return { artifact: { ...metadataOnly, inlineContent: undefined }, content };
}

/** The bytes of inline content, as downloads return them and its digest covers (text and JSON as UTF-8). */
function inlineBytesOf(content: InlineContent | undefined): Uint8Array {
  switch (content?.type) {
    case "binary":
      return content.bytes;
    case "json":
      return Buffer.from(content.json, "utf8");
    case "text":
      return Buffer.from(content.text, "utf8");
    case undefined:
      return new Uint8Array(0);
  }
}

/**
 * Where an artifact's content is stored, when it may be read: its blob is in
 * the index (else DATA_LOSS) and not marked corrupt by an earlier full read
 * (DATA_LOSS, saying how to restore it).
 */
export async function readableBlobOf(metadata: TenantBlobIndex, caller: Caller, artifact: Pick<Artifact, "id" | "blake3">): Promise<string> {
  const blob = await metadata.findBlob(caller.tenantId, artifact.blake3);
  if (!blob) throw new ArtifactError("data_loss", `the content of artifact ${artifact.id} is missing from the blob index`);
  if (blob.corrupt) {
    throw new ArtifactError(
      "data_loss",
      `the stored content of artifact ${artifact.id} is corrupt (it no longer matches its BLAKE3): upload the same content again to restore it`,
    );
  }
  return blob.storageKey;
}

async function* once(data: Uint8Array): AsyncIterable<Uint8Array> {
  if (data.byteLength > 0) yield data;
}

/** A stored object that is not there (any more) is lost data, not an internal error. */
async function* missingIsDataLoss(source: AsyncIterable<Uint8Array>, id: string): AsyncIterable<Uint8Array> {
  try {
    yield* source;
  } catch (error) {
    // The blob store's "nothing under this key" (ports/blob-store.ts).
    if (error instanceof ArtifactError && error.code === "not_found") {
      throw new ArtifactError("data_loss", `the stored content of artifact ${id} is missing from the blob store`, { cause: error });
    }
    throw error;
  }
}

/**
 * Groups a byte stream into messages of `size` bytes (the last may be
 * shorter): storage reads arrive in 16–64 KiB pieces, and per-message
 * overhead dominates below ~64 KiB. A message is a list of those pieces (one
 * split at a message boundary is two views of the same memory): joining them
 * cost the server ~0.4 CPU-s per GiB downloaded, and nothing downstream needs
 * them joined. Checks the total length, and the digest when one is given.
 */
async function* groupIntoMessages(
  source: AsyncIterable<Uint8Array>,
  size: number,
  digest: string | undefined,
  expectedLength: number,
  id: string,
  markCorrupt: () => Promise<void>,
) {
  const hasher = digest ? createBlake3() : undefined;
  let pending: Uint8Array[] = [];
  let pendingBytes = 0;
  let total = 0;
  // The newest full message waits for the next one: the last is only sent once the whole content is verified.
  let held: ContentMessage | undefined;
  for await (const piece of source) {
    hasher?.update(piece);
    total += piece.byteLength;
    let data = piece;
    while (pendingBytes + data.byteLength >= size) {
      const take = size - pendingBytes;
      pending.push(data.subarray(0, take));
      if (held) yield held;
      held = pending;
      data = data.subarray(take);
      pending = [];
      pendingBytes = 0;
    }
    if (data.byteLength > 0) {
      pending.push(data);
      pendingBytes += data.byteLength;
    }
  }
  if (total !== expectedLength) {
    if (hasher) await markCorrupt();
    throw new ArtifactError("data_loss", `artifact ${id}: the blob store returned ${total} bytes where ${expectedLength} were expected`);
  }
  if (hasher && hasher.digestHex() !== digest) {
    await markCorrupt();
    throw new ArtifactError(
      "data_loss",
      `artifact ${id}: the stored content no longer matches its BLAKE3 digest; it is marked corrupt: upload the same content again to restore it`,
    );
  }
  if (held) yield held;
  if (pendingBytes > 0) yield pending;
}
