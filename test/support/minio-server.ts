import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";

/**
 * A real MinIO server for tests, built from source with `go install` the
 * first time and cached outside the repository.
 *
 * The version the project pins is tried first. The Go module proxy here
 * refuses it ("403 Forbidden: This module version is not available"), so
 * the newest version the proxy serves is the fallback; ARTIFACTD_MINIO_BIN
 * points at a binary of your own instead.
 */
const VERSIONS = ["v0.0.0-20251015172955-9e49d5e7a648", "v0.0.0-20260212201848-7aac2a2c5b7c"];

export const MINIO_ROOT_USER = "artifactd-test";
export const MINIO_ROOT_PASSWORD = "artifactd-test-secret";

export function minioCacheDir(): string {
  return path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), ".cache"), "artifactd", "minio");
}

export function ensureMinioBinary(log: (line: string) => void = () => {}): string {
  const own = process.env.ARTIFACTD_MINIO_BIN;
  if (own) return own;
  for (const version of VERSIONS) {
    const bin = path.join(minioCacheDir(), version, "minio");
    if (existsSync(bin)) return bin;
  }
  const go = ["go", "/usr/local/go/bin/go"].find((candidate) => spawnSync(candidate, ["version"]).status === 0);
  if (!go) throw new Error("building MinIO needs Go (go install); install Go or set ARTIFACTD_MINIO_BIN");
  const failures: string[] = [];
  for (const version of VERSIONS) {
    const dir = path.join(minioCacheDir(), version);
    mkdirSync(dir, { recursive: true });
    log(`building MinIO ${version} with go install (first run only, a few minutes)…`);
    const result = spawnSync(go, ["install", "-trimpath", `github.com/minio/minio@${version}`], {
      env: { ...process.env, GOBIN: dir, CGO_ENABLED: "0" },
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
      timeout: 30 * 60_000,
    });
    const bin = path.join(dir, "minio");
    if (result.status === 0 && existsSync(bin)) return bin;
    failures.push(`${version}: ${(result.stderr || result.error?.message || "").trim().split("\n").slice(-2).join(" ")}`);
  }
  throw new Error(`could not build MinIO:\n${failures.join("\n")}`);
}

export interface MinioServer {
  readonly endpoint: string;
  readonly accessKey: string;
  readonly secretKey: string;
  readonly port: number;
  /** The folder MinIO keeps its objects in (and `.minio.sys/`: multipart parts, config). */
  readonly dataDir: string;
  /** The running server's process id (the benchmark reads its CPU time); undefined while it is down. */
  readonly pid: number | undefined;
  /** SIGKILL: a crash. Resolves once the process has exited. */
  kill(): Promise<void>;
  /** Starts it again on the same port and data folder (waits until ready); no-op while it runs. */
  start(): Promise<void>;
  /** Stops it and deletes the data folder. */
  stop(): Promise<void>;
}

/** A MinIO server on a free loopback port with a temporary data folder, ready when this resolves. */
export async function startMinio(bin: string): Promise<MinioServer> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), "artifactd-minio-"));
  const port = await freePort();
  const consolePort = await freePort();
  const endpoint = `http://127.0.0.1:${port}`;
  let child: ChildProcess | undefined;

  const launch = async (): Promise<void> => {
    const started: ChildProcess = spawn(
      bin,
      ["server", dataDir, "--address", `127.0.0.1:${port}`, "--console-address", `127.0.0.1:${consolePort}`, "--quiet"],
      {
        env: {
          ...process.env,
          MINIO_ROOT_USER,
          MINIO_ROOT_PASSWORD,
          MINIO_BROWSER: "off",
          MINIO_UPDATE: "off",
          MINIO_CI_CD: "1",
        },
        stdio: ["ignore", "ignore", "pipe"],
      },
    );
    child = started;
    let stderr = "";
    started.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (started.exitCode !== null || started.signalCode !== null)
        throw new Error(`MinIO exited at start (${started.exitCode ?? started.signalCode}): ${stderr}`);
      try {
        const response = await fetch(`${endpoint}/minio/health/ready`);
        if (response.ok) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) {
        started.kill("SIGKILL");
        throw new Error(`MinIO did not become ready within 60 s: ${stderr}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  const running = () => child !== undefined && child.exitCode === null && child.signalCode === null;
  const kill = async (signal: NodeJS.Signals = "SIGKILL"): Promise<void> => {
    const current = child;
    if (!current || !running()) return;
    const exited = new Promise((r) => current.once("exit", r));
    current.kill(signal);
    await exited;
  };

  try {
    await launch();
  } catch (error) {
    rmSync(dataDir, { recursive: true, force: true });
    throw error;
  }
  return {
    endpoint,
    accessKey: MINIO_ROOT_USER,
    secretKey: MINIO_ROOT_PASSWORD,
    port,
    dataDir,
    get pid() {
      return running() ? child?.pid : undefined;
    },
    kill: () => kill("SIGKILL"),
    async start() {
      if (!running()) await launch();
    },
    async stop() {
      if (running()) {
        await Promise.race([kill("SIGTERM"), new Promise((r) => setTimeout(r, 5_000))]);
        await kill("SIGKILL");
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * A port free on 127.0.0.1 now, for a server a test starts. Picked at random
 * below the kernel's ephemeral range (ip_local_port_range, 32768–60999 here),
 * not by listening on port 0: the kernel hands ports from that range to every
 * outgoing connection and to every listen(0) of parallel test workers, so a
 * port it gave one caller could be taken (and answered on: a health check
 * once reached another test's service) before this caller's server bound it.
 * Below the range only these picks meet, at random, and rarely.
 */
export async function freePort(): Promise<number> {
  const low = 10_000;
  const high = ephemeralPortsFrom();
  for (let attempt = 1; ; attempt++) {
    const port = low + Math.floor(Math.random() * (high - low));
    if (await canListen(port)) return port;
    if (attempt === 200) throw new Error(`no free port found in ${low}–${high - 1} after ${attempt} tries`);
  }
}

/** The first port of the kernel's ephemeral range (32768 when it cannot be read). */
function ephemeralPortsFrom(): number {
  try {
    const first = Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0]);
    return first > 10_100 ? first : 32_768;
  } catch {
    return 32_768;
  }
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}
