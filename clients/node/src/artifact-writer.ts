import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ArtifactSpecInit } from "@artifactd/api";
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
 * Failures are the server's ConnectError (with its gRPC code), surfaced from
 * whichever `write` or `commit` is waiting when the call ends.
 */
export interface ArtifactWriter<Prefix extends string = string> extends AsyncDisposable {
  /** Appends bytes (strings as UTF-8); resolves when the connection has taken them. */
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

/** Use ArtifactClient.openWriter; this is the writer behind it, with the call injected. */
export function createArtifactWriter<Prefix extends string = string>(
  startUpload: StartUpload,
  spec: ArtifactSpecInit & { typePrefix?: Prefix },
  options: WriterOptions = {},
): ArtifactWriter<Prefix> {
  const controller = new AbortController();
  const metadata = createTrailerMetadata();
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
    yield {
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
  const response = startUpload(messages(), signal, options.timeoutMs);
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

  return assembleWriter(metadata, {
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
  });
}
