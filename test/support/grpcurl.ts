import { execFile, spawnSync } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";

/**
 * grpcurl, the command-line gRPC client operators reach for, built from
 * source with `go install` the first time and cached outside the repository
 * (next to MinIO, ./minio-server.ts); ARTIFACTD_GRPCURL_BIN points at a
 * binary of your own instead. It knows nothing of our contract but what
 * server reflection tells it.
 */
const VERSION = "v1.9.4";

export function ensureGrpcurlBinary(): string {
  const own = process.env.ARTIFACTD_GRPCURL_BIN;
  if (own) return own;
  const dir = path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), ".cache"), "artifactd", "grpcurl", VERSION);
  const bin = path.join(dir, "grpcurl");
  if (existsSync(bin)) return bin;
  const go = ["go", "/usr/local/go/bin/go"].find((candidate) => spawnSync(candidate, ["version"]).status === 0);
  if (!go) throw new Error("building grpcurl needs Go (go install); install Go or set ARTIFACTD_GRPCURL_BIN");
  mkdirSync(dir, { recursive: true });
  const result = spawnSync(go, ["install", "-trimpath", `github.com/fullstorydev/grpcurl/cmd/grpcurl@${VERSION}`], {
    env: { ...process.env, GOBIN: dir, CGO_ENABLED: "0" },
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
    timeout: 15 * 60_000,
  });
  if (result.status !== 0 || !existsSync(bin)) throw new Error(`could not build grpcurl ${VERSION}: ${(result.stderr || result.error?.message || "").trim()}`);
  return bin;
}

/**
 * Runs `grpcurl -plaintext [flags] <address> <verb args>` (e.g. `["describe", "google.protobuf.Timestamp"]`);
 * resolves its output, or rejects with what it printed.
 */
export async function grpcurl(bin: string, address: string, verbArgs: readonly string[], flags: readonly string[] = []): Promise<string> {
  try {
    const { stdout } = await promisify(execFile)(bin, ["-plaintext", ...flags, address, ...verbArgs], { timeout: 30_000 });
    return stdout;
  } catch (error) {
    const failed = error as { stdout?: string; stderr?: string; message: string };
    throw new Error(`grpcurl ${verbArgs.join(" ")} failed: ${(failed.stderr || failed.stdout || failed.message).trim()}`);
  }
}
