import { create, toJsonString } from "@bufbuild/protobuf";
import { DEFAULT_PART_SIZE, MAX_PART_SIZE, MIN_PART_SIZE, type ArtifactSpecInit } from "@artifactd/api";
import { Code, ConnectError, type CallOptions, type Client } from "@connectrpc/connect";
import { ArtifactSpecSchema, type Artifact } from "@artifactd/api/artifacts/v1/artifact_pb.js";
import { type ArtifactService, UploadSessionState, type UploadSession } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import { hashFile } from "./hash-file.ts";
import { DEFAULT_RETRY, withRetry, type RetryPolicy } from "./retry.ts";
import { createLocalUploadMemory, type UploadMemory } from "./upload-memory.ts";

export { DEFAULT_PART_SIZE, MAX_PART_SIZE, MIN_PART_SIZE, type ArtifactSpecInit };

export const DEFAULT_CONCURRENCY = 4;

export interface UploadFileOptions {
  /** Bytes per part, 5–64 MiB; 8 MiB by default. A resumed session keeps the part size it was made with. */
  readonly partSize?: number;
  /** Parts in flight at once; 4 by default. Memory use is about concurrency × partSize. */
  readonly concurrency?: number;
  /** Called while hashing (per 4 MiB read), after each part and before completing. */
  readonly onProgress?: (progress: UploadProgress) => void;
  /** Cancels the upload: calls in flight stop and the session is aborted (its parts are freed). */
  readonly signal?: AbortSignal;
  /** Retries of each call that fails for a passing reason; 4 with backoff from 300 ms by default. */
  readonly retry?: RetryPolicy;
  /** Where session ids are remembered across page reloads; localStorage by default. */
  readonly memory?: UploadMemory;
}

export interface UploadProgress {
  readonly phase: "hashing" | "uploading" | "completing";
  /** Bytes hashed so far (equals totalBytes once hashing is done). */
  readonly hashedBytes: number;
  /** Bytes in parts the server has committed, including parts committed before a resume. */
  readonly uploadedBytes: number;
  readonly totalBytes: number;
}

export interface UploadFileResult {
  readonly artifact: Artifact;
  /** The content was already stored for this tenant. */
  readonly deduplicated: boolean;
  /** The upload continued a session made earlier (after a reload or a failure). */
  readonly resumed: boolean;
  /** Parts sent by this call, and parts the session already held. */
  readonly partsSent: number;
  readonly partsSkipped: number;
  readonly sessionId: string;
}

/**
 * Uploads a file through a resumable upload session.
 *
 * 1. The file's BLAKE3 (and each part's) is computed in a Web Worker.
 * 2. The idempotency key is a digest of the file's name, size, last-modified
 *    time, content digest and the spec, so the same file with the same
 *    metadata maps to the same session: after a reload or a dropped
 *    connection, a new call finds the session (through localStorage, or the
 *    key itself) and sends only the parts it lacks. Calling again after the
 *    upload completed, while its session lives, returns the same artifact.
 * 3. Parts go up `concurrency` at a time, each retried on passing failures.
 * 4. CompleteUploadSession verifies size and digest and records the artifact.
 *
 * A name and mime type missing from the spec are taken from the File.
 */
export async function uploadFile(
  rpc: Client<typeof ArtifactService>,
  file: Blob,
  specInit: ArtifactSpecInit,
  options: UploadFileOptions = {},
): Promise<UploadFileResult> {
  const requestedPartSize = options.partSize ?? DEFAULT_PART_SIZE;
  if (!Number.isSafeInteger(requestedPartSize) || requestedPartSize < MIN_PART_SIZE || requestedPartSize > MAX_PART_SIZE) {
    throw new RangeError(`partSize ${requestedPartSize} is not valid: give ${MIN_PART_SIZE}–${MAX_PART_SIZE} bytes (5–64 MiB)`);
  }
  const concurrency = options.concurrency ?? DEFAULT_CONCURRENCY;
  if (!Number.isSafeInteger(concurrency) || concurrency < 1) throw new RangeError(`concurrency ${concurrency} is not valid: give 1 or more`);
  const { signal, onProgress } = options;
  const policy = options.retry ?? DEFAULT_RETRY;
  const memory = options.memory ?? createLocalUploadMemory();
  const totalBytes = file.size;
  const name = file instanceof File ? file.name : "";
  const spec: ArtifactSpecInit = { ...specInit, name: specInit.name || name, mimeType: specInit.mimeType || file.type || "" };

  let hashedBytes = 0;
  let uploadedBytes = 0;
  const report = (phase: UploadProgress["phase"]) => onProgress?.({ phase, hashedBytes, uploadedBytes, totalBytes });
  report("hashing");
  const identity = JSON.stringify([
    "artifactd-web-upload/1",
    name,
    totalBytes,
    file instanceof File ? file.lastModified : 0,
    toJsonString(ArtifactSpecSchema, create(ArtifactSpecSchema, spec)),
  ]);
  const digests = await hashFile(file, {
    partSize: requestedPartSize,
    salt: identity,
    signal,
    onProgress: (n) => {
      hashedBytes = n;
      report("hashing");
    },
  });
  hashedBytes = totalBytes;
  const idempotencyKey = `web1_${digests.keyDigest}`;
  // Every call retried on passing failures, cancelled by `s`.
  const call = <T>(fn: (o: CallOptions) => Promise<T>, s: AbortSignal | undefined = signal) => withRetry(() => fn(s ? { signal: s } : {}), policy, s);

  // Find the session: the one remembered for this file, or the one the key names, or a new one.
  let session: UploadSession | undefined;
  const remembered = memory.get(idempotencyKey);
  if (remembered) {
    try {
      session = (await call((o) => rpc.getUploadSession({ sessionId: remembered }, o))).session;
    } catch (error) {
      if (!isGone(error)) throw error;
      memory.forget(idempotencyKey);
    }
  }
  session ??= (
    await call((o) =>
      rpc.createUploadSession(
        { spec, expectedSize: BigInt(totalBytes), expectedBlake3: digests.digest, partSize: BigInt(requestedPartSize), idempotencyKey },
        o,
      ),
    )
  ).session;
  if (!session) throw new Error("the server answered without an upload session");
  const sessionId = session.sessionId;
  memory.remember(idempotencyKey, sessionId);
  const resumed = session.committedParts.length > 0 || session.state !== UploadSessionState.OPEN;

  const partSize = Number(session.partSize);
  const partCount = Math.ceil(totalBytes / partSize);
  const committed = new Set(session.committedParts);
  const missing: number[] = [];
  if (session.state === UploadSessionState.OPEN) for (let n = 1; n <= partCount; n++) if (!committed.has(n)) missing.push(n);
  uploadedBytes = session.state === UploadSessionState.OPEN ? Number(session.committedBytes) : totalBytes;
  report("uploading");

  try {
    await uploadParts();
    report("completing");
    const done = await call((o) => rpc.completeUploadSession({ sessionId }, o));
    memory.forget(idempotencyKey);
    if (!done.artifact) throw new Error("the server completed the upload without returning the artifact");
    return {
      artifact: done.artifact,
      deduplicated: done.deduplicated,
      resumed,
      partsSent: missing.length,
      partsSkipped: partCount - missing.length,
      sessionId,
    };
  } catch (error) {
    if (signal?.aborted) {
      // Cancelled: free the parts. Best effort; the server expires the session otherwise.
      memory.forget(idempotencyKey);
      await rpc.abortUploadSession({ sessionId }, { timeoutMs: 10_000 }).catch(() => {});
      throw signal.reason;
    }
    // A session the server dropped (expired, or a digest mismatch at complete) cannot be resumed.
    if (isGone(error) || ConnectError.from(error).code === Code.InvalidArgument) memory.forget(idempotencyKey);
    throw error;
  }

  async function uploadParts(): Promise<void> {
    const queue = [...missing];
    const stop = new AbortController();
    const partSignal = signal ? AbortSignal.any([signal, stop.signal]) : stop.signal;
    let failure: { error: unknown } | undefined;
    const lane = async () => {
      for (let n = queue.shift(); n !== undefined; n = queue.shift()) {
        const start = (n - 1) * partSize;
        const data = new Uint8Array(await file.slice(start, Math.min(start + partSize, totalBytes)).arrayBuffer());
        // Part digests were computed for the requested size; a resumed session may use another.
        const partBlake3 = digests.partSize === partSize ? (digests.partDigests[n - 1] ?? "") : "";
        const partNumber = n;
        await call((o) => rpc.uploadPart({ sessionId, partNumber, data, partBlake3 }, o), partSignal);
        uploadedBytes += data.byteLength;
        report("uploading");
      }
    };
    await Promise.all(
      Array.from({ length: Math.min(concurrency, queue.length) }, () =>
        lane().catch((error: unknown) => {
          // The first failure stops the other lanes; theirs are only its echo.
          failure ??= { error };
          stop.abort(error);
        }),
      ),
    );
    signal?.throwIfAborted();
    if (failure) throw failure.error;
  }
}

function isGone(error: unknown): boolean {
  return ConnectError.from(error).code === Code.NotFound;
}
