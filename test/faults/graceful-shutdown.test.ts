import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { randomBytes } from "node:crypto";
import http from "node:http";
import { describe, expect, it } from "vitest";
import { ArtifactService, type UploadRequestSchema } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "@artifactd/api/grpc/health/v1/health_pb.js";
import { expectCode } from "../support/expect-code.ts";
import { minioClient } from "../support/minio-client.ts";
import { captureStorageKeys, expectNothingStored, untilStored } from "../support/nothing-stored.ts";
import { BACKENDS, startTestApp, type TestApp } from "../support/test-app.ts";
import { describeOn } from "../support/test-backends.ts";

/**
 * SIGTERM's path: stop taking calls, tell health watchers and probes, let
 * transfers finish within the grace period, cancel the rest cleanly, and
 * only then resolve (the process exits right after).
 *
 * Once shutdown starts, HTTP/2 clients get GOAWAY, and a new connection is
 * answered only if it probes health (/readyz 503, /healthz 200, Health
 * NOT_SERVING); any other call on it is refused with UNAVAILABLE. A
 * Health.Watch opened before shutdown is how a balancer learns it at once.
 */
type UploadInit = MessageInitShape<typeof UploadRequestSchema>;
const MiB = 1024 * 1024;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** `fast` MiB at once, then one MiB every `delayMs`, `slow` times. */
async function* slowUpload(kind: string, fast: number, slow: number, delayMs: number): AsyncIterable<UploadInit> {
  yield { message: { case: "header", value: { spec: { kind } } } };
  for (let i = 0; i < fast; i++) yield { message: { case: "chunk", value: randomBytes(MiB) } };
  for (let i = 0; i < slow; i++) {
    yield { message: { case: "chunk", value: randomBytes(MiB) } };
    await sleep(delayMs);
  }
}

/** A probe on a connection of its own (Kubernetes opens one per probe). */
const probe = async (t: TestApp, path: string) => {
  const response = await fetch(new URL(path, t.url), { headers: { connection: "close" } });
  return { status: response.status, body: await response.json() };
};

/** Health.Watch on its own connection: the statuses it saw, and how it ended. */
function watchHealth(t: TestApp) {
  const statuses: string[] = [];
  const ended = (async () => {
    try {
      for await (const answer of createClient(Health, createGrpcTransport({ baseUrl: t.url })).watch({ service: "" }))
        statuses.push(ServingStatus[answer.status]);
      return "ended";
    } catch (error) {
      return Code[ConnectError.from(error).code];
    }
  })();
  return { statuses, ended };
}

function bucketOf(t: TestApp) {
  const minio = minioClient();
  return {
    async objects(): Promise<string[]> {
      const names: string[] = [];
      for await (const o of minio.listObjectsV2(t.bucket!, "", true)) names.push((o as { name: string }).name);
      return names;
    },
  };
}

describeOn("postgres+minio")("graceful shutdown", () => {
  it("lets an upload in flight finish within the grace period, answers new connections' probes alone, tells health watchers", async () => {
    const t = await startTestApp("postgres+minio", { ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0" });
    const events: string[] = [];
    const health = watchHealth(t);
    for (const deadline = Date.now() + 10_000; health.statuses.length === 0 && Date.now() < deadline; ) await sleep(10);
    expect(health.statuses).toEqual(["SERVING"]);

    using storage = captureStorageKeys(t);
    const upload = t.client().upload(slowUpload("graceful", 0, 8, 100));
    upload.then(
      () => events.push("upload recorded"),
      () => {},
    ); // awaited below; never an unhandled rejection meanwhile
    // The server has taken the upload on once it asks the store for a key (after the header, before the first byte).
    for (const deadline = Date.now() + 10_000; storage.keys.length === 0 && Date.now() < deadline; ) await sleep(10);
    expect(storage.keys, "the upload never reached the server").toHaveLength(1);
    const stopping = t.app.server.shutdown(20_000).then(() => events.push("shutdown done"));
    // Readiness is withdrawn from the first moment; liveness stays: the process is draining, not stuck.
    expect(await probe(t, "/readyz")).toEqual({ status: 503, body: { ready: false, unready: { server: "shutting down" } } });
    expect(await probe(t, "/healthz")).toEqual({ status: 200, body: { alive: true } });
    const newConnection = createClient(Health, createGrpcTransport({ baseUrl: t.url }));
    expect((await newConnection.check({ service: "" })).status).toBe(ServingStatus.NOT_SERVING);
    // Every other call on a new connection is refused, on HTTP/2 and HTTP/1.1.
    const grpcClient = createClient(ArtifactService, createGrpcTransport({ baseUrl: t.url }));
    await expectCode(grpcClient.getArtifact({ id: "art_00000000000000000000000000" }), Code.Unavailable, /shutting down/);
    const overHttp1 = await fetch(new URL("/artifacts.v1.ArtifactService/GetArtifact", t.url), {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${t.tokens.alpha}` },
      body: "{}",
    });
    expect(overHttp1.status).toBe(503);
    expect(events, "the upload was still in flight while probes were answered").toEqual([]);

    const { artifact } = await upload;
    expect(artifact!.sizeBytes).toBe(BigInt(8 * MiB));
    await stopping;
    expect(events).toEqual(["upload recorded", "shutdown done"]);
    expect((await t.app.metadata.getArtifact("alpha", artifact!.id))?.sizeBytes).toBe(8 * MiB);
    expect(await bucketOf(t).objects()).toEqual([expect.stringMatching(/^alpha\//)]);

    expect(health.statuses).toEqual(["SERVING", "NOT_SERVING"]);
    // And then the watch is ended, not left hanging (today with OK; UNAVAILABLE would do too).
    expect(await health.ended).toMatch(/^(Unavailable|ended)$/);
    await t.close();
  });

  it("closes idle HTTP/1.1 keep-alive connections at once and answers one whose request is under way with Connection: close", async () => {
    const t = await startTestApp("postgres+minio", { ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0" });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const saved = (await t.client().saveInline({ spec: { kind: "note" }, content: { case: "text", value: "x" } })).artifact!;
    const body = JSON.stringify({ id: saved.id });
    /** GetArtifact over HTTP/1.1; `beforeBody` runs after the headers are sent and before the body is. */
    const get = (beforeBody: () => Promise<void> = async () => {}, requestAgent: http.Agent = agent) =>
      new Promise<{ status: number; connection: string | undefined; body: string }>((resolve, reject) => {
        const request = http.request(
          `${t.url}/artifacts.v1.ArtifactService/GetArtifact`,
          {
            method: "POST",
            agent: requestAgent,
            headers: { "content-type": "application/json", "content-length": String(body.length), authorization: `Bearer ${t.tokens.alpha}` },
          },
          (response) => {
            let text = "";
            response.on("data", (d: Buffer) => (text += d.toString()));
            response.on("end", () => resolve({ status: response.statusCode!, connection: response.headers.connection, body: text }));
          },
        );
        request.on("error", reject);
        request.flushHeaders();
        void beforeBody().then(() => request.end(body));
      });
    const before = await get();
    expect(before.status).toBe(200);
    expect(before.connection).toBe("keep-alive");
    const idleSocket = new Promise<void>((resolve) => {
      const sockets = Object.values(agent.freeSockets).flat();
      expect(sockets).toHaveLength(1);
      sockets[0]!.once("close", () => resolve());
    });
    // A call in flight keeps the server in its grace period.
    const upload = t.client().upload(slowUpload("grace-keeper", 0, 10, 100));
    await sleep(250);
    // A request whose headers are in when shutdown begins and whose body comes after.
    let startShutdown!: () => void;
    const shutdownStarted = new Promise<void>((resolve) => (startShutdown = resolve));
    const underWay = get(() => shutdownStarted.then(() => sleep(50)).then(() => {}), new http.Agent({ keepAlive: true }));
    await sleep(100);
    const stopping = t.app.server.shutdown(20_000);
    startShutdown();
    // The idle keep-alive connection is closed by the server, so clients do not send it new calls.
    await idleSocket;
    const answered = await underWay;
    expect(answered.status).toBe(200);
    expect(answered.connection).toBe("close");
    await upload;
    await stopping;
    agent.destroy();
    await t.close();
  });

  it("cancels an upload that does not finish in time: no artifact, record, object or multipart upload under its key once shutdown resolves", async () => {
    const t = await startTestApp("postgres+minio", { ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0", ARTIFACTD_S3_PART_SIZE: "5MiB" });
    using storage = captureStorageKeys(t);
    // Observed from the start: the call fails while shutdown runs.
    const outcome = expectCode(t.client().upload(slowUpload("too-slow", 12, 50, 100)), Code.Unavailable, /shutting down/);
    // Two parts in S3 already: the cancel has a multipart upload to abort.
    await untilStored(t, storage.keys, 10 * MiB);

    await t.app.server.shutdown(300);
    await outcome;
    // No polling: the process exits once shutdown resolves, so clean-up must be done by then.
    await expectNothingStored(t, { keys: storage.keys }, { deadlineMs: 0 });
    const page = await t.app.metadata.listArtifacts("alpha", { kind: "too-slow", includeDeleted: true }, { pageSize: 10, pageToken: "" });
    expect(page.items).toEqual([]);
    await t.close();
  });
});

describe.each(BACKENDS)("graceful shutdown with WatchArtifacts subscribers on %s", (backend) => {
  it("ends an open Watch stream with UNAVAILABLE at once instead of waiting the grace period for it", async () => {
    const t = await startTestApp(backend, { ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0" });
    const received: string[] = [];
    let delivered!: () => void;
    const firstEvent = new Promise<void>((resolve) => (delivered = resolve));
    const reading = (async () => {
      try {
        for await (const event of t.client().watchArtifacts({ filter: { kind: "watched" } })) {
          received.push(event.artifact!.id);
          delivered();
        }
        return "ended with OK";
      } catch (error) {
        const { code, rawMessage } = ConnectError.from(error);
        return `${Code[code]}: ${rawMessage}`;
      }
    })();
    // The stream is open and subscribed once it delivers an event; it starts from "now", so an artifact saved
    // before it subscribed is not delivered: save another until one is.
    const saved: string[] = [];
    for (const deadline = Date.now() + 10_000; received.length === 0; ) {
      if (Date.now() > deadline) throw new Error(`the Watch stream delivered none of ${saved.length} saved artifacts within 10 s`);
      saved.push((await t.client().saveInline({ spec: { kind: "watched" }, content: { case: "text", value: "x" } })).artifact!.id);
      await Promise.race([firstEvent, sleep(200)]);
    }
    expect(saved).toContain(received[0]);
    const stillOpen = await Promise.race([reading.then(() => false), sleep(0).then(() => true)]);
    expect(stillOpen, "the Watch stream ended before shutdown began").toBe(true);

    // A grace far longer than the test may take: shutdown must end the stream, not wait for it.
    let timer: NodeJS.Timeout | undefined;
    const outcome = await Promise.race([
      t.app.server.shutdown(60_000).then(() => "shut down"),
      new Promise((resolve) => (timer = setTimeout(() => resolve("still waiting after 10 s"), 10_000))),
    ]);
    clearTimeout(timer);
    expect(outcome).toBe("shut down");
    expect(await reading).toBe("Unavailable: the server is shutting down: retry the call");
    await t.close();
  });
});
