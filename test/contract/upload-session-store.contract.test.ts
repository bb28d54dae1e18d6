import { randomBytes, randomUUID } from "node:crypto";
import { afterAll, beforeAll, expect, it } from "vitest";
import { newArtifactId } from "../../src/artifact-id.ts";
import type { MetadataStore } from "../../src/ports/metadata-store.ts";
import type { NewUploadSession, UploadSessionRecord, UploadSessionStore } from "../../src/ports/upload-session-store.ts";
import { BASE_SPEC, METADATA_STORE_ADAPTERS } from "../support/metadata-store-adapters.ts";
import { describeEachAdapter } from "../support/test-backends.ts";

/**
 * One suite for the UploadSessionStore port (src/ports/upload-session-store.ts),
 * reached as MetadataStore.uploadSessions, on the Postgres server and on
 * embedded PGlite: what its doc comments promise. One promise is not
 * checked here: a writer's lease lapsing after WRITER_LEASE_MS (30 s by the
 * database's clock, which the port gives no way to move).
 */
const HOUR = 3_600_000;

function newSession(tenantId: string, fields: Partial<NewUploadSession> = {}): NewUploadSession {
  return {
    id: newArtifactId("ups"),
    tenantId,
    idempotencyKey: undefined,
    spec: { ...BASE_SPEC, kind: "dataset", labels: { split: "train" } },
    expectedSize: 12_345,
    expectedBlake3: undefined,
    partSize: 5 * 1024 * 1024,
    storageKey: `${tenantId}/${randomUUID()}`,
    multipartId: randomUUID(),
    createdBy: "tok_test",
    expiresAt: new Date(Date.now() + HOUR),
    ...fields,
  };
}

const part = (partNumber: number, etag = `etag-${partNumber}`, sizeBytes = 100 * partNumber) => ({ partNumber, sizeBytes, etag });

describeEachAdapter("UploadSessionStore contract: %s", METADATA_STORE_ADAPTERS, (_name, open) => {
  let metadata: MetadataStore;
  let sessions: UploadSessionStore;
  let close: () => Promise<void>;
  beforeAll(async () => {
    ({ store: metadata, close } = await open());
    sessions = metadata.uploadSessions;
  });
  afterAll(async () => {
    await close?.();
  });
  const create = async (tenantId: string, fields: Partial<NewUploadSession> = {}): Promise<UploadSessionRecord> => {
    const { session, created } = await sessions.create(newSession(tenantId, fields));
    expect(created).toBe(true);
    return session;
  };
  /** Keys given up to garbage collection (released), claimed here; then forgotten, so the next look starts afresh. */
  const releasedKeys = async (): Promise<string[]> => {
    const claimed = await metadata.uploadsInFlight.claimReclaimable(HOUR, 10_000);
    for (const { storageKey } of claimed) await metadata.uploadsInFlight.forget(storageKey);
    return claimed.map((c) => c.storageKey);
  };
  /** A session as completing it leaves it: assembled, then its artifact recorded under the claim. */
  const completed = async (tenantId: string): Promise<UploadSessionRecord> => {
    const session = await create(tenantId);
    const claim = randomUUID();
    // A digest of its own: the same content recorded before would keep the earlier blob and release this key.
    const digest = randomBytes(32).toString("hex");
    await sessions.beginCompleting(tenantId, session.id, claim, HOUR);
    await sessions.markAssembled(session.id, claim, 10, digest);
    await metadata.createArtifact({
      id: newArtifactId("art"),
      tenantId,
      spec: session.spec,
      mimeType: "application/octet-stream",
      sizeBytes: 10,
      blake3: digest,
      createdAt: new Date(),
      createdBy: "tok_test",
      blob: { storageKey: session.storageKey },
      hold: { session: { id: session.id, claim, storageKey: session.storageKey } },
    });
    return (await sessions.get(tenantId, session.id))!;
  };

  it("records a new session, open with no parts, and reads it back within its tenant only", async () => {
    const fields = newSession("t1", { idempotencyKey: "key-1", expectedBlake3: "a".repeat(64) });
    const { session, created } = await sessions.create(fields);
    expect(created).toBe(true);
    expect(session).toEqual({
      ...fields,
      state: "open",
      artifactId: undefined,
      assembled: undefined,
      writerId: undefined,
      createdAt: expect.any(Date),
      parts: [],
    });
    expect(Math.abs(session.createdAt.getTime() - Date.now())).toBeLessThan(60_000);
    expect(await sessions.get("t1", session.id)).toEqual(session);
    expect(await sessions.get("t2", session.id)).toBeUndefined();
    expect(await sessions.get("t1", newArtifactId("ups"))).toBeUndefined();
  });

  it("ends the in-flight record of the session's storage key as it records the session", async () => {
    const fields = newSession("t1");
    await metadata.uploadsInFlight.begin("t1", fields.storageKey);
    await metadata.uploadsInFlight.release(fields.storageKey);
    await sessions.create(fields);
    // Released before, the key would now be garbage collection's: the session holds it instead.
    expect(await releasedKeys()).not.toContain(fields.storageKey);
    expect(await metadata.knownStorageKeys([fields.storageKey])).toEqual(new Set([fields.storageKey]));
  });

  it("answers an idempotency key a live session of the tenant has with that session, and finds it by the key", async () => {
    const first = await create("t1", { idempotencyKey: "retry-me" });
    const again = await sessions.create(newSession("t1", { idempotencyKey: "retry-me" }));
    expect(again.created).toBe(false);
    expect(again.session.id).toBe(first.id);
    expect((await sessions.findByIdempotencyKey("t1", "retry-me"))?.id).toBe(first.id);
    expect(await sessions.findByIdempotencyKey("t1", "never-used")).toBeUndefined();
    // Keys are the tenant's own.
    expect(await sessions.findByIdempotencyKey("t2", "retry-me")).toBeUndefined();
    const otherTenant = await sessions.create(newSession("t2", { idempotencyKey: "retry-me" }));
    expect(otherTenant.created).toBe(true);
    expect(otherTenant.session.id).not.toBe(first.id);
  });

  it("get includes sessions past their expiry: the caller decides", async () => {
    const expired = await create("t1", { expiresAt: new Date(Date.now() - 1_000) });
    expect((await sessions.get("t1", expired.id))?.id).toBe(expired.id);
  });

  it("lists sessions whose expiry has passed, oldest first, up to the limit", async () => {
    // Long past, so only this test's sessions have expired by `now`.
    const at = (second: number) => new Date(Date.UTC(2001, 0, 1, 0, 0, second));
    const middle = await create("t1", { expiresAt: at(2) });
    const oldest = await create("t2", { expiresAt: at(1) });
    const newest = await create("t1", { expiresAt: at(3) });
    await create("t1", { expiresAt: at(20) });
    const now = at(10);
    expect((await sessions.listExpired(now, 10)).map((s) => s.id)).toEqual([oldest.id, middle.id, newest.id]);
    expect((await sessions.listExpired(now, 2)).map((s) => s.id)).toEqual([oldest.id, middle.id]);
  });

  it("counts the sessions of every tenant still open: not the expired, not the completed", async () => {
    const now = new Date();
    const before = await sessions.countOpen(now);
    await create("count-a");
    await create("count-b");
    await create("count-b", { expiresAt: new Date(now.getTime() - 1_000) });
    await completed("count-c");
    expect(await sessions.countOpen(now)).toBe(before + 2);
  });

  it("records parts and replaces a part sent again; parts come back ascending by number", async () => {
    const session = await create("t1");
    for (const partNumber of [3, 1, 2]) expect(await sessions.recordPart(session.id, part(partNumber), undefined)).toBe("recorded");
    expect(await sessions.recordPart(session.id, part(1, "etag-1-again", 7), undefined)).toBe("recorded");
    expect((await sessions.get("t1", session.id))?.parts).toEqual([part(1, "etag-1-again", 7), part(2), part(3)]);
  });

  it("binds one streaming writer: its parts land, a part call's and another writer's are held off until it releases", async () => {
    const session = await create("t1");
    expect(await sessions.acquireWriter(session.id, "writer-1")).toBe("acquired");
    expect(await sessions.acquireWriter(session.id, "writer-2")).toBe("held");
    expect((await sessions.get("t1", session.id))?.writerId).toBe("writer-1");
    expect(await sessions.recordPart(session.id, part(1), undefined)).toBe("held");
    expect(await sessions.recordPart(session.id, part(1), "writer-2")).toBe("held");
    expect(await sessions.recordPart(session.id, part(1), "writer-1")).toBe("recorded");
    expect(await sessions.renewWriter(session.id, "writer-1")).toBe(true);
    expect(await sessions.renewWriter(session.id, "writer-2")).toBe(false);

    // Only the holder's release counts.
    await sessions.releaseWriter(session.id, "writer-2");
    expect(await sessions.acquireWriter(session.id, "writer-2")).toBe("held");
    await sessions.releaseWriter(session.id, "writer-1");
    expect((await sessions.get("t1", session.id))?.writerId).toBeUndefined();
    expect(await sessions.renewWriter(session.id, "writer-1")).toBe(false);
    expect(await sessions.recordPart(session.id, part(2), undefined)).toBe("recorded");
    expect(await sessions.acquireWriter(session.id, "writer-2")).toBe("acquired");
    expect((await sessions.get("t1", session.id))?.parts.map((p) => p.partNumber)).toEqual([1, 2]);
  });

  it("takes no parts and binds no writer once a session is completing, assembled or gone", async () => {
    const missing = newArtifactId("ups");
    expect(await sessions.recordPart(missing, part(1), undefined)).toBe("closed");
    expect(await sessions.acquireWriter(missing, "writer-1")).toBe("closed");

    const session = await create("t1");
    const claim = randomUUID();
    await sessions.beginCompleting("t1", session.id, claim, HOUR);
    expect(await sessions.recordPart(session.id, part(1), undefined)).toBe("closed");
    expect(await sessions.acquireWriter(session.id, "writer-1")).toBe("closed");
    // Open again but assembled: still closed to bytes.
    await sessions.markAssembled(session.id, claim, 0, "e".repeat(64));
    await sessions.reopen(session.id, claim);
    expect((await sessions.get("t1", session.id))?.state).toBe("open");
    expect(await sessions.recordPart(session.id, part(1), undefined)).toBe("closed");
    expect(await sessions.acquireWriter(session.id, "writer-1")).toBe("closed");
    expect((await sessions.get("t1", session.id))?.parts).toEqual([]);
  });

  it("lets one claim complete a session; another is told, with the session as it is; an unknown session is undefined", async () => {
    const session = await create("t1");
    const first = await sessions.beginCompleting("t1", session.id, "claim-1", HOUR);
    expect(first).toMatchObject({ acquired: true, session: { id: session.id, state: "completing" } });
    const second = await sessions.beginCompleting("t1", session.id, "claim-2", HOUR);
    expect(second).toMatchObject({ acquired: false, session: { id: session.id, state: "completing" } });
    expect(await sessions.renewClaim(session.id, "claim-1")).toBe(true);
    expect(await sessions.renewClaim(session.id, "claim-2")).toBe(false);
    expect(await sessions.beginCompleting("t2", session.id, "claim-3", HOUR)).toBeUndefined();
    expect(await sessions.beginCompleting("t1", newArtifactId("ups"), "claim-3", HOUR)).toBeUndefined();
  });

  it("lets a claim not renewed for staleMs be taken over; the old claim is lost", async () => {
    const session = await create("t1");
    await sessions.beginCompleting("t1", session.id, "claim-1", HOUR);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(await sessions.beginCompleting("t1", session.id, "claim-2", HOUR)).toMatchObject({ acquired: false });
    expect(await sessions.beginCompleting("t1", session.id, "claim-2", 10)).toMatchObject({ acquired: true, session: { state: "completing" } });
    expect(await sessions.renewClaim(session.id, "claim-1")).toBe(false);
    expect(await sessions.renewClaim(session.id, "claim-2")).toBe(true);
  });

  it("records the assembled object under the claim only", async () => {
    const session = await create("t1");
    await sessions.beginCompleting("t1", session.id, "claim-1", HOUR);
    await sessions.markAssembled(session.id, "someone-else", 1, "f".repeat(64));
    expect((await sessions.get("t1", session.id))?.assembled).toBeUndefined();
    await sessions.markAssembled(session.id, "claim-1", 42, "a".repeat(64));
    expect((await sessions.get("t1", session.id))?.assembled).toEqual({ size: 42, digest: "a".repeat(64) });
  });

  it("reopens a completing session for its claim only, and the claim is given up", async () => {
    const session = await create("t1");
    await sessions.beginCompleting("t1", session.id, "claim-1", HOUR);
    await sessions.reopen(session.id, "someone-else");
    expect((await sessions.get("t1", session.id))?.state).toBe("completing");
    await sessions.reopen(session.id, "claim-1");
    expect((await sessions.get("t1", session.id))?.state).toBe("open");
    expect(await sessions.renewClaim(session.id, "claim-1")).toBe(false);
    await sessions.markAssembled(session.id, "claim-1", 1, "f".repeat(64));
    expect((await sessions.get("t1", session.id))?.assembled).toBeUndefined();
    expect(await sessions.recordPart(session.id, part(1), undefined)).toBe("recorded");
    expect(await sessions.beginCompleting("t1", session.id, "claim-2", HOUR)).toMatchObject({ acquired: true });
  });

  it("records completing's end: the session completed with its artifact, closed to parts, writers and claims", async () => {
    const session = await completed("t1");
    expect(session.state).toBe("completed");
    expect(session.artifactId).toMatch(/^art_/);
    expect(await sessions.recordPart(session.id, part(1), undefined)).toBe("closed");
    expect(await sessions.acquireWriter(session.id, "writer-1")).toBe("closed");
    expect(await sessions.beginCompleting("t1", session.id, "claim-2", 0)).toMatchObject({ acquired: false, session: { state: "completed" } });
  });

  it("abandons a session in an allowed state, releasing its storage key to garbage collection", async () => {
    await releasedKeys();
    const session = await create("t1");
    await sessions.recordPart(session.id, part(1), undefined);
    const result = await sessions.abandon("t1", session.id, { states: ["open"] });
    expect(result).toEqual({ deleted: { ...session, parts: [part(1)] } });
    expect(await sessions.get("t1", session.id)).toBeUndefined();
    expect(await releasedKeys()).toEqual([session.storageKey]);
  });

  it("keeps a session whose state is not allowed or whose claim is not ours, and says why", async () => {
    await releasedKeys();
    const session = await create("t1");
    expect(await sessions.abandon("t1", session.id, { states: ["completing"] })).toEqual({ kept: "open" });
    await sessions.beginCompleting("t1", session.id, "claim-1", HOUR);
    expect(await sessions.abandon("t1", session.id, { states: ["open"] })).toEqual({ kept: "completing" });
    expect(await sessions.abandon("t1", session.id, { states: ["completing"], claim: "someone-else" })).toEqual({ kept: "completing" });
    expect(await sessions.abandon("t2", session.id, { states: ["open", "completing"] })).toEqual({ kept: "missing" });
    expect(await sessions.abandon("t1", newArtifactId("ups"), { states: ["open"] })).toEqual({ kept: "missing" });
    expect((await sessions.get("t1", session.id))?.state).toBe("completing");
    expect(await releasedKeys()).toEqual([]);

    expect(await sessions.abandon("t1", session.id, { states: ["completing"], claim: "claim-1" })).toMatchObject({ deleted: { id: session.id } });
    expect(await releasedKeys()).toEqual([session.storageKey]);
  });

  it("abandons a completed session without releasing its key: a blob row names it", async () => {
    await releasedKeys();
    const session = await completed("t1");
    expect(await sessions.abandon("t1", session.id, { states: ["completed"] })).toMatchObject({ deleted: { id: session.id, state: "completed" } });
    expect(await sessions.get("t1", session.id)).toBeUndefined();
    expect(await releasedKeys()).toEqual([]);
    expect(await metadata.blobHoldsKey(session.storageKey)).toBe(true);
  });
});
