/**
 * Chaos soak: the real service, its own Postgres and its own MinIO, all on
 * 127.0.0.1, under a steady mix of writes, reads and a watcher, while the
 * three processes are killed and restarted at random. Then everything is
 * brought back cleanly, GC runs, and the result is reconciled against every
 * acknowledgement the clients received.
 *
 *   npm run soak -- [--seconds N] [--json]
 *
 * Progress goes to stderr; with --json, stdout gets exactly one JSON line at
 * the end. Exit code 0 only when nothing acknowledged was lost or corrupt,
 * no artifact lacks its content, nothing is left in the bucket that the
 * metadata does not hold (objects, unfinished multipart uploads), and the
 * watcher saw every acknowledged creation exactly once.
 *
 * The soak's own progress (soak.log, with the faults' times), the service's
 * output (service.log), the acknowledgements (acks.jsonl, one JSON line
 * each), the Postgres log and the report are written to .artifactd/soak/ (kept after the run, replaced
 * by the next one); every process and temporary folder the soak started is
 * removed on every way out, Ctrl-C included, and the run ends by itself
 * within --seconds plus about two minutes.
 */
import { appendFileSync, copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { Client as MinioClient } from "minio";
import { CONFIG_VARIABLES } from "../../src/config.ts";
import { ensureMinioBinary, startMinio, type MinioServer } from "../support/minio-server.ts";
import { startPrivatePostgres, type PrivatePostgres } from "../support/private-postgres.ts";
import { describeEntry } from "../support/server-log.ts";
import { createServiceProcess, ROOT, type ServiceProcess } from "../support/service-process.ts";
import { bringUp, injectFaults, type FaultTarget } from "./fault-injector.ts";
import { reconcile, spotKeys, type Reconciliation } from "./soak-reconcile.ts";
import {
  abortSession,
  recoverUnconfirmedCreates,
  count,
  createArtifactClient,
  createSoakState,
  inlineWriter,
  reader,
  sessionWriter,
  streamingWriter,
  watcher,
  type SoakState,
} from "./soak-workload.ts";

/**
 * How long an upload's heartbeat may be silent before GC reclaims what it
 * stored. ARTIFACTD_UPLOAD_STALE_MS is the setting the server is getting;
 * the soak reports whether the server it runs knows it yet
 * (`upload_stale_setting_known`): until it does, it is ignored (unknown
 * environment variables are) and this wait proves nothing.
 */
const UPLOAD_STALE_MS = 3_000;
/** Writers hold back while more than this many bytes per second of the run have been acknowledged: bounds the disk a long soak fills and the time reconciling takes. */
const BYTES_PER_SECOND = 12 * 1024 * 1024;
const BUCKET = "artifacts";
const TENANT = "soak";

const { values } = parseArgs({
  options: { seconds: { type: "string", default: "60" }, json: { type: "boolean", default: false } },
});
const seconds = Number(values.seconds);
if (!Number.isFinite(seconds) || seconds <= 0) {
  console.error(`--seconds must be a positive number, got ${values.seconds}`);
  process.exit(2);
}
const started = Date.now();
const logDir = path.join(ROOT, ".artifactd", "soak");
rmSync(logDir, { recursive: true, force: true });
mkdirSync(logDir, { recursive: true });
/** Progress to stderr, and with wall-clock times to soak.log, to line up with service.log's marks. */
const log = (line: string) => {
  const text = `[soak ${((Date.now() - started) / 1000).toFixed(1).padStart(6)} s] ${line}`;
  console.error(text);
  appendFileSync(path.join(logDir, "soak.log"), `${new Date().toISOString()} ${text}\n`);
};
const workDir = mkdtempSync(path.join(os.tmpdir(), "artifactd-soak-"));

let postgres: PrivatePostgres | undefined;
let minio: MinioServer | undefined;
let service: ServiceProcess | undefined;
let cleaning: Promise<void> | undefined;

/** Stops everything the soak started and removes its temporary folders; safe to call more than once. */
function cleanUp(): Promise<void> {
  cleaning ??= (async () => {
    await service?.kill().catch(() => {});
    if (postgres) {
      try {
        copyFileSync(path.join(postgres.dir, "postgres.log"), path.join(logDir, "postgres.log"));
      } catch {
        // no log yet
      }
    }
    await Promise.all([minio?.stop().catch(() => {}), postgres?.destroy().catch(() => {})]);
    rmSync(workDir, { recursive: true, force: true });
  })();
  return cleaning;
}

for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.once(signal, () => {
    log(`${signal}: cleaning up`);
    void cleanUp().finally(() => process.exit(130));
  });
}
// The whole run is bounded: the soak, then at most two minutes to recover, collect and reconcile.
const hardStop = setTimeout(
  () => {
    log("out of time: cleaning up");
    void cleanUp().finally(() => {
      if (values.json) console.log(JSON.stringify({ seconds, error: "timed out" }));
      process.exit(1);
    });
  },
  (seconds + 150) * 1000,
);
hardStop.unref();

try {
  const outcome = await run();
  await cleanUp();
  if (values.json) console.log(JSON.stringify(outcome.report));
  else console.error(JSON.stringify(outcome.report, null, 2));
  process.exit(outcome.pass ? 0 : 1);
} catch (error) {
  log(`failed: ${(error as Error).stack ?? String(error)}`);
  await cleanUp();
  if (values.json) console.log(JSON.stringify({ seconds, error: String((error as Error).message ?? error) }));
  process.exit(1);
}

async function run(): Promise<{ report: Record<string, unknown>; pass: boolean }> {
  log(`starting Postgres, MinIO and the service (logs in ${path.relative(ROOT, logDir)}/)`);
  const minioBin = ensureMinioBinary(log);
  // Both started at once; whichever started is cleaned up even if the other failed.
  const [pgStarted, minioStarted] = await Promise.allSettled([startPrivatePostgres(), startMinio(minioBin)]);
  if (pgStarted.status === "fulfilled") postgres = pgStarted.value;
  if (minioStarted.status === "fulfilled") minio = minioStarted.value;
  if (pgStarted.status === "rejected") throw pgStarted.reason;
  if (minioStarted.status === "rejected") throw minioStarted.reason;
  const pgServer = pgStarted.value;
  const minioServer = minioStarted.value;
  const svc = await createServiceProcess({
    logFile: path.join(logDir, "service.log"),
    env: {
      DATABASE_URL: pgServer.url,
      ARTIFACTD_S3_ENDPOINT: minioServer.endpoint,
      ARTIFACTD_S3_ACCESS_KEY: minioServer.accessKey,
      ARTIFACTD_S3_SECRET_KEY: minioServer.secretKey,
      ARTIFACTD_S3_BUCKET: BUCKET,
      ARTIFACTD_DATA_DIR: path.join(workDir, "service"),
      ARTIFACTD_UPLOAD_STALE_MS: String(UPLOAD_STALE_MS),
      ARTIFACTD_GC_GRACE_MS: "0",
      ARTIFACTD_SHUTDOWN_GRACE_MS: "2000",
    },
  });
  service = svc;
  await svc.start();
  const token = await svc.createToken(TENANT);
  const client = createArtifactClient(svc.url, token);
  const minioClient = new MinioClient({
    endPoint: "127.0.0.1",
    port: minioServer.port,
    useSSL: false,
    accessKey: minioServer.accessKey,
    secretKey: minioServer.secretKey,
  });
  const state = createSoakState(path.join(logDir, "acks.jsonl"), BYTES_PER_SECOND);
  const kills: Record<string, number> = {};

  // The service may die by itself (a crash is a finding, counted and logged); it is started again as an operator's supervisor would.
  let faultOnService = false;
  let revive: Promise<void> | undefined;
  const serviceTarget: FaultTarget = {
    name: "service",
    async down() {
      faultOnService = true;
      await svc.kill();
      return "SIGKILL";
    },
    async up() {
      await svc.start();
      faultOnService = false;
    },
  };
  svc.onUnexpectedExit((how, served) => {
    if (!served) return; // a failed start: start() throws and its caller retries
    count(state, "service_crashes");
    log(`the service exited by itself (${how}): see service.log; starting it again`);
    if (faultOnService || revive) return;
    revive = bringUp(serviceTarget, log, 120_000)
      .catch((error: Error) => log(`the service would not start again: ${error.message}`))
      .finally(() => (revive = undefined));
  });
  const targets: FaultTarget[] = [
    serviceTarget,
    {
      name: "minio",
      async down() {
        await minioServer.kill();
        return "SIGKILL";
      },
      up: () => minioServer.start(),
    },
    {
      name: "postgres",
      async down() {
        if (Math.random() < 0.5) {
          await pgServer.kill();
          return "SIGKILL of the postmaster and its backends";
        }
        await pgServer.stop("immediate");
        return "immediate stop";
      },
      up: () => pgServer.start(),
    },
  ];

  // The watcher first, and a marker it must see: from then on it holds a cursor to resume after.
  const watchStop = new AbortController();
  const watching = watcher(client, state, watchStop.signal);
  const marker = await client.saveInline({ spec: { kind: "soak-marker" }, content: { case: "text", value: "soak start" } });
  const markerBytes = Buffer.from("soak start");
  state.acks.push({ id: marker.artifact!.id, blake3: marker.artifact!.blake3, size: markerBytes.byteLength, via: "inline" });
  state.acked.add(marker.artifact!.id);
  for (let i = 0; i < 100 && !state.events.some((e) => e.id === marker.artifact!.id); i++) await new Promise((r) => setTimeout(r, 100));
  if (!state.events.some((e) => e.id === marker.artifact!.id)) log("the watcher did not see the marker within 10 s");

  log(`soaking for ${seconds} s: 2 streaming writers, 1 session writer, 1 inline writer, 1 reader, 1 watcher; faults every few seconds`);
  const workStop = new AbortController();
  const spotter = spotKeys(pgServer.url, minioClient, BUCKET, workStop.signal);
  const until = started + seconds * 1000;
  const workers = [
    streamingWriter(client, state, workStop.signal),
    streamingWriter(client, state, workStop.signal),
    sessionWriter(client, state, workStop.signal),
    inlineWriter(client, state, workStop.signal),
    reader(client, state, workStop.signal),
  ];
  const progress = setInterval(
    () =>
      log(`acked ${state.acks.length}, failed calls ${state.counters.failed_calls ?? 0}, watch events ${state.events.length}, kills ${JSON.stringify(kills)}`),
    10_000,
  );
  const faults = injectFaults(targets, { until, log, signal: workStop.signal }, kills);
  await new Promise((r) => setTimeout(r, Math.max(0, until - Date.now())));
  workStop.abort();
  clearInterval(progress);
  await Promise.all([...workers, faults]);
  await Promise.race([spotter.done, new Promise((r) => setTimeout(r, 3_000))]);
  const soakedSeconds = (Date.now() - started) / 1000;

  log("recovering: every process up, then the client's clean-up (abort its unfinished sessions)");
  await pgServer.start();
  await minioServer.start();
  await revive;
  await bringUp(serviceTarget, log);
  for (let round = 0; round < 10 && state.unconfirmedCreates.size > 0; round++) await recoverUnconfirmedCreates(client, state, AbortSignal.timeout(15_000));
  for (let round = 0; round < 10 && state.openSessions.size > 0; round++) {
    for (const sessionId of [...state.openSessions]) await abortSession(client, state, sessionId, AbortSignal.timeout(10_000));
    if (state.openSessions.size > 0) await new Promise((r) => setTimeout(r, 1_000));
  }
  if (state.openSessions.size > 0) log(`${state.openSessions.size} session(s) could not be aborted`);

  log(`waiting out the stale-upload setting (${UPLOAD_STALE_MS} ms) while the watcher catches up`);
  const waitedOut = new Promise((r) => setTimeout(r, UPLOAD_STALE_MS + 2_000));
  await catchUp(state, 15_000);
  await waitedOut;
  watchStop.abort();
  await watching;

  log("running gc --grace-seconds 0");
  const gcRun = await svc.runCommand(["gc", "--grace-seconds", "0", "--json"]);
  let gc: unknown = { code: gcRun.code, stderr: gcRun.stderr.trim().slice(-2_000) };
  try {
    gc = JSON.parse(gcRun.stdout.trim().split("\n").at(-1) ?? "");
  } catch {
    log(`gc did not answer JSON (exit ${gcRun.code}): ${gcRun.stderr.trim().split("\n").slice(-3).join(" | ")}`);
  }

  log(`reconciling ${state.acks.length} acknowledgements against the service, Postgres and MinIO`);
  const result: Reconciliation = await reconcile({
    client,
    state,
    databaseUrl: pgServer.url,
    minio: minioClient,
    bucket: BUCKET,
    minioDataDir: minioServer.dataDir,
    seenKeys: spotter.keys,
  });
  const { examples, ...figures } = result;
  // What the service logged as an internal error (a bug: the faults are answered UNAVAILABLE), and its crashes; each by its first line.
  const internalErrors = svc.serverLog.takeUnexpected().map((entry) => describeEntry(entry).split("\n", 1)[0]!);
  const report = {
    seconds: Math.round(soakedSeconds),
    acked: state.acks.length,
    acked_bytes: state.acks.reduce((sum, a) => sum + a.size, 0),
    failed_calls: state.counters.failed_calls ?? 0,
    service_kills: kills.service ?? 0,
    minio_kills: kills.minio ?? 0,
    postgres_kills: kills.postgres ?? 0,
    service_crashes: state.counters.service_crashes ?? 0,
    internal_errors: internalErrors.length,
    ...figures,
    upload_stale_ms: UPLOAD_STALE_MS,
    upload_stale_setting_known: (CONFIG_VARIABLES as readonly string[]).includes("ARTIFACTD_UPLOAD_STALE_MS"),
    counters: state.counters,
    failures: state.failures,
    failure_examples: state.failureExamples,
    gc,
    examples,
    internal_error_examples: internalErrors.slice(0, 5),
    logs: path.relative(ROOT, logDir),
  };
  const pass = [
    result.lost,
    result.corrupt,
    result.missing_content,
    result.orphan_objects,
    result.unfinished_uploads,
    result.watch_missed,
    result.watch_duplicates,
    internalErrors.length,
  ].every((n) => n === 0);
  writeFileSync(path.join(logDir, "report.json"), `${JSON.stringify(report, null, 2)}\n`);
  log(pass ? "PASS" : "FAIL: see the report's examples and .artifactd/soak/service.log");
  return { report, pass };
}

/** Waits until the watcher has seen every acknowledged artifact's creation, or no new event came for `quietMs`. */
async function catchUp(state: SoakState, quietMs: number): Promise<void> {
  let seen = state.events.length;
  let quietSince = Date.now();
  for (;;) {
    const created = new Set(state.events.filter((e) => e.type === "CREATED").map((e) => e.id));
    if (state.acks.every((a) => created.has(a.id))) return;
    if (state.events.length !== seen) {
      seen = state.events.length;
      quietSince = Date.now();
    }
    if (Date.now() - quietSince > quietMs) return;
    await new Promise((r) => setTimeout(r, 250));
  }
}
