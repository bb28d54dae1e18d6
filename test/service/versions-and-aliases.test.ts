import { Code, ConnectError, type Client } from "@connectrpc/connect";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { Status, Storage } from "@artifactd/api/artifacts/v1/artifact_pb.js";
import { EventType, type ArtifactService, type UploadRequestSchema } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import { createApiToken } from "../../src/service/api-tokens.ts";
import { expectCode } from "../support/expect-code.ts";
import { BACKENDS, startTestApp, type Backend, type TestApp } from "../support/test-app.ts";
import { describeOn } from "../support/test-backends.ts";
import { openLockWatcher } from "../support/lock-waiters.ts";

/**
 * Versions, aliases and references (ArtifactSpec.versioned, SetAlias,
 * DeleteAlias, ListVersions, ListAliasHistory, BatchGetArtifacts, and every
 * call that takes an id taking a reference too), end to end over gRPC.
 */

type ArtifactsClient = Client<typeof ArtifactService>;
type UploadInit = MessageInitShape<typeof UploadRequestSchema>;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const unique = (base: string) => `${base}-${Math.random().toString(36).slice(2, 10)}`;

async function* uploadStream(messages: UploadInit[]): AsyncIterable<UploadInit> {
  yield* messages;
}

/** Saves one version of `name` (inline text); its artifact. */
async function saveVersion(client: ArtifactsClient, name: string, text = name, extra: { project?: string; runId?: string } = {}) {
  const { artifact } = await client.saveInline({
    spec: { kind: "dataset", name, versioned: true, project: extra.project ?? "", provenance: { runId: extra.runId ?? "" } },
    content: { case: "text", value: text },
  });
  return artifact!;
}

async function allVersions(client: ArtifactsClient, name: string, project = "", includeDeleted = false) {
  const versions = [];
  let pageToken = "";
  do {
    const page = await client.listVersions({ name, project, pageSize: 7, pageToken, includeDeleted });
    versions.push(...page.versions);
    pageToken = page.nextPageToken;
  } while (pageToken);
  return versions;
}

async function downloadText(client: ArtifactsClient, id: string) {
  let artifactId = "";
  const parts: Uint8Array[] = [];
  for await (const response of client.download({ id })) {
    if (response.message.case === "artifact") artifactId = response.message.value.id;
    else if (response.message.case === "chunk") parts.push(response.message.value);
  }
  return { artifactId, text: Buffer.concat(parts).toString("utf8") };
}

describe.each(BACKENDS)("versions and aliases on %s", (backend: Backend) => {
  let t: TestApp;
  let client: ArtifactsClient;
  beforeAll(async () => {
    // Small declared uploads are kept in their row (the inline upload path); undeclared ones go to the blob store.
    const env: Record<string, string> = { ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0", ARTIFACTD_UPLOAD_INLINE_MAX_BYTES: "64KiB" };
    if (backend === "postgres+minio") env.ARTIFACTD_DIRECT_DOWNLOAD_ENDPOINT = inject("minio").endpoint;
    t = await startTestApp(backend, env);
    client = t.client();
  });
  afterAll(async () => {
    await t?.close();
  });

  it("numbers the versions of a name 1, 2, 3… per project, on every path that creates an artifact", async () => {
    const name = unique("orders");
    const first = await saveVersion(client, name, "one");
    expect([first.version, first.project, first.aliases]).toEqual([1n, "", ["latest"]]);
    // Streaming upload (blob), and the same content again (deduplicated).
    const header = (expectedSize?: bigint): UploadInit => ({
      message: { case: "header", value: { spec: { kind: "dataset", name, versioned: true }, ...(expectedSize === undefined ? {} : { expectedSize }) } },
    });
    const bytes = new TextEncoder().encode("uploaded bytes");
    const streamed = await client.upload(uploadStream([header(), { message: { case: "chunk", value: bytes } }]));
    const again = await client.upload(uploadStream([header(), { message: { case: "chunk", value: bytes } }]));
    expect(again.deduplicated).toBe(true);
    // An upload session.
    const { session } = await client.createUploadSession({ spec: { kind: "dataset", name, versioned: true }, partSize: 5n * 1024n * 1024n });
    await client.uploadPart({ sessionId: session!.sessionId, partNumber: 1, data: new TextEncoder().encode("from a session") });
    const completed = await client.completeUploadSession({ sessionId: session!.sessionId });
    // A small upload whose size is declared: kept in its row.
    const small = await client.upload(uploadStream([header(BigInt(bytes.length)), { message: { case: "chunk", value: bytes } }]));
    expect(small.artifact!.storage).toBe(Storage.INLINE);
    expect([streamed.artifact!.version, again.artifact!.version, completed.artifact!.version, small.artifact!.version]).toEqual([2n, 3n, 4n, 5n]);
    // Another project's name of the same spelling counts on its own; an unversioned save gets no number.
    const other = await saveVersion(client, name, "elsewhere", { project: "team-b" });
    expect([other.version, other.project]).toEqual([1n, "team-b"]);
    const plain = (await client.saveInline({ spec: { kind: "dataset", name }, content: { case: "text", value: "x" } })).artifact!;
    expect([plain.version, plain.aliases]).toEqual([0n, []]);

    const versions = await allVersions(client, name);
    expect(versions.map((v) => v.version)).toEqual([5n, 4n, 3n, 2n, 1n]);
    expect(versions.map((v) => v.aliases)).toEqual([["latest"], [], [], [], []]);
  });

  it("gives a number back when the save rolls back, leaving no gap", async () => {
    const name = unique("rollback");
    await saveVersion(client, name);
    // Valid JSON whose \u0000 jsonb refuses at the insert: after the number was taken, in the same transaction.
    await expectCode(
      client.saveInline({ spec: { kind: "dataset", name, versioned: true }, content: { case: "json", value: '{"a":"\\u0000"}' } }),
      Code.InvalidArgument,
    );
    const next = await saveVersion(client, name);
    expect(next.version).toBe(2n);
  });

  it("numbers concurrent saves of one name without gaps or repeats", async () => {
    const name = unique("busy");
    const saved = await Promise.all(Array.from({ length: 24 }, (_, i) => saveVersion(client, name, `v${i}`)));
    expect(saved.map((a) => Number(a.version)).sort((a, b) => a - b)).toEqual(Array.from({ length: 24 }, (_, i) => i + 1));
  });

  it("resolves latest to the newest version not deleted, and moves it back when that is deleted", async () => {
    const name = unique("latest");
    const v1 = await saveVersion(client, name, "one");
    const v2 = await saveVersion(client, name, "two");
    expect((await client.getArtifact({ id: `${name}:latest` })).artifact!.id).toBe(v2.id);
    expect((await client.getArtifact({ id: v1.id })).artifact!.aliases).toEqual([]);
    await client.deleteArtifact({ id: `${name}:latest` });
    const now = await client.getArtifact({ id: `${name}:latest` });
    expect([now.artifact!.id, now.artifact!.aliases]).toEqual([v1.id, ["latest"]]);
    // The deleted version is still found by number, for audit, and listed only when asked.
    expect((await client.getArtifact({ id: `${name}@v2` })).artifact!.deletedAt).toBeDefined();
    expect((await allVersions(client, name)).map((v) => v.version)).toEqual([1n]);
    expect((await allVersions(client, name, "", true)).map((v) => v.version)).toEqual([2n, 1n]);
    await client.deleteArtifact({ id: v1.id });
    await expectCode(
      client.getArtifact({ id: `${name}:latest` }),
      Code.NotFound,
      new RegExp(`"${name}" has no latest version: every version of it is deleted`),
    );
  });

  it("sets, moves and compares-and-sets aliases, recording each move with who and why", async () => {
    const name = unique("model");
    const v1 = await saveVersion(client, name);
    const v2 = await saveVersion(client, name);
    const set = await client.setAlias({ artifactId: `${name}@v1`, alias: "production", reason: "first release" });
    expect(set.artifact!.id).toBe(v1.id);
    expect(set.move).toMatchObject({
      name,
      alias: "production",
      fromArtifactId: "",
      toArtifactId: v1.id,
      fromVersion: 0n,
      toVersion: 1n,
      movedBy: "alpha-ci",
      reason: "first release",
    });
    expect((await client.getArtifact({ id: `${name}:production` })).artifact!.aliases).toEqual(["production"]);

    // Compare-and-set: a writer that read an older state is refused, and nothing moves.
    await expectCode(client.setAlias({ artifactId: v2.id, alias: "production", expectedArtifactId: "" }), Code.Aborted, /points at .* not nothing as expected/);
    await expectCode(client.setAlias({ artifactId: v2.id, alias: "production", expectedArtifactId: v2.id }), Code.Aborted, new RegExp(`points at ${v1.id}`));
    expect((await client.getArtifact({ id: `${name}:production` })).artifact!.id).toBe(v1.id);
    const moved = await client.setAlias({ artifactId: `artifact://${name}@v2`, alias: "production", expectedArtifactId: v1.id, reason: "better" });
    expect(moved.move).toMatchObject({ fromArtifactId: v1.id, toArtifactId: v2.id, fromVersion: 1n, toVersion: 2n });
    expect((await client.getArtifact({ id: `${name}:production` })).artifact!.aliases).toEqual(["latest", "production"]);
    // A create-only alias succeeds once.
    await client.setAlias({ artifactId: v1.id, alias: "baseline", expectedArtifactId: "" });
    await expectCode(client.setAlias({ artifactId: v1.id, alias: "baseline", expectedArtifactId: "" }), Code.Aborted);

    const removed = await client.deleteAlias({ name, alias: "baseline", reason: "not needed" });
    expect(removed.move).toMatchObject({ fromArtifactId: v1.id, toArtifactId: "", fromVersion: 1n, toVersion: 0n });
    await expectCode(client.deleteAlias({ name, alias: "baseline" }), Code.NotFound, new RegExp(`"${name}" has no alias "baseline"`));

    const history = await client.listAliasHistory({ name });
    expect(history.moves.map((m) => [m.alias, m.fromVersion, m.toVersion, m.reason])).toEqual([
      ["baseline", 1n, 0n, "not needed"],
      ["baseline", 0n, 1n, ""],
      ["production", 1n, 2n, "better"],
      ["production", 0n, 1n, "first release"],
    ]);
    expect(history.moves.every((m) => m.movedBy === "alpha-ci" && m.movedAt !== undefined)).toBe(true);
    const production = await client.listAliasHistory({ name, alias: "production", pageSize: 1 });
    expect(production.moves.map((m) => m.toVersion)).toEqual([2n]);
    const older = await client.listAliasHistory({ name, alias: "production", pageSize: 1, pageToken: production.nextPageToken });
    expect([older.moves.map((m) => m.toVersion), older.nextPageToken]).toEqual([[1n], ""]);
  });

  it("refuses aliases that cannot be: latest, malformed, on unversioned or deleted artifacts", async () => {
    const name = unique("refuse");
    const v1 = await saveVersion(client, name);
    await expectCode(client.setAlias({ artifactId: v1.id, alias: "latest" }), Code.InvalidArgument, /"latest" follows the newest version/);
    await expectCode(client.setAlias({ artifactId: v1.id, alias: "v2" }), Code.InvalidArgument, /names a version/);
    await expectCode(client.setAlias({ artifactId: v1.id, alias: "Prod" }), Code.InvalidArgument, /alias "Prod" is not a valid alias/);
    await expectCode(client.setAlias({ artifactId: v1.id, alias: "prod", reason: "r".repeat(513) }), Code.InvalidArgument, /at most 512/);
    await expectCode(client.setAlias({ artifactId: v1.id, alias: "prod", expectedArtifactId: "nope" }), Code.InvalidArgument, /expected_artifact_id "nope"/);
    const plain = (await client.saveInline({ spec: { kind: "dataset", name: "plain" }, content: { case: "text", value: "p" } })).artifact!;
    await expectCode(client.setAlias({ artifactId: plain.id, alias: "prod" }), Code.FailedPrecondition, /saved without versioning/);
    const v2 = await saveVersion(client, name);
    await client.deleteArtifact({ id: v2.id });
    await expectCode(client.setAlias({ artifactId: v2.id, alias: "prod" }), Code.FailedPrecondition, /is deleted/);
    await expectCode(client.listVersions({ name: "" }), Code.InvalidArgument, /name "" is not a versioned name/);
    await expectCode(client.listVersions({ name, pageToken: "garbage" }), Code.InvalidArgument, /page_token/);
    await expectCode(client.listVersions({ name: unique("nothing") }), Code.NotFound, /there is no versioned artifact named/);
    await expectCode(client.listAliasHistory({ name, project: "-x" }), Code.InvalidArgument, /project "-x" is not valid/);
  });

  it("resolves references in every call that takes an id, and in lineage inputs", async () => {
    const name = unique("res");
    const v1 = await saveVersion(client, name, "first");
    const v2 = await saveVersion(client, name, "second");
    await client.setAlias({ artifactId: v1.id, alias: "stable" });

    for (const ref of [`${name}:stable`, `${name}@v1`, `${name}@1`, `artifact://${name}:stable`, `artifact://${v1.id}`]) {
      expect((await client.getArtifact({ id: ref })).artifact!.id, ref).toBe(v1.id);
    }
    expect(await downloadText(client, `${name}:latest`)).toEqual({ artifactId: v2.id, text: "second" });
    const link = await client.createDownloadUrl({ id: `${name}:stable` });
    expect(link.artifactId).toBe(v1.id);
    expect(await (await fetch(link.url)).text()).toBe("first");

    // Lineage inputs by reference are recorded as the ids they resolved to.
    const derived = (
      await client.saveInline({
        spec: {
          kind: "report",
          inputs: [
            { artifactId: `${name}:stable`, role: "source" },
            { artifactId: `artifact://${name}@v2`, role: "other" },
          ],
        },
        content: { case: "json", value: "{}" },
      })
    ).artifact!;
    expect(derived.inputs.map((i) => i.artifactId)).toEqual([v1.id, v2.id]);
    const lineage = await client.getLineage({ id: `${name}:stable`, depth: 1 });
    expect(lineage.descendants.map((a) => a.id)).toEqual([derived.id]);
    await expectCode(
      client.saveInline({ spec: { kind: "report", inputs: [{ artifactId: `${name}:gone` }] }, content: { case: "text", value: "x" } }),
      Code.NotFound,
      new RegExp(`input ${name}:gone: "${name}" has no alias "gone"`),
    );
    await expectCode(
      client.saveInline({ spec: { kind: "report", inputs: [{ artifactId: `${name}:stable` }, { artifactId: v1.id }] }, content: { case: "text", value: "x" } }),
      Code.InvalidArgument,
      /which another input names too/,
    );

    expect((await client.setPinned({ id: `${name}:latest`, pinned: true })).artifact!.id).toBe(v2.id);
    await client.setPinned({ id: `${name}@v2`, pinned: false });
    expect((await client.setStatus({ id: `${name}@v2`, status: Status.REVIEW })).artifact!.status).toBe(Status.REVIEW);

    const batch = await client.batchGetArtifacts({
      ids: [`${name}:stable`, v2.id, `${name}@v9`, `${name}:nope`, "art_00000000000000000000000000", v1.id],
      includeContent: true,
    });
    expect(batch.results.map((r) => [r.requested, r.artifact?.id ?? "", r.notFound])).toEqual([
      [`${name}:stable`, v1.id, ""],
      [v2.id, v2.id, ""],
      [`${name}@v9`, "", `"${name}" has no version 9 (its versions are 1–2)`],
      [`${name}:nope`, "", `"${name}" has no alias "nope"`],
      ["art_00000000000000000000000000", "", "artifact art_00000000000000000000000000 does not exist"],
      [v1.id, v1.id, ""],
    ]);
    expect(batch.results[0]!.artifact!.inlineContent?.content).toEqual({ case: "text", value: "first" });
    await expectCode(
      client.batchGetArtifacts({ ids: [v1.id, "orders@v0"] }),
      Code.InvalidArgument,
      /ids\[1\] "orders@v0" is not an artifact id or reference: version "v0"/,
    );

    // Delete by reference last: it takes the alias with it only when forced.
    await expectCode(
      client.deleteArtifact({ id: `${name}:stable` }),
      Code.FailedPrecondition,
      /alias "stable" of .* points at: move it first, or delete with force/,
    );
  });

  it("answers NOT_FOUND naming what is missing, and INVALID_ARGUMENT for a malformed reference", async () => {
    const name = unique("missing");
    await saveVersion(client, name);
    await expectCode(client.getArtifact({ id: `${unique("never")}:latest` }), Code.NotFound, /there is no versioned artifact named "never-/);
    await expectCode(
      client.getArtifact({ id: `${name}@v5` }),
      Code.NotFound,
      new RegExp(`id ${name}@v5: "${name}" has no version 5 \\(its versions are 1–1\\)`),
    );
    await expectCode(client.getArtifact({ id: `${name}:prod` }), Code.NotFound, new RegExp(`"${name}" has no alias "prod"`));
    await expectCode(client.getArtifact({ id: `other/${name}:latest` }), Code.NotFound, new RegExp(`no versioned artifact named "other/${name}"`));
    for (const [ref, problem] of [
      ["orders", /neither an id nor names a version or alias/],
      ["orders@v0", /version "v0"/],
      ["orders:Prod", /alias "Prod"/],
      ["a/b/c:latest", /name "b\/c"/],
      ["artifact://", /neither an id/],
    ] as const) {
      await expectCode(client.getArtifact({ id: ref }), Code.InvalidArgument, problem);
      await expectCode(client.deleteArtifact({ id: ref }), Code.InvalidArgument, problem);
    }
    await expectCode(client.getLineage({ id: "orders" }), Code.InvalidArgument, /^id "orders" is not an artifact id or reference/);
    await expectCode(client.createDownloadUrl({ id: `${name}:prod` }), Code.NotFound, /has no alias "prod"/);
  });

  it("refuses to delete what an alias points at, unless forced: then removes the aliases and records it", async () => {
    const name = unique("del");
    const v1 = await saveVersion(client, name);
    await saveVersion(client, name);
    await client.setAlias({ artifactId: v1.id, alias: "production" });
    await client.setAlias({ artifactId: v1.id, alias: "approved" });
    await expectCode(
      client.deleteArtifact({ id: v1.id }),
      Code.FailedPrecondition,
      new RegExp(`artifact ${v1.id} is what aliases "approved", "production" of "${name}" point at: move them first, or delete with force to remove them too`),
    );
    expect((await client.getArtifact({ id: v1.id })).artifact!.deletedAt).toBeUndefined();
    const deleted = await client.deleteArtifact({ id: `${name}:production`, force: true });
    expect([deleted.artifact!.id, deleted.artifact!.aliases]).toEqual([v1.id, []]);
    await expectCode(client.getArtifact({ id: `${name}:production` }), Code.NotFound, /has no alias "production"/);
    const history = await client.listAliasHistory({ name });
    expect(history.moves.slice(0, 2).map((m) => [m.alias, m.fromArtifactId, m.toArtifactId, m.reason])).toEqual([
      ["production", v1.id, "", "the artifact was deleted with force"],
      ["approved", v1.id, "", "the artifact was deleted with force"],
    ]);
    // Only latest pointing at it does not hold a delete.
    await client.deleteArtifact({ id: `${name}:latest` });
  });

  it("spares the versions an alias points at when a run is archived, as it spares pinned ones", async () => {
    const run = unique("archived-run");
    const name = unique("arch");
    const v1 = await saveVersion(client, name, "1", { runId: run });
    const v2 = await saveVersion(client, name, "2", { runId: run });
    await client.setAlias({ artifactId: v1.id, alias: "prod" });
    expect((await client.archiveRun({ runId: run })).deletedCount).toBe(1n);
    expect((await client.getArtifact({ id: v2.id })).artifact!.deletedAt).toBeDefined();
    const kept = (await client.getArtifact({ id: `${name}:prod` })).artifact!;
    expect([kept.id, kept.deletedAt, kept.aliases]).toEqual([v1.id, undefined, ["latest", "prod"]]);
  });

  // Postgres only: there an archive can run while a SetAlias is still committing (the embedded database runs one
  // transaction at a time).
  it.runIf(backend === "postgres+minio")(
    "leaves alone a version whose alias is being set while a run is archived, and keeps it once the alias lands",
    async () => {
      const run = unique("archived-while-aliased");
      const name = unique("racing");
      const v1 = await saveVersion(client, name, "1", { runId: run });
      const v2 = await saveVersion(client, name, "2", { runId: run });
      // What SetAlias does, stopped before its commit: the version locked FOR SHARE, its alias row written.
      const setAlias = await openLockWatcher(t.databaseUrl!);
      try {
        await setAlias.query("begin");
        await setAlias.query(`select id from artifacts where id = '${v1.id}' for share`);
        await setAlias.query(
          `insert into artifact_aliases (tenant_id, project, name, alias, artifact_id, moved_by, moved_at) values ('alpha', '', '${name}', 'held', '${v1.id}', 'test', now())`,
        );
        // The alias commits a moment after the archive began. The archive waits for the version's lock; a single
        // UPDATE would then re-check the row with its first snapshot, blind to the alias, and delete it.
        const archiving = client.archiveRun({ runId: run });
        const committed = new Promise((resolve) => setTimeout(resolve, 300)).then(() => setAlias.query("commit"));
        expect((await archiving).deletedCount).toBe(1n);
        await committed;
      } finally {
        await setAlias.close();
      }
      expect((await client.getArtifact({ id: v2.id })).artifact!.deletedAt).toBeDefined();
      const held = (await client.getArtifact({ id: `${name}:held` })).artifact!;
      expect([held.id, held.deletedAt]).toEqual([v1.id, undefined]);
      // The next archive sees the alias and spares the version for good.
      expect((await client.archiveRun({ runId: run })).deletedCount).toBe(0n);
      expect((await client.getArtifact({ id: v1.id })).artifact!.deletedAt).toBeUndefined();
    },
  );

  it("approves and moves an alias in one transaction, or does neither", async () => {
    const name = unique("approve");
    const v1 = await saveVersion(client, name);
    const v2 = await saveVersion(client, name);
    await client.setStatus({ id: v1.id, status: Status.REVIEW });
    const approved = await client.setStatus({ id: `${name}@v1`, status: Status.APPROVED, moveAlias: "production" });
    expect(approved.artifact).toMatchObject({ id: v1.id, status: Status.APPROVED, aliases: ["production"] });
    expect(approved.aliasMove).toMatchObject({ alias: "production", toArtifactId: v1.id, movedBy: "alpha-ci" });
    // v2 is a draft: approving it fails, and the alias stays where it was.
    await expectCode(client.setStatus({ id: v2.id, status: Status.APPROVED, moveAlias: "production" }), Code.FailedPrecondition, /draft/);
    expect((await client.getArtifact({ id: `${name}:production` })).artifact!.id).toBe(v1.id);
    expect((await client.getArtifact({ id: v2.id })).artifact!.status).toBe(Status.DRAFT);
    await expectCode(
      client.setStatus({ id: v2.id, status: Status.REVIEW, moveAlias: "production" }),
      Code.InvalidArgument,
      /move_alias is only for status STATUS_APPROVED/,
    );
    await expectCode(client.setStatus({ id: v2.id, status: Status.APPROVED, moveAlias: "latest" }), Code.InvalidArgument, /"latest"/);
    const plain = (await client.saveInline({ spec: { kind: "dataset" }, content: { case: "text", value: "p" } })).artifact!;
    await client.setStatus({ id: plain.id, status: Status.REVIEW });
    await expectCode(client.setStatus({ id: plain.id, status: Status.APPROVED, moveAlias: "production" }), Code.FailedPrecondition, /saved without versioning/);
    // The failed move rolled the approval back with it.
    expect((await client.getArtifact({ id: plain.id })).artifact!.status).toBe(Status.REVIEW);
  });

  it("filters lists by exact project and name, with each artifact's aliases", async () => {
    const name = unique("listed");
    const a1 = await saveVersion(client, name, "a1", { project: "alpha-proj" });
    const a2 = await saveVersion(client, name, "a2", { project: "alpha-proj" });
    await saveVersion(client, name, "b1", { project: "beta-proj" });
    await saveVersion(client, `${name}x`, "prefix", { project: "alpha-proj" });
    await client.setAlias({ artifactId: a1.id, alias: "gold" });
    const page = await client.listArtifacts({ filter: { project: "alpha-proj", name } });
    expect(page.artifacts.map((a) => [a.id, a.version, a.aliases])).toEqual([
      [a2.id, 2n, ["latest"]],
      [a1.id, 1n, ["gold"]],
    ]);
    expect((await client.getArtifact({ id: `alpha-proj/${name}:gold` })).artifact!.id).toBe(a1.id);
    expect((await client.listArtifacts({ filter: { name, project: "beta-proj" } })).artifacts.map((a) => a.project)).toEqual(["beta-proj"]);
    await expectCode(client.listArtifacts({ filter: { name: "a\u0000b" } }), Code.InvalidArgument, /filter\.name contains a NUL character/);
  });

  it("keeps names, aliases and versions within the tenant", async () => {
    const name = unique("mine");
    const v1 = await saveVersion(client, name);
    await client.setAlias({ artifactId: v1.id, alias: "prod" });
    const beta = t.client(t.tokens.beta);
    await expectCode(beta.getArtifact({ id: `${name}:prod` }), Code.NotFound, /there is no versioned artifact named/);
    await expectCode(beta.getArtifact({ id: `${name}@v1` }), Code.NotFound);
    await expectCode(beta.listVersions({ name }), Code.NotFound);
    await expectCode(beta.listAliasHistory({ name }), Code.NotFound);
    await expectCode(beta.setAlias({ artifactId: v1.id, alias: "prod" }), Code.NotFound);
    await expectCode(beta.deleteAlias({ name, alias: "prod" }), Code.NotFound);
    expect((await beta.batchGetArtifacts({ ids: [v1.id, `${name}:prod`] })).results.map((r) => r.artifact)).toEqual([undefined, undefined]);
    // beta's own versions of the same name start at 1.
    expect((await saveVersion(beta, name)).version).toBe(1n);
    expect((await client.getArtifact({ id: `${name}:latest` })).artifact!.id).toBe(v1.id);
  });

  it("lets read-only tokens read versions and history but not move aliases", async () => {
    const name = unique("scoped");
    const v1 = await saveVersion(client, name);
    await client.setAlias({ artifactId: v1.id, alias: "prod" });
    const reader = t.client((await createApiToken(t.app.metadata, "alpha", "reader", { scope: "read-only" })).token);
    expect((await reader.listVersions({ name })).versions.map((v) => v.id)).toEqual([v1.id]);
    expect((await reader.listAliasHistory({ name })).moves).toHaveLength(1);
    expect((await reader.batchGetArtifacts({ ids: [`${name}:prod`] })).results[0]!.artifact!.id).toBe(v1.id);
    expect((await reader.getArtifact({ id: `${name}:prod` })).artifact!.id).toBe(v1.id);
    await expectCode(reader.setAlias({ artifactId: v1.id, alias: "other" }), Code.PermissionDenied);
    await expectCode(reader.deleteAlias({ name, alias: "prod" }), Code.PermissionDenied);
  });

  it("caps BatchGetArtifacts at ARTIFACTD_MAX_BATCH_ITEMS", async () => {
    const ids = Array.from({ length: 1001 }, () => "art_00000000000000000000000000");
    await expectCode(client.batchGetArtifacts({ ids }), Code.InvalidArgument, /ids has 1001 entries; at most 1000 are allowed \(ARTIFACTD_MAX_BATCH_ITEMS\)/);
    expect((await client.batchGetArtifacts({ ids: ids.slice(1) })).results).toHaveLength(1000);
  });

  it("delivers alias moves to watchers, and a watcher resuming after them misses none", async () => {
    const run = unique("watch-run");
    const name = unique("watched");
    const v1 = await saveVersion(client, name, "1", { runId: run });
    const v2 = await saveVersion(client, name, "2", { runId: run });
    const seen: { type: string; id: string; alias: string; to: string; cursor: string }[] = [];
    const controller = new AbortController();
    const watching = (async () => {
      try {
        for await (const event of client.watchArtifacts({ filter: { provenance: { runId: run } } }, { signal: controller.signal })) {
          seen.push({
            type: EventType[event.type],
            id: event.artifact!.id,
            alias: event.aliasMove?.alias ?? "",
            to: event.aliasMove?.toArtifactId ?? "",
            cursor: event.cursor,
          });
        }
      } catch (error) {
        if (!controller.signal.aborted) throw error;
      }
    })();
    await sleep(300);
    await client.setAlias({ artifactId: v1.id, alias: "prod" });
    await client.setAlias({ artifactId: v2.id, alias: "prod" });
    await client.deleteAlias({ name, alias: "prod" });
    for (let i = 0; seen.length < 3 && i < 150; i++) await sleep(20);
    controller.abort();
    await watching;
    expect(seen.map(({ type, id, alias, to }) => ({ type, id, alias, to }))).toEqual([
      { type: "ALIAS_MOVED", id: v1.id, alias: "prod", to: v1.id },
      { type: "ALIAS_MOVED", id: v2.id, alias: "prod", to: v2.id },
      { type: "ALIAS_MOVED", id: v2.id, alias: "prod", to: "" },
    ]);
    // Resume after the first: the two later moves come back from the log, with their moves.
    const resumed: { alias: string; from: string; to: string }[] = [];
    const again = new AbortController();
    const resuming = (async () => {
      try {
        for await (const event of client.watchArtifacts({ filter: { provenance: { runId: run } }, resumeAfter: seen[0]!.cursor }, { signal: again.signal })) {
          resumed.push({ alias: event.aliasMove!.alias, from: event.aliasMove!.fromArtifactId, to: event.aliasMove!.toArtifactId });
        }
      } catch (error) {
        if (!again.signal.aborted) throw error;
      }
    })();
    for (let i = 0; resumed.length < 2 && i < 150; i++) await sleep(20);
    again.abort();
    await resuming;
    expect(resumed).toEqual([
      { alias: "prod", from: v1.id, to: v2.id },
      { alias: "prod", from: v2.id, to: "" },
    ]);
  });

  // Direct links need an S3 store: the folder backend offers none.
  it.skipIf(backend !== "postgres+minio")("resolves the reference of a direct-to-storage link and says which id it became", async () => {
    const name = unique("direct");
    const bytes = new TextEncoder().encode("direct bytes");
    const header: UploadInit = { message: { case: "header", value: { spec: { kind: "dataset", name, versioned: true } } } };
    const { artifact } = await client.upload(uploadStream([header, { message: { case: "chunk", value: bytes } }]));
    const link = await client.createDownloadUrl({ id: `artifact://${name}:latest`, directToStorage: true });
    expect([link.artifactId, link.artifact!.id, link.directToStorage]).toEqual([artifact!.id, artifact!.id, true]);
    const response = await fetch(link.url, { headers: link.headers });
    expect(Buffer.from(await response.arrayBuffer()).toString("utf8")).toBe("direct bytes");
  });
});

describeOn("postgres+minio")("versions numbered by two servers on one database", () => {
  let first: TestApp;
  let second: TestApp;
  beforeAll(async () => {
    first = await startTestApp("postgres+minio", { ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0" });
    second = await startTestApp("postgres+minio", {
      DATABASE_URL: first.databaseUrl!,
      ARTIFACTD_S3_BUCKET: first.bucket!,
      ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0",
    });
  });
  afterAll(async () => {
    await second?.closeApp();
    await first?.close();
  });

  it("gives 1..N exactly once across both, rolled-back saves among them leaving no gap", async () => {
    const name = unique("shared");
    // The tokens of each app are its own rows in the shared database: both are tenant alpha.
    const clients = [first.client(), second.client(first.tokens.alpha)];
    const saves = Array.from({ length: 40 }, (_, i) => {
      const client = clients[i % 2]!;
      if (i % 8 === 3) {
        // Refused by Postgres at the insert, after its number was taken: the number must come back.
        return client.saveInline({ spec: { kind: "dataset", name, versioned: true }, content: { case: "json", value: '{"bad":"\\u0000"}' } }).then(
          () => {
            throw new Error("the refused save succeeded");
          },
          (error: unknown) => {
            expect(ConnectError.from(error).code).toBe(Code.InvalidArgument);
            return undefined;
          },
        );
      }
      return saveVersion(client, name, `save ${i}`);
    });
    const saved = (await Promise.all(saves)).filter((a) => a !== undefined);
    expect(saved).toHaveLength(35);
    const numbers = saved.map((a) => Number(a.version)).sort((a, b) => a - b);
    expect(numbers).toEqual(Array.from({ length: 35 }, (_, i) => i + 1));
    const listed = await allVersions(second.client(first.tokens.alpha), name);
    expect(listed.map((v) => Number(v.version))).toEqual(Array.from({ length: 35 }, (_, i) => 35 - i));
    expect(new Set(listed.map((v) => v.id)).size).toBe(35);
    expect(listed[0]!.aliases).toEqual(["latest"]);
  });
});
