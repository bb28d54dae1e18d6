/**
 * Transfer and small-artifact benchmark: `npm run bench`, with options
 *   --size-mib N     blob size of the transfer cases (default 2048: the targets are at 2 GiB)
 *   --rounds N       interleaved rounds (default 3); figures are medians over them
 *   --only a,b       only the cases whose key is or starts with one of these (e.g. service_download,inline_save)
 *   --timeout-min N  give up after this long (default: 20 minutes plus 4 per GiB per round)
 *   --json           end with one JSON line holding every figure
 *
 * In one run, against one MinIO (built and started like the tests do) and a
 * fresh Postgres database, with the service as a separate process (as
 * `npm start` runs it), each round runs every case once, in this order
 * (transfer-cases.ts, small-cases.ts):
 * - service upload (the Node SDK writer: gRPC client streaming, BLAKE3 on
 *   the server, S3 multipart behind; the server's RSS sampled every 50 ms),
 *   a hand-driven direct multipart upload (16 MiB parts, 4 in flight,
 *   UNSIGNED-PAYLOAD: what the service itself sends, the fair baseline),
 *   minio-js putObject (a second, labelled figure: it hashes every part with
 *   MD5 and SHA-256 and sends one part at a time), and a plain Node relay
 *   (plain-relay.ts: an HTTP/1.1 PUT hashed with BLAKE3 and sent on as that
 *   same multipart upload through undici): what a lean Node service in the
 *   middle reaches here;
 * - the upload-session path browsers use (UploadPart calls in parallel, then
 *   CompleteUploadSession);
 * - service download (the Node SDK, BLAKE3-verified), direct getObject
 *   verified with the same BLAKE3 (the baseline), and a plain Node relay
 *   (plain-relay.ts: undici GET from MinIO piped to an HTTP/1.1 response,
 *   read and hashed by the bench): what a lean Node relay reaches here;
 * - the Go client's upload and downloads (go-client-cases.ts), its process's CPU as `go_client`;
 * - SaveInline at 1, 8 and 32 concurrent against a prepared direct Postgres
 *   insert of the equivalent row, and at 8 and 32 against the same insert
 *   behind the plain relay (an HTTP/1.1 POST, BLAKE3, a pg Pool of 10), and a
 *   4 KiB Upload (size declared: kept in the database; undeclared: the blob
 *   store) against a 4 KiB putObject at 8 concurrent, each for ~3 s or
 *   20,000 calls.
 *
 * Per transfer case: the median, min and max MiB/s and the CPU-seconds per
 * GiB of each process on the path (client = this process; server, minio,
 * relay from /proc/<pid>/stat). Ratios compare medians of the same run;
 * other load on the machine moves absolute figures, far less the ratios.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Client } from "minio";
import { createArtifactClient } from "../../clients/node/src/index.ts";
import { createTestDatabase } from "../support/postgres.ts";
import { ensureMinioBinary, freePort, startMinio } from "../support/minio-server.ts";
import { NODE, ROOT, startProcess, type BenchProcess } from "./bench-processes.ts";
import { round, runRounds, type SmallFigures, type TransferFigures } from "./bench-runner.ts";
import { goClientCases } from "./go-client-cases.ts";
import { smallCases } from "./small-cases.ts";
import { sessionReadBack, transferCases } from "./transfer-cases.ts";

const args = process.argv.slice(2);
const option = (name: string, fallback: number) => {
  const at = args.indexOf(name);
  const value = at >= 0 ? Number(args[at + 1]) : fallback;
  if (!(value > 0)) throw new Error(`${name} wants a positive number`);
  return value;
};
const sizeMiB = option("--size-mib", 2048);
const rounds = option("--rounds", 3);
const timeoutMinutes = option("--timeout-min", 20 + 4 * (sizeMiB / 1024) * rounds);
const json = args.includes("--json");
const only = args.includes("--only") ? args[args.indexOf("--only") + 1]!.split(",").filter(Boolean) : undefined;
const BUCKET = "bench";

const cleanups: (() => Promise<unknown> | unknown)[] = [];
const cleanup = async () => {
  for (const step of cleanups.reverse()) await Promise.resolve(step()).catch(() => {});
};
process.once("SIGINT", () => void cleanup().then(() => process.exit(130)));
process.once("unhandledRejection", (error) => {
  console.error("benchmark failed:", error);
  void cleanup().then(() => process.exit(1));
});
const deadline = setTimeout(() => {
  console.error(`benchmark: gave up after ${timeoutMinutes} minutes`);
  void cleanup().then(() => process.exit(1));
}, timeoutMinutes * 60_000);
deadline.unref();

try {
  const minio = await startMinio(ensureMinioBinary((line) => console.log(line)));
  cleanups.push(() => minio.stop());
  const database = await createTestDatabase();
  cleanups.push(() => database.drop());
  const scratch = await createTestDatabase();
  cleanups.push(() => scratch.drop());
  const dataDir = mkdtempSync(path.join(os.tmpdir(), "artifactd-bench-"));
  cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
  const port = await freePort();
  const env = {
    ...process.env,
    DATABASE_URL: database.url,
    ARTIFACTD_S3_ENDPOINT: minio.endpoint,
    ARTIFACTD_S3_ACCESS_KEY: minio.accessKey,
    ARTIFACTD_S3_SECRET_KEY: minio.secretKey,
    ARTIFACTD_S3_BUCKET: BUCKET,
    // Direct-to-storage links (service_download_direct_mode); the relayed case asks the SDK not to use them.
    ARTIFACTD_DIRECT_DOWNLOAD_ENDPOINT: minio.endpoint,
    ARTIFACTD_LISTEN: `127.0.0.1:${port}`,
    ARTIFACTD_DATA_DIR: dataDir,
    ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0",
    // Stopped within stop()'s 10 s, so a CPU profile (BENCH_PROFILE_DIR) gets written.
    ARTIFACTD_SHUTDOWN_GRACE_MS: "2000",
    // The bench measures speed, not the per-tenant call quota (500/s by default): lifted to its maximum.
    ARTIFACTD_QUOTA_CALLS_PER_SECOND: "1000000",
    ARTIFACTD_QUOTA_BURST: "10000000",
  };
  // As `npm start` runs it (see the note on --max-semi-space-size in the README).
  // BENCH_PROFILE_DIR=<dir> writes the server's CPU profile there (open it in Chrome DevTools).
  const profile = process.env.BENCH_PROFILE_DIR ? ["--cpu-prof", `--cpu-prof-dir=${process.env.BENCH_PROFILE_DIR}`] : [];
  const server = await startProcess(
    [...profile, "--max-semi-space-size=2", ...(process.env.BENCH_SERVER_FLAGS?.split(" ").filter(Boolean) ?? []), "src/main.ts", "serve"],
    env,
    "the server",
    () =>
      fetch(`http://127.0.0.1:${port}/readyz`).then(
        (response) => response.ok,
        () => false,
      ),
  );
  cleanups.push(() => server.stop());
  const token = JSON.parse(spawnSync(NODE, ["src/main.ts", "token", "create", "--tenant", "bench", "--json"], { cwd: ROOT, env, encoding: "utf8" }).stdout) as {
    token: string;
  };
  const client = createArtifactClient({ baseUrl: `http://127.0.0.1:${port}`, token: token.token });
  cleanups.push(() => client.close());
  const endpoint = new URL(minio.endpoint);
  const minioClients = new Map<number, Client>();
  const minioClient = (partSize = 16 * 1024 * 1024) => {
    let made = minioClients.get(partSize);
    if (!made) {
      made = new Client({
        endPoint: endpoint.hostname,
        port: Number(endpoint.port),
        useSSL: false,
        accessKey: minio.accessKey,
        secretKey: minio.secretKey,
        partSize,
      });
      minioClients.set(partSize, made);
    }
    return made;
  };
  let relay: Promise<BenchProcess> | undefined;
  const relayPort = await freePort();
  const startRelay = async () => {
    relay ??= startProcess(
      ["test/bench/plain-relay.ts", String(relayPort), minio.endpoint, minio.accessKey, minio.secretKey, scratch.url],
      process.env,
      "the plain relay",
    );
    const started = await relay;
    return { url: `http://127.0.0.1:${relayPort}`, pid: started.pid };
  };
  cleanups.push(() => relay?.then((r) => r.stop()));

  const transfers = transferCases({
    sizeMiB,
    bucket: BUCKET,
    client,
    credentials: { endpoint: minio.endpoint, accessKey: minio.accessKey, secretKey: minio.secretKey },
    minioClient,
    server,
    minioPid: () => minio.pid,
    relay: startRelay,
  });
  const goContext = { sizeMiB, url: `http://127.0.0.1:${port}`, token: token.token, root: ROOT, serverPid: () => server.pid, minioPid: () => minio.pid };
  transfers.push(...goClientCases({ ...goContext, onClose: (close) => cleanups.push(close) }));
  const small = smallCases({
    bucket: BUCKET,
    client,
    minioClient: () => minioClient(),
    serverPid: server.pid,
    minioPid: () => minio.pid,
    scratchDatabaseUrl: scratch.url,
    relay: startRelay,
    onClose: (close) => cleanups.push(close),
  });
  const selected = <T extends { key: string }>(cases: T[]) => cases.filter((c) => !only || only.some((name) => c.key.startsWith(name)));
  if (only) {
    const known = [...transfers, ...small].map((c) => c.key);
    const unknown = only.filter((name) => !known.some((key) => key.startsWith(name)));
    if (unknown.length) throw new Error(`--only: no case ${unknown.join(", ")}; the cases are ${known.join(", ")}`);
  }

  console.log(`benchmark: ${sizeMiB} MiB, ${rounds} rounds, Node ${process.version}, ${os.cpus().length} cores`);
  const results = await runRounds(selected(transfers), selected(small), {
    rounds,
    limits: { seconds: 3, maxCalls: 20_000, warmupSeconds: 0.5 },
    log: (line) => console.log(line),
  });

  const figures = report(results.transfers, results.small);
  if (json) console.log(JSON.stringify(figures));
} finally {
  await cleanup();
}
// Keep-alive sockets (undici pools, minio-js's agent) would hold the process open: done is done.
process.exit(0);

function report(transfers: Record<string, TransferFigures>, small: Record<string, SmallFigures>) {
  const rate = (key: string) => transfers[key]?.median_mib_s;
  const perS = (key: string) => small[key]?.median_per_s;
  const ratio = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined ? null : round(a / b, 2));
  const orNull = <T>(value: T | undefined) => value ?? null;
  const readBack = sessionReadBack;

  const figures = {
    blob_mib: sizeMiB,
    rounds,
    // Ratios of medians, against the fair baselines.
    upload_vs_direct_multipart: ratio(rate("service_upload"), rate("direct_multipart_upload")),
    download_vs_direct_verified: ratio(rate("service_download"), rate("direct_get_verified")),
    download_direct_mode_vs_direct_verified: ratio(rate("service_download_direct_mode"), rate("direct_get_verified")),
    session_upload_vs_direct_multipart: ratio(rate("session_upload"), rate("direct_multipart_upload")),
    relay_vs_direct_verified: ratio(rate("relay_download"), rate("direct_get_verified")),
    // What the best Node service in the middle reaches against the same baselines, and the service against it.
    relay_upload_vs_direct_multipart: ratio(rate("relay_upload"), rate("direct_multipart_upload")),
    upload_vs_relay_upload: ratio(rate("service_upload"), rate("relay_upload")),
    go_upload_vs_direct_multipart: ratio(rate("go_upload"), rate("direct_multipart_upload")),
    go_download_vs_direct_verified: ratio(rate("go_download"), rate("direct_get_verified")),
    go_download_direct_mode_vs_direct_verified: ratio(rate("go_download_direct_mode"), rate("direct_get_verified")),
    go_client_cpu_s_per_gib_upload: orNull(transfers.go_upload?.cpu_s_per_gib.go_client),
    go_client_cpu_s_per_gib_download: orNull(transfers.go_download?.cpu_s_per_gib.go_client),
    node_client_cpu_s_per_gib_upload: orNull(transfers.service_upload?.cpu_s_per_gib.client),
    node_client_cpu_s_per_gib_download: orNull(transfers.service_download?.cpu_s_per_gib.client),
    server_cpu_s_per_gib_upload: orNull(transfers.service_upload?.cpu_s_per_gib.server),
    server_cpu_s_per_gib_download: orNull(transfers.service_download?.cpu_s_per_gib.server),
    server_rss_growth_mib: orNull(transfers.service_upload?.rss_growth_mib),
    // Round 1's upload is the first thing the server does (as the single run of earlier versions measured it).
    server_rss_growth_first_round_mib: orNull(transfers.service_upload?.rss_growth_runs_mib?.[0]),
    // The most any round read back (null when the session case did not run).
    session_bytes_read_back: readBack.length ? Math.max(...readBack) : null,
    inline_saves_per_s_c1: orNull(perS("inline_save_c1")),
    inline_saves_per_s_c8: orNull(perS("inline_save_c8")),
    inline_saves_per_s_c32: orNull(perS("inline_save_c32")),
    direct_pg_inserts_per_s_c1: orNull(perS("direct_pg_insert_c1")),
    direct_pg_inserts_per_s_c8: orNull(perS("direct_pg_insert_c8")),
    direct_pg_inserts_per_s_c32: orNull(perS("direct_pg_insert_c32")),
    inline_vs_direct_pg_c8: ratio(perS("inline_save_c8"), perS("direct_pg_insert_c8")),
    inline_vs_direct_pg_c32: ratio(perS("inline_save_c32"), perS("direct_pg_insert_c32")),
    inline_relay_vs_direct_pg_c8: ratio(perS("relay_inline_c8"), perS("direct_pg_insert_c8")),
    inline_relay_vs_direct_pg_c32: ratio(perS("relay_inline_c32"), perS("direct_pg_insert_c32")),
    inline_vs_inline_relay_c8: ratio(perS("inline_save_c8"), perS("relay_inline_c8")),
    inline_vs_inline_relay_c32: ratio(perS("inline_save_c32"), perS("relay_inline_c32")),
    inline_save_p50_ms_c1: orNull(small.inline_save_c1?.p50_ms),
    small_uploads_per_s_c8: orNull(perS("small_upload_c8")),
    direct_small_puts_per_s_c8: orNull(perS("direct_small_put_c8")),
    small_upload_vs_direct_put_c8: ratio(perS("small_upload_c8"), perS("direct_small_put_c8")),
    small_blob_uploads_per_s_c8: orNull(perS("small_upload_blob_c8")),
    small_blob_upload_vs_direct_put_c8: ratio(perS("small_upload_blob_c8"), perS("direct_small_put_c8")),
    // The fields earlier versions of this benchmark wrote, medians now. The
    // direct figures they compare with are minio-js's: putObject (16 MiB
    // parts) for uploads, getObject now verified with BLAKE3 for downloads.
    upload_mib_s: orNull(rate("service_upload")),
    direct_put_mib_s: orNull(rate("direct_put_object")),
    direct_multipart_mib_s: orNull(rate("direct_multipart_upload")),
    upload_vs_direct: ratio(rate("service_upload"), rate("direct_put_object")),
    download_mib_s: orNull(rate("service_download")),
    direct_get_mib_s: orNull(rate("direct_get_verified")),
    download_vs_direct: ratio(rate("service_download"), rate("direct_get_verified")),
    upload_cpu_pct: orNull(transfers.service_upload?.cpu_pct),
    download_cpu_pct: orNull(transfers.service_download?.cpu_pct),
    direct_get_cpu_pct: orNull(transfers.direct_get_verified?.cpu_pct),
    plain_relay_mib_s: orNull(rate("relay_download")),
    download_vs_plain_relay: ratio(rate("service_download"), rate("relay_download")),
    server_rss_baseline_mib: orNull(transfers.service_upload?.rss_baseline_mib),
    server_rss_peak_mib: orNull(transfers.service_upload?.rss_peak_mib),
    session_upload_mib_s: orNull(rate("session_upload")),
    session_vs_direct: ratio(rate("session_upload"), rate("direct_put_object")),
    direct_part_size_mib: 16,
    client: "@artifactd/client (connect-node gRPC, HTTP/2)",
    node: process.version,
    cases: { ...transfers, ...small },
  };

  const processes = [...new Set(Object.values(transfers).flatMap((f) => Object.keys(f.cpu_s_per_gib)))];
  if (Object.keys(transfers).length) {
    console.log(`\n| transfer (${sizeMiB} MiB) | MiB/s median | min–max | CPU s/GiB: ${processes.join(" / ")} |\n|---|---|---|---|`);
    for (const f of Object.values(transfers)) {
      const cpu = processes.map((p) => (p in f.cpu_s_per_gib ? f.cpu_s_per_gib[p]!.toFixed(2) : "–")).join(" / ");
      console.log(`| ${f.label} | ${f.median_mib_s.toFixed(0)} | ${f.min_mib_s.toFixed(0)}–${f.max_mib_s.toFixed(0)} | ${cpu} |`);
    }
  }
  const smallProcesses = [...new Set(Object.values(small).flatMap((f) => Object.keys(f.cpu_ms_per_call)))];
  if (Object.keys(small).length) {
    console.log(`\n| small artifacts | calls/s median | min–max | CPU ms/call: ${smallProcesses.join(" / ")} | p50 ms |\n|---|---|---|---|---|`);
    for (const f of Object.values(small)) {
      const cpu = smallProcesses.map((p) => (p in f.cpu_ms_per_call ? f.cpu_ms_per_call[p]!.toFixed(2) : "–")).join(" / ");
      console.log(`| ${f.label} | ${f.median_per_s} | ${f.min_per_s}–${f.max_per_s} | ${cpu} | ${f.p50_ms ?? ""} |`);
    }
  }
  const targets: [string, number | null, string, (v: number) => boolean][] = [
    ["upload_vs_direct_multipart", figures.upload_vs_direct_multipart, "≥ 0.9", (v) => v >= 0.9],
    ["server_rss_growth_mib", figures.server_rss_growth_mib, "< 128", (v) => v < 128],
    ["server_rss_growth_first_round_mib", figures.server_rss_growth_first_round_mib, "< 128", (v) => v < 128],
    ["download_vs_direct_verified", figures.download_vs_direct_verified, "≥ 0.85", (v) => v >= 0.85],
    ["server_cpu_s_per_gib_download", figures.server_cpu_s_per_gib_download, "≤ 2.5", (v) => v <= 2.5],
    ["download_direct_mode_vs_direct_verified", figures.download_direct_mode_vs_direct_verified, "≥ 0.95", (v) => v >= 0.95],
    ["session_upload_vs_direct_multipart", figures.session_upload_vs_direct_multipart, "≥ 0.85", (v) => v >= 0.85],
    ["session_bytes_read_back", figures.session_bytes_read_back, "0 in the common case", (v) => v === 0],
    ["inline_vs_direct_pg_c8", figures.inline_vs_direct_pg_c8, "≥ 0.5", (v) => v >= 0.5],
    ["inline_vs_direct_pg_c32", figures.inline_vs_direct_pg_c32, "≥ 0.5", (v) => v >= 0.5],
    ["inline_save_p50_ms_c1", figures.inline_save_p50_ms_c1, "< 2", (v) => v < 2],
    ["small_upload_vs_direct_put_c8", figures.small_upload_vs_direct_put_c8, "≥ 1", (v) => v >= 1],
  ];
  console.log("\n| figure | value | target | met |\n|---|---|---|---|");
  for (const [name, value, target, met] of targets) {
    console.log(`| ${name} | ${value ?? "–"} | ${target} | ${value === null ? "–" : met(value) ? "yes" : "no"} |`);
  }
  console.log(
    `(also: relay / direct verified ${figures.relay_vs_direct_verified ?? "–"}, upload / putObject ${figures.upload_vs_direct ?? "–"}, server CPU s/GiB upload ${figures.server_cpu_s_per_gib_upload ?? "–"})`,
  );
  console.log(
    `(Go client: upload / direct multipart ${figures.go_upload_vs_direct_multipart ?? "–"}, download / direct verified ${figures.go_download_vs_direct_verified ?? "–"}, ` +
      `client CPU s/GiB up / down: Go ${figures.go_client_cpu_s_per_gib_upload ?? "–"} / ${figures.go_client_cpu_s_per_gib_download ?? "–"}, ` +
      `Node ${figures.node_client_cpu_s_per_gib_upload ?? "–"} / ${figures.node_client_cpu_s_per_gib_download ?? "–"})`,
  );
  const pair = (c8: number | null, c32: number | null) => `${c8 ?? "–"} / ${c32 ?? "–"}`;
  console.log(
    `(plain relay: relay upload / direct multipart ${figures.relay_upload_vs_direct_multipart ?? "–"}, upload / relay upload ${figures.upload_vs_relay_upload ?? "–"}, ` +
      `inline relay / direct pg c8 / c32 ${pair(figures.inline_relay_vs_direct_pg_c8, figures.inline_relay_vs_direct_pg_c32)}, ` +
      `inline / inline relay c8 / c32 ${pair(figures.inline_vs_inline_relay_c8, figures.inline_vs_inline_relay_c32)})`,
  );
  return figures;
}
