import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { randomBytes } from "node:crypto";
import type { Artifact } from "@artifactd/api/artifacts/v1/artifact_pb.js";
import type { ArtifactService } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import { UploadSessionState } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import { DEFAULT_PART_SIZE } from "@artifactd/api";
import {
  assembleWriter,
  createArtifactWriter,
  createTrailerMetadata,
  type ArtifactSpecInit,
  type ArtifactWriter,
  type StartUpload,
  type TypedUploadResponse,
  type WriterOptions,
} from "./artifact-writer.ts";
import { startDeadline } from "./deadline.ts";
import type { RetryPolicy } from "./retry-policy.ts";

/** Part size of resumable uploads: a resumed stream restarts at a part boundary, so a drop costs at most this much. */
const RESUMABLE_PART_BYTES = DEFAULT_PART_SIZE;
/** Past this many bytes not yet known to be stored, the writer asks the server how far it is and forgets what it has. */
const REPLAY_TRIM_BYTES = 32 * 1024 * 1024;
/** Past this many, `write` waits for the server to store more before it takes another byte. */
const REPLAY_MAX_BYTES = 128 * 1024 * 1024;

export interface ResumableWriterDeps {
  readonly rpc: Client<typeof ArtifactService>;
  readonly startUpload: StartUpload;
  readonly retry: RetryPolicy;
  /** Options for the unary session calls (their deadline). */
  readonly unary: { timeoutMs?: number };
  readonly getArtifact: (id: string, signal: AbortSignal | undefined) => Promise<Artifact>;
}

/**
 * A writer that survives a dropped connection: the stream is bound to an
 * upload session (its bytes are stored as session parts as they arrive),
 * and the writer keeps what it sent since the last byte it knows the
 * server stored. After a transient failure it asks the session where to
 * continue (resume_offset, a part boundary), opens a new stream there and
 * sends the kept bytes again, then goes on; the caller sees a slower
 * write, not an error.
 *
 * Memory: the kept bytes, trimmed every 32 MiB by asking the server, and
 * never more than 128 MiB (write then waits for the server to catch up).
 * A source that can be read again (a file) needs none of this: uploadFile
 * re-reads it instead.
 */
export function createResumableWriter<Prefix extends string>(
  deps: ResumableWriterDeps,
  spec: ArtifactSpecInit & { typePrefix?: Prefix },
  options: WriterOptions,
): ArtifactWriter<Prefix> {
  const { rpc, retry } = deps;
  const signal = options.signal;
  // One deadline over the whole upload, resumed streams and session calls included.
  const deadline = startDeadline(options.timeoutMs);
  const call = () => ({ ...(signal ? { signal } : {}), ...deadline.callOptions(deps.unary.timeoutMs) });
  const metadata = createTrailerMetadata();
  /** Bytes from `keptFrom` on, in order: what a resumed stream must send again. */
  let kept: Buffer[] = [];
  let keptFrom = 0;
  let written = 0;
  /** `written` when the server was last asked how far it has stored. */
  let checkedAt = 0;
  let state: "open" | "committing" | "committed" | "aborted" = "open";
  let committing: Promise<TypedUploadResponse<Prefix>> | undefined;
  let queue: Promise<unknown> = Promise.resolve();

  const session = createStreamSession(rpc, spec, options, call());
  session.catch(() => {});

  const openInner = (sessionId: string, offset: number) => {
    const timeoutMs = deadline.remainingMs();
    return createArtifactWriter<Prefix>(deps.startUpload, spec, {
      ...(signal ? { signal } : {}),
      ...(timeoutMs !== undefined ? { timeoutMs } : {}),
      session: { sessionId, offset },
    });
  };
  let inner: Promise<ArtifactWriter<Prefix>> = session.then((id) => openInner(id, 0));
  inner.catch(() => {});

  /** Drops kept bytes before `offset` (a part boundary the server has stored). */
  const forgetBefore = (offset: number) => {
    while (kept.length > 0 && keptFrom + kept[0]!.byteLength <= offset) keptFrom += kept.shift()!.byteLength;
    if (kept.length > 0 && keptFrom < offset) {
      kept[0] = kept[0]!.subarray(offset - keptFrom);
      keptFrom = offset;
    }
  };
  const storedOffset = async () => Number((await rpc.getUploadSession({ sessionId: await session }, call())).session!.resumeOffset);

  /**
   * After a transient failure: a new stream from the session's resume_offset,
   * with the kept bytes sent again. Answers the artifact's id instead when the
   * session turns out to be completed (the end got through, its answer not).
   */
  const resume = async (attempt: number, error: unknown): Promise<string | undefined> => {
    await retry.wait(attempt, ConnectError.from(error), signal);
    const { session: status } = await rpc.getUploadSession({ sessionId: await session }, call());
    if (status!.state === UploadSessionState.COMPLETED) return status!.artifactId;
    const offset = Number(status!.resumeOffset);
    if (offset < keptFrom)
      throw new ConnectError(`the upload session resumes at byte ${offset}, before the ${keptFrom} this writer still holds`, Code.DataLoss);
    forgetBefore(offset);
    (await inner.catch(() => undefined))?.abort().catch(() => {});
    const next = openInner(await session, offset);
    inner = Promise.resolve(next);
    for (const piece of kept) await next.write(piece);
    return undefined;
  };

  /**
   * Runs `step` on the current stream, one at a time in call order. After a
   * transient failure the stream is resumed (which sends every kept byte
   * again, so a failed write needs no repeat) and, when `again`, the step
   * runs once more on the new stream.
   */
  const serially = <T>(step: (writer: ArtifactWriter<Prefix>) => Promise<T>, again: boolean, completed?: (artifactId: string) => Promise<T>) => {
    const run = queue.then(async (): Promise<T | undefined> => {
      for (let attempt = 1; ; attempt++) {
        try {
          return await step(await inner);
        } catch (error) {
          if (attempt >= retry.maxAttempts || signal?.aborted || !retry.isTransient(error)) throw error;
          // A failure while resuming counts as the next attempt.
          for (;;) {
            try {
              const artifactId = await resume(attempt, error);
              if (artifactId !== undefined && completed) return completed(artifactId);
              break;
            } catch (resumeError) {
              if (++attempt >= retry.maxAttempts || signal?.aborted || !retry.isTransient(resumeError)) throw resumeError;
            }
          }
          if (!again) return undefined;
        }
      }
    });
    queue = run.catch(() => {});
    return run;
  };

  const failed = async (error: unknown) => {
    state = "aborted";
    // The session goes first: once it is gone, nothing the open stream does can complete it — not even a
    // cancel the server takes for a clean end of the stream.
    const id = await session.catch(() => undefined);
    if (id) await abortStreamSession(rpc, retry, id, deps.unary);
    await (await inner.catch(() => undefined))?.abort(error).catch(() => {});
  };

  return assembleWriter(metadata, {
    async write(chunk) {
      if (state !== "open") throw new Error(`cannot write: the writer is ${state}`);
      // A copy: the caller may reuse its buffer once write resolves, and these bytes may have to be sent again.
      const bytes = Buffer.from(typeof chunk === "string" ? Buffer.from(chunk, "utf8") : chunk);
      try {
        // Runs once: if the stream fails, resuming sends these bytes again with the rest that is kept.
        await serially(async (current) => {
          kept.push(bytes);
          written += bytes.byteLength;
          await current.write(bytes);
        }, false);
        // Every 32 MiB, forget what the server has stored; wait for it when too much is held.
        if (written - checkedAt > REPLAY_TRIM_BYTES) {
          checkedAt = written;
          forgetBefore(await storedOffset());
        }
        while (written - keptFrom > REPLAY_MAX_BYTES) {
          await new Promise((resolve) => setTimeout(resolve, 50));
          forgetBefore(await storedOffset());
        }
        options.onProgress?.({ bytes: written, totalBytes: options.expectedSize });
      } catch (error) {
        await failed(error);
        throw error;
      }
    },
    commit() {
      if (committing) return committing;
      if (state !== "open") return Promise.reject(new Error(`cannot commit: the writer is ${state}`));
      state = "committing";
      const trailer = metadata.snapshot();
      committing = (async () => {
        try {
          const result = (await serially(
            (current) => current.addLabels(trailer.labels).addMetrics(trailer.metrics).addTags(trailer.tags).commit(),
            true,
            // The stream's end reached the server but its answer was lost: the session holds the artifact.
            async (artifactId) => ({ artifact: await deps.getArtifact(artifactId, signal), deduplicated: false }) as TypedUploadResponse<Prefix>,
          ))!;
          state = "committed";
          kept = [];
          return result;
        } catch (error) {
          await failed(error);
          throw error;
        }
      })();
      return committing;
    },
    async abort(reason = new Error("the writer was aborted")) {
      if (state === "committed" || state === "aborted") return;
      await failed(reason);
    },
    isCommitted: () => state === "committed",
  });
}

/** Opens the upload session a resumable stream is bound to; its idempotency key makes a retried create return the same one. */
export async function createStreamSession(
  rpc: Client<typeof ArtifactService>,
  spec: ArtifactSpecInit,
  options: Pick<WriterOptions, "expectedSize" | "expectedBlake3">,
  callOptions: { signal?: AbortSignal; timeoutMs?: number },
): Promise<string> {
  const { session } = await rpc.createUploadSession(
    {
      spec,
      ...(options.expectedSize !== undefined ? { expectedSize: BigInt(options.expectedSize) } : {}),
      ...(options.expectedBlake3 ? { expectedBlake3: options.expectedBlake3 } : {}),
      partSize: BigInt(RESUMABLE_PART_BYTES),
      idempotencyKey: `stream-${randomBytes(16).toString("hex")}`,
    },
    callOptions,
  );
  return session!.sessionId;
}

/**
 * Frees an upload session's stored parts now rather than when it expires
 * hours later. Right after a dropped connection the first try may go out on
 * the dead one, so a transient failure gets one more try at once (no
 * backoff: the caller is giving up, and must not wait). Never throws.
 */
export async function abortStreamSession(
  rpc: Client<typeof ArtifactService>,
  retry: RetryPolicy,
  sessionId: string,
  unary: { timeoutMs?: number },
): Promise<void> {
  for (let attempt = 1; attempt <= 2; attempt++) {
    try {
      await rpc.abortUploadSession({ sessionId }, unary);
      return;
    } catch (error) {
      if (!retry.isTransient(error)) return;
    }
  }
}
