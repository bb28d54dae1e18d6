import { afterAll, beforeAll, expect, it } from "vitest";
import type { ArtifactSpec } from "../../src/artifact.ts";
import { newArtifactId } from "../../src/artifact-id.ts";
import type { MetadataStore, NewArtifact } from "../../src/ports/metadata-store.ts";
import { BASE_SPEC, METADATA_STORE_ADAPTERS } from "../support/metadata-store-adapters.ts";
import { describeEachAdapter } from "../support/test-backends.ts";

/**
 * The versions port of the metadata store (ArtifactVersions, and versioned
 * createArtifact), on the Postgres server and on embedded PGlite: numbering
 * under concurrency, resolution, and aliases under racing writers.
 */

const by = { movedBy: "tester", reason: "" };
let tenantSeq = 0;
const newTenant = () => `versions-${process.pid}-${tenantSeq++}`;

function versioned(tenantId: string, name: string, spec: Partial<ArtifactSpec> = {}, blobKey?: string): NewArtifact {
  const createdAt = new Date();
  const digest = blobKey ? blobKey.padEnd(64, "0").slice(0, 64) : "d".repeat(64);
  return {
    id: newArtifactId("art", createdAt.getTime()),
    tenantId,
    spec: { ...BASE_SPEC, name, versioned: true, ...spec },
    mimeType: "application/octet-stream",
    sizeBytes: 10,
    blake3: digest,
    createdAt,
    createdBy: "test",
    ...(blobKey ? { blob: { storageKey: blobKey } } : { inline: { type: "text" as const, text: "0123456789" } }),
  };
}

describeEachAdapter("ArtifactVersions contract: %s", METADATA_STORE_ADAPTERS, (_name, open) => {
  let store: MetadataStore;
  let close: () => Promise<void>;
  beforeAll(async () => {
    ({ store, close } = await open());
  });
  afterAll(async () => {
    await close?.();
  });

  it("numbers concurrent versioned records 1..N, inline and blob alike, per project and name", async () => {
    const tenant = newTenant();
    const made = await Promise.all(Array.from({ length: 16 }, (_, i) => store.createArtifact(versioned(tenant, "orders", {}, i % 2 ? `key${i}` : undefined))));
    expect(made.map((m) => m.artifact.version).sort((a, b) => a! - b!)).toEqual(Array.from({ length: 16 }, (_, i) => i + 1));
    const other = await store.createArtifact(versioned(tenant, "orders", { project: "p2" }));
    expect([other.artifact.version, other.artifact.project]).toEqual([1, "p2"]);
    const elsewhere = await store.createArtifact(versioned(newTenant(), "orders"));
    expect(elsewhere.artifact.version).toBe(1);
  });

  it("resolves versions, aliases and latest, and says what is missing", async () => {
    const tenant = newTenant();
    const v1 = (await store.createArtifact(versioned(tenant, "model"))).artifact;
    const v2 = (await store.createArtifact(versioned(tenant, "model"))).artifact;
    const resolve = (reference: Parameters<MetadataStore["versions"]["resolveReference"]>[1]) => store.versions.resolveReference(tenant, reference);
    expect(await resolve({ kind: "version", project: "", name: "model", version: 1 })).toEqual({ id: v1.id });
    expect(await resolve({ kind: "alias", project: "", name: "model", alias: "latest" })).toEqual({ id: v2.id });
    expect(await resolve({ kind: "version", project: "", name: "model", version: 3 })).toEqual({ missing: `"model" has no version 3 (its versions are 1–2)` });
    expect(await resolve({ kind: "alias", project: "", name: "model", alias: "prod" })).toEqual({ missing: `"model" has no alias "prod"` });
    expect(await resolve({ kind: "alias", project: "x", name: "model", alias: "latest" })).toEqual({
      missing: `there is no versioned artifact named "x/model"`,
    });
    await store.versions.setAlias(tenant, v1.id, "prod", by);
    expect(await resolve({ kind: "alias", project: "", name: "model", alias: "prod" })).toEqual({ id: v1.id });
    expect((await store.getArtifact(tenant, v1.id))!.aliases).toEqual(["prod"]);
    expect((await store.getArtifact(tenant, v2.id))!.aliases).toEqual(["latest"]);
    // Another tenant resolves nothing of it.
    expect(await store.versions.resolveReference(newTenant(), { kind: "version", project: "", name: "model", version: 1 })).toHaveProperty("missing");
  });

  it("lets exactly one of racing create-only SetAlias calls win, and keeps a consistent history of racing moves", async () => {
    const tenant = newTenant();
    const versions = [];
    for (let i = 0; i < 6; i++) versions.push((await store.createArtifact(versioned(tenant, "racing"))).artifact);
    const creates = await Promise.allSettled(versions.map((v) => store.versions.setAlias(tenant, v.id, "gold", by, "")));
    expect(creates.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    for (const refused of creates.filter((r) => r.status === "rejected")) expect((refused as PromiseRejectedResult).reason).toMatchObject({ code: "aborted" });

    // Unconditional moves all land, one after another: each move starts where the one before it ended.
    await Promise.all(versions.map((v) => store.versions.setAlias(tenant, v.id, "silver", by)));
    const history = (await store.versions.listAliasHistory(tenant, { project: "", name: "racing" }, "silver", {
      pageSize: 100,
      pageToken: "",
    }))!.items.reverse();
    expect(history[0]!.fromArtifactId).toBeUndefined();
    for (let i = 1; i < history.length; i++) expect(history[i]!.fromArtifactId).toBe(history[i - 1]!.toArtifactId);
    const now = await store.versions.resolveReference(tenant, { kind: "alias", project: "", name: "racing", alias: "silver" });
    expect(now).toEqual({ id: history.at(-1)!.toArtifactId });
  });

  it("logs alias moves as events with the move, in the move's transaction", async () => {
    const tenant = newTenant();
    const v1 = (await store.createArtifact(versioned(tenant, "evented"))).artifact;
    const { lastSeq } = await store.eventLog.bounds();
    await store.versions.setAlias(tenant, v1.id, "prod", { movedBy: "ci", reason: "why not" });
    await store.versions.deleteAlias(tenant, { project: "", name: "evented" }, "prod", by);
    const events = await store.eventLog.readAfter(lastSeq, 10, tenant);
    expect(events.map((e) => [e.type, e.artifactId, e.aliasMove?.toArtifactId, e.aliasMove?.fromArtifactId, e.aliasMove?.movedBy])).toEqual([
      ["alias_moved", v1.id, v1.id, undefined, "ci"],
      ["alias_moved", v1.id, undefined, v1.id, "tester"],
    ]);
    expect(events[0]!.aliasMove!.movedAt).toBeInstanceOf(Date);
    // A refused move logs nothing.
    await expect(store.versions.setAlias(tenant, v1.id, "prod", by, v1.id)).rejects.toMatchObject({ code: "aborted" });
    expect(await store.eventLog.readAfter(events.at(-1)!.seq, 10, tenant)).toEqual([]);
  });
});
