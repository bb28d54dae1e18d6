import { Code } from "@connectrpc/connect";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startCuttingProxy, type CuttingProxy } from "../../../test/support/cutting-proxy.ts";
import { expectCode } from "../../../test/support/expect-code.ts";
import { BACKENDS, startTestApp, type Backend, type TestApp } from "../../../test/support/test-app.ts";
import { createApiToken } from "../../../src/service/api-tokens.ts";
import { createArtifactClient, EventType, Status, type Artifact, type ArtifactClient, type WatchArtifactsResponse } from "../src/index.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const unique = () => Math.random().toString(36).slice(2, 10);
const ids = (artifacts: readonly Artifact[]) => artifacts.map((a) => a.id);
const collect = async <T>(items: AsyncIterable<T>) => {
  const all: T[] = [];
  for await (const item of items) all.push(item);
  return all;
};

describe.each(BACKENDS)("Node client helpers and scoped clients on %s", (backend) => {
  let t: TestApp;
  let client: ArtifactClient;
  let dir: string;
  beforeAll(async () => {
    t = await startTestApp(backend);
    client = createArtifactClient({
      baseUrl: t.url,
      token: t.tokens.alpha,
      timeoutMs: 30_000,
      cacheDir: mkdtempSync(path.join(os.tmpdir(), "helpers-cache-")),
    });
    dir = mkdtempSync(path.join(os.tmpdir(), "artifactd-helpers-"));
  });
  afterAll(async () => {
    await client?.close();
    await t?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  describe("helpers", () => {
    it("searches, page by page, within a filter", async () => {
      const word = `zebra${unique()}`;
      const made = [];
      for (let i = 0; i < 3; i++) made.push(await client.saveText(`${i}`, { kind: "note", name: `${word} note ${i}`, labels: { batch: word } }));
      await client.saveText("x", { kind: "other", name: `${word} other` });
      const found = await collect(client.search(word, { kind: "note" }, { pageSize: 2 }));
      expect(ids(found).sort()).toEqual(ids(made).sort());
      const first = await client.searchPage(word, {}, { pageSize: 3 });
      expect(first.artifacts).toHaveLength(3);
      expect(first.nextPageToken).not.toBe("");
      expect(await collect(client.search(`nothing${unique()}`))).toEqual([]);
    });

    it("finds the best artifact by a metric, highest or lowest, and none when nothing has it", async () => {
      const run = `best-${unique()}`;
      const low = await client.saveJson({}, { kind: "model", metrics: { loss: 0.1, f1: 0.6 }, provenance: { runId: run } });
      const high = await client.saveJson({}, { kind: "model", metrics: { loss: 0.4, f1: 0.9 }, provenance: { runId: run } });
      const filter = { provenance: { runId: run } };
      expect((await client.best("model", "f1", { filter }))?.id).toBe(high.id);
      expect((await client.best("model", "loss", { filter, minimize: true }))?.id).toBe(low.id);
      expect(ids(await client.top("model", "f1", 1, { filter }))).toEqual([high.id]);
      expect(await client.best("model", "recall", { filter })).toBeUndefined();
      expect(await client.top("model", "recall", 1, { filter })).toEqual([]);
      await expect(client.top("model", "f1", 0)).rejects.toThrow(/limit must be a whole number >= 1/);
      await expectCode(client.best("", "f1"), Code.InvalidArgument, /kind is required/);
    });

    it("records usages (once per run and role) and reads them with the lineage", async () => {
      const dataset = await client.saveText("rows", { kind: "dataset" });
      const model = await client.saveText("weights", { kind: "model", inputs: [{ artifactId: dataset.id, role: "training-data" }] });
      const used = await client.recordUsage({ artifactId: model.id, runId: "eval-7", role: "evaluation-model" });
      expect(used).toMatchObject({ artifactId: model.id, runId: "eval-7", role: "evaluation-model", recordedBy: "alpha-ci" });
      const again = await client.recordUsage({ artifactId: model.id, runId: "eval-7", role: "evaluation-model" });
      expect(again.recordedAt).toEqual(used.recordedAt);
      await client.recordUsage({ artifactId: model.id, runId: "eval-8" });

      const lineage = await client.lineage(model.id);
      expect(ids(lineage.ancestors)).toEqual([dataset.id]);
      expect(lineage.usages.map((u) => [u.runId, u.role])).toEqual([
        ["eval-7", "evaluation-model"],
        ["eval-8", ""],
      ]);
      expect((await client.lineage(dataset.id, { depth: 2 })).usages).toEqual([]);
      await expectCode(client.recordUsage({ artifactId: model.id, runId: "" }), Code.InvalidArgument, /run_id is required/);
      await client.delete(dataset.id);
      await expectCode(client.recordUsage({ artifactId: dataset.id, runId: "late" }), Code.FailedPrecondition, /was deleted/);
    });

    it("pins, unpins and moves the review status, a repeated move answering the artifact unchanged", async () => {
      const report = await client.saveText("draft", { kind: "report" });
      expect((await client.pin(report.id)).pinned).toBe(true);
      await expectCode(client.delete(report.id), Code.FailedPrecondition);
      expect((await client.unpin(report.id)).pinned).toBe(false);
      expect((await client.setStatus(report.id, Status.REVIEW)).status).toBe(Status.REVIEW);
      expect((await client.setStatus(report.id, Status.REVIEW)).status).toBe(Status.REVIEW);
      expect((await client.setStatus(report.id, Status.APPROVED)).status).toBe(Status.APPROVED);
      await expectCode(client.setStatus(report.id, Status.DRAFT), Code.FailedPrecondition);
    });

    it("refuses a read-only token's usages and status moves", async () => {
      const reader = (await createApiToken(t.app.metadata, "alpha", `reader-${unique()}`, { scope: "read-only" })).token;
      const readOnly = createArtifactClient({ baseUrl: t.url, token: reader });
      try {
        const model = await client.saveText("m", { kind: "model" });
        await expectCode(readOnly.recordUsage({ artifactId: model.id, runId: "r" }), Code.PermissionDenied);
        await expectCode(readOnly.setStatus(model.id, Status.REVIEW), Code.PermissionDenied);
      } finally {
        await readOnly.close();
      }
    });
  });

  describe("withScope", () => {
    it("fills the scope's provenance on every kind of save, the call's own values winning", async () => {
      const job = `job-${unique()}`;
      const scoped = client.withScope({ parentRunId: job, runId: "step-1", graphId: "g", nodeId: "n1" });
      const file = path.join(dir, `${job}.bin`);
      writeFileSync(file, randomBytes(5000));
      const folder = path.join(dir, `${job}-folder`);
      mkdirSync(path.join(folder, "sub"), { recursive: true });
      writeFileSync(path.join(folder, "sub", "a.txt"), "a");
      const staged = await scoped.stagePath(".txt");
      writeFileSync(staged, "staged");
      const stagedDir = await scoped.stageDir();
      writeFileSync(path.join(stagedDir, "b.txt"), "b");

      const writer = scoped.openWriter({ kind: "log" });
      await writer.write("line\n");
      const saved: Record<string, Artifact> = {
        openWriter: (await writer.commit()).artifact!,
        withWriter: (await scoped.withWriter({ kind: "log" }, async (w) => void (await w.write("x")))).artifact!,
        uploadFile: (await scoped.uploadFile(file, { kind: "dataset" })).artifact!,
        uploadStream: (await scoped.uploadStream([Buffer.from("stream")], { kind: "dataset" })).artifact!,
        saveFile: await scoped.saveFile(file, { kind: "dataset" }),
        saveJson: await scoped.saveJson({ ok: true }, { kind: "summary" }),
        saveText: await scoped.saveText("text", { kind: "summary" }),
        saveDir: await scoped.saveDir(folder, { kind: "checkpoint" }),
        ingestFile: await scoped.ingestFile(staged, { kind: "dataset" }),
        ingestDir: await scoped.ingestDir(stagedDir, { kind: "checkpoint" }),
      };
      for (const [how, artifact] of Object.entries(saved)) {
        expect(artifact.provenance, how).toMatchObject({ parentRunId: job, runId: "step-1", graphId: "g", nodeId: "n1" });
        // As stored, not only as answered.
        expect((await client.get(artifact.id)).provenance?.parentRunId, how).toBe(job);
      }
      // The files of a directory artifact carry it too.
      const entries = await collect(client.list({ artifactClass: "directory-entry", provenance: { parentRunId: job } }));
      expect(entries.length).toBeGreaterThanOrEqual(2);

      const explicit = await scoped.saveText("mine", { kind: "summary", provenance: { runId: "step-2", toolName: "cli" } });
      expect(explicit.provenance).toMatchObject({ parentRunId: job, runId: "step-2", graphId: "g", nodeId: "n1", toolName: "cli" });
      const narrower = scoped.withScope({ nodeId: "n2" });
      expect(narrower.scope).toEqual({ parentRunId: job, runId: "step-1", graphId: "g", nodeId: "n2" });
      expect((await narrower.saveJson(1, { kind: "summary" })).provenance).toMatchObject({ parentRunId: job, runId: "step-1", nodeId: "n2" });
    });

    it("saves large files through a resumable session with the scope's provenance", async () => {
      const small = createArtifactClient({ baseUrl: t.url, token: t.tokens.alpha, resumableAboveBytes: 1024 });
      try {
        const file = path.join(dir, `large-${unique()}.bin`);
        writeFileSync(file, randomBytes(64 * 1024));
        const { artifact } = await small.withScope({ runId: "session-run" }).uploadFile(file, { kind: "dataset" });
        expect(artifact!.provenance?.runId).toBe("session-run");
      } finally {
        await small.close();
      }
    });

    it("narrows list, search, best and top to the scope's artifacts", async () => {
      const job = `job-${unique()}`;
      const word = `narrow${unique()}`;
      const scoped = client.withScope({ parentRunId: job });
      const inside = [
        await scoped.saveJson({}, { kind: "model", name: `${word} a`, metrics: { f1: 0.5 } }),
        await scoped.saveJson({}, { kind: "model", name: `${word} b`, metrics: { f1: 0.6 }, provenance: { runId: "r2" } }),
      ];
      const outside = [
        await client.saveJson({}, { kind: "model", name: `${word} c`, metrics: { f1: 0.99 } }),
        await client.saveJson({}, { kind: "model", name: `${word} d`, metrics: { f1: 0.98 }, provenance: { parentRunId: `${job}-other`, runId: "r2" } }),
      ];
      expect(ids(await collect(scoped.list({ kind: "model" })))).toEqual(ids([...inside].reverse()));
      expect(ids((await scoped.listPage()).artifacts)).toEqual(ids([...inside].reverse()));
      expect(ids(await collect(scoped.search(word))).sort()).toEqual(ids(inside).sort());
      expect(ids((await scoped.searchPage(word)).artifacts).sort()).toEqual(ids(inside).sort());
      expect((await scoped.best("model", "f1"))?.id).toBe(inside[1]!.id);
      expect(ids(await scoped.top("model", "f1", 1))).toEqual([inside[1]!.id]);
      // A scope of two fields needs both.
      expect(ids(await collect(scoped.withScope({ runId: "r2" }).list()))).toEqual([inside[1]!.id]);
      // The unscoped client still sees everything.
      expect(ids(await collect(client.search(word))).sort()).toEqual(ids([...inside, ...outside]).sort());
    });

    it("records usages for the scope's run unless the call names one", async () => {
      const model = await client.saveText("m", { kind: "model" });
      const evaluation = client.withScope({ runId: `eval-${unique()}` });
      const used = await evaluation.recordUsage({ artifactId: model.id, role: "evaluation-model" });
      expect(used.runId).toBe(evaluation.scope.runId);
      expect((await evaluation.recordUsage({ artifactId: model.id, runId: "other-run" })).runId).toBe("other-run");
      await expect(client.withScope({ graphId: "g" }).recordUsage({ artifactId: model.id })).rejects.toThrow(/give runId/);
      expect((await client.lineage(model.id)).usages.map((u) => u.runId)).toEqual([evaluation.scope.runId, "other-run"]);
    });
  });

  describe("watch", () => {
    let proxy: CuttingProxy;
    beforeAll(async () => {
      proxy = await startCuttingProxy(t.url);
    });
    afterAll(async () => {
      await proxy?.close();
    });

    it("resumes after the connection is cut, missing and repeating nothing", async () => {
      const job = `watch-${unique()}`;
      let retries = 0;
      const watcher = createArtifactClient({ baseUrl: proxy.url, token: t.tokens.alpha, retry: { maxAttempts: 20, onRetry: () => retries++ } });
      const controller = new AbortController();
      const seen: WatchArtifactsResponse[] = [];
      const watching = (async () => {
        for await (const event of watcher.withScope({ parentRunId: job }).watch({}, { signal: controller.signal })) seen.push(event);
      })();
      const until = async (count: number) => {
        for (const deadline = Date.now() + 15_000; seen.length < count; await sleep(20)) {
          if (Date.now() > deadline) throw new Error(`watch saw ${seen.length} of ${count} events`);
        }
      };
      try {
        await sleep(300);
        const scoped = client.withScope({ parentRunId: job });
        const first = await scoped.saveText("1", { kind: "log" });
        await client.saveText("elsewhere", { kind: "log", provenance: { parentRunId: `${job}-other` } });
        await scoped.pin(first.id);
        await until(2);

        // The stream is cut, and the watcher's reconnection held back while more happens.
        proxy.pauseUp();
        proxy.cutNow();
        const second = await scoped.saveText("2", { kind: "log" });
        await client.unpin(first.id);
        await client.delete(first.id);
        proxy.resumeUp();
        await until(5);
        const third = await scoped.saveText("3", { kind: "log" });
        await until(6);
        await sleep(300);
        expect(retries).toBeGreaterThan(0);
        expect(seen.map((e) => [EventType[e.type], e.artifact!.id])).toEqual([
          ["CREATED", first.id],
          ["PINNED", first.id],
          ["CREATED", second.id],
          ["UNPINNED", first.id],
          ["DELETED", first.id],
          ["CREATED", third.id],
        ]);
        expect(new Set(seen.map((e) => e.cursor)).size).toBe(6);
      } finally {
        proxy.resumeUp();
        controller.abort();
        await watching;
        await watcher.close();
      }
    });

    it("tells when it is live, and misses nothing when cut before its first event, resuming from where it went live", async () => {
      const job = `watch-${unique()}`;
      const watcher = createArtifactClient({ baseUrl: proxy.url, token: t.tokens.alpha, retry: { maxAttempts: 20 } });
      const controller = new AbortController();
      const seen: WatchArtifactsResponse[] = [];
      const liveAt: string[] = [];
      const watching = (async () => {
        for await (const event of watcher.withScope({ parentRunId: job }).watch({}, { signal: controller.signal, onLive: (cursor) => liveAt.push(cursor) })) {
          seen.push(event);
        }
      })();
      const waitFor = async (what: string, done: () => boolean) => {
        for (const deadline = Date.now() + 15_000; !done(); await sleep(20)) if (Date.now() > deadline) throw new Error(`waited for ${what}`);
      };
      try {
        await waitFor("the watch to be live", () => liveAt.length === 1);
        // Cut before any event, and saved while the watcher cannot reconnect: a watch that resumed "from now"
        // would miss this save.
        proxy.pauseUp();
        proxy.cutNow();
        const scoped = client.withScope({ parentRunId: job });
        const during = await scoped.saveText("during the cut", { kind: "log" });
        proxy.resumeUp();
        await waitFor("the save made during the cut", () => seen.length === 1);
        await waitFor("the watch to be live again", () => liveAt.length === 2);
        const after = await scoped.saveText("after", { kind: "log" });
        await waitFor("the save made after", () => seen.length === 2);
        expect(seen.map((e) => [EventType[e.type], e.artifact!.id])).toEqual([
          ["CREATED", during.id],
          ["CREATED", after.id],
        ]);
        // Live again after the reconnection, from no earlier than where it first went live.
        expect(BigInt(liveAt[1]!) >= BigInt(liveAt[0]!)).toBe(true);
      } finally {
        proxy.resumeUp();
        controller.abort();
        await watching;
        await watcher.close();
      }
    });

    it("resumes after a cursor given by the caller, and ends quietly when its signal aborts", async () => {
      const job = `watch-${unique()}`;
      const scoped = client.withScope({ parentRunId: job });
      const controller = new AbortController();
      const live: WatchArtifactsResponse[] = [];
      const first = scoped.watch({}, { signal: controller.signal });
      const reading = (async () => {
        for await (const event of first) {
          live.push(event);
          break;
        }
      })();
      await sleep(300);
      const a = await scoped.saveText("a", { kind: "log" });
      await reading;
      const b = await scoped.saveText("b", { kind: "log" });
      const resumed: WatchArtifactsResponse[] = [];
      for await (const event of scoped.watch({}, { resumeAfter: live[0]!.cursor, signal: controller.signal })) {
        resumed.push(event);
        if (resumed.length === 1) controller.abort();
      }
      expect(live.map((e) => e.artifact!.id)).toEqual([a.id]);
      expect(resumed.map((e) => e.artifact!.id)).toEqual([b.id]);
      await expectCode(collect(client.watch({}, { resumeAfter: "not-a-cursor" })), Code.InvalidArgument, /not an event cursor/);
    });
  });
});

/** A TCP relay to whichever server is current: the client keeps one address while the server behind it is replaced. */
async function startRelay(target: () => URL) {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target().port), target().hostname);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on("error", () => {});
      socket.on("close", () => {
        client.destroy();
        upstream.destroy();
        sockets.delete(socket);
      });
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

const sameStores = (t: TestApp): Record<string, string> =>
  t.backend === "postgres+minio" ? { DATABASE_URL: t.databaseUrl!, ARTIFACTD_S3_BUCKET: t.bucket! } : { ARTIFACTD_DATA_DIR: t.dataDir };

describe.each(BACKENDS)("the Node client's watch across a server restart on %s", (backend: Backend) => {
  it("resumes on the restarted server after the last event it delivered, missing and repeating nothing", async () => {
    const before = await startTestApp(backend, { ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0" });
    let after: TestApp | undefined;
    let current = before;
    const relay = await startRelay(() => new URL(current.url));
    // Patient enough to wait out the restart: 30 tries, at most 1 s apart.
    const watcher = createArtifactClient({ baseUrl: relay.url, token: before.tokens.alpha, retry: { maxAttempts: 30, maxDelayMs: 1_000 } });
    const maker = (t: TestApp) => createArtifactClient({ baseUrl: t.url, token: before.tokens.alpha });
    const controller = new AbortController();
    const seen: string[] = [];
    const job = `restart-${unique()}`;
    const watching = (async () => {
      for await (const event of watcher.withScope({ parentRunId: job }).watch({}, { signal: controller.signal })) {
        seen.push(`${EventType[event.type]} ${event.artifact!.id}`);
      }
    })();
    const until = async (count: number) => {
      for (const deadline = Date.now() + 30_000; seen.length < count; await sleep(20)) {
        if (Date.now() > deadline) throw new Error(`watch saw ${seen.length} of ${count} events: ${seen.join(", ")}`);
      }
    };
    try {
      await sleep(300);
      const first = maker(before);
      const a = await first.withScope({ parentRunId: job }).saveText("a", { kind: "log" });
      await until(1);
      await first.close();
      // The server goes away (its shutdown ends the stream), and a new one on the same stores has events the
      // watcher has not seen before it can reach it.
      await before.closeApp();
      after = await startTestApp(backend, { ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0", ...sameStores(before) });
      const second = maker(after);
      const b = await second.withScope({ parentRunId: job }).saveText("b", { kind: "log" });
      await second.pin(a.id);
      current = after;
      await until(3);
      const c = await second.withScope({ parentRunId: job }).saveText("c", { kind: "log" });
      await until(4);
      await second.close();
      await sleep(300);
      expect(seen).toEqual([`CREATED ${a.id}`, `CREATED ${b.id}`, `PINNED ${a.id}`, `CREATED ${c.id}`]);
    } finally {
      controller.abort();
      await watching.catch(() => {});
      await watcher.close();
      await relay.close();
      await after?.closeApp();
      await before.close();
    }
  });
});
