import { ArtifactError } from "../artifact-error.ts";

/**
 * Counts the Watch streams open on this server, per tenant and in all, and
 * refuses one more past either cap. Each open watcher holds a subscription
 * and a queue of up to ARTIFACTD_MAX_WATCH_BACKLOG events, and costs work on every
 * event of its tenant: without a cap, one tenant could open watchers until
 * the server runs out of memory or falls behind for everyone.
 *
 * The counts are this process's: behind a balancer, each replica caps its
 * own streams.
 */
export interface WatcherSlots {
  /** Takes a slot for the tenant, or throws resource_exhausted. The returned function frees it (a second call does nothing). */
  acquire(tenantId: string): () => void;
}

export function createWatcherSlots(limits: { readonly maxWatchers: number; readonly maxWatchersPerTenant: number }): WatcherSlots {
  const perTenant = new Map<string, number>();
  let total = 0;
  return {
    acquire(tenantId) {
      const open = perTenant.get(tenantId) ?? 0;
      if (open >= limits.maxWatchersPerTenant) {
        throw new ArtifactError(
          "resource_exhausted",
          `this tenant already has ${open} watch streams open on this server; at most ${limits.maxWatchersPerTenant} are allowed (ARTIFACTD_MAX_WATCHERS_PER_TENANT): close one, or watch with one stream and a wider filter`,
        );
      }
      if (total >= limits.maxWatchers) {
        throw new ArtifactError(
          "resource_exhausted",
          `this server already has ${total} watch streams open; at most ${limits.maxWatchers} are allowed (ARTIFACTD_MAX_WATCHERS): retry later, or on another replica`,
        );
      }
      perTenant.set(tenantId, open + 1);
      total++;
      let released = false;
      return () => {
        if (released) return;
        released = true;
        total--;
        const left = (perTenant.get(tenantId) ?? 1) - 1;
        if (left === 0) perTenant.delete(tenantId);
        else perTenant.set(tenantId, left);
      };
    },
  };
}
