import type { Artifact, ArtifactFilter, ArtifactOrder, ArtifactStatus, Caller, Lineage, SavedInlineContent } from "../artifact.ts";
import { ArtifactError, invalidArgument, notFound } from "../artifact-error.ts";
import { blake3Hex } from "../blake3.ts";
import type { BlobStore } from "../ports/blob-store.ts";
import type { AllTenantsBlobIndex } from "../ports/all-tenants-blob-index.ts";
import type { ArtifactEventLog } from "../ports/artifact-event-log.ts";
import type { ArtifactQueries, Page } from "../ports/artifact-queries.ts";
import type { ArtifactRecords } from "../ports/artifact-records.ts";
import type { ArtifactUsage, ArtifactUsageStore } from "../ports/artifact-usages.ts";
import type { InFlightUploads } from "../ports/in-flight-uploads.ts";
import type { TenantBlobIndex } from "../ports/tenant-blob-index.ts";
import type { ContentDigest, TenantContentIndex } from "../ports/tenant-content-index.ts";
import type { UploadSessionStore } from "../ports/upload-session-store.ts";
import type { RequestLimits } from "../config.ts";
import type { ArtifactEvents } from "./artifact-events.ts";
import { createEventArtifactLoader } from "./event-artifact-loader.ts";
import { withIdleTimeout } from "./idle-timeout.ts";
import { createWatcherSlots } from "./watcher-slots.ts";
import { decodeEventCursor, type WatchItem, watchArtifacts } from "./watch-artifacts.ts";
import { requireScope } from "./api-tokens.ts";
import { createDownloadUrl, downloadUrlOf, type UrlSigner } from "./download-urls.ts";
import { createDirectDownloadUrl, type DirectDownloadLink, type DirectDownloadRequest } from "./direct-downloads.ts";
import { type ContentMessage, downloadArtifact, type DownloadRequest } from "./download-artifact.ts";
import { openBlobWriterSink, type BlobWriterSinkDeps } from "./blob-writer-sink.ts";
import { findMissingContent, openContentByDigestSink, type ContentByDigestSinkDeps } from "./content-by-digest.ts";
import { openInlineContentSink, type InlineContentSinkDeps } from "./inline-content-sink.ts";
import { newArtifactRecord } from "./record-artifact.ts";
import { lineageUsages, recordUsage, type RecordUsageRequest } from "./record-usage.ts";
import { openSessionPartsSink } from "./session-parts-sink.ts";
import type { UploadMessage } from "./upload-header.ts";
import { readUploadStream, type UploadResult } from "./upload-stream-reader.ts";
import {
  abortUploadSession,
  completeUploadSession,
  createUploadSession,
  getUploadSession,
  uploadSessionPart,
  type CreateSessionRequest,
  type SessionView,
  type UploadSessionDeps,
} from "./upload-sessions.ts";
import { createSessionDigests, type SessionDigestBudgets } from "./session-digests.ts";
import type { TenantQuotas } from "./tenant-quotas.ts";
import { validateOrder } from "./validate-query.ts";
import { validateFilter, validateSpec, type RawSpec } from "./validate-spec.ts";
import { checkNoNul } from "./field-checks.ts";
import { createArtifactVersionUseCases, type ArtifactVersionUseCases } from "./artifact-versions.ts";
import type { ArtifactVersions } from "../ports/artifact-versions.ts";

export interface ArtifactServiceOptions {
  /**
   * One tenant's artifacts, blobs and upload sessions, and the event log Watch resumes from; of the index across tenants only
   * whether a key is a blob's (an upload's clean-up asks).
   */
  readonly metadata: ArtifactQueries &
    ArtifactRecords &
    TenantBlobIndex &
    TenantContentIndex &
    Pick<AllTenantsBlobIndex, "blobHoldsKey"> & {
      readonly uploadsInFlight: InFlightUploads;
      readonly uploadSessions: UploadSessionStore;
      readonly eventLog: ArtifactEventLog;
      readonly artifactUsages: ArtifactUsageStore;
      readonly versions: ArtifactVersions;
    };
  readonly blobs: BlobStore;
  readonly inlineMaxBytes: number;
  /** Uploads declaring at most this many bytes are kept in the database (ARTIFACTD_UPLOAD_INLINE_MAX_BYTES). */
  readonly uploadInlineMaxBytes: number;
  readonly uploadMaxBytes: number;
  readonly downloadChunkBytes: number;
  readonly events: ArtifactEvents;
  readonly sessionTtlMs: number;
  /** Memory for session parts that arrive ahead of their digest's prefix (./session-digests.ts). */
  readonly sessionHashAhead: SessionDigestBudgets;
  readonly urlSigner: UrlSigner;
  readonly downloadUrlMaxTtlSeconds: number;
  readonly uploadStaleMs: number;
  /** What one request may make the server do (config.ts, ARTIFACTD_MAX_…). */
  readonly limits: RequestLimits;
  /** Per-tenant quotas: every use case that stores, transfers or opens a session asks them first. */
  readonly quotas: TenantQuotas;
  readonly log?: (message: string, error?: unknown) => void;
}

/**
 * The use cases behind the RPCs, free of any transport. Every call that
 * takes an artifact id also takes a reference (resolveId, ./artifact-versions.ts).
 */
export interface ArtifactService extends ArtifactVersionUseCases {
  /** Admits one call of the caller's tenant under its calls-per-second quota; every RPC asks it once. */
  admitCall(caller: Caller): Promise<void>;
  upload(caller: Caller, messages: AsyncIterable<UploadMessage>, signal: AbortSignal): Promise<UploadResult>;
  download(caller: Caller, request: DownloadRequest, signal: AbortSignal): Promise<{ artifact: Artifact; content: AsyncIterable<ContentMessage> }>;
  getArtifact(caller: Caller, id: string, includeContent: boolean): Promise<Artifact>;
  /** GetArtifact's include_download_url for the artifact it read (./download-urls.ts downloadUrlOf); none for a deleted one. */
  downloadUrlOf(
    caller: Caller,
    artifact: Artifact,
    request: { include: boolean; ttlSeconds: number; baseUrl: string },
  ): { url: string; expiresAt: Date } | undefined;
  listArtifacts(
    caller: Caller,
    filter: ArtifactFilter,
    pageSize: number,
    pageToken: string,
    includeTotalCount?: boolean,
    order?: ArtifactOrder,
  ): Promise<Page<Artifact> & { totalCount: number | undefined }>;
  searchArtifacts(caller: Caller, query: string, filter: ArtifactFilter, pageSize: number, pageToken: string, order?: ArtifactOrder): Promise<Page<Artifact>>;
  /** The best `limit` (0: 1) artifacts, best first; NOT_FOUND when none. */
  bestArtifacts(caller: Caller, kind: string, metric: string, minimize: boolean, filter: ArtifactFilter, limit?: number): Promise<Artifact[]>;
  /** With the runs that used the artifact itself (RecordUsage), oldest first. */
  lineage(caller: Caller, id: string, depth: number): Promise<Lineage & { readonly usages: ArtifactUsage[] }>;
  recordUsage(caller: Caller, request: RecordUsageRequest): Promise<ArtifactUsage>;
  saveInline(caller: Caller, spec: RawSpec | undefined, content: SavedInlineContent | undefined): Promise<Artifact>;
  /** `force`: also remove the aliases pointing at it (else they refuse the delete). */
  deleteArtifact(caller: Caller, id: string, force?: boolean): Promise<Artifact>;
  setPinned(caller: Caller, id: string, pinned: boolean): Promise<Artifact>;
  setStatus(caller: Caller, id: string, status: ArtifactStatus | undefined): Promise<Artifact>;
  archiveRun(caller: Caller, runId: string): Promise<number>;
  /** The contents the caller's tenant lacks, of those asked, in the order asked (./content-by-digest.ts). */
  findMissingContent(caller: Caller, contents: readonly ContentDigest[]): Promise<ContentDigest[]>;
  /**
   * Events matching the filter until the signal aborts: from now, or every
   * event after the cursor `resumeAfter` (empty: from now).
   */
  /** With `announceLive`, one `live` marker once the watch is live (./watch-artifacts.ts). */
  watch(caller: Caller, filter: ArtifactFilter, resumeAfter: string, signal: AbortSignal, announceLive?: boolean): AsyncIterable<WatchItem>;

  createUploadSession(caller: Caller, request: CreateSessionRequest): Promise<SessionView>;
  uploadPart(caller: Caller, request: { sessionId: string; partNumber: number; data: Uint8Array; partBlake3: string }): Promise<SessionView>;
  getUploadSession(caller: Caller, id: string): Promise<SessionView>;
  /** `readBackBytes`: how much of the assembled content was read back from the store to compute its digest. */
  completeUploadSession(caller: Caller, id: string): Promise<UploadResult & { readonly readBackBytes: number }>;
  abortUploadSession(caller: Caller, id: string): Promise<void>;
  /** `baseUrl`: where clients reach this service, e.g. http://host:8080. */
  createDownloadUrl(caller: Caller, id: string, ttlSeconds: number, baseUrl: string): Promise<{ url: string; expiresAt: Date; artifactId: string }>;
  /** A presigned GET of the blob store for one range of an artifact's content (./direct-downloads.ts). */
  createDirectDownloadUrl(caller: Caller, request: DirectDownloadRequest): Promise<DirectDownloadLink>;
}

/** What an upload stream needs: a new blob, its artifact's row for small content, or an upload session's parts. */
export type UploadDeps = BlobWriterSinkDeps &
  InlineContentSinkDeps &
  ContentByDigestSinkDeps &
  UploadSessionDeps & {
    /** A new artifact whose header declares at most this many bytes is kept in its row (ARTIFACTD_UPLOAD_INLINE_MAX_BYTES; 0: never). */
    readonly uploadInlineMaxBytes: number;
  };

/**
 * The Upload use case: the stream's one reader (./upload-stream-reader.ts),
 * feeding the sink its header asks for: the parts of the upload session the
 * stream continues; for a new artifact whose declared size is small, its
 * row (./inline-content-sink.ts); else a new blob.
 */
export function uploadArtifact(deps: UploadDeps, caller: Caller, messages: AsyncIterable<UploadMessage>, signal: AbortSignal): Promise<UploadResult> {
  return readUploadStream(deps, messages, signal, (target) => {
    if (target.type === "session") return openSessionPartsSink(deps, caller, target);
    if (target.type === "by digest") return openContentByDigestSink(deps, caller, target, signal);
    const { expectedSize } = target;
    if (expectedSize !== undefined && expectedSize <= deps.uploadInlineMaxBytes) {
      return openInlineContentSink(deps, caller, { ...target, expectedSize }, signal);
    }
    return openBlobWriterSink(deps, caller, target, signal);
  });
}

export const MAX_LINEAGE_DEPTH = 32;

/** The page size when a request leaves it unset (at most the server's ARTIFACTD_MAX_PAGE_SIZE). */
export const DEFAULT_PAGE_SIZE = 100;

export function createArtifactService(options: ArtifactServiceOptions): ArtifactService {
  const { metadata, blobs, events, limits, quotas } = options;
  const watcherSlots = createWatcherSlots(limits);
  const loadEventArtifact = createEventArtifactLoader(metadata);
  const sessionDeps = {
    metadata,
    blobs,
    quotas,
    digests: createSessionDigests(options.sessionHashAhead),
    sessionTtlMs: options.sessionTtlMs,
    uploadMaxBytes: options.uploadMaxBytes,
    uploadInlineMaxBytes: options.uploadInlineMaxBytes,
    uploadStaleMs: options.uploadStaleMs,
    ...(options.log ? { log: options.log } : {}),
  };
  const checkFilter = (filter: ArtifactFilter) => validateFilter(filter, limits.maxFilterTerms);
  const defaultPageSize = Math.min(DEFAULT_PAGE_SIZE, limits.maxPageSize);
  const pageSizeOf = (pageSize: number) => {
    if (!Number.isInteger(pageSize) || pageSize < 0 || pageSize > limits.maxPageSize) {
      throw invalidArgument(
        `page_size ${pageSize} is not valid: give 1–${limits.maxPageSize} (ARTIFACTD_MAX_PAGE_SIZE), or 0 for the default of ${defaultPageSize}`,
      );
    }
    return pageSize || defaultPageSize;
  };
  const versionCases = createArtifactVersionUseCases({ versions: metadata.versions, maxBatchItems: limits.maxBatchItems, pageSizeOf });
  const resolve = versionCases.resolveId;
  const found = (id: string, artifact: Artifact | undefined): Artifact => {
    if (!artifact) throw notFound(`artifact ${id} does not exist`);
    return artifact;
  };

  /** Runs `use` holding one of the tenant's concurrent-upload places. */
  const asUpload = async <T>(caller: Caller, use: () => Promise<T>): Promise<T> => {
    const slot = await quotas.startUpload(caller.tenantId);
    try {
      return await use();
    } finally {
      slot.release();
    }
  };

  return {
    ...versionCases,
    admitCall: (caller) => quotas.admitCall(caller.tenantId),

    async upload(caller, messages, signal) {
      requireScope(caller, "read-write", "upload artifacts");
      const stream = withIdleTimeout(messages, limits.uploadIdleTimeoutMs, "the upload stream");
      return asUpload(caller, () => uploadArtifact(sessionDeps, caller, stream, signal));
    },

    async download(caller, request, signal) {
      // The place is held until the content has been read to its end, failed, or the call ended (its signal
      // aborts when the response closes, which also covers content never read at all).
      const slot = await quotas.startDownload(caller.tenantId);
      const release = () => slot.release();
      signal.addEventListener("abort", release, { once: true });
      try {
        const id = await resolve(caller, "id", request.id);
        const { artifact, content } = await downloadArtifact({ metadata, blobs, chunkBytes: options.downloadChunkBytes }, caller, { ...request, id }, signal);
        return { artifact, content: releasedAtEnd(content, release) };
      } catch (error) {
        release();
        throw error;
      }
    },

    async getArtifact(caller, rawId, includeContent) {
      const id = await resolve(caller, "id", rawId);
      const artifact = await metadata.getArtifact(caller.tenantId, id, { includeContent: includeContent });
      if (!artifact) throw notFound(`artifact ${id} does not exist`);
      return artifact;
    },

    async listArtifacts(caller, filter, pageSize, pageToken, includeTotalCount = false, order) {
      checkFilter(filter);
      validateOrder(order);
      const page = await metadata.listArtifacts(caller.tenantId, filter, { pageSize: pageSizeOf(pageSize), pageToken }, order);
      const totalCount = includeTotalCount ? await metadata.countArtifacts(caller.tenantId, filter) : undefined;
      return { ...page, totalCount };
    },

    async searchArtifacts(caller, query, filter, pageSize, pageToken, order) {
      if (query.trim() === "") throw invalidArgument("query is required: 1 or more characters of free text");
      if (query.length > limits.maxSearchQueryChars) {
        throw invalidArgument(`query is ${query.length} characters long; at most ${limits.maxSearchQueryChars} are allowed (ARTIFACTD_MAX_SEARCH_QUERY_CHARS)`);
      }
      checkNoNul("query", query);
      checkFilter(filter);
      validateOrder(order);
      return metadata.searchArtifacts(caller.tenantId, query, filter, { pageSize: pageSizeOf(pageSize), pageToken }, order);
    },

    async bestArtifacts(caller, kind, metric, minimize, filter, limit = 0) {
      if (!kind) throw invalidArgument("kind is required: the kind of artifact to rank, e.g. model");
      if (!metric) throw invalidArgument("metric is required: the metric to rank by, e.g. accuracy");
      checkNoNul("kind", kind);
      checkNoNul("metric", metric);
      if (!Number.isInteger(limit) || limit < 0 || limit > limits.maxPageSize) {
        throw invalidArgument(`limit ${limit} is not valid: give 1–${limits.maxPageSize} (ARTIFACTD_MAX_PAGE_SIZE), or 0 for the best one alone`);
      }
      checkFilter(filter);
      const best = await metadata.bestArtifacts(caller.tenantId, kind, metric, minimize, filter, limit || 1);
      if (best.length === 0) throw notFound(`no ${kind} artifact with metric ${JSON.stringify(metric)} matches the filter`);
      return best;
    },

    async lineage(caller, rawId, depth) {
      if (!Number.isInteger(depth) || depth < 0 || depth > MAX_LINEAGE_DEPTH) {
        throw invalidArgument(`depth ${depth} is not valid: give 1–${MAX_LINEAGE_DEPTH}, or 0 for 1`);
      }
      const id = await resolve(caller, "id", rawId);
      found(id, await metadata.getArtifact(caller.tenantId, id));
      const maxEdges = lineageEdgeLimit(limits);
      const lineage = await metadata.lineage(caller.tenantId, id, depth || 1, { maxArtifacts: limits.maxLineageNodes, maxEdges });
      if ("tooLarge" in lineage) {
        const limit =
          lineage.tooLarge === "artifacts"
            ? `more than ${limits.maxLineageNodes} artifacts`
            : `more than ${maxEdges} edges (ten per artifact of ARTIFACTD_MAX_LINEAGE_NODES)`;
        const advice =
          lineage.atDepth > 1
            ? `ask for depth ${lineage.atDepth - 1} or less`
            : "even depth 1 is too large: its direct inputs or outputs are too many to return at once";
        throw new ArtifactError(
          "resource_exhausted",
          `the lineage of ${id} holds ${limit} within depth ${lineage.atDepth}; at most ${limits.maxLineageNodes} artifacts are returned (ARTIFACTD_MAX_LINEAGE_NODES): ${advice}`,
        );
      }
      return { ...lineage, usages: await lineageUsages({ metadata }, caller, id, limits.maxLineageNodes) };
    },

    recordUsage: (caller, request) => recordUsage({ metadata, resolveId: resolve }, caller, request),

    async setPinned(caller, rawId, pinned) {
      requireScope(caller, "read-write", "pin or unpin artifacts");
      const id = await resolve(caller, "id", rawId);
      return found(id, await metadata.setPinned(caller.tenantId, id, pinned));
    },

    async setStatus(caller, rawId, status) {
      requireScope(caller, "read-write", "change an artifact's status");
      if (!status) throw invalidArgument("status is required: STATUS_DRAFT, STATUS_REVIEW, STATUS_APPROVED or STATUS_REJECTED");
      const id = await resolve(caller, "id", rawId);
      return found(id, await metadata.setStatus(caller.tenantId, id, status));
    },

    async archiveRun(caller, runId) {
      requireScope(caller, "admin", "archive a whole run");
      if (!runId || runId.length > 256) throw invalidArgument("run_id is required (at most 256 characters)");
      return (await metadata.archiveRun(caller.tenantId, runId, new Date())).length;
    },

    findMissingContent: (caller, contents) => findMissingContent({ metadata, maxBatchItems: limits.maxBatchItems }, caller, contents),

    watch(caller, filter, resumeAfter, signal, announceLive = false) {
      checkFilter(filter);
      const deps = { events, metadata, loadArtifact: loadEventArtifact, slots: watcherSlots, backlogLimit: limits.maxWatchBacklog };
      return watchArtifacts(deps, caller.tenantId, filter, decodeEventCursor("resume_after", resumeAfter), signal, announceLive);
    },

    async createUploadSession(caller, request) {
      requireScope(caller, "read-write", "upload artifacts");
      return createUploadSession(sessionDeps, caller, request);
    },
    async uploadPart(caller, request) {
      requireScope(caller, "read-write", "upload artifacts");
      return asUpload(caller, () => uploadSessionPart(sessionDeps, caller, request));
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
    async createDownloadUrl(caller, rawId, ttlSeconds, baseUrl) {
      const id = await resolve(caller, "id", rawId);
      const link = await createDownloadUrl({ metadata, signer: options.urlSigner, maxTtlSeconds: options.downloadUrlMaxTtlSeconds }, caller, {
        id,
        ttlSeconds,
        baseUrl,
      });
      return { ...link, artifactId: id };
    },
    async createDirectDownloadUrl(caller, request) {
      const id = await resolve(caller, "id", request.id);
      return createDirectDownloadUrl({ metadata, blobs }, caller, { ...request, id });
    },
    downloadUrlOf: (caller, artifact, request) =>
      downloadUrlOf({ signer: options.urlSigner, maxTtlSeconds: options.downloadUrlMaxTtlSeconds }, caller, artifact, request),

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
      const storage = quotas.reserveStorage(caller.tenantId);
      let stored = false;
      try {
        await storage.add(bytes.byteLength);
        const record = newArtifactRecord({
          tenantId: caller.tenantId,
          spec,
          sizeBytes: bytes.byteLength,
          blake3: blake3Hex(bytes),
          createdAt: now,
          createdBy: caller.principal,
          inline: content.type,
        });
        const { artifact } = await metadata.createArtifact({ ...record, inline: content });
        stored = true;
        return artifact;
      } finally {
        storage.release(stored);
      }
    },

    async deleteArtifact(caller, rawId, force = false) {
      requireScope(caller, "read-write", "delete artifacts");
      const id = await resolve(caller, "id", rawId);
      const aliases = { force, by: { movedBy: caller.principal, reason: "the artifact was deleted with force" } };
      return found(id, await metadata.softDeleteArtifact(caller.tenantId, id, new Date(), aliases));
    },
  };
}

/** The content, calling `release` once it has been read to the end or failed (or its reader stopped early). */
async function* releasedAtEnd<T>(content: AsyncIterable<T>, release: () => void): AsyncIterable<T> {
  try {
    yield* content;
  } finally {
    release();
  }
}

/**
 * The edges a lineage answer may hold: ten per artifact. An artifact has at
 * most 256 inputs, but lineage graphs are mostly narrow; a graph that needs
 * more edges than this per artifact is refused like one with too many
 * artifacts.
 */
const lineageEdgeLimit = (limits: Pick<RequestLimits, "maxLineageNodes">) => limits.maxLineageNodes * 10;
