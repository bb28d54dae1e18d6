import type { ArtifactSpec, Caller } from "../artifact.ts";
import { ArtifactError, failedPrecondition, invalidArgument } from "../artifact-error.ts";
import { BLAKE3_HEX_PATTERN, blake3Hex } from "../blake3.ts";
import type { BlobStore } from "../ports/blob-store.ts";
import { BLOB_RECLAIMED, type ArtifactRecords } from "../ports/artifact-records.ts";
import type { TenantBlobIndex } from "../ports/tenant-blob-index.ts";
import type { ContentDigest, TenantContentIndex } from "../ports/tenant-content-index.ts";
import { BLOB_HOLD_MS } from "./blob-writer-sink.ts";
import { newArtifactRecord, recordArtifact, type ArtifactRecording } from "./record-artifact.ts";
import type { TenantQuotas } from "./tenant-quotas.ts";
import type { NoContentSink } from "./upload-stream-reader.ts";

/**
 * Content first: a client asks which of its contents the tenant lacks
 * (FindMissingContent), sends only those, and records the rest as new
 * artifacts by digest (Upload with content_by_digest), sending no bytes.
 */

/**
 * FindMissingContent: which of `contents` the caller's tenant has neither as
 * a blob (not corrupt) nor inline in a live artifact. Each entry is checked
 * first, and the whole list answered by one query. Any token may ask: it
 * reveals only the tenant's own content.
 */
export async function findMissingContent(
  deps: { readonly metadata: Pick<TenantContentIndex, "findMissingContent">; readonly maxBatchItems: number },
  caller: Caller,
  contents: readonly ContentDigest[],
): Promise<ContentDigest[]> {
  if (contents.length > deps.maxBatchItems) {
    throw invalidArgument(
      `contents has ${contents.length} entries; at most ${deps.maxBatchItems} are allowed (ARTIFACTD_MAX_BATCH_ITEMS): ask in batches of at most ${deps.maxBatchItems}`,
    );
  }
  contents.forEach((content, index) => {
    if (!BLAKE3_HEX_PATTERN.test(content.blake3)) {
      throw invalidArgument(`contents[${index}].blake3 must be 64 lowercase hex characters (a BLAKE3-256 digest)`);
    }
    if (!Number.isSafeInteger(content.sizeBytes) || content.sizeBytes < 0) {
      throw invalidArgument(`contents[${index}].size_bytes ${content.sizeBytes} is not valid: give the content's length in bytes (>= 0)`);
    }
  });
  return deps.metadata.findMissingContent(caller.tenantId, contents);
}

export interface ContentByDigestSinkDeps {
  readonly metadata: ArtifactRecording &
    Pick<ArtifactRecords, "checkInputs"> &
    Pick<TenantBlobIndex, "holdBlob"> &
    Pick<TenantContentIndex, "findInlineContent">;
  /** Only for recordArtifact, which stores nothing here: there is no copy of ours to discard. */
  readonly blobs: BlobStore;
  readonly quotas: TenantQuotas;
  readonly log?: (message: string, error?: unknown) => void;
}

/**
 * Where an Upload with content_by_digest goes: a new artifact of content
 * the tenant already has, the stream carrying no bytes.
 *
 * - A blob of the tenant: held against garbage collection at once, then
 *   recorded exactly as a deduplicating upload is (./record-artifact.ts:
 *   the artifact row references the blob, share-locked in the same
 *   transaction). A blob that garbage collection reclaimed meanwhile leaves
 *   the content lacking: FAILED_PRECONDITION, nothing recorded. Stores
 *   nothing new, so, as for a deduplicating upload, no stored-bytes quota.
 * - Content kept inline in one of the tenant's live artifacts: its bytes are
 *   copied into the new artifact's row (inline content is never shared
 *   between rows), counted against the stored-bytes quota as any inline
 *   upload's.
 * - Neither: FAILED_PRECONDITION before anything is stored, telling the
 *   client to send the bytes.
 */
export async function openContentByDigestSink(
  deps: ContentByDigestSinkDeps,
  caller: Caller,
  declared: { readonly spec: ArtifactSpec; readonly expectedSize: number; readonly expectedBlake3: string },
  signal: AbortSignal,
): Promise<NoContentSink> {
  const { spec, expectedSize, expectedBlake3 } = declared;
  const content = { blake3: expectedBlake3, sizeBytes: expectedSize };
  await deps.metadata.checkInputs(caller.tenantId, spec.inputs);

  const blob = await deps.metadata.findBlob(caller.tenantId, expectedBlake3);
  const inBlob =
    blob !== undefined && !blob.corrupt && blob.sizeBytes === expectedSize && (await deps.metadata.holdBlob(caller.tenantId, expectedBlake3, BLOB_HOLD_MS));
  const inline = inBlob ? undefined : await inlineCopy(deps, caller.tenantId, content);
  if (!inBlob && inline === undefined) throw lacking(content);

  const storage = inline ? deps.quotas.reserveStorage(caller.tenantId) : undefined;
  let stored = false;
  try {
    await storage?.add(expectedSize);
  } catch (error) {
    storage?.release(false);
    throw error;
  }
  return {
    carries: "no content",
    startOffset: 0,
    expectedSize,
    metadata: spec,

    async write() {
      // The reader refuses every chunk of such a stream before handing it on.
      throw invalidArgument("an upload with content_by_digest takes no bytes");
    },

    async finish({ metadata }) {
      const record = newArtifactRecord({
        tenantId: caller.tenantId,
        spec: { ...spec, ...metadata },
        sizeBytes: expectedSize,
        blake3: expectedBlake3,
        createdBy: caller.principal,
        ...(inline ? { inline: "binary" as const } : {}),
      });
      if (inline) {
        // The last moment a cancelled call can still leave nothing behind.
        if (signal.aborted) throw signal.reason;
        const { artifact } = await deps.metadata.createArtifact({ ...record, inline: { type: "binary", bytes: inline } });
        stored = true;
        return { artifact, deduplicated: true };
      }
      try {
        // No copy of ours: the content is the blob's, or the recording fails with BLOB_RECLAIMED.
        return await recordArtifact(
          deps,
          record,
          {
            hold: undefined,
            store: async () => {
              throw lacking(content);
            },
            discard: async () => {},
          },
          signal,
        );
      } catch (error) {
        if (error instanceof ArtifactError && error.message === BLOB_RECLAIMED) throw lacking(content);
        throw error;
      }
    },

    async fail() {
      // Nothing was stored.
    },

    async close() {
      storage?.release(stored);
    },
  };
}

/** The tenant's inline copy of the content, checked against its digest; undefined when it has none. */
async function inlineCopy(deps: ContentByDigestSinkDeps, tenantId: string, content: ContentDigest): Promise<Uint8Array | undefined> {
  const bytes = await deps.metadata.findInlineContent(tenantId, content);
  if (bytes === undefined) return undefined;
  if (bytes.byteLength !== content.sizeBytes || blake3Hex(bytes) !== content.blake3) {
    // A row whose bytes do not match its own digest is not content to copy; the client sends the bytes instead.
    deps.log?.(`inline content recorded as ${content.blake3} (${content.sizeBytes} bytes) does not match its digest; not copied`);
    return undefined;
  }
  return bytes;
}

function lacking(content: ContentDigest): ArtifactError {
  return failedPrecondition(
    `this tenant has no content with BLAKE3 ${content.blake3} and size ${content.sizeBytes} bytes: send the bytes in an upload without content_by_digest`,
  );
}
