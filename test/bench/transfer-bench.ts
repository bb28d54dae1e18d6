/**
 * Transfer benchmark: `npm run bench` (`-- --size-mib N`, default 1024;
 * `-- --json` ends with one JSON line holding every figure).
 *
 * In one run, against one MinIO (built and started like the tests do) and a
 * fresh Postgres database, it compares
 * - upload of one large blob through the service (the @artifactd/client
 *   writer: gRPC client streaming, BLAKE3 on the server, S3 multipart behind)
 *   with minio-js `putObject` straight to MinIO, size known and part size
 *   tuned (the best of 16 and 64 MiB parts);
 * - download through the service (BLAKE3-verified by the client, as users
 *   get it) with minio-js `getObject`;
 * - the upload-session path browsers use (CreateUploadSession, UploadPart in
 *   parallel, CompleteUploadSession — which reads the assembled object back
 *   once to compute its BLAKE3) with both;
 * - the server's resident memory: it runs as a separate process, sampled
 *   every 50 ms from /proc during the uploads;
 * - a plain relay (plain-relay.ts: a Node process piping the MinIO object to
 *   an HTTP/1.1 response, nothing else), read and BLAKE3-hashed by the bench
 *   as the client does: the most any download through a Node process can
 *   reach here, the yardstick for the service's own download figure.
 * Content is generated in memory (no disk in the path) and differs per MiB.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import http from "node:http";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { Client } from "minio";
import { createArtifactClient } from "../../clients/node/src/index.ts";
import { createBlake3 } from "../../src/blake3.ts";
import { createTestDatabase } from "../support/postgres.ts";
import { ensureMinioBinary, freePort, startMinio } from "../support/minio-server.ts";

const args = process.argv.slice(2);
const option = (name: string, fallback: number) => {
  const at = args.indexOf(name);
  return at >= 0 ? Number(args[at + 1]) : fallback;
};
const sizeMiB = option("--size-mib", 1024);
const json = args.includes("--json");
const MiB = 1024 * 1024;
const size = sizeMiB * MiB;
const ROOT = path.resolve(import.meta.dirname, "../..");
const NODE = path.join(ROOT, "node_modules/.bin/node");

/** sizeMiB chunks of 1 MiB, each a different window into 16 MiB of random bytes. */
const pool = randomBytes(17 * MiB);
function* chunks(): Generator<Buffer> {
  for (let i = 0; i < sizeMiB; i++) yield pool.subarray(((i * 7919) % 1024) * 16384, ((i * 7919) % 1024) * 16384 + MiB);
}

const cleanups: (() => Promise<unknown> | unknown)[] = [];
/** Child processes being stopped on purpose (their exit is not reported as a failure). Declared before the top-level code that uses it. */
const stopping = new WeakSet<ChildProcess>();
const cleanup = async () => {
  for (const step of cleanups.reverse()) await Promise.resolve(step()).catch(() => {});
};
process.once("SIGINT", () => void cleanup().then(() => process.exit(130)));
process.once("unhandledRejection", (error) => {
  console.error("benchmark failed:", error);
  void cleanup().then(() => process.exit(1));
});
const deadline = setTimeout(() => {
  console.error("benchmark: gave up after 20 minutes");
  void cleanup().then(() => process.exit(1));
}, 20 * 60_000);
deadline.unref();

try {
  const minio = await startMinio(ensureMinioBinary((line) => console.log(line)));
  cleanups.push(() => minio.stop());
  const database = await createTestDatabase();
  cleanups.push(() => database.drop());
  const dataDir = mkdtempSync(path.join(os.tmpdir(), "artifactd-bench-"));
  cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
  const port = await freePort();
  const env = {
    ...process.env,
    DATABASE_URL: database.url,
    ARTIFACTD_S3_ENDPOINT: minio.endpoint,
    ARTIFACTD_S3_ACCESS_KEY: minio.accessKey,
    ARTIFACTD_S3_SECRET_KEY: minio.secretKey,
    ARTIFACTD_S3_BUCKET: "bench",
    ARTIFACTD_LISTEN: `127.0.0.1:${port}`,
    ARTIFACTD_DATA_DIR: dataDir,
    ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0",
    // Stopped within stopProcess's 10 s, so a CPU profile (BENCH_PROFILE_DIR) gets written.
    ARTIFACTD_SHUTDOWN_GRACE_MS: "2000",
  };
  const server = await startServer(env);
  cleanups.push(() => stopProcess(server));
  const token = JSON.parse(spawnSync(NODE, ["src/main.ts", "token", "create", "--tenant", "bench", "--json"], { cwd: ROOT, env, encoding: "utf8" }).stdout) as {
    token: string;
  };
  const client = createArtifactClient({ baseUrl: `http://127.0.0.1:${port}`, token: token.token });
  cleanups.push(() => client.close());
  const endpoint = new URL(minio.endpoint);
  const direct = (partSize: number) =>
    new Client({ endPoint: endpoint.hostname, port: Number(endpoint.port), useSSL: false, accessKey: minio.accessKey, secretKey: minio.secretKey, partSize });

  console.log(`benchmark: ${sizeMiB} MiB, Node ${process.version}, ${os.cpus().length} cores`);

  // Direct to MinIO, size known: the better of two part sizes.
  let directPut = { mibS: 0, partSize: 0 };
  for (const partSize of [16 * MiB, 64 * MiB]) {
    const started = performance.now();
    await direct(partSize).putObject("bench", `direct-${partSize}`, Readable.from(chunks()), size);
    const mibS = sizeMiB / ((performance.now() - started) / 1000);
    console.log(`  direct putObject, ${partSize / MiB} MiB parts: ${mibS.toFixed(0)} MiB/s`);
    if (mibS > directPut.mibS) directPut = { mibS, partSize };
  }

  // Through the service, while sampling its memory.
  const baselineRss = rssMiB(server.pid);
  let peakRss = baselineRss;
  const sampler = setInterval(() => (peakRss = Math.max(peakRss, rssMiB(server.pid))), 50);
  const uploadMeter = cpuMeter({ server: server.pid, minio: minio.pid });
  let started = performance.now();
  const uploaded = await client.uploadStream(chunks(), { kind: "bench", name: "big.bin" }, { expectedSize: size });
  const uploadMibS = sizeMiB / ((performance.now() - started) / 1000);
  const uploadCpu = uploadMeter();
  clearInterval(sampler);
  const id = uploaded.artifact!.id;
  console.log(
    `  service upload: ${uploadMibS.toFixed(0)} MiB/s (server RSS ${baselineRss.toFixed(0)} → peak ${peakRss.toFixed(0)} MiB; ` +
      `CPU: server ${uploadCpu.server} %, client ${uploadCpu.client} %, MinIO ${uploadCpu.minio} %)`,
  );

  // The session path (what browsers use): unary UploadPart calls, parts in parallel.
  const sessionPartSize = 8 * MiB;
  const sessionParallel = 4;
  const sessionRss = rssMiB(server.pid);
  let sessionPeakRss = sessionRss;
  const sessionSampler = setInterval(() => (sessionPeakRss = Math.max(sessionPeakRss, rssMiB(server.pid))), 50);
  started = performance.now();
  const { session } = await client.rpc.createUploadSession({
    spec: { kind: "bench", name: "big-session.bin" },
    expectedSize: BigInt(size),
    partSize: BigInt(sessionPartSize),
  });
  const source = chunks();
  let nextPart = 1;
  const takePart = (): { number: number; data: Buffer } | undefined => {
    const pieces: Buffer[] = [];
    for (let i = 0; i < sessionPartSize / MiB; i++) {
      const next = source.next();
      if (next.done) break;
      pieces.push(next.value);
    }
    return pieces.length ? { number: nextPart++, data: Buffer.concat(pieces) } : undefined;
  };
  await Promise.all(
    Array.from({ length: sessionParallel }, async () => {
      for (let part = takePart(); part; part = takePart()) {
        await client.rpc.uploadPart({ sessionId: session!.sessionId, partNumber: part.number, data: part.data });
      }
    }),
  );
  await client.rpc.completeUploadSession({ sessionId: session!.sessionId }, { timeoutMs: 600_000 });
  const sessionMibS = sizeMiB / ((performance.now() - started) / 1000);
  clearInterval(sessionSampler);
  console.log(
    `  session upload (${sessionParallel} × ${sessionPartSize / MiB} MiB parts, complete included): ${sessionMibS.toFixed(0)} MiB/s (server RSS peak ${sessionPeakRss.toFixed(0)} MiB)`,
  );

  const pids = { server: server.pid, minio: minio.pid };
  let meter = cpuMeter(pids);
  started = performance.now();
  let received = 0;
  for await (const chunk of (await client.download(id)).content) received += chunk.byteLength;
  const downloadMibS = sizeMiB / ((performance.now() - started) / 1000);
  const downloadCpu = meter();
  if (received !== size) throw new Error(`downloaded ${received} bytes, expected ${size}`);
  console.log(
    `  service download (verified): ${downloadMibS.toFixed(0)} MiB/s (CPU: server ${downloadCpu.server} %, client ${downloadCpu.client} %, MinIO ${downloadCpu.minio} %)`,
  );

  meter = cpuMeter(pids);
  started = performance.now();
  let directReceived = 0;
  for await (const chunk of (await direct(directPut.partSize).getObject("bench", `direct-${directPut.partSize}`)) as AsyncIterable<Buffer>)
    directReceived += chunk.byteLength;
  const directGetMibS = sizeMiB / ((performance.now() - started) / 1000);
  const directGetCpu = meter();
  if (directReceived !== size) throw new Error(`direct get returned ${directReceived} bytes`);
  console.log(`  direct getObject: ${directGetMibS.toFixed(0)} MiB/s (CPU: client ${directGetCpu.client} %, MinIO ${directGetCpu.minio} %)`);

  const relayPort = await freePort();
  const relay = await startProcess(["test/bench/plain-relay.ts", String(relayPort), minio.endpoint, minio.accessKey, minio.secretKey], process.env);
  cleanups.push(() => stopProcess(relay));
  started = performance.now();
  const relayReceived = await new Promise<number>((resolve, reject) => {
    http
      .get(`http://127.0.0.1:${relayPort}/bench/direct-${directPut.partSize}`, (response) => {
        const hasher = createBlake3();
        let n = 0;
        response.on("data", (chunk: Buffer) => {
          hasher.update(chunk);
          n += chunk.byteLength;
        });
        response.on("end", () => (hasher.digestHex(), resolve(n)));
        response.on("error", reject);
      })
      .on("error", reject);
  });
  const relayMibS = sizeMiB / ((performance.now() - started) / 1000);
  if (relayReceived !== size) throw new Error(`the plain relay returned ${relayReceived} bytes`);
  console.log(`  plain Node relay (HTTP/1.1 pipe, client hashes): ${relayMibS.toFixed(0)} MiB/s`);

  const figures = {
    blob_mib: sizeMiB,
    upload_mib_s: round(uploadMibS),
    direct_put_mib_s: round(directPut.mibS),
    upload_vs_direct: round(uploadMibS / directPut.mibS, 2),
    download_mib_s: round(downloadMibS),
    direct_get_mib_s: round(directGetMibS),
    download_vs_direct: round(downloadMibS / directGetMibS, 2),
    upload_cpu_pct: uploadCpu,
    download_cpu_pct: downloadCpu,
    direct_get_cpu_pct: directGetCpu,
    plain_relay_mib_s: round(relayMibS),
    download_vs_plain_relay: round(downloadMibS / relayMibS, 2),
    server_rss_baseline_mib: round(baselineRss),
    server_rss_peak_mib: round(peakRss),
    server_rss_growth_mib: round(peakRss - baselineRss),
    session_upload_mib_s: round(sessionMibS),
    session_vs_direct: round(sessionMibS / directPut.mibS, 2),
    session_rss_growth_mib: round(sessionPeakRss - sessionRss),
    direct_part_size_mib: directPut.partSize / MiB,
    client: "@artifactd/client (connect-node gRPC, HTTP/2)",
    node: process.version,
  };
  console.log("\n| figure | value |\n|---|---|");
  for (const [key, value] of Object.entries(figures)) console.log(`| ${key} | ${typeof value === "object" ? JSON.stringify(value) : value} |`);
  if (json) console.log(JSON.stringify(figures));
} finally {
  await cleanup();
}
// Keep-alive sockets (the relay's HTTP agent, minio-js's) would hold the process open: done is done.
process.exit(0);

function round(value: number, digits = 1): number {
  return Number(value.toFixed(digits));
}

/** CPU seconds (user + system) a process has used so far, from /proc. */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/**
 * Where the CPU went during one phase, as a share of one core for each of the
 * three processes (the bench is the client): on two cores, 200 % is all there is.
 */
function cpuMeter(pids: { server: number; minio: number | undefined }) {
  const start = { at: performance.now(), server: cpuSeconds(pids.server), minio: pids.minio ? cpuSeconds(pids.minio) : 0, client: process.cpuUsage() };
  return () => {
    const seconds = (performance.now() - start.at) / 1000;
    const client = process.cpuUsage(start.client);
    const share = (cpu: number) => Math.round((100 * cpu) / seconds);
    return {
      server: share(cpuSeconds(pids.server) - start.server),
      client: share((client.user + client.system) / 1e6),
      minio: pids.minio ? share(cpuSeconds(pids.minio) - start.minio) : 0,
    };
  };
}

function rssMiB(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return match ? Number(match[1]) / 1024 : 0;
}

function startServer(env: NodeJS.ProcessEnv): Promise<ChildProcess & { pid: number }> {
  // As `npm start` runs it (see the note on --max-semi-space-size in the README).
  // BENCH_PROFILE_DIR=<dir> writes the server's CPU profile there (open it in Chrome DevTools).
  const profile = process.env.BENCH_PROFILE_DIR ? ["--cpu-prof", `--cpu-prof-dir=${process.env.BENCH_PROFILE_DIR}`] : [];
  return startProcess([...profile, "--max-semi-space-size=2", "src/main.ts", "serve"], env);
}

/** Starts a Node program of the repository and waits for it to print "serving". */
async function startProcess(args: string[], env: NodeJS.ProcessEnv): Promise<ChildProcess & { pid: number }> {
  const child = spawn(NODE, args, { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout!.on("data", (d: Buffer) => (output += d));
  child.stderr!.on("data", (d: Buffer) => (output += d));
  for (let i = 0; i < 300 && !output.includes("serving"); i++) {
    if (child.exitCode !== null) throw new Error(`${args.join(" ")} exited: ${output}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  if (!output.includes("serving")) throw new Error(`${args.join(" ")} did not start: ${output}`);
  child.once("exit", (code, signal) => {
    if (!stopping.has(child))
      console.error(`benchmark: ${args.at(-1) === "serve" ? "the server" : args[0]} exited (${code ?? signal}):\n${output.slice(-4000)}`);
  });
  return child as ChildProcess & { pid: number };
}

async function stopProcess(child: ChildProcess): Promise<void> {
  stopping.add(child);
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  child.kill("SIGTERM");
  await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
  if (child.exitCode === null) child.kill("SIGKILL");
}
