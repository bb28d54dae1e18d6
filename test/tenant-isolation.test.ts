import { Code } from "@connectrpc/connect";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Status } from "../src/gen/artifacts/v1/artifact_pb.js";
import { expectCode } from "./support/expect-code.ts";
import { BACKENDS, startTestApp, type TestApp } from "./support/test-app.ts";

/**
 * Every RPC that names or finds artifacts, called by another tenant: what it
 * names does not exist for that tenant (NOT_FOUND, never PERMISSION_DENIED,
 * which would tell that it exists), what it finds never includes the other
 * tenant's, and what it changes stays unchanged for the owner.
 */
describe.each(BACKENDS)("tenant isolation on every RPC (%s)", (backend) => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp(backend);
  });
  afterAll(() => t?.close());

  it("another tenant's artifacts, lineage, sessions and runs answer NOT_FOUND or nothing, and stay as they were", async () => {
    const alpha = t.client();
    const beta = t.client(t.tokens.beta);
    const save = (client: typeof alpha, name: string, extra: object = {}) =>
      client.saveInline({ spec: { kind: "report", name, metrics: { score: 0.9 }, provenance: { runId: "shared-run-id" }, ...extra }, content: { case: "text", value: name } });
    const parent = (await save(alpha, "alpha-parent")).artifact!;
    const child = (await save(alpha, "alpha-child", { inputs: [{ artifactId: parent.id, role: "source" }] })).artifact!;
    const session = (await alpha.createUploadSession({ spec: { kind: "report", name: "alpha-session" }, partSize: 5n * 1024n * 1024n })).session!;

    const notFound = /does not exist|not found|no upload session/i;
    await expectCode(beta.getArtifact({ id: child.id }), Code.NotFound, notFound);
    await expectCode(beta.getLineage({ id: child.id, depth: 3 }), Code.NotFound, notFound);
    await expectCode(beta.setPinned({ id: child.id, pinned: true }), Code.NotFound, notFound);
    await expectCode(beta.setStatus({ id: child.id, status: Status.REVIEW }), Code.NotFound, notFound);
    await expectCode(beta.deleteArtifact({ id: child.id }), Code.NotFound, notFound);
    await expectCode(beta.createDownloadUrl({ id: child.id }), Code.NotFound, notFound);
    await expectCode(beta.getUploadSession({ sessionId: session.sessionId }), Code.NotFound);
    await expectCode(beta.uploadPart({ sessionId: session.sessionId, partNumber: 1, data: new Uint8Array(10) }), Code.NotFound);
    await expectCode(beta.completeUploadSession({ sessionId: session.sessionId }), Code.NotFound);
    await expectCode(beta.abortUploadSession({ sessionId: session.sessionId }), Code.NotFound);
    // Beta's own input list cannot reach alpha's artifact either.
    await expectCode(save(beta, "beta-child", { inputs: [{ artifactId: parent.id }] }), Code.NotFound, notFound);

    // Finding: beta's searches, lists and rankings never include alpha's.
    const betaOwn = (await save(beta, "beta-only")).artifact!;
    expect((await beta.searchArtifacts({ query: "alpha" })).artifacts).toEqual([]);
    expect((await beta.listArtifacts({ filter: { kind: "report", includeDeleted: true } })).artifacts.map((a) => a.id)).toEqual([betaOwn.id]);
    expect((await beta.getBestArtifact({ kind: "report", metric: "score" })).artifact?.id).toBe(betaOwn.id);
    // Archiving a run id both tenants use deletes only the caller's artifacts.
    expect((await beta.archiveRun({ runId: "shared-run-id" })).deletedCount).toBe(1n);

    // Alpha's artifacts and session are untouched.
    for (const id of [parent.id, child.id]) {
      const artifact = (await alpha.getArtifact({ id })).artifact!;
      expect([artifact.pinned, artifact.status, artifact.deletedAt]).toEqual([false, Status.DRAFT, undefined]);
    }
    expect((await alpha.getLineage({ id: child.id, depth: 1 })).ancestors.map((a) => a.id)).toEqual([parent.id]);
    expect((await alpha.getUploadSession({ sessionId: session.sessionId })).session?.sessionId).toBe(session.sessionId);
    await alpha.abortUploadSession({ sessionId: session.sessionId });
  });

  it("a Watch sees only its own tenant's events", async () => {
    const alpha = t.client();
    const beta = t.client(t.tokens.beta);
    const abort = new AbortController();
    const events = beta.watchArtifacts({}, { signal: abort.signal })[Symbol.asyncIterator]();
    const first = events.next();
    await sleep(300);
    const alphaSaved = (await alpha.saveInline({ spec: { kind: "note", name: "alpha-event" }, content: { case: "text", value: "a" } })).artifact!;
    await alpha.setPinned({ id: alphaSaved.id, pinned: true });
    const betaSaved = (await beta.saveInline({ spec: { kind: "note", name: "beta-event" }, content: { case: "text", value: "b" } })).artifact!;
    // The first event beta's watcher gets is beta's own, though alpha's two came before it.
    expect((await first).value?.artifact?.id).toBe(betaSaved.id);
    abort.abort();
  });
});
