import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { openDatabase } from "../../src/adapters/metadata/open-metadata-store.ts";
import { blake3Hex } from "../../src/blake3.ts";
import { hasSessions } from "../../src/ports/blob-store.ts";
import { Status, type ArtifactSpecSchema } from "@artifactd/api/artifacts/v1/artifact_pb.js";
import { EventType, type ArtifactFilterSchema, type UploadRequestSchema } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import { collectGarbage, expireArtifacts } from "../../src/service/maintenance.ts";
import { untilLive } from "../support/event-watcher.ts";
import { BACKENDS, startTestApp, type TestApp } from "../support/test-app.ts";
import { expectCode } from "../support/expect-code.ts";
import { describeOn } from "../support/test-backends.ts";

type UploadInit = MessageInitShape<typeof UploadRequestSchema>;
/** A spec as a plain object (not a message instance), kind optional. */
type SpecInit = Omit<Exclude<MessageInitShape<typeof ArtifactSpecSchema>, { $typeName: string }>, "kind"> & { kind?: string };

describe.each(BACKENDS)("query and life cycle on %s", (backend) => {
  let t: TestApp;
  const scope = () => `s-${Math.random().toString(36).slice(2)}`;
  beforeAll(async () => {
    // Maintenance is driven by the tests themselves.
    t = await startTestApp(backend, { ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0" });
  });
  afterAll(async () => {
    await t?.close();
  });

  const save = async (spec: SpecInit, text = "x") =>
    (await t.client().saveInline({ spec: { kind: "item", ...spec }, content: { case: "text", value: text } })).artifact!;
  const upload = async (data: Uint8Array, spec: SpecInit = {}) => {
    async function* messages(): AsyncIterable<UploadInit> {
      yield { message: { case: "header", value: { spec: { kind: "blob", ...spec } } } };
      yield { message: { case: "chunk", value: data } };
    }
    return t.client().upload(messages());
  };
  const download = async (id: string) => {
    const parts: Uint8Array[] = [];
    for await (const r of t.client().download({ id })) if (r.message.case === "chunk") parts.push(r.message.value);
    return Buffer.concat(parts);
  };

  it("filters on every provenance scope level", async () => {
    const fields = ["runId", "graphId", "nodeId", "sessionId", "userId", "appId", "clientId", "workflowId", "templateId", "toolName", "toolVersion"] as const;
    for (const field of fields) {
      const value = scope();
      const hit = await save({ provenance: { [field]: value } });
      await save({ provenance: { [field]: `${value}-other` } });
      const page = await t.client().listArtifacts({ filter: { provenance: { [field]: value } } });
      expect(
        page.artifacts.map((a) => a.id),
        field,
      ).toEqual([hit.id]);
    }
  });

  it("filters by class, mime, status, pinned, metric ranges, time window; counts", async () => {
    const run = scope();
    const before = new Date();
    const a = await save({ artifactClass: "visual", metrics: { acc: 0.9 }, pinned: true, provenance: { runId: run } });
    const b = await save({ artifactClass: "research", metrics: { acc: 0.5 }, status: Status.REVIEW, provenance: { runId: run } });
    await save({ provenance: { runId: run } });
    const list = async (filter: Exclude<MessageInitShape<typeof ArtifactFilterSchema>, { $typeName: string }>) =>
      await t.client().listArtifacts({ filter: { provenance: { runId: run }, ...filter }, includeTotalCount: true });
    expect((await list({ artifactClass: "visual" })).artifacts.map((x) => x.id)).toEqual([a.id]);
    expect((await list({ status: Status.REVIEW })).artifacts.map((x) => x.id)).toEqual([b.id]);
    expect((await list({ pinned: true })).artifacts.map((x) => x.id)).toEqual([a.id]);
    expect((await list({ pinned: false })).totalCount).toBe(2n);
    expect((await list({ metricRanges: [{ name: "acc", min: 0.6 }] })).artifacts.map((x) => x.id)).toEqual([a.id]);
    expect((await list({ metricRanges: [{ name: "acc", max: 0.6 }] })).artifacts.map((x) => x.id)).toEqual([b.id]);
    expect((await list({ mimeType: "text/plain; charset=utf-8" })).totalCount).toBe(3n);
    expect((await list({ createdBefore: { seconds: BigInt(Math.floor(before.getTime() / 1000) - 60) } })).totalCount).toBe(0n);
    await expectCode(t.client().listArtifacts({ filter: { metricRanges: [{ name: "acc", min: 2, max: 1 }] } }), Code.InvalidArgument, /greater than max/);
  });

  it("matches label filters literally, injection attempts included", async () => {
    const run = scope();
    const labels = { "a'b": 'x"y', "$.path": "$[0]", "k) or (1=1": "' or '1'='1", "@>": "{}" };
    const hit = await save({ labels, provenance: { runId: run } });
    await save({ labels: { "a'b": "other" }, provenance: { runId: run } });
    for (const [k, v] of Object.entries(labels)) {
      const page = await t.client().listArtifacts({ filter: { provenance: { runId: run }, labels: { [k]: v } } });
      expect(
        page.artifacts.map((x) => x.id),
        k,
      ).toEqual([hit.id]);
    }
    const none = await t.client().listArtifacts({ filter: { provenance: { runId: run }, labels: { "k) or (1=1": "anything" } } });
    expect(none.artifacts).toEqual([]);
  });

  it("pages stably while new artifacts are inserted", async () => {
    const run = scope();
    const made: string[] = [];
    for (let i = 0; i < 6; i++) made.push((await save({ provenance: { runId: run } })).id);
    const first = await t.client().listArtifacts({ filter: { provenance: { runId: run } }, pageSize: 4 });
    for (let i = 0; i < 3; i++) await save({ provenance: { runId: run } });
    const second = await t.client().listArtifacts({ filter: { provenance: { runId: run } }, pageSize: 4, pageToken: first.nextPageToken });
    expect([...first.artifacts, ...second.artifacts].map((a) => a.id)).toEqual([...made].reverse());
    expect(second.nextPageToken).toBe("");
  });

  it("searches name, title and labels, ranked", async () => {
    const run = scope();
    const inName = await save({ name: "quarterly revenue forecast", title: "revenue revenue", provenance: { runId: run } });
    const inLabel = await save({ name: "misc", labels: { topic: "revenue" }, provenance: { runId: run } });
    await save({ name: "unrelated", provenance: { runId: run } });
    const found = await t.client().searchArtifacts({ query: "revenue", filter: { provenance: { runId: run } } });
    expect(found.artifacts.map((a) => a.id)).toEqual([inName.id, inLabel.id]);
    const phrase = await t.client().searchArtifacts({ query: '"revenue forecast"', filter: { provenance: { runId: run } } });
    expect(phrase.artifacts.map((a) => a.id)).toEqual([inName.id]);
    await expectCode(t.client().searchArtifacts({ query: " " }), Code.InvalidArgument, /query/);
  });

  it("finds the best artifact by a metric, with ties and missing metrics", async () => {
    const run = scope();
    await save({ kind: "model", metrics: { acc: 0.7, loss: 0.3 }, provenance: { runId: run } });
    const tieOld = await save({ kind: "model", metrics: { acc: 0.9, loss: 0.5 }, provenance: { runId: run } });
    const tieNew = await save({ kind: "model", metrics: { acc: 0.9, loss: 0.1 }, provenance: { runId: run } });
    await save({ kind: "model", provenance: { runId: run } });
    await save({ kind: "dataset", metrics: { acc: 1 }, provenance: { runId: run } });
    const best = await t.client().getBestArtifact({ kind: "model", metric: "acc", filter: { provenance: { runId: run } } });
    expect(best.artifact!.id).toBe(tieNew.id);
    expect(tieOld.id).not.toBe(tieNew.id);
    const lowest = await t.client().getBestArtifact({ kind: "model", metric: "loss", minimize: true, filter: { provenance: { runId: run } } });
    expect(lowest.artifact!.id).toBe(tieNew.id);
    await expectCode(t.client().getBestArtifact({ kind: "model", metric: "f1", filter: { provenance: { runId: run } } }), Code.NotFound, /no model artifact/);
  });

  it("records lineage, validates inputs and walks ancestors and descendants to a depth", async () => {
    const report = await save({ kind: "research-report", artifactClass: "research" });
    const chart = await save({
      kind: "chart",
      inputs: [{ artifactId: report.id, role: "source-report", requiredClass: "research", requiredKind: "research-report" }],
    });
    const deck = await save({
      kind: "deck",
      inputs: [
        { artifactId: chart.id, role: "figure" },
        { artifactId: report.id, role: "appendix" },
      ],
    });
    expect(chart.inputs).toEqual([expect.objectContaining({ artifactId: report.id, role: "source-report" })]);

    const one = await t.client().getLineage({ id: deck.id, depth: 1 });
    expect(one.ancestors.map((a) => a.id).sort()).toEqual([chart.id, report.id].sort());
    const down = await t.client().getLineage({ id: report.id, depth: 2 });
    expect(down.descendants.map((a) => a.id).sort()).toEqual([chart.id, deck.id].sort());
    expect(down.ancestors).toEqual([]);
    expect(down.edges.length).toBe(3);
    const shallow = await t.client().getLineage({ id: report.id });
    expect(shallow.descendants.map((a) => a.id).sort()).toEqual([chart.id, deck.id].sort());

    await expectCode(save({ inputs: [{ artifactId: report.id, requiredClass: "visual" }] }), Code.FailedPrecondition, /requires class/);
    await expectCode(save({ inputs: [{ artifactId: report.id, requiredKind: "dataset" }] }), Code.FailedPrecondition, /requires kind/);
    await expectCode(save({ inputs: [{ artifactId: "art_00000000000000000000000000" }] }), Code.NotFound, /does not exist/);
    await expectCode(save({ inputs: [{ artifactId: report.id }, { artifactId: report.id }] }), Code.InvalidArgument, /twice/);
    const doomed = await save({});
    await t.client().deleteArtifact({ id: doomed.id });
    await expectCode(save({ inputs: [{ artifactId: doomed.id }] }), Code.FailedPrecondition, /deleted/);
    // Inputs must exist before the artifact that names them, and content is
    // immutable, so no edge can close a cycle.
    await expectCode(t.client().getLineage({ id: report.id, depth: 99 }), Code.InvalidArgument, /depth/);
  });

  it("enforces the status life cycle", async () => {
    const a = await save({});
    expect(a.status).toBe(Status.DRAFT);
    await expectCode(t.client().setStatus({ id: a.id, status: Status.APPROVED }), Code.FailedPrecondition, /draft; it can go to review/);
    expect((await t.client().setStatus({ id: a.id, status: Status.REVIEW })).artifact!.status).toBe(Status.REVIEW);
    expect((await t.client().setStatus({ id: a.id, status: Status.REJECTED })).artifact!.status).toBe(Status.REJECTED);
    expect((await t.client().setStatus({ id: a.id, status: Status.DRAFT })).artifact!.status).toBe(Status.DRAFT);
    await t.client().setStatus({ id: a.id, status: Status.REVIEW });
    expect((await t.client().setStatus({ id: a.id, status: Status.APPROVED })).artifact!.status).toBe(Status.APPROVED);
    await expectCode(t.client().setStatus({ id: a.id, status: Status.DRAFT }), Code.FailedPrecondition, /approved is final/);
    await expectCode(t.client().setStatus({ id: a.id, status: Status.UNSPECIFIED }), Code.InvalidArgument, /status is required/);
  });

  it("pins, refuses to delete pinned, archives a run's unpinned artifacts", async () => {
    const run = scope();
    const keep = await save({ provenance: { runId: run } });
    const drop = await save({ provenance: { runId: run } });
    expect((await t.client().setPinned({ id: keep.id, pinned: true })).artifact!.pinned).toBe(true);
    await expectCode(t.client().deleteArtifact({ id: keep.id }), Code.FailedPrecondition, /pinned/);
    const archived = await t.client().archiveRun({ runId: run });
    expect(archived.deletedCount).toBe(1n);
    expect((await t.client().getArtifact({ id: drop.id })).artifact!.deletedAt).toBeDefined();
    expect((await t.client().getArtifact({ id: keep.id })).artifact!.deletedAt).toBeUndefined();
    expect((await t.client().setPinned({ id: keep.id, pinned: false })).artifact!.pinned).toBe(false);
    await expectCode(t.client().setPinned({ id: drop.id, pinned: true }), Code.FailedPrecondition, /deleted/);
  });

  it("expires unpinned artifacts after their time to live", async () => {
    const run = scope();
    const short = await save({ ttlSeconds: 1n, provenance: { runId: run } });
    const pinned = await save({ ttlSeconds: 1n, pinned: true, provenance: { runId: run } });
    const long = await save({ ttlSeconds: 3600n, provenance: { runId: run } });
    expect(short.expiresAt).toBeDefined();
    await expireArtifacts({ metadata: t.app.metadata }, new Date(Date.now() + 5_000));
    const live = await t.client().listArtifacts({ filter: { provenance: { runId: run } } });
    expect(live.artifacts.map((a) => a.id).sort()).toEqual([pinned.id, long.id].sort());
    await expectCode(save({ ttlSeconds: 5n, expiresAt: { seconds: BigInt(Math.floor(Date.now() / 1000) + 60) } }), Code.InvalidArgument, /not both/);
  });

  it("collects garbage: deleted content reclaimed, pinned and referenced kept, dry run reports bytes", async () => {
    const deps = { metadata: t.app.metadata, blobs: t.app.blobs, uploadStaleMs: 300_000 };
    const gone = randomBytes(50_000);
    const kept = randomBytes(60_000);
    const shared = randomBytes(70_000);
    const goneArtifact = (await upload(gone)).artifact!;
    const keptArtifact = (await upload(kept, { pinned: true })).artifact!;
    const sharedA = (await upload(shared)).artifact!;
    await upload(shared);
    await t.client().deleteArtifact({ id: goneArtifact.id });
    await t.client().deleteArtifact({ id: sharedA.id });

    const dry = await collectGarbage(deps, { graceMs: 0, dryRun: true, now: new Date(Date.now() + 1000) });
    expect(dry.blobs).toBeGreaterThanOrEqual(1);
    expect(dry.bytes).toBeGreaterThanOrEqual(gone.length);
    const goneBlob = await t.app.metadata.findBlob("alpha", blake3Hex(gone));
    expect(goneBlob).toBeDefined();

    const real = await collectGarbage(deps, { graceMs: 0, dryRun: false, now: new Date(Date.now() + 1000) });
    expect(real.blobs).toBe(dry.blobs);
    expect(await t.app.metadata.findBlob("alpha", blake3Hex(gone))).toBeUndefined();
    // The stored content went with its row, by key, in the same collection.
    expect(await t.app.blobs.stat(goneBlob!.storageKey)).toBeUndefined();
    expect(real.releasedKeys).toBeGreaterThanOrEqual(real.blobs);
    expect(await t.app.metadata.findBlob("alpha", blake3Hex(kept))).toBeDefined();
    expect(await t.app.metadata.findBlob("alpha", blake3Hex(shared))).toBeDefined();
    expect((await download(keptArtifact.id)).equals(kept)).toBe(true);
    // The deleted record stays for audit, digest included.
    expect((await t.client().getArtifact({ id: goneArtifact.id })).artifact!.blake3).toBe(blake3Hex(gone));

    // Within the grace period nothing is reclaimed.
    const young = (await upload(randomBytes(1000))).artifact!;
    await t.client().deleteArtifact({ id: young.id });
    const graced = await collectGarbage(deps, { graceMs: 3_600_000, dryRun: false });
    expect(graced.blobs).toBe(0);
  });

  it("removes stored objects nothing records, only past their own grace period", async () => {
    const deps = { metadata: t.app.metadata, blobs: t.app.blobs, uploadStaleMs: 300_000 };
    const data = randomBytes(5000);
    const writer = await t.app.blobs.createWriter("alpha", t.app.blobs.newKey("alpha"));
    await writer.write(data);
    const key = await writer.commit(blake3Hex(data));
    const later = new Date(Date.now() + 60_000);
    const kept = await collectGarbage(deps, { graceMs: 0, dryRun: false, now: later });
    expect(await t.app.blobs.stat(key)).toEqual({ size: 5000 });
    expect(kept.orphans).toBe(0);
    const swept = await collectGarbage(deps, { graceMs: 0, orphanGraceMs: 0, dryRun: false, now: later });
    expect(swept.orphans).toBeGreaterThanOrEqual(1);
    expect(swept.orphanBytes).toBeGreaterThanOrEqual(5000);
    expect(await t.app.blobs.stat(key)).toBeUndefined();
  });

  // S3 only: there a session's object has the session's key from the start, and S3 dates it from when the upload
  // began. The folder store names the assembled file by its digest and renames it into place moments before it is
  // recorded, in the server's own process, so a fresh mtime and the 25 h orphan grace cover it.
  it.runIf(backend === "postgres+minio")("never takes the object of an upload session being completed, however old it looks", async () => {
    const deps = { metadata: t.app.metadata, blobs: t.app.blobs, uploadStaleMs: 300_000 };
    const data = randomBytes(7000);
    const { session } = await t.client().createUploadSession({ spec: { kind: "completing" }, partSize: BigInt(5 * 1024 * 1024) });
    await t.client().uploadPart({ sessionId: session!.sessionId, partNumber: 1, data });
    // What CompleteUploadSession does first: assemble the object. Its blob row comes only after the read-back.
    const record = (await t.app.metadata.uploadSessions.get("alpha", session!.sessionId))!;
    const blobs = t.app.blobs;
    if (!hasSessions(blobs)) throw new Error("the blob store has no upload sessions");
    const assembled = await blobs.completeSession("alpha", record.storageKey, record.multipartId, record.parts);
    const later = new Date(Date.now() + 48 * 3_600_000);
    const kept = await collectGarbage(deps, { graceMs: 0, orphanGraceMs: 0, dryRun: false, now: later });
    expect(await t.app.blobs.stat(assembled.key)).toEqual({ size: 7000 });
    expect(kept.orphans).toBe(0);
    // Only the session protected it: once the session is abandoned, its key is released and collected by key.
    const abandoned = await t.app.metadata.uploadSessions.abandon("alpha", session!.sessionId, { states: ["open"] });
    expect("deleted" in abandoned).toBe(true);
    const swept = await collectGarbage(deps, { graceMs: 0, orphanGraceMs: 0, dryRun: false, now: later });
    expect(swept.releasedKeys).toBeGreaterThanOrEqual(1);
    expect(await t.app.blobs.stat(assembled.key)).toBeUndefined();
  });

  it("watches events filtered like List", async () => {
    const run = scope();
    const controller = new AbortController();
    const received: { type: EventType; id: string }[] = [];
    const markers = new Set<string>();
    const seen = () => received.filter((event) => !markers.has(event.id));
    const stream = t.client().watchArtifacts({ filter: { kind: "watched", provenance: { runId: run } } }, { signal: controller.signal });
    const reading = (async () => {
      try {
        for await (const event of stream) {
          received.push({ type: event.type, id: event.artifact!.id });
          if (seen().length === 4) controller.abort();
        }
      } catch (error) {
        if (!controller.signal.aborted) throw error;
      }
    })();
    await untilLive(
      markers,
      async () => (await save({ kind: "watched", provenance: { runId: run } })).id,
      () => received.map((event) => event.id),
    );
    const a = await save({ kind: "watched", provenance: { runId: run } });
    await save({ kind: "other", provenance: { runId: run } });
    await t.client().setStatus({ id: a.id, status: Status.REVIEW });
    await t.client().setPinned({ id: a.id, pinned: true });
    await t.client().setPinned({ id: a.id, pinned: false });
    await reading;
    expect(seen()).toEqual([
      { type: EventType.CREATED, id: a.id },
      { type: EventType.STATUS_CHANGED, id: a.id },
      { type: EventType.PINNED, id: a.id },
      { type: EventType.UNPINNED, id: a.id },
    ]);
  });

  it("refuses filter values holding a NUL character with invalid_argument naming the field", async () => {
    type FilterInit = Exclude<MessageInitShape<typeof ArtifactFilterSchema>, { $typeName: string }>;
    const cases: [FilterInit, RegExp][] = [
      [{ labels: { "k\u0000": "v" } }, /filter\.labels key .*NUL/],
      [{ labels: { k: "v\u0000" } }, /filter\.labels\["k"\] .*NUL/],
      [{ namePrefix: "a\u0000" }, /filter\.name_prefix .*NUL/],
      [{ provenance: { runId: "r\u0000" } }, /filter\.provenance\.run_id .*NUL/],
      [{ provenance: { toolName: "\u0000" } }, /filter\.provenance\.tool_name .*NUL/],
      [{ tagsAll: ["ok", "t\u0000"] }, /filter\.tags_all .*NUL/],
      [{ tagsAny: ["\u0000"] }, /filter\.tags_any .*NUL/],
      [{ kind: "k\u0000" }, /filter\.kind .*NUL/],
      [{ artifactClass: "c\u0000" }, /filter\.artifact_class .*NUL/],
      [{ mimeType: "text/plain\u0000" }, /filter\.mime_type .*NUL/],
      [{ metricRanges: [{ name: "acc\u0000", min: 0 }] }, /filter\.metric_ranges\[0\]\.name .*NUL/],
    ];
    for (const [filter, message] of cases) {
      await expectCode(t.client().listArtifacts({ filter }), Code.InvalidArgument, message);
      await expectCode(t.client().listArtifacts({ filter, includeTotalCount: true }), Code.InvalidArgument, message);
      await expectCode(t.client().searchArtifacts({ query: "anything", filter }), Code.InvalidArgument, message);
      // GetBestArtifact ranks its own kind: filter.kind does not reach the query there.
      if (!filter.kind) await expectCode(t.client().getBestArtifact({ kind: "model", metric: "acc", filter }), Code.InvalidArgument, message);
    }
    // Watch refuses such a filter when called, not at its first event.
    await expectCode(
      (async () => {
        for await (const _ of t.client().watchArtifacts({ filter: { namePrefix: "a\u0000" } })) break;
      })(),
      Code.InvalidArgument,
      /filter\.name_prefix .*NUL/,
    );
    await expectCode(t.client().searchArtifacts({ query: "two\u0000words" }), Code.InvalidArgument, /query .*NUL/);
    await expectCode(t.client().getBestArtifact({ kind: "model", metric: "acc\u0000" }), Code.InvalidArgument, /metric .*NUL/);
    // The same characters in spec labels and tags are refused as clearly.
    await expectCode(save({ labels: { k: "v\u0000" } }), Code.InvalidArgument, /spec\.labels\["k"\] .*NUL/);
    await expectCode(save({ tags: ["t\u0000"] }), Code.InvalidArgument, /spec\.tags .*NUL/);
  });

  it("matches a label filter on several keys only where every key has its value", async () => {
    const run = scope();
    const both = await save({ labels: { team: "vision", stage: "prod", extra: "x" }, provenance: { runId: run } });
    await save({ labels: { team: "vision" }, provenance: { runId: run } });
    await save({ labels: { stage: "prod" }, provenance: { runId: run } });
    await save({ labels: { team: "vision", stage: "dev" }, provenance: { runId: run } });
    const page = await t.client().listArtifacts({ filter: { provenance: { runId: run }, labels: { team: "vision", stage: "prod" } }, includeTotalCount: true });
    expect(page.artifacts.map((a) => a.id)).toEqual([both.id]);
    expect(page.totalCount).toBe(1n);
    const three = await t.client().listArtifacts({ filter: { provenance: { runId: run }, labels: { team: "vision", stage: "prod", extra: "y" } } });
    expect(three.artifacts).toEqual([]);
  });

  it("tells tags_all from tags_any", async () => {
    const run = scope();
    const both = await save({ tags: ["red", "blue"], provenance: { runId: run } });
    const red = await save({ tags: ["red"], provenance: { runId: run } });
    const blue = await save({ tags: ["blue", "green"], provenance: { runId: run } });
    await save({ tags: ["green"], provenance: { runId: run } });
    const ids = async (filter: { tagsAll?: string[]; tagsAny?: string[] }) =>
      (await t.client().listArtifacts({ filter: { provenance: { runId: run }, ...filter } })).artifacts.map((a) => a.id).sort();
    expect(await ids({ tagsAll: ["red", "blue"] })).toEqual([both.id]);
    expect(await ids({ tagsAny: ["red", "blue"] })).toEqual([both.id, red.id, blue.id].sort());
    expect(await ids({ tagsAll: ["red"], tagsAny: ["blue", "green"] })).toEqual([both.id]);
  });

  it("windows by created_after (inclusive) and created_before (exclusive)", async () => {
    const run = scope();
    const pause = () => new Promise((r) => setTimeout(r, 5));
    const a = await save({ provenance: { runId: run } });
    await pause();
    const b = await save({ provenance: { runId: run } });
    await pause();
    const c = await save({ provenance: { runId: run } });
    const ids = async (filter: Exclude<MessageInitShape<typeof ArtifactFilterSchema>, { $typeName: string }>) =>
      (await t.client().listArtifacts({ filter: { provenance: { runId: run }, ...filter } })).artifacts.map((x) => x.id);
    expect(timestampDate(a.createdAt!) < timestampDate(b.createdAt!)).toBe(true);
    expect(timestampDate(b.createdAt!) < timestampDate(c.createdAt!)).toBe(true);
    expect(await ids({ createdAfter: b.createdAt })).toEqual([c.id, b.id]);
    expect(await ids({ createdBefore: b.createdAt })).toEqual([a.id]);
    expect(await ids({ createdAfter: b.createdAt, createdBefore: c.createdAt })).toEqual([b.id]);
    expect(await ids({ createdAfter: a.createdAt, createdBefore: timestampFromDate(new Date(timestampDate(c.createdAt!).getTime() + 1)) })).toEqual([
      c.id,
      b.id,
      a.id,
    ]);
    expect(await ids({ createdAfter: timestampFromDate(new Date(timestampDate(c.createdAt!).getTime() + 1)) })).toEqual([]);
    await expectCode(
      t.client().listArtifacts({ filter: { createdAfter: c.createdAt, createdBefore: b.createdAt } }),
      Code.InvalidArgument,
      /created_after must be earlier/,
    );
  });

  it("walks a lineage cycle written straight into the database once, and stops", async () => {
    // Edges come only from inputs that already exist, so the API cannot make a
    // cycle; a hand-edited or restored database can.
    const dir = backend === "pglite+fs" ? mkdtempSync(path.join(os.tmpdir(), "artifactd-cycle-")) : undefined;
    const env = { ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0", ...(dir ? { ARTIFACTD_DATA_DIR: dir } : {}) };
    // Embedded PGlite has one owner: a server of its own, stopped while the edge is written.
    let app = dir ? await startTestApp(backend, env) : t;
    try {
      const make = async (spec: SpecInit) =>
        (await app.client().saveInline({ spec: { kind: "step", ...spec }, content: { case: "text", value: "x" } })).artifact!;
      const a = await make({});
      const b = await make({ inputs: [{ artifactId: a.id, role: "from-a" }] });
      const c = await make({ inputs: [{ artifactId: b.id, role: "from-b" }] });
      if (dir) await app.close();
      const { db, close } = await openDatabase({ databaseUrl: app.databaseUrl, pgliteDir: path.join(dir ?? "", "pglite"), poolSize: 1, migrate: false });
      try {
        await db
          .insertInto("artifact_inputs")
          .values([
            { tenant_id: "alpha", artifact_id: a.id, input_id: c.id, role: "loop", position: 0 },
            { tenant_id: "alpha", artifact_id: b.id, input_id: b.id, role: "self", position: 1 },
          ])
          .execute();
      } finally {
        await db.destroy();
        await close();
      }
      if (dir) app = await startTestApp(backend, env);
      for (const start of [a, b, c]) {
        const lineage = await app.client().getLineage({ id: start.id, depth: 32 });
        const up = lineage.ancestors.map((x) => x.id);
        const down = lineage.descendants.map((x) => x.id);
        const others = [a.id, b.id, c.id].sort();
        // Each other artifact of the cycle once each way, the start itself never (not even through b's self-edge).
        expect(new Set(up).size, `ancestors of ${start.id}`).toBe(up.length);
        expect(new Set(down).size, `descendants of ${start.id}`).toBe(down.length);
        expect([...up, start.id].sort()).toEqual(others);
        expect([...down, start.id].sort()).toEqual(others);
        expect(lineage.edges).toHaveLength(4);
      }
    } finally {
      if (dir) {
        await app.close();
        rmSync(dir, { recursive: true, force: true });
      }
    }
  });
});

describeOn("postgres+minio")("Watch across replicas", () => {
  it("delivers an event made through one replica to a subscriber of another", async () => {
    const first = await startTestApp("postgres+minio", { ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0" });
    const second = await startTestApp("postgres+minio", {
      ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0",
      DATABASE_URL: first.databaseUrl!,
      ARTIFACTD_S3_BUCKET: first.bucket!,
    });
    try {
      const controller = new AbortController();
      const stream = first.client().watchArtifacts({ filter: { kind: "cross" } }, { signal: controller.signal });
      const received: string[] = [];
      const reading = (async () => {
        for await (const event of stream) received.push(event.artifact!.id);
      })().catch((error: unknown) => (controller.signal.aborted ? undefined : Promise.reject(error)));
      // Live on its own replica first, so what the other replica saves next can only arrive through the database.
      const markers = new Set<string>();
      const saveCross = async (replica: TestApp) =>
        (await replica.client(first.tokens.alpha).saveInline({ spec: { kind: "cross" }, content: { case: "text", value: "hi" } })).artifact!.id;
      await untilLive(
        markers,
        () => saveCross(first),
        () => received,
      );
      const id = await saveCross(second);
      await vi.waitFor(() => expect(received.filter((r) => !markers.has(r))).toEqual([id]), { timeout: 10_000, interval: 20 });
      controller.abort();
      await reading;
    } finally {
      await second.close();
      await first.close();
    }
  });
});
