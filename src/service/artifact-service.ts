import type { Artifact, ArtifactEvent, ArtifactFilter, ArtifactStatus, Caller, InlineContent, Lineage } from "../artifact.ts";
import { ArtifactError, invalidArgument, notFound } from "../artifact-error.ts";
import { defaultPrefix, newArtifactId } from "../artifact-id.ts";
import { blake3Hex } from "../blake3.ts";
import type { BlobStore } from "../ports/blob-store.ts";
import type { MetadataStore, Page } from "../ports/metadata-store.ts";
import type { ArtifactEvents } from "./artifact-events.ts";
import { decodeEventCursor, watchArtifacts } from "./watch-artifacts.ts";
import { requireScope } from "./api-tokens.ts";
import { createDownloadUrl, type UrlSigner } from "./download-urls.ts";
import { downloadArtifact, type DownloadRequest } from "./download-artifact.ts";
import { uploadArtifact, type UploadMessage, type UploadResult } from "./upload-artifact.ts";
import {
  abortUploadSession,
  completeUploadSession,
  createUploadSession,
  getUploadSession,
  uploadSessionPart,
  type CreateSessionRequest,
  type SessionView,
} from "./upload-sessions.ts";
import { checkFilterText, checkNoNul, requireArtifactId, validateLabels, validateSpec, validateTags, type RawSpec } from "./validate-spec.ts";

export interface ArtifactServiceOptions {
  readonly metadata: MetadataStore;
  readonly blobs: BlobStore;
  readonly inlineMaxBytes: number;
  readonly uploadMaxBytes: number;
  readonly downloadChunkBytes: number;
  readonly events: ArtifactEvents;
  readonly sessionTtlMs: number;
  readonly urlSigner: UrlSigner;
  readonly downloadUrlMaxTtlSeconds: number;
  readonly uploadStaleMs: number;
  readonly log?: (message: string, error?: unknown) => void;
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
  listArtifacts(
    caller: Caller,
    filter: ArtifactFilter,
    pageSize: number,
    pageToken: string,
    includeTotalCount?: boolean,
  ): Promise<Page<Artifact> & { totalCount: number | undefined }>;
  searchArtifacts(caller: Caller, query: string, filter: ArtifactFilter, pageSize: number, pageToken: string): Promise<Page<Artifact>>;
  bestArtifact(caller: Caller, kind: string, metric: string, minimize: boolean, filter: ArtifactFilter): Promise<Artifact>;
  lineage(caller: Caller, id: string, depth: number): Promise<Lineage>;
  saveInline(caller: Caller, spec: RawSpec | undefined, content: InlineContent | undefined): Promise<Artifact>;
  deleteArtifact(caller: Caller, id: string): Promise<Artifact>;
  setPinned(caller: Caller, id: string, pinned: boolean): Promise<Artifact>;
  setStatus(caller: Caller, id: string, status: ArtifactStatus | undefined): Promise<Artifact>;
  archiveRun(caller: Caller, runId: string): Promise<number>;
  /**
   * Events matching the filter until the signal aborts: from now, or every
   * event after the cursor `resumeAfter` (empty: from now).
   */
  watch(caller: Caller, filter: ArtifactFilter, resumeAfter: string, signal: AbortSignal): AsyncIterable<ArtifactEvent>;

  createUploadSession(caller: Caller, request: CreateSessionRequest): Promise<SessionView>;
  uploadPart(caller: Caller, request: { sessionId: string; partNumber: number; data: Uint8Array; partBlake3: string }): Promise<SessionView>;
  getUploadSession(caller: Caller, id: string): Promise<SessionView>;
  completeUploadSession(caller: Caller, id: string): Promise<UploadResult>;
  abortUploadSession(caller: Caller, id: string): Promise<void>;
  /** `baseUrl`: where clients reach this service, e.g. http://host:8080. */
  createDownloadUrl(caller: Caller, id: string, ttlSeconds: number, baseUrl: string): Promise<{ url: string; expiresAt: Date }>;
}

export const MAX_LINEAGE_DEPTH = 32;

export const DEFAULT_PAGE_SIZE = 100;
export const MAX_PAGE_SIZE = 1000;

export function createArtifactService(options: ArtifactServiceOptions): ArtifactService {
  const { metadata, blobs, events } = options;
  const sessionDeps = {
    metadata,
    blobs,
    sessionTtlMs: options.sessionTtlMs,
    uploadMaxBytes: options.uploadMaxBytes,
    uploadStaleMs: options.uploadStaleMs,
    ...(options.log ? { log: options.log } : {}),
  };
  const validateFilter = (filter: ArtifactFilter) => {
    checkFilterText(filter);
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
  };
  const pageSizeOf = (pageSize: number) => {
    if (!Number.isInteger(pageSize) || pageSize < 0 || pageSize > MAX_PAGE_SIZE) {
      throw invalidArgument(`page_size ${pageSize} is not valid: give 1–${MAX_PAGE_SIZE}, or 0 for the default of ${DEFAULT_PAGE_SIZE}`);
    }
    return pageSize || DEFAULT_PAGE_SIZE;
  };
  const found = (id: string, artifact: Artifact | undefined): Artifact => {
    if (!artifact) throw notFound(`artifact ${id} does not exist`);
    return artifact;
  };

  return {
    async upload(caller, messages, signal) {
      requireScope(caller, "read-write", "upload artifacts");
      return uploadArtifact(sessionDeps, caller, messages, signal);
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

    async listArtifacts(caller, filter, pageSize, pageToken, includeTotalCount = false) {
      validateFilter(filter);
      const page = await metadata.listArtifacts(caller.tenantId, filter, { pageSize: pageSizeOf(pageSize), pageToken });
      const totalCount = includeTotalCount ? await metadata.countArtifacts(caller.tenantId, filter) : undefined;
      return { ...page, totalCount };
    },

    async searchArtifacts(caller, query, filter, pageSize, pageToken) {
      if (query.trim() === "" || query.length > 512) throw invalidArgument("query must be 1–512 characters of free text");
      checkNoNul("query", query);
      validateFilter(filter);
      return metadata.searchArtifacts(caller.tenantId, query, filter, { pageSize: pageSizeOf(pageSize), pageToken });
    },

    async bestArtifact(caller, kind, metric, minimize, filter) {
      if (!kind) throw invalidArgument("kind is required: the kind of artifact to rank, e.g. model");
      if (!metric) throw invalidArgument("metric is required: the metric to rank by, e.g. accuracy");
      checkNoNul("kind", kind);
      checkNoNul("metric", metric);
      validateFilter(filter);
      const best = await metadata.bestArtifact(caller.tenantId, kind, metric, minimize, filter);
      if (!best) throw notFound(`no ${kind} artifact with metric ${JSON.stringify(metric)} matches the filter`);
      return best;
    },

    async lineage(caller, rawId, depth) {
      const id = requireArtifactId("id", rawId);
      if (!Number.isInteger(depth) || depth < 0 || depth > MAX_LINEAGE_DEPTH) {
        throw invalidArgument(`depth ${depth} is not valid: give 1–${MAX_LINEAGE_DEPTH}, or 0 for 1`);
      }
      found(id, await metadata.getArtifact(caller.tenantId, id));
      return metadata.lineage(caller.tenantId, id, depth || 1);
    },

    async setPinned(caller, rawId, pinned) {
      requireScope(caller, "read-write", "pin or unpin artifacts");
      const id = requireArtifactId("id", rawId);
      return found(id, await metadata.setPinned(caller.tenantId, id, pinned));
    },

    async setStatus(caller, rawId, status) {
      requireScope(caller, "read-write", "change an artifact's status");
      const id = requireArtifactId("id", rawId);
      if (!status) throw invalidArgument("status is required: STATUS_DRAFT, STATUS_REVIEW, STATUS_APPROVED or STATUS_REJECTED");
      return found(id, await metadata.setStatus(caller.tenantId, id, status));
    },

    async archiveRun(caller, runId) {
      requireScope(caller, "admin", "archive a whole run");
      if (!runId || runId.length > 256) throw invalidArgument("run_id is required (at most 256 characters)");
      return (await metadata.archiveRun(caller.tenantId, runId, new Date())).length;
    },

    watch(caller, filter, resumeAfter, signal) {
      validateFilter(filter);
      return watchArtifacts({ events, metadata }, caller.tenantId, filter, decodeEventCursor("resume_after", resumeAfter), signal);
    },

    async createUploadSession(caller, request) {
      requireScope(caller, "read-write", "upload artifacts");
      return createUploadSession(sessionDeps, caller, request);
    },
    async uploadPart(caller, request) {
      requireScope(caller, "read-write", "upload artifacts");
      return uploadSessionPart(sessionDeps, caller, request);
    },
    getUploadSession: (caller, id) => getUploadSession(sessionDeps, caller, id),
    async completeUploadSession(caller, id) {
      requireScope(caller, "read-write", "upload artifacts");
      return completeUploadSession(sessionDeps, caller, id);
    },
    async abortUploadSession(caller, id) {
      requireScope(caller, "read-write", "upload artifacts");
      return abortUploadSession(sessionDeps, caller, id);
    },
    createDownloadUrl: (caller, id, ttlSeconds, baseUrl) =>
      createDownloadUrl({ metadata, signer: options.urlSigner, maxTtlSeconds: options.downloadUrlMaxTtlSeconds }, caller, { id, ttlSeconds, baseUrl }),

    async saveInline(caller, rawSpec, content) {
      requireScope(caller, "read-write", "save artifacts");
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
      requireScope(caller, "read-write", "delete artifacts");
      const id = requireArtifactId("id", rawId);
      return found(id, await metadata.softDeleteArtifact(caller.tenantId, id, new Date()));
    },
  };
}
