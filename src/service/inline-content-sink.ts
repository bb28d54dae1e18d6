import type { ArtifactSpec, Caller } from "../artifact.ts";
import type { ArtifactRecords } from "../ports/artifact-records.ts";
import { newArtifactRecord } from "./record-artifact.ts";
import type { TenantQuotas } from "./tenant-quotas.ts";
import type { WholeContentSink } from "./upload-stream-reader.ts";

export interface InlineContentSinkDeps {
  readonly metadata: Pick<ArtifactRecords, "createArtifact">;
  readonly quotas: TenantQuotas;
}

/**
 * Where a small streaming upload puts its bytes: the artifact's own row
 * (storage 'inline', ../adapters/metadata/migrations/20261212000000_inline_bytes.ts),
 * chosen when the header declares a size within the server's
 * ARTIFACTD_UPLOAD_INLINE_MAX_BYTES.
 *
 * Why: a blob costs a blob-store write and the blob's bookkeeping (the key
 * in flight, the digest look-up, the blob row: five round trips to Postgres
 * besides the store), which for a few KiB is most of the call. Here the
 * bytes are held in memory (at most the declared size, which the reader
 * never lets a stream exceed) and the artifact is recorded in one statement,
 * as SaveInline's are. There is nothing to clean up on failure: nothing is
 * stored before that statement, and it stores all or nothing.
 *
 * Inline content is not deduplicated (each row holds its copy), which is
 * why the limit is small; inputs are checked by the recording statement.
 */
export async function openInlineContentSink(
  deps: InlineContentSinkDeps,
  caller: Caller,
  declared: { readonly spec: ArtifactSpec; readonly expectedSize: number; readonly expectedBlake3: string | undefined },
  signal: AbortSignal,
): Promise<WholeContentSink> {
  const { spec, expectedSize } = declared;
  const storage = deps.quotas.reserveStorage(caller.tenantId);
  let stored = false;
  try {
    await storage.add(expectedSize);
  } catch (error) {
    storage.release(false);
    throw error;
  }
  const content = new Uint8Array(expectedSize);
  let filled = 0;
  return {
    carries: "whole content",
    startOffset: 0,
    expectedSize,
    expectedBlake3: declared.expectedBlake3,
    metadata: spec,

    async write(pieces) {
      for (const piece of pieces) {
        content.set(piece, filled);
        filled += piece.byteLength;
      }
    },

    async finish({ size, blake3, metadata }) {
      // The last moment a cancelled call can still leave nothing behind.
      if (signal.aborted) throw signal.reason;
      const record = newArtifactRecord({
        tenantId: caller.tenantId,
        spec: { ...spec, ...metadata },
        sizeBytes: size,
        blake3,
        createdBy: caller.principal,
        inline: "binary",
      });
      const { artifact } = await deps.metadata.createArtifact({ ...record, inline: { type: "binary", bytes: content.subarray(0, size) } });
      stored = true;
      return { artifact, deduplicated: false };
    },

    async fail() {
      // Nothing was stored.
    },

    async close() {
      storage.release(stored);
    },
  };
}
