import pg from "pg";
import type { ArtifactEventType, ArtifactStatus } from "../../artifact.ts";
import type { MetadataStore } from "../../ports/metadata-store.ts";
import { createArtifactEvents, type ArtifactEvents } from "../../service/artifact-events.ts";

/**
 * Artifact events across replicas, over Postgres LISTEN / NOTIFY: every
 * replica announces its changes on one channel and every replica (itself
 * included) hands what it hears to its local Watch subscribers. The notice
 * carries tenant, type and id; the artifact is read back when heard, so a
 * subscriber sees its state at that moment.
 *
 * Delivery is what NOTIFY gives: at most once, to replicas connected at the
 * time; a replica whose listening connection drops reconnects and misses
 * what was said in between (Watch is a live feed, not a log).
 */
const CHANNEL = "artifactd_events";

/** An artifact's life-cycle fields at the moment of its event, carried in the notification. */
interface Lifecycle {
  readonly status: ArtifactStatus;
  readonly pinned: boolean;
  readonly deletedAt: string | undefined;
}

export async function createPostgresArtifactEvents(
  databaseUrl: string,
  metadata: MetadataStore,
  log: (message: string, error?: unknown) => void,
): Promise<ArtifactEvents & { close(): Promise<void> }> {
  const local = createArtifactEvents();
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 2 });
  pool.on("error", () => {});
  let closed = false;
  let listener: pg.Client | undefined;

  const deliver = async (payload: string) => {
    const { t: tenantId, k: type, i: id, s: lifecycle } = JSON.parse(payload) as { t: string; k: ArtifactEventType; i: string; s?: Lifecycle };
    // Read the artifact back only when someone on this replica is watching its tenant.
    if (!local.hasSubscribers(tenantId)) return;
    const artifact = await metadata.getArtifact(tenantId, id);
    // The fields that change after creation are as they were when the event happened, not as they are now.
    if (artifact) local.publish(tenantId, { type, artifact: lifecycle ? { ...artifact, status: lifecycle.status, pinned: lifecycle.pinned, deletedAt: lifecycle.deletedAt ? new Date(lifecycle.deletedAt) : undefined } : artifact });
  };

  const connect = async (): Promise<void> => {
    const client = new pg.Client({ connectionString: databaseUrl });
    client.on("notification", (message) => {
      if (message.channel === CHANNEL && message.payload) deliver(message.payload).catch((error: unknown) => log("event delivery failed", error));
    });
    client.on("error", (error) => {
      log("event listener connection lost; reconnecting", error);
      client.end().catch(() => {});
      if (!closed) setTimeout(() => void connect().catch((e: unknown) => log("event listener reconnect failed", e)), 1_000).unref();
    });
    await client.connect();
    await client.query(`listen ${CHANNEL}`);
    listener = client;
  };
  await connect();

  return {
    publish(tenantId, event) {
      pool
        .query("select pg_notify($1, $2)", [
          CHANNEL,
          JSON.stringify({
            t: tenantId,
            k: event.type,
            i: event.artifact.id,
            s: { status: event.artifact.status, pinned: event.artifact.pinned, deletedAt: event.artifact.deletedAt?.toISOString() } satisfies Lifecycle,
          }),
        ])
        .catch((error: unknown) => log("event publish failed", error));
    },
    subscribe: local.subscribe,
    async close() {
      closed = true;
      await listener?.end().catch(() => {});
      await pool.end();
    },
  };
}
