import { Code } from "@connectrpc/connect";
import {
  type Attributes,
  type Context,
  context,
  diag,
  DiagLogLevel,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type TextMapGetter,
  trace,
  type Tracer,
} from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { OTLPTraceExporter as OtlpJsonExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { OTLPTraceExporter as OtlpProtobufExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { defaultResource, detectResources, envDetector, resourceFromAttributes } from "@opentelemetry/resources";
import { BasicTracerProvider, BatchSpanProcessor, ConsoleSpanExporter, type SpanExporter, type SpanProcessor } from "@opentelemetry/sdk-trace-base";
import {
  ATTR_DB_COLLECTION_NAME,
  ATTR_DB_OPERATION_NAME,
  ATTR_DB_SYSTEM_NAME,
  ATTR_ERROR_TYPE,
  ATTR_HTTP_RESPONSE_STATUS_CODE,
  ATTR_HTTP_ROUTE,
  ATTR_NETWORK_PEER_ADDRESS,
  ATTR_NETWORK_PEER_PORT,
  ATTR_RPC_METHOD,
  ATTR_RPC_STATUS_CODE,
  ATTR_RPC_SYSTEM_NAME,
  ATTR_SERVICE_NAME,
} from "@opentelemetry/semantic-conventions";
import type { CallObserver, CallRecord, StoreOperation, StoreOperationObserver } from "./calls.ts";
import { grpcCodeName } from "./grpc-code-names.ts";
import type { TracingSettings } from "./tracing-settings.ts";

/**
 * OpenTelemetry traces: a SERVER span for every call, continuing the
 * caller's W3C `traceparent` (gRPC and Connect metadata are HTTP headers),
 * with a CLIENT child span for each Postgres statement and blob-store
 * request the call makes. Attributes follow OpenTelemetry's RPC, HTTP and
 * database conventions; they never hold content, tokens or a signed link's
 * query (a plain HTTP span records the route's name, not the URL).
 *
 * Spans are batched and sent off the call's path (BatchSpanProcessor); an
 * unreachable collector costs dropped spans, never a failed call.
 */
export interface Tracing {
  readonly calls: CallObserver;
  readonly stores: StoreOperationObserver;
  /** Sends the spans buffered so far. */
  flush(): Promise<void>;
  /** Sends what is buffered, then stops exporting. */
  shutdown(): Promise<void>;
}

export interface TracingOptions {
  /** Instead of the exporters the settings name (tests). */
  readonly exporters?: readonly SpanExporter[];
  /** Where the SDK's own warnings go (a collector that cannot be reached, spans dropped): one line each. */
  readonly warn?: (message: string) => void;
}

export function startTracing(settings: TracingSettings, options: TracingOptions = {}): Tracing {
  const { warn } = options;
  if (warn) {
    const toWarn = (message: string, ...args: unknown[]) => warn([message, ...args.map(String)].join(" "));
    diag.setLogger({ error: toWarn, warn: toWarn, info: () => {}, debug: () => {}, verbose: () => {} }, DiagLogLevel.WARN);
  }
  // Context follows promises and callbacks (AsyncLocalStorage): a store's span finds the call's span as its parent.
  // Registered once per process; a second registration would be refused by the API and is not needed.
  if (!contextManagerRegistered) {
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    contextManagerRegistered = true;
  }
  const exporters = options.exporters ?? settings.exporters.map((name) => exporterOf(name, settings.protocol));
  const spanProcessors: SpanProcessor[] = exporters.map((exporter) => new BatchSpanProcessor(exporter));
  const provider = new BasicTracerProvider({
    // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win over the name given here.
    resource: defaultResource()
      .merge(resourceFromAttributes({ [ATTR_SERVICE_NAME]: "artifactd" }))
      .merge(detectResources({ detectors: [envDetector] })),
    spanProcessors,
  });
  const tracer = provider.getTracer("artifactd");
  return {
    calls: callSpans(tracer),
    stores: storeSpans(tracer),
    async flush() {
      await provider.forceFlush();
    },
    async shutdown() {
      await provider.shutdown();
    },
  };
}

let contextManagerRegistered = false;

function exporterOf(name: "otlp" | "console", protocol: TracingSettings["protocol"]): SpanExporter {
  if (name === "console") return new ConsoleSpanExporter();
  return protocol === "http/json" ? new OtlpJsonExporter() : new OtlpProtobufExporter();
}

/** Only W3C trace context: `traceparent` and `tracestate` (baggage is not read: it could carry anything). */
const propagator = new W3CTraceContextPropagator();

const headerGetter: TextMapGetter<CallRecord["headers"]> = {
  keys: (headers) => Object.keys(headers),
  get: (headers, key) => headers[key],
};

interface CallSpan {
  readonly span: Span;
  readonly context: Context;
}

function callSpans(tracer: Tracer): CallObserver {
  const spans = new WeakMap<CallRecord, CallSpan>();
  return {
    started(call) {
      if (isProbe(call)) return;
      const parent = propagator.extract(ROOT_CONTEXT, call.headers, headerGetter);
      const rpc = call.protocol !== "http";
      const attributes: Attributes = rpc
        ? {
            [ATTR_RPC_SYSTEM_NAME]: call.protocol === "connect" ? "connectrpc" : "grpc",
            [ATTR_RPC_METHOD]: `${call.service}/${call.method}`,
            "artifactd.protocol": call.protocol,
          }
        : { [ATTR_HTTP_ROUTE]: call.method };
      Object.assign(attributes, peerAttributes(call.peer));
      const span = tracer.startSpan(rpc ? `${call.service}/${call.method}` : call.method, { kind: SpanKind.SERVER, attributes }, parent);
      call.traceId = span.spanContext().traceId;
      spans.set(call, { span, context: trace.setSpan(parent, span) });
    },
    within(call, run) {
      const callSpan = spans.get(call);
      return callSpan ? context.with(callSpan.context, run) : run();
    },
    finished(call) {
      const callSpan = spans.get(call);
      if (!callSpan) return;
      spans.delete(call);
      const { span } = callSpan;
      if (call.tenantId !== undefined) span.setAttribute("artifactd.tenant", call.tenantId);
      span.setAttribute("artifactd.bytes_received", call.bytesReceived);
      span.setAttribute("artifactd.bytes_sent", call.bytesSent);
      if (call.protocol === "http") {
        if (call.httpStatus !== undefined) {
          span.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, call.httpStatus);
          // A server's span is an error for 5xx only: 4xx is the caller's mistake, answered as designed.
          if (call.httpStatus >= 500) {
            span.setAttribute(ATTR_ERROR_TYPE, String(call.httpStatus));
            span.setStatus({ code: SpanStatusCode.ERROR });
          }
        }
      } else if (call.code !== undefined) {
        const name = grpcCodeName(call.code);
        span.setAttribute(ATTR_RPC_STATUS_CODE, name);
        if (SERVER_ERROR_CODES.has(call.code)) {
          span.setAttribute(ATTR_ERROR_TYPE, name);
          span.setStatus({ code: SpanStatusCode.ERROR });
        }
      }
      span.end();
    },
  };
}

/**
 * Health probes and metrics scrapes come every few seconds from the
 * platform, not from work anyone follows: a trace each would bury the calls'
 * traces. They keep their access lines and metrics.
 */
function isProbe(call: CallRecord): boolean {
  if (call.service === "grpc.health.v1.Health") return true;
  return call.protocol === "http" && (call.method === "health probes" || call.method === "metrics");
}

/**
 * The codes OpenTelemetry's gRPC conventions count as a server's error; the
 * others (NOT_FOUND, INVALID_ARGUMENT, …) are answers to the caller's request.
 */
const SERVER_ERROR_CODES: ReadonlySet<Code | 0> = new Set([
  Code.Unknown,
  Code.DeadlineExceeded,
  Code.Unimplemented,
  Code.Internal,
  Code.Unavailable,
  Code.DataLoss,
]);

function peerAttributes(peer: string | undefined): Attributes {
  if (peer === undefined) return {};
  const colon = peer.lastIndexOf(":");
  const port = Number(peer.slice(colon + 1));
  if (colon < 0 || !Number.isInteger(port)) return { [ATTR_NETWORK_PEER_ADDRESS]: peer };
  return { [ATTR_NETWORK_PEER_ADDRESS]: peer.slice(0, colon).replace(/^\[|\]$/g, ""), [ATTR_NETWORK_PEER_PORT]: port };
}

/**
 * A CLIENT span for each store operation made inside a traced call. Work
 * outside any call (maintenance passes, the event feed's reads) opens no
 * span: a root span per statement would bury the calls' traces.
 */
function storeSpans(tracer: Tracer): StoreOperationObserver {
  return {
    started(operation) {
      const active = context.active();
      if (trace.getSpan(active) === undefined) return noEnd;
      const span = tracer.startSpan(storeSpanName(operation), { kind: SpanKind.CLIENT, attributes: storeAttributes(operation) }, active);
      return (error) => {
        if (error !== undefined) {
          // The kind of failure only: a driver's message may quote the values of a statement.
          span.setAttribute(ATTR_ERROR_TYPE, errorType(error));
          span.setStatus({ code: SpanStatusCode.ERROR });
        }
        span.end();
      };
    },
  };
}

const noEnd = () => {};

function storeSpanName(operation: StoreOperation): string {
  if (operation.system === "postgresql") return operation.collection ? `${operation.operation} ${operation.collection}` : operation.operation;
  return `${operation.system === "s3" ? "S3" : "blob store"} ${operation.operation}`;
}

function storeAttributes(operation: StoreOperation): Attributes {
  if (operation.system === "postgresql") {
    return {
      [ATTR_DB_SYSTEM_NAME]: "postgresql",
      [ATTR_DB_OPERATION_NAME]: operation.operation,
      ...(operation.collection ? { [ATTR_DB_COLLECTION_NAME]: operation.collection } : {}),
    };
  }
  return { "artifactd.blob_store.system": operation.system, "artifactd.blob_store.operation": operation.operation };
}

/** A Postgres SQLSTATE, a Node error code, or the error's class: never its message. */
function errorType(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === "string" && code !== "") return code;
  return error instanceof Error ? error.name : "_OTHER";
}
