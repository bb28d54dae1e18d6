import { afterAll, beforeAll, expect, it, vi } from "vitest";
import { openMetadataStore } from "../../src/adapters/metadata/open-metadata-store.ts";
import type { ArtifactSpec } from "../../src/artifact.ts";
import { newArtifactId } from "../../src/artifact-id.ts";
import type { LoggedEvent } from "../../src/ports/artifact-event-log.ts";
import type { MetadataStore, NewArtifact } from "../../src/ports/metadata-store.ts";
import { startArtifactEventFeed, type ArtifactEventFeed } from "../../src/service/artifact-events.ts";
import { BASE_SPEC, METADATA_STORE_ADAPTERS } from "../support/metadata-store-adapters.ts";
import { createTestDatabase } from "../support/postgres.ts";
import { describeEachAdapter, describeOn } from "../support/test-backends.ts";

/**
 * The live event feed (src/service/artifact-events.ts): this process's own
 * commits are delivered as they are, with no read of the log; what another
 * process commits is read, and the two never deliver an event twice or out
 * of seq order.
 */

function record(tenantId: string, spec: Partial<ArtifactSpec> = {}): NewArtifact {
  const createdAt = new Date();
  return {
    id: newArtifactId("art", createdAt.getTime()),
    tenantId,
    spec: { ...BASE_SPEC, ...spec },
    mimeType: "text/plain",
    sizeBytes: 1,
    blake3: "a".repeat(64),
    createdAt,
    createdBy: "test",
    inline: { type: "text", text: "x" },
  };
}

/** The store's event log with its reads counted. */
function countingReads(store: MetadataStore): { eventLog: MetadataStore["eventLog"]; reads: () => number } {
  let reads = 0;
  const eventLog = {
    ...store.eventLog,
    readAfter: (...args: Parameters<MetadataStore["eventLog"]["readAfter"]>) => (reads++, store.eventLog.readAfter(...args)),
  };
  return { eventLog, reads: () => reads };
}

describeEachAdapter("event feed: %s", METADATA_STORE_ADAPTERS, (_name, open) => {
  let store: MetadataStore;
  let close: () => Promise<void>;
  beforeAll(async () => {
    ({ store, close } = await open());
  });
  afterAll(async () => {
    await close?.();
  });

  it("delivers this process's own commits in seq order without reading the log back", async () => {
    const { eventLog, reads } = countingReads(store);
    // No poll during the test: any read would be one the feed chose to make.
    const feed = await startArtifactEventFeed({ eventLog, pollIntervalMs: 3_600_000 });
    try {
      const delivered: LoggedEvent[] = [];
      feed.subscribe("own", (event) => delivered.push(event));
      const a = (await store.createArtifact(record("own"))).artifact;
      const b = (await store.createArtifact(record("own", { inputs: [{ artifactId: a.id, role: "source", requiredClass: "", requiredKind: "" }] }))).artifact;
      await store.setStatus("own", a.id, "review");
      await Promise.all([store.createArtifact(record("own")), store.createArtifact(record("own")), store.setPinned("own", b.id, true)]);
      // Delivered as the commits returned: nothing to wait for.
      expect(delivered).toEqual(await store.eventLog.readAfter(delivered[0]!.seq - 1, 100, "own"));
      expect(delivered).toHaveLength(6);
      // Commits answered out of order are read (at most one read each), never delivered twice.
      expect(reads()).toBeLessThanOrEqual(3);
      const readsBefore = reads();
      // A wake-up for events it already delivered (its own commit's NOTIFY) reads nothing.
      feed.wake(delivered.at(-1)!.seq);
      expect(reads()).toBe(readsBefore);
    } finally {
      await feed.close();
    }
  });

  it("a wake-up heard before its own commit's answer reads nothing once the commit delivers its events", async () => {
    const { eventLog, reads } = countingReads(store);
    const feed = await startArtifactEventFeed({ eventLog, pollIntervalMs: 3_600_000 });
    // Only the feed's timers are faked: the grace it gives a wake-up passes when the test says.
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    try {
      const delivered: LoggedEvent[] = [];
      feed.subscribe("early", (event) => delivered.push(event));
      // The NOTIFY of the commit below, heard first: its seq is past the last one (or is it, with a gap).
      feed.wake((await store.eventLog.bounds()).lastSeq + 1);
      const made = (await store.createArtifact(record("early"))).artifact;
      expect(delivered.map((e) => e.artifactId)).toEqual([made.id]);
      vi.advanceTimersByTime(60_000);
      expect(reads(), "reads of the log").toBe(0);

      // A wake-up for events no commit here delivers reads them once the grace is over, not before.
      const elsewhere = (await store.eventLog.bounds()).lastSeq + 1;
      feed.wake(elsewhere);
      expect(reads()).toBe(0);
      vi.advanceTimersByTime(60_000);
      expect(reads()).toBe(1);
    } finally {
      vi.useRealTimers();
      await feed.close();
    }
  });
});

describeOn("postgres+minio")("event feed: commits of another process", () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let here: MetadataStore;
  let elsewhere: MetadataStore;
  beforeAll(async () => {
    database = await createTestDatabase();
    here = await openMetadataStore({ databaseUrl: database.url, pgliteDir: "", poolSize: 4, migrate: true });
    elsewhere = await openMetadataStore({ databaseUrl: database.url, pgliteDir: "", poolSize: 4, migrate: false });
  });
  afterAll(async () => {
    await here?.close();
    await elsewhere?.close();
    await database?.drop();
  });

  it("reads what another process committed in between, then goes on delivering its own, each event once and in seq order", async () => {
    const { eventLog, reads } = countingReads(here);
    const feed: ArtifactEventFeed = await startArtifactEventFeed({ eventLog, pollIntervalMs: 3_600_000 });
    try {
      const delivered: LoggedEvent[] = [];
      feed.subscribe("mixed", (event) => delivered.push(event));
      await here.createArtifact(record("mixed"));
      const theirs = await elsewhere.createArtifact(record("mixed"));
      // Its wake-up (NOTIFY, not listened to here) is late: our next commit does not follow on from what we delivered.
      const ours = await here.createArtifact(record("mixed"));
      await vi.waitFor(() => expect(delivered, "the three events").toHaveLength(3), { timeout: 10_000, interval: 10 });
      expect(delivered.map((e) => e.artifactId).slice(1)).toEqual([theirs.artifact.id, ours.artifact.id]);
      expect(reads()).toBeGreaterThan(0);
      // The late wake-up for their event finds it delivered already.
      const readsBefore = reads();
      feed.wake(delivered[1]!.seq);
      expect(reads()).toBe(readsBefore);
      // A wake-up for something newer reads it.
      const later = await elsewhere.createArtifact(record("mixed"));
      const [event] = await elsewhere.eventLog.readAfter(delivered.at(-1)!.seq, 1, "mixed");
      feed.wake(event!.seq);
      await vi.waitFor(() => expect(delivered, "the fourth event").toHaveLength(4), { timeout: 10_000, interval: 10 });
      expect(delivered[3]!.artifactId).toBe(later.artifact.id);
      expect(delivered.every((e, i) => i === 0 || e.seq > delivered[i - 1]!.seq)).toBe(true);
    } finally {
      await feed.close();
    }
  });
});
