import { Code, ConnectError, type Client } from "@connectrpc/connect";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LISTENER_APPLICATION_NAME } from "../../src/adapters/events/postgres-event-listener.ts";
import { Status } from "@artifactd/api/artifacts/v1/artifact_pb.js";
import { EventType, type ArtifactService } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import { pruneArtifactEvents } from "../../src/service/maintenance.ts";
import { BACKENDS, startTestApp, type Backend, type TestApp } from "../support/test-app.ts";
import { describeOn } from "../support/test-backends.ts";

/**
 * WatchArtifacts over the event log: every event carries a cursor, and a
 * watcher that resumes after one gets every later event exactly once, in
 * order, whether it comes back to the same server, to a restarted one or to
 * another replica, and whatever happened to the LISTEN connection meanwhile.
 */

type ArtifactsClient = Client<typeof ArtifactService>;
interface Seen {
  readonly type: string;
  readonly id: string;
  readonly cursor: string;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const newRun = () => `resume-${Math.random().toString(36).slice(2)}`;
const withoutCursor = (events: readonly Seen[]) => events.map(({ type, id }) => ({ type, id }));

/** A watch of one run's events, collected as they come. */
function startWatch(client: ArtifactsClient, run: string, resumeAfter = "") {
  const controller = new AbortController();
  const events: Seen[] = [];
  let ended = false;
  const done = (async () => {
    try {
      for await (const event of client.watchArtifacts({ filter: { provenance: { runId: run } }, resumeAfter }, { signal: controller.signal })) {
        events.push({ type: EventType[event.type], id: event.artifact!.id, cursor: event.cursor });
      }
    } catch (error) {
      if (!controller.signal.aborted) throw error;
    } finally {
      ended = true;
    }
  })();
  done.catch(() => {}); // awaited by until() and stop(); never an unhandled rejection meanwhile
  return {
    events,
    /** Waits until `count` events have come; fails if the stream ends first or they take too long. */
    async until(count: number, timeoutMs = 15_000): Promise<Seen[]> {
      const deadline = Date.now() + timeoutMs;
      while (events.length < count) {
        if (ended) await done;
        if (ended || Date.now() > deadline) throw new Error(`watch got ${events.length} of ${count} events`);
        await sleep(20);
      }
      return [...events];
    },
    async stop(): Promise<Seen[]> {
      controller.abort();
      await done;
      return [...events];
    },
  };
}

/** The first error a watch ends with. */
async function watchError(client: ArtifactsClient, resumeAfter: string): Promise<ConnectError> {
  try {
    for await (const _ of client.watchArtifacts({ filter: { provenance: { runId: newRun() } }, resumeAfter })) break;
  } catch (error) {
    return ConnectError.from(error);
  }
  throw new Error("the watch did not fail");
}

/** One of each event, made one after another: the events a watcher of the run must see, in this order. */
/** Watches `run` live through `watching` while `making` makes the standard events; what was made and what was seen. */
async function watchWhileMaking(watching: ArtifactsClient, making: ArtifactsClient, run: string) {
  const live = startWatch(watching, run);
  await sleep(300);
  const made = await makeEvents(making, run);
  const seen = await live.until(made.length);
  await live.stop();
  return { made, seen };
}

async function makeEvents(client: ArtifactsClient, run: string): Promise<{ type: string; id: string }[]> {
  const save = async (name: string) =>
    (await client.saveInline({ spec: { kind: "resumed", name, provenance: { runId: run } }, content: { case: "text", value: name } })).artifact!.id;
  const a = await save("a");
  const b = await save("b");
  await client.setStatus({ id: a, status: Status.REVIEW });
  await client.setPinned({ id: b, pinned: true });
  await client.setPinned({ id: b, pinned: false });
  await client.deleteArtifact({ id: a });
  expect((await client.archiveRun({ runId: run })).deletedCount).toBe(1n);
  return [
    { type: "CREATED", id: a },
    { type: "CREATED", id: b },
    { type: "STATUS_CHANGED", id: a },
    { type: "PINNED", id: b },
    { type: "UNPINNED", id: b },
    { type: "DELETED", id: a },
    { type: "DELETED", id: b },
  ];
}

function expectIncreasing(events: readonly Seen[]) {
  const cursors = events.map((e) => BigInt(e.cursor));
  for (let i = 1; i < cursors.length; i++) expect(cursors[i]! > cursors[i - 1]!, `cursor ${i} after ${i - 1}`).toBe(true);
}

/** Settings that start another app on the same database (or data folder) and bucket as `t`. */
function sameStores(t: TestApp): Record<string, string> {
  return t.backend === "postgres+minio" ? { DATABASE_URL: t.databaseUrl!, ARTIFACTD_S3_BUCKET: t.bucket! } : { ARTIFACTD_DATA_DIR: t.dataDir };
}

describe.each(BACKENDS)("WatchArtifacts resume_after on %s", (backend: Backend) => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp(backend, { ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0" });
  });
  afterAll(async () => {
    await t?.close();
  });

  it("resumes after a cursor with exactly the later events, once, in order, then goes live", async () => {
    const run = newRun();
    const { made: first, seen } = await watchWhileMaking(t.client(), t.client(), run);
    expect(withoutCursor(seen)).toEqual(first);
    expectIncreasing(seen);

    // Made while nobody watches.
    const meanwhile = await makeEvents(t.client(), run);
    const resumed = startWatch(t.client(), run, seen[2]!.cursor);
    const caughtUp = await resumed.until(4 + meanwhile.length);
    expect(caughtUp.slice(0, 4)).toEqual(seen.slice(3));
    // And then live, with no gap between the backlog and the feed.
    const later = await makeEvents(t.client(), run);
    await resumed.until(4 + meanwhile.length + later.length);
    await sleep(300);
    const all = await resumed.stop();
    expect(withoutCursor(all)).toEqual([...first.slice(3), ...meanwhile, ...later]);
    expectIncreasing(all);
  });

  it("announces when a watch is live, with a cursor that misses nothing: at once from now, after the backlog when resuming", async () => {
    const run = newRun();
    const filter = { provenance: { runId: run } };
    /** Messages of a watch with announce_live, LIVE among them, collected until `count` have come. */
    const watchAnnounced = async (resumeAfter: string, count: number, meanwhile?: () => Promise<unknown>) => {
      const controller = new AbortController();
      const messages: { type: string; id: string | undefined; cursor: string }[] = [];
      try {
        for await (const m of t.client().watchArtifacts({ filter, resumeAfter, announceLive: true }, { signal: controller.signal })) {
          messages.push({ type: EventType[m.type], id: m.artifact?.id, cursor: m.cursor });
          if (m.type === EventType.LIVE) await meanwhile?.();
          if (messages.length === count) controller.abort();
        }
      } catch (error) {
        if (!controller.signal.aborted) throw error;
      }
      return messages;
    };

    // From now: LIVE first, no artifact; a save made once it is live comes next.
    let saved = "";
    const fromNow = await watchAnnounced("", 2, async () => {
      saved = (await t.client().saveInline({ spec: { kind: "live", name: "x", provenance: { runId: run } }, content: { case: "text", value: "x" } })).artifact!
        .id;
    });
    expect(fromNow.map(({ type, id }) => ({ type, id }))).toEqual([
      { type: "LIVE", id: undefined },
      { type: "CREATED", id: saved },
    ]);
    // Its cursor is a place to resume from: a watcher whose stream dropped before any event misses nothing.
    const afterLive = await watchAnnounced(fromNow[0]!.cursor, 2);
    expect(afterLive.map(({ type, id }) => ({ type, id }))).toEqual([
      { type: "CREATED", id: saved },
      { type: "LIVE", id: undefined },
    ]);
    // Resuming: LIVE after the backlog, with the backlog's last cursor (or later).
    expect(BigInt(afterLive[1]!.cursor) >= BigInt(afterLive[0]!.cursor)).toBe(true);

    // Without announce_live, nothing but artifact events (clients that know no LIVE see none).
    const plain = startWatch(t.client(), run, fromNow[0]!.cursor);
    expect(withoutCursor(await plain.until(1))).toEqual([{ type: "CREATED", id: saved }]);
    await sleep(200);
    expect(withoutCursor(await plain.stop())).toEqual([{ type: "CREATED", id: saved }]);
  });

  it("gives a resumed watcher the same events in the same order as a live one, under concurrent writes", async () => {
    const run = newRun();
    const live = startWatch(t.client(), run);
    await sleep(300);
    const marker = (await t.client().saveInline({ spec: { kind: "resumed", provenance: { runId: run } }, content: { case: "text", value: "start" } }))
      .artifact!;
    const [start] = await live.until(1);
    const count = 30;
    await Promise.all(
      Array.from({ length: count }, async (_, i) => {
        const { artifact } = await t
          .client()
          .saveInline({ spec: { kind: "resumed", name: `c${i}`, provenance: { runId: run } }, content: { case: "text", value: String(i) } });
        await t.client().setStatus({ id: artifact!.id, status: Status.REVIEW });
      }),
    );
    const seen = await live.until(1 + 2 * count);
    await live.stop();
    expect(start!.id).toBe(marker.id);
    expectIncreasing(seen);
    const resumed = startWatch(t.client(), run, start!.cursor);
    await resumed.until(2 * count);
    await sleep(300);
    expect(await resumed.stop()).toEqual(seen.slice(1));
  });

  it("refuses a malformed cursor, or one past every event, as INVALID_ARGUMENT naming resume_after", async () => {
    for (const cursor of ["abc", "-1", "1e3", " 1", "12345678901234567890"]) {
      const error = await watchError(t.client(), cursor);
      expect(error.code, cursor).toBe(Code.InvalidArgument);
      expect(error.message, cursor).toMatch(/resume_after .* is not an event cursor/);
    }
    const future = await watchError(t.client(), "999999999999999");
    expect(future.code).toBe(Code.InvalidArgument);
    expect(future.message).toMatch(/resume_after 999999999999999 is past the newest event/);
  });

  it("resumes on a restarted server (same database or data folder), missing nothing", async () => {
    const before = await startTestApp(backend, { ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0" });
    let after: TestApp | undefined;
    try {
      const run = newRun();
      const { made: first, seen } = await watchWhileMaking(before.client(), before.client(), run);
      expect(withoutCursor(seen)).toEqual(first);
      // Made after the watcher left, then the server goes away.
      const unseen = await makeEvents(before.client(), run);
      await before.closeApp();
      after = await startTestApp(backend, { ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0", ...sameStores(before) });
      const resumed = startWatch(after.client(), run, seen.at(-1)!.cursor);
      await resumed.until(unseen.length);
      const restarted = await makeEvents(after.client(), run);
      await resumed.until(unseen.length + restarted.length);
      await sleep(300);
      const all = await resumed.stop();
      expect(withoutCursor(all)).toEqual([...unseen, ...restarted]);
      expectIncreasing([...seen, ...all]);
    } finally {
      await after?.close();
      await before.close();
    }
  });

  // Last in this suite: it prunes the whole log of the shared server.
  it("answers OUT_OF_RANGE to a cursor older than the events kept, and resumes from the newest one", async () => {
    const run = newRun();
    const { made: first, seen } = await watchWhileMaking(t.client(), t.client(), run);
    const deps = { metadata: t.app.metadata, blobs: t.app.blobs };
    // Within the retention nothing goes.
    expect(await pruneArtifactEvents(deps, 86_400_000)).toBe(0);
    // An hour later, with a one-minute retention, everything does.
    expect(await pruneArtifactEvents(deps, 60_000, new Date(Date.now() + 3_600_000))).toBeGreaterThanOrEqual(first.length);

    const tooOld = await watchError(t.client(), seen[2]!.cursor);
    expect(tooOld.code).toBe(Code.OutOfRange);
    expect(tooOld.message).toMatch(/no longer kept.*list what changed.*watch again from now/);
    // Nothing after the newest cursor was pruned: it still resumes.
    const resumed = startWatch(t.client(), run, seen.at(-1)!.cursor);
    await sleep(300);
    const later = await makeEvents(t.client(), run);
    await resumed.until(later.length);
    expect(withoutCursor(await resumed.stop())).toEqual(later);
  });
});

describeOn("postgres+minio")("WatchArtifacts across replicas", () => {
  let first: TestApp;
  let second: TestApp;
  beforeAll(async () => {
    first = await startTestApp("postgres+minio", { ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0" });
    second = await startTestApp("postgres+minio", { ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0", ...sameStores(first) });
  });
  afterAll(async () => {
    await second?.close();
    await first?.close();
  });

  it("resumes on another replica after watching on one, missing nothing", async () => {
    const run = newRun();
    const { made, seen } = await watchWhileMaking(first.client(), second.client(first.tokens.alpha), run);
    const unseen = await makeEvents(first.client(), run);
    const resumed = startWatch(second.client(first.tokens.alpha), run, seen[3]!.cursor);
    await resumed.until(3 + unseen.length);
    await sleep(300);
    const all = await resumed.stop();
    expect(all.slice(0, 3)).toEqual(seen.slice(4));
    expect(withoutCursor(all)).toEqual([...made.slice(4), ...unseen]);
  });

  it("delivers every event while the LISTEN connections are killed again and again, and listens again", async () => {
    const admin = new pg.Client({ connectionString: first.databaseUrl });
    await admin.connect();
    // Only this test's database: other test runs share the server.
    const killListeners = () =>
      admin.query("select pg_terminate_backend(pid) from pg_stat_activity where application_name = $1 and datname = current_database()", [
        LISTENER_APPLICATION_NAME,
      ]);
    const listeners = async () =>
      Number(
        (
          await admin.query<{ n: string }>("select count(*) as n from pg_stat_activity where application_name = $1 and datname = current_database()", [
            LISTENER_APPLICATION_NAME,
          ])
        ).rows[0]!.n,
      );
    // Each replica's listener connects in the background: wait for both.
    const bothListening = async () => {
      const deadline = Date.now() + 15_000;
      while ((await listeners()) < 2 && Date.now() < deadline) await sleep(100);
      expect(await listeners()).toBe(2);
    };
    try {
      await bothListening();
      const run = newRun();
      const watch = startWatch(second.client(first.tokens.alpha), run);
      await sleep(300);
      const made: { type: string; id: string }[] = [];
      for (let round = 0; round < 4; round++) {
        await killListeners();
        made.push(...(await makeEvents(first.client(), run)));
        await sleep(50 * round);
      }
      const seen = await watch.until(made.length);
      await sleep(300);
      await watch.stop();
      expect(withoutCursor(watch.events)).toEqual(made);
      expectIncreasing(seen);
      // And they listen again (the backoff stays well under the time allowed).
      await bothListening();
    } finally {
      await admin.end();
    }
  });
});
