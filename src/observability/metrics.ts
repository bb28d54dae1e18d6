import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { CallObserver, CallRecord, StoreOperation, StoreOperationObserver } from "./calls.ts";
import { grpcCodeName } from "./grpc-code-names.ts";

/**
 * The service's Prometheus metrics (prom-client), fed by the call seam and
 * the store decorators (./calls.ts) and, at each scrape, by what app.ts
 * hands over to read (the Postgres pool, open upload sessions). Every label
 * value is bounded: methods and routes are the server's own (an unknown
 * method is "unknown": transport/call-observation.ts), codes gRPC's 17,
 * store operations a fixed list; artifact ids never, tenant ids only when
 * the operator allows them (ARTIFACTD_METRICS_TENANT_LABELS).
 */
export interface MetricsOptions {
  /** Label call series by tenant too (`tenant`, "" for calls without one). */
  readonly tenantLabels: boolean;
  /** The Postgres pool's connections, read at each scrape; undefined without a pool (PGlite). */
  readonly databasePool?: (() => { readonly total: number; readonly idle: number; readonly waiting: number }) | undefined;
  /** Upload sessions neither completed, aborted nor expired, all tenants: read at each scrape. */
  readonly openUploadSessions?: (() => Promise<number>) | undefined;
}

export interface Metrics {
  readonly registry: Registry;
  /** Calls by RPC and code, their duration, bytes, streams and transfers in flight. */
  readonly callObserver: CallObserver;
  /** Postgres statement and blob-store request durations and failures. */
  readonly storeObserver: StoreOperationObserver;
  /** A maintenance pass finished (service/maintenance.ts): garbage collection ran and reclaimed this much. */
  maintenancePassed(report: { readonly garbage: { readonly blobs: number; readonly bytes: number; readonly orphanBytes: number } }): void;
  /** The Prometheus text format of every series. */
  render(): Promise<{ readonly contentType: string; readonly body: string }>;
}

/** Call durations: from a cached token lookup (~1 ms) to a large transfer or a long Watch. */
const CALL_SECONDS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800];
/** Store operations: a prepared statement's fraction of a millisecond to a part upload's seconds. */
const STORE_SECONDS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** Methods whose calls move content, for the transfers-in-flight gauge. */
const TRANSFERS: Readonly<Record<string, "upload" | "download">> = {
  Upload: "upload",
  UploadPart: "upload",
  Download: "download",
  "signed download links": "download",
};

export function createMetrics(options: MetricsOptions): Metrics {
  const registry = new Registry();
  const registers = [registry];
  collectDefaultMetrics({ register: registry });
  const tenant = options.tenantLabels;
  const rpcLabels = tenant ? (["service", "method", "tenant"] as const) : (["service", "method"] as const);

  const calls = new Counter({
    name: "artifactd_rpc_calls_total",
    help: "RPCs finished, by service, method and gRPC code (cut calls count as CANCELLED).",
    labelNames: [...rpcLabels, "code"],
    registers,
  });
  const duration = new Histogram({
    name: "artifactd_rpc_duration_seconds",
    help: "Time from an RPC's arrival to the end of its response.",
    labelNames: rpcLabels,
    buckets: CALL_SECONDS,
    registers,
  });
  const received = new Counter({
    name: "artifactd_rpc_received_bytes_total",
    help: "Request body bytes received by RPCs (message frames included).",
    labelNames: rpcLabels,
    registers,
  });
  const sent = new Counter({
    name: "artifactd_rpc_sent_bytes_total",
    help: "Response body bytes sent by RPCs (message frames included).",
    labelNames: rpcLabels,
    registers,
  });
  const streams = new Gauge({
    name: "artifactd_rpc_streams_in_flight",
    help: "Streaming RPCs (Upload, Download, WatchArtifacts, Health.Watch, reflection) open now.",
    labelNames: ["service", "method"],
    registers,
  });
  const watchers = new Gauge({ name: "artifactd_watch_subscribers", help: "WatchArtifacts streams open now.", registers });
  const transfers = new Gauge({
    name: "artifactd_transfers_in_flight",
    help: "Uploads (Upload, UploadPart) and downloads (Download, signed links) in progress now.",
    labelNames: ["direction"],
    registers,
  });
  transfers.set({ direction: "upload" }, 0);
  transfers.set({ direction: "download" }, 0);
  const httpRequests = new Counter({
    name: "artifactd_http_requests_total",
    help: "Plain HTTP requests (signed download links, the web page, metrics) finished, by route and status (0: cut before an answer).",
    labelNames: ["route", "status"],
    registers,
  });
  const httpSent = new Counter({
    name: "artifactd_http_sent_bytes_total",
    help: "Response body bytes sent by plain HTTP routes.",
    labelNames: ["route"],
    registers,
  });
  const queries = new Histogram({
    name: "artifactd_db_query_duration_seconds",
    help: "Postgres statements by operation and main table, from send to result.",
    labelNames: ["operation", "table"],
    buckets: STORE_SECONDS,
    registers,
  });
  const queryErrors = new Counter({
    name: "artifactd_db_query_errors_total",
    help: "Postgres statements that failed, by operation and main table.",
    labelNames: ["operation", "table"],
    registers,
  });
  const blobRequests = new Histogram({
    name: "artifactd_blob_request_duration_seconds",
    help: "Blob store requests by store and operation; a read counts until its last byte.",
    labelNames: ["system", "operation"],
    buckets: STORE_SECONDS,
    registers,
  });
  const blobErrors = new Counter({
    name: "artifactd_blob_request_errors_total",
    help: "Blob store requests that failed, by store and operation.",
    labelNames: ["system", "operation"],
    registers,
  });
  const gcRuns = new Counter({ name: "artifactd_gc_runs_total", help: "Maintenance passes that ran garbage collection to the end.", registers });
  const gcBytes = new Counter({
    name: "artifactd_gc_reclaimed_bytes_total",
    help: "Bytes of stored content garbage collection reclaimed (unreferenced blobs and orphaned objects).",
    registers,
  });
  const gcBlobs = new Counter({ name: "artifactd_gc_reclaimed_blobs_total", help: "Unreferenced blobs garbage collection reclaimed.", registers });
  if (options.databasePool) {
    const read = options.databasePool;
    new Gauge({
      name: "artifactd_db_pool_connections",
      help: "Postgres pool connections: total open, idle, and callers waiting for one.",
      labelNames: ["state"],
      registers,
      collect() {
        const pool = read();
        this.set({ state: "total" }, pool.total);
        this.set({ state: "idle" }, pool.idle);
        this.set({ state: "waiting" }, pool.waiting);
      },
    });
  }
  if (options.openUploadSessions) {
    const read = options.openUploadSessions;
    new Gauge({
      name: "artifactd_upload_sessions_open",
      help: "Upload sessions neither completed, aborted nor expired (all tenants, read from the database at each scrape).",
      registers,
      async collect() {
        this.set(await read());
      },
    });
  }

  const labelsOf = (call: CallRecord) =>
    tenant ? { service: call.service, method: call.method, tenant: call.tenantId ?? "" } : { service: call.service, method: call.method };

  const callObserver: CallObserver = {
    started(call) {
      const transfer = TRANSFERS[call.method];
      if (transfer !== undefined) transfers.inc({ direction: transfer });
      if (call.protocol === "http") return;
      if (call.streaming) streams.inc({ service: call.service, method: call.method });
      if (call.method === "WatchArtifacts") watchers.inc();
    },
    finished(call) {
      const transfer = TRANSFERS[call.method];
      if (transfer !== undefined) transfers.dec({ direction: transfer });
      if (call.protocol === "http") {
        httpRequests.inc({ route: call.method, status: String(call.httpStatus ?? 0) });
        httpSent.inc({ route: call.method }, call.bytesSent);
        return;
      }
      if (call.streaming) streams.dec({ service: call.service, method: call.method });
      if (call.method === "WatchArtifacts") watchers.dec();
      const labels = labelsOf(call);
      calls.inc({ ...labels, code: grpcCodeName(call.code) });
      duration.observe(labels, Number(process.hrtime.bigint() - call.startedAt) / 1e9);
      received.inc(labels, call.bytesReceived);
      sent.inc(labels, call.bytesSent);
    },
  };

  const storeObserver: StoreOperationObserver = {
    started(operation: StoreOperation) {
      const start = process.hrtime.bigint();
      return (error) => {
        const seconds = Number(process.hrtime.bigint() - start) / 1e9;
        if (operation.system === "postgresql") {
          const labels = { operation: operation.operation, table: operation.collection ?? "" };
          queries.observe(labels, seconds);
          if (error !== undefined) queryErrors.inc(labels);
        } else {
          const labels = { system: operation.system, operation: operation.operation };
          blobRequests.observe(labels, seconds);
          if (error !== undefined) blobErrors.inc(labels);
        }
      };
    },
  };

  return {
    registry,
    callObserver,
    storeObserver,
    maintenancePassed(report) {
      gcRuns.inc();
      gcBlobs.inc(report.garbage.blobs);
      gcBytes.inc(report.garbage.bytes + report.garbage.orphanBytes);
    },
    async render() {
      return { contentType: registry.contentType, body: await registry.metrics() };
    },
  };
}
