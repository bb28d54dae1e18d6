import type { Code } from "@connectrpc/connect";
import type { IncomingHttpHeaders } from "node:http";

/**
 * The per-call seam: what the server tells observers (metrics, access logs,
 * tracing) about every call it serves and every store operation those calls
 * make. The server fills a CallRecord in as the call goes
 * (transport/call-observation.ts); the store decorators report each Postgres
 * statement and blob-store request (./observed-database.ts,
 * ./observed-blob-store.ts). Observers only read: nothing they do changes
 * how a call is answered.
 */

/** One call or plain HTTP request, as observers see it; mutable fields are filled in as the call goes. */
export interface CallRecord {
  /** Full service name, e.g. "artifacts.v1.ArtifactService", "grpc.health.v1.Health"; "http" for plain HTTP routes. */
  readonly service: string;
  /** Method name ("Upload"), or for plain HTTP the route's name ("signed download links", "web page", "metrics", …). */
  readonly method: string;
  readonly protocol: "grpc" | "grpc-web" | "connect" | "http";
  /** Incoming request headers (traceparent comes from here). Never logged whole. */
  readonly headers: IncomingHttpHeaders;
  /** "ip:port" of the caller. */
  readonly peer: string | undefined;
  /** process.hrtime.bigint() at arrival. */
  readonly startedAt: bigint;
  /** Whether the method streams (client, server or both ways): false for unary calls and plain HTTP. */
  readonly streaming: boolean;
  /** Set once the call is admitted with a token. */
  tenantId: string | undefined;
  /** Set by the tracing observer (32 hex chars) when tracing is on. */
  traceId: string | undefined;
  /** Message payload bytes received / sent (request and response bodies). */
  bytesReceived: number;
  bytesSent: number;
  /** The call's gRPC code when it finished (Code.Ok = 0 is not in connect's enum: use 0). Undefined for plain HTTP. */
  code: Code | 0 | undefined;
  /** For plain HTTP routes: the response status. */
  httpStatus: number | undefined;
  /** The internal cause of a failure (never sent to clients); observers may log it. */
  error: unknown;
}

export interface CallObserver {
  started?(call: CallRecord): void;
  /** Runs the rest of the call (admission, handlers, stores) inside this observer's context, e.g. its trace span's; must return run()'s result. */
  within?<T>(call: CallRecord, run: () => T): T;
  /** Exactly once per call, when its response has ended or the call was cut. */
  finished?(call: CallRecord): void;
}

/** Postgres statements and blob-store requests, as observers see them. */
export interface StoreOperation {
  readonly system: "postgresql" | "s3" | "filesystem";
  /** Bounded: "SELECT", "INSERT", "UPDATE", "DELETE", "WITH", … for Postgres; the blob store method ("put", "get", "uploadPart", "complete", …) otherwise. */
  readonly operation: string;
  /** Postgres: the main table, when known ("artifacts"); undefined otherwise. */
  readonly collection: string | undefined;
}

export interface StoreOperationObserver {
  /** Called when the operation starts, in the async context of the caller (so a trace span opened here is a child of the call's). Returns the callback for its end. */
  started(operation: StoreOperation): (error?: unknown) => void;
}
