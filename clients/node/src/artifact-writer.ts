import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ArtifactSpecSchema } from "./gen/artifacts/v1/artifact_pb.js";
import type { UploadRequestSchema, UploadResponse } from "./gen/artifacts/v1/artifact_service_pb.js";

type UploadMessage = MessageInitShape<typeof UploadRequestSchema>;
export type ArtifactSpecInit = Exclude<MessageInitShape<typeof ArtifactSpecSchema>, { $typeName: string }>;

/** Bytes per message on the wire: large enough to amortise framing, small enough to interleave. */
const MAX_MESSAGE_BYTES = 256 * 1024;

export interface WriterOptions {
  /** Total bytes that will be written; the server refuses a different count. */
  readonly expectedSize?: number;
  /** BLAKE3 hex of the content; the server refuses different content. */
  readonly expectedBlake3?: string;
  /** Aborting it aborts the upload. */
  readonly signal?: AbortSignal;
}

/**
 * A streaming save: open, write chunks, add labels / metrics / tags while
 * writing, then commit. Nothing is recorded unless `commit` succeeds;
 * `abort`, an error, or leaving an `await using` scope without committing
 * cancels the upload and the server keeps nothing.
 *
 * `write` resolves once the message has been handed to the connection, so
 * awaiting it is backpressure: a slow server slows the writer down instead
 * of letting it buffer the whole file.
 */
export class ArtifactWriter implements AsyncDisposable {
  readonly #controller = new AbortController();
  readonly #labels: Record<string, string> = {};
  readonly #metrics: Record<string, number> = {};
  readonly #tags: string[] = [];
  readonly #response: Promise<UploadResponse>;
  #pending: { message: UploadMessage; delivered: () => void } | undefined;
  #wake: (() => void) | undefined;
  #closed = false;
  #state: "open" | "committing" | "committed" | "aborted" = "open";

  /** @internal Use ArtifactClient.openWriter. */
  constructor(upload: (messages: AsyncIterable<UploadMessage>, signal: AbortSignal) => Promise<UploadResponse>, spec: ArtifactSpecInit, options: WriterOptions = {}) {
    const { signal } = options;
    if (signal?.aborted) this.#controller.abort(signal.reason);
    signal?.addEventListener("abort", () => this.#controller.abort(signal.reason), { once: true });
    const header: UploadMessage = {
      message: {
        case: "header",
        value: {
          spec,
          ...(options.expectedSize !== undefined ? { expectedSize: BigInt(options.expectedSize) } : {}),
          ...(options.expectedBlake3 ? { expectedBlake3: options.expectedBlake3 } : {}),
        },
      },
    };
    this.#response = upload(this.#messages(header), this.#controller.signal);
    // Failures surface through write / commit; never as an unhandled rejection.
    this.#response.catch(() => {});
  }

  /** Appends bytes; resolves when the connection has taken them. */
  async write(chunk: Uint8Array | string): Promise<void> {
    if (this.#state !== "open") throw new Error(`cannot write: the writer is ${this.#state}`);
    const bytes = typeof chunk === "string" ? Buffer.from(chunk, "utf8") : chunk;
    for (let offset = 0; offset < bytes.byteLength; offset += MAX_MESSAGE_BYTES) {
      await this.#send({ message: { case: "chunk", value: bytes.subarray(offset, offset + MAX_MESSAGE_BYTES) } });
    }
  }

  /** Labels sent with the commit; later values win. */
  addLabels(labels: Readonly<Record<string, string>>): this {
    Object.assign(this.#labels, labels);
    return this;
  }

  addMetrics(metrics: Readonly<Record<string, number>>): this {
    Object.assign(this.#metrics, metrics);
    return this;
  }

  addTags(...tags: string[]): this {
    this.#tags.push(...tags.flat());
    return this;
  }

  /** Finishes the upload; resolves with the recorded artifact once the server has verified and stored it. */
  async commit(): Promise<UploadResponse> {
    if (this.#state !== "open") throw new Error(`cannot commit: the writer is ${this.#state}`);
    this.#state = "committing";
    try {
      await this.#send({ message: { case: "trailer", value: { labels: this.#labels, metrics: this.#metrics, tags: this.#tags } } });
      this.#closed = true;
      this.#wake?.();
      const response = await this.#response;
      this.#state = "committed";
      return response;
    } catch (error) {
      this.#state = "aborted";
      this.#controller.abort(error);
      throw error;
    }
  }

  /** Cancels the upload: the server records nothing and keeps no bytes. Safe to call more than once. */
  async abort(reason: unknown = new Error("the writer was aborted")): Promise<void> {
    if (this.#state === "committed" || this.#state === "aborted") return;
    this.#state = "aborted";
    this.#controller.abort(reason);
    await this.#response.catch(() => {});
  }

  get committed(): boolean {
    return this.#state === "committed";
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#state !== "committed") await this.abort(new Error("the writer left its scope without commit"));
  }

  async #send(message: UploadMessage): Promise<void> {
    const delivered = new Promise<void>((resolve) => {
      this.#pending = { message, delivered: resolve };
    });
    this.#wake?.();
    // Whichever comes first: the connection takes the message, or the upload fails.
    await Promise.race([delivered, this.#response.then(() => Promise.reject(new Error("the upload ended before all data was sent")))]);
  }

  async *#messages(header: UploadMessage): AsyncIterable<UploadMessage> {
    yield header;
    for (;;) {
      while (!this.#pending && !this.#closed) {
        await new Promise<void>((resolve) => (this.#wake = resolve));
        this.#wake = undefined;
      }
      const pending = this.#pending;
      if (!pending) return;
      this.#pending = undefined;
      yield pending.message;
      // The transport asks for the next message only after writing this one.
      pending.delivered();
    }
  }
}
