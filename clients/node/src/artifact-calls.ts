import { Code, ConnectError, type Client } from "@connectrpc/connect";
import type { ArtifactFilterInit } from "@artifactd/api";
import type { Artifact, Status } from "@artifactd/api/artifacts/v1/artifact_pb.js";
import {
  type ArtifactService,
  type ArtifactUsage,
  EventType,
  type GetLineageResponse,
  type WatchArtifactsResponse,
} from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import type { RetryPolicy } from "./retry-policy.ts";

/** Options every call takes. */
export interface CallOptions {
  readonly signal?: AbortSignal;
}

export interface BestOptions extends CallOptions {
  /** The lowest value wins instead of the highest. */
  readonly minimize?: boolean;
  readonly filter?: ArtifactFilterInit;
}

export interface WatchOptions extends CallOptions {
  /**
   * The `cursor` of the last event already handled (kept from an earlier
   * watch, before a restart): every later event is delivered, once, in order.
   * Unset: from now.
   */
  readonly resumeAfter?: string;
  /**
   * Called when the watch is live (at once from now; after the backlog when
   * resuming), and again after each reconnection: every event committed from
   * then on will come. With the cursor it is live from. Servers older than
   * the live announcement never call it.
   */
  readonly onLive?: (cursor: string) => void;
}

/**
 * The calls people reach for beyond saving and loading: search, the best
 * artifacts by a metric, lineage with the runs that used an artifact,
 * recording such a use, pinning, the review status, and a watch that
 * survives dropped streams. Calls that are safe to repeat are retried on
 * transient failures by the client's retry policy (retry-policy.ts);
 * refusals are ConnectErrors with the server's code and message.
 */
export interface ArtifactCalls {
  /** One page of a ranked full-text search over name, title and labels; pass `nextPageToken` back for the next. */
  searchPage(
    query: string,
    filter?: ArtifactFilterInit,
    page?: { pageSize?: number; pageToken?: string; signal?: AbortSignal },
  ): Promise<{ artifacts: Artifact[]; nextPageToken: string }>;
  /** Every match of a search, best first, page by page. */
  search(query: string, filter?: ArtifactFilterInit, options?: { pageSize?: number; signal?: AbortSignal }): AsyncIterable<Artifact>;
  /** The artifact of `kind` with the highest (or, with `minimize`, lowest) `metric` within the filter; undefined when none has it. */
  best(kind: string, metric: string, options?: BestOptions): Promise<Artifact | undefined>;
  /**
   * The best `limit` artifacts (top k), best first; empty when none has the
   * metric. A server that does not know `limit` yet answers with the best alone.
   */
  top(kind: string, metric: string, limit: number, options?: BestOptions): Promise<Artifact[]>;
  /** Ancestors, descendants and edges to `depth` (1–32, default 1), and the runs that used the artifact itself (`usages`, oldest first). */
  lineage(id: string, options?: CallOptions & { depth?: number }): Promise<GetLineageResponse>;
  /**
   * Records that run `runId` used the artifact without producing one (an
   * evaluation reading a model). Recording the same artifact, run and role
   * again returns the first record, so it is retried like a read.
   * FAILED_PRECONDITION for a deleted artifact.
   */
  recordUsage(usage: { artifactId: string; runId: string; role?: string }, options?: CallOptions): Promise<ArtifactUsage>;
  /** Pins (kept by retention and clean-up); repeating it is harmless. */
  pin(id: string, options?: CallOptions): Promise<Artifact>;
  unpin(id: string, options?: CallOptions): Promise<Artifact>;
  /**
   * Moves the artifact along its review life cycle (draft → review →
   * approved / rejected); FAILED_PRECONDITION for a move the cycle does not
   * allow. Retried: the server answers a repeat of the move that already
   * happened with the artifact unchanged.
   */
  setStatus(id: string, status: Status, options?: CallOptions): Promise<Artifact>;
  /**
   * Events (created, status changed, pinned, unpinned, deleted, …) of the
   * artifacts matching the filter, as an async iterator that ends when the
   * signal aborts (or the loop breaks). A stream that drops (a restarted
   * server, a lost connection) is opened again after the last event
   * delivered, so no event is missed or repeated; the waits and how many
   * tries in a row follow the client's retry policy. A watch from now that
   * drops before its first event resumes from where it went live (the
   * server's announce_live), so it misses nothing either (a server older
   * than that announcement: from the moment it reconnects). A cursor older
   * than the server keeps fails with OUT_OF_RANGE.
   */
  watch(filter?: ArtifactFilterInit, options?: WatchOptions): AsyncIterable<WatchArtifactsResponse>;
}

export function createArtifactCalls(rpc: Client<typeof ArtifactService>, retry: RetryPolicy, unary: { timeoutMs?: number }): ArtifactCalls {
  const call = (options: CallOptions | undefined) => ({ ...unary, ...(options?.signal ? { signal: options.signal } : {}) });
  const bestOf = async (kind: string, metric: string, limit: number, options: BestOptions = {}) => {
    try {
      const response = await rpc.getBestArtifact({ kind, metric, minimize: options.minimize ?? false, filter: options.filter ?? {}, limit }, call(options));
      return response.top.length > 0 ? response.top : response.artifact ? [response.artifact] : [];
    } catch (error) {
      // NOT_FOUND is the server's "no artifact has that metric within the filter": an answer, not a failure.
      if (ConnectError.from(error).code === Code.NotFound) return [];
      throw error;
    }
  };
  const calls: ArtifactCalls = {
    async searchPage(query, filter = {}, page = {}) {
      const response = await rpc.searchArtifacts({ query, filter, pageSize: page.pageSize ?? 0, pageToken: page.pageToken ?? "" }, call(page));
      return { artifacts: response.artifacts, nextPageToken: response.nextPageToken };
    },

    async *search(query, filter = {}, options = {}) {
      let pageToken = "";
      do {
        const page = await calls.searchPage(query, filter, { ...options, pageToken });
        yield* page.artifacts;
        pageToken = page.nextPageToken;
      } while (pageToken);
    },

    async best(kind, metric, options) {
      return (await bestOf(kind, metric, 1, options))[0];
    },

    async top(kind, metric, limit, options) {
      if (!Number.isInteger(limit) || limit < 1) throw new TypeError(`top: limit must be a whole number >= 1, got ${limit}`);
      return bestOf(kind, metric, limit, options);
    },

    lineage: (id, options = {}) => rpc.getLineage({ id, depth: options.depth ?? 0 }, call(options)),

    async recordUsage(usage, options) {
      return (await rpc.recordUsage({ artifactId: usage.artifactId, runId: usage.runId, role: usage.role ?? "" }, call(options))).usage!;
    },

    async pin(id, options) {
      return (await rpc.setPinned({ id, pinned: true }, call(options))).artifact!;
    },

    async unpin(id, options) {
      return (await rpc.setPinned({ id, pinned: false }, call(options))).artifact!;
    },

    async setStatus(id, status, options) {
      // Not among the connection's retried methods (a SetStatus that also moves an alias is another matter): this
      // plain move is safe to repeat, since the server answers a move already made with the artifact unchanged.
      return retry.run(async () => (await rpc.setStatus({ id, status }, call(options))).artifact!, options?.signal);
    },

    async *watch(filter = {}, options = {}) {
      const { signal } = options;
      let cursor = options.resumeAfter ?? "";
      let failures = 0;
      for (;;) {
        try {
          for await (const event of rpc.watchArtifacts({ filter, resumeAfter: cursor, announceLive: true }, signal ? { signal } : {})) {
            failures = 0;
            cursor = event.cursor;
            // Not an artifact event: where the watch is live from, kept to resume from.
            if (event.type === EventType.LIVE) options.onLive?.(event.cursor);
            else yield event;
          }
          if (signal?.aborted) return;
          // The server ends a watch only by failing it; a clean end is a connection cut short, and resumes like one.
          throw new ConnectError("the watch stream ended", Code.Unavailable);
        } catch (error) {
          if (signal?.aborted) return;
          if (++failures >= retry.maxAttempts || !retry.isTransient(error)) throw error;
          try {
            await retry.wait(failures, ConnectError.from(error), signal);
          } catch (waitError) {
            if (signal?.aborted) return;
            throw waitError;
          }
        }
      }
    },
  };
  return calls;
}
