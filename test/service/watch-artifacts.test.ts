import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Status } from "@artifactd/api/artifacts/v1/artifact_pb.js";
import { EventType } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import { openEventWatcher, untilLive } from "../support/event-watcher.ts";
import { BACKENDS, startTestApp, type TestApp } from "../support/test-app.ts";

/**
 * WatchArtifacts judges an event by the artifact as it was when the event
 * happened: the life-cycle fields (status, pinned, deleted) move on, and a
 * watcher must not miss the event that made an artifact match just because
 * a later one made it stop matching. (The basic filtering is in
 * test/service/query-and-lifecycle.test.ts.)
 */
describe.each(BACKENDS)("WatchArtifacts on %s", (backend) => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp(backend, { ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0" });
  });
  afterAll(async () => {
    await t?.close();
  });

  it("delivers every change into the watched status, even when the artifact has moved on by delivery time", async () => {
    const run = `w-${Math.random().toString(36).slice(2)}`;
    const count = 20;
    const controller = new AbortController();
    const received: { type: EventType; id: string; status: Status }[] = [];
    const markers = new Set<string>();
    const seen = () => received.filter((event) => !markers.has(event.id));
    const stream = t
      .client()
      .watchArtifacts({ filter: { kind: "reviewed", status: Status.REVIEW, provenance: { runId: run } } }, { signal: controller.signal });
    const reading = (async () => {
      try {
        for await (const event of stream) {
          received.push({ type: event.type, id: event.artifact!.id, status: event.artifact!.status });
          if (seen().length === count) controller.abort();
        }
      } catch (error) {
        if (!controller.signal.aborted) throw error;
      }
    })();
    const inReview = async (name: string) => {
      const { artifact } = await t
        .client()
        .saveInline({ spec: { kind: "reviewed", name, provenance: { runId: run } }, content: { case: "text", value: name } });
      await t.client().setStatus({ id: artifact!.id, status: Status.REVIEW });
      return artifact!.id;
    };
    await untilLive(
      markers,
      () => inReview("marker"),
      () => received.map((event) => event.id),
    );
    const ids = await Promise.all(
      Array.from({ length: count }, async (_, i) => {
        const id = await inReview(`r${i}`);
        // Approved at once: by the time the review event is delivered, the artifact is no longer in review.
        await t.client().setStatus({ id, status: Status.APPROVED });
        return id;
      }),
    );
    const timeout = setTimeout(() => controller.abort(), 15_000);
    await reading;
    clearTimeout(timeout);
    expect(
      seen()
        .map((e) => e.id)
        .sort(),
    ).toEqual([...ids].sort());
    expect(new Set(seen().map((e) => `${EventType[e.type]} ${Status[e.status]}`))).toEqual(new Set(["STATUS_CHANGED REVIEW"]));
  });

  it("tells a watcher of a DeleteArtifact with the artifact's id and kind, once, without include_deleted", async () => {
    const run = `d-${Math.random().toString(36).slice(2)}`;
    const watcher = await openEventWatcher(t.client(), run);
    try {
      const save = async (kind: string) =>
        (await t.client().saveInline({ spec: { kind, provenance: { runId: run } }, content: { case: "text", value: kind } })).artifact!;
      const doomed = await save("doomed");
      const kept = await save("kept");
      await t.client().deleteArtifact({ id: doomed.id });
      expect(await watcher.waitFor("DELETED", doomed.id)).toMatchObject({ kind: "doomed" });
      // Deleting it again answers the artifact unchanged: nothing happened, so there is no news.
      await t.client().deleteArtifact({ id: doomed.id });
      await watcher.sync();
      expect(watcher.events).toEqual([
        { type: "CREATED", id: doomed.id, kind: "doomed" },
        { type: "CREATED", id: kept.id, kind: "kept" },
        { type: "DELETED", id: doomed.id, kind: "doomed" },
      ]);
    } finally {
      await watcher.close();
    }
  });
});
