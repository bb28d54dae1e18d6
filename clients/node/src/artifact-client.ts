import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import type http2 from "node:http2";
import { createReadStream } from "node:fs";
import { open, rename, rm, stat } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { createArtifactWriter, type ArtifactSpecInit, type ArtifactWriter, type WriterOptions } from "./artifact-writer.ts";
import { createBlake3Verifier } from "./blake3-verifier.ts";
import type { Artifact } from "./gen/artifacts/v1/artifact_pb.js";
import {
  ArtifactService,
  type ArtifactFilterSchema,
  type UploadResponse,
} from "./gen/artifacts/v1/artifact_service_pb.js";
import { messageSizedChunks } from "./message-sized-chunks.ts";

export type ArtifactFilterInit = Exclude<MessageInitShape<typeof ArtifactFilterSchema>, { $typeName: string }>;

export interface ArtifactClientOptions {
  /** Where the service listens, e.g. http://127.0.0.1:8080. */
  readonly baseUrl: string;
  /** API token (`adt_…`), sent as `authorization: Bearer`. */
  readonly token: string;
  /**
   * Deadline of each unary call (get, list pages, saveJson, delete, …); unset:
   * none. Transfers (writers, uploads, downloads) never get one, since their
   * length depends on the content; give them a `signal` instead.
   */
  readonly timeoutMs?: number;
  /** A transport of your own (tests, proxies): baseUrl and token are then ignored, so it must send the authorization header itself. */
  readonly transport?: Transport;
}

export interface DownloadOptions {
  /** First byte; a ranged download is not verified against the whole-content digest. */
  readonly offset?: number;
  /** Bytes from offset; unset: to the end. */
  readonly length?: number;
  readonly signal?: AbortSignal;
}

const MiB = 1024 * 1024;

/**
 * The typed Node client of artifactd, over gRPC (HTTP/2).
 *
 * Errors: a refusal from the service is passed through as the ConnectError
 * that carries its gRPC code (`error.code`, e.g. `Code.NotFound`,
 * `Code.InvalidArgument`, `Code.DataLoss`) and the server's message saying
 * what to fix; a lost connection, a cancel or a deadline are ConnectErrors
 * too (UNAVAILABLE, CANCELED, DEADLINE_EXCEEDED). Downloaded content that
 * does not match its size or BLAKE3 throws ArtifactIntegrityError. Nothing
 * else is wrapped, so `ConnectError.from(error).code` is always meaningful.
 */
export interface ArtifactClient {
  /** The generated client, for calls this wrapper does not cover. */
  readonly rpc: Client<typeof ArtifactService>;
  /** A streaming writer; see ArtifactWriter. */
  openWriter(spec: ArtifactSpecInit, options?: WriterOptions): ArtifactWriter;
  /** Runs `write` with a writer: commits when it returns, aborts (and rethrows) when it throws. */
  withWriter(spec: ArtifactSpecInit, write: (writer: ArtifactWriter) => Promise<void>, options?: WriterOptions): Promise<UploadResponse>;
  /**
   * Streams a file up (read 1 MiB at a time, sent as 256 KiB messages) and
   * declares its size, so a file that grows or shrinks while it is read is refused.
   */
  uploadFile(path: string, spec: ArtifactSpecInit, options?: Omit<WriterOptions, "expectedSize">): Promise<UploadResponse>;
  /**
   * Streams any byte source up (a Node Readable, an async generator, …),
   * regrouped into 256 KiB messages. The source may reuse its buffer: each
   * piece is sent before the next is asked for.
   */
  uploadStream(source: AsyncIterable<Uint8Array | string> | Iterable<Uint8Array | string>, spec: ArtifactSpecInit, options?: WriterOptions): Promise<UploadResponse>;
  /** Saves a JSON value inline (SaveInline); RESOURCE_EXHAUSTED past the server's inline limit (256 KiB by default). */
  saveJson(value: unknown, spec: ArtifactSpecInit): Promise<Artifact>;
  /** Saves UTF-8 text inline (SaveInline), same limit as saveJson. */
  saveText(text: string, spec: ArtifactSpecInit): Promise<Artifact>;
  /** One artifact's metadata; `includeContent` adds inline content (artifact.inlineContent). Deleted ones are returned with deletedAt set. */
  get(id: string, options?: { includeContent?: boolean }): Promise<Artifact>;
  /** One page, newest first; pass `nextPageToken` back (with the same filter) for the next one. Empty token: last page. */
  listPage(filter?: ArtifactFilterInit, page?: { pageSize?: number; pageToken?: string }): Promise<{ artifacts: Artifact[]; nextPageToken: string }>;
  /** Every artifact matching the filter, page by page. */
  list(filter?: ArtifactFilterInit, options?: { pageSize?: number }): AsyncIterable<Artifact>;
  /** Soft-deletes; FAILED_PRECONDITION for a pinned artifact. */
  delete(id: string): Promise<Artifact>;
  /**
   * The artifact and its content. A whole-content download is checked against
   * the artifact's size and BLAKE3 as the last bytes arrive: the iterator
   * throws ArtifactIntegrityError instead of ending on corrupt content, so
   * never act on the bytes before the iterator has ended. A ranged download
   * (a non-zero offset, or a length) cannot be checked. Consume or break out of
   * `content`: an unread download holds its HTTP/2 stream open.
   */
  download(id: string, options?: DownloadOptions): Promise<{ artifact: Artifact; content: AsyncIterable<Uint8Array> }>;
  /**
   * Downloads to `path`: written to `${path}.partial-<random>` beside it and
   * renamed into place only once size and BLAKE3 are verified; on any
   * failure the partial file is removed and `path` is left untouched.
   */
  downloadToFile(id: string, path: string, options?: { signal?: AbortSignal }): Promise<Artifact>;
  /** Small content into memory, verified like `download`. */
  downloadBytes(id: string, options?: { signal?: AbortSignal }): Promise<Buffer>;
  /** Closes the HTTP/2 connection this client opened (calls still running fail with CANCELED); a `transport` of your own is left alone. */
  close(): Promise<void>;
}

/**
 * HTTP/2 receive windows start at 64 KiB, which caps a download at one
 * window per round trip. Streams get 8 MiB through SETTINGS; the connection
 * window can only be raised once the session exists, so it is raised on the
 * first request of each session.
 */
class WideWindowSessionManager extends Http2SessionManager {
  readonly #widened = new WeakSet<http2.Http2Session>();

  constructor(url: string) {
    // maxSessionMemory: parallel session parts (UploadPart) are tens of MiB in flight; Node refuses past 10 MiB by default.
    super(url, {}, { settings: { initialWindowSize: 8 * MiB, maxFrameSize: 1024 * 1024 }, maxSessionMemory: 256 });
  }

  override async request(...args: Parameters<Http2SessionManager["request"]>): Promise<http2.ClientHttp2Stream> {
    const stream = await super.request(...args);
    const session = stream.session;
    if (session && !this.#widened.has(session)) {
      this.#widened.add(session);
      session.setLocalWindowSize(32 * MiB);
    }
    return stream;
  }
}

export function createArtifactClient(options: ArtifactClientOptions): ArtifactClient {
  const auth: Interceptor = (next) => (request) => {
    request.header.set("authorization", `Bearer ${options.token}`);
    return next(request);
  };
  const sessionManager = options.transport ? undefined : new WideWindowSessionManager(options.baseUrl);
  const transport =
    options.transport ??
    createGrpcTransport({
      baseUrl: options.baseUrl,
      interceptors: [auth],
      ...(sessionManager ? { sessionManager } : {}),
    });
  const rpc = createClient(ArtifactService, transport);
  const unary = options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs };

  const openWriter = (spec: ArtifactSpecInit, writerOptions: WriterOptions = {}) =>
    createArtifactWriter((messages, signal) => rpc.upload(messages, { signal }), spec, writerOptions);

  const withWriter = async (spec: ArtifactSpecInit, write: (writer: ArtifactWriter) => Promise<void>, writerOptions?: WriterOptions) => {
    const writer = openWriter(spec, writerOptions);
    try {
      await write(writer);
    } catch (error) {
      await writer.abort(error);
      throw error;
    }
    return writer.commit();
  };

  const uploadStream = (source: AsyncIterable<Uint8Array | string> | Iterable<Uint8Array | string>, spec: ArtifactSpecInit, writerOptions?: WriterOptions) =>
    withWriter(
      spec,
      async (writer) => {
        for await (const chunk of messageSizedChunks(source)) await writer.write(chunk);
      },
      writerOptions,
    );

  const download = async (id: string, downloadOptions: DownloadOptions = {}) => {
    const stream = rpc.download(
      {
        id,
        offset: BigInt(downloadOptions.offset ?? 0),
        ...(downloadOptions.length !== undefined ? { length: BigInt(downloadOptions.length) } : {}),
      },
      downloadOptions.signal ? { signal: downloadOptions.signal } : {},
    );
    const iterator = stream[Symbol.asyncIterator]();
    const first = await iterator.next();
    if (first.done || first.value.message.case !== "artifact") throw new Error(`download of ${id}: the server sent no artifact header`);
    const artifact = first.value.message.value;
    const whole = (downloadOptions.offset ?? 0) === 0 && downloadOptions.length === undefined;
    async function* content(): AsyncIterable<Uint8Array> {
      const verifier = whole ? createBlake3Verifier() : undefined;
      try {
        for (;;) {
          const next = await iterator.next();
          if (next.done) break;
          if (next.value.message.case !== "chunk") continue;
          verifier?.update(next.value.message.value);
          yield next.value.message.value;
        }
      } finally {
        await iterator.return?.();
      }
      verifier?.verify({ size: Number(artifact.sizeBytes), blake3: artifact.blake3, id });
    }
    return { artifact, content: content() };
  };

  return {
    rpc,
    openWriter,
    withWriter,
    uploadStream,

    async uploadFile(path, spec, writerOptions = {}) {
      const { size } = await stat(path);
      return uploadStream(createReadStream(path, { highWaterMark: MiB }), spec, { ...writerOptions, expectedSize: size });
    },

    async saveJson(value, spec) {
      const json = JSON.stringify(value);
      if (json === undefined) throw new TypeError("saveJson: the value cannot be serialised as JSON");
      return (await rpc.saveInline({ spec, content: { case: "json", value: json } }, unary)).artifact!;
    },

    async saveText(text, spec) {
      return (await rpc.saveInline({ spec, content: { case: "text", value: text } }, unary)).artifact!;
    },

    async get(id, getOptions = {}) {
      return (await rpc.getArtifact({ id, includeContent: getOptions.includeContent ?? false }, unary)).artifact!;
    },

    async listPage(filter = {}, page = {}) {
      const response = await rpc.listArtifacts({ filter, pageSize: page.pageSize ?? 0, pageToken: page.pageToken ?? "" }, unary);
      return { artifacts: response.artifacts, nextPageToken: response.nextPageToken };
    },

    async *list(filter = {}, listOptions = {}) {
      let pageToken = "";
      do {
        const response = await rpc.listArtifacts({ filter, pageSize: listOptions.pageSize ?? 0, pageToken }, unary);
        yield* response.artifacts;
        pageToken = response.nextPageToken;
      } while (pageToken);
    },

    async delete(id) {
      return (await rpc.deleteArtifact({ id }, unary)).artifact!;
    },

    download,

    async downloadToFile(id, path, fileOptions = {}) {
      const partial = `${path}.partial-${randomBytes(6).toString("hex")}`;
      const file = await open(partial, "wx");
      try {
        const { artifact, content } = await download(id, fileOptions);
        for await (const chunk of content) {
          let written = 0;
          while (written < chunk.byteLength) written += (await file.write(chunk, written, chunk.byteLength - written)).bytesWritten;
        }
        await file.sync();
        await file.close();
        await rename(partial, path);
        return artifact;
      } catch (error) {
        await file.close().catch(() => {});
        await rm(partial, { force: true });
        throw error;
      }
    },

    async downloadBytes(id, bytesOptions = {}) {
      const { content } = await download(id, bytesOptions);
      const parts: Uint8Array[] = [];
      for await (const chunk of content) parts.push(chunk);
      return Buffer.concat(parts);
    },

    async close() {
      // Without this the idle connection would linger (unreferenced) until connect-node's 15-minute idle timeout.
      sessionManager?.abort(new ConnectError("the artifactd client was closed", Code.Canceled));
    },
  };
}
