import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, expect, it, vi } from "vitest";
import { blake3Hex } from "../../src/blake3.ts";
import { startTestApp, type TestApp } from "../support/test-app.ts";
import { describeOn } from "../support/test-backends.ts";

/** The real `artifactd` command, run as a child process, against a real server. */
const ROOT = path.resolve(import.meta.dirname, "../..");
const NODE = path.join(ROOT, "node_modules/.bin/node");
const MAIN = path.join(ROOT, "src/main.ts");
const MiB = 1024 * 1024;

interface Run {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

/** Artifact JSON as `--json` prints it: the protobuf JSON mapping. */
interface ArtifactJson {
  id: string;
  kind: string;
  artifactClass: string;
  name: string;
  title: string;
  mimeType: string;
  sizeBytes: string;
  blake3: string;
  status: string;
  pinned: boolean;
  labels: Record<string, string>;
  tags: string[];
  metrics: Record<string, number>;
  provenance?: Record<string, string>;
  inputs: { artifactId: string; role: string }[];
  createdAt: string;
  expiresAt?: string;
  deletedAt?: string;
}

describeOn("postgres+minio")("artifactd client commands", () => {
  let t: TestApp;
  let dir: string;
  /** A loopback port nothing listens on. */
  let deadUrl: string;
  beforeAll(async () => {
    t = await startTestApp("postgres+minio", { ARTIFACTD_S3_PART_SIZE: "5MiB" });
    dir = mkdtempSync(path.join(os.tmpdir(), "artifactd-cli-"));
    deadUrl = `http://127.0.0.1:${await closedPort()}`;
  });
  afterAll(async () => {
    await t?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** The environment of every run: the test server and tenant alpha, config and cache folders in the test folder; `undefined` removes a variable. */
  const environment = (overrides: Record<string, string | undefined> = {}) => {
    const env: Record<string, string | undefined> = {
      ...process.env,
      ARTIFACTD_URL: t.url,
      ARTIFACTD_TOKEN: t.tokens.alpha,
      ARTIFACTD_CONFIG: undefined,
      ARTIFACTD_DATA_DIR: path.join(dir, "no-data-dir"),
      XDG_CONFIG_HOME: path.join(dir, "no-config"),
      XDG_CACHE_HOME: path.join(dir, "cache"),
      ...overrides,
    };
    return Object.fromEntries(Object.entries(env).filter((entry): entry is [string, string] => entry[1] !== undefined));
  };

  /** Starts the command; `done` resolves with its exit code and output. */
  const start = (args: string[], options: { env?: Record<string, string | undefined>; input?: Buffer } = {}) => {
    const child = spawn(NODE, [MAIN, ...args], { cwd: dir, env: environment(options.env), stdio: ["pipe", "pipe", "pipe"] });
    const stdout: Buffer[] = [];
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => stdout.push(d));
    child.stderr.on("data", (d: Buffer) => (stderr += d));
    child.stdin.end(options.input);
    const done = new Promise<Run>((resolve) => child.on("exit", (code) => resolve({ code, stdout: Buffer.concat(stdout), stderr })));
    return { child, done };
  };
  const cli = (args: string[], options: { env?: Record<string, string | undefined>; input?: Buffer } = {}) => start(args, options).done;

  const json = <T>(run: Run): T => {
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    return JSON.parse(run.stdout.toString()) as T;
  };

  it("puts a file larger than several parts and gets it back byte for byte; --json of put, show, get and ls parses", async () => {
    const data = randomBytes(12 * MiB + 99);
    writeFileSync(path.join(dir, "weights.bin"), data);
    const put = await cli([
      "put",
      "weights.bin",
      "--kind",
      "model",
      "--label",
      "stage=prod",
      "--tag",
      "best",
      "--metric",
      "acc=0.93",
      "--run-id",
      "run-cli",
      "--json",
    ]);
    const { artifact, deduplicated } = json<{ artifact: ArtifactJson; deduplicated: boolean }>(put);
    expect(deduplicated).toBe(false);
    expect(artifact.blake3).toBe(blake3Hex(data));
    expect(artifact.sizeBytes).toBe(String(data.length));
    expect(artifact.labels).toEqual({ stage: "prod" });
    expect(artifact.metrics).toEqual({ acc: 0.93 });
    expect(artifact.provenance).toMatchObject({ runId: "run-cli" });

    // Without a terminal there is no progress output at all.
    const get = await cli(["get", artifact.id, "-o", "copy.bin"]);
    expect(get).toMatchObject({ code: 0, stderr: "" });
    expect(get.stdout.toString()).toBe("copy.bin\n");
    expect(readFileSync(path.join(dir, "copy.bin")).equals(data)).toBe(true);
    const getJson = json<{ id: string; path: string; bytes: number; blake3: string; directory: boolean }>(
      await cli(["get", artifact.id, "-o", "copy2.bin", "--json"]),
    );
    expect(getJson).toEqual({ id: artifact.id, path: path.join(dir, "copy2.bin"), directory: false, bytes: data.length, blake3: artifact.blake3 });
    // An existing folder given with -o receives the file under its own name.
    mkdirSync(path.join(dir, "into"));
    expect((await cli(["get", artifact.id, "-o", "into"])).stdout.toString()).toBe(`${path.join("into", "weights.bin")}\n`);
    expect(readFileSync(path.join(dir, "into", "weights.bin")).equals(data)).toBe(true);

    const listed = json<ArtifactJson[]>(await cli(["ls", "--run-id", "run-cli", "--json"]));
    expect(listed.map((a) => a.id)).toEqual([artifact.id]);
    expect(listed[0]!.sizeBytes).toBe(String(data.length));

    const shown = json<ArtifactJson>(await cli(["show", artifact.id, "--json"]));
    expect(shown).toMatchObject({ id: artifact.id, kind: "model", name: "weights.bin", status: "STATUS_DRAFT", pinned: false, tags: ["best"] });
    expect(new Date(shown.createdAt).getTime()).toBeGreaterThan(Date.now() - 60_000);
    const show = await cli(["show", `artifact://${artifact.id}`]);
    expect(show.stdout.toString()).toMatch(new RegExp(`blake3\\s+${artifact.blake3}`));
    expect(show.stdout.toString()).toMatch(/scope\s+runId=run-cli/);
    const url = await cli(["url", artifact.id]);
    expect(url.stdout.toString()).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/download\/v1\//);
  });

  it("pipes standard input up and cat down; pins, refuses to delete pinned, deletes", async () => {
    const put = await cli(["put", "-", "--kind", "log", "--name", "run.log"], { input: Buffer.from("line one\nline two\n") });
    expect(put).toMatchObject({ code: 0, stderr: "" });
    const id = put.stdout.toString().trim();
    expect(id).toMatch(/^art_[0-9a-z]{26}$/);
    // The same content again: a new artifact sharing the stored content, and still only its id on standard output.
    const again = await cli(["put", "-", "--kind", "log", "--name", "run-again.log"], { input: Buffer.from("line one\nline two\n") });
    expect(again).toMatchObject({ code: 0, stderr: "" });
    expect(again.stdout.toString()).toMatch(/^art_[0-9a-z]{26}\n$/);
    expect(again.stdout.toString().trim()).not.toBe(id);
    const cat = await cli(["cat", id]);
    expect(cat).toMatchObject({ code: 0, stderr: "" });
    expect(cat.stdout.toString()).toBe("line one\nline two\n");
    expect((await cli(["pin", id])).code).toBe(0);
    const refused = await cli(["rm", id]);
    expect(refused.code).toBe(6);
    expect(refused.stderr).toMatch(/pinned/);
    expect((await cli(["unpin", id])).code).toBe(0);
    expect((await cli(["rm", id])).code).toBe(0);
    const gone = await cli(["cat", id]);
    expect(gone.code).toBe(3);
    const getGone = await cli(["get", id]);
    expect(getGone.code).toBe(3);
    expect(getGone.stderr).toMatch(/was deleted at/);
  });

  it("put records title, class, scope, lineage, status and expiry; ls and search filter by them", async () => {
    const scope = (graph: string, node: string, session: string) => [
      "--graph-id",
      graph,
      "--node-id",
      node,
      "--session-id",
      session,
      "--user-id",
      "u-7",
      "--app-id",
      "studio",
    ];
    const put = async (name: string, ...flags: string[]) => {
      const result = await cli(["put", "-", "--kind", "report", "--name", name, "--json", ...flags], {
        input: Buffer.from(`${name} ${randomBytes(8).toString("hex")}`),
      });
      return json<{ artifact: ArtifactJson }>(result).artifact;
    };
    const source = await put("source.csv", ...scope("g-cli", "n-1", "s-1"), "--class", "table", "--tag", "raw");
    const report = await put(
      "forecast.md",
      ...scope("g-cli", "n-2", "s-1"),
      ...["--title", "Quarterly revenue forecast", "--class", "research", "--input", `${source.id}:source-data`, "--status", "review"],
      ...["--ttl-seconds", "86400", "--tool-name", "planner", "--workflow-id", "wf-9", "--tag", "q3", "--pin"],
    );
    const other = await put("notes.md", ...scope("g-other", "n-1", "s-2"), "--tag", "q3");

    const shown = json<ArtifactJson>(await cli(["show", report.id, "--json"]));
    expect(shown).toMatchObject({
      title: "Quarterly revenue forecast",
      artifactClass: "research",
      status: "STATUS_REVIEW",
      pinned: true,
      inputs: [{ artifactId: source.id, role: "source-data" }],
      provenance: { graphId: "g-cli", nodeId: "n-2", sessionId: "s-1", userId: "u-7", appId: "studio", toolName: "planner", workflowId: "wf-9" },
    });
    const ttl = new Date(shown.expiresAt!).getTime() - new Date(shown.createdAt).getTime();
    expect(Math.abs(ttl - 86_400_000)).toBeLessThan(5_000);

    const ids = async (...flags: string[]) =>
      json<ArtifactJson[]>(await cli(["ls", "--json", ...flags]))
        .map((a) => a.id)
        .sort();
    expect(await ids("--graph-id", "g-cli")).toEqual([source.id, report.id].sort());
    expect(await ids("--graph-id", "g-cli", "--node-id", "n-1")).toEqual([source.id]);
    expect(await ids("--session-id", "s-1", "--user-id", "u-7", "--app-id", "studio")).toEqual([source.id, report.id].sort());
    expect(await ids("--node-id", "n-1")).toEqual([source.id, other.id].sort());
    expect(await ids("--graph-id", "g-cli", "--class", "research")).toEqual([report.id]);
    expect(await ids("--graph-id", "g-cli", "--status", "review")).toEqual([report.id]);
    expect(await ids("--graph-id", "g-cli", "--pinned")).toEqual([report.id]);
    expect(await ids("--graph-id", "g-cli", "--no-pinned")).toEqual([source.id]);
    expect(await ids("--kind", "report", "--tag-any", "raw", "--tag-any", "q3")).toEqual([source.id, report.id, other.id].sort());
    expect(await ids("--kind", "report", "--tag", "q3", "--name-prefix", "not")).toEqual([other.id]);
    expect(await ids("--graph-id", "g-cli", "--limit", "1")).toHaveLength(1);

    expect((await cli(["rm", other.id])).code).toBe(0);
    expect(await ids("--session-id", "s-2")).toEqual([]);
    expect(await ids("--session-id", "s-2", "--include-deleted")).toEqual([other.id]);

    const found = json<ArtifactJson[]>(await cli(["search", "revenue", "forecast", "--graph-id", "g-cli", "--json"]));
    expect(found.map((a) => a.id)).toEqual([report.id]);
    expect(json<ArtifactJson[]>(await cli(["search", "revenue forecast", "--graph-id", "g-other", "--json"]))).toEqual([]);
    const human = await cli(["ls", "--graph-id", "g-cli"]);
    expect(
      human.stdout
        .toString()
        .trim()
        .split("\n")
        .map((row) => row.split("\t")[0]),
    ).toEqual([report.id, source.id]);
  });

  it("stores a folder as a directory artifact and restores it: nested folders, empty files, empty folders", async () => {
    const tree = path.join(dir, "trees", "project");
    mkdirSync(path.join(tree, "data", "raw", "2025"), { recursive: true });
    mkdirSync(path.join(tree, "empty-folder", "inner"), { recursive: true });
    writeFileSync(path.join(tree, "README.md"), "# project\n");
    writeFileSync(path.join(tree, "data", "raw", "2025", "q1.csv"), "a,b\n1,2\n");
    writeFileSync(path.join(tree, "data", "raw", "2025", "q1-copy.csv"), "a,b\n1,2\n");
    writeFileSync(path.join(tree, "data", "empty.txt"), "");
    writeFileSync(path.join(tree, "data", "blob.bin"), randomBytes(3 * MiB));
    writeFileSync(path.join(tree, "run.sh"), "#!/bin/sh\necho hi\n");
    chmodSync(path.join(tree, "run.sh"), 0o755);

    const { artifact } = json<{ artifact: ArtifactJson }>(await cli(["put", "trees/project", "--kind", "dataset", "--graph-id", "g-dir", "--json"]));
    expect(artifact.id).toMatch(/^dir_/);
    expect(artifact).toMatchObject({ name: "project", kind: "dataset", mimeType: "application/vnd.artifactd.directory+json" });

    // Default target: ./<name>.
    const get = await cli(["get", artifact.id]);
    expect(get).toMatchObject({ code: 0, stderr: "" });
    expect(get.stdout.toString()).toBe("project\n");
    expect(snapshot(path.join(dir, "project"))).toEqual(snapshot(tree));
    expect(statSync(path.join(dir, "project", "run.sh")).mode & 0o111).not.toBe(0);

    const again = await cli(["get", artifact.id]);
    expect(again.code).toBe(2);
    expect(again.stdout.toString()).toBe("");
    expect(again.stderr).toMatch(/project already exists.*new or empty folder.*-o/);

    const restored = json<{ id: string; path: string; directory: boolean; files: number; folders: number; bytes: number }>(
      await cli(["get", artifact.id, "-o", "restored", "--json"]),
    );
    expect(restored).toEqual({ id: artifact.id, path: path.join(dir, "restored"), directory: true, files: 6, folders: 5, bytes: 3 * MiB + 10 + 8 + 8 + 18 });
    expect(snapshot(path.join(dir, "restored"))).toEqual(snapshot(tree));

    // Something a directory artifact cannot hold is named, and nothing is stored.
    symlinkSync("README.md", path.join(tree, "link.md"));
    const refused = await cli(["put", "trees/project", "--kind", "dataset"]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/link\.md is a symbolic link/);
    const withMime = await cli(["put", "trees/project", "--kind", "dataset", "--mime", "text/plain"]);
    expect(withMime.code).toBe(2);
  });

  it("get writes only inside its target, never uses a hostile name raw, and never replaces a file without --force", async () => {
    // The command runs in work/; anything that escapes would land in its parent or elsewhere.
    const parent = path.join(dir, "get-safety");
    const work = path.join(parent, "work");
    mkdirSync(work, { recursive: true });
    const inWork = (args: string[]) =>
      new Promise<Run>((resolve) => {
        const child = spawn(NODE, [MAIN, ...args], { cwd: work, env: environment(), stdio: ["ignore", "pipe", "pipe"] });
        const stdout: Buffer[] = [];
        let stderr = "";
        child.stdout.on("data", (d: Buffer) => stdout.push(d));
        child.stderr.on("data", (d: Buffer) => (stderr += d));
        child.on("exit", (code) => resolve({ code, stdout: Buffer.concat(stdout), stderr }));
      });
    const put = async (name: string, content: string) => {
      const result = await cli(["put", "-", "--kind", "note", "--name", name], { input: Buffer.from(content) });
      expect(result).toMatchObject({ code: 0, stderr: "" });
      return result.stdout.toString().trim();
    };
    const got = async (args: string[]) => {
      const result = await inWork(args);
      expect(result.code, result.stderr).toBe(0);
      return result;
    };

    // A name with a path in it: only its last segment is used, inside the working folder.
    const climbing = await put("../../escaped.txt", "climbing");
    expect((await got(["get", climbing])).stdout.toString()).toBe("escaped.txt\n");
    expect(readFileSync(path.join(work, "escaped.txt"), "utf8")).toBe("climbing");
    const absolute = await put(path.join(parent, "absolute.txt"), "absolute");
    expect((await got(["get", absolute])).stdout.toString()).toBe("absolute.txt\n");
    const backslashed = await put("..\\..\\windows.txt", "backslashed");
    expect((await got(["get", backslashed])).stdout.toString()).toBe("windows.txt\n");
    expect(readdirSync(parent).sort()).toEqual(["work"]);

    // Names that are not plain file names fall back to the id, and say so on standard error.
    for (const [name, why] of [
      [".bashrc", /hidden file/],
      ["config/.profile", /hidden file/],
      ["..", /only dots/],
      ["...", /only dots/],
      ["sub/", /empty/],
      ["line\nbreak", /control characters/],
    ] as const) {
      const id = await put(name, `content of ${JSON.stringify(name)}`);
      const result = await got(["get", id]);
      expect(result.stdout.toString()).toBe(`${id}\n`);
      expect(result.stderr).toMatch(why);
      expect(readFileSync(path.join(work, id), "utf8")).toBe(`content of ${JSON.stringify(name)}`);
    }
    expect(readdirSync(work).filter((name) => name.startsWith("."))).toEqual([]);
    expect(readdirSync(parent).sort()).toEqual(["work"]);
    // A dotfile given explicitly with -o is the user's choice.
    const dotfile = await put(".bashrc", "explicit");
    expect((await got(["get", dotfile, "-o", ".bashrc"])).stdout.toString()).toBe(".bashrc\n");
    expect(readFileSync(path.join(work, ".bashrc"), "utf8")).toBe("explicit");

    // An existing file is never replaced without --force: not by the default name, not with -o, not inside a folder given with -o;
    // nothing is left beside it either.
    const replacement = await put("escaped.txt", "replacement");
    mkdirSync(path.join(work, "into"));
    writeFileSync(path.join(work, "into", "escaped.txt"), "kept in the folder");
    for (const args of [
      ["get", replacement],
      ["get", replacement, "-o", "escaped.txt"],
      ["get", replacement, "-o", "into"],
    ]) {
      const refused = await inWork(args);
      expect(refused.code).toBe(2);
      expect(refused.stdout.toString()).toBe("");
      expect(refused.stderr).toMatch(/escaped\.txt already exists; pass --force to replace it/);
    }
    expect(readFileSync(path.join(work, "escaped.txt"), "utf8")).toBe("climbing");
    expect(readFileSync(path.join(work, "into", "escaped.txt"), "utf8")).toBe("kept in the folder");
    // A symbolic link at the name counts as existing: it is not followed, nor replaced.
    symlinkSync(path.join(parent, "link-target.txt"), path.join(work, "linked.txt"));
    const linkedName = await put("linked.txt", "through the link");
    expect((await inWork(["get", linkedName])).code).toBe(2);
    expect(readdirSync(parent).sort()).toEqual(["work"]);
    // --force replaces, still only once the content is whole and verified.
    expect((await got(["get", replacement, "--force"])).stdout.toString()).toBe("escaped.txt\n");
    expect(readFileSync(path.join(work, "escaped.txt"), "utf8")).toBe("replacement");
    expect((await got(["get", replacement, "-f", "-o", "into"])).stdout.toString()).toBe(`${path.join("into", "escaped.txt")}\n`);
    expect(readFileSync(path.join(work, "into", "escaped.txt"), "utf8")).toBe("replacement");
    expect(readdirSync(work).filter((name) => name.includes(".partial-"))).toEqual([]);

    // A directory artifact whose name is a dotfile is restored under its id, not as ./.hidden.
    const hidden = path.join(dir, "trees", ".hidden");
    mkdirSync(hidden, { recursive: true });
    writeFileSync(path.join(hidden, "inside.txt"), "inside");
    const { artifact: folder } = json<{ artifact: ArtifactJson }>(await cli(["put", "trees/.hidden", "--kind", "dataset", "--json"]));
    expect(folder.name).toBe(".hidden");
    const restored = await got(["get", folder.id]);
    expect(restored.stdout.toString()).toBe(`${folder.id}\n`);
    expect(readFileSync(path.join(work, folder.id, "inside.txt"), "utf8")).toBe("inside");
    expect(existsSync(path.join(work, ".hidden"))).toBe(false);
    expect((await inWork(["get", folder.id, "--force"])).code).toBe(2);
  }, 180_000);

  it("saves versions with --versioned and takes references wherever it takes an id", async () => {
    const name = `cli-versions-${randomBytes(4).toString("hex")}`;
    const put = async (content: string, ...flags: string[]) =>
      json<{ artifact: ArtifactJson & { version: string; project?: string; aliases?: string[] } }>(
        await cli(["put", "-", "--kind", "dataset", "--name", name, "--versioned", "--project", "cli", "--json", ...flags], { input: Buffer.from(content) }),
      ).artifact;
    const v1 = await put("first");
    const v2 = await put("second");
    expect([v1.version, v2.version, v2.project, v2.aliases]).toEqual(["1", "2", "cli", ["latest"]]);
    expect(json<ArtifactJson>(await cli(["show", `cli/${name}:latest`, "--json"])).id).toBe(v2.id);
    expect((await cli(["cat", `artifact://cli/${name}@v1`])).stdout.toString()).toBe("first");
    const got = json<{ id: string; path: string }>(await cli(["get", `cli/${name}@1`, "-o", "first.txt", "--json"]));
    expect([got.id, readFileSync(path.join(dir, "first.txt"), "utf8")]).toEqual([v1.id, "first"]);
    // A reference keeps its own colon: its role follows "=".
    const derived = json<{ artifact: ArtifactJson }>(
      await cli(["put", "-", "--kind", "report", "--input", `cli/${name}:latest=source`, "--input", `${v1.id}:baseline`, "--json"], {
        input: Buffer.from("r"),
      }),
    ).artifact;
    expect(derived.inputs.map(({ artifactId, role }) => ({ artifactId, role }))).toEqual([
      { artifactId: v2.id, role: "source" },
      { artifactId: v1.id, role: "baseline" },
    ]);
    const listed = json<ArtifactJson[]>(await cli(["ls", "--project", "cli", "--json"]));
    expect(listed.map((a) => a.id)).toEqual([v2.id, v1.id]);
    const gone = await cli(["show", `cli/${name}:production`]);
    expect([gone.code, gone.stderr]).toEqual([3, expect.stringMatching(/has no alias "production"/)]);
    const malformed = await cli(["show", `${name}@v0`]);
    expect([malformed.code, malformed.stderr]).toEqual([2, expect.stringMatching(/is not an artifact id or reference: version "v0"/)]);
  });

  it("says what is wrong, with exit codes that mean something and nothing on standard output", async () => {
    const expectFailure = async (run: Promise<Run>, code: number, message: RegExp) => {
      const result = await run;
      expect(result.stdout.toString()).toBe("");
      expect(result.stderr).toMatch(message);
      expect(result.code).toBe(code);
      return result;
    };
    writeFileSync(path.join(dir, "small.txt"), "small");
    const wrongToken = await expectFailure(
      cli(["ls"], { env: { ARTIFACTD_TOKEN: `adt_${"x".repeat(43)}` } }),
      4,
      /refused the API token from ARTIFACTD_TOKEN: .*unknown or revoked/,
    );
    expect(wrongToken.stderr).toMatch(/artifactd token create/);
    expect(wrongToken.stderr).toMatch(/--token, ARTIFACTD_TOKEN or "token" in the config file/);
    await expectFailure(cli(["ls", "--token", `adt_${"y".repeat(43)}`]), 4, /refused the API token from --token/);
    await expectFailure(cli(["ls"], { env: { ARTIFACTD_TOKEN: undefined } }), 4, /no API token: pass --token, set ARTIFACTD_TOKEN.*artifactd token create/);

    const unreachable = await expectFailure(
      cli(["ls"], { env: { ARTIFACTD_URL: deadUrl } }),
      5,
      new RegExp(`cannot reach the service at ${deadUrl} \\(from ARTIFACTD_URL\\)`),
    );
    expect(unreachable.stderr).toMatch(/Is it running \(`artifactd serve`\)\? Otherwise point --url, ARTIFACTD_URL or "url" in the config file at it/);
    await expectFailure(cli(["ls", "--url", "ftp://example.org"]), 2, /not an http:\/\/ or https:\/\/ URL/);

    await expectFailure(cli(["put", "small.txt"]), 2, /put needs --kind/);
    await expectFailure(cli(["put", "nothing-here.bin", "--kind", "x"]), 2, /no such file or folder: nothing-here\.bin/);
    await expectFailure(cli(["show", "art_00000000000000000000000000"]), 3, /art_00000000000000000000000000 does not exist/);
    await expectFailure(cli(["show", "nope"]), 2, /"nope" is not an artifact id/);
    await expectFailure(cli(["show"]), 2, /show needs an artifact id/);
    await expectFailure(cli(["show", "art_00000000000000000000000000", "extra"]), 2, /show takes one argument; unexpected "extra"/);
    await expectFailure(cli(["ls", "model"]), 2, /ls takes no arguments besides flags; unexpected "model"/);
    await expectFailure(cli(["put", "small.txt", "--kind", "x", "--label", "novalue"]), 2, /--label takes key=value/);
    await expectFailure(cli(["put", "small.txt", "--kind", "x", "--input", "not-an-id"]), 2, /--input takes <artifact id>\[:role\]/);
    await expectFailure(cli(["put", "small.txt", "--kind", "x", "--status", "final"]), 2, /--status takes draft, review, approved, rejected/);
    await expectFailure(cli(["put", "small.txt", "--kind", "x", "--ttl-seconds", "soon"]), 2, /--ttl-seconds needs a whole number/);
    await expectFailure(cli(["ls", "--pin"]), 2, /ls does not take --pin/);
    await expectFailure(cli(["ls", "--colour"]), 2, /Unknown option '--colour'.*artifactd help/);
    await expectFailure(cli(["ls", "--created-after", "yesterday-ish"]), 2, /--created-after needs a date/);
    await expectFailure(cli(["ls", "--limit", "0"]), 2, /--limit needs a whole number >= 1/);
    await expectFailure(cli(["search"]), 2, /search needs the text/);
    await expectFailure(cli(["put", "small.txt", "--kind", "bad kind!"]), 2, /kind/);
  });

  it("takes the URL and the token from flags, then the environment, then the config file", async () => {
    const good = { url: t.url, token: t.tokens.alpha };
    const badTokens = [`adt_${"a".repeat(43)}`, `adt_${"b".repeat(43)}`];
    const configFile = (name: string, contents: object) => {
      const home = path.join(dir, name);
      mkdirSync(path.join(home, "artifactd"), { recursive: true });
      writeFileSync(path.join(home, "artifactd", "config.json"), JSON.stringify(contents));
      return home;
    };
    const ls = (flags: { url?: string; token?: string }, env: { url?: string; token?: string }, file: object, extra: Record<string, string> = {}) =>
      cli(["ls", "--limit", "1", ...(flags.url ? ["--url", flags.url] : []), ...(flags.token ? ["--token", flags.token] : [])], {
        env: { ARTIFACTD_URL: env.url, ARTIFACTD_TOKEN: env.token, XDG_CONFIG_HOME: configFile(`config-${randomBytes(4).toString("hex")}`, file), ...extra },
      });

    // Tokens: three different ones, only one valid; it works from whichever place wins, and the others are ignored.
    expect((await ls({ url: good.url, token: good.token }, { token: badTokens[0] }, { token: badTokens[1] })).code).toBe(0);
    expect((await ls({ url: good.url }, { token: good.token }, { token: badTokens[1] })).code).toBe(0);
    expect((await ls({ url: good.url }, {}, { token: good.token })).code).toBe(0);
    expect((await ls({ url: good.url, token: badTokens[0] }, { token: good.token }, { token: good.token })).stderr).toMatch(/token from --token/);
    expect((await ls({ url: good.url }, { token: badTokens[0] }, { token: good.token })).stderr).toMatch(/token from ARTIFACTD_TOKEN/);

    // URLs: the same, with two that nothing listens on.
    const deadUrl2 = `http://127.0.0.1:${await closedPort()}`;
    expect((await ls({ url: good.url, token: good.token }, { url: deadUrl }, { url: deadUrl2 })).code).toBe(0);
    expect((await ls({ token: good.token }, { url: good.url }, { url: deadUrl2 })).code).toBe(0);
    expect((await ls({ token: good.token }, {}, { url: good.url })).code).toBe(0);
    const flagWins = await ls({ url: deadUrl, token: good.token }, { url: good.url }, { url: good.url });
    expect(flagWins.code).toBe(5);
    expect(flagWins.stderr).toMatch(/from --url/);
    const envWins = await ls({ token: good.token }, { url: deadUrl2 }, { url: good.url });
    expect(envWins.code).toBe(5);
    expect(envWins.stderr).toMatch(/from ARTIFACTD_URL/);

    // Each setting is looked up on its own: the URL from the file, the token from the environment.
    expect((await ls({}, { token: good.token }, { url: good.url, token: badTokens[1] })).code).toBe(0);
    // --config, then ARTIFACTD_CONFIG, name the file instead of $XDG_CONFIG_HOME/artifactd/config.json.
    const named = path.join(configFile("config-named", { url: good.url, token: good.token }), "artifactd", "config.json");
    expect((await ls({}, {}, { url: deadUrl, token: badTokens[0] }, { ARTIFACTD_CONFIG: named })).code).toBe(0);
    const flagConfig = await cli(["ls", "--config", named], {
      env: { ARTIFACTD_URL: undefined, ARTIFACTD_TOKEN: undefined, ARTIFACTD_CONFIG: path.join(dir, "missing.json") },
    });
    expect(flagConfig.code).toBe(0);
    const missing = await cli(["ls", "--config", path.join(dir, "missing.json")], { env: { ARTIFACTD_URL: undefined } });
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/missing\.json \(from --config\) does not exist/);
    // Last, the bootstrap token an embedded service writes on its first run.
    const dataDir = path.join(dir, "data-dir");
    mkdirSync(dataDir, { recursive: true });
    writeFileSync(path.join(dataDir, "bootstrap-token"), `${good.token}\n`);
    // The embedded service listens where ARTIFACTD_LISTEN says; the token goes to that loopback address only.
    const listen = new URL(good.url).host;
    expect((await cli(["ls"], { env: { ARTIFACTD_TOKEN: undefined, ARTIFACTD_DATA_DIR: dataDir, ARTIFACTD_LISTEN: listen } })).code).toBe(0);
    const bootstrapRefused = await cli(["ls"], {
      env: {
        ARTIFACTD_TOKEN: undefined,
        ARTIFACTD_DATA_DIR: dataDir,
        ARTIFACTD_URL: undefined,
        XDG_CONFIG_HOME: configFile("config-bad-token", { url: good.url, token: badTokens[0] }),
      },
    });
    expect(bootstrapRefused.stderr).toMatch(/token from "token" in the config file/);

    // The file is read only when a setting is still missing, and then a broken one stops the command.
    const brokenHome = path.join(dir, "config-broken");
    mkdirSync(path.join(brokenHome, "artifactd"), { recursive: true });
    writeFileSync(path.join(brokenHome, "artifactd", "config.json"), "{ url: ");
    expect((await cli(["ls"], { env: { XDG_CONFIG_HOME: brokenHome } })).code).toBe(0);
    const broken = await cli(["ls"], { env: { XDG_CONFIG_HOME: brokenHome, ARTIFACTD_TOKEN: undefined } });
    expect(broken.code).toBe(2);
    expect(broken.stderr).toMatch(/config\.json is not valid JSON/);
  }, 120_000);

  it("sends the bootstrap token only to the embedded service's own loopback address, never to another URL", async () => {
    const dataDir = path.join(dir, "bootstrap-data");
    mkdirSync(dataDir, { recursive: true });
    writeFileSync(path.join(dataDir, "bootstrap-token"), `${t.tokens.alpha}\n`);
    const port = new URL(t.url).port;
    const bootstrapOnly = (url: string, listen: string | undefined) =>
      cli(["ls", "--url", url], { env: { ARTIFACTD_TOKEN: undefined, ARTIFACTD_URL: undefined, ARTIFACTD_DATA_DIR: dataDir, ARTIFACTD_LISTEN: listen } });

    // Listeners that would receive whatever the command sends: one on loopback at a port the embedded service does not use,
    // and one on this machine's first non-loopback address, if it has one.
    const connections: string[] = [];
    const listeners: net.Server[] = [];
    const listenOn = async (host: string) => {
      const server = net.createServer((socket) => {
        connections.push(host);
        socket.destroy();
      });
      await new Promise<void>((resolve) => server.listen(0, host, resolve));
      listeners.push(server);
      return (server.address() as net.AddressInfo).port;
    };
    try {
      const strangerPort = await listenOn("127.0.0.1");
      const outside = Object.values(os.networkInterfaces())
        .flat()
        .find((a) => a && a.family === "IPv4" && !a.internal)?.address;
      const refusals: [url: string, listen: string | undefined, why: RegExp][] = [
        [
          `http://127.0.0.1:${strangerPort}`,
          `127.0.0.1:${port}`,
          new RegExp(`listens on port ${port} \\(ARTIFACTD_LISTEN=127\\.0\\.0\\.1:${port}\\), not ${strangerPort}`),
        ],
        [
          `http://127.0.0.1:${strangerPort}`,
          undefined,
          new RegExp(`listens on port 8080 \\(ARTIFACTD_LISTEN=127\\.0\\.0\\.1:8080, the default\\), not ${strangerPort}`),
        ],
        ["http://artifacts.example.invalid", "0.0.0.0:80", /this host is not loopback/],
        ...(outside ? [[`http://${outside}:${await listenOn(outside)}`, "0.0.0.0:0", /this host is not loopback/] as [string, string, RegExp]] : []),
      ];
      for (const [url, listen, why] of refusals) {
        const refused = await bootstrapOnly(url, listen);
        expect(refused.code, url).toBe(4);
        expect(refused.stdout.toString()).toBe("");
        expect(refused.stderr).toMatch(/not sending the bootstrap token from .*bootstrap-token/);
        expect(refused.stderr).toMatch(why);
        expect(refused.stderr).toMatch(/--token or ARTIFACTD_TOKEN/);
      }
      expect(connections).toEqual([]);
      // Given explicitly, a token goes wherever the URL says: the listener records the connections (the client retries).
      await cli(["ls", "--url", `http://127.0.0.1:${strangerPort}`, "--token", `adt_${"z".repeat(43)}`]);
      expect(connections).toContain("127.0.0.1");
    } finally {
      for (const server of listeners) server.close();
    }

    // The embedded service's own address works, by any loopback name; with ARTIFACTD_LISTEN's port 0, any loopback port.
    for (const [url, listen] of [
      [`http://127.0.0.1:${port}`, `127.0.0.1:${port}`],
      [`http://localhost:${port}`, `[::]:${port}`],
      [`http://127.1:${port}`, "127.0.0.1:0"],
    ] as const) {
      const run = await bootstrapOnly(url, listen);
      expect(run.stderr, url).toBe("");
      expect(run.code).toBe(0);
    }
  });

  /** Runs a shell command under a pseudo-terminal (util-linux `script`): what the terminal showed, standard output and error together. */
  const underTerminal = (command: string, env: Record<string, string | undefined> = {}) =>
    new Promise<{ code: number | null; output: string }>((resolve) => {
      const child = spawn("script", ["-qfec", command, "/dev/null"], { cwd: dir, env: environment(env), stdio: ["pipe", "pipe", "inherit"] });
      let output = "";
      child.stdout.on("data", (d: Buffer) => (output += d.toString("latin1")));
      child.stdin.end();
      child.on("exit", (code) => resolve({ code, output }));
    });

  it("draws progress bars with rate and ETA on a terminal's standard error; none with --json, --quiet or no terminal", async () => {
    // 17 MiB through a relay held to 8 MiB/s: two seconds each way, long enough for the bar to be redrawn with a
    // rate and an ETA. Above 16 MiB, so put goes through the SDK's resumable upload session.
    const relay = await startThrottledRelay(t.url, 8 * MiB);
    let id = "";
    try {
      const data = randomBytes(17 * MiB);
      writeFileSync(path.join(dir, "slow.bin"), data);
      const slow = { ARTIFACTD_URL: relay.url };
      const rate = String.raw`\d+(\.\d+)? [KMG]iB\/s`;
      const frame = (label: string) => new RegExp(String.raw`\r${label} \[=*>? *\] +[1-9]\d?% +\d+\.\d [KM]iB \/ 17\.0 MiB +${rate}  ETA \d+:\d\d`);
      const last = (label: string) => new RegExp(String.raw`\r${label}  17\.0 MiB in \d+\.\d s \(${rate}\)\x1b\[K\r\n`);

      const put = await underTerminal(`${NODE} ${MAIN} put slow.bin --kind model`, slow);
      expect(put.code).toBe(0);
      expect(put.output).toMatch(frame("put slow\\.bin"));
      expect(put.output).toMatch(last("put slow\\.bin"));
      id = /\b(art_[0-9a-z]{26})\r\n/.exec(put.output)![1]!;

      const get = await underTerminal(`${NODE} ${MAIN} get ${id} -o slow-copy.bin`, slow);
      expect(get.code).toBe(0);
      expect(get.output).toMatch(frame("get slow-copy\\.bin"));
      expect(get.output).toMatch(last("get slow-copy\\.bin"));
      expect(get.output).toMatch(/\r\nslow-copy\.bin\r\n$/);
      expect(readFileSync(path.join(dir, "slow-copy.bin")).equals(data)).toBe(true);

      // cat: the bar goes to the terminal (standard error), the content alone to standard output.
      const cat = await underTerminal(`${NODE} ${MAIN} cat ${id} > slow-cat.bin`, slow);
      expect(cat.code).toBe(0);
      expect(cat.output).toMatch(frame("cat slow\\.bin"));
      expect(readFileSync(path.join(dir, "slow-cat.bin")).equals(data)).toBe(true);

      // Standard input: the total is unknown, so bytes and rate only.
      const piped = await underTerminal(`${NODE} ${MAIN} put - --kind model < slow.bin`, slow);
      expect(piped.code).toBe(0);
      expect(piped.output).toMatch(new RegExp(String.raw`\rput -  \d+\.\d [KM]iB +${rate}\x1b\[K`));
      expect(piped.output).not.toMatch(/ETA|%/);

      // Ctrl-C during a transfer: exit 130, and no partial file is left behind.
      const interrupted = start(["get", id, "-o", "interrupted.bin"], { env: slow });
      // Interrupted once its partial file exists, i.e. mid-transfer (the relay is slow).
      await vi.waitFor(() => expect(readdirSync(dir).some((name) => name.startsWith("interrupted.bin.partial-"))).toBe(true), {
        timeout: 20_000,
        interval: 50,
      });
      interrupted.child.kill("SIGINT");
      const stopped = await interrupted.done;
      expect(stopped).toMatchObject({ code: 130, stderr: "artifactd: interrupted\n" });
      expect(stopped.stdout.toString()).toBe("");
      expect(readdirSync(dir).filter((name) => name.startsWith("interrupted.bin"))).toEqual([]);
    } finally {
      await relay.close();
    }

    // On a terminal too, --quiet and --json draw nothing: the output is the result alone.
    const quiet = await underTerminal(`${NODE} ${MAIN} get ${id} -o quiet.bin -q`);
    expect(quiet).toEqual({ code: 0, output: "quiet.bin\r\n" });
    const asJson = await underTerminal(`${NODE} ${MAIN} put slow.bin --kind model --json`);
    expect(asJson.code).toBe(0);
    expect(asJson.output).not.toMatch(/\r(?!\n)|iB\/s/);
    expect(JSON.parse(asJson.output).artifact.blake3).toBe(blake3Hex(readFileSync(path.join(dir, "slow.bin"))));
    // Without a terminal: nothing on standard error (the first test checks put and get as well).
    const plain = await cli(["put", "slow.bin", "--kind", "model"]);
    expect(plain).toMatchObject({ code: 0, stderr: "" });
  });
});

/** Every path under root with its type and content, to compare two trees. */
function snapshot(root: string): Record<string, string> {
  const result: Record<string, string> = {};
  for (const entry of readdirSync(root, { recursive: true, withFileTypes: true })) {
    const full = path.join(entry.parentPath, entry.name);
    const relative = path.relative(root, full);
    result[relative] = entry.isDirectory() ? "dir" : `file ${blake3Hex(readFileSync(full))}`;
  }
  return result;
}

/** A loopback port that was free a moment ago, with nothing listening on it. */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/**
 * A TCP relay held to about `bytesPerSecond` each way: after relaying a
 * read, it stops reading from that side for as long as those bytes take at
 * that rate.
 */
async function startThrottledRelay(targetUrl: string, bytesPerSecond: number): Promise<{ url: string; close(): Promise<void> }> {
  const target = new URL(targetUrl);
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port), target.hostname);
    const closeBoth = () => {
      client.destroy();
      upstream.destroy();
    };
    for (const [from, to] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      sockets.add(from);
      from.on("data", (data: Buffer) => {
        from.pause();
        to.write(data);
        setTimeout(() => from.resume(), (data.byteLength / bytesPerSecond) * 1000);
      });
      from.on("close", closeBoth);
      from.on("error", closeBoth);
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
