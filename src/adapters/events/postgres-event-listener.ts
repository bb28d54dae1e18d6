import pg from "pg";
import { EVENTS_CHANNEL } from "./kysely-artifact-event-log.ts";
import { fromPostgresError } from "../metadata/postgres-errors.ts";

/**
 * Hears, over Postgres LISTEN, that some replica (this one included)
 * committed artifact events, and says so through `onWake`: the event feed
 * then reads the log (service/artifact-events.ts). The notification carries
 * the highest seq the commit appended (empty from versions before it), so
 * the feed can skip a read for events it already has; the log is the truth.
 *
 * The listening connection is one dedicated client, named
 * LISTENER_APPLICATION_NAME in pg_stat_activity. When it drops (server
 * restart, failover, network), it reconnects with capped exponential
 * backoff, for as long as the process runs, and wakes the feed once listening
 * again, so what was committed meanwhile is read at once rather than at the
 * feed's next poll.
 */
export const LISTENER_APPLICATION_NAME = "artifactd-events-listener";

export interface PostgresEventListenerOptions {
  /** First delay before reconnecting; doubled per failed attempt. Default 100 ms. */
  readonly minBackoffMs?: number;
  /** Longest delay between attempts. Default 10 000 ms. */
  readonly maxBackoffMs?: number;
  readonly log?: (message: string, error?: unknown) => void;
}

export function listenForArtifactEvents(
  databaseUrl: string,
  onWake: (throughSeq?: number) => void,
  options: PostgresEventListenerOptions = {},
): { close(): Promise<void> } {
  const { minBackoffMs = 100, maxBackoffMs = 10_000, log = () => {} } = options;
  let closed = false;
  let failedAttempts = 0;
  let current: pg.Client | undefined;
  let retry: NodeJS.Timeout | undefined;

  const connect = async () => {
    retry = undefined;
    if (closed) return;
    const client = new pg.Client({ connectionString: databaseUrl, application_name: LISTENER_APPLICATION_NAME, keepAlive: true });
    let lost = false;
    const onLost = (error?: unknown) => {
      if (lost) return;
      lost = true;
      if (current === client) current = undefined;
      client.end().catch(() => {});
      if (closed) return;
      // Jittered (half to full delay), so replicas that lost the same server do not all come back in step.
      const delay = Math.round(Math.min(maxBackoffMs, minBackoffMs * 2 ** failedAttempts) * (0.5 + Math.random() / 2));
      failedAttempts++;
      log(`event listener connection lost (attempt ${failedAttempts}); reconnecting in ${delay} ms`, fromPostgresError(error));
      retry = setTimeout(() => void connect(), delay);
      retry.unref();
    };
    client.on("error", onLost);
    client.on("end", () => onLost(new Error("the listening connection ended")));
    client.on("notification", (message) => {
      if (message.channel !== EVENTS_CHANNEL) return;
      onWake(/^\d{1,15}$/.test(message.payload ?? "") ? Number(message.payload) : undefined);
    });
    try {
      await client.connect();
      await client.query(`listen ${EVENTS_CHANNEL}`);
    } catch (error) {
      onLost(error);
      return;
    }
    if (lost) return;
    if (closed) {
      await client.end().catch(() => {});
      return;
    }
    current = client;
    if (failedAttempts > 0) log(`event listener reconnected after ${failedAttempts} attempt(s)`);
    failedAttempts = 0;
    // Whatever was committed while nobody listened.
    onWake();
  };
  void connect();

  return {
    async close() {
      closed = true;
      if (retry) clearTimeout(retry);
      await current?.end().catch(() => {});
    },
  };
}
