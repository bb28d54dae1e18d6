import { Code } from "@connectrpc/connect";
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, expect, it, vi } from "vitest";
import { createArtifactClient, type ArtifactClient } from "../../clients/node/src/index.ts";
import { expectCode } from "../support/expect-code.ts";
import { startPrometheus, type PrometheusServer } from "../support/prometheus-server.ts";
import { startTestApp, type TestApp } from "../support/test-app.ts";
import { describeOn } from "../support/test-backends.ts";

/**
 * The service's metrics as an operator gets them: a real Prometheus
 * (Debian's) scrapes the service's metrics address every half second
 * while the Node SDK uploads, downloads and fails; then Prometheus' own
 * query API must show the calls, their codes and bytes, the Postgres pool,
 * the stores' operations, garbage collection and the process.
 */
const MISSING_ID = "art_01m924avw0xnt9skm3tzvy7ra8";
const UPLOADS = 3;
const SIZE = 300 * 1024;
const MiB = 1024 * 1024;

describeOn("postgres+minio")("Prometheus scraping the service", () => {
  let t: TestApp;
  let prometheus: PrometheusServer;
  let sdk: ArtifactClient;
  beforeAll(async () => {
    t = await startTestApp("postgres+minio", {
      // On a loopback address of their own, as the README advises for production.
      ARTIFACTD_METRICS_LISTEN: "127.0.0.1:0",
      // Garbage collection every second, reclaiming a deleted artifact's blob at once.
      ARTIFACTD_MAINTENANCE_INTERVAL_MS: "1000",
      ARTIFACTD_GC_GRACE_MS: "0",
    });
    const metricsUrl = new URL(t.app.metricsUrl!);
    expect(metricsUrl.hostname).toBe("127.0.0.1");
    expect(metricsUrl.port).not.toBe(new URL(t.url).port);
    prometheus = await startPrometheus(metricsUrl.host);
    sdk = createArtifactClient({ baseUrl: t.url, token: t.tokens.alpha });
  });
  afterAll(async () => {
    await sdk?.close();
    await prometheus?.stop();
    await t?.close();
  });

  /** The value of a query answering one series, once Prometheus has scraped enough for `accept`. */
  const eventually = async (expression: string, accept: (value: number) => boolean): Promise<number> => {
    let value = Number.NaN;
    await vi.waitFor(
      async () => {
        const series = await prometheus.query(expression);
        expect(series, expression).toHaveLength(1);
        value = series[0]!.value;
        expect(accept(value), `${expression} = ${value}`).toBe(true);
      },
      { timeout: 20_000, interval: 250 },
    );
    return value;
  };

  it("shows calls by RPC and code, bytes, the pool, store operations, open sessions, Watch subscribers, GC and the process", async () => {
    const ids: string[] = [];
    for (let i = 0; i < UPLOADS; i++) {
      const { artifact } = await sdk.uploadStream([randomBytes(SIZE)], { kind: "metrics-test" });
      ids.push(artifact!.id);
    }
    for (const id of ids) {
      const { content } = await sdk.download(id);
      for await (const _ of content);
    }
    await expectCode(sdk.get(MISSING_ID), Code.NotFound);
    await expectCode(t.client(`adt_${randomBytes(32).toString("base64url")}`).getArtifact({ id: MISSING_ID }), Code.Unauthenticated);
    const session = await sdk.rpc.createUploadSession({ spec: { kind: "metrics-test" } });
    expect(session.session?.sessionId).toBeTruthy();

    const rpc = 'service="artifacts.v1.ArtifactService"';
    await eventually(`sum(artifactd_rpc_calls_total{${rpc},method="Upload",code="OK"})`, (v) => v >= UPLOADS);
    await eventually(`sum(artifactd_rpc_calls_total{${rpc},method="Download",code="OK"})`, (v) => v >= UPLOADS);
    await eventually(`sum(artifactd_rpc_calls_total{${rpc},method="GetArtifact",code="NOT_FOUND"})`, (v) => v >= 1);
    await eventually(`sum(artifactd_rpc_calls_total{${rpc},method="GetArtifact",code="UNAUTHENTICATED"})`, (v) => v >= 1);
    await eventually(`sum(artifactd_rpc_received_bytes_total{method="Upload"})`, (v) => v >= UPLOADS * SIZE);
    await eventually(`sum(artifactd_rpc_sent_bytes_total{method="Download"})`, (v) => v >= UPLOADS * SIZE);
    await eventually(`sum(artifactd_rpc_duration_seconds_count{method="Upload"})`, (v) => v >= UPLOADS);
    await eventually(`artifactd_upload_sessions_open`, (v) => v >= 1);

    // The Postgres pool and statements; the blob store's requests (S3: MinIO).
    await eventually(`artifactd_db_pool_connections{state="total"}`, (v) => v >= 1);
    await eventually(`artifactd_db_pool_connections{state="idle"}`, (v) => v >= 0);
    await eventually(`artifactd_db_pool_connections{state="waiting"}`, (v) => v >= 0);
    await eventually(`sum(artifactd_db_query_duration_seconds_count{operation="SELECT"})`, (v) => v >= 1);
    await eventually(`sum(artifactd_blob_request_duration_seconds_count{system="s3",operation="commit"})`, (v) => v >= UPLOADS);
    await eventually(`sum(artifactd_blob_request_duration_seconds_count{system="s3",operation="read"})`, (v) => v >= UPLOADS);

    // A Watch open while Prometheus scrapes, and no longer once it is cut.
    const watching = new AbortController();
    const watch = (async () => {
      for await (const _ of t.client().watchArtifacts({ filter: { kind: "nothing-comes" } }, { signal: watching.signal }));
    })();
    await eventually("artifactd_watch_subscribers", (v) => v === 1);
    await eventually(`artifactd_rpc_streams_in_flight{method="WatchArtifacts"}`, (v) => v === 1);
    watching.abort();
    await expectCode(watch, Code.Canceled);
    await eventually("artifactd_watch_subscribers", (v) => v === 0);
    await eventually(`sum(artifactd_rpc_calls_total{method="WatchArtifacts",code="CANCELLED"})`, (v) => v >= 1);

    // Transfers in flight: an upload whose writer has sent a first chunk, a download whose reader has stopped.
    const writer = sdk.openWriter({ kind: "metrics-test" });
    await writer.write(randomBytes(MiB)); // above what the writer holds back: the Upload call is open
    await eventually('artifactd_transfers_in_flight{direction="upload"}', (v) => v === 1);
    const held = (await sdk.uploadStream([randomBytes(32 * MiB)], { kind: "metrics-test" })).artifact!;
    await writer.commit();
    await eventually('artifactd_transfers_in_flight{direction="upload"}', (v) => v === 0);
    const reading = (await sdk.download(held.id)).content[Symbol.asyncIterator]();
    await reading.next(); // then no more: flow control holds the server mid-stream
    await eventually('artifactd_transfers_in_flight{direction="download"}', (v) => v === 1);
    for (let next = await reading.next(); !next.done; next = await reading.next());
    await eventually('artifactd_transfers_in_flight{direction="download"}', (v) => v === 0);

    // A statement Postgres refuses (jsonb holds no \u0000) is counted as a failed statement.
    const failedBefore = await eventually("sum(artifactd_db_query_errors_total) or vector(0)", () => true);
    await expect(sdk.saveJson({ text: "\u0000" }, { kind: "metrics-test" })).rejects.toThrow();
    await eventually("sum(artifactd_db_query_errors_total)", (v) => v > failedBefore);

    // Garbage collection reclaims a deleted artifact's blob.
    await sdk.delete(ids[0]!);
    await eventually("artifactd_gc_reclaimed_bytes_total", (v) => v >= SIZE);
    await eventually("artifactd_gc_runs_total", (v) => v >= 1);

    // The process, and Prometheus' own view of the target.
    await eventually('up{job="artifactd"}', (v) => v === 1);
    await eventually("process_cpu_seconds_total", (v) => v > 0);
    // Bounded labels: no series names a tenant (ARTIFACTD_METRICS_TENANT_LABELS is off) or an artifact.
    const labels = JSON.stringify((await prometheus.query('{__name__=~"artifactd_.+"}')).map((series) => series.labels));
    expect(labels).toContain('"method":"Upload"');
    for (const named of [...ids, "alpha", '"tenant"']) expect(labels).not.toContain(named);
  }, 120_000);
});
