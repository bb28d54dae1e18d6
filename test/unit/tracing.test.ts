import { Code } from "@connectrpc/connect";
import { SpanKind, SpanStatusCode } from "@opentelemetry/api";
import { InMemorySpanExporter } from "@opentelemetry/sdk-trace-base";
import { describe, expect, it } from "vitest";
import { ConfigError } from "../../src/config.ts";
import type { CallRecord } from "../../src/observability/calls.ts";
import { startTracing } from "../../src/observability/tracing.ts";
import { readTracingSettings } from "../../src/observability/tracing-settings.ts";

const CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN = "00f067aa0ba902b7";

function callRecord(overrides: Partial<CallRecord> = {}): CallRecord {
  return {
    service: "artifacts.v1.ArtifactService",
    method: "GetArtifact",
    protocol: "grpc",
    streaming: false,
    headers: {},
    peer: "127.0.0.1:50123",
    startedAt: process.hrtime.bigint(),
    tenantId: undefined,
    traceId: undefined,
    bytesReceived: 0,
    bytesSent: 0,
    code: undefined,
    httpStatus: undefined,
    error: undefined,
    ...overrides,
  };
}

async function traced(run: (tracing: ReturnType<typeof startTracing>) => Promise<void> | void) {
  const exporter = new InMemorySpanExporter();
  const tracing = startTracing({ exporters: ["otlp"], protocol: "http/protobuf" }, { exporters: [exporter] });
  await run(tracing);
  await tracing.flush();
  const spans = exporter.getFinishedSpans();
  await tracing.shutdown();
  return spans;
}

describe("traces of calls", () => {
  it("continue the caller's traceparent, with the call's store operations as its children", async () => {
    const call = callRecord({ headers: { traceparent: `00-${CALLER_TRACE}-${CALLER_SPAN}-01`, authorization: "Bearer secret-token" } });
    const spans = await traced(async (tracing) => {
      tracing.calls.started!(call);
      await tracing.calls.within!(call, async () => {
        await Promise.resolve();
        const end = tracing.stores.started({ system: "postgresql", operation: "INSERT", collection: "artifacts" });
        await new Promise((resolve) => setTimeout(resolve, 1));
        end();
        tracing.stores.started({ system: "s3", operation: "get", collection: undefined })(
          Object.assign(new Error("boom: secret value"), { code: "ECONNRESET" }),
        );
      });
      call.tenantId = "acme";
      call.code = Code.NotFound;
      tracing.calls.finished!(call);
    });

    expect(call.traceId).toBe(CALLER_TRACE);
    const server = spans.find((s) => s.kind === SpanKind.SERVER)!;
    expect(server.name).toBe("artifacts.v1.ArtifactService/GetArtifact");
    expect(server.spanContext().traceId).toBe(CALLER_TRACE);
    expect(server.parentSpanContext?.spanId).toBe(CALLER_SPAN);
    expect(server.attributes).toMatchObject({
      "rpc.system.name": "grpc",
      "rpc.method": "artifacts.v1.ArtifactService/GetArtifact",
      "rpc.status_code": "NOT_FOUND",
      "network.peer.address": "127.0.0.1",
      "network.peer.port": 50123,
      "artifactd.tenant": "acme",
    });
    // NOT_FOUND answers the caller's request: not the server's error.
    expect(server.status.code).toBe(SpanStatusCode.UNSET);

    const children = spans.filter((s) => s.kind === SpanKind.CLIENT);
    expect(children.map((s) => s.name).sort()).toEqual(["INSERT artifacts", "S3 get"]);
    for (const child of children) {
      expect(child.spanContext().traceId).toBe(CALLER_TRACE);
      expect(child.parentSpanContext?.spanId).toBe(server.spanContext().spanId);
    }
    const insert = children.find((s) => s.name === "INSERT artifacts")!;
    expect(insert.attributes).toMatchObject({ "db.system.name": "postgresql", "db.operation.name": "INSERT", "db.collection.name": "artifacts" });
    const failed = children.find((s) => s.name === "S3 get")!;
    expect(failed.status.code).toBe(SpanStatusCode.ERROR);
    expect(failed.attributes["error.type"]).toBe("ECONNRESET");

    // Nothing a caller sent as a secret, and no error message, is in any span.
    const everything = JSON.stringify(spans.map((s) => ({ name: s.name, attributes: s.attributes, events: s.events, status: s.status })));
    expect(everything).not.toContain("secret");
  });

  it("start a trace of their own without a traceparent, and mark the server's errors", async () => {
    const call = callRecord({ protocol: "connect", method: "SaveInline" });
    const spans = await traced((tracing) => {
      tracing.calls.started!(call);
      call.code = Code.Internal;
      tracing.calls.finished!(call);
    });
    expect(spans).toHaveLength(1);
    const [server] = spans;
    expect(server!.spanContext().traceId).toBe(call.traceId);
    expect(call.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(call.traceId).not.toBe(CALLER_TRACE);
    expect(server!.parentSpanContext).toBeUndefined();
    expect(server!.attributes).toMatchObject({ "rpc.system.name": "connectrpc", "rpc.status_code": "INTERNAL", "error.type": "INTERNAL" });
    expect(server!.status.code).toBe(SpanStatusCode.ERROR);
  });

  it("open none for health probes and metrics scrapes", async () => {
    const probes = [
      callRecord({ service: "http", method: "health probes", protocol: "http" }),
      callRecord({ service: "http", method: "metrics", protocol: "http" }),
      callRecord({ service: "grpc.health.v1.Health", method: "Check" }),
    ];
    const spans = await traced((tracing) => {
      for (const probe of probes) {
        tracing.calls.started!(probe);
        tracing.calls.within!(probe, () => tracing.stores.started({ system: "postgresql", operation: "SELECT", collection: undefined })());
        probe.httpStatus = 200;
        probe.code = 0;
        tracing.calls.finished!(probe);
      }
    });
    expect(spans).toEqual([]);
    expect(probes.map((p) => p.traceId)).toEqual([undefined, undefined, undefined]);
  });

  it("open no span for store work outside any call", async () => {
    const spans = await traced((tracing) => {
      tracing.stores.started({ system: "postgresql", operation: "DELETE", collection: "artifact_events" })();
    });
    expect(spans).toEqual([]);
  });

  it("name plain HTTP requests by their route, never by their URL", async () => {
    const call = callRecord({ service: "http", method: "signed download links", protocol: "http" });
    const spans = await traced((tracing) => {
      tracing.calls.started!(call);
      call.httpStatus = 503;
      tracing.calls.finished!(call);
    });
    expect(spans[0]!.name).toBe("signed download links");
    expect(spans[0]!.attributes).toMatchObject({ "http.route": "signed download links", "http.response.status_code": 503 });
    expect(spans[0]!.status.code).toBe(SpanStatusCode.ERROR);
  });
});

describe("tracing settings (OTEL_* variables)", () => {
  it("are off unless an exporter or an endpoint is set", () => {
    expect(readTracingSettings({})).toBeUndefined();
    expect(readTracingSettings({ OTEL_SERVICE_NAME: "x" })).toBeUndefined();
    expect(readTracingSettings({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:4318" })).toEqual({ exporters: ["otlp"], protocol: "http/protobuf" });
    expect(readTracingSettings({ OTEL_TRACES_EXPORTER: "otlp,console", OTEL_EXPORTER_OTLP_PROTOCOL: "http/json" })).toEqual({
      exporters: ["otlp", "console"],
      protocol: "http/json",
    });
    expect(readTracingSettings({ OTEL_TRACES_EXPORTER: "none", OTEL_EXPORTER_OTLP_ENDPOINT: "http://x" })).toBeUndefined();
    expect(readTracingSettings({ OTEL_SDK_DISABLED: "true", OTEL_TRACES_EXPORTER: "otlp" })).toBeUndefined();
  });

  it("refuse what artifactd cannot do, naming the variable", () => {
    expect(() => readTracingSettings({ OTEL_TRACES_EXPORTER: "zipkin" })).toThrow(ConfigError);
    expect(() => readTracingSettings({ OTEL_TRACES_EXPORTER: "zipkin" })).toThrow(/OTEL_TRACES_EXPORTER/);
    expect(() => readTracingSettings({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://x", OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: "grpc" })).toThrow(
      /OTEL_EXPORTER_OTLP_TRACES_PROTOCOL.*http\/protobuf or http\/json/,
    );
  });
});
