import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, expect, inject, it } from "vitest";
import { ArtifactService } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import { ensureJaegerBinary, type JaegerServer, type JaegerSpan, startJaeger } from "../support/jaeger-server.ts";
import { startServiceOnTestDatabase, type ServiceProcess } from "../support/service-process.ts";
import { describeOn } from "../support/test-backends.ts";

/**
 * Traces as an operator sees them: the service (its own process, Postgres
 * and MinIO) exports OTLP over HTTP to a real Jaeger, configured only with
 * the standard OTEL_* variables, and calls that carry a W3C traceparent
 * show up in Jaeger under the caller's trace: the call's SERVER span a child
 * of the caller's span, its Postgres statements and S3 requests children
 * of that.
 */
const MiB = 1024 * 1024;

describeOn("postgres+minio")("traces exported to a real OTLP receiver", () => {
  let jaeger: JaegerServer;
  let service: ServiceProcess;
  let dataDir: string;
  let token: string;
  let dropDatabase = async () => {};

  beforeAll(async () => {
    jaeger = await startJaeger(ensureJaegerBinary((line) => console.log(line)));
    dataDir = mkdtempSync(path.join(os.tmpdir(), "artifactd-traces-"));
    const minio = inject("minio");
    ({ service, dropDatabase } = await startServiceOnTestDatabase({
      logFile: path.join(dataDir, "service.log"),
      env: {
        ARTIFACTD_DATA_DIR: path.join(dataDir, "service"),
        ARTIFACTD_S3_ENDPOINT: minio.endpoint,
        ARTIFACTD_S3_ACCESS_KEY: minio.accessKey,
        ARTIFACTD_S3_SECRET_KEY: minio.secretKey,
        ARTIFACTD_S3_BUCKET: `traces-${process.pid}`,
        ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0",
        OTEL_EXPORTER_OTLP_ENDPOINT: jaeger.otlpEndpoint,
        OTEL_SERVICE_NAME: "artifactd-under-test",
        // Spans leave within a fifth of a second instead of five.
        OTEL_BSP_SCHEDULE_DELAY: "200",
      },
    }));
    token = await service.createToken("traced-tenant");
  }, 30 * 60_000);
  afterAll(async () => {
    await service?.stop(5_000);
    await dropDatabase();
    await jaeger?.stop();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  /** A client whose calls carry the token and a traceparent naming a fresh caller span of `traceId`. */
  const tracedClient = (protocol: "grpc" | "connect", traceId: string, callerSpanId: string) => {
    const headers: Interceptor = (next) => (request) => {
      request.header.set("authorization", `Bearer ${token}`);
      request.header.set("traceparent", `00-${traceId}-${callerSpanId}-01`);
      return next(request);
    };
    const transport =
      protocol === "grpc"
        ? createGrpcTransport({ baseUrl: service.url, interceptors: [headers] })
        : createConnectTransport({ baseUrl: service.url, httpVersion: "1.1", interceptors: [headers] });
    return createClient(ArtifactService, transport);
  };
  const newIds = () => ({ traceId: randomBytes(16).toString("hex"), callerSpanId: randomBytes(8).toString("hex") });

  /** The trace's spans once its call's SERVER span and at least `children` others have arrived. */
  /**
   * The trace's spans once the call's own span is in Jaeger with at least `children` more. The call's span ends
   * last, after its children, so it may come in a later export batch than they do: counting spans alone could
   * stop before it arrived.
   */
  const spansOfTrace = async (traceId: string, method: string, children: number): Promise<JaegerSpan[]> => {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const spans = await jaeger.spansOf(traceId);
      if (spans.length >= 1 + children && spans.some((s) => s.operationName === `artifacts.v1.ArtifactService/${method}`)) return spans;
      if (Date.now() > deadline)
        throw new Error(`trace ${traceId}: ${spans.length} spans in Jaeger after 20 s: ${spans.map((s) => s.operationName).join(", ")}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  };
  const tag = (span: JaegerSpan, key: string) => span.tags.find((t) => t.key === key)?.value;
  const parentOf = (span: JaegerSpan) => span.references.find((r) => r.refType === "CHILD_OF");
  const serverSpan = (spans: JaegerSpan[], method: string) => {
    const found = spans.filter((s) => s.operationName === `artifacts.v1.ArtifactService/${method}`);
    expect(found, `one SERVER span for ${method} among ${spans.map((s) => s.operationName).join(", ")}`).toHaveLength(1);
    return found[0]!;
  };

  it("continues the caller's trace through a gRPC upload, with Postgres and S3 spans under the call", async () => {
    const { traceId, callerSpanId } = newIds();
    const client = tracedClient("grpc", traceId, callerSpanId);
    const content = randomBytes(3 * MiB);
    const { artifact } = await client.upload(
      (async function* () {
        yield { message: { case: "header" as const, value: { spec: { kind: "traced", name: "traced.bin" } } } };
        for (let at = 0; at < content.length; at += MiB) yield { message: { case: "chunk" as const, value: content.subarray(at, at + MiB) } };
      })(),
    );
    expect(artifact?.sizeBytes).toBe(BigInt(content.length));

    const spans = await spansOfTrace(traceId, "Upload", 2);
    const upload = serverSpan(spans, "Upload");
    expect(upload.traceID).toBe(traceId);
    expect(parentOf(upload)).toMatchObject({ traceID: traceId, spanID: callerSpanId });
    expect(tag(upload, "span.kind")).toBe("server");
    expect(tag(upload, "rpc.system.name")).toBe("grpc");
    expect(tag(upload, "rpc.method")).toBe("artifacts.v1.ArtifactService/Upload");
    expect(tag(upload, "rpc.status_code")).toBe("OK");
    expect(tag(upload, "artifactd.tenant")).toBe("traced-tenant");

    const children = spans.filter((s) => parentOf(s)?.spanID === upload.spanID);
    const postgres = children.filter((s) => tag(s, "db.system.name") === "postgresql");
    const s3 = children.filter((s) => tag(s, "artifactd.blob_store.system") === "s3");
    expect(postgres.length, `Postgres spans under the upload: ${children.map((s) => s.operationName).join(", ")}`).toBeGreaterThan(0);
    expect(s3.length, `S3 spans under the upload: ${children.map((s) => s.operationName).join(", ")}`).toBeGreaterThan(0);
    for (const child of [...postgres, ...s3]) expect(tag(child, "span.kind")).toBe("client");

    // The call's access line leads to its trace.
    const accessLines = readFileSync(service.logFile, "utf8")
      .split("\n")
      .filter((line) => line.startsWith("{"))
      .map((line) => JSON.parse(line) as { msg?: string; traceId?: string; rpc?: { method?: string } })
      .filter((line) => line.msg === "call" && line.traceId === traceId);
    expect(accessLines.map((line) => line.rpc?.method)).toEqual(["Upload"]);

    // No token, and no content, in anything Jaeger holds.
    const everything = JSON.stringify(spans);
    expect(everything).not.toContain(token);
    expect(everything).not.toContain(token.slice(-20));
  });

  it("traces Connect calls and marks their codes, the caller's error not being the server's", async () => {
    const { traceId, callerSpanId } = newIds();
    const client = tracedClient("connect", traceId, callerSpanId);
    const error = await client.getArtifact({ id: "txt_00000000000000000000000000" }).then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
    expect(error?.code).toBe(Code.NotFound);

    const spans = await spansOfTrace(traceId, "GetArtifact", 1);
    const get = serverSpan(spans, "GetArtifact");
    expect(parentOf(get)).toMatchObject({ traceID: traceId, spanID: callerSpanId });
    expect(tag(get, "rpc.system.name")).toBe("connectrpc");
    expect(tag(get, "rpc.status_code")).toBe("NOT_FOUND");
    expect(tag(get, "error")).toBeUndefined();
    expect(spans.some((s) => parentOf(s)?.spanID === get.spanID && tag(s, "db.system.name") === "postgresql")).toBe(true);
  });

  it("starts a trace of its own for a call without a traceparent, and answers the same", async () => {
    const plain = createClient(
      ArtifactService,
      createGrpcTransport({
        baseUrl: service.url,
        interceptors: [(next) => (request) => (request.header.set("authorization", `Bearer ${token}`), next(request))],
      }),
    );
    const saved = await plain.saveInline({ spec: { kind: "traced", name: "untraced.txt" }, content: { case: "text", value: "no traceparent" } });
    expect(saved.artifact?.id).toMatch(/^txt_/);
    // Found by the service's name and the operation: its SERVER span is a root, in a trace of its own.
    const deadline = Date.now() + 20_000;
    let roots: JaegerSpan[] = [];
    while (roots.length === 0) {
      roots = (await jaeger.spansOfService("artifactd-under-test", "artifacts.v1.ArtifactService/SaveInline")).filter((s) => parentOf(s) === undefined);
      if (roots.length === 0 && Date.now() > deadline) throw new Error("no SaveInline span in Jaeger after 20 s");
      if (roots.length === 0) await new Promise((resolve) => setTimeout(resolve, 200));
    }
    expect(roots[0]!.traceID).toMatch(/^[0-9a-f]{32}$/);
    expect(tag(roots[0]!, "rpc.status_code")).toBe("OK");
  });
});
