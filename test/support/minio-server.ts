import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
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
  /** The server's process id (the benchmark reads its CPU time). */
  readonly pid: number | undefined;
  stop(): Promise<void>;
}

export async function startMinio(bin: string): Promise<MinioServer> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), "artifactd-minio-"));
  const port = await freePort();
  const consolePort = await freePort();
  const child: ChildProcess = spawn(
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
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
  const endpoint = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`MinIO exited at start (${child.exitCode}): ${stderr}`);
    try {
      const response = await fetch(`${endpoint}/minio/health/ready`);
      if (response.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`MinIO did not become ready within 60 s: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    endpoint,
    accessKey: MINIO_ROOT_USER,
    secretKey: MINIO_ROOT_PASSWORD,
    pid: child.pid,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        child.kill("SIGTERM");
        await Promise.race([exited, new Promise((r) => setTimeout(r, 5_000))]);
        if (child.exitCode === null) child.kill("SIGKILL");
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}
