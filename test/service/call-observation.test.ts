import { Code, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { AsyncLocalStorage } from "node:async_hooks";
import { afterAll, beforeAll, expect, it, vi } from "vitest";
import { ArtifactService } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import type { CallObserver, CallRecord, StoreOperation } from "../../src/observability/calls.ts";
import { expectCode } from "../support/expect-code.ts";
import { startTestApp, type TestApp } from "../support/test-app.ts";
import { describeOn } from "../support/test-backends.ts";

/**
 * The per-call seam as an observer of its own sees it (src/observability/calls.ts):
 * what tracing is built on. `started` in list order, `within` nested in list
 * order around the call, so the stores' operations run in the context the
 * observers set up; `finished` once per call.
 */
const TRACE_ID = "0af7651916cd43dd8448eb211c80319c";

interface Seen {
  readonly events: string[];
  readonly finished: CallRecord[];
  readonly operations: { readonly operation: StoreOperation; readonly call: CallRecord | undefined; failed: boolean | undefined }[];
}

describeOn("pglite+fs")("the call seam", () => {
  let t: TestApp;
  const context = new AsyncLocalStorage<{ readonly by: string; readonly call: CallRecord }>();
  const seen: Seen = { events: [], finished: [], operations: [] };
  const observer = (name: string, extra: Partial<CallObserver> = {}): CallObserver => ({
    started(call) {
      extra.started?.(call);
      seen.events.push(`${name} started ${call.method} traceId=${call.traceId}`);
    },
    within(call, run) {
      // The first observer's context is around the second's.
      seen.events.push(`${name} within ${call.method} inside=${context.getStore()?.by}`);
      return context.run({ by: name, call }, run);
    },
    finished(call) {
      seen.events.push(`${name} finished ${call.method}`);
      if (name === "second") seen.finished.push(call);
    },
  });
  beforeAll(async () => {
    t = await startTestApp(
      "pglite+fs",
      {},
      {
        calls: [
          observer("first", {
            started(call) {
              // As tracing will: the trace id is there for every observer after it.
              call.traceId = TRACE_ID;
            },
          }),
          observer("second"),
        ],
        storeOperations: [
          {
            started(operation) {
              const entry = { operation, call: context.getStore()?.call, failed: undefined as boolean | undefined };
              seen.operations.push(entry);
              return (error) => {
                entry.failed = error !== undefined;
              };
            },
          },
        ],
      },
    );
  });
  afterAll(async () => {
    await t?.close();
  });

  it("tells observers in list order, runs the call and its statements inside their contexts, and finishes each call once", async () => {
    const saved = await t.client().saveInline({ spec: { kind: "seam" }, content: { case: "text", value: "seam" } });
    const id = saved.artifact!.id;
    const connect = createClient(
      ArtifactService,
      createConnectTransport({
        baseUrl: t.url,
        httpVersion: "1.1",
        interceptors: [
          (next) => (request) => {
            request.header.set("authorization", `Bearer ${t.tokens.alpha}`);
            return next(request);
          },
        ],
      }),
    );
    seen.events.length = 0;
    await connect.getArtifact({ id });
    await vi.waitFor(() => expect(seen.finished.filter((call) => call.method === "GetArtifact")).toHaveLength(1));
    expect(seen.events).toEqual([
      `first started GetArtifact traceId=${TRACE_ID}`,
      `second started GetArtifact traceId=${TRACE_ID}`,
      "first within GetArtifact inside=undefined",
      "second within GetArtifact inside=first",
      "first finished GetArtifact",
      "second finished GetArtifact",
    ]);
    const call = seen.finished.find((c) => c.method === "GetArtifact")!;
    expect(call).toMatchObject({ service: ArtifactService.typeName, protocol: "connect", tenantId: "alpha", code: 0, streaming: false });
    expect(call.bytesReceived).toBeGreaterThan(0);
    expect(call.bytesSent).toBeGreaterThan(0);
    // The access line carries the trace id the first observer set.
    await vi.waitFor(() => expect(t.serverLog.calls.some((entry) => entry.line!.includes(`"traceId":"${TRACE_ID}"`))).toBe(true));

    // Its statement ran inside the call's context: a SELECT of artifacts, answered.
    const statements = seen.operations.filter((o) => o.call === call);
    expect(statements.length).toBeGreaterThan(0);
    expect(statements).toContainEqual({ operation: { system: "postgresql", operation: "SELECT", collection: "artifacts" }, call, failed: false });
  });

  it("reports the blob store's requests inside the call that made them, a failed one with its error", async () => {
    const { artifact } = await t.client().upload(
      (async function* () {
        yield { message: { case: "header" as const, value: { spec: { kind: "seam" } } } };
        yield { message: { case: "chunk" as const, value: new Uint8Array(1024).fill(7) } };
      })(),
    );
    await vi.waitFor(() => expect(seen.finished.some((c) => c.method === "Upload")).toBe(true));
    const uploadCall = seen.finished.find((c) => c.method === "Upload")!;
    expect(uploadCall.code).toBe(0);
    const blobOps = seen.operations.filter((o) => o.call === uploadCall && o.operation.system === "filesystem").map((o) => [o.operation.operation, o.failed]);
    expect(blobOps).toEqual(
      expect.arrayContaining([
        ["createWriter", false],
        ["commit", false],
      ]),
    );
    expect(uploadCall.bytesReceived).toBeGreaterThanOrEqual(1024);

    // Its stored bytes removed behind the server's back: the Download's read fails, and says so.
    await t.app.blobs.delete((await t.app.metadata.findBlob("alpha", artifact!.blake3))!.storageKey);
    await expectCode(
      (async () => {
        for await (const _ of t.client().download({ id: artifact!.id }));
      })(),
      Code.DataLoss,
    );
    await vi.waitFor(() => expect(seen.finished.some((c) => c.method === "Download")).toBe(true));
    const download = seen.finished.find((c) => c.method === "Download")!;
    expect(download.code).toBe(Code.DataLoss);
    expect(seen.operations.filter((o) => o.call === download && o.operation.operation === "read").map((o) => o.failed)).toEqual([true]);
  });
});
