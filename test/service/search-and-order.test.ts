import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import type { Artifact, ArtifactSpecSchema } from "@artifactd/api/artifacts/v1/artifact_pb.js";
import { JsonComparison, type ArtifactFilterSchema, type JsonConditionSchema } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import { untilLive } from "../support/event-watcher.ts";
import { expectCode } from "../support/expect-code.ts";
import { BACKENDS, startTestApp, type TestApp } from "../support/test-app.ts";

type SpecInit = Omit<Exclude<MessageInitShape<typeof ArtifactSpecSchema>, { $typeName: string }>, "kind"> & { kind?: string };
type FilterInit = Exclude<MessageInitShape<typeof ArtifactFilterSchema>, { $typeName: string }>;
type ConditionInit = Exclude<MessageInitShape<typeof JsonConditionSchema>, { $typeName: string }>;

/** Newest first: created_at, then id, descending — the order's tie-break, as the server documents it. */
const newestFirst = (a: Artifact, b: Artifact) => {
  const at = (x: Artifact) => BigInt(x.createdAt!.seconds) * 1_000_000_000n + BigInt(x.createdAt!.nanos);
  const d = at(b) - at(a);
  return d !== 0n ? (d > 0n ? 1 : -1) : a.id < b.id ? 1 : a.id > b.id ? -1 : 0;
};

describe.each(BACKENDS)("search, metric order and JSON filters on %s", (backend) => {
  let t: TestApp;
  const scope = () => `s-${Math.random().toString(36).slice(2)}`;
  beforeAll(async () => {
    t = await startTestApp(backend, { ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0", ARTIFACTD_MAX_PAGE_SIZE: "50" });
  });
  afterAll(async () => {
    await t?.close();
  });

  const saveText = async (spec: SpecInit, text = "x") =>
    (await t.client().saveInline({ spec: { kind: "item", ...spec }, content: { case: "text", value: text } })).artifact!;
  const saveJson = async (spec: SpecInit, json: unknown) =>
    (await t.client().saveInline({ spec: { kind: "item", ...spec }, content: { case: "json", value: JSON.stringify(json) } })).artifact!;
  const searchIds = async (query: string, filter: FilterInit) => (await t.client().searchArtifacts({ query, filter })).artifacts.map((a) => a.id);
  const listIds = async (filter: FilterInit) => (await t.client().listArtifacts({ filter })).artifacts.map((a) => a.id);

  describe("search", () => {
    it("finds a name by fragments and prefixes of it, in any case", async () => {
      const run = scope();
      const file = await saveText({ name: "nc-file.bin", provenance: { runId: run } });
      await saveText({ name: "other.txt", provenance: { runId: run } });
      const filter = { provenance: { runId: run } };
      for (const query of ["nc-file", "file", "nc-fi", "NC-FI", "e.bi", "nc-file.bin"]) {
        expect(await searchIds(query, filter), query).toEqual([file.id]);
      }
      expect(await searchIds("nc-files", filter)).toEqual([]);
      // % and _ are literal in a fragment, not wildcards.
      expect(await searchIds("nc%bin", filter)).toEqual([]);
      expect(await searchIds("nc_file", filter)).toEqual([]);
    });

    it("finds a title by a fragment, and kind, tags and label values", async () => {
      const run = scope();
      const filter = { provenance: { runId: run } };
      const titled = await saveText({ title: "Quarterly Spectrograph Summary", provenance: { runId: run } });
      const kinded = await saveText({ kind: "heliograph", provenance: { runId: run } });
      const tagged = await saveText({ tags: ["nightly-zephyr"], provenance: { runId: run } });
      const labelled = await saveText({ labels: { team: "marmalade-crew" }, provenance: { runId: run } });
      expect(await searchIds("spectrog", filter)).toEqual([titled.id]);
      expect(await searchIds("heliograph", filter)).toEqual([kinded.id]);
      expect(await searchIds("zephyr", filter)).toEqual([tagged.id]);
      expect(await searchIds("marmalade", filter)).toEqual([labelled.id]);
      expect(await searchIds("crew", filter)).toEqual([labelled.id]);
    });

    it("finds words of inline text and of inline JSON values, not JSON keys", async () => {
      const run = scope();
      const filter = { provenance: { runId: run } };
      const text = await saveText({ name: "notes", provenance: { runId: run } }, "The wombats crossed the river at dawn.");
      const json = await saveJson({ name: "result", provenance: { runId: run } }, { animal: "okapi", nested: { list: ["capybara sighting"], count: 31337 } });
      expect(await searchIds("wombat", filter)).toEqual([text.id]);
      expect(await searchIds("river dawn", filter)).toEqual([text.id]);
      expect(await searchIds("okapi", filter)).toEqual([json.id]);
      expect(await searchIds("capybara", filter)).toEqual([json.id]);
      expect(await searchIds("31337", filter)).toEqual([json.id]);
      expect(await searchIds("animal", filter)).toEqual([]);
    });

    it("ranks an exact name first, then a name starting with the query, then other matches", async () => {
      const run = scope();
      const filter = { provenance: { runId: run } };
      const inTitle = await saveText({ name: "misc", title: "orders of the day", provenance: { runId: run } });
      const fragment = await saveText({ name: "old-orders", provenance: { runId: run } });
      const prefix = await saveText({ name: "orders-v2", provenance: { runId: run } });
      const exact = await saveText({ name: "Orders", provenance: { runId: run } });
      await saveText({ name: "unrelated", provenance: { runId: run } });
      expect(await searchIds("orders", filter)).toEqual([exact.id, prefix.id, fragment.id, inTitle.id]);
    });

    it("applies the filter with the query", async () => {
      const run = scope();
      const model = await saveText({ kind: "model", name: "churn-predictor", labels: { env: "prod" }, provenance: { runId: run } });
      await saveText({ kind: "report", name: "churn-report", labels: { env: "prod" }, provenance: { runId: run } });
      await saveText({ kind: "model", name: "churn-baseline", labels: { env: "dev" }, provenance: { runId: run } });
      expect(await searchIds("churn", { kind: "model", labels: { env: "prod" }, provenance: { runId: run } })).toEqual([model.id]);
    });

    it("pages by relevance with keyset tokens: every match once, whatever is added between pages", async () => {
      const run = scope();
      const filter = { provenance: { runId: run } };
      const made: string[] = [];
      for (const name of ["quokka", "quokka-1", "quokka-2", "big-quokka", "the quokka's", "small-quokka"])
        made.push((await saveText({ name, provenance: { runId: run } })).id);
      const all = await searchIds("quokka", filter);
      expect([...all].sort()).toEqual([...made].sort());
      const seen: string[] = [];
      let pageToken = "";
      do {
        const page = await t.client().searchArtifacts({ query: "quokka", filter, pageSize: 2, pageToken });
        seen.push(...page.artifacts.map((a) => a.id));
        pageToken = page.nextPageToken;
        // A new best match between pages ranks before the cursor, so it is not served, and nothing repeats.
        await saveText({ name: "quokka", provenance: { runId: run } });
      } while (pageToken !== "");
      expect(seen).toEqual(all);
    });
  });

  describe("order by a metric", () => {
    const expectedOrder = (artifacts: Artifact[], metric: string, ascending: boolean) => {
      const having = artifacts.filter((a) => metric in a.metrics);
      const without = artifacts.filter((a) => !(metric in a.metrics));
      having.sort((a, b) => (a.metrics[metric] !== b.metrics[metric] ? (a.metrics[metric]! - b.metrics[metric]!) * (ascending ? 1 : -1) : newestFirst(a, b)));
      return [...having, ...without.sort(newestFirst)].map((a) => a.id);
    };
    const allPages = async (request: (pageToken: string) => Promise<{ artifacts: Artifact[]; nextPageToken: string }>) => {
      const ids: string[] = [];
      let pageToken = "";
      let pages = 0;
      do {
        const page = await request(pageToken);
        ids.push(...page.artifacts.map((a) => a.id));
        pageToken = page.nextPageToken;
        pages++;
      } while (pageToken !== "");
      return { ids, pages };
    };

    it("lists highest or lowest first, ties newest first, artifacts without the metric last, over several keyset pages", async () => {
      const run = scope();
      const made: Artifact[] = [];
      for (const [i, acc] of [0.5, 0.9, undefined, 0.1, 0.9, 0.5, undefined, 0.7, 0.3, 0.9, undefined].entries()) {
        made.push(await saveText({ name: `m${i}`, metrics: acc === undefined ? { loss: i } : { acc, loss: i }, provenance: { runId: run } }));
      }
      const filter = { provenance: { runId: run } };
      for (const ascending of [false, true]) {
        const order = { metric: "acc", ascending };
        const { ids, pages } = await allPages((pageToken) => t.client().listArtifacts({ filter, order, pageSize: 3, pageToken }));
        expect(pages).toBe(4);
        expect(ids).toEqual(expectedOrder(made, "acc", ascending));
        expect(new Set(ids).size).toBe(made.length);
      }
      // Highest first means the values themselves: 0.9 ×3, 0.7, 0.5 ×2, 0.3, 0.1, then the three without.
      const { ids } = await allPages((pageToken) => t.client().listArtifacts({ filter, order: { metric: "acc" }, pageSize: 4, pageToken }));
      const byId = new Map(made.map((a) => [a.id, a.metrics.acc]));
      expect(ids.map((id) => byId.get(id))).toEqual([0.9, 0.9, 0.9, 0.7, 0.5, 0.5, 0.3, 0.1, undefined, undefined, undefined]);
    });

    it("stays stable when artifacts are added between pages: each of the first set exactly once", async () => {
      const run = scope();
      const filter = { provenance: { runId: run } };
      const made: Artifact[] = [];
      for (let i = 0; i < 8; i++) made.push(await saveText({ metrics: i % 3 === 0 ? {} : { score: i }, provenance: { runId: run } }));
      const seen: string[] = [];
      let pageToken = "";
      do {
        const page = await t.client().listArtifacts({ filter, order: { metric: "score" }, pageSize: 3, pageToken });
        seen.push(...page.artifacts.map((a) => a.id));
        pageToken = page.nextPageToken;
        await saveText({ metrics: { score: 100 }, provenance: { runId: run } });
        await saveText({ metrics: {}, provenance: { runId: run } });
      } while (pageToken !== "");
      const original = seen.filter((id) => made.some((a) => a.id === id));
      expect(original).toEqual(expectedOrder(made, "score", false));
      expect(new Set(seen).size).toBe(seen.length);
    });

    it("orders search matches by the metric too", async () => {
      const run = scope();
      const filter = { provenance: { runId: run } };
      const low = await saveText({ name: "ocelot-a", metrics: { f1: 0.2 }, provenance: { runId: run } });
      const none = await saveText({ name: "ocelot-b", provenance: { runId: run } });
      const high = await saveText({ name: "ocelot-c", metrics: { f1: 0.8 }, provenance: { runId: run } });
      await saveText({ name: "lynx", metrics: { f1: 0.99 }, provenance: { runId: run } });
      const { ids } = await allPages((pageToken) => t.client().searchArtifacts({ query: "ocelot", filter, order: { metric: "f1" }, pageSize: 1, pageToken }));
      expect(ids).toEqual([high.id, low.id, none.id]);
      const ascending = await t.client().searchArtifacts({ query: "ocelot", filter, order: { metric: "f1", ascending: true } });
      expect(ascending.artifacts.map((a) => a.id)).toEqual([low.id, high.id, none.id]);
    });

    it("refuses a page token made for another order, and an order without a metric", async () => {
      const run = scope();
      const filter = { provenance: { runId: run } };
      for (let i = 0; i < 3; i++) await saveText({ name: `tok-${i}`, metrics: { a: i, b: i }, provenance: { runId: run } });
      const newest = (await t.client().listArtifacts({ filter, pageSize: 1 })).nextPageToken;
      const byA = (await t.client().listArtifacts({ filter, order: { metric: "a" }, pageSize: 1 })).nextPageToken;
      const relevance = (await t.client().searchArtifacts({ query: "tok", filter, pageSize: 1 })).nextPageToken;
      const other = /page_token continues a listing in .*, but this request asks for/;
      await expectCode(t.client().listArtifacts({ filter, order: { metric: "a" }, pageToken: newest }), Code.InvalidArgument, other);
      await expectCode(t.client().listArtifacts({ filter, pageToken: byA }), Code.InvalidArgument, other);
      await expectCode(t.client().listArtifacts({ filter, order: { metric: "b" }, pageToken: byA }), Code.InvalidArgument, other);
      await expectCode(t.client().listArtifacts({ filter, order: { metric: "a", ascending: true }, pageToken: byA }), Code.InvalidArgument, other);
      await expectCode(t.client().searchArtifacts({ query: "tok", filter, order: { metric: "a" }, pageToken: relevance }), Code.InvalidArgument, other);
      await expectCode(t.client().searchArtifacts({ query: "tok", filter, pageToken: byA }), Code.InvalidArgument, other);
      await expectCode(t.client().searchArtifacts({ query: "tok", filter, pageToken: newest }), Code.InvalidArgument, other);
      // The same order continues.
      expect((await t.client().listArtifacts({ filter, order: { metric: "a" }, pageSize: 1, pageToken: byA })).artifacts).toHaveLength(1);
      await expectCode(
        t.client().listArtifacts({ filter, order: { metric: "" } }),
        Code.InvalidArgument,
        /order\.metric must be a metric name of 1–128 characters/,
      );
      await expectCode(t.client().listArtifacts({ filter, order: { metric: "x".repeat(129) } }), Code.InvalidArgument, /order\.metric/);
      await expectCode(t.client().searchArtifacts({ query: "tok", order: { metric: "a\u0000" } }), Code.InvalidArgument, /order\.metric .*NUL/);
    });
  });

  describe("best top k", () => {
    it("returns the best `limit` artifacts best first, the first as `artifact`; one when unset", async () => {
      const run = scope();
      const filter = { provenance: { runId: run } };
      const at = async (acc: number) => saveText({ kind: "model", metrics: { acc }, provenance: { runId: run } });
      const a5 = await at(0.5);
      const a9old = await at(0.9);
      const a7 = await at(0.7);
      const a9new = await at(0.9);
      await saveText({ kind: "model", metrics: { loss: 1 }, provenance: { runId: run } });
      await saveText({ kind: "report", metrics: { acc: 1 }, provenance: { runId: run } });
      const top3 = await t.client().getBestArtifact({ kind: "model", metric: "acc", filter, limit: 3 });
      expect(top3.top.map((a) => a.id)).toEqual([a9new.id, a9old.id, a7.id]);
      expect(top3.artifact?.id).toBe(a9new.id);
      const one = await t.client().getBestArtifact({ kind: "model", metric: "acc", filter });
      expect(one.top.map((a) => a.id)).toEqual([a9new.id]);
      expect(one.artifact?.id).toBe(a9new.id);
      const lowest = await t.client().getBestArtifact({ kind: "model", metric: "acc", minimize: true, filter, limit: 50 });
      expect(lowest.top.map((a) => a.id)).toEqual([a5.id, a7.id, a9new.id, a9old.id]);
      await expectCode(
        t.client().getBestArtifact({ kind: "model", metric: "acc", filter, limit: 51 }),
        Code.InvalidArgument,
        /limit 51 is not valid: give 1–50/,
      );
      await expectCode(t.client().getBestArtifact({ kind: "model", metric: "acc", filter, limit: -1 }), Code.InvalidArgument, /limit -1/);
      await expectCode(t.client().getBestArtifact({ kind: "model", metric: "nothing", filter, limit: 5 }), Code.NotFound, /no model artifact/);
    });
  });

  describe("inline JSON filters", () => {
    const cond = (path: string, comparison: JsonComparison, value = ""): ConditionInit => ({ path, comparison, value });

    it("matches containment and each comparison, ordering ones only on values of the same JSON type", async () => {
      const run = scope();
      const base = { provenance: { runId: run } };
      const a = await saveJson(base, { status: "ok", rows: 10, eval: { f1: 0.8 }, items: [{ id: "x1" }, { id: "x2" }], note: null, name: "alpha" });
      const b = await saveJson(base, { status: "ok", rows: 250, eval: { f1: 0.6 }, items: [{ id: "y1" }], name: "beta" });
      const c = await saveJson(base, { status: "failed", rows: "many", eval: { f1: "n/a" }, items: [], name: "gamma" });
      const d = await saveJson(base, [1, 2, 3]);
      const plain = await saveText({ ...base, name: "status ok rows" }, '{"status": "ok"}');
      const expectIds = async (filter: FilterInit, expected: Artifact[]) =>
        expect((await listIds({ ...base, ...filter })).sort()).toEqual(expected.map((x) => x.id).sort());

      await expectIds({ inlineJsonContains: '{"status": "ok"}' }, [a, b]);
      await expectIds({ inlineJsonContains: '{"items": [{"id": "x2"}]}' }, [a]);
      await expectIds({ inlineJsonContains: "[2]" }, [d]);
      await expectIds({ inlineJsonContains: "{}" }, [a, b, c]);
      expect(plain.id).not.toBe(""); // inline text that looks like JSON is not JSON content

      await expectIds({ jsonConditions: [cond("$.rows", JsonComparison.EQ, "10")] }, [a]);
      await expectIds({ jsonConditions: [cond("$.rows", JsonComparison.EQ, "10.0")] }, [a]);
      await expectIds({ jsonConditions: [cond("$.rows", JsonComparison.NE, "10")] }, [b, c]);
      await expectIds({ jsonConditions: [cond("$.rows", JsonComparison.GT, "10")] }, [b]);
      await expectIds({ jsonConditions: [cond("$.rows", JsonComparison.GE, "10")] }, [a, b]);
      await expectIds({ jsonConditions: [cond("$.rows", JsonComparison.LT, "250")] }, [a]);
      await expectIds({ jsonConditions: [cond("$.rows", JsonComparison.LE, "250")] }, [a, b]);
      // "many" is a string: never less or greater than a number, but comparable with strings.
      await expectIds({ jsonConditions: [cond("$.rows", JsonComparison.GT, '"a"')] }, [c]);
      await expectIds({ jsonConditions: [cond("$.eval.f1", JsonComparison.GE, "0.7")] }, [a]);
      await expectIds({ jsonConditions: [cond("$.name", JsonComparison.LT, '"b"')] }, [a]);
      await expectIds({ jsonConditions: [cond("$.items[1].id", JsonComparison.EQ, '"x2"')] }, [a]);
      await expectIds({ jsonConditions: [cond("$.items[0].id", JsonComparison.EXISTS)] }, [a, b]);
      await expectIds({ jsonConditions: [cond("$.note", JsonComparison.EXISTS)] }, [a]);
      await expectIds({ jsonConditions: [cond("$.note", JsonComparison.EQ, "null")] }, [a]);
      await expectIds({ jsonConditions: [cond("$[1]", JsonComparison.EQ, "2")] }, [d]);
      await expectIds({ jsonConditions: [cond("$.status", JsonComparison.EQ, "true")] }, []);
      // Strict paths: a member step does not reach into an array's elements.
      await expectIds({ jsonConditions: [cond("$.items.id", JsonComparison.EXISTS)] }, []);
      // Every condition must hold, with the rest of the filter.
      await expectIds(
        { inlineJsonContains: '{"status": "ok"}', jsonConditions: [cond("$.rows", JsonComparison.GT, "5"), cond("$.eval.f1", JsonComparison.LT, "0.7")] },
        [b],
      );
    });

    it("applies to search, best and watch", async () => {
      const run = scope();
      const base = { provenance: { runId: run } };
      const good = await saveJson({ ...base, kind: "model", name: "heron-1", metrics: { acc: 0.7 } }, { dataset: "full" });
      await saveJson({ ...base, kind: "model", name: "heron-2", metrics: { acc: 0.9 } }, { dataset: "sample" });
      const filter = { ...base, jsonConditions: [cond("$.dataset", JsonComparison.EQ, '"full"')] };
      expect(await searchIds("heron", filter)).toEqual([good.id]);
      expect((await t.client().getBestArtifact({ kind: "model", metric: "acc", filter, limit: 5 })).top.map((a) => a.id)).toEqual([good.id]);

      const watchRun = scope();
      const controller = new AbortController();
      const received: string[] = [];
      const markers = new Set<string>();
      const stream = t
        .client()
        .watchArtifacts(
          { filter: { provenance: { runId: watchRun }, jsonConditions: [cond("$.watch", JsonComparison.EQ, "true")] } },
          { signal: controller.signal },
        );
      const reading = (async () => {
        try {
          for await (const event of stream) {
            received.push(event.artifact!.id);
          }
        } catch (error) {
          if (!controller.signal.aborted) throw error;
        }
      })();
      await untilLive(
        markers,
        async () => (await saveJson({ provenance: { runId: watchRun } }, { watch: true, marker: true })).id,
        () => received,
      );
      await saveJson({ provenance: { runId: watchRun } }, { watch: false });
      await saveText({ provenance: { runId: watchRun } }, '{"watch": true}');
      const hit = await saveJson({ provenance: { runId: watchRun } }, { watch: true });
      // Events of a tenant arrive in order: once the last one is in, any of the two before it would be too.
      await vi.waitFor(() => expect(received).toContain(hit.id), { timeout: 10_000 });
      controller.abort();
      await reading;
      expect(received.filter((id) => !markers.has(id))).toEqual([hit.id]);
    });

    it("refuses malformed documents, paths, comparisons and literals with invalid_argument naming the field", async () => {
      const cases: [FilterInit, RegExp][] = [
        [{ inlineJsonContains: "{status: ok}" }, /filter\.inline_json_contains "\{status: ok\}" does not parse as JSON/],
        [{ inlineJsonContains: '{"a": "\\u0000"}' }, /filter\.inline_json_contains holds a NUL character/],
        [{ jsonConditions: [cond("rows", JsonComparison.EQ, "1")] }, /filter\.json_conditions\[0\]\.path "rows" must start with \$/],
        [{ jsonConditions: [cond("$.a b", JsonComparison.EQ, "1")] }, /json_conditions\[0\]\.path .* cannot read " b"/],
        [{ jsonConditions: [cond("$.a[-1]", JsonComparison.EQ, "1")] }, /json_conditions\[0\]\.path/],
        [{ jsonConditions: [cond("$.*", JsonComparison.EXISTS)] }, /json_conditions\[0\]\.path/],
        [{ jsonConditions: [cond(`$${".a".repeat(17)}`, JsonComparison.EXISTS)] }, /more than 16 steps/],
        [{ jsonConditions: [cond("$.a", JsonComparison.UNSPECIFIED, "1")] }, /filter\.json_conditions\[0\]\.comparison is required/],
        [{ jsonConditions: [cond("$.a", JsonComparison.EQ, "")] }, /filter\.json_conditions\[0\]\.value "" does not parse as JSON/],
        [{ jsonConditions: [cond("$.a", JsonComparison.EQ, "ok")] }, /value "ok" does not parse as JSON/],
        [{ jsonConditions: [cond("$.a", JsonComparison.EQ, '{"b": 1}')] }, /must be a JSON literal/],
        [{ jsonConditions: [cond("$.a", JsonComparison.GT, "true")] }, /value true cannot be ordered/],
        [{ jsonConditions: [cond("$.a", JsonComparison.LE, "null")] }, /value null cannot be ordered/],
        [{ jsonConditions: [cond("$.a", JsonComparison.EQ, "1e400")] }, /value 1e400 is out of range/],
        [{ jsonConditions: Array.from({ length: 65 }, () => cond("$.a", JsonComparison.EXISTS)) }, /filter\.json_conditions has 65 entries; at most 64/],
      ];
      for (const [filter, message] of cases) {
        await expectCode(t.client().listArtifacts({ filter }), Code.InvalidArgument, message);
        await expectCode(t.client().searchArtifacts({ query: "x", filter }), Code.InvalidArgument, message);
        await expectCode(t.client().getBestArtifact({ kind: "model", metric: "acc", filter }), Code.InvalidArgument, message);
      }
    });

    it("takes SQL-looking input as data: refused paths, and literals matched as the strings they are", async () => {
      const run = scope();
      const base = { provenance: { runId: run } };
      const sneaky = "x'); drop table artifacts; --";
      const hit = await saveJson(base, { q: sneaky, "a'b": 1 });
      await saveJson(base, { q: "x" });
      for (const path of ["$.q'); drop table artifacts; --", '$."q"', "$.q || true", "$.q ? (@ == 1)", "$['q']", "$.a'b"]) {
        await expectCode(t.client().listArtifacts({ filter: { ...base, jsonConditions: [cond(path, JsonComparison.EXISTS)] } }), Code.InvalidArgument, /path/);
      }
      expect(await listIds({ ...base, jsonConditions: [cond("$.q", JsonComparison.EQ, JSON.stringify(sneaky))] })).toEqual([hit.id]);
      expect(await listIds({ ...base, inlineJsonContains: JSON.stringify({ "a'b": 1 }) })).toEqual([hit.id]);
      expect(await listIds({ ...base, jsonConditions: [cond("$.q", JsonComparison.EQ, '"x\\" || true"')] })).toEqual([]);
      expect(await searchIds("'; drop table artifacts; --", base)).toEqual([hit.id]);
      // The table is still there, and whole.
      expect(await listIds(base)).toHaveLength(2);
    });
  });
});
