import type { ArtifactEventLog, LoggedEvent } from "../ports/artifact-event-log.ts";

/**
 * The live feed of artifact events: one tailer per process reads the event
 * log (new rows, seq > the last it read) and hands each event to this
 * process's subscribers of its tenant. Watch subscribes here.
 *
 * The tailer reads when woken — when another replica's commit is heard
 * (Postgres NOTIFY, see adapters/events/postgres-event-listener.ts) — and on
 * a slow poll as a safety net for a wake-up lost with a dropped connection.
 * The log makes rows visible in seq order, so reading on from the last seq
 * misses nothing, whatever happened in between (outage, reconnect, restart
 * of the listener).
 *
 * This process's own commits (eventLog.onAppended) come with their events:
 * when they follow on from the last seq delivered, they are delivered as they
 * are, with no read (the log gave them the next seqs, and has shown every
 * lower one by the time their commit returns); when they do not (a commit of
 * another process in between, a gap a rolled-back append left, commits
 * answered out of order), the tailer reads. So a server saving artifacts does
 * not read the log back once per save.
 */
export interface ArtifactEvents {
  /**
   * Every event of the tenant the tailer reads after this call, in seq
   * order. An event committed after the call always comes; one committed
   * just before it may (a watcher that needs an exact start dedupes by seq).
   */
  subscribe(tenantId: string, listener: (event: LoggedEvent) => void): () => void;
  /** The seq through which events have been handed to subscribers: one subscribed now gets every event after it. */
  position(): number;
}

export interface ArtifactEventFeed extends ArtifactEvents {
  /**
   * Read the log now (coalesced with a read under way); `throughSeq`: the
   * wake-up is for events up to this seq, and needs no read when they were
   * all delivered already (this process's own, see onAppended), nor when
   * they are within a few milliseconds (OWN_COMMIT_GRACE_MS).
   */
  wake(throughSeq?: number): void;
  /** Stops the tailer; subscribers receive nothing more. */
  close(): Promise<void>;
}

export interface ArtifactEventFeedOptions {
  readonly eventLog: ArtifactEventLog;
  /** How often the log is read without a wake-up. Default 1000 ms. */
  readonly pollIntervalMs?: number;
  /** Rows per read. Default 1000. */
  readonly pageSize?: number;
  readonly log?: (message: string, error?: unknown) => void;
}

/** How long a wake-up for undelivered events waits for this process's own commit to deliver them (see wake). */
const OWN_COMMIT_GRACE_MS = 5;

/** Starts the tailer at the end of the log: subscribers get what happens from now on. */
export async function startArtifactEventFeed(options: ArtifactEventFeedOptions): Promise<ArtifactEventFeed> {
  const { eventLog, pollIntervalMs = 1_000, pageSize = 1_000, log = () => {} } = options;
  const listeners = new Map<string, Set<(event: LoggedEvent) => void>>();
  let position = (await eventLog.bounds()).lastSeq;
  let reading: Promise<void> | undefined;
  let readAgain = false;
  let failing = false;
  let closed = false;

  const deliver = (event: LoggedEvent) => {
    for (const listener of listeners.get(event.tenantId) ?? []) listener(event);
  };

  const catchUp = async () => {
    do {
      readAgain = false;
      for (;;) {
        const page = await eventLog.readAfter(position, pageSize);
        // Position moves with delivery, in one synchronous step: a subscriber added at any moment gets every event
        // after the position it saw.
        for (const event of page) {
          if (closed) return;
          // Delivered meanwhile, as this process's own commit (see appended).
          if (event.seq <= position) continue;
          position = event.seq;
          deliver(event);
        }
        if (page.length < pageSize) break;
      }
    } while (readAgain && !closed);
  };

  /**
   * A wake-up for events not delivered yet may be for this process's own
   * commit: Postgres sends NOTIFY at commit, and the listening connection
   * often hears it before the committing one has read its answer, which
   * delivers the events (appended, below). Read at once, that was a read of
   * the log for ~15 % of SaveInlines measured at 1 and 8 in flight; so such a
   * wake-up waits OWN_COMMIT_GRACE_MS, then reads only if the events are
   * still not delivered (another replica's, at most that much later).
   */
  let notifiedThrough = 0;
  let grace: NodeJS.Timeout | undefined;
  const wake = (throughSeq?: number) => {
    if (closed || (throughSeq !== undefined && throughSeq <= position)) return;
    if (throughSeq !== undefined) {
      notifiedThrough = Math.max(notifiedThrough, throughSeq);
      grace ??= setTimeout(() => {
        grace = undefined;
        if (notifiedThrough > position) read();
      }, OWN_COMMIT_GRACE_MS);
      return;
    }
    read();
  };
  const read = () => {
    if (closed) return;
    if (reading) {
      readAgain = true;
      return;
    }
    reading = catchUp()
      .then(
        () => {
          if (failing) log("reading the event log works again; caught up");
          failing = false;
        },
        (error: unknown) => {
          // Logged once per outage, not at every poll; the next poll retries from the same position.
          if (!failing) log("reading the event log failed; retrying every poll", error);
          failing = true;
        },
      )
      .finally(() => (reading = undefined));
  };

  /** This process committed these events (in seq order): delivered at once if they are the next ones, else read. */
  const appended = (events: readonly LoggedEvent[]) => {
    if (closed) return;
    for (const event of events) {
      if (event.seq <= position) continue;
      if (event.seq !== position + 1) {
        wake();
        return;
      }
      position = event.seq;
      deliver(event);
    }
  };

  const stopWakeups = eventLog.onAppended(appended);
  const poll = setInterval(() => wake(), pollIntervalMs);
  poll.unref();

  return {
    subscribe(tenantId, listener) {
      let set = listeners.get(tenantId);
      if (!set) {
        set = new Set();
        listeners.set(tenantId, set);
      }
      set.add(listener);
      return () => {
        set.delete(listener);
        if (set.size === 0 && listeners.get(tenantId) === set) listeners.delete(tenantId);
      };
    },
    position: () => position,
    wake,
    async close() {
      closed = true;
      clearInterval(poll);
      clearTimeout(grace);
      stopWakeups();
      await reading;
      listeners.clear();
    },
  };
}
