import { spawnSync } from "node:child_process";
import { chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { freePort } from "./minio-server.ts";

/**
 * A private Postgres server for fault tests, which may kill it: its own
 * cluster made with the machine's binaries (the newest of
 * /usr/lib/postgresql/<version>/bin) in a temporary folder, listening on a
 * free port on 127.0.0.1 only, trust authentication, its unix socket inside
 * the folder. The machine's own cluster (5432) is never touched.
 *
 * initdb refuses to run as root, so as root every Postgres binary runs as the
 * `postgres` user through `runuser`, and the folder is given to that user.
 * pg_ctl starts the postmaster as a daemon, not as our child: `destroy()`
 * must be called (the soak does so on every exit path, Ctrl-C included).
 *
 * `kill()` is a crash: SIGKILL to the postmaster and, at the same moment, to
 * its backends (an OOM kill of the whole server). Backends left behind by a
 * postmaster killed alone keep the shared memory block and make the next
 * start fail until they notice and exit; `start()` retries for a while in
 * that case anyway. `restart()`, `start()` and `stop()` keep the port and
 * the data.
 */
export interface PrivatePostgres {
  /** postgres://postgres@127.0.0.1:<port>/postgres */
  readonly url: string;
  readonly port: number;
  /** The cluster's folder (data/, the socket, postgres.log). */
  readonly dir: string;
  /** The postmaster's pid while it runs. */
  readonly pid: number | undefined;
  /** Starts the server (waits until it accepts connections); no-op while it runs. */
  start(): Promise<void>;
  /** pg_ctl stop: "fast" (the default) rolls back and disconnects; "immediate" is a crash without the kill (recovery at next start). */
  stop(mode?: "fast" | "immediate"): Promise<void>;
  /** SIGKILL to the postmaster and its backends; resolves once they are gone. */
  kill(): Promise<void>;
  restart(): Promise<void>;
  /** Stops the server however it can and deletes the folder. */
  destroy(): Promise<void>;
}

export interface PrivatePostgresOptions {
  /** Extra `-c name=value` server settings. Default: none. */
  readonly settings?: Readonly<Record<string, string>>;
  /** Where the temporary folder is made (as root, the `postgres` user must be able to enter it). Default: os.tmpdir(). */
  readonly parentDir?: string;
}

export async function startPrivatePostgres(options: PrivatePostgresOptions = {}): Promise<PrivatePostgres> {
  const bin = postgresBinDir();
  const asRoot = process.getuid?.() === 0;
  const dir = mkdtempSync(path.join(options.parentDir ?? os.tmpdir(), "artifactd-pg-"));
  const dataDir = path.join(dir, "data");
  const socketDir = path.join(dir, "socket");
  const logFile = path.join(dir, "postgres.log");
  mkdirSync(socketDir);
  if (asRoot) {
    const { uid, gid } = postgresUser();
    chownSync(dir, uid, gid);
    chownSync(socketDir, uid, gid);
  }
  const run = (tool: string, args: string[], timeoutMs = 120_000) => {
    const command = asRoot ? (["runuser", ["-u", "postgres", "--", path.join(bin, tool), ...args]] as const) : ([path.join(bin, tool), args] as const);
    const result = spawnSync(command[0], command[1], { cwd: dir, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: timeoutMs });
    return { ok: result.status === 0, output: `${result.stdout ?? ""}${result.stderr ?? ""}${result.error ? String(result.error) : ""}`.trim() };
  };

  const init = run("initdb", ["-D", dataDir, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync", "--no-instructions"]);
  if (!init.ok) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`initdb failed: ${init.output}`);
  }
  const port = await freePort();
  const serverOptions = [
    `-p ${port}`,
    "-c listen_addresses=127.0.0.1",
    `-c unix_socket_directories=${socketDir}`,
    "-c max_connections=200",
    ...Object.entries(options.settings ?? {}).map(([name, value]) => `-c ${name}=${value}`),
  ].join(" ");

  const postmasterPid = (): number | undefined => {
    try {
      const pid = Number(readFileSync(path.join(dataDir, "postmaster.pid"), "utf8").split("\n")[0]);
      return Number.isInteger(pid) && pid > 0 && alive(pid) ? pid : undefined;
    } catch {
      return undefined;
    }
  };

  const server: PrivatePostgres = {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    dir,
    get pid() {
      return postmasterPid();
    },
    async start() {
      if (postmasterPid() !== undefined) return;
      const deadline = Date.now() + 30_000;
      for (;;) {
        const started = run("pg_ctl", ["start", "-w", "-t", "60", "-D", dataDir, "-l", logFile, "-o", serverOptions]);
        if (started.ok) return;
        // After a kill, backends that outlived their postmaster hold the shared memory block for a moment.
        if (Date.now() > deadline) throw new Error(`pg_ctl start failed: ${started.output}\n${tail(logFile)}`);
        await new Promise((r) => setTimeout(r, 250));
      }
    },
    async stop(mode = "fast") {
      if (postmasterPid() === undefined) return;
      const stopped = run("pg_ctl", ["stop", "-w", "-t", "60", "-m", mode, "-D", dataDir]);
      if (!stopped.ok && postmasterPid() !== undefined) throw new Error(`pg_ctl stop failed: ${stopped.output}`);
    },
    async kill() {
      const pid = postmasterPid();
      if (pid === undefined) return;
      const victims = [pid, ...childrenOf(pid)];
      for (const victim of victims) {
        try {
          process.kill(victim, "SIGKILL");
        } catch {
          // already gone
        }
      }
      for (let i = 0; i < 100 && victims.some(alive); i++) await new Promise((r) => setTimeout(r, 50));
    },
    async restart() {
      await server.stop();
      await server.start();
    },
    async destroy() {
      try {
        await server.stop("immediate");
      } catch {
        // fall through to the kill
      }
      await server.kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await server.start();
  } catch (error) {
    await server.destroy();
    throw error;
  }
  return server;
}

/** The newest installed Postgres major version's bin folder. */
export function postgresBinDir(): string {
  const root = "/usr/lib/postgresql";
  const versions = existsSync(root) ? readdirSync(root).filter((v) => existsSync(path.join(root, v, "bin", "initdb"))) : [];
  versions.sort((a, b) => Number.parseFloat(b) - Number.parseFloat(a));
  if (versions.length === 0) throw new Error(`no Postgres server binaries under ${root}/<version>/bin (install postgresql)`);
  return path.join(root, versions[0]!, "bin");
}

function postgresUser(): { uid: number; gid: number } {
  const line = readFileSync("/etc/passwd", "utf8")
    .split("\n")
    .find((l) => l.startsWith("postgres:"));
  if (!line) throw new Error("running as root needs a `postgres` user to own the private cluster (initdb refuses root)");
  const fields = line.split(":");
  return { uid: Number(fields[2]), gid: Number(fields[3]) };
}

/** Whether a process exists and is not a zombie (a killed postmaster is reaped by init, not by us). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

/** Direct children of a process, from /proc (Linux). */
export function childrenOf(pid: number): number[] {
  const children: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      // The command name in parentheses may hold spaces: the fields after its closing parenthesis are fixed.
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === pid) children.push(Number(entry));
    } catch {
      // exited meanwhile
    }
  }
  return children;
}

function tail(file: string): string {
  try {
    return readFileSync(file, "utf8").split("\n").slice(-15).join("\n");
  } catch {
    return "";
  }
}
