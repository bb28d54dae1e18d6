import { Code, ConnectError, type Client } from "@connectrpc/connect";
import type { ArtifactService, UploadResponse } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import type { ArtifactSpecInit, StartUpload, UploadMessage } from "./artifact-writer.ts";

/**
 * Content first: before sending a file, ask the server whether the tenant
 * already has its content (FindMissingContent, by BLAKE3 and size); if so,
 * record the new artifact by digest (an Upload whose header sets
 * content_by_digest and carries no bytes) instead of sending the bytes
 * again. uploadFile and saveDir use it.
 *
 * The server answers at most ARTIFACTD_MAX_BATCH_ITEMS contents per call
 * (1,000 by default): the client asks in batches of `batchSize`, and when a
 * server with a lower limit refuses one, it learns the limit from the
 * refusal and asks again in smaller batches. A server that does not serve
 * FindMissingContent (an older one: UNIMPLEMENTED) is remembered, and
 * everything is sent to it as before.
 */
export interface ContentFirst {
  /**
   * The keys (contentKey) of the contents the server lacks, of those given;
   * undefined when it cannot say (an older server): then send everything.
   */
  missing(contents: readonly LocalContent[], options?: { signal?: AbortSignal }): Promise<Set<string> | undefined>;
  /**
   * Records a new artifact of content the tenant has, sending no bytes.
   * Undefined when the server no longer has it (FAILED_PRECONDITION: it
   * vanished since it was asked about): send the bytes then.
   */
  commitByDigest(spec: ArtifactSpecInit, content: LocalContent, options?: { signal?: AbortSignal; timeoutMs?: number }): Promise<UploadResponse | undefined>;
}

/** A content the client has locally, by its BLAKE3 (lowercase hex) and size. */
export interface LocalContent {
  readonly blake3: string;
  readonly size: number;
}

/** One key per content: the same digest with another size is another content. */
export const contentKey = (content: LocalContent) => `${content.blake3}:${content.size}`;

/** FindMissingContent batches of at most this many contents, the server's default ARTIFACTD_MAX_BATCH_ITEMS. */
export const DEFAULT_FIND_MISSING_BATCH = 1000;

const SERVER_LIMIT = /at most (\d+) are allowed \(ARTIFACTD_MAX_BATCH_ITEMS\)/;

export function createContentFirst(
  rpc: Client<typeof ArtifactService>,
  startUpload: StartUpload,
  unary: { timeoutMs?: number },
  batchSize = DEFAULT_FIND_MISSING_BATCH,
): ContentFirst {
  let served = true;
  let batch = batchSize;
  return {
    async missing(contents, options = {}) {
      if (!served) return undefined;
      const missing = new Set<string>();
      for (let start = 0; start < contents.length; ) {
        const asked = contents.slice(start, start + batch);
        try {
          const response = await rpc.findMissingContent(
            { contents: asked.map((c) => ({ blake3: c.blake3, sizeBytes: BigInt(c.size) })) },
            { ...unary, ...(options.signal ? { signal: options.signal } : {}) },
          );
          for (const m of response.missing) missing.add(contentKey({ blake3: m.blake3, size: Number(m.sizeBytes) }));
          start += asked.length;
        } catch (error) {
          const failure = ConnectError.from(error);
          if (failure.code === Code.Unimplemented) {
            served = false;
            return undefined;
          }
          const limit = failure.code === Code.InvalidArgument ? Number(SERVER_LIMIT.exec(failure.rawMessage)?.[1]) : Number.NaN;
          // A server whose limit is lower than our batch: ask again within it.
          if (limit >= 1 && limit < asked.length) {
            batch = limit;
            continue;
          }
          throw error;
        }
      }
      return missing;
    },

    async commitByDigest(spec, content, options = {}) {
      const messages: UploadMessage[] = [
        { message: { case: "header", value: { spec, expectedBlake3: content.blake3, expectedSize: BigInt(content.size), contentByDigest: true } } },
      ];
      try {
        return await startUpload(
          (async function* () {
            yield* messages;
          })(),
          options.signal ?? new AbortController().signal,
          options.timeoutMs,
        );
      } catch (error) {
        if (ConnectError.from(error).code === Code.FailedPrecondition) return undefined;
        throw error;
      }
    },
  };
}
