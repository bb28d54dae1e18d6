import type { Client } from "@connectrpc/connect";
import { vi } from "vitest";
import { type ArtifactService, EventType } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";

/** One event as a test compares it: what happened, to which artifact, of which kind. */
export interface SeenEvent {
  readonly type: keyof typeof EventType;
  readonly id: string;
  readonly kind: string;
}

export interface EventWatcher {
  /** Every event received since the watcher went live, markers left out, in order. */
  readonly events: SeenEvent[];
  /** Waits (polling, up to timeoutMs) for an event like this one, and returns it with its cursor. */
  waitFor(type: SeenEvent["type"], id: string, timeoutMs?: number): Promise<SeenEvent & { readonly cursor: string }>;
  /**
   * Saves a marker artifact and waits for its created event. Events of one
   * tenant reach a watcher in order, so once the marker is in, every event
   * before it is in too: what was not received by then was never sent.
   */
  sync(): Promise<void>;
  /** The error that ended the stream, if it ended other than by close(). */
  readonly ended: Promise<unknown>;
  close(): Promise<void>;
}

const MARKER_KIND = "watch-marker";

/**
 * A WatchArtifacts stream on the artifacts of one run (provenance run_id),
 * returned only once it is live: markers are saved until one comes back, as
 * the call's return does not mean the server has subscribed yet. A stream
 * the server refuses (say, RESOURCE_EXHAUSTED) rejects with its error.
 */
export async function openEventWatcher(client: Client<typeof ArtifactService>, runId: string): Promise<EventWatcher> {
  const controller = new AbortController();
  const received: (SeenEvent & { cursor: string; marker: boolean })[] = [];
  let live = false;
  const stream = client.watchArtifacts({ filter: { provenance: { runId } } }, { signal: controller.signal });
  let endedWith: unknown;
  const ended = (async () => {
    try {
      for await (const event of stream) {
        const artifact = event.artifact!;
        const type = EventType[event.type] as SeenEvent["type"];
        const seen = { type, id: artifact.id, kind: artifact.kind, cursor: event.cursor, marker: artifact.kind === MARKER_KIND };
        if (live || seen.marker) received.push(seen);
      }
      return (endedWith = new Error("the watch stream ended by itself"));
    } catch (error) {
      return controller.signal.aborted ? undefined : (endedWith = error);
    }
  })();
  const saveMarker = async () =>
    (await client.saveInline({ spec: { kind: MARKER_KIND, provenance: { runId } }, content: { case: "text", value: "marker" } })).artifact!.id;
  /** Whether the marker comes through within timeoutMs; throws what ended the stream, if it ends first. */
  const markerArrives = async (id: string, timeoutMs: number): Promise<boolean> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (received.some((e) => e.marker && e.id === id)) return true;
      if (endedWith !== undefined) throw endedWith;
      if (Date.now() > deadline) return false;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  };

  const liveBy = Date.now() + 10_000;
  while (!(await markerArrives(await saveMarker(), 500))) {
    if (Date.now() > liveBy) {
      controller.abort();
      throw new Error("the watcher did not go live within 10 s");
    }
  }
  received.length = 0;
  live = true;

  const unmarked = () => received.filter((e) => !e.marker);
  return {
    get events() {
      return unmarked().map(({ type, id, kind }) => ({ type, id, kind }));
    },
    async waitFor(type, id, timeoutMs = 10_000) {
      return vi.waitFor(
        () => {
          const found = unmarked().find((e) => e.type === type && e.id === id);
          if (!found) throw new Error(`no ${type} event for ${id} yet; received: ${JSON.stringify(unmarked())}`);
          return { type, id, kind: found.kind, cursor: found.cursor };
        },
        { timeout: timeoutMs, interval: 20 },
      );
    },
    async sync() {
      if (!(await markerArrives(await saveMarker(), 10_000))) throw new Error("the marker did not come through within 10 s");
    },
    ended,
    async close() {
      controller.abort();
      await ended;
    },
  };
}

/**
 * Waits until a watch stream with any filter is live, for tests that read
 * the stream themselves: saves markers (`saveMarker` makes one the filter
 * matches, and returns its id) until one's event has arrived. The markers'
 * ids go into `markers`, for the test to leave out of what it compares.
 */
export async function untilLive(markers: Set<string>, saveMarker: () => Promise<string>, receivedIds: () => readonly string[]): Promise<void> {
  const liveBy = Date.now() + 10_000;
  for (;;) {
    const id = await saveMarker();
    markers.add(id);
    for (const deadline = Date.now() + 500; Date.now() < deadline; ) {
      if (receivedIds().includes(id)) return;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    if (Date.now() > liveBy) throw new Error("the watcher did not go live within 10 s");
  }
}
