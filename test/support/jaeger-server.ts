import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { freePort } from "./minio-server.ts";

/**
 * A real Jaeger (v2: the OpenTelemetry Collector with Jaeger's storage and
 * query extensions) receiving OTLP over HTTP into memory, for tests that
 * check the spans artifactd exports. Built from source with Go the first
 * time, as MinIO is (./minio-server.ts), and cached outside the repository;
 * ARTIFACTD_JAEGER_BIN names a binary of your own instead.
 *
 * Jaeger's module replaces one of its dependencies in its go.mod, which
 * `go install pkg@version` refuses, so it is built inside a module of our
 * own that names it as a tool.
 */
const VERSION = "v1.75.0";

function jaegerCacheDir(): string {
  return path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), ".cache"), "artifactd", "jaeger", VERSION);
}

export function ensureJaegerBinary(log: (line: string) => void = () => {}): string {
  const own = process.env.ARTIFACTD_JAEGER_BIN;
  if (own) return own;
  const dir = jaegerCacheDir();
  const bin = path.join(dir, "jaeger");
  if (existsSync(bin)) return bin;
  const go = ["go", "/usr/local/go/bin/go"].find((candidate) => spawnSync(candidate, ["version"]).status === 0);
  if (!go) throw new Error("building Jaeger needs Go; install Go or set ARTIFACTD_JAEGER_BIN");
  const build = path.join(dir, "build");
  rmSync(build, { recursive: true, force: true });
  mkdirSync(build, { recursive: true });
  log(`building Jaeger ${VERSION} with Go (first run only, several minutes)…`);
  const run = (args: string[]) => {
    const result = spawnSync(go, args, {
      cwd: build,
      env: { ...process.env, CGO_ENABLED: "0" },
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
      timeout: 30 * 60_000,
    });
    if (result.status !== 0) {
      throw new Error(
        `could not build Jaeger (go ${args.join(" ")}): ${(result.stderr || result.error?.message || "").trim().split("\n").slice(-3).join(" ")}`,
      );
    }
  };
  run(["mod", "init", "artifactd-test-jaeger"]);
  run(["get", "-tool", `github.com/jaegertracing/jaeger/cmd/jaeger@${VERSION}`]);
  run(["build", "-trimpath", "-o", bin, "github.com/jaegertracing/jaeger/cmd/jaeger"]);
  rmSync(build, { recursive: true, force: true });
  return bin;
}

/** A span as Jaeger's query API answers it (GET /api/traces/{id}). */
export interface JaegerSpan {
  readonly traceID: string;
  readonly spanID: string;
  readonly operationName: string;
  readonly references: readonly { readonly refType: string; readonly traceID: string; readonly spanID: string }[];
  readonly tags: readonly { readonly key: string; readonly value: unknown }[];
}

export interface JaegerServer {
  /** Where OTLP over HTTP is received: OTEL_EXPORTER_OTLP_ENDPOINT. */
  readonly otlpEndpoint: string;
  /** The spans of one trace Jaeger has stored (none: an empty list). */
  spansOf(traceId: string): Promise<JaegerSpan[]>;
  /** The spans named `operation` of the traces of one service (Jaeger's search, last hour). */
  spansOfService(service: string, operation: string): Promise<JaegerSpan[]>;
  stop(): Promise<void>;
}

/** Jaeger on free loopback ports, traces in memory; ready when this resolves. */
export async function startJaeger(bin: string): Promise<JaegerServer> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "artifactd-jaeger-"));
  const [otlpPort, queryPort, queryGrpcPort] = [await freePort(), await freePort(), await freePort()];
  const config = path.join(dir, "config.yaml");
  writeFileSync(
    config,
    `service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 10000
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:${queryPort}
    grpc:
      endpoint: 127.0.0.1:${queryGrpcPort}
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:${otlpPort}
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
`,
  );
  const child: ChildProcess = spawn(bin, ["--config", config], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const query = `http://127.0.0.1:${queryPort}`;
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGKILL");
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      await stop();
      throw new Error(`Jaeger exited at start (${child.exitCode ?? child.signalCode}): ${stderr}`);
    }
    try {
      const [services, otlp] = await Promise.all([fetch(`${query}/api/services`), fetch(`http://127.0.0.1:${otlpPort}/v1/traces`, { method: "GET" })]);
      // The receiver answers 405 to a GET once it listens.
      if (services.ok && otlp.status > 0) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`Jaeger did not become ready within 60 s: ${stderr}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const spansAt = async (url: string) => {
    const response = await fetch(url);
    if (response.status === 404) return [];
    if (!response.ok) throw new Error(`Jaeger's query API answered ${response.status}: ${await response.text()}`);
    const body = (await response.json()) as { data?: { spans: JaegerSpan[] }[] | null };
    return body.data?.flatMap((t) => t.spans) ?? [];
  };
  return {
    otlpEndpoint: `http://127.0.0.1:${otlpPort}`,
    spansOf: (traceId) => spansAt(`${query}/api/traces/${traceId}`),
    async spansOfService(service, operation) {
      const spans = await spansAt(`${query}/api/traces?${new URLSearchParams({ service, operation, lookback: "1h", limit: "100" })}`);
      return spans.filter((s) => s.operationName === operation);
    },
    stop,
  };
}
