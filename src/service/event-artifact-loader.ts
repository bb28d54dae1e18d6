import type { Artifact } from "../artifact.ts";
import type { LoggedEvent } from "../ports/artifact-event-log.ts";
import type { ArtifactQueries } from "../ports/artifact-queries.ts";

/**
 * Loads the artifact an event is about once for all the watchers that
 * deliver it, not once per watcher: the feed hands each event to every
 * watcher of its tenant at about the same moment, so the most recent events'
 * loads are shared (kept by seq, the newest `capacity` of them). A watcher
 * that reaches an event after it left the cache loads it again, which is
 * only slower. Only the fields an artifact keeps for life are read from what
 * was loaded; Watch takes the life-cycle fields from the event itself.
 */
export type EventArtifactLoader = (event: LoggedEvent) => Promise<Artifact | undefined>;

export function createEventArtifactLoader(metadata: ArtifactQueries, capacity = 1024): EventArtifactLoader {
  const loads = new Map<number, Promise<Artifact | undefined>>();
  return (event) => {
    let load = loads.get(event.seq);
    if (!load) {
      load = metadata.getArtifact(event.tenantId, event.artifactId);
      // A failed load is not kept: the next watcher tries again.
      load.catch(() => loads.delete(event.seq));
      loads.set(event.seq, load);
      // Maps iterate in insertion order: the first key is the oldest load.
      if (loads.size > capacity) loads.delete(loads.keys().next().value!);
    }
    return load;
  };
}
