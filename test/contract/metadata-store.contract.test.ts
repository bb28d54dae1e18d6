import { afterAll, beforeAll, expect, it } from "vitest";
import type { ArtifactSpec } from "../../src/artifact.ts";
import type { ArtifactError } from "../../src/artifact-error.ts";
import { newArtifactId } from "../../src/artifact-id.ts";
import type { LoggedEvent } from "../../src/ports/artifact-event-log.ts";
import type { MetadataStore, NewArtifact } from "../../src/ports/metadata-store.ts";
import { BASE_SPEC, METADATA_STORE_ADAPTERS } from "../support/metadata-store-adapters.ts";
import { describeEachAdapter } from "../support/test-backends.ts";

/** One suite for the MetadataStore port, on the Postgres server and on embedded PGlite (./support/metadata-store-adapters.ts). */

let clock = Date.parse("2026-01-01T00:00:00Z");
function record(tenantId: string, spec: Partial<ArtifactSpec>, content: { digest: string; key?: string } = { digest: "a".repeat(64) }): NewArtifact {
  const createdAt = new Date(clock++);
  return {
    id: newArtifactId("art", createdAt.getTime()),
    tenantId,
    spec: { ...BASE_SPEC, ...spec },
    mimeType: "application/octet-stream",
    sizeBytes: 10,
    blake3: content.digest,
    createdAt,
    createdBy: "test",
    ...(content.key ? { blob: { storageKey: content.key } } : { inline: { type: "text" as const, text: "0123456789" } }),
  };
}

describeEachAdapter("MetadataStore contract: %s", METADATA_STORE_ADAPTERS, (_name, open) => {
  let store: MetadataStore;
  let close: () => Promise<void>;
  beforeAll(async () => {
    ({ store, close } = await open());
  });
  afterAll(async () => {
    await close?.();
  });

  it("records one blob per tenant and digest; the second writer is told to drop its key", async () => {
    const digest = "b".repeat(64);
    const first = await store.createArtifact(record("t1", {}, { digest, key: "key-1" }));
    const second = await store.createArtifact(record("t1", {}, { digest, key: "key-2" }));
    const otherTenant = await store.createArtifact(record("t2", {}, { digest, key: "key-3" }));
    expect(first.blobCreated).toBe(true);
    expect(second.blobCreated).toBe(false);
    expect(second.blob?.storageKey).toBe("key-1");
    expect(otherTenant.blobCreated).toBe(true);
    expect((await store.findBlob("t1", digest))?.storageKey).toBe("key-1");
    expect((await store.findBlob("t2", digest))?.storageKey).toBe("key-3");
  });

  it("races of the same content end with exactly one blob", async () => {
    const digest = "c".repeat(64);
    const results = await Promise.all(Array.from({ length: 8 }, (_, i) => store.createArtifact(record("t1", {}, { digest, key: `race-${i}` }))));
    expect(results.filter((r) => r.blobCreated)).toHaveLength(1);
    const winner = results.find((r) => r.blobCreated)!.blob!.storageKey;
    expect(results.every((r) => r.blob?.storageKey === winner)).toBe(true);
  });

  it("checks inputs: unknown, deleted, wrong class, other tenant", async () => {
    const input = await store.createArtifact(record("t1", { artifactClass: "visual" }));
    const ok = await store.createArtifact(
      record("t1", { inputs: [{ artifactId: input.artifact.id, role: "source", requiredClass: "visual", requiredKind: "" }] }),
    );
    expect(ok.artifact.inputs).toEqual([{ artifactId: input.artifact.id, role: "source" }]);
    const code = async (p: Promise<unknown>) =>
      (
        (await p.then(
          () => undefined,
          (e: unknown) => e,
        )) as ArtifactError | undefined
      )?.code;
    expect(
      await code(store.createArtifact(record("t1", { inputs: [{ artifactId: input.artifact.id, role: "", requiredClass: "video", requiredKind: "" }] }))),
    ).toBe("failed_precondition");
    expect(await code(store.createArtifact(record("t2", { inputs: [{ artifactId: input.artifact.id, role: "", requiredClass: "", requiredKind: "" }] })))).toBe(
      "not_found",
    );
    await store.softDeleteArtifact("t1", input.artifact.id, new Date());
    expect(await code(store.createArtifact(record("t1", { inputs: [{ artifactId: input.artifact.id, role: "", requiredClass: "", requiredKind: "" }] })))).toBe(
      "failed_precondition",
    );
  });

  it("matches label filters literally, whatever the keys and values hold", async () => {
    const nasty = { "a.b": "1", "$.x": "'; drop table artifacts; --", 'q"uote': "\\", "k[0]": "@@ $ ?" };
    const hit = await store.createArtifact(record("t3", { labels: nasty }));
    await store.createArtifact(record("t3", { labels: { "a.b": "2" } }));
    for (const [key, value] of Object.entries(nasty)) {
      const page = await store.listArtifacts("t3", { labels: { [key]: value } }, { pageSize: 10, pageToken: "" });
      expect(page.items.map((a) => a.id)).toEqual([hit.artifact.id]);
    }
    const none = await store.listArtifacts("t3", { labels: { "$.x": "*" } }, { pageSize: 10, pageToken: "" });
    expect(none.items).toEqual([]);
  });

  it("filters by tags, metrics, provenance and pages in a stable order", async () => {
    const made = [];
    for (let i = 0; i < 7; i++) {
      made.push(
        (await store.createArtifact(record("t4", { tags: i % 2 ? ["odd"] : ["even"], metrics: { acc: i / 10 }, provenance: { run_id: "r1" } }))).artifact.id,
      );
    }
    const seen: string[] = [];
    let pageToken = "";
    do {
      const page = await store.listArtifacts("t4", { provenance: { run_id: "r1" } }, { pageSize: 3, pageToken });
      seen.push(...page.items.map((a) => a.id));
      pageToken = page.nextPageToken;
    } while (pageToken);
    expect(seen).toEqual([...made].reverse());
    const odd = await store.listArtifacts("t4", { tagsAll: ["odd"] }, { pageSize: 10, pageToken: "" });
    expect(odd.items).toHaveLength(3);
    const good = await store.listArtifacts("t4", { metricRanges: [{ name: "acc", min: 0.35, max: undefined }] }, { pageSize: 10, pageToken: "" });
    expect(good.items.map((a) => a.metrics.acc).sort()).toEqual([0.4, 0.5, 0.6]);
  });

  it("orders by a metric within the tenant, finds by fragments, filters inline JSON, and ranks the best k", async () => {
    const json = (value: unknown) => ({ digest: "b".repeat(64), inline: JSON.stringify(value) });
    const make = async (tenant: string, spec: Partial<ArtifactSpec>, content?: { inline: string }) => {
      const base = record(tenant, spec);
      const withContent = content ? { ...base, inline: { type: "json" as const, json: content.inline } } : base;
      return (await store.createArtifact(withContent)).artifact.id;
    };
    const low = await make("t5", { name: "nc-file.bin", metrics: { f1: 0.1 } }, json({ rows: 5, tag: "x" }));
    const none = await make("t5", { name: "plain" });
    const high = await make("t5", { name: "other", metrics: { f1: 0.9 } }, json({ rows: 50 }));
    // Another tenant's artifacts never show, however well they rank.
    await make("t6", { name: "nc-file.bin", metrics: { f1: 1 } }, json({ rows: 500 }));
    const order = { metric: "f1", ascending: false };
    const seen: string[] = [];
    let pageToken = "";
    do {
      const page = await store.listArtifacts("t5", {}, { pageSize: 1, pageToken }, order);
      seen.push(...page.items.map((a) => a.id));
      pageToken = page.nextPageToken;
    } while (pageToken);
    expect(seen).toEqual([high, low, none]);
    expect((await store.searchArtifacts("t5", "nc-fi", {}, { pageSize: 10, pageToken: "" })).items.map((a) => a.id)).toEqual([low]);
    expect((await store.listArtifacts("t5", { inlineJsonContains: '{"tag": "x"}' }, { pageSize: 10, pageToken: "" })).items.map((a) => a.id)).toEqual([low]);
    const big = await store.listArtifacts("t5", { jsonConditions: [{ path: "$.rows", comparison: "gt", value: "10" }] }, { pageSize: 10, pageToken: "" });
    expect(big.items.map((a) => a.id)).toEqual([high]);
    expect((await store.bestArtifacts("t5", "model", "f1", true, {}, 5)).map((a) => a.id)).toEqual([low, high]);
  });

  it("soft delete keeps the record and refuses pinned artifacts", async () => {
    const pinned = await store.createArtifact(record("t5", { pinned: true }));
    await expect(store.softDeleteArtifact("t5", pinned.artifact.id, new Date())).rejects.toMatchObject({ code: "failed_precondition" });
    const plain = await store.createArtifact(record("t5", {}));
    const deleted = await store.softDeleteArtifact("t5", plain.artifact.id, new Date());
    expect(deleted?.deletedAt).toBeInstanceOf(Date);
    expect((await store.getArtifact("t5", plain.artifact.id))?.deletedAt).toBeInstanceOf(Date);
    expect(await store.softDeleteArtifact("t6", plain.artifact.id, new Date())).toBeUndefined();
  });

  it("logs each change with its life-cycle fields as at the event, in its own transaction; nothing for a refused or no-op change", async () => {
    const { lastSeq: start } = await store.eventLog.bounds();
    let woken = 0;
    const told: LoggedEvent[] = [];
    const stopListening = store.eventLog.onAppended((appended) => {
      woken++;
      told.push(...appended);
    });
    const a = (await store.createArtifact(record("ev1", { provenance: { run_id: "ev-run" } }))).artifact;
    const b = (await store.createArtifact(record("ev1", { provenance: { run_id: "ev-run" } }))).artifact;
    const c = (await store.createArtifact(record("ev1", { expiresAt: new Date(clock - 1) }))).artifact;
    await store.setStatus("ev1", a.id, "review");
    await store.setStatus("ev1", a.id, "review");
    await store.setStatus("ev1", a.id, "approved");
    await expect(store.setStatus("ev1", a.id, "draft")).rejects.toMatchObject({ code: "failed_precondition" });
    await store.setPinned("ev1", a.id, true);
    await store.setPinned("ev1", a.id, true);
    await expect(store.softDeleteArtifact("ev1", a.id, new Date())).rejects.toMatchObject({ code: "failed_precondition" });
    await store.setPinned("ev1", a.id, false);
    const deletedAt = new Date(clock++);
    await store.softDeleteArtifact("ev1", b.id, deletedAt);
    await store.softDeleteArtifact("ev1", b.id, new Date());
    expect(await store.archiveRun("ev1", "ev-run", deletedAt)).toHaveLength(1);
    expect((await store.expireArtifacts(new Date(clock), 100)).map((x) => x.id)).toEqual([c.id]);
    stopListening();

    const events = await store.eventLog.readAfter(start, 100, "ev1");
    expect(events.map(({ type, artifactId, status, pinned, deletedAt }) => ({ type, artifactId, status, pinned, deleted: deletedAt !== undefined }))).toEqual([
      { type: "created", artifactId: a.id, status: "draft", pinned: false, deleted: false },
      { type: "created", artifactId: b.id, status: "draft", pinned: false, deleted: false },
      { type: "created", artifactId: c.id, status: "draft", pinned: false, deleted: false },
      { type: "status_changed", artifactId: a.id, status: "review", pinned: false, deleted: false },
      { type: "status_changed", artifactId: a.id, status: "approved", pinned: false, deleted: false },
      { type: "pinned", artifactId: a.id, status: "approved", pinned: true, deleted: false },
      { type: "unpinned", artifactId: a.id, status: "approved", pinned: false, deleted: false },
      { type: "deleted", artifactId: b.id, status: "draft", pinned: false, deleted: true },
      { type: "deleted", artifactId: a.id, status: "approved", pinned: false, deleted: true },
      { type: "deleted", artifactId: c.id, status: "draft", pinned: false, deleted: true },
    ]);
    expect(events[7]!.deletedAt?.getTime()).toBe(deletedAt.getTime());
    expect(events.every((e, i) => e.tenantId === "ev1" && (i === 0 || e.seq > events[i - 1]!.seq))).toBe(true);
    expect(woken).toBe(events.length);
    // Listeners are told each commit's events as the log holds them.
    expect(told).toEqual(events);
    // Every tenant's events when no tenant is named; paged by seq.
    expect((await store.eventLog.readAfter(events[3]!.seq, 2)).map((e) => e.seq)).toEqual([events[4]!.seq, events[5]!.seq]);
    expect((await store.eventLog.bounds()).lastSeq).toBe(events.at(-1)!.seq);
  });

  it("appends the events of one change in the order it recorded them, with consecutive seqs", async () => {
    for (let i = 0; i < 3; i++) await store.createArtifact(record("ev3", { provenance: { run_id: "ev3-run" } }));
    const { lastSeq: start } = await store.eventLog.bounds();
    const told: LoggedEvent[] = [];
    const stopListening = store.eventLog.onAppended((appended) => told.push(...appended));
    const archived = await store.archiveRun("ev3", "ev3-run", new Date(clock++));
    stopListening();
    const events = await store.eventLog.readAfter(start, 10, "ev3");
    expect(archived).toHaveLength(3);
    expect(events.map((e) => [e.type, e.artifactId])).toEqual(archived.map((a) => ["deleted", a.id]));
    expect(events.map((e) => e.seq)).toEqual([events[0]!.seq, events[0]!.seq + 1, events[0]!.seq + 2]);
    expect(told).toEqual(events);
  });

  it("records inline artifacts written at once many to a statement, each call answered with its own artifact and event", async () => {
    const { lastSeq: start } = await store.eventLog.bounds();
    const told: (readonly LoggedEvent[])[] = [];
    const stopListening = store.eventLog.onAppended((appended) => told.push(appended));
    const records = Array.from({ length: 24 }, (_, i) => ({
      ...record("batch1", { name: `batch-${i}` }),
      inline: { type: "text" as const, text: `text ${i}` },
    }));
    const created = await Promise.all(records.map((r) => store.createArtifact(r)));
    stopListening();
    expect(created.map(({ artifact }) => [artifact.id, artifact.name])).toEqual(records.map((r) => [r.id, r.spec.name]));
    for (const r of records) expect((await store.getArtifact("batch1", r.id, { includeContent: true }))?.inlineContent).toEqual(r.inline);
    const events = await store.eventLog.readAfter(start, 100, "batch1");
    expect(events.map((e) => e.artifactId).sort()).toEqual(records.map((r) => r.id).sort());
    expect(events.every((e) => e.type === "created")).toBe(true);
    // Fewer commits than artifacts: listeners are told once per statement, with all of its events.
    expect(told.length).toBeLessThan(records.length);
    expect(told.flat().sort((a, b) => a.seq - b.seq)).toEqual(events);
  });

  it("a row Postgres refuses for its values fails its own call only, when written at once with others", async () => {
    const good = Array.from({ length: 12 }, (_, i) => ({ ...record("batch2", { name: `good-${i}` }), inline: { type: "text" as const, text: `text ${i}` } }));
    // JSON that parses but that jsonb cannot hold (\u0000): refused by Postgres, not by validation.
    const bad = { ...record("batch2", { name: "bad" }), inline: { type: "json" as const, json: '{"a":"\\u0000"}' } };
    const settled = await Promise.allSettled([...good.slice(0, 6), bad, ...good.slice(6)].map((r) => store.createArtifact(r)));
    expect(settled[6]).toMatchObject({ status: "rejected", reason: { code: "invalid_argument" } });
    const answered = settled.filter((_, i) => i !== 6);
    expect(answered.map((s) => (s.status === "fulfilled" ? s.value.artifact.id : s.reason))).toEqual(good.map((r) => r.id));
    expect(await store.getArtifact("batch2", bad.id)).toBeUndefined();
    const { items } = await store.listArtifacts("batch2", {}, { pageSize: 100, pageToken: "" });
    expect(items.map((a) => a.id).sort()).toEqual(good.map((r) => r.id).sort());
  });

  it("prunes the events before a cutoff and remembers the highest seq pruned", async () => {
    await store.createArtifact(record("ev2", {}));
    const { lastSeq } = await store.eventLog.bounds();
    expect(await store.eventLog.prune(new Date(Date.now() - 3_600_000))).toBe(0);
    expect(await store.eventLog.prune(new Date(Date.now() + 3_600_000))).toBeGreaterThan(0);
    expect(await store.eventLog.readAfter(0, 10)).toEqual([]);
    expect(await store.eventLog.bounds()).toEqual({ prunedThrough: lastSeq, lastSeq });
    await store.createArtifact(record("ev2", {}));
    const [next] = await store.eventLog.readAfter(0, 10);
    expect(next!.seq).toBeGreaterThan(lastSeq);
    expect(await store.eventLog.bounds()).toEqual({ prunedThrough: lastSeq, lastSeq: next!.seq });
  });

  it("stores tokens by hash, with scope and expiry, and revokes them", async () => {
    const expiresAt = new Date("2031-01-02T03:04:05Z");
    await store.createToken({ id: "tok_1", tenantId: "t1", name: "ci", sha256: "f".repeat(64), scope: "read-only", expiresAt });
    expect(await store.findTokenBySha256("f".repeat(64))).toMatchObject({ id: "tok_1", tenantId: "t1", scope: "read-only", expiresAt, revokedAt: undefined });
    expect(await store.findTokenById("tok_1")).toMatchObject({ tenantId: "t1", scope: "read-only", expiresAt });
    expect(await store.findTokenById("tok_none")).toBeUndefined();
    expect(await store.revokeToken("tok_1", new Date())).toBe(true);
    expect(await store.revokeToken("tok_1", new Date())).toBe(false);
    expect((await store.findTokenBySha256("f".repeat(64)))?.revokedAt).toBeInstanceOf(Date);
  });
});
