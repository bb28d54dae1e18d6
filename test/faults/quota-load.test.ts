import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, expect, inject, it } from "vitest";
import { openMetadataStore } from "../../src/adapters/metadata/open-metadata-store.ts";
import { blake3Hex } from "../../src/blake3.ts";
import { ArtifactService, type UploadRequestSchema } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import type { MetadataStore } from "../../src/ports/metadata-store.ts";
import { createApiToken } from "../../src/service/api-tokens.ts";
import { minioClient } from "../support/minio-client.ts";
import { ROOT, startServiceOnTestDatabase, type ServiceProcess } from "../support/service-process.ts";
import { describeOn } from "../support/test-backends.ts";

const MiB = 1024 * 1024;
const TENANTS = 10;
const TRANSFERS = 100;
const CACHE_MS = 500;
const SEED_BYTES = 2 * MiB;
/** Tenant 0 may store this much: its seed leaves no room for another upload (each is over 1 MiB). */
const STORED_CAP_BYTES = 3 * MiB;
/** The server's RSS may not pass this during the run (it idles near 150 MiB; each transfer holds a few MiB). */
const RSS_BOUND_BYTES = 768 * MiB;
type UploadInit = MessageInitShape<typeof UploadRequestSchema>;
type Success = { tenant: number; kind: "upload" | "download"; ok: true; name?: string; id?: string; digest: string };
type Outcome = Success | { tenant: number; kind: "upload" | "download"; ok: false; code: string; quota: string | null; message: string };

/**
 * Many tenants pushing past tight quotas at once, against the service as its
 * own process on Postgres and MinIO: 10 tenants may each run 2 uploads and
 * 2 downloads at a time; tenant 0 has a stored-bytes cap it is already near,
 * tenant 1 a low calls-per-second quota set with `artifactd tenant
 * set-quota` while the server runs. 100 transfers of a few MiB start
 * together. Every call either succeeds, with its content verified, or is
 * refused with RESOURCE_EXHAUSTED by a quota that tenant has; a refused
 * upload records nothing and leaves nothing stored; and the server's
 * memory stays bounded.
 */
describeOn("postgres+minio")("quotas under load", () => {
  let service: ServiceProcess;
  let metadata: MetadataStore;
  let dropDatabase = async () => {};
  let workDir: string;
  const bucketName = `q-${Math.random().toString(36).slice(2, 12)}`;
  const minioSettings = inject("minio");
  let bucket: ReturnType<typeof minioClient>;

  beforeAll(async () => {
    bucket = minioClient();
    workDir = mkdtempSync(path.join(os.tmpdir(), "artifactd-quota-load-"));
    const logDir = path.join(ROOT, ".artifactd", "quota-load");
    rmSync(logDir, { recursive: true, force: true });
    mkdirSync(logDir, { recursive: true });
    let databaseUrl: string;
    ({ service, databaseUrl, dropDatabase } = await startServiceOnTestDatabase({
      logFile: path.join(logDir, "service.log"),
      env: {
        ARTIFACTD_S3_ENDPOINT: minioSettings.endpoint,
        ARTIFACTD_S3_ACCESS_KEY: minioSettings.accessKey,
        ARTIFACTD_S3_SECRET_KEY: minioSettings.secretKey,
        ARTIFACTD_S3_BUCKET: bucketName,
        ARTIFACTD_DATA_DIR: path.join(workDir, "service"),
        ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0",
        ARTIFACTD_QUOTA_CONCURRENT_UPLOADS: "2",
        ARTIFACTD_QUOTA_CONCURRENT_DOWNLOADS: "2",
        ARTIFACTD_QUOTA_CACHE_MS: String(CACHE_MS),
      },
    }));
    metadata = await openMetadataStore({ databaseUrl, pgliteDir: path.join(workDir, "unused"), poolSize: 2, migrate: false });
  });
  afterAll(async () => {
    await service?.stop(5_000).catch(() => {});
    await metadata?.close();
    await dropDatabase();
    rmSync(workDir, { recursive: true, force: true });
  });

  const clientFor = (token: string): Client<typeof ArtifactService> =>
    createClient(
      ArtifactService,
      createGrpcTransport({
        baseUrl: service.url,
        interceptors: [(next) => (request) => (request.header.set("authorization", `Bearer ${token}`), next(request))],
      }),
    );
  const upload = async (client: Client<typeof ArtifactService>, name: string, data: Buffer, declare: boolean) => {
    const { artifact } = await client.upload(
      (async function* (): AsyncGenerator<UploadInit> {
        yield { message: { case: "header", value: { spec: { kind: "load", name }, ...(declare ? { expectedSize: BigInt(data.length) } : {}) } } };
        for (let at = 0; at < data.length; at += 256 * 1024) yield { message: { case: "chunk", value: data.subarray(at, at + 256 * 1024) } };
      })(),
      { signal: AbortSignal.timeout(30_000) },
    );
    return artifact!;
  };
  const download = async (client: Client<typeof ArtifactService>, id: string) => {
    const parts: Uint8Array[] = [];
    for await (const r of client.download({ id }, { signal: AbortSignal.timeout(30_000) })) if (r.message.case === "chunk") parts.push(r.message.value);
    return Buffer.concat(parts);
  };

  it("refuses only what exceeds each tenant's share, with RESOURCE_EXHAUSTED; everything else succeeds, verified; memory stays bounded", async () => {
    // Tenants, their seed artifacts (what the downloads read), and tenant 0's stored-bytes cap.
    const tenants = Array.from({ length: TENANTS }, (_, tenant) => tenant);
    const clients = await Promise.all(
      tenants.map(async (tenant) => clientFor((await createApiToken(metadata, `load-${tenant}`, "load", { scope: "admin" })).token)),
    );
    const seeds = await Promise.all(
      tenants.map(async (tenant) => {
        const data = randomBytes(SEED_BYTES);
        const artifact = await upload(clients[tenant]!, `seed-${tenant}`, data, true);
        return { id: artifact.id, digest: blake3Hex(data) };
      }),
    );
    await metadata.tenantQuotas.set("load-0", { storedBytes: STORED_CAP_BYTES });
    // Tenant 1's low rate through the command, as an operator would set it on a running server.
    const command = await service.runCommand(["tenant", "set-quota", "load-1", "--calls-per-second", "5", "--burst", "5"]);
    expect(command.code, command.stderr).toBe(0);
    // The server picks the overrides up within its cache time; tenant 1's bucket refills to 5 meanwhile.
    await new Promise((r) => setTimeout(r, CACHE_MS + 1_200));

    const rss: number[] = [];
    const sampleRss = () => {
      const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${service.pid}/status`, "utf8"));
      if (match) rss.push(Number(match[1]) * 1024);
    };
    sampleRss();
    const sampler = setInterval(sampleRss, 50);
    const started = performance.now();
    const sent = new Map<string, string>();
    const outcomes = await Promise.all(
      Array.from({ length: TRANSFERS }, async (_, i): Promise<Outcome> => {
        const tenant = i % TENANTS;
        const kind = Math.floor(i / TENANTS) % 2 === 0 ? "upload" : "download";
        try {
          if (kind === "upload") {
            const name = `load-${tenant}-${i}`;
            const data = randomBytes(MiB + 1 + Math.floor(Math.random() * 2 * MiB));
            sent.set(name, blake3Hex(data));
            const artifact = await upload(clients[tenant]!, name, data, i % 4 === 0);
            return { tenant, kind, ok: true, name, id: artifact.id, digest: artifact.blake3 };
          }
          const data = await download(clients[tenant]!, seeds[tenant]!.id);
          return { tenant, kind, ok: true, digest: blake3Hex(data) };
        } catch (error) {
          const e = ConnectError.from(error);
          return { tenant, kind, ok: false, code: Code[e.code], quota: e.metadata.get("quota-exceeded"), message: e.rawMessage };
        }
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    clearInterval(sampler);
    sampleRss();

    const byOutcome: Record<string, number> = {};
    for (const o of outcomes) {
      const key = `${o.kind} ${o.ok ? "ok" : `${o.code} (${o.quota})`}`;
      byOutcome[key] = (byOutcome[key] ?? 0) + 1;
    }
    const peakRss = Math.max(...rss);
    console.log(
      `quota load: ${TRANSFERS} transfers over ${TENANTS} tenants in ${seconds.toFixed(2)} s; ` +
        `calls by outcome ${JSON.stringify(byOutcome)}; server RSS before ${(rss[0]! / MiB).toFixed(0)} MiB, peak ${(peakRss / MiB).toFixed(0)} MiB (${rss.length} samples)`,
    );

    // Only quota refusals, and only by quotas the tenant has: every tenant its two concurrency quotas, tenant 0 also
    // its stored bytes, tenant 1 its calls per second.
    const allowed = (tenant: number) => [
      "concurrent-uploads",
      "concurrent-downloads",
      ...(tenant === 0 ? ["stored-bytes"] : []),
      ...(tenant === 1 ? ["calls-per-second"] : []),
    ];
    for (const o of outcomes) {
      if (o.ok) continue;
      expect(o.code, o.message).toBe("ResourceExhausted");
      expect(allowed(o.tenant), o.message).toContain(o.quota);
    }
    // Each share was actually exceeded, and each tenant also got its share done.
    const refusedBy = (quota: string) => outcomes.filter((o) => !o.ok && o.quota === quota).length;
    expect(refusedBy("concurrent-uploads")).toBeGreaterThan(0);
    expect(refusedBy("concurrent-downloads")).toBeGreaterThan(0);
    expect(refusedBy("stored-bytes")).toBeGreaterThan(0);
    // Tenant 1's 10 calls against a bucket of 5 (refilled at 5 per second while the calls go out).
    expect(refusedBy("calls-per-second")).toBeGreaterThanOrEqual(3);
    for (let tenant = 0; tenant < TENANTS; tenant++) {
      expect(
        outcomes.some((o) => o.tenant === tenant && o.ok && o.kind === "download"),
        `tenant ${tenant} downloaded`,
      ).toBe(true);
      if (tenant !== 0)
        expect(
          outcomes.some((o) => o.tenant === tenant && o.ok && o.kind === "upload"),
          `tenant ${tenant} uploaded`,
        ).toBe(true);
    }
    expect(outcomes.some((o) => o.tenant === 0 && o.ok && o.kind === "upload")).toBe(false);

    // Every success carries the content sent (uploads) or stored (downloads).
    for (const o of outcomes) {
      if (!o.ok) continue;
      expect(o.digest).toBe(o.kind === "upload" ? sent.get(o.name!) : seeds[o.tenant]!.digest);
    }
    // Each tenant holds its seed and its acknowledged uploads, nothing of a refused one; read back and verified.
    const counts = await Promise.all(
      tenants.map(async (tenant) => {
        const acked = outcomes.filter((o): o is Success => o.tenant === tenant && o.ok && o.kind === "upload");
        const listed = await metadata.listArtifacts(`load-${tenant}`, {}, { pageSize: 100, pageToken: "" });
        expect(listed.items.map((a) => a.name).sort()).toEqual([`seed-${tenant}`, ...acked.map((o) => o.name!)].sort());
        if (tenant === 1) await new Promise((r) => setTimeout(r, 1_200)); // its bucket refills to 5, enough for its (at most 5) uploads
        for (const o of acked) {
          expect(blake3Hex(await download(clients[tenant]!, o.id!))).toBe(sent.get(o.name!));
        }
        return 1 + acked.length;
      }),
    );
    const stored = counts.reduce((a, b) => a + b, 0);
    // No storage left by refused uploads: one object per stored artifact, no unfinished multipart upload.
    const objects: string[] = [];
    for await (const o of bucket.listObjectsV2(bucketName, "", true)) objects.push((o as { name: string }).name);
    const unfinished: string[] = [];
    for await (const u of bucket.listIncompleteUploads(bucketName, "", true)) unfinished.push((u as { key: string }).key);
    expect({ objects: objects.length, unfinished: unfinished.length }).toEqual({ objects: stored, unfinished: 0 });

    expect(peakRss).toBeLessThan(RSS_BOUND_BYTES);
    expect(seconds).toBeLessThan(30);
  }, 90_000);
});
