import type { ArtifactEvent } from "../artifact.ts";

/**
 * Artifact events: use cases publish after their change is committed;
 * WatchArtifacts subscribers receive them per tenant.
 *
 * This implementation stays inside one process (the embedded default). With
 * Postgres, adapters/metadata/postgres-artifact-events.ts carries them
 * across replicas.
 */
export interface ArtifactEvents {
  publish(tenantId: string, event: ArtifactEvent): void;
  subscribe(tenantId: string, listener: (event: ArtifactEvent) => void): () => void;
}

/** The in-process fan-out: also what the Postgres events adapter hands what it hears to. */
export function createArtifactEvents(): ArtifactEvents & { hasSubscribers(tenantId: string): boolean } {
  const listeners = new Map<string, Set<(event: ArtifactEvent) => void>>();
  return {
    hasSubscribers: (tenantId) => (listeners.get(tenantId)?.size ?? 0) > 0,
    publish(tenantId, event) {
      for (const listener of listeners.get(tenantId) ?? []) listener(event);
    },
    subscribe(tenantId, listener) {
      let set = listeners.get(tenantId);
      if (!set) listeners.set(tenantId, (set = new Set()));
      set.add(listener);
      return () => {
        set.delete(listener);
        if (set.size === 0) listeners.delete(tenantId);
      };
    },
  };
}
