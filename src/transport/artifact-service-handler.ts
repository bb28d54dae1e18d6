import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { Caller } from "../artifact.ts";
import { invalidArgument } from "../artifact-error.ts";
import type { ArtifactEventType } from "../artifact.ts";
import {
  type ArtifactService as ArtifactServiceDesc,
  DownloadResponseSchema,
  EventType,
  type UploadRequest,
} from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import type { ArtifactService } from "../service/artifact-service.ts";
import { joinMessage } from "../service/download-artifact.ts";
import type { UploadMessage } from "../service/upload-header.ts";
import {
  aliasMoveToProto,
  artifactToProto,
  filterFromProto,
  inlineContentFromProto,
  int64FromProto,
  sessionToProto,
  specFromProto,
  statusFromProto,
} from "./proto-conversion.ts";
import { usageToProto } from "./usage-conversion.ts";
import { callerKey } from "./admission.ts";
import { orderFromProto } from "./query-conversion.ts";
import { assertRequestCompleted } from "./request-ended.ts";
import { uploadMessageFromProto } from "./upload-messages.ts";

const EVENT_TYPES: Record<ArtifactEventType, EventType> = {
  created: EventType.CREATED,
  status_changed: EventType.STATUS_CHANGED,
  pinned: EventType.PINNED,
  unpinned: EventType.UNPINNED,
  deleted: EventType.DELETED,
  alias_moved: EventType.ALIAS_MOVED,
};

/**
 * ArtifactService RPCs → use cases. Each handler takes the caller admitted
 * before the request body was read (`ctx.values.get(callerKey)`, see
 * ./admission.ts), converts the request, calls the service and converts the
 * answer; errors are mapped to status codes by the interceptor in
 * ./server.ts, not here. The whole service is implemented: the compiler
 * refuses this function until a method added to the proto has its handler.
 *
 * Calls that stay open (Upload, Download, WatchArtifacts) also end when the
 * caller's token is revoked or expires while they run (`watchCaller`).
 */
export function createArtifactServiceHandler(
  service: ArtifactService,
  publicUrl?: string,
  watchCaller?: (caller: Caller) => { readonly signal: AbortSignal; release(): void },
): ServiceImpl<typeof ArtifactServiceDesc> {
  /** The call's signal, also aborted when its token stops being valid; `end` when the call ends. */
  const openCall = (ctx: HandlerContext) => {
    const who = ctx.values.get(callerKey);
    const watched = watchCaller?.(who);
    const signal = watched ? AbortSignal.any([ctx.signal, watched.signal]) : ctx.signal;
    return {
      who,
      signal,
      /** The revocation, when that is what ended the call; else the error itself. */
      reason: (error: unknown) => (watched?.signal.aborted ? watched.signal.reason : error),
      end: () => watched?.release(),
    };
  };

  return {
    async upload(requests, ctx) {
      const call = openCall(ctx);
      try {
        const result = await service.upload(call.who, uploadMessages(requests, ctx), call.signal);
        return { artifact: artifactToProto(result.artifact), deduplicated: result.deduplicated };
      } catch (error) {
        throw call.reason(error);
      } finally {
        call.end();
      }
    },

    async *download(request, ctx) {
      const call = openCall(ctx);
      try {
        const { artifact, content } = await service.download(
          call.who,
          {
            id: request.id,
            offset: int64FromProto("offset", request.offset),
            length: request.length === undefined ? undefined : int64FromProto("length", request.length),
            clientVerifies: request.clientVerifies,
          },
          call.signal,
        );
        yield create(DownloadResponseSchema, { message: { case: "artifact", value: artifactToProto(artifact) } });
        // connect-node encodes each message into a buffer of its own anyway: the pieces are joined for it.
        for await (const message of content) {
          yield create(DownloadResponseSchema, { message: { case: "chunk", value: joinMessage(message) } });
        }
      } catch (error) {
        throw call.reason(error);
      } finally {
        call.end();
      }
    },

    async getArtifact(request, ctx) {
      const who = ctx.values.get(callerKey);
      const artifact = await service.getArtifact(who, request.id, request.includeContent);
      const link = service.downloadUrlOf(who, artifact, {
        include: request.includeDownloadUrl,
        ttlSeconds: request.downloadUrlTtlSeconds,
        baseUrl: publicUrl ?? new URL(ctx.url).origin,
      });
      return { artifact: artifactToProto(artifact), ...(link ? { downloadUrl: link.url, downloadUrlExpiresAt: timestampFromDate(link.expiresAt) } : {}) };
    },

    async listArtifacts(request, ctx) {
      const who = ctx.values.get(callerKey);
      const page = await service.listArtifacts(
        who,
        filterFromProto(request.filter),
        request.pageSize,
        request.pageToken,
        request.includeTotalCount,
        orderFromProto(request.order),
      );
      return {
        artifacts: page.items.map(artifactToProto),
        nextPageToken: page.nextPageToken,
        totalCount: BigInt(page.totalCount ?? 0),
      };
    },

    async searchArtifacts(request, ctx) {
      const who = ctx.values.get(callerKey);
      const page = await service.searchArtifacts(
        who,
        request.query,
        filterFromProto(request.filter),
        request.pageSize,
        request.pageToken,
        orderFromProto(request.order),
      );
      return { artifacts: page.items.map(artifactToProto), nextPageToken: page.nextPageToken };
    },

    async getBestArtifact(request, ctx) {
      const who = ctx.values.get(callerKey);
      const top = await service.bestArtifacts(who, request.kind, request.metric, request.minimize, filterFromProto(request.filter), request.limit);
      const best = top.map(artifactToProto);
      return { artifact: best[0], top: best };
    },

    async getLineage(request, ctx) {
      const lineage = await service.lineage(ctx.values.get(callerKey), request.id, request.depth);
      return {
        ancestors: lineage.ancestors.map(artifactToProto),
        descendants: lineage.descendants.map(artifactToProto),
        edges: lineage.edges.map((e) => ({ fromId: e.fromId, toId: e.toId, role: e.role })),
        usages: lineage.usages.map(usageToProto),
      };
    },

    async recordUsage(request, ctx) {
      const usage = await service.recordUsage(ctx.values.get(callerKey), { artifactId: request.artifactId, runId: request.runId, role: request.role });
      return { usage: usageToProto(usage) };
    },

    async setPinned(request, ctx) {
      const artifact = await service.setPinned(ctx.values.get(callerKey), request.id, request.pinned);
      return { artifact: artifactToProto(artifact) };
    },

    async setStatus(request, ctx) {
      const who = ctx.values.get(callerKey);
      const status = statusFromProto("status", request.status);
      if (request.moveAlias) {
        const { artifact, move } = await service.setStatusMovingAlias(who, request.id, status, request.moveAlias);
        return { artifact: artifactToProto(artifact), aliasMove: aliasMoveToProto(move) };
      }
      const artifact = await service.setStatus(who, request.id, status);
      return { artifact: artifactToProto(artifact) };
    },

    async archiveRun(request, ctx) {
      const deletedCount = await service.archiveRun(ctx.values.get(callerKey), request.runId);
      return { deletedCount: BigInt(deletedCount) };
    },

    async createUploadSession(request, ctx) {
      const view = await service.createUploadSession(ctx.values.get(callerKey), {
        spec: specFromProto(request.spec),
        expectedSize: request.expectedSize === undefined ? undefined : int64FromProto("expected_size", request.expectedSize),
        expectedBlake3: request.expectedBlake3,
        partSize: int64FromProto("part_size", request.partSize),
        idempotencyKey: request.idempotencyKey,
      });
      return { session: sessionToProto(view) };
    },

    async uploadPart(request, ctx) {
      const view = await service.uploadPart(ctx.values.get(callerKey), {
        sessionId: request.sessionId,
        partNumber: request.partNumber,
        data: request.data,
        partBlake3: request.partBlake3,
      });
      return { session: sessionToProto(view) };
    },

    async getUploadSession(request, ctx) {
      return { session: sessionToProto(await service.getUploadSession(ctx.values.get(callerKey), request.sessionId)) };
    },

    async completeUploadSession(request, ctx) {
      const result = await service.completeUploadSession(ctx.values.get(callerKey), request.sessionId);
      return { artifact: artifactToProto(result.artifact), deduplicated: result.deduplicated, readBackBytes: BigInt(result.readBackBytes) };
    },

    async abortUploadSession(request, ctx) {
      await service.abortUploadSession(ctx.values.get(callerKey), request.sessionId);
      return {};
    },

    async createDownloadUrl(request, ctx) {
      const who = ctx.values.get(callerKey);
      if (request.directToStorage) {
        const link = await service.createDirectDownloadUrl(who, {
          id: request.id,
          ttlSeconds: request.ttlSeconds,
          offset: Number(request.offset),
          length: request.length === undefined ? undefined : Number(request.length),
        });
        return {
          url: link.url,
          expiresAt: timestampFromDate(link.expiresAt),
          directToStorage: true,
          headers: { ...link.headers },
          blake3: link.artifact.blake3,
          sizeBytes: BigInt(link.artifact.sizeBytes),
          offset: BigInt(link.offset),
          length: BigInt(link.length),
          artifact: artifactToProto(link.artifact),
          artifactId: link.artifact.id,
        };
      }
      // A link to this service always reads the whole content (the route takes a Range header instead).
      if (request.offset !== 0n || request.length !== undefined) {
        throw invalidArgument("offset and length are for direct_to_storage links: a link to the service serves the whole content (send a Range header)");
      }
      // Links point where this client reached us, unless ARTIFACTD_PUBLIC_URL says otherwise.
      const { url, expiresAt, artifactId } = await service.createDownloadUrl(who, request.id, request.ttlSeconds, publicUrl ?? new URL(ctx.url).origin);
      return { url, expiresAt: timestampFromDate(expiresAt), artifactId };
    },

    async *watchArtifacts(request, ctx) {
      const call = openCall(ctx);
      try {
        for await (const event of service.watch(call.who, filterFromProto(request.filter), request.resumeAfter, call.signal, request.announceLive)) {
          if (event.type === "live") {
            yield { type: EventType.LIVE, cursor: event.cursor };
            continue;
          }
          yield {
            type: EVENT_TYPES[event.type],
            artifact: artifactToProto(event.artifact),
            cursor: event.cursor,
            ...(event.aliasMove ? { aliasMove: aliasMoveToProto(event.aliasMove) } : {}),
          };
        }
        // Watch ends by itself only when its signal aborts: say why, rather than end as if it were done.
        if (call.signal.aborted) throw call.reason(call.signal.reason);
      } catch (error) {
        throw call.reason(error);
      } finally {
        call.end();
      }
    },

    async saveInline(request, ctx) {
      const who = ctx.values.get(callerKey);
      const artifact = await service.saveInline(who, specFromProto(request.spec), inlineContentFromProto(request.content));
      return { artifact: artifactToProto(artifact) };
    },

    async deleteArtifact(request, ctx) {
      const artifact = await service.deleteArtifact(ctx.values.get(callerKey), request.id, request.force);
      return { artifact: artifactToProto(artifact) };
    },

    async findMissingContent(request, ctx) {
      const contents = request.contents.map((content, index) => ({
        blake3: content.blake3,
        sizeBytes: int64FromProto(`contents[${index}].size_bytes`, content.sizeBytes),
      }));
      const missing = await service.findMissingContent(ctx.values.get(callerKey), contents);
      return { missing: missing.map((content) => ({ blake3: content.blake3, sizeBytes: BigInt(content.sizeBytes) })) };
    },

    async batchGetArtifacts(request, ctx) {
      const lookups = await service.batchGet(ctx.values.get(callerKey), request.ids, request.includeContent);
      return {
        results: lookups.map((lookup) =>
          "artifact" in lookup
            ? { requested: lookup.requested, artifact: artifactToProto(lookup.artifact) }
            : { requested: lookup.requested, notFound: lookup.notFound },
        ),
      };
    },

    async setAlias(request, ctx) {
      const { artifact, move } = await service.setAlias(ctx.values.get(callerKey), {
        artifactId: request.artifactId,
        alias: request.alias,
        expectedArtifactId: request.expectedArtifactId,
        reason: request.reason,
      });
      return { artifact: artifactToProto(artifact), move: aliasMoveToProto(move) };
    },

    async deleteAlias(request, ctx) {
      const move = await service.deleteAlias(ctx.values.get(callerKey), { project: request.project, name: request.name }, request.alias, request.reason);
      return { move: aliasMoveToProto(move) };
    },

    async listVersions(request, ctx) {
      const name = { project: request.project, name: request.name };
      const page = await service.listVersions(ctx.values.get(callerKey), name, request.includeDeleted, request.pageSize, request.pageToken);
      return { versions: page.items.map(artifactToProto), nextPageToken: page.nextPageToken };
    },

    async listAliasHistory(request, ctx) {
      const name = { project: request.project, name: request.name };
      const page = await service.listAliasHistory(ctx.values.get(callerKey), name, request.alias, request.pageSize, request.pageToken);
      return { moves: page.items.map(aliasMoveToProto), nextPageToken: page.nextPageToken };
    },
  };
}

/** The proto upload stream as the use case's tagged messages. */
async function* uploadMessages(requests: AsyncIterable<UploadRequest>, ctx: HandlerContext): AsyncGenerator<UploadMessage> {
  for await (const request of requests) yield uploadMessageFromProto(request);
  await assertRequestCompleted(ctx);
}
