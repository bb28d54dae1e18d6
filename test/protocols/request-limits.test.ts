import { Code, ConnectError } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import type { Client as MinioClient } from "minio";
import { randomBytes } from "node:crypto";
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WatchArtifactsResponse } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import type { Caller } from "../../src/artifact.ts";
import { ConfigError, readConfig } from "../../src/config.ts";
import type { MetadataStore } from "../../src/ports/metadata-store.ts";
import { startArtifactEventFeed } from "../../src/service/artifact-events.ts";
import { createArtifactService } from "../../src/service/artifact-service.ts";
import { createTenantQuotas } from "../../src/service/tenant-quotas.ts";
import { createUrlSigner } from "../../src/service/download-urls.ts";
import { expectCode } from "../support/expect-code.ts";
import { blobStoreState } from "../support/blob-store-state.ts";
import { minioClient } from "../support/minio-client.ts";
import { BACKENDS, startTestApp, type TestApp } from "../support/test-app.ts";
import { describeOn } from "../support/test-backends.ts";

/**
 * Every cap on what one request can make the server do, through real
 * protocols (the generated Connect client over gRPC, and grpc-js with the
 * .proto files loaded at run time) against a running server: each refusal
 * has its code and names its limit and setting, and the server stays usable
 * after it. The limits are set low here so the tests stay small.
 */
const MiB = 1024 * 1024;
const PROTO_DIR = path.resolve(import.meta.dirname, "../../proto");
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const manyMetricRanges = Array.from({ length: 25_000 }, (_, i) => ({ name: `m${i}`, min: 0, max: 1 }));

type GrpcClient = grpc.Client & Record<string, (...args: unknown[]) => unknown>;
function grpcArtifactClient(address: string): GrpcClient {
  const loaded = grpc.loadPackageDefinition(
    protoLoader.loadSync("artifacts/v1/artifact_service.proto", {
      includeDirs: [PROTO_DIR],
      keepCase: true,
      longs: String,
      enums: String,
      defaults: true,
      oneofs: true,
    }),
  ) as unknown as { artifacts: { v1: { ArtifactService: new (address: string, credentials: grpc.ChannelCredentials) => GrpcClient } } };
  return new loaded.artifacts.v1.ArtifactService(address, grpc.credentials.createInsecure());
}

describe("request limit settings", () => {
  it("default to bounds every request stays within, and refuse values past what the server can take", () => {
    const config = readConfig({});
    expect(config.limits).toEqual({
      maxFilterTerms: 64,
      maxPageSize: 1000,
      maxBatchItems: 1000,
      maxSearchQueryChars: 512,
      maxLineageNodes: 1000,
      maxWatchersPerTenant: 100,
      maxWatchers: 1000,
      maxWatchBacklog: 10_000,
      uploadIdleTimeoutMs: 60_000,
    });
    expect(Object.isFrozen(config.limits)).toBe(true);
    expect(config.databaseStatementTimeoutMs).toBe(30_000);
    expect(readConfig({ ARTIFACTD_DATABASE_STATEMENT_TIMEOUT_MS: "0" }).databaseStatementTimeoutMs).toBe(0);
    // Thousands of filter terms overflow the query builder: a setting that would allow them stops start-up.
    expect(() => readConfig({ ARTIFACTD_MAX_FILTER_TERMS: "5000" })).toThrow(ConfigError);
    expect(() => readConfig({ ARTIFACTD_MAX_FILTER_TERMS: "5000" })).toThrow(/ARTIFACTD_MAX_FILTER_TERMS/);
    expect(() => readConfig({ ARTIFACTD_UPLOAD_IDLE_TIMEOUT_MS: "0" })).toThrow(/ARTIFACTD_UPLOAD_IDLE_TIMEOUT_MS/);
  });
});

describe.each(BACKENDS)("request limits on %s", (backend) => {
  let t: TestApp;
  let grpcClient: GrpcClient;
  let grpcMetadata: grpc.Metadata;
  let minio: MinioClient | undefined;
  beforeAll(async () => {
    t = await startTestApp(backend, {
      ARTIFACTD_MAX_FILTER_TERMS: "100",
      ARTIFACTD_MAX_PAGE_SIZE: "50",
      ARTIFACTD_MAX_SEARCH_QUERY_CHARS: "100",
      ARTIFACTD_MAX_LINEAGE_NODES: "20",
      ARTIFACTD_MAX_WATCHERS_PER_TENANT: "2",
      ARTIFACTD_MAX_WATCHERS: "3",
      ARTIFACTD_UPLOAD_IDLE_TIMEOUT_MS: "1500",
      ARTIFACTD_S3_PART_SIZE: "5MiB",
      ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0",
    });
    grpcClient = grpcArtifactClient(t.url.replace("http://", ""));
    grpcMetadata = new grpc.Metadata();
    grpcMetadata.set("authorization", `Bearer ${t.tokens.alpha}`);
    minio = backend === "postgres+minio" ? minioClient() : undefined;
  });
  afterAll(async () => {
    grpcClient?.close();
    await t?.close();
  });

  const save = (kind: string, inputs: string[] = [], runId = "") =>
    t
      .client()
      .saveInline({ spec: { kind, inputs: inputs.map((artifactId) => ({ artifactId })), provenance: { runId } }, content: { case: "text", value: kind } })
      .then((r) => r.artifact!.id);

  it("refuses a filter with 25,000 metric ranges as INVALID_ARGUMENT naming the limit, in every call that takes a filter", async () => {
    const filter = { metricRanges: manyMetricRanges };
    const named = /filter\.metric_ranges has 25000 entries; at most 100 are allowed \(ARTIFACTD_MAX_FILTER_TERMS\)/;
    await expectCode(t.client().listArtifacts({ filter }), Code.InvalidArgument, named);
    await expectCode(t.client().searchArtifacts({ query: "report", filter }), Code.InvalidArgument, named);
    await expectCode(t.client().getBestArtifact({ kind: "model", metric: "m1", filter }), Code.InvalidArgument, named);
    await expectCode(
      (async () => {
        for await (const _ of t.client().watchArtifacts({ filter })) break;
      })(),
      Code.InvalidArgument,
      named,
    );
    // The same through grpc-js, with the message as its details.
    const error = await new Promise<grpc.ServiceError | null>((resolve) =>
      (grpcClient.ListArtifacts as (r: object, m: grpc.Metadata, cb: (e: grpc.ServiceError | null) => void) => void).call(
        grpcClient,
        { filter: { metric_ranges: manyMetricRanges } },
        grpcMetadata,
        resolve,
      ),
    );
    expect(error && grpc.status[error.code]).toBe("INVALID_ARGUMENT");
    expect(error?.details).toMatch(/ARTIFACTD_MAX_FILTER_TERMS/);
  });

  it("caps labels, tags_all and tags_any at the setting too, and takes a filter right at the limit", async () => {
    const hundred = Array.from({ length: 100 }, (_, i) => `t${i}`);
    const labels = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, "v"]));
    await expectCode(
      t.client().listArtifacts({ filter: { labels: labels(101) } }),
      Code.InvalidArgument,
      /filter\.labels has 101 entries.*ARTIFACTD_MAX_FILTER_TERMS/,
    );
    await expectCode(
      t.client().listArtifacts({ filter: { tagsAll: [...hundred, "x"] } }),
      Code.InvalidArgument,
      /filter\.tags_all has 101 .*ARTIFACTD_MAX_FILTER_TERMS/,
    );
    await expectCode(
      t.client().listArtifacts({ filter: { tagsAny: [...hundred, "x"] } }),
      Code.InvalidArgument,
      /filter\.tags_any has 101 .*ARTIFACTD_MAX_FILTER_TERMS/,
    );
    // 100 of each (above the spec's own 64-label limit: the filter's setting rules here) is a valid query.
    const atLimit = await t.client().listArtifacts({
      filter: { labels: labels(100), tagsAny: hundred, metricRanges: manyMetricRanges.slice(0, 100) },
    });
    expect(atLimit.artifacts).toEqual([]);
  });

  it("refuses a page or a search query over the configured sizes, naming the setting", async () => {
    await expectCode(t.client().listArtifacts({ pageSize: 51 }), Code.InvalidArgument, /page_size 51 .*1–50 \(ARTIFACTD_MAX_PAGE_SIZE\)/);
    await expectCode(t.client().searchArtifacts({ query: "x", pageSize: 51 }), Code.InvalidArgument, /ARTIFACTD_MAX_PAGE_SIZE/);
    await t.client().listArtifacts({ pageSize: 50 });
    await expectCode(
      t.client().searchArtifacts({ query: "a".repeat(101) }),
      Code.InvalidArgument,
      /101 characters long; at most 100 .*ARTIFACTD_MAX_SEARCH_QUERY_CHARS/,
    );
    await t.client().searchArtifacts({ query: "a".repeat(100) });
  });

  it("refuses lineage past ARTIFACTD_MAX_LINEAGE_NODES as RESOURCE_EXHAUSTED, saying which depth to ask for", async () => {
    // A tree of 5 children with 5 grandchildren each: 5 artifacts at depth 1, 30 within depth 2 (the cap is 20).
    const root = await save("lineage-root");
    const children = await Promise.all(Array.from({ length: 5 }, () => save("lineage-child", [root])));
    await Promise.all(children.flatMap((child) => Array.from({ length: 5 }, () => save("lineage-grandchild", [child]))));
    const shallow = await t.client().getLineage({ id: root, depth: 1 });
    expect(shallow.descendants.map((a) => a.id).sort()).toEqual([...children].sort());
    await expectCode(
      t.client().getLineage({ id: root, depth: 2 }),
      Code.ResourceExhausted,
      /more than 20 artifacts within depth 2; at most 20 .*\(ARTIFACTD_MAX_LINEAGE_NODES\): ask for depth 1 or less/,
    );
    // A fan-out too wide for even one level.
    const hub = await save("lineage-hub");
    await Promise.all(Array.from({ length: 21 }, () => save("lineage-spoke", [hub])));
    await expectCode(t.client().getLineage({ id: hub, depth: 1 }), Code.ResourceExhausted, /ARTIFACTD_MAX_LINEAGE_NODES.*even depth 1/);
    // The upward walk of a spoke is small, and answers.
    const spoke = (await t.client().listArtifacts({ filter: { kind: "lineage-spoke" }, pageSize: 1 })).artifacts[0]!;
    expect((await t.client().getLineage({ id: spoke.id, depth: 32 })).ancestors.map((a) => a.id)).toEqual([hub]);
  });

  /**
   * A Watch stream of `token`'s tenant on the run's artifacts. Resolves with
   * its first event once the server holds the stream (it saves artifacts of
   * the run until one arrives: a stream opened "from now" sees only what is
   * saved after the server took it), or rejects with the call's error.
   */
  async function openWatcher(token: string, runId: string) {
    const controller = new AbortController();
    const iterator = t
      .client(token)
      .watchArtifacts({ filter: { provenance: { runId } } }, { signal: controller.signal })
      [Symbol.asyncIterator]();
    const first = iterator.next();
    first.catch(() => {});
    let settled = false;
    void first.finally(() => (settled = true)).catch(() => {});
    for (let i = 0; i < 50 && !settled; i++) {
      await t.client(token).saveInline({ spec: { kind: "watch-ping", provenance: { runId } }, content: { case: "text", value: "ping" } });
      await Promise.race([first.catch(() => {}), sleep(100)]);
    }
    const event = (await first).value as WatchArtifactsResponse;
    return { controller, event };
  }

  it("caps watchers per tenant and per server with RESOURCE_EXHAUSTED, and frees a slot when a stream ends", async () => {
    const run = `watch-${Math.random().toString(36).slice(2)}`;
    const open: AbortController[] = [];
    try {
      const a1 = await openWatcher(t.tokens.alpha, run);
      open.push(a1.controller);
      open.push((await openWatcher(t.tokens.alpha, run)).controller);
      expect(a1.event.artifact?.kind).toBe("watch-ping");
      await expectCode(openWatcher(t.tokens.alpha, run), Code.ResourceExhausted, /at most 2 are allowed \(ARTIFACTD_MAX_WATCHERS_PER_TENANT\)/);
      // Another tenant has slots of its own, until the server's total (3) is reached.
      open.push((await openWatcher(t.tokens.beta, run)).controller);
      await expectCode(openWatcher(t.tokens.beta, run), Code.ResourceExhausted, /at most 3 are allowed \(ARTIFACTD_MAX_WATCHERS\)/);

      // A stream the client cancels frees its slot: the next watcher of that tenant gets in.
      a1.controller.abort();
      let replacement: Awaited<ReturnType<typeof openWatcher>> | undefined;
      for (let attempt = 0; !replacement; attempt++) {
        try {
          replacement = await openWatcher(t.tokens.alpha, run);
        } catch (error) {
          // The server learns of the cancel a moment after the client sends it.
          if (!(error instanceof ConnectError) || error.code !== Code.ResourceExhausted || attempt > 20) throw error;
          await sleep(100);
        }
      }
      open.push(replacement.controller);
      expect(replacement.event.artifact?.kind).toBe("watch-ping");
    } finally {
      for (const controller of open) controller.abort();
    }
  });

  const storeState = () => blobStoreState(t, minio);

  /** Polls until the store holds an upload in progress of at least `bytes` (true), or the call it belongs to ended (false). */
  async function sawStoring(bytes: number, ended: () => boolean): Promise<boolean> {
    while (!ended()) {
      if ((await storeState()).inProgressBytes.some((b) => b >= bytes)) return true;
      await sleep(20);
    }
    return false;
  }

  async function expectStoreEmpty(): Promise<void> {
    let state = await storeState();
    for (let i = 0; i < 50 && state.entries.length > 0; i++) {
      await sleep(100);
      state = await storeState();
    }
    expect(state.entries).toEqual([]);
  }

  it("cuts a streaming upload that stalls after ARTIFACTD_UPLOAD_IDLE_TIMEOUT_MS, recording nothing and storing nothing (grpc-js)", async () => {
    const before = (await t.client().listArtifacts({ filter: { kind: "stalled", includeDeleted: true }, includeTotalCount: true })).totalCount;
    let ended = false;
    const started = Date.now();
    let call!: grpc.ClientWritableStream<object>;
    const outcome = new Promise<grpc.ServiceError | null>((resolve) => {
      call = (grpcClient.Upload as (m: grpc.Metadata, cb: (e: grpc.ServiceError | null) => void) => grpc.ClientWritableStream<object>).call(
        grpcClient,
        grpcMetadata,
        (error) => {
          ended = true;
          resolve(error);
        },
      );
    });
    call.write({ header: { spec: { kind: "stalled" } } });
    call.write({ chunk: randomBytes(6 * MiB) }); // one whole 5 MiB part, stored while the rest waits: then nothing more
    // The server really stored part of it before it was cut, so the clean-up had something to undo.
    expect(await sawStoring(5 * MiB, () => ended)).toBe(true);
    const error = await outcome;
    const elapsed = Date.now() - started;
    expect(error && grpc.status[error.code]).toBe("DEADLINE_EXCEEDED");
    expect(error?.details).toMatch(/no message for 1500 ms \(ARTIFACTD_UPLOAD_IDLE_TIMEOUT_MS\)/);
    expect(elapsed).toBeGreaterThanOrEqual(1_400);
    expect(elapsed).toBeLessThan(10_000);
    call.end();
    await expectStoreEmpty();
    const after = (await t.client().listArtifacts({ filter: { kind: "stalled", includeDeleted: true }, includeTotalCount: true })).totalCount;
    expect(after).toBe(before);
    // The server takes the next upload as usual.
    const { artifact } = await t.client().upload(
      (async function* () {
        yield { message: { case: "header" as const, value: { spec: { kind: "after-stall" } } } };
        yield { message: { case: "chunk" as const, value: Buffer.from("fine") } };
      })(),
    );
    expect(artifact?.sizeBytes).toBe(4n);
    await t.client().deleteArtifact({ id: artifact!.id });
  });

  it("cuts a session-bound upload stream that stalls, releasing the session to the next stream", async () => {
    const data = randomBytes(6 * MiB);
    const { session } = await t
      .client()
      .createUploadSession({ spec: { kind: "stalled-session" }, expectedSize: BigInt(data.length), partSize: BigInt(5 * MiB) });
    const sessionId = session!.sessionId;
    const release = new AbortController();
    const started = Date.now();
    await expectCode(
      t.client().upload(
        (async function* () {
          yield { message: { case: "header" as const, value: { sessionId } } };
          yield { message: { case: "chunk" as const, value: data } };
          await new Promise((resolve) => release.signal.addEventListener("abort", resolve, { once: true }));
        })(),
      ),
      Code.DeadlineExceeded,
      /ARTIFACTD_UPLOAD_IDLE_TIMEOUT_MS/,
    );
    release.abort();
    expect(Date.now() - started).toBeLessThan(10_000);
    // The first part was stored and stays the session's; the stream's hold on the session is gone, so a new
    // stream continues where it stopped (a held session would answer ABORTED).
    let view = (await t.client().getUploadSession({ sessionId })).session!;
    expect(view.resumeOffset).toBe(BigInt(5 * MiB));
    const { artifact } = await t.client().upload(
      (async function* () {
        yield { message: { case: "header" as const, value: { sessionId, offset: BigInt(5 * MiB) } } };
        yield { message: { case: "chunk" as const, value: data.subarray(5 * MiB) } };
      })(),
    );
    expect(artifact?.sizeBytes).toBe(BigInt(data.length));
    view = (await t.client().getUploadSession({ sessionId })).session!;
    expect(view.artifactId).toBe(artifact!.id);
  });
});

describeOn("postgres+minio")("Postgres statement timeout", () => {
  let t: TestApp;
  beforeAll(async () => {
    // One connection: the call after the timeout runs on the very connection whose statement was cancelled.
    t = await startTestApp("postgres+minio", {
      ARTIFACTD_DATABASE_STATEMENT_TIMEOUT_MS: "500",
      ARTIFACTD_DATABASE_POOL_SIZE: "1",
      ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0",
    });
  });
  afterAll(async () => {
    await t?.close();
  });

  it("cancels a statement stuck past the timeout, answers RESOURCE_EXHAUSTED naming the setting, and the next call succeeds", async () => {
    const saved = await t.client().saveInline({ spec: { kind: "locked" }, content: { case: "text", value: "x" } });
    // A second connection holds a lock every read of artifacts waits for.
    const locker = new pg.Client({ connectionString: t.databaseUrl });
    await locker.connect();
    try {
      await locker.query("begin");
      await locker.query("lock table artifacts in access exclusive mode");
      const started = Date.now();
      await expectCode(t.client().listArtifacts({ filter: { kind: "locked" } }), Code.ResourceExhausted, /ARTIFACTD_DATABASE_STATEMENT_TIMEOUT_MS/);
      const elapsed = Date.now() - started;
      expect(elapsed).toBeGreaterThanOrEqual(450);
      expect(elapsed).toBeLessThan(5_000);
      await locker.query("rollback");
    } finally {
      await locker.end();
    }
    const listed = await t.client().listArtifacts({ filter: { kind: "locked" } });
    expect(listed.artifacts.map((a) => a.id)).toEqual([saved.artifact!.id]);
  });
});

describeOn("postgres+minio")("the cost of an event to its watchers", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp("postgres+minio", { ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0" });
  });
  afterAll(async () => {
    await t?.close();
  });

  it("loads each event's artifact once for all watchers, and queries per watcher only for filters beyond status and pinned", async () => {
    // The use cases over the app's own database, with its store's reads counted.
    const counts = { getArtifact: 0, matchesFilter: 0 };
    const store = t.app.metadata;
    const metadata: MetadataStore = {
      ...store,
      getArtifact: (...args) => (counts.getArtifact++, store.getArtifact(...args)),
      matchesFilter: (...args) => (counts.matchesFilter++, store.matchesFilter(...args)),
    };
    const events = await startArtifactEventFeed({ eventLog: store.eventLog, pollIntervalMs: 50 });
    const config = readConfig({});
    const service = createArtifactService({
      metadata,
      blobs: t.app.blobs,
      events,
      inlineMaxBytes: config.inlineMaxBytes,
      uploadInlineMaxBytes: config.uploadInlineMaxBytes,
      uploadMaxBytes: config.uploadMaxBytes,
      downloadChunkBytes: config.downloadChunkBytes,
      sessionHashAhead: config.sessionHashAhead,
      sessionTtlMs: config.uploadSessionTtlMs,
      urlSigner: createUrlSigner([{ id: "test", secret: "s".repeat(32) }], { maxTtlSeconds: 900 }),
      downloadUrlMaxTtlSeconds: config.downloadUrlMaxTtlSeconds,
      uploadStaleMs: config.uploadStaleMs,
      limits: config.limits,
      quotas: createTenantQuotas({ store: store.tenantQuotas, defaults: config.quotaDefaults, cacheMs: config.quotaCacheMs }),
    });
    const caller: Caller = { tenantId: "alpha", principal: "test", tokenId: "tok_test", scope: "admin" };
    const stop = new AbortController();
    const firstEvent = (filter: Parameters<typeof service.watch>[1]) => {
      const iterator = service.watch(caller, filter, "", stop.signal)[Symbol.asyncIterator]();
      return iterator.next().then((r) => r.value);
    };
    try {
      const unfiltered = [firstEvent({}), firstEvent({}), firstEvent({}), firstEvent({ status: "draft" })];
      const byKind = firstEvent({ kind: "shared-load" });
      // Watchers from now subscribe when watch is called: the event saved next reaches all five.
      const saved = await t.client().saveInline({ spec: { kind: "shared-load" }, content: { case: "text", value: "x" } });
      const delivered = await Promise.all([...unfiltered, byKind]);
      for (const event of delivered) expect(event?.artifact.id).toBe(saved.artifact!.id);
      expect(counts.getArtifact).toBe(1);
      // Only the watcher filtering on kind asked the database whether the artifact matches.
      expect(counts.matchesFilter).toBe(1);
    } finally {
      stop.abort();
      await events.close();
    }
  });
});
