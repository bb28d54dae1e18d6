import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ArtifactSpecInit } from "@artifactd/api";
import { Code, ConnectError } from "@connectrpc/connect";
import { getAbortSignalReason } from "@connectrpc/connect/protocol";
import type { UploadRequestSchema, UploadResponse } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import type { TypedArtifact } from "./artifact-ref.ts";
import { MESSAGE_BYTES } from "./message-sized-chunks.ts";

export type UploadMessage = MessageInitShape<typeof UploadRequestSchema>;
export type { ArtifactSpecInit };
/** Starts the client-streaming Upload call; cancelling `signal` cancels it. */
/** An UploadResponse whose artifact id carries the spec's typePrefix in its type. */
export type TypedUploadResponse<Prefix extends string = string> = UploadResponse & { artifact?: TypedArtifact<Prefix> | undefined };
export type StartUpload = (messages: AsyncIterable<UploadMessage>, signal: AbortSignal, timeoutMs: number | undefined) => Promise<UploadResponse>;

export interface WriterOptions {
  /** Total bytes that will be written; the server refuses a different count (INVALID_ARGUMENT). Unset: not checked. */
  readonly expectedSize?: number;
  /** BLAKE3 hex of the content; the server refuses different content (INVALID_ARGUMENT). Unset: not checked. */
  readonly expectedBlake3?: string;
  /** Aborting it cancels the upload, like `abort()`. */
  readonly signal?: AbortSignal;
  /**
   * Deadline of the whole upload, resumed attempts included: past it the
   * call ends with DEADLINE_EXCEEDED, the server is told (grpc-timeout) and
   * records nothing. Unset: none.
   */
  readonly timeoutMs?: number;
  /** Called each time the connection has taken more content bytes (progress bars). */
  readonly onProgress?: (progress: TransferProgress) => void;
  /**
   * Binds the stream to an upload session (CreateUploadSession), continuing
   * at `offset` (the session's resume_offset): bytes are kept as the
   * session's parts as they arrive, so a dropped stream can be resumed. The
   * spec and expected size / digest then come from the session; the writer's
   * are not sent. uploadFile does this itself for large files.
   */
  readonly session?: { readonly sessionId: string; readonly offset: number };
  /**
   * Survive dropped connections: the stream goes through an upload session,
   * the writer keeps what the server has not yet stored (up to 128 MiB) and,
   * after a transient failure, continues where the server stopped instead of
   * failing. For sources that cannot be read again (standard input, a
   * generator); uploadFile resumes files without it.
   */
  readonly resumable?: boolean;
}

/** How far a transfer is: content bytes moved so far, and the total when known. */
export interface TransferProgress {
  readonly bytes: number;
  readonly totalBytes: number | undefined;
  /**
   * Uploads only: content bytes not sent because the server already had
   * them (recorded by digest, see content-first.ts); they count in
   * totalBytes, not in bytes.
   */
  readonly skippedBytes?: number;
  /** Uploads only: files (distinct contents) recorded by digest, their bytes not sent. */
  readonly skippedFiles?: number;
}

/**
 * A streaming save: open, write chunks, add labels / metrics / tags while
 * writing, then commit. Nothing is recorded unless `commit` succeeds;
 * `abort`, a failed call, or leaving an `await using` scope without
 * committing cancels the Upload call, and the server then aborts its
 * multipart upload and records nothing.
 *
 * Awaiting `write` is backpressure: it resolves only once the transport has
 * taken the bytes (one message in flight at a time), so a slow server slows
 * the producer down instead of the writer buffering the whole content.
 * Writes that are not awaited one by one are queued and sent in call order.
 *
 * Except for small content: until more than HELD_UPLOAD_MAX_BYTES (64 KiB)
 * has been written, `write` copies the bytes and resolves at once, and
 * nothing is sent before `commit`, which sends the whole upload as one
 * request (createArtifactWriter says why: the streaming call cost the
 * client several times the CPU of the upload itself). Past that, the
 * writer streams as above, what it held first.
 *
 * Failures are the server's ConnectError (with its gRPC code), surfaced from
 * whichever `write` or `commit` is waiting when the call ends (for a small
 * content, from `commit`).
 */
export interface ArtifactWriter<Prefix extends string = string> extends AsyncDisposable {
  /** Appends bytes (strings as UTF-8); resolves when the connection has taken them, or at once while the content is small and held. */
  write(chunk: Uint8Array | string): Promise<void>;
  /** Labels sent with the commit (the UploadTrailer); later values win, and win over the spec's. */
  addLabels(labels: Readonly<Record<string, string>>): ArtifactWriter<Prefix>;
  /** Metrics sent with the commit; later values win, and win over the spec's. */
  addMetrics(metrics: Readonly<Record<string, number>>): ArtifactWriter<Prefix>;
  /** Tags sent with the commit, added to the spec's: `addTags("a", "b")` or `addTags(["a", "b"])`. */
  addTags(...tags: ReadonlyArray<string | readonly string[]>): ArtifactWriter<Prefix>;
  /**
   * Sends the labels, metrics and tags gathered so far, ends the stream and
   * resolves with the artifact once the server has verified and recorded it.
   * Calling it again returns the same result.
   */
  commit(): Promise<TypedUploadResponse<Prefix>>;
  /** Cancels the upload; resolves once the call has ended. Does nothing after a commit; safe to call more than once. */
  abort(reason?: unknown): Promise<void>;
  /** True once `commit` has succeeded. */
  readonly committed: boolean;
}

type WriterState = "open" | "committing" | "committed" | "aborted";

/** What createTrailerMetadata makes. */
export type TrailerMetadata = ReturnType<typeof createTrailerMetadata>;

/** How a writer moves bytes and ends its upload: what differs between the plain and the resumable writer. */
export interface WriterTransfer<Prefix extends string> {
  write(chunk: Uint8Array | string): Promise<void>;
  commit(): Promise<TypedUploadResponse<Prefix>>;
  abort(reason?: unknown): Promise<void>;
  isCommitted(): boolean;
}

/**
 * A writer from its transfer and its trailer metadata: the metadata calls
 * (chained), `committed`, and an abort when an `await using` scope is left
 * without commit are the same for every writer.
 */
export function assembleWriter<Prefix extends string>(metadata: TrailerMetadata, transfer: WriterTransfer<Prefix>): ArtifactWriter<Prefix> {
  const writer: ArtifactWriter<Prefix> = {
    write: transfer.write,
    addLabels(more) {
      metadata.addLabels(more);
      return writer;
    },
    addMetrics(more) {
      metadata.addMetrics(more);
      return writer;
    },
    addTags(...more) {
      metadata.addTags(more);
      return writer;
    },
    commit: transfer.commit,
    abort: transfer.abort,
    get committed() {
      return transfer.isCommitted();
    },
    async [Symbol.asyncDispose]() {
      if (!transfer.isCommitted()) await transfer.abort(new Error("the writer left its scope without commit"));
    },
  };
  return writer;
}

/** Labels, metrics and tags gathered while writing, for the trailer sent at commit: later values win. */
export function createTrailerMetadata() {
  const labels: Record<string, string> = {};
  const metrics: Record<string, number> = {};
  const tags: string[] = [];
  return {
    addLabels: (more: Readonly<Record<string, string>>) => void Object.assign(labels, more),
    addMetrics: (more: Readonly<Record<string, number>>) => void Object.assign(metrics, more),
    addTags: (more: ReadonlyArray<string | readonly string[]>) => {
      for (const tag of more) tags.push(...(typeof tag === "string" ? [tag] : tag));
    },
    /** What was added until now; later additions are not part of it. */
    snapshot: () => ({ labels: { ...labels }, metrics: { ...metrics }, tags: [...tags] }),
  };
}

/**
 * Contents up to this size are held by the writer and sent at commit as one
 * lean call (see createArtifactWriter); past it they are streamed.
 *
 * Why 64 KiB: measured against a running artifactd (Postgres + MinIO),
 * 8 uploads in flight, client CPU per upload, streaming → held:
 * 4 KiB 0.69–0.77 → 0.38–0.40 ms, 16 KiB 0.84–0.86 → 0.49–0.60,
 * 64 KiB 1.49–1.55 → 1.17–1.25, 128 KiB 2.44–2.74 → 2.19–2.57 (no clear
 * gain), 256 KiB 2.64–2.80 → 2.91–3.27 and 1 MiB 7.1–7.6 → 8.3–8.5 (a
 * loss). The call's fixed cost saved is about 0.3 ms; holding costs a copy
 * into a buffer of the writer's own, and the garbage collector's work for
 * it — Node counts every such buffer as external memory, which starts full
 * collections as it accumulates — which outweighs the saving above
 * ~128 KiB. 64 KiB is also the server's default
 * ARTIFACTD_UPLOAD_INLINE_MAX_BYTES, the contents it keeps in its database.
 * Past the limit, streaming also keeps memory flat and lets the network
 * work while the producer is still writing.
 */
export const HELD_UPLOAD_MAX_BYTES = 64 * 1024;

/**
 * Sends a whole Upload — header, chunks, trailer — as one call; the
 * connection's lean path (lean-upload-transport.ts). `onSent` is called once
 * the request is written.
 */
export type WholeUpload = (
  messages: readonly UploadMessage[],
  signal: AbortSignal,
  timeoutMs: number | undefined,
  onSent?: () => void,
) => Promise<UploadResponse>;

/**
 * Use ArtifactClient.openWriter; this is the writer behind it, with the
 * calls injected: `startUpload` the streaming Upload call, `uploadWhole` the
 * lean whole-Upload call (absent over a transport of the caller's own).
 *
 * Small contents (at most HELD_UPLOAD_MAX_BYTES) are not streamed: with
 * `uploadWhole`, no expected size above that limit and no session, the
 * writer opens no call until commit. `write` copies the bytes and resolves
 * at once — the bytes are held, not yet sent — and `commit` sends header,
 * content and trailer as one request on one HTTP/2 stream. Why: for 4 KiB
 * uploads, 8 in flight against a running artifactd, the streaming call —
 * its async iterables on both sides, the per-write queue and hand-over,
 * connect's streaming machinery and universal HTTP client — cost the client
 * 0.69–0.77 ms of CPU per upload, the one lean call 0.38–0.40 ms (a raw
 * node:http2 client sending the same bytes: 0.20–0.25 ms). Progress is
 * reported once the request is written. A failure the server would have
 * reported while the content was streaming (a refused token, too many
 * bytes) is reported by commit instead; an aborted signal or a passed
 * deadline still fails `write`.
 *
 * Once the bytes held would pass the limit, the writer opens the streaming
 * call, sends what it holds first, and goes on exactly as a streaming
 * writer: backpressure, progress per message, failures from `write`.
 */
export function createArtifactWriter<Prefix extends string = string>(
  startUpload: StartUpload,
  spec: ArtifactSpecInit & { typePrefix?: Prefix },
  options: WriterOptions = {},
  uploadWhole?: WholeUpload,
): ArtifactWriter<Prefix> {
  const metadata = createTrailerMetadata();
  const header = headerMessage(spec, options);
  const held =
    uploadWhole !== undefined && options.session === undefined && (options.expectedSize === undefined || options.expectedSize <= HELD_UPLOAD_MAX_BYTES);
  return assembleWriter(
    metadata,
    held
      ? heldTransfer<Prefix>(startUpload, uploadWhole, header, metadata, options)
      : streamingTransfer<Prefix>(startUpload, header, metadata, options, options.timeoutMs),
  );
}

function headerMessage(spec: ArtifactSpecInit, options: WriterOptions): UploadMessage {
  return {
    message: {
      case: "header",
      value: options.session
        ? { sessionId: options.session.sessionId, offset: BigInt(options.session.offset) }
        : {
            spec,
            ...(options.expectedSize !== undefined ? { expectedSize: BigInt(options.expectedSize) } : {}),
            ...(options.expectedBlake3 ? { expectedBlake3: options.expectedBlake3 } : {}),
          },
    },
  };
}

/**
 * The writer's transfer while the content is small: writes copied into one
 * buffer, sent at commit through `uploadWhole`; the streaming transfer once
 * the buffer would pass HELD_UPLOAD_MAX_BYTES.
 */
function heldTransfer<Prefix extends string>(
  startUpload: StartUpload,
  uploadWhole: WholeUpload,
  header: UploadMessage,
  metadata: TrailerMetadata,
  options: WriterOptions,
): WriterTransfer<Prefix> {
  // The deadline is the whole upload's, from the writer's opening, as for a call opened at once.
  const expiresAt = options.timeoutMs !== undefined && options.timeoutMs > 0 ? Date.now() + options.timeoutMs : undefined;
  /** What is left of the deadline for a call opened now: at least 1 ms, so that a call past it fails with DEADLINE_EXCEEDED. */
  const remainingMs = () => (expiresAt === undefined ? undefined : Math.max(1, expiresAt - Date.now()));
  const controller = new AbortController();
  let state: WriterState = "open";
  let committing: Promise<TypedUploadResponse<Prefix>> | undefined;
  let streaming: WriterTransfer<Prefix> | undefined;
  let buffer: Buffer | undefined;
  let heldBytes = 0;

  /** The error a call opened with the writer would have ended with by now: the caller's abort, or the deadline. */
  function ended(): ConnectError | undefined {
    if (options.signal?.aborted) return ConnectError.from(getAbortSignalReason(options.signal), Code.Canceled);
    if (expiresAt !== undefined && Date.now() >= expiresAt) return new ConnectError("the operation timed out", Code.DeadlineExceeded);
    return undefined;
  }

  function hold(bytes: Uint8Array): void {
    const needed = heldBytes + bytes.byteLength;
    if (buffer === undefined || needed > buffer.byteLength) {
      const grown = Buffer.allocUnsafe(Math.min(HELD_UPLOAD_MAX_BYTES, Math.max(needed, options.expectedSize ?? 0, 2 * (buffer?.byteLength ?? 0))));
      if (buffer !== undefined) buffer.copy(grown, 0, 0, heldBytes);
      buffer = grown;
    }
    buffer.set(bytes, heldBytes);
    heldBytes = needed;
  }

  /** The streaming call, opened now with what is left of the deadline; what was held goes first. */
  function streamFromHere(): WriterTransfer<Prefix> {
    const opened = streamingTransfer<Prefix>(startUpload, header, metadata, options, remainingMs());
    if (heldBytes > 0) {
      // Its failure is the call's, which the write that follows reports too.
      opened.write(buffer!.subarray(0, heldBytes)).catch(() => {});
    }
    buffer = undefined;
    return opened;
  }

  return {
    async write(chunk) {
      if (streaming) return streaming.write(chunk);
      if (state !== "open") throw new Error(`cannot write: the writer is ${state}`);
      const error = ended();
      if (error) throw error;
      const bytes = typeof chunk === "string" ? Buffer.from(chunk, "utf8") : chunk;
      if (heldBytes + bytes.byteLength > HELD_UPLOAD_MAX_BYTES) {
        streaming = streamFromHere();
        return streaming.write(bytes);
      }
      // Copied: the caller may reuse its buffer once write resolves (messageSizedChunks does).
      if (bytes.byteLength > 0) hold(bytes);
    },

    commit(): Promise<TypedUploadResponse<Prefix>> {
      if (streaming) return streaming.commit();
      if (committing) return committing;
      if (state !== "open") return Promise.reject(new Error(`cannot commit: the writer is ${state}`));
      state = "committing";
      const messages: UploadMessage[] = [header];
      const content = buffer?.subarray(0, heldBytes);
      buffer = undefined;
      for (let offset = 0; offset < heldBytes; offset += MESSAGE_BYTES) {
        messages.push({ message: { case: "chunk", value: content!.subarray(offset, offset + MESSAGE_BYTES) } });
      }
      // What was added until now; later additions are not sent.
      messages.push({ message: { case: "trailer", value: metadata.snapshot() } });
      const signal = options.signal ? AbortSignal.any([controller.signal, options.signal]) : controller.signal;
      const sentBytes = heldBytes;
      const onSent = sentBytes > 0 && options.onProgress ? () => options.onProgress?.({ bytes: sentBytes, totalBytes: options.expectedSize }) : undefined;
      const run = (async () => {
        try {
          const result = await uploadWhole(messages, signal, remainingMs(), onSent);
          state = "committed";
          // The server gave the id the spec's typePrefix.
          return result as TypedUploadResponse<Prefix>;
        } catch (error) {
          state = "aborted";
          controller.abort(error);
          throw error;
        }
      })();
      committing = run;
      return run;
    },

    async abort(reason = new Error("the writer was aborted")) {
      if (streaming) return streaming.abort(reason);
      if (state === "committed") return;
      if (state !== "aborted") {
        state = "aborted";
        buffer = undefined;
        // Nothing was sent unless a commit is under way, which this cancels.
        controller.abort(reason);
      }
      await committing?.catch(() => {});
    },

    isCommitted: () => (streaming ? streaming.isCommitted() : state === "committed"),
  };
}

/**
 * The streaming transfer: the client-streaming Upload call opened at once,
 * one message in flight at a time (backpressure), writes sent in call order.
 */
function streamingTransfer<Prefix extends string>(
  startUpload: StartUpload,
  header: UploadMessage,
  metadata: TrailerMetadata,
  options: WriterOptions,
  timeoutMs: number | undefined,
): WriterTransfer<Prefix> {
  const controller = new AbortController();
  let state: WriterState = "open";
  let committing: Promise<TypedUploadResponse<Prefix>> | undefined;
  let sentBytes = 0;

  // The hand-over between `send` and the message stream the transport pulls
  // from: one message at a time, released when the transport asks for the
  // next, which it does only after writing this one to the HTTP/2 stream.
  let pending: { readonly message: UploadMessage; readonly delivered: () => void } | undefined;
  let ending: { readonly abort: boolean; readonly reason?: unknown } | undefined;
  let wake: (() => void) | undefined;

  async function* messages(): AsyncGenerator<UploadMessage, void, undefined> {
    yield header;
    for (;;) {
      while (!pending && !ending) await new Promise<void>((resolve) => (wake = resolve));
      // An aborted stream must fail, never end: a clean end would let the server commit.
      if (ending?.abort) throw ending.reason;
      if (!pending) return;
      const { message, delivered } = pending;
      pending = undefined;
      yield message;
      delivered();
    }
  }

  const signal = options.signal ? AbortSignal.any([controller.signal, options.signal]) : controller.signal;
  const response = startUpload(messages(), signal, timeoutMs);
  // Once the call is over, nothing more can be delivered: a send still
  // waiting fails with the call's error (or this one if it succeeded early).
  const ended = response.then(() => Promise.reject(new Error("the upload ended before all data was sent")));
  // Failures surface through write / commit; never as an unhandled rejection.
  ended.catch(() => {});

  async function send(message: UploadMessage): Promise<void> {
    const delivered = new Promise<void>((resolve) => (pending = { message, delivered: resolve }));
    wake?.();
    await Promise.race([delivered, ended]);
  }

  // Sends run one after another in call order, also when callers do not await each write.
  let queue: Promise<void> = Promise.resolve();
  function enqueue(task: () => Promise<void>): Promise<void> {
    const run = queue.then(task);
    queue = run.catch(() => {});
    return run;
  }

  function end(abort: boolean, reason?: unknown): void {
    ending = { abort, reason };
    wake?.();
  }

  return {
    async write(chunk) {
      if (state !== "open") throw new Error(`cannot write: the writer is ${state}`);
      const bytes = typeof chunk === "string" ? Buffer.from(chunk, "utf8") : chunk;
      return enqueue(async () => {
        for (let offset = 0; offset < bytes.byteLength; offset += MESSAGE_BYTES) {
          const piece = bytes.subarray(offset, offset + MESSAGE_BYTES);
          await send({ message: { case: "chunk", value: piece } });
          sentBytes += piece.byteLength;
          options.onProgress?.({ bytes: sentBytes, totalBytes: options.expectedSize });
        }
      });
    },

    commit(): Promise<TypedUploadResponse<Prefix>> {
      if (committing) return committing;
      if (state !== "open") return Promise.reject(new Error(`cannot commit: the writer is ${state}`));
      state = "committing";
      // What was added until now; later additions are not sent.
      const trailer: UploadMessage = { message: { case: "trailer", value: metadata.snapshot() } };
      const run = (async () => {
        try {
          await enqueue(() => send(trailer));
          end(false);
          const result = await response;
          state = "committed";
          // The server gave the id the spec's typePrefix.
          return result as TypedUploadResponse<Prefix>;
        } catch (error) {
          state = "aborted";
          end(true, error);
          controller.abort(error);
          throw error;
        }
      })();
      committing = run;
      return run;
    },

    async abort(reason = new Error("the writer was aborted")) {
      if (state === "committed") return;
      if (state !== "aborted") {
        state = "aborted";
        end(true, reason);
        controller.abort(reason);
      }
      await response.catch(() => {});
    },

    isCommitted: () => state === "committed",
  };
}
