import { Code } from "@connectrpc/connect";
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { UploadRequestSchema } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { blake3Hex } from "../../src/blake3.ts";
import { createApiToken } from "../../src/service/api-tokens.ts";
import { expectCode } from "../support/expect-code.ts";
import { BACKENDS, startTestApp, type TestApp } from "../support/test-app.ts";

type UploadInit = MessageInitShape<typeof UploadRequestSchema>;

/**
 * Provenance.parent_run_id (stored, returned, filtered on by List, Search,
 * Best and Watch), RecordUsage and the usages GetLineage returns, and
 * GetArtifact's signed download link.
 */
describe.each(BACKENDS)("provenance, usages and download links on %s", (backend) => {
  let t: TestApp;
  let readOnly: string;
  const unique = () => Math.random().toString(36).slice(2, 10);
  beforeAll(async () => {
    // Lineage answers of at most 3 artifacts and 3 uses, so a test can go past the limit.
    t = await startTestApp(backend, { ARTIFACTD_MAX_LINEAGE_NODES: "3" });
    readOnly = (await createApiToken(t.app.metadata, "alpha", "usage-reader", { scope: "read-only" })).token;
  });
  afterAll(async () => {
    await t?.close();
  });

  const save = async (kind: string, provenance: Record<string, string>, extra: { name?: string; metrics?: Record<string, number> } = {}) =>
    (await t.client().saveInline({ spec: { kind, provenance, ...extra }, content: { case: "text", value: `made by ${kind}` } })).artifact!;

  describe("parent_run_id", () => {
    it("is stored and returned, on inline saves and uploads", async () => {
      const job = `job-${unique()}`;
      const inline = await save("summary", { runId: "step-1", parentRunId: job });
      expect(inline.provenance?.parentRunId).toBe(job);
      async function* messages(): AsyncIterable<UploadInit> {
        yield { message: { case: "header", value: { spec: { kind: "model", provenance: { runId: "step-2", parentRunId: job } } } } };
        yield { message: { case: "chunk", value: randomBytes(1000) } };
      }
      const uploaded = (await t.client().upload(messages())).artifact!;
      expect(uploaded.provenance?.parentRunId).toBe(job);
      const read = (await t.client().getArtifact({ id: uploaded.id })).artifact!;
      expect(read.provenance).toMatchObject({ runId: "step-2", parentRunId: job });
    });

    it("is checked like the other provenance fields", async () => {
      await expectCode(
        t.client().saveInline({ spec: { kind: "summary", provenance: { parentRunId: "x".repeat(257) } }, content: { case: "text", value: "" } }),
        Code.InvalidArgument,
        /spec\.provenance\.parent_run_id is 257 characters long; at most 256/,
      );
      await expectCode(
        t.client().listArtifacts({ filter: { provenance: { parentRunId: "a\u0000b" } } }),
        Code.InvalidArgument,
        /filter\.provenance\.parent_run_id contains a NUL/,
      );
    });

    it("narrows List, Search and Best to the job's artifacts", async () => {
      const job = `job-${unique()}`;
      const other = `job-${unique()}`;
      const a = await save("model", { runId: "s1", parentRunId: job }, { name: `${job} first`, metrics: { f1: 0.5 } });
      const b = await save("model", { runId: "s2", parentRunId: job }, { name: `${job} second`, metrics: { f1: 0.7 } });
      await save("model", { runId: "s3", parentRunId: other }, { name: `${job} elsewhere`, metrics: { f1: 0.9 } });
      await save("model", { runId: "s4" }, { name: `${job} loose`, metrics: { f1: 0.95 } });

      const listed = await t.client().listArtifacts({ filter: { provenance: { parentRunId: job } } });
      expect(listed.artifacts.map((x) => x.id)).toEqual([b.id, a.id]);
      const searched = await t.client().searchArtifacts({ query: job, filter: { provenance: { parentRunId: job } } });
      expect(searched.artifacts.map((x) => x.id).sort()).toEqual([a.id, b.id].sort());
      const best = await t.client().getBestArtifact({ kind: "model", metric: "f1", filter: { provenance: { parentRunId: job } } });
      expect(best.artifact!.id).toBe(b.id);
      // The same run id under another parent is not the job's.
      const both = await t.client().listArtifacts({ filter: { provenance: { parentRunId: other, runId: "s1" } } });
      expect(both.artifacts).toEqual([]);
    });

    it("narrows Watch to the job's events", async () => {
      const job = `job-${unique()}`;
      const controller = new AbortController();
      const seen: string[] = [];
      const watching = (async () => {
        try {
          for await (const event of t.client().watchArtifacts({ filter: { provenance: { parentRunId: job } } }, { signal: controller.signal })) {
            seen.push(event.artifact!.id);
            if (seen.length === 2) controller.abort();
          }
        } catch (error) {
          if (!controller.signal.aborted) throw error;
        }
      })();
      await new Promise((resolve) => setTimeout(resolve, 300));
      const first = await save("log", { parentRunId: job });
      await save("log", { parentRunId: `${job}-other` });
      const second = await save("log", { parentRunId: job });
      await Promise.race([watching, new Promise((_, reject) => setTimeout(() => reject(new Error(`watch saw ${seen.length} of 2 events`)), 10_000))]);
      expect(seen).toEqual([first.id, second.id]);
    });
  });

  describe("RecordUsage", () => {
    it("records a use once, returns it again unchanged, and GetLineage lists the uses oldest first", async () => {
      const model = await save("model", { runId: "train-1" });
      const first = (await t.client().recordUsage({ artifactId: model.id, runId: "eval-1", role: "evaluation-model" })).usage!;
      expect(first).toMatchObject({ artifactId: model.id, runId: "eval-1", role: "evaluation-model", recordedBy: "alpha-ci" });
      const again = (await t.client().recordUsage({ artifactId: model.id, runId: "eval-1", role: "evaluation-model" })).usage!;
      expect(again.recordedAt).toEqual(first.recordedAt);
      // Another role, or no role, is another use.
      const noRole = (await t.client().recordUsage({ artifactId: model.id, runId: "eval-1" })).usage!;
      expect(noRole.role).toBe("");
      const second = (await t.client().recordUsage({ artifactId: model.id, runId: "eval-2", role: "evaluation-model" })).usage!;

      const lineage = await t.client().getLineage({ id: model.id });
      expect(lineage.usages.map((u) => [u.runId, u.role])).toEqual([
        ["eval-1", "evaluation-model"],
        ["eval-1", ""],
        ["eval-2", "evaluation-model"],
      ]);
      expect(lineage.usages[2]!.recordedAt).toEqual(second.recordedAt);
      // Uses belong to the artifact used, not to the lineage around it.
      const derived = (
        await t.client().saveInline({
          spec: { kind: "report", inputs: [{ artifactId: model.id, role: "model" }] },
          content: { case: "text", value: "report" },
        })
      ).artifact!;
      expect((await t.client().getLineage({ id: derived.id })).usages).toEqual([]);
    });

    it("takes a reference to a version, and records the id it resolved to", async () => {
      const name = `model-${unique()}`;
      const saveVersion = async () =>
        (await t.client().saveInline({ spec: { kind: "model", name, versioned: true }, content: { case: "text", value: unique() } })).artifact!;
      const v1 = await saveVersion();
      const v2 = await saveVersion();
      await t.client().setAlias({ artifactId: v1.id, alias: "production" });
      expect((await t.client().recordUsage({ artifactId: `${name}:production`, runId: "eval-ref" })).usage!.artifactId).toBe(v1.id);
      expect((await t.client().recordUsage({ artifactId: `artifact://${name}:latest`, runId: "eval-ref" })).usage!.artifactId).toBe(v2.id);
      expect((await t.client().getLineage({ id: `${name}@v1` })).usages.map((u) => u.runId)).toEqual(["eval-ref"]);
      await expectCode(t.client().recordUsage({ artifactId: `${name}:staging`, runId: "eval-ref" }), Code.NotFound, /staging/);
    });

    it("refuses a lineage answer with more uses than the server returns at once", async () => {
      const dataset = await save("dataset", {});
      for (const run of ["r1", "r2", "r3"]) await t.client().recordUsage({ artifactId: dataset.id, runId: run });
      expect((await t.client().getLineage({ id: dataset.id })).usages).toHaveLength(3);
      await t.client().recordUsage({ artifactId: dataset.id, runId: "r4" });
      await expectCode(t.client().getLineage({ id: dataset.id }), Code.ResourceExhausted, /used by more than 3 runs.*ARTIFACTD_MAX_LINEAGE_NODES/);
    });

    it("checks its request", async () => {
      const model = await save("model", {});
      await expectCode(t.client().recordUsage({ artifactId: "", runId: "r" }), Code.InvalidArgument, /artifact_id is required/);
      await expectCode(t.client().recordUsage({ artifactId: "not an id", runId: "r" }), Code.InvalidArgument, /artifact_id "not an id" is not an artifact id/);
      await expectCode(t.client().recordUsage({ artifactId: model.id, runId: "" }), Code.InvalidArgument, /run_id is required/);
      await expectCode(t.client().recordUsage({ artifactId: model.id, runId: "r".repeat(257) }), Code.InvalidArgument, /run_id is 257 characters long/);
      await expectCode(t.client().recordUsage({ artifactId: model.id, runId: "r\u0000" }), Code.InvalidArgument, /run_id contains a NUL/);
      await expectCode(
        t.client().recordUsage({ artifactId: model.id, runId: "r", role: "x".repeat(65) }),
        Code.InvalidArgument,
        /role is 65 characters long; at most 64/,
      );
      await expectCode(t.client().recordUsage({ artifactId: "art_00000000000000000000000000", runId: "r" }), Code.NotFound, /does not exist/);
      expect((await t.client().getLineage({ id: model.id })).usages).toEqual([]);
    });

    it("refuses a deleted artifact, another tenant's and a read-only token", async () => {
      const model = await save("model", {});
      await t.client().recordUsage({ artifactId: model.id, runId: "before-delete" });
      await t.client().deleteArtifact({ id: model.id });
      await expectCode(t.client().recordUsage({ artifactId: model.id, runId: "after-delete" }), Code.FailedPrecondition, /was deleted/);
      await expectCode(t.client().recordUsage({ artifactId: model.id, runId: "before-delete" }), Code.FailedPrecondition, /was deleted/);

      const live = await save("model", {});
      await expectCode(
        t.client(t.tokens.beta).recordUsage({ artifactId: live.id, runId: "intruder" }),
        Code.NotFound,
        new RegExp(`artifact ${live.id} does not exist`),
      );
      await expectCode(
        t.client(readOnly).recordUsage({ artifactId: live.id, runId: "reader" }),
        Code.PermissionDenied,
        /read-only and cannot record artifact usages/,
      );
      expect((await t.client().getLineage({ id: live.id })).usages).toEqual([]);
      expect((await t.client().getLineage({ id: model.id })).usages.map((u) => u.runId)).toEqual(["before-delete"]);
    });
  });

  describe("GetArtifact with a download link", () => {
    it("returns a link that downloads the artifact's bytes, with its expiry", async () => {
      const data = randomBytes(70_000);
      async function* messages(): AsyncIterable<UploadInit> {
        yield { message: { case: "header", value: { spec: { kind: "dataset", name: "rows.bin" } } } };
        yield { message: { case: "chunk", value: data } };
      }
      const { id } = (await t.client().upload(messages())).artifact!;
      const before = Math.floor(Date.now() / 1000);
      const response = await t.client(readOnly).getArtifact({ id, includeDownloadUrl: true, downloadUrlTtlSeconds: 120 });
      expect(response.artifact!.id).toBe(id);
      expect(response.downloadUrl.startsWith(`${t.url}/download/v1/`)).toBe(true);
      const expiry = Number(response.downloadUrlExpiresAt!.seconds);
      expect(expiry).toBeGreaterThanOrEqual(before + 120);
      expect(expiry).toBeLessThanOrEqual(Math.floor(Date.now() / 1000) + 120);
      const fetched = await fetch(response.downloadUrl);
      expect(fetched.status).toBe(200);
      const body = Buffer.from(await fetched.arrayBuffer());
      expect(blake3Hex(body)).toBe(blake3Hex(data));

      // 15 minutes by default, as CreateDownloadUrl.
      const byDefault = await t.client().getArtifact({ id, includeDownloadUrl: true });
      expect(Number(byDefault.downloadUrlExpiresAt!.seconds)).toBeGreaterThanOrEqual(before + 900);
      // Without asking, no link.
      const plain = await t.client().getArtifact({ id });
      expect(plain.downloadUrl).toBe("");
      expect(plain.downloadUrlExpiresAt).toBeUndefined();
    });

    it("gives no link for a deleted artifact, and its earlier link stops working", async () => {
      const artifact = await save("summary", {});
      const { downloadUrl } = await t.client().getArtifact({ id: artifact.id, includeDownloadUrl: true });
      expect((await fetch(downloadUrl)).status).toBe(200);
      await t.client().deleteArtifact({ id: artifact.id });
      const deleted = await t.client().getArtifact({ id: artifact.id, includeDownloadUrl: true });
      expect(deleted.artifact!.deletedAt).toBeDefined();
      expect(deleted.downloadUrl).toBe("");
      expect(deleted.downloadUrlExpiresAt).toBeUndefined();
      // The route answers a bare 403 for an artifact that is gone, as for any link it will not serve.
      expect((await fetch(downloadUrl)).status).toBe(403);
    });

    it("checks the link's lifetime", async () => {
      const artifact = await save("summary", {});
      await expectCode(
        t.client().getArtifact({ id: artifact.id, includeDownloadUrl: true, downloadUrlTtlSeconds: -5 }),
        Code.InvalidArgument,
        /download_url_ttl_seconds -5 is not valid/,
      );
      await expectCode(t.client().getArtifact({ id: artifact.id, downloadUrlTtlSeconds: 60 }), Code.InvalidArgument, /needs include_download_url/);
      await expectCode(t.client(t.tokens.beta).getArtifact({ id: artifact.id, includeDownloadUrl: true }), Code.NotFound);
    });
  });
});
