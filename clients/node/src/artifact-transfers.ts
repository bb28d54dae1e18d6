import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { createReadStream } from "node:fs";
import { link, open, rename, rm, stat } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import {
  createArtifactWriter,
  type ArtifactSpecInit,
  type StartUpload,
  type ArtifactWriter,
  type TransferProgress,
  type TypedUploadResponse,
  type WriterOptions,
} from "./artifact-writer.ts";
import type { TypedArtifact } from "./artifact-ref.ts";
import { ArtifactIntegrityError, createBlake3Verifier } from "./blake3-verifier.ts";
import type { Artifact } from "@artifactd/api/artifacts/v1/artifact_pb.js";
import { type ArtifactService, DownloadRequestSchema, type UploadResponse, UploadSessionState } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import { createArtifactConnection, type ConnectionOptions } from "./artifact-connection.ts";
import { messageSizedChunks } from "./message-sized-chunks.ts";
import { startDeadline, type Deadline } from "./deadline.ts";
import { abortStreamSession, createResumableWriter, createStreamSession } from "./resumable-writer.ts";
import { createDirectDownloads, type DirectDownloadMode } from "./direct-download.ts";
import { createArtifactCalls, type ArtifactCalls } from "./artifact-calls.ts";
import { contentKey, createContentFirst, type ContentFirst } from "./content-first.ts";
import { hashFile } from "./local-artifact-cache.ts";

import type { ArtifactFilterInit } from "@artifactd/api";

export type { ArtifactFilterInit };

/** The connection, and how the transfers use it. */
export interface TransferOptions extends ConnectionOptions {
  /** uploadFile sends files this large or larger through a resumable upload session; default 16 MiB. */
  readonly resumableAboveBytes?: number;
  /**
   * saveJson / saveText store content up to this size inline (in the
   * database) and larger content as a blob; default 256 KiB, the server's
   * default limit. A server with a lower limit is handled too: content it
   * refuses inline is stored as a blob.
   */
  readonly inlineMaxBytes?: number;
  /**
   * Downloads straight from the blob store when the server offers it
   * (presigned links; see direct-download.ts): `true` (default) when offered,
   * falling back to the service; `false` never; `"always"` only that way.
   */
  readonly directDownloads?: DirectDownloadMode;
  /**
   * uploadFile and saveDir hash a file first and ask the server whether it
   * has the content (FindMissingContent); what it has is recorded by digest
   * without sending the bytes. Default true; false sends every byte. A
   * server that does not know the call is sent everything.
   */
  readonly contentFirst?: boolean;
  /** Contents asked about per FindMissingContent call; default 1000 (the server's default limit, learnt from its refusal when lower). */
  readonly findMissingBatchSize?: number;
}

/** uploadFile's options: a writer's, and whether to ask the server for the content first (TransferOptions.contentFirst). */
export type UploadFileOptions = Omit<WriterOptions, "expectedSize"> & { readonly contentFirst?: boolean };

export interface DownloadOptions {
  /** First byte; a ranged download is not verified against the whole-content digest. */
  readonly offset?: number;
  /** Bytes from offset; unset: to the end. */
  readonly length?: number;
  readonly signal?: AbortSignal;
  /** Deadline of the whole download, resumed attempts included: DEADLINE_EXCEEDED past it. Unset: none. */
  readonly timeoutMs?: number;
  /** Called as content arrives (progress bars); totalBytes is what this download will send. */
  readonly onProgress?: (progress: TransferProgress) => void;
  /** Overrides the client's `directDownloads` for this download. */
  readonly directDownloads?: DirectDownloadMode;
}

const MiB = 1024 * 1024;

/**
 * The transfer core of the Node client, over one connection to the service
 * (artifact-connection.ts): the unary calls, streaming writers and uploads
 * (resumed through upload sessions), and verified downloads. Loaders, the local cache and
 * directory artifacts are built on it; ArtifactClient composes them all.
 *
 * Errors: a refusal from the service is passed through as the ConnectError
 * that carries its gRPC code (`error.code`, e.g. `Code.NotFound`,
 * `Code.InvalidArgument`, `Code.DataLoss`) and the server's message saying
 * what to fix; a lost connection, a cancel or a deadline are ConnectErrors
 * too (UNAVAILABLE, CANCELED, DEADLINE_EXCEEDED). Downloaded content that
 * does not match its size or BLAKE3 throws ArtifactIntegrityError. Nothing
 * else is wrapped, so `ConnectError.from(error).code` is always meaningful.
 */
export interface ArtifactTransfers extends ArtifactCalls {
  /** The generated client, for calls this wrapper does not cover. */
  readonly rpc: Client<typeof ArtifactService>;
  /** Asking which contents the server lacks, and recording the others by digest (content-first.ts); uploadFile and saveDir use it. */
  readonly contentFirst: ContentFirst | undefined;
  /** A streaming writer; see ArtifactWriter. */
  openWriter<Prefix extends string = string>(spec: ArtifactSpecInit & { typePrefix?: Prefix }, options?: WriterOptions): ArtifactWriter<Prefix>;
  /** Runs `write` with a writer: commits when it returns, aborts (and rethrows) when it throws. */
  withWriter<Prefix extends string = string>(
    spec: ArtifactSpecInit & { typePrefix?: Prefix },
    write: (writer: ArtifactWriter<Prefix>) => Promise<void>,
    options?: WriterOptions,
  ): Promise<TypedUploadResponse<Prefix>>;
  /**
   * Streams a file up (read 1 MiB at a time, sent as 256 KiB messages) and
   * declares its size, so a file that grows or shrinks while it is read is refused.
   * Content first (TransferOptions.contentFirst, default on): the file is
   * hashed before, and if the server already has its content the artifact
   * is recorded by digest and no byte is sent (`deduplicated`, and
   * onProgress reports it as skippedBytes / skippedFiles); a content that
   * vanished meanwhile is sent after all.
   */
  uploadFile<Prefix extends string = string>(
    path: string,
    spec: ArtifactSpecInit & { typePrefix?: Prefix },
    options?: UploadFileOptions,
  ): Promise<TypedUploadResponse<Prefix>>;
  /**
   * Streams any byte source up (a Node Readable, an async generator, …),
   * regrouped into 256 KiB messages. The source may reuse its buffer: each
   * piece is sent before the next is asked for.
   */
  uploadStream<Prefix extends string = string>(
    source: AsyncIterable<Uint8Array | string> | Iterable<Uint8Array | string>,
    spec: ArtifactSpecInit & { typePrefix?: Prefix },
    options?: WriterOptions,
  ): Promise<TypedUploadResponse<Prefix>>;
  /**
   * Saves a JSON value: inline (SaveInline, queryable as JSONB) up to
   * `inlineMaxBytes`, as a blob (mime application/json) above it; loadJson
   * reads either. Id prefix `json` unless the spec names one.
   */
  saveJson<Prefix extends string = "json">(
    value: unknown,
    spec: ArtifactSpecInit & { typePrefix?: Prefix },
    options?: { signal?: AbortSignal },
  ): Promise<TypedArtifact<Prefix>>;
  /** Saves UTF-8 text, inline or as a blob (mime text/plain; charset=utf-8) as saveJson does. Id prefix `txt` unless the spec names one. */
  saveText<Prefix extends string = "txt">(
    text: string,
    spec: ArtifactSpecInit & { typePrefix?: Prefix },
    options?: { signal?: AbortSignal },
  ): Promise<TypedArtifact<Prefix>>;
  /** uploadFile, answering the artifact; its id's type follows `spec.typePrefix`. */
  saveFile<Prefix extends string = string>(
    path: string,
    spec: ArtifactSpecInit & { typePrefix?: Prefix },
    options?: UploadFileOptions,
  ): Promise<TypedArtifact<Prefix>>;
  /** One artifact's metadata; `includeContent` adds inline content (artifact.inlineContent). Deleted ones are returned with deletedAt set. */
  get(id: string, options?: { includeContent?: boolean; signal?: AbortSignal }): Promise<Artifact>;
  /** One page, newest first; pass `nextPageToken` back (with the same filter) for the next one. Empty token: last page. */
  listPage(
    filter?: ArtifactFilterInit,
    page?: { pageSize?: number; pageToken?: string; signal?: AbortSignal },
  ): Promise<{ artifacts: Artifact[]; nextPageToken: string }>;
  /** Every artifact matching the filter, page by page. */
  list(filter?: ArtifactFilterInit, options?: { pageSize?: number; signal?: AbortSignal }): AsyncIterable<Artifact>;
  /** Soft-deletes; FAILED_PRECONDITION for a pinned artifact. Repeating it is harmless. */
  delete(id: string, options?: { signal?: AbortSignal }): Promise<Artifact>;
  /**
   * The artifact and its content. A whole-content download is checked against
   * the artifact's size and BLAKE3 as the last bytes arrive: the iterator
   * throws ArtifactIntegrityError instead of ending on corrupt content, so
   * never act on the bytes before the iterator has ended. A ranged download
   * (a non-zero offset, or a length) cannot be checked. Consume or break out of
   * `content`: an unread download holds its HTTP/2 stream open (or, from the
   * store, its HTTP connection). Where the server offers it, the content
   * comes straight from the blob store (`directDownloads`), checked the same
   * way and resumed the same way.
   */
  download(id: string, options?: DownloadOptions): Promise<{ artifact: Artifact; content: AsyncIterable<Uint8Array> }>;
  /**
   * Downloads to `path`: written to `${path}.partial-<random>` beside it and
   * renamed into place only once size and BLAKE3 are verified; on any
   * failure the partial file is removed and `path` is left untouched.
   * With `overwrite: false` (default true) the verified file is put in place
   * only if nothing exists at `path` by then — checked and placed in one step
   * (a hard link), so a file that appears during the download is never
   * replaced: the call fails with the file system's EEXIST error instead.
   */
  downloadToFile(
    id: string,
    path: string,
    options?: Pick<DownloadOptions, "signal" | "timeoutMs" | "onProgress" | "directDownloads"> & { overwrite?: boolean },
  ): Promise<Artifact>;
  /** Closes the HTTP/2 connection this client opened (calls still running fail with CANCELED); a `transport` of your own is left alone. */
  close(): Promise<void>;
}

export function createArtifactTransfers(options: TransferOptions): ArtifactTransfers {
  const connection = createArtifactConnection(options);
  const { rpc, retry, unary, readDownload, uploadWhole } = connection;
  const resumableAboveBytes = options.resumableAboveBytes ?? 16 * MiB;
  const inlineMaxBytes = options.inlineMaxBytes ?? 256 * 1024;
  const direct = createDirectDownloads(rpc, retry, options.directDownloads ?? true);

  const startUpload: StartUpload = (messages, signal, timeoutMs) => rpc.upload(messages, { signal, ...(timeoutMs !== undefined ? { timeoutMs } : {}) });
  const openWriter = <Prefix extends string>(spec: ArtifactSpecInit & { typePrefix?: Prefix }, writerOptions: WriterOptions = {}) =>
    writerOptions.resumable && !writerOptions.session
      ? createResumableWriter<Prefix>(
          { rpc, startUpload, retry, unary, getArtifact: (id, signal) => transfers.get(id, signal ? { signal } : {}) },
          spec,
          writerOptions,
        )
      : createArtifactWriter<Prefix>(startUpload, spec, writerOptions, uploadWhole);

  const withWriter = async <Prefix extends string>(
    spec: ArtifactSpecInit & { typePrefix?: Prefix },
    write: (writer: ArtifactWriter<Prefix>) => Promise<void>,
    writerOptions?: WriterOptions,
  ) => {
    const writer = openWriter(spec, writerOptions);
    try {
      await write(writer);
    } catch (error) {
      await writer.abort(error);
      throw error;
    }
    return writer.commit();
  };

  const uploadStream = <Prefix extends string>(
    source: AsyncIterable<Uint8Array | string> | Iterable<Uint8Array | string>,
    spec: ArtifactSpecInit & { typePrefix?: Prefix },
    writerOptions?: WriterOptions,
  ) =>
    withWriter<Prefix>(
      spec,
      async (writer) => {
        for await (const chunk of messageSizedChunks(source)) await writer.write(chunk);
      },
      writerOptions,
    );

  /**
   * Opens a Download call from `offset` and reads its first message, the artifact. `clientVerifies`: this client
   * checks the whole content's digest itself, so the server need not (DownloadRequest.client_verifies).
   */
  const openDownload = async (
    id: string,
    offset: number,
    length: number | undefined,
    signal: AbortSignal | undefined,
    deadline: Deadline,
    clientVerifies = false,
  ) => {
    const request = { id, offset: BigInt(offset), clientVerifies, ...(length !== undefined ? { length: BigInt(length) } : {}) };
    const callOptions = { ...(signal ? { signal } : {}), ...deadline.callOptions() };
    const stream = readDownload ? readDownload(create(DownloadRequestSchema, request), callOptions) : rpc.download(request, callOptions);
    const iterator = stream[Symbol.asyncIterator]();
    const first = await iterator.next();
    if (first.done || first.value.message.case !== "artifact") throw new Error(`download of ${id}: the server sent no artifact header`);
    return { artifact: first.value.message.value, iterator };
  };

  const download = async (id: string, downloadOptions: DownloadOptions = {}) => {
    const offset = downloadOptions.offset ?? 0;
    const signal = downloadOptions.signal;
    const deadline = startDeadline(downloadOptions.timeoutMs);
    const directly = await direct.open({
      mode: downloadOptions.directDownloads,
      id,
      offset,
      length: downloadOptions.length,
      signal,
      deadline,
      unary,
      onProgress: downloadOptions.onProgress,
    });
    if (directly) return directly;
    const whole = offset === 0 && downloadOptions.length === undefined;
    // A whole download is verified here as it passes, so the server sends it without hashing it too.
    const opened = await retry.run(() => openDownload(id, offset, downloadOptions.length, signal, deadline, whole), signal);
    const artifact = opened.artifact;
    const remaining = Math.max(0, Number(artifact.sizeBytes) - offset);
    const totalBytes = downloadOptions.length === undefined ? remaining : Math.min(remaining, downloadOptions.length);
    async function* content(): AsyncIterable<Uint8Array> {
      const verifier = whole ? createBlake3Verifier() : undefined;
      let iterator = opened.iterator;
      let received = 0;
      let retries = 0;
      try {
        for (;;) {
          let next;
          try {
            next = await iterator.next();
          } catch (error) {
            // A dropped stream resumes where it broke off: the verifier has hashed every byte so far, in order, so it simply goes on.
            if (++retries >= retry.maxAttempts || signal?.aborted || !retry.isTransient(error)) throw error;
            await retry.wait(retries, ConnectError.from(error), signal);
            // By the id it resolved to: a reference such as orders:latest may name another version by now.
            const resumed = await retry.run(() => openDownload(artifact.id, offset + received, totalBytes - received, signal, deadline), signal);
            if (resumed.artifact.blake3 !== artifact.blake3 || resumed.artifact.sizeBytes !== artifact.sizeBytes) {
              throw new ArtifactIntegrityError(`artifact ${id} changed while it was being downloaded; download it again`);
            }
            iterator = resumed.iterator;
            continue;
          }
          if (next.done) break;
          if (next.value.message.case !== "chunk") continue;
          verifier?.update(next.value.message.value);
          received += next.value.message.value.byteLength;
          downloadOptions.onProgress?.({ bytes: received, totalBytes });
          yield next.value.message.value;
        }
      } finally {
        await iterator.return?.();
      }
      try {
        verifier?.verify({ size: Number(artifact.sizeBytes), blake3: artifact.blake3, id });
      } catch (error) {
        await letTheServerFindIt(artifact.id, signal, deadline);
        throw error;
      }
    }
    return { artifact, content: content() };
  };

  /**
   * The content did not match its digest, and the server, told this client verifies, sent it unhashed: read it
   * once more without that, bytes discarded, so the server checks it too and marks the blob corrupt (later reads
   * then fail at once, for every client). Best effort: the caller gets its integrity error either way.
   */
  const letTheServerFindIt = async (id: string, signal: AbortSignal | undefined, deadline: Deadline) => {
    try {
      const { iterator } = await openDownload(id, 0, undefined, signal, deadline, false);
      try {
        for (let next = await iterator.next(); !next.done; next = await iterator.next()) {}
      } finally {
        await iterator.return?.();
      }
    } catch {
      // DATA_LOSS is the expected end; any other failure leaves the blob for the next unverified read to find.
    }
  };

  /**
   * A large file goes up through an upload session so that a dropped
   * connection costs at most the part in flight: the stream is bound to the
   * session, and after a transient failure the client asks where to continue
   * (resume_offset) and sends the rest from there.
   */
  const uploadFileResumably = async (path: string, size: number, spec: ArtifactSpecInit, writerOptions: Omit<WriterOptions, "expectedSize">) => {
    const signal = writerOptions.signal;
    const deadline = startDeadline(writerOptions.timeoutMs);
    const call = () => ({ ...(signal ? { signal } : {}), ...deadline.callOptions(unary.timeoutMs) });
    const sessionId = await createStreamSession(rpc, spec, { ...writerOptions, expectedSize: size }, call());
    let offset = 0;
    for (let attempt = 1; ; attempt++) {
      try {
        const stream = createReadStream(path, { start: offset, highWaterMark: MiB });
        const base = offset;
        const timeoutMs = deadline.remainingMs();
        return await uploadStream(stream, spec, {
          ...(signal ? { signal } : {}),
          ...(timeoutMs !== undefined ? { timeoutMs } : {}),
          session: { sessionId, offset },
          ...(writerOptions.onProgress ? { onProgress: (p: TransferProgress) => writerOptions.onProgress!({ bytes: base + p.bytes, totalBytes: size }) } : {}),
        });
      } catch (error) {
        if (attempt >= retry.maxAttempts || signal?.aborted || !retry.isTransient(error)) {
          await abortStreamSession(rpc, retry, sessionId, unary);
          throw error;
        }
        let now;
        try {
          await retry.wait(attempt, ConnectError.from(error), signal);
          ({ session: now } = await rpc.getUploadSession({ sessionId }, call()));
        } catch (recoveryError) {
          // Aborted during the backoff, or the session cannot be asked about any more: free its stored parts now
          // rather than leave them until the session expires hours later.
          await abortStreamSession(rpc, retry, sessionId, unary);
          throw recoveryError;
        }
        if (now!.state === UploadSessionState.COMPLETED) {
          // The stream's end reached the server but its answer was lost.
          return { artifact: await transfers.get(now!.artifactId, signal ? { signal } : {}), deduplicated: false } as UploadResponse;
        }
        offset = Number(now!.resumeOffset);
      }
    }
  };

  /**
   * JSON or text: inline when small (the database keeps it, JSON as JSONB), a
   * blob with the same id prefix otherwise, so callers need not know the
   * server's inline limit.
   */
  const saveSmallContent = async (type: "json" | "text", content: string, spec: ArtifactSpecInit, signal: AbortSignal | undefined) => {
    const bytes = Buffer.from(content, "utf8");
    if (bytes.byteLength <= inlineMaxBytes) {
      try {
        const call = { ...unary, ...(signal ? { signal } : {}) };
        return (await rpc.saveInline({ spec, content: { case: type, value: content } }, call)).artifact!;
      } catch (error) {
        // A server whose inline limit is lower than ours: store it as a blob instead.
        if (ConnectError.from(error).code !== Code.ResourceExhausted) throw error;
      }
    }
    const blobSpec: ArtifactSpecInit = {
      ...spec,
      mimeType: spec.mimeType || (type === "json" ? "application/json" : "text/plain; charset=utf-8"),
      typePrefix: spec.typePrefix || (type === "json" ? "json" : "txt"),
    };
    return (await uploadStream([bytes], blobSpec, { expectedSize: bytes.byteLength, ...(signal ? { signal } : {}) })).artifact!;
  };

  const contentFirst = options.contentFirst === false ? undefined : createContentFirst(rpc, startUpload, unary, options.findMissingBatchSize);

  /**
   * A file the server already has, recorded by digest: the response, or
   * undefined when its bytes must be sent (with the digest hashed here, to
   * declare it). Bytes the server has are never read twice: one hash, then
   * either no upload or the upload.
   */
  const uploadFileByDigest = async (path: string, size: number, spec: ArtifactSpecInit, fileOptions: UploadFileOptions) => {
    const signal = fileOptions.signal;
    const local = { blake3: fileOptions.expectedBlake3 ?? (await hashFile(path)), size };
    const missing = await contentFirst!.missing([local], signal ? { signal } : {});
    if (missing === undefined || missing.has(contentKey(local))) return { blake3: local.blake3, response: undefined };
    const response = await contentFirst!.commitByDigest(spec, local, {
      ...(signal ? { signal } : {}),
      ...(fileOptions.timeoutMs !== undefined ? { timeoutMs: fileOptions.timeoutMs } : {}),
    });
    if (response) fileOptions.onProgress?.({ bytes: 0, totalBytes: size, skippedBytes: size, skippedFiles: 1 });
    return { blake3: local.blake3, response };
  };

  const transfers: ArtifactTransfers = {
    rpc,
    ...createArtifactCalls(rpc, retry, unary),
    contentFirst,
    openWriter,
    withWriter,
    uploadStream,

    async uploadFile<Prefix extends string>(path: string, spec: ArtifactSpecInit & { typePrefix?: Prefix }, fileOptions: UploadFileOptions = {}) {
      const { contentFirst: asked, ...rest } = fileOptions;
      let writerOptions: Omit<WriterOptions, "expectedSize"> = rest;
      const { size } = await stat(path);
      if (contentFirst && asked !== false && writerOptions.session === undefined && !writerOptions.resumable) {
        const { blake3, response } = await uploadFileByDigest(path, size, spec, writerOptions);
        if (response) return response as TypedUploadResponse<Prefix>;
        writerOptions = { ...writerOptions, expectedBlake3: blake3 };
      }
      if (size >= resumableAboveBytes) return (await uploadFileResumably(path, size, spec, writerOptions)) as TypedUploadResponse<Prefix>;
      return uploadStream(createReadStream(path, { highWaterMark: MiB }), spec, { ...writerOptions, expectedSize: size });
    },

    async saveJson<Prefix extends string>(value: unknown, spec: ArtifactSpecInit & { typePrefix?: Prefix }, saveOptions: { signal?: AbortSignal } = {}) {
      const json = JSON.stringify(value);
      if (json === undefined) throw new TypeError("saveJson: the value cannot be serialised as JSON");
      return (await saveSmallContent("json", json, spec, saveOptions.signal)) as TypedArtifact<Prefix>;
    },

    async saveText<Prefix extends string>(text: string, spec: ArtifactSpecInit & { typePrefix?: Prefix }, saveOptions: { signal?: AbortSignal } = {}) {
      return (await saveSmallContent("text", text, spec, saveOptions.signal)) as TypedArtifact<Prefix>;
    },

    async saveFile<Prefix extends string>(path: string, spec: ArtifactSpecInit & { typePrefix?: Prefix }, fileOptions?: UploadFileOptions) {
      return (await transfers.uploadFile(path, spec, fileOptions)).artifact as TypedArtifact<Prefix>;
    },

    async get(id, getOptions = {}) {
      const call = { ...unary, ...(getOptions.signal ? { signal: getOptions.signal } : {}) };
      return (await rpc.getArtifact({ id, includeContent: getOptions.includeContent ?? false }, call)).artifact!;
    },

    async listPage(filter = {}, page = {}) {
      const call = { ...unary, ...(page.signal ? { signal: page.signal } : {}) };
      const response = await rpc.listArtifacts({ filter, pageSize: page.pageSize ?? 0, pageToken: page.pageToken ?? "" }, call);
      return { artifacts: response.artifacts, nextPageToken: response.nextPageToken };
    },

    async *list(filter = {}, listOptions = {}) {
      let pageToken = "";
      do {
        const response = await rpc.listArtifacts(
          { filter, pageSize: listOptions.pageSize ?? 0, pageToken },
          { ...unary, ...(listOptions.signal ? { signal: listOptions.signal } : {}) },
        );
        yield* response.artifacts;
        pageToken = response.nextPageToken;
      } while (pageToken);
    },

    async delete(id, deleteOptions = {}) {
      return (await rpc.deleteArtifact({ id }, { ...unary, ...(deleteOptions.signal ? { signal: deleteOptions.signal } : {}) })).artifact!;
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
        if (fileOptions.overwrite === false) {
          await link(partial, path); // EEXIST if anything is there: rename would replace it
          await rm(partial);
        } else await rename(partial, path);
        return artifact;
      } catch (error) {
        await file.close().catch(() => {});
        await rm(partial, { force: true });
        throw error;
      }
    },

    async close() {
      connection.close();
      await direct.close();
    },
  };
  return transfers;
}
