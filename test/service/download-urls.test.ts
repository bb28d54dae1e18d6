import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { Kysely, Migrator, PostgresDialect } from "kysely";
import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { spawn } from "node:child_process";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readUrlSigningKeyFile, loadOrCreateUrlSigningKeyFile } from "../../src/adapters/keys/url-signing-key-file.ts";
import { migrationProvider } from "../../src/adapters/metadata/migrations/index.ts";
import { startApp } from "../../src/app.ts";
import { blake3Hex } from "../../src/blake3.ts";
import { readConfig } from "../../src/config.ts";
import type { UploadRequestSchema } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import { createApiToken } from "../../src/service/api-tokens.ts";
import { createUrlSigner } from "../../src/service/download-urls.ts";
import { parseRange } from "../../src/transport/download-url-route.ts";
import { formatUrlSigningKeys, newUrlSigningKey, parseUrlSigningKeys } from "../../src/url-signing-keys.ts";
import { createTestDatabase } from "../support/postgres.ts";
import { BACKENDS, startTestApp, type TestApp } from "../support/test-app.ts";
import { createLogger } from "../../src/observability/logger.ts";
import { expectCode } from "../support/expect-code.ts";
import { describeOn } from "../support/test-backends.ts";

type UploadInit = MessageInitShape<typeof UploadRequestSchema>;

describe("Range header parsing", () => {
  it("handles the single-range forms", () => {
    expect(parseRange("bytes=0-9", 100)).toEqual({ offset: 0, length: 10 });
    expect(parseRange("bytes=90-", 100)).toEqual({ offset: 90, length: 10 });
    expect(parseRange("bytes=-5", 100)).toEqual({ offset: 95, length: 5 });
    expect(parseRange("bytes=-500", 100)).toEqual({ offset: 0, length: 100 });
    expect(parseRange("bytes=50-5000", 100)).toEqual({ offset: 50, length: 50 });
    expect(parseRange("bytes=100-", 100)).toBe("unsatisfiable");
    expect(parseRange("bytes=0-0", 0)).toBe("unsatisfiable");
    expect(parseRange("bytes=5-1", 100)).toBeUndefined();
    expect(parseRange("bytes=0-1,5-6", 100)).toBeUndefined();
    expect(parseRange("items=0-1", 100)).toBeUndefined();
  });
});

describe.each(BACKENDS)("signed download URLs on %s", (backend) => {
  let t: TestApp;
  let data: Buffer;
  let id: string;
  beforeAll(async () => {
    t = await startTestApp(backend);
    data = randomBytes(300_000);
    async function* messages(): AsyncIterable<UploadInit> {
      yield { message: { case: "header", value: { spec: { kind: "report", name: "résumé <script>.html", mimeType: "text/html" } } } };
      yield { message: { case: "chunk", value: data } };
    }
    id = (await t.client().upload(messages())).artifact!.id;
  });
  afterAll(async () => {
    await t?.close();
  });

  it("downloads the content as an attachment, valid 15 minutes by default", async () => {
    const before = Date.now();
    const { url, expiresAt } = await t.client().createDownloadUrl({ id });
    const expiry = Number(expiresAt!.seconds) * 1000;
    expect(expiry).toBeGreaterThanOrEqual(before + 899_000);
    expect(expiry).toBeLessThanOrEqual(Date.now() + 901_000);
    expect(url.startsWith(t.url)).toBe(true);
    const response = await fetch(url);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-length")).toBe(String(data.length));
    expect(response.headers.get("etag")).toBe(`"${blake3Hex(data)}"`);
    expect(response.headers.get("content-disposition")).toMatch(
      /^attachment; filename="r_sum_ _script_.html"; filename\*=UTF-8''r%C3%A9sum%C3%A9%20%3Cscript%3E\.html$/,
    );
    expect(response.headers.get("x-content-type-options")).toBe("nosniff");
    expect(response.headers.get("content-security-policy")).toContain("sandbox");
    expect(Buffer.from(await response.arrayBuffer()).equals(data)).toBe(true);
    const head = await fetch(url, { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(head.headers.get("content-length")).toBe(String(data.length));
  });

  it("serves byte ranges", async () => {
    const { url } = await t.client().createDownloadUrl({ id, ttlSeconds: 60 });
    const partial = await fetch(url, { headers: { Range: "bytes=1000-1999" } });
    expect(partial.status).toBe(206);
    expect(partial.headers.get("content-range")).toBe(`bytes 1000-1999/${data.length}`);
    expect(Buffer.from(await partial.arrayBuffer()).equals(data.subarray(1000, 2000))).toBe(true);
    const suffix = await fetch(url, { headers: { Range: "bytes=-10" } });
    expect(Buffer.from(await suffix.arrayBuffer()).equals(data.subarray(-10))).toBe(true);
    const beyond = await fetch(url, { headers: { Range: `bytes=${data.length}-` } });
    expect(beyond.status).toBe(416);
    expect(beyond.headers.get("content-range")).toBe(`bytes */${data.length}`);
    await beyond.arrayBuffer();
    const cached = await fetch(url, { headers: { "If-None-Match": `"${blake3Hex(data)}"` } });
    expect(cached.status).toBe(304);
  });

  it("refuses tampered, expired and deleted links with a bare 403", async () => {
    const { url } = await t.client().createDownloadUrl({ id, ttlSeconds: 1 });
    const parsed = new URL(url);
    const tamperedSig = new URL(url);
    tamperedSig.searchParams.set("sig", Buffer.alloc(32, 7).toString("base64url"));
    const laterExpiry = new URL(url);
    laterExpiry.searchParams.set("expires", String(Number(parsed.searchParams.get("expires")) + 3600));
    const otherTenant = new URL(url.replace("/alpha/", "/beta/"));
    for (const bad of [tamperedSig, laterExpiry, otherTenant]) {
      const response = await fetch(bad);
      expect(response.status, bad.toString()).toBe(403);
      expect(await response.text()).toBe("forbidden\n");
    }
    await new Promise((r) => setTimeout(r, 2100));
    const expired = await fetch(url);
    expect(expired.status).toBe(403);
    await expired.text();

    const { artifact } = await t.client().saveInline({ spec: { kind: "note" }, content: { case: "text", value: "soon gone" } });
    const { url: doomed } = await t.client().createDownloadUrl({ id: artifact!.id });
    expect(await (await fetch(doomed)).text()).toBe("soon gone");
    await t.client().deleteArtifact({ id: artifact!.id });
    const gone = await fetch(doomed);
    expect(gone.status).toBe(403);
    await gone.text();
    await expectCode(t.client().createDownloadUrl({ id: artifact!.id }), Code.NotFound, /deleted/);
  });

  it("validates the request", async () => {
    await expectCode(t.client().createDownloadUrl({ id, ttlSeconds: 8 * 86_400 }), Code.InvalidArgument, /ttl_seconds/);
    await expectCode(t.client().createDownloadUrl({ id: "art_00000000000000000000000000" }), Code.NotFound);
    await expectCode(t.client(t.tokens.beta).createDownloadUrl({ id }), Code.NotFound);
    const notFound = await fetch(`${t.url}/nothing-here`);
    expect(notFound.status).toBe(404);
    await notFound.text();
  });
});

/** The request target (path and query) of a link, as a client sends it. */
function targetOf(url: string): string {
  return url.slice(new URL(url).origin.length);
}

/** One request with the target exactly as given: fetch would normalise it first. */
function getRaw(baseUrl: string, target: string): Promise<{ status: number; body: string }> {
  const { hostname, port } = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const request = http.get({ host: hostname, port, path: target, agent: false }, (response) => {
      let body = "";
      response.setEncoding("latin1");
      response.on("data", (chunk: string) => (body += chunk));
      response.on("end", () => resolve({ status: response.statusCode!, body }));
      response.on("error", reject);
    });
    request.on("error", reject);
  });
}

/**
 * What a forgiving reader makes of a link: the path decoded, the first of
 * each parameter, expires through Number(), sig through Node's base64url
 * decoder. Two targets that read the same here are one link spelled twice.
 */
function lenientReading(target: string) {
  const [pathname, query] = target.split("?") as [string, string];
  const params = new URLSearchParams(query);
  return {
    path: decodeURIComponent(pathname),
    expires: Number(params.get("expires")),
    tokenId: params.get("token_id"),
    keyId: params.get("key_id"),
    sig: Buffer.from(params.get("sig") ?? "", "base64url").toString("hex"),
  };
}

const BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** How long token lookups may be cached: a revoked token's links must answer 403 within it. */
const TOKEN_CACHE_MS = 500;

/** The response to `target` once it stops being `status`, polling for up to `withinMs`. */
async function onceNot(baseUrl: string, target: string, status: number, withinMs: number): Promise<{ status: number; body: string }> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    // A GET open when the server finds the token revoked is cut (socket hang up, ECONNRESET): ask again.
    const response = await getRaw(baseUrl, target).catch((error: NodeJS.ErrnoException) => {
      if (error.code === "ECONNRESET" && Date.now() <= deadline) return undefined;
      throw error;
    });
    if (response === undefined) continue;
    if (response.status !== status || Date.now() > deadline) return response;
    await sleep(50);
  }
}

describe.each(BACKENDS)("what a download link is bound to, on %s", (backend) => {
  let t: TestApp;
  let id: string;
  beforeAll(async () => {
    t = await startTestApp(backend, { ARTIFACTD_TOKEN_CACHE_MS: String(TOKEN_CACHE_MS) });
    id = (await t.client().saveInline({ spec: { kind: "note" }, content: { case: "text", value: "bound" } })).artifact!.id;
  });
  afterAll(async () => {
    await t?.close();
  });

  it("names its tenant, artifact, expiry, token and key, signed over all of them", async () => {
    const { url } = await t.client().createDownloadUrl({ id, ttlSeconds: 600 });
    const alphaTokenId = (await t.app.metadata.listTokens("alpha")).find((token) => token.name === "alpha-ci")!.id;
    expect(targetOf(url)).toMatch(
      new RegExp(`^/download/v1/alpha/${id}\\?expires=[1-9][0-9]*&token_id=${alphaTokenId}&key_id=[A-Za-z0-9_-]{1,32}&sig=[A-Za-z0-9_-]{43}$`),
    );
  });

  it("answers 403 to every other spelling of a valid link", async () => {
    const { url } = await t.client().createDownloadUrl({ id, ttlSeconds: 600 });
    const target = targetOf(url);
    const unsigned = target.slice(0, target.indexOf("&sig="));
    const sig = target.slice(target.indexOf("&sig=") + "&sig=".length);
    const expires = new URLSearchParams(target.split("?")[1]).get("expires")!;
    // 43 characters carry 258 bits for a 256-bit MAC: the last one's two low bits are dropped by the decoder.
    const lastSibling = BASE64URL[BASE64URL.indexOf(sig.at(-1)!) ^ 1]!;
    const variants: Record<string, string> = {
      "sig's last character changed in bits the decoder drops": `${unsigned}&sig=${sig.slice(0, -1)}${lastSibling}`,
      "a dot inside sig": `${unsigned}&sig=${sig.slice(0, 21)}.${sig.slice(21)}`,
      "a trailing = after sig": `${target}=`,
      "expires with a leading zero": target.replace(`expires=${expires}`, `expires=0${expires}`),
      "expires with .0": target.replace(`expires=${expires}`, `expires=${expires}.0`),
      "a percent-encoded digit in expires": target.replace(`expires=${expires}`, `expires=%3${expires}`),
      "a percent-encoded tenant": target.replace("/alpha/", "/%61lpha/"),
      "a percent-encoded character in sig": `${unsigned}&sig=%${sig.charCodeAt(0).toString(16).toUpperCase()}${sig.slice(1)}`,
      "a parameter twice": `${target}&sig=${sig}`,
      "an extra parameter": `${target}&download=1`,
      "a trailing &": `${target}&`,
      "the parameters in another order": `${target.split("?")[0]}?sig=${sig}&${unsigned.split("?")[1]}`,
    };
    expect(await getRaw(t.url, target)).toEqual({ status: 200, body: "bound" });
    const reading = lenientReading(target);
    for (const [name, variant] of Object.entries(variants)) {
      expect(variant, name).not.toBe(target);
      // The same link to a forgiving reader: what verification accepted before links had one spelling.
      expect(lenientReading(variant), name).toEqual(reading);
      expect({ name, ...(await getRaw(t.url, variant)) }).toEqual({ name, status: 403, body: "forbidden\n" });
    }
    expect(await getRaw(t.url, target)).toEqual({ status: 200, body: "bound" });
  });

  it("keeps its generated key in the data folder, readable by its owner only", async () => {
    const file = path.join(t.dataDir, "url-signing-keys");
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const keys = (await readUrlSigningKeyFile(file))!;
    expect(keys).toHaveLength(1);
    const { url } = await t.client().createDownloadUrl({ id });
    expect(url).toContain(`&key_id=${keys[0]!.id}&`);
  });

  it("refuses a link signed with a valid key for longer than the cap", async () => {
    // Whoever reads a key can sign any expiry; the cap (86,400 s by default) still holds when the link is used.
    const keys = (await readUrlSigningKeyFile(path.join(t.dataDir, "url-signing-keys")))!;
    const forger = createUrlSigner(keys, { maxTtlSeconds: 365 * 86_400 });
    const tokenId = (await t.app.metadata.listTokens("alpha")).find((token) => token.name === "alpha-ci")!.id;
    const now = Math.floor(Date.now() / 1000);
    const forged = (seconds: number) => forger.sign({ tenantId: "alpha", artifactId: id, tokenId, expiresAtSeconds: now + seconds });
    expect(await getRaw(t.url, forged(3600))).toEqual({ status: 200, body: "bound" });
    expect(await getRaw(t.url, forged(86_400))).toEqual({ status: 200, body: "bound" });
    expect(await getRaw(t.url, forged(86_400 + 60))).toEqual({ status: 403, body: "forbidden\n" });
    expect(await getRaw(t.url, forged(7 * 86_400))).toEqual({ status: 403, body: "forbidden\n" });
  });

  it("stops serving a token's links once that token is revoked or expires", async () => {
    const revoked = await createApiToken(t.app.metadata, "alpha", "links-revoked", { scope: "read-only" });
    const doomed = targetOf((await t.client(revoked.token).createDownloadUrl({ id, ttlSeconds: 600 })).url);
    expect(doomed).toContain(`&token_id=${revoked.id}&`);
    const kept = targetOf((await t.client().createDownloadUrl({ id, ttlSeconds: 600 })).url);
    expect(await getRaw(t.url, doomed)).toEqual({ status: 200, body: "bound" });
    expect(await t.app.metadata.revokeToken(revoked.id, new Date())).toBe(true);
    // At once, or once a cached lookup of the token runs out.
    expect(await onceNot(t.url, doomed, 200, TOKEN_CACHE_MS + 1_000)).toEqual({ status: 403, body: "forbidden\n" });
    // Only that token's links: another token's link to the same artifact still works.
    expect(await getRaw(t.url, kept)).toEqual({ status: 200, body: "bound" });

    const expiresAt = new Date(Date.now() + 1_500);
    const expiring = await createApiToken(t.app.metadata, "alpha", "links-expiring", { scope: "read-only", expiresAt });
    const shortLived = targetOf((await t.client(expiring.token).createDownloadUrl({ id, ttlSeconds: 600 })).url);
    expect(await getRaw(t.url, shortLived)).toEqual({ status: 200, body: "bound" });
    await sleep(expiresAt.getTime() - Date.now() + 200);
    expect(await onceNot(t.url, shortLived, 200, TOKEN_CACHE_MS + 1_000)).toEqual({ status: 403, body: "forbidden\n" });
  });
});

describeOn("postgres+minio")("download-link keys", () => {
  const key = (id: string) => `${id}:${randomBytes(32).toString("base64url")}`;

  it("verifies a link signed with an older key while that key is listed, and refuses it once removed", async () => {
    const k1 = key("k1");
    const k2 = key("k2");
    const first = await startTestApp("postgres+minio", { ARTIFACTD_URL_SIGNING_KEYS: k1 });
    const sameStores = { DATABASE_URL: first.databaseUrl!, ARTIFACTD_S3_BUCKET: first.bucket! };
    let rotated: TestApp | undefined;
    let retired: TestApp | undefined;
    try {
      expect(existsSync(path.join(first.dataDir, "url-signing-keys"))).toBe(false);
      const { artifact } = await first.client().saveInline({ spec: { kind: "note" }, content: { case: "text", value: "rotating" } });
      const oldLink = targetOf((await first.client().createDownloadUrl({ id: artifact!.id })).url);
      expect(oldLink).toContain("&key_id=k1&");

      // A replica with the new key first: it signs with k2 and still takes k1's links.
      rotated = await startTestApp("postgres+minio", { ...sameStores, ARTIFACTD_URL_SIGNING_KEYS: `${k2},${k1}` });
      const newLink = targetOf((await rotated.client().createDownloadUrl({ id: artifact!.id })).url);
      expect(newLink).toContain("&key_id=k2&");
      expect(await getRaw(rotated.url, oldLink)).toEqual({ status: 200, body: "rotating" });
      expect(await getRaw(rotated.url, newLink)).toEqual({ status: 200, body: "rotating" });
      // One that does not list k2 refuses its links: keys are shared through configuration, not the database.
      expect((await getRaw(first.url, newLink)).status).toBe(403);

      // Restarted with k1 removed.
      await first.closeApp();
      await rotated.closeApp();
      retired = await startTestApp("postgres+minio", { ...sameStores, ARTIFACTD_URL_SIGNING_KEYS: k2 });
      expect(await getRaw(retired.url, oldLink)).toEqual({ status: 403, body: "forbidden\n" });
      expect(await getRaw(retired.url, newLink)).toEqual({ status: 200, body: "rotating" });
    } finally {
      await retired?.close();
      await rotated?.close();
      await first.close();
    }
  });

  it("deletes the key the server used to keep in the database, and keeps none there", async () => {
    const database = await createTestDatabase();
    const pool = new pg.Pool({ connectionString: database.url, max: 1 });
    // Dropping the database (with force) can terminate a connection the pool is still closing: heard here,
    // rather than as an uncaught error after the test.
    pool.on("error", () => {});
    const db = new Kysely<any>({ dialect: new PostgresDialect({ pool }) });
    let t: TestApp | undefined;
    try {
      // The database as the release before left it: migrated that far, with its generated key stored in clear.
      const migrated = await new Migrator({ db, provider: migrationProvider }).migrateTo("20261211000000_token_scopes");
      expect(migrated.error).toBeUndefined();
      const stored = randomBytes(32).toString("base64url");
      await db.insertInto("server_settings").values({ name: "url_signing_key", value: stored }).execute();

      t = await startTestApp("postgres+minio", { DATABASE_URL: database.url });
      expect(await db.selectFrom("server_settings").selectAll().execute()).toEqual([]);
      const { artifact } = await t.client().saveInline({ spec: { kind: "note" }, content: { case: "text", value: "after" } });
      expect(await getRaw(t.url, targetOf((await t.client().createDownloadUrl({ id: artifact!.id })).url))).toEqual({ status: 200, body: "after" });
      // The old stored key signs nothing the server takes, under any id it might have had.
      const tokenId = (await t.app.metadata.listTokens("alpha"))[0]!.id;
      for (const keyId of ["default", "k1", (await readUrlSigningKeyFile(path.join(t.dataDir, "url-signing-keys")))![0]!.id]) {
        const forged = createUrlSigner([{ id: keyId, secret: stored }], { maxTtlSeconds: 900 }).sign({
          tenantId: "alpha",
          artifactId: artifact!.id,
          tokenId,
          expiresAtSeconds: Math.floor(Date.now() / 1000) + 600,
        });
        expect((await getRaw(t.url, forged)).status).toBe(403);
      }
      expect(await db.selectFrom("server_settings").selectAll().execute()).toEqual([]);
    } finally {
      await t?.close();
      await db.destroy();
      await database.drop();
    }
  });

  it("warns at start-up when a server on Postgres signs with keys only its own machine has", async () => {
    const database = await createTestDatabase();
    const dataDir = mkdtempSync(path.join(os.tmpdir(), "artifactd-keys-"));
    const logged = async (env: Record<string, string>) => {
      const messages: string[] = [];
      const app = await startApp(
        readConfig({
          DATABASE_URL: database.url,
          ARTIFACTD_DATA_DIR: dataDir,
          ARTIFACTD_LISTEN: "127.0.0.1:0",
          ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0",
          ...env,
        }),
        createLogger({ destination: { write: (line: string) => messages.push(line) } }),
      );
      await app.close(1_000);
      return messages.join("\n");
    };
    try {
      expect(await logged({})).toMatch(/only this machine has: if other replicas share this database, set ARTIFACTD_URL_SIGNING_KEYS/);
      expect(await logged({ ARTIFACTD_URL_SIGNING_KEYS: key("k1") })).not.toMatch(/ARTIFACTD_URL_SIGNING_KEYS/);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
      await database.drop();
    }
  });

  it("makes the key file with mode 0600, and narrows one found looser to 0600, keeping its keys", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "artifactd-keys-"));
    try {
      const file = path.join(dir, "not-yet-made", "url-signing-keys");
      const made = await loadOrCreateUrlSigningKeyFile(file);
      expect(made.created).toBe(true);
      expect(statSync(file).mode & 0o777).toBe(0o600);
      expect(await loadOrCreateUrlSigningKeyFile(file)).toEqual({ keys: made.keys, created: false });

      const loose = path.join(dir, "loose");
      const keys = [newUrlSigningKey(), newUrlSigningKey(["x"], new Date(0))];
      writeFileSync(loose, formatUrlSigningKeys(keys));
      chmodSync(loose, 0o644);
      expect(await loadOrCreateUrlSigningKeyFile(loose)).toEqual({ keys, created: false });
      expect(statSync(loose).mode & 0o777).toBe(0o600);
      expect(parseUrlSigningKeys(readFileSync(loose, "utf8"))).toEqual(keys);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("at start-up, narrows a 0644 key file in the data folder to 0600 and signs with its first key", async () => {
    const dataDir = mkdtempSync(path.join(os.tmpdir(), "artifactd-keys-"));
    const file = path.join(dataDir, "url-signing-keys");
    writeFileSync(file, formatUrlSigningKeys(parseUrlSigningKeys(`${key("seeded-new")}\n${key("seeded-old")}`)));
    chmodSync(file, 0o644);
    const app = await startApp(readConfig({ ARTIFACTD_LISTEN: "127.0.0.1:0", ARTIFACTD_DATA_DIR: dataDir, ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0" }));
    try {
      expect(statSync(file).mode & 0o777).toBe(0o600);
      const { token } = await createApiToken(app.metadata, "alpha", "seeded", { scope: "read-write" });
      const call = async (method: string, body: unknown) => {
        const response = await fetch(`${app.server.url}/artifacts.v1.ArtifactService/${method}`, {
          method: "POST",
          headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
          body: JSON.stringify(body),
        });
        expect(response.status, method).toBe(200);
        return (await response.json()) as Record<string, any>;
      };
      const saved = await call("SaveInline", { spec: { kind: "note" }, text: "seeded" });
      const { url } = await call("CreateDownloadUrl", { id: saved.artifact.id });
      expect(url).toContain("&key_id=seeded-new&");
      expect(await getRaw(app.server.url, targetOf(url))).toEqual({ status: 200, body: "seeded" });
    } finally {
      await app.close(1_000);
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe("artifactd url-keys", () => {
  const ROOT = path.resolve(import.meta.dirname, "../..");
  /** The real command on a data folder of its own, with none of this machine's settings but `env`. */
  const cli = (args: string[], env: Record<string, string> = {}) =>
    new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = spawn(path.join(ROOT, "node_modules/.bin/node"), [path.join(ROOT, "src/main.ts"), "url-keys", ...args], {
        env: { PATH: process.env.PATH ?? "", ...env },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (d: Buffer) => (stdout += d));
      child.stderr.on("data", (d: Buffer) => (stderr += d));
      child.on("exit", (code) => resolve({ code, stdout, stderr }));
    });

  it("rotates a new signing key into the key file and retires old ones, never printing a secret", async () => {
    const dataDir = mkdtempSync(path.join(os.tmpdir(), "artifactd-url-keys-"));
    const file = path.join(dataDir, "url-signing-keys");
    const env = { ARTIFACTD_DATA_DIR: dataDir };
    const idsInFile = async () => (await readUrlSigningKeyFile(file))!.map((key) => key.id);
    try {
      expect((await cli(["list"], env)).stdout).toMatch(/no keys yet/);
      const first = await cli(["rotate", "--json"], env);
      expect(first.code, first.stderr).toBe(0);
      const { id: firstId } = JSON.parse(first.stdout) as { id: string };
      expect(await idsInFile()).toEqual([firstId]);
      const second = await cli(["rotate", "--json"], env);
      const { id: secondId } = JSON.parse(second.stdout) as { id: string };
      expect(await idsInFile()).toEqual([secondId, firstId]);
      expect(statSync(file).mode & 0o777).toBe(0o600);

      const listed = await cli(["list", "--json"], env);
      expect(JSON.parse(listed.stdout)).toEqual({
        source: file,
        keys: [
          { id: secondId, signs: true },
          { id: firstId, signs: false },
        ],
      });
      const printed = listed.stdout + (await cli(["list"], env)).stdout + first.stdout + second.stdout;
      expect(printed).toContain(secondId);
      for (const key of (await readUrlSigningKeyFile(file))!) expect(printed).not.toContain(key.secret);

      const signing = await cli(["retire", secondId], env);
      expect(signing.code).toBe(2);
      expect(signing.stderr).toMatch(/signs: rotate in a new one first/);
      expect((await cli(["retire", firstId], env)).code).toBe(0);
      expect(await idsInFile()).toEqual([secondId]);

      const configured = await cli(["rotate"], { ...env, ARTIFACTD_URL_SIGNING_KEYS: `k1:${"s".repeat(40)}` });
      expect(configured.code).toBe(2);
      expect(configured.stderr).toMatch(/ARTIFACTD_URL_SIGNING_KEYS/);
      expect(await idsInFile()).toEqual([secondId]);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
    // Eight processes, each loading the server's modules: on a busy two-core machine that takes a while.
  }, 180_000);
});
