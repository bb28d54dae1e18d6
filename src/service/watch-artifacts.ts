import type { ArtifactEvent, ArtifactFilter } from "../artifact.ts";

/** What a watch delivers: artifact events, and with `announceLive` one marker once it is live (WatchArtifactsRequest.announce_live). */
export type WatchItem = ArtifactEvent | { readonly type: "live"; readonly cursor: string };
import { ArtifactError, invalidArgument } from "../artifact-error.ts";
import type { ArtifactEventLog, LoggedEvent } from "../ports/artifact-event-log.ts";
import type { ArtifactQueries } from "../ports/artifact-queries.ts";
import type { ArtifactEvents } from "./artifact-events.ts";
import type { EventArtifactLoader } from "./event-artifact-loader.ts";
import type { WatcherSlots } from "./watcher-slots.ts";

/** Log rows read per query while a resumed watcher catches up: its memory stays bounded whatever the backlog. */
const BACKLOG_PAGE_SIZE = 500;

/**
 * An event's cursor is its seq in the event log. Clients treat it as opaque,
 * so its form may change; today it is the decimal seq.
 */
export const encodeEventCursor = (seq: number): string => String(seq);

/** The seq after which a watcher resumes; undefined for an empty cursor (from now). */
export function decodeEventCursor(field: string, cursor: string): number | undefined {
  if (cursor === "") return undefined;
  if (!/^\d{1,15}$/.test(cursor)) {
    throw invalidArgument(
      `${field} ${JSON.stringify(cursor.slice(0, 40))} is not an event cursor: pass the cursor of the last event a watch delivered, or leave it empty to watch from now`,
    );
  }
  return Number(cursor);
}

/**
 * The events of one tenant matching a filter, until the signal aborts:
 * from now, or every event after `resumeAfter` exactly once, in order.
 *
 * From now: subscribes to the live feed before returning, so no event
 * between the call and the first read is lost.
 *
 * Resuming: reads the backlog from the log in pages, without subscribing,
 * until a page comes back short (caught up with the log as it was); then
 * subscribes and reads the log once more, which covers everything the feed
 * had read before the subscription; the feed covers everything after. Events
 * the two both give are dropped by seq.
 *
 * Each event is checked against the filter in two halves:
 * - the life-cycle fields (status, pinned, deleted), which change after
 *   creation, against the artifact as it was when the event happened (a
 *   watcher of status=review sees the review event even if the artifact is
 *   approved a moment later): the log records them with the event;
 * - everything else, which an artifact keeps for life, with the store's own
 *   filter rules (one query per event and watcher, skipped when the filter
 *   has no such terms), so Watch and List never disagree.
 * The artifact itself is loaded once per event for all watchers
 * (`loadArtifact`). A deleted event is delivered without include_deleted: it
 * is news of the deletion itself.
 *
 * With `announceLive`, a `live` marker comes once the watch is live: first
 * when watching from now, after the backlog when resuming. Its cursor is the
 * position it is live from: the feed's when it subscribed (every event after
 * it comes to the subscription), or the last one read while catching up
 * (everything up to it was read). Resuming after it misses nothing.
 *
 * The stream holds one of `slots` (per tenant and per server) from its first
 * read until it ends, however it ends, or until it falls more than
 * `backlogLimit` events behind; none free: resource_exhausted.
 */
export function watchArtifacts(
  deps: {
    readonly events: ArtifactEvents;
    readonly metadata: ArtifactQueries & { readonly eventLog: ArtifactEventLog };
    readonly loadArtifact: EventArtifactLoader;
    readonly slots: WatcherSlots;
    /** Events the watcher may have waiting before it is stopped as too slow (ARTIFACTD_MAX_WATCH_BACKLOG). */
    readonly backlogLimit: number;
  },
  tenantId: string,
  filter: ArtifactFilter,
  resumeAfter: number | undefined,
  signal: AbortSignal,
  announceLive = false,
): AsyncIterable<WatchItem> {
  const { events, metadata } = deps;
  const { status: _status, pinned: _pinned, ...rest } = filter;
  const lifelong: ArtifactFilter = { ...rest, includeDeleted: true };
  const hasLifelongTerms = Object.entries(rest).some(([name, value]) => name !== "includeDeleted" && value !== undefined);
  const queue: LoggedEvent[] = [];
  let wake: (() => void) | undefined;
  let fellBehind = false;
  let unsubscribe: (() => void) | undefined;
  let releaseSlot: (() => void) | undefined;
  /** The feed's position when the watch subscribed (the live marker's cursor when watching from now). */
  let subscribedAt = 0;
  const goLive = () => {
    subscribedAt = events.position();
    unsubscribe = events.subscribe(tenantId, (event) => {
      if (queue.length < deps.backlogLimit) queue.push(event);
      else if (!fellBehind) {
        // A watcher that stops reading must not hold the server: past the limit it is let go at once — its
        // queue, subscription and slot — not when it next reads, which a stalled client may never do. It is
        // told why when it reads again (flow control holds even the stream's end behind what it has not read).
        fellBehind = true;
        queue.length = 0;
        unsubscribe?.();
        releaseSlot?.();
      }
      wake?.();
    });
  };
  if (resumeAfter === undefined) goLive();
  const onAbort = () => wake?.();
  signal.addEventListener("abort", onAbort);

  const toDeliver = async (event: LoggedEvent): Promise<ArtifactEvent | undefined> => {
    if (!lifecycleMatches(event, filter)) return undefined;
    if (hasLifelongTerms && !(await metadata.matchesFilter(tenantId, event.artifactId, lifelong))) return undefined;
    const artifact = await deps.loadArtifact(event);
    if (!artifact) return undefined;
    return {
      type: event.type,
      cursor: encodeEventCursor(event.seq),
      // The fields that change after creation as they were when the event happened, not as they are now.
      artifact: { ...artifact, status: event.status, pinned: event.pinned, deletedAt: event.deletedAt },
      ...(event.aliasMove ? { aliasMove: event.aliasMove } : {}),
    };
  };

  return (async function* () {
    try {
      releaseSlot = deps.slots.acquire(tenantId);
      let cursor = resumeAfter ?? 0;
      if (resumeAfter !== undefined) {
        for (let first = true; !signal.aborted; first = false) {
          const page = await metadata.eventLog.readAfter(cursor, BACKLOG_PAGE_SIZE, tenantId);
          // Checked after the read: had pruning taken events this read should have seen, it has recorded so by now.
          const { prunedThrough, lastSeq } = await metadata.eventLog.bounds();
          if (prunedThrough > cursor) {
            throw new ArtifactError(
              "out_of_range",
              `resume_after ${cursor}: the events after it are no longer kept (this server keeps events for ARTIFACTD_EVENT_RETENTION_MS): list what changed meanwhile, then watch again from now (empty resume_after)`,
            );
          }
          if (first && cursor > lastSeq) {
            throw invalidArgument(
              `resume_after ${cursor} is past the newest event this server has recorded: it is not a cursor of this server's events (or the database was restored from an older backup); list what changed, then watch again from now (empty resume_after)`,
            );
          }
          for (const event of page) {
            cursor = event.seq;
            const deliverable = await toDeliver(event);
            if (deliverable) yield deliverable;
          }
          if (page.length === BACKLOG_PAGE_SIZE) continue;
          if (unsubscribe) break;
          goLive();
        }
      } else cursor = subscribedAt;
      if (announceLive && !signal.aborted) yield { type: "live", cursor: encodeEventCursor(cursor) };
      while (!signal.aborted) {
        if (fellBehind) {
          throw new ArtifactError(
            "resource_exhausted",
            `this watcher fell more than ${deps.backlogLimit} events behind and was stopped (ARTIFACTD_MAX_WATCH_BACKLOG): watch again with resume_after set to the cursor of the last event received, and nothing is missed`,
          );
        }
        const event = queue.shift();
        if (!event) {
          await new Promise<void>((resolve) => (wake = resolve));
          wake = undefined;
          continue;
        }
        // Already delivered from the log while catching up.
        if (event.seq <= cursor) continue;
        cursor = event.seq;
        const deliverable = await toDeliver(event);
        if (deliverable) yield deliverable;
      }
    } finally {
      releaseSlot?.();
      unsubscribe?.();
      signal.removeEventListener("abort", onAbort);
    }
  })();
}

function lifecycleMatches(event: LoggedEvent, filter: ArtifactFilter): boolean {
  if (filter.status !== undefined && event.status !== filter.status) return false;
  if (filter.pinned !== undefined && event.pinned !== filter.pinned) return false;
  return event.type === "deleted" || filter.includeDeleted === true || event.deletedAt === undefined;
}
