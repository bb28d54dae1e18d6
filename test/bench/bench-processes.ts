/**
 * The processes a benchmark run starts (the service, the plain relay) and
 * what it reads about them from /proc: CPU time and resident memory.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";

export const ROOT = path.resolve(import.meta.dirname, "../..");
export const NODE = path.join(ROOT, "node_modules/.bin/node");

export interface BenchProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  /** Everything it printed so far (stdout and stderr), at most the last 1 MiB. */
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

/** Starts a Node program of the repository and waits for it to print "serving". */
export async function startProcess(args: string[], env: NodeJS.ProcessEnv, name: string): Promise<BenchProcess> {
  const child = spawn(NODE, args, { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  const keep = (d: Buffer) => {
    output += d;
    if (output.length > 2 * 1024 * 1024) output = output.slice(-1024 * 1024);
  };
  child.stdout!.on("data", keep);
  child.stderr!.on("data", keep);
  let stopping = false;
  for (let i = 0; i < 300 && !output.includes("serving"); i++) {
    if (child.exitCode !== null) throw new Error(`${name} exited: ${output}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  if (!output.includes("serving")) throw new Error(`${name} did not start: ${output}`);
  child.once("exit", (code, signal) => {
    if (!stopping) console.error(`benchmark: ${name} exited (${code ?? signal}):\n${output.slice(-4000)}`);
  });
  return {
    child,
    pid: child.pid!,
    output: () => output,
    async stop() {
      stopping = true;
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      // Within 10 s, so a CPU profile (BENCH_PROFILE_DIR) gets written.
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    },
  };
}
