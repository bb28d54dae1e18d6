/**
 * The processes a benchmark run starts (the service, the plain relay) and
 * what it reads about them from /proc: CPU time and resident memory.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";

export const ROOT = path.resolve(import.meta.dirname, "../..");
export const NODE = path.join(ROOT, "node_modules/.bin/node");

export interface BenchProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  /** What it printed so far (stdout and stderr), at most the last 1 MiB. */
  output(): string;
  stop(): Promise<void>;
}

/** CPU seconds (user + system, all threads) a process has used so far, from /proc/<pid>/stat. */
export function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

export function rssMiB(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return match ? Number(match[1]) / 1024 : 0;
}

/**
 * Starts a Node program of the repository and waits for it to print
 * "serving". Its output goes to a file, as a deployment's log goes to its
 * shipper: read through a pipe by the bench, the service's access line per
 * call would cost the bench's own process (the measured client) CPU.
 */
export async function startProcess(
  args: string[],
  env: NodeJS.ProcessEnv,
  name: string,
  /** Whether it is ready; by default, whether it printed "serving" (the service prints it at level info only). */
  isReady?: () => Promise<boolean>,
): Promise<BenchProcess> {
  const logDir = mkdtempSync(path.join(os.tmpdir(), "artifactd-bench-log-"));
  const logFile = path.join(logDir, "output.log");
  const fd = openSync(logFile, "a");
  const child = spawn(NODE, args, { cwd: ROOT, env, stdio: ["ignore", fd, fd] });
  closeSync(fd);
  const output = () => {
    const text = readFileSync(logFile, "utf8");
    return text.length > 1024 * 1024 ? text.slice(-1024 * 1024) : text;
  };
  const ready = isReady ?? (async () => output().includes("serving"));
  let stopping = false;
  let started = false;
  for (let i = 0; i < 300 && !(started = await ready()); i++) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${name} exited: ${output()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  if (!started) {
    child.kill("SIGKILL");
    throw new Error(`${name} did not start: ${output()}`);
  }
  child.once("exit", (code, signal) => {
    if (!stopping) console.error(`benchmark: ${name} exited (${code ?? signal}):\n${output().slice(-4000)}`);
  });
  return {
    child,
    pid: child.pid!,
    output,
    async stop() {
      stopping = true;
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        child.kill("SIGTERM");
        // Within 10 s, so a CPU profile (BENCH_PROFILE_DIR) gets written.
        await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
        if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      }
      rmSync(logDir, { recursive: true, force: true });
    },
  };
}
