import type { Artifact, ArtifactFilter, Caller, InlineContent } from "../artifact.ts";
import { ArtifactError, invalidArgument, notFound } from "../artifact-error.ts";
import { defaultPrefix, newArtifactId } from "../artifact-id.ts";
import { blake3Hex } from "../blake3.ts";
import type { BlobStore } from "../ports/blob-store.ts";
import type { MetadataStore, Page } from "../ports/metadata-store.ts";
import { downloadArtifact, type DownloadRequest } from "./download-artifact.ts";
import { uploadArtifact, type UploadMessage, type UploadResult } from "./upload-artifact.ts";
import { requireArtifactId, validateLabels, validateSpec, validateTags, type RawSpec } from "./validate-spec.ts";

export interface ArtifactServiceOptions {
  readonly metadata: MetadataStore;
  readonly blobs: BlobStore;
  readonly inlineMaxBytes: number;
  readonly uploadMaxBytes: number;
  readonly downloadChunkBytes: number;
}

/** The use cases behind the RPCs, free of any transport. */
export interface ArtifactService {
  upload(caller: Caller, messages: AsyncIterable<UploadMessage>, signal: AbortSignal): Promise<UploadResult>;
  download(
    caller: Caller,
    request: DownloadRequest,
    signal: AbortSignal,
  ): Promise<{ artifact: Artifact; content: AsyncIterable<Uint8Array> }>;
  getArtifact(caller: Caller, id: string, includeContent: boolean): Promise<Artifact>;
  listArtifacts(caller: Caller, filter: ArtifactFilter, pageSize: number, pageToken: string): Promise<Page<Artifact>>;
  saveInline(caller: Caller, spec: RawSpec | undefined, content: InlineContent | undefined): Promise<Artifact>;
  deleteArtifact(caller: Caller, id: string): Promise<Artifact>;
}

export const DEFAULT_PAGE_SIZE = 100;
export const MAX_PAGE_SIZE = 1000;

export function createArtifactService(options: ArtifactServiceOptions): ArtifactService {
  const { metadata, blobs } = options;
  return {
    upload(caller, messages, signal) {
      return uploadArtifact({ metadata, blobs, uploadMaxBytes: options.uploadMaxBytes }, caller, messages, signal);
    },

    download(caller, request, signal) {
      return downloadArtifact({ metadata, blobs, chunkBytes: options.downloadChunkBytes }, caller, request, signal);
    },

    async getArtifact(caller, rawId, includeContent) {
      const id = requireArtifactId("id", rawId);
      const artifact = await metadata.getArtifact(caller.tenantId, id, { includeContent: includeContent });
      if (!artifact) throw notFound(`artifact ${id} does not exist`);
      return artifact;
    },

    async listArtifacts(caller, filter, pageSize, pageToken) {
      if (!Number.isInteger(pageSize) || pageSize < 0 || pageSize > MAX_PAGE_SIZE) {
        throw invalidArgument(`page_size ${pageSize} is not valid: give 1–${MAX_PAGE_SIZE}, or 0 for the default of ${DEFAULT_PAGE_SIZE}`);
      }
      if (filter.labels) validateLabels("filter.labels", filter.labels);
      if (filter.tagsAll) validateTags("filter.tags_all", filter.tagsAll);
      if (filter.tagsAny) validateTags("filter.tags_any", filter.tagsAny);
      for (const range of filter.metricRanges ?? []) {
        if (!range.name) throw invalidArgument("filter.metric_ranges[].name is required");
        if (range.min !== undefined && range.max !== undefined && range.min > range.max) {
          throw invalidArgument(`filter.metric_ranges for ${JSON.stringify(range.name)}: min ${range.min} is greater than max ${range.max}`);
        }
      }
      if (filter.createdAfter && filter.createdBefore && filter.createdAfter >= filter.createdBefore) {
        throw invalidArgument("filter.created_after must be earlier than filter.created_before");
      }
      return metadata.listArtifacts(caller.tenantId, filter, { pageSize: pageSize || DEFAULT_PAGE_SIZE, pageToken });
    },

    async saveInline(caller, rawSpec, content) {
      const now = new Date();
      const spec = validateSpec(rawSpec, now);
      if (!content) throw invalidArgument("content is required: set text or json");
      const text = content.type === "text" ? content.text : content.json;
      const bytes = Buffer.from(text, "utf8");
      if (bytes.byteLength > options.inlineMaxBytes) {
        throw new ArtifactError(
          "resource_exhausted",
          `inline content is ${bytes.byteLength} bytes, over this server's inline limit of ${options.inlineMaxBytes} bytes: upload it as a blob with Upload instead`,
        );
      }
      if (text.includes("\u0000")) throw invalidArgument("inline content contains a NUL character, which cannot be stored inline: upload it as a blob");
      if (content.type === "json") {
        try {
          JSON.parse(content.json);
        } catch (error) {
          throw invalidArgument(`json is not a valid JSON document: ${(error as Error).message}`);
        }
      }
      const mimeType = spec.mimeType || (content.type === "json" ? "application/json" : "text/plain; charset=utf-8");
      const { artifact } = await metadata.createArtifact({
        id: newArtifactId(spec.typePrefix || defaultPrefix(mimeType, content.type)),
        tenantId: caller.tenantId,
        spec,
        mimeType,
        sizeBytes: bytes.byteLength,
        blake3: blake3Hex(bytes),
        createdAt: now,
        createdBy: caller.principal,
        inline: content,
      });
      return artifact;
    },

    async deleteArtifact(caller, rawId) {
      const id = requireArtifactId("id", rawId);
      const artifact = await metadata.softDeleteArtifact(caller.tenantId, id, new Date());
      if (!artifact) throw notFound(`artifact ${id} does not exist`);
      return artifact;
    },
  };
}
