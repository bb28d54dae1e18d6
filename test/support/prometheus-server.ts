import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { ensureDebianPackage } from "./ensure-debian-package.ts";
import { freePort } from "./minio-server.ts";

/** Debian's Prometheus server, which the metrics test scrapes the service with (installed when missing, like Chromium). */
export const PROMETHEUS_PATH = "/usr/bin/prometheus";

export interface PrometheusServer {
  /** http://127.0.0.1:<port> */
  readonly url: string;
  /** An instant query (/api/v1/query): each series' labels and value. */
  query(expression: string): Promise<{ readonly labels: Record<string, string>; readonly value: number }[]>;
  /** Stops it and removes its folder. */
  stop(): Promise<void>;
}

/**
 * A real Prometheus on a free loopback port, scraping `target` (host:port,
 * path /metrics) every `scrapeIntervalMs`, with its data in a temporary
 * folder. Resolves once it is ready.
 */
export async function startPrometheus(target: string, options: { readonly scrapeIntervalMs?: number } = {}): Promise<PrometheusServer> {
  const bin = await ensureDebianPackage("prometheus", PROMETHEUS_PATH);
  const dir = mkdtempSync(path.join(os.tmpdir(), "artifactd-prometheus-"));
  const interval = `${options.scrapeIntervalMs ?? 500}ms`;
  writeFileSync(
    path.join(dir, "prometheus.yml"),
    [
      "global:",
      `  scrape_interval: ${interval}`,
      `  evaluation_interval: ${interval}`,
      "scrape_configs:",
      "  - job_name: artifactd",
      `    scrape_timeout: ${interval}`,
      "    static_configs:",
      `      - targets: ["${target}"]`,
      "",
    ].join("\n"),
  );
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  let output = "";
  const child: ChildProcess = spawn(
    bin,
    [
      `--config.file=${path.join(dir, "prometheus.yml")}`,
      `--storage.tsdb.path=${path.join(dir, "data")}`,
      `--web.listen-address=127.0.0.1:${port}`,
      "--log.level=warn",
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  const keep = (data: Buffer) => {
    output = (output + data.toString("utf8")).slice(-4096);
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) {
      await stop();
      throw new Error(`prometheus exited at start (${child.exitCode}):\n${output}`);
    }
    const ready = await fetch(`${url}/-/ready`, { signal: AbortSignal.timeout(1_000) }).then(
      (response) => response.ok,
      () => false,
    );
    if (ready) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`prometheus was not ready within 30 s:\n${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return {
    url,
    async query(expression) {
      const response = await fetch(`${url}/api/v1/query?query=${encodeURIComponent(expression)}`);
      const body = (await response.json()) as {
        status: string;
        error?: string;
        data?: { resultType: string; result: { metric: Record<string, string>; value: [number, string] }[] };
      };
      if (body.status !== "success") throw new Error(`prometheus refused ${expression}: ${body.error}`);
      return (body.data?.result ?? []).map((series) => ({ labels: series.metric, value: Number(series.value[1]) }));
    },
    stop,
  };
}
