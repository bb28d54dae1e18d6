import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import http2 from "node:http2";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { WatchArtifactsRequestSchema, WatchArtifactsResponseSchema, type WatchArtifactsResponse } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import { openEventWatcher, type EventWatcher } from "../support/event-watcher.ts";
import { BACKENDS, startTestApp, type TestApp } from "../support/test-app.ts";

const BACKLOG = 20;

/**
 * A WatchArtifacts stream over a bare HTTP/2 connection whose reading the
 * test controls: paused, it stops taking data, so the HTTP/2 flow-control
 * window (kept at 1 KiB) closes and the server can send it nothing more.
 */
function openPausableWatch(url: string, token: string, runId: string) {
  const session = http2.connect(url, { settings: { initialWindowSize: 1024 } });
  session.on("error", () => {});
  const stream = session.request({
    ":method": "POST",
    ":path": "/artifacts.v1.ArtifactService/WatchArtifacts",
    "content-type": "application/grpc",
    te: "trailers",
    authorization: `Bearer ${token}`,
  });
  stream.on("error", () => {});
  const request = toBinary(WatchArtifactsRequestSchema, create(WatchArtifactsRequestSchema, { filter: { provenance: { runId } } }));
  const frame = Buffer.alloc(5 + request.length);
  frame.writeUInt32BE(request.length, 1);
  frame.set(request, 5);
  stream.end(frame);

  const events: WatchArtifactsResponse[] = [];
  let pending = Buffer.alloc(0);
  stream.on("data", (chunk: Buffer) => {
    pending = Buffer.concat([pending, chunk]);
    while (pending.length >= 5 && pending.length >= 5 + pending.readUInt32BE(1)) {
      const length = pending.readUInt32BE(1);
      events.push(fromBinary(WatchArtifactsResponseSchema, pending.subarray(5, 5 + length)));
      pending = pending.subarray(5 + length);
    }
  });
  const status = new Promise<{ code: number; message: string }>((resolve) => {
    const settle = (headers: http2.IncomingHttpHeaders) => {
      if (headers["grpc-status"] !== undefined)
        resolve({ code: Number(headers["grpc-status"]), message: decodeURIComponent(String(headers["grpc-message"] ?? "")) });
    };
    stream.on("response", settle);
    stream.on("trailers", settle);
    stream.on("close", () => resolve({ code: -1, message: `stream closed without a status (RST ${stream.rstCode})` }));
  });
  return {
    events,
    status,
    pause: () => stream.pause(),
    resume: () => stream.resume(),
    close: () => session.destroy(),
  };
}

/**
 * A watcher that stops reading must not hold the server: once more events
 * wait for it than ARTIFACTD_MAX_WATCH_BACKLOG, the server lets go of it
 * (its queue, its subscription, its watcher slot) and it learns why with
 * RESOURCE_EXHAUSTED when it reads again; other watchers see nothing of it.
 */
describe.each(BACKENDS)("a Watch stream that stops reading, on %s", (backend) => {
  let t: TestApp;
  const opened: EventWatcher[] = [];
  beforeAll(async () => {
    t = await startTestApp(backend, {
      ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0",
      ARTIFACTD_MAX_WATCH_BACKLOG: String(BACKLOG),
      // The reading watcher and the stalled one fill the tenant's slots: a third is admitted only once one is let go.
      ARTIFACTD_MAX_WATCHERS_PER_TENANT: "2",
    });
  });
  afterAll(async () => {
    for (const watcher of opened) await watcher.close();
    await t?.close();
  });

  it("is cut off with RESOURCE_EXHAUSTED past the backlog limit, frees its slot while still stalled, and other watchers carry on", async () => {
    const run = `backlog-${Math.random().toString(36).slice(2)}`;
    const reading = await openEventWatcher(t.client(), run);
    opened.push(reading);
    const stalled = openPausableWatch(t.url, t.tokens.alpha, run);
    try {
      // Live first: markers (the reading watcher's) are saved until one comes through, then it stops reading.
      await vi.waitFor(
        async () => {
          await reading.sync();
          await vi.waitFor(() => expect(stalled.events.length).toBeGreaterThan(0), { timeout: 500, interval: 10 });
        },
        { timeout: 10_000, interval: 0 },
      );
      stalled.pause();
      const thirdWatcher = () => openEventWatcher(t.client(), `probe-${Math.random().toString(36).slice(2)}`);
      const refusal = await thirdWatcher().then(
        (w) => (opened.push(w), undefined),
        (error: unknown) => ConnectError.from(error),
      );
      expect(refusal?.code, "both slots are taken while the stalled watcher is held").toBe(Code.ResourceExhausted);

      // Large events fill the transport's buffers sooner; then the backlog grows until it passes the limit.
      const produced: string[] = [];
      const title = "t".repeat(512);
      let admitted: EventWatcher | undefined;
      while (!admitted) {
        expect(produced.length, "the stalled watcher was never let go").toBeLessThan(500);
        const batch = await Promise.all(
          Array.from({ length: 10 }, async (_, i) => {
            const spec = { kind: "burst", name: `b${produced.length + i}`, title, provenance: { runId: run } };
            return (await t.client().saveInline({ spec, content: { case: "text", value: "x" } })).artifact!.id;
          }),
        );
        produced.push(...batch);
        // The reading watcher is paced to keep up (saves can outrun a watcher's per-event work): its backlog stays
        // within one batch, while the stalled one's only grows.
        await reading.sync();
        admitted = await thirdWatcher().catch((error: unknown) => {
          if (ConnectError.from(error).code !== Code.ResourceExhausted) throw error;
          return undefined;
        });
      }
      await admitted.close();
      expect(stalled.events.length, "the stalled watcher really stopped taking events").toBeLessThan(produced.length);

      await reading.sync();
      const readingIds = reading.events.filter((e) => e.kind === "burst").map((e) => e.id);
      expect(new Set(readingIds)).toEqual(new Set(produced));

      stalled.resume();
      const status = await stalled.status;
      expect(status.code).toBe(Code.ResourceExhausted);
      expect(status.message).toMatch(new RegExp(`fell more than ${BACKLOG} events behind.*ARTIFACTD_MAX_WATCH_BACKLOG.*resume_after`));

      // What it did receive came in order, and resuming after the last of it misses nothing.
      const stalledIds = stalled.events.filter((e) => e.artifact!.kind === "burst").map((e) => e.artifact!.id);
      expect(stalledIds).toEqual(readingIds.slice(0, stalledIds.length));
      const resumed: string[] = [];
      const controller = new AbortController();
      const lastCursor = stalled.events.at(-1)!.cursor;
      for await (const event of t
        .client()
        .watchArtifacts({ filter: { provenance: { runId: run }, kind: "burst" }, resumeAfter: lastCursor }, { signal: controller.signal, timeoutMs: 10_000 })) {
        resumed.push(event.artifact!.id);
        if (stalledIds.length + resumed.length === readingIds.length) break;
      }
      expect([...stalledIds, ...resumed]).toEqual(readingIds);
    } finally {
      stalled.close();
    }
  });
});
