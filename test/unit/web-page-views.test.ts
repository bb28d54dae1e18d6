import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { STATUS_NAMES } from "@artifactd/api";
import { ArtifactSchema } from "@artifactd/api/artifacts/v1/artifact_pb.js";
import { GetLineageResponseSchema, LineageEdgeSchema } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import { parseCsv } from "../../clients/web/src/page/csv-parse.ts";
import { layOutLineage } from "../../clients/web/src/page/lineage-layout.ts";
import { bestValue, formatMetric } from "../../clients/web/src/page/metric-values.ts";
import { artifactHref, parsePageRoute } from "../../clients/web/src/page/page-route.ts";
import { REVIEW_TRANSITIONS } from "../../clients/web/src/page/review-transitions.ts";
import { STATUS_TRANSITIONS } from "../../src/artifact.ts";

describe("the web page's review actions", () => {
  it("offer exactly the status changes the service allows", () => {
    for (const status of STATUS_NAMES) expect([...REVIEW_TRANSITIONS[status]].sort()).toEqual([...STATUS_TRANSITIONS[status]].sort());
  });
});

describe("the lineage graph's layout", () => {
  const lineage = (ancestors: string[], descendants: string[], edges: Array<[string, string]>) =>
    create(GetLineageResponseSchema, {
      ancestors: ancestors.map((id) => create(ArtifactSchema, { id })),
      descendants: descendants.map((id) => create(ArtifactSchema, { id })),
      edges: edges.map(([fromId, toId]) => create(LineageEdgeSchema, { fromId, toId })),
    });

  it("puts an artifact reached by paths of different lengths one column before (or after) its farthest neighbour", () => {
    // a → b → x and a → x; x → c → d and x → d.
    const layout = layOutLineage(
      "x",
      lineage(
        ["a", "b"],
        ["c", "d"],
        [
          ["a", "b"],
          ["b", "x"],
          ["a", "x"],
          ["x", "c"],
          ["c", "d"],
          ["x", "d"],
        ],
      ),
    );
    expect(Object.fromEntries(layout.generation)).toEqual({ x: 0, a: -2, b: -1, c: 1, d: 2 });
    expect(layout.columns).toEqual([["a"], ["b"], ["x"], ["c"], ["d"]]);
  });

  it("orders a column by where its neighbours nearer the middle are", () => {
    // p1 feeds i2, p2 feeds i1: p2 is drawn above p1 so the edges do not cross.
    const layout = layOutLineage(
      "x",
      lineage(
        ["i1", "i2", "p1", "p2"],
        [],
        [
          ["i1", "x"],
          ["i2", "x"],
          ["p1", "i2"],
          ["p2", "i1"],
        ],
      ),
    );
    expect(layout.columns).toEqual([["p2", "p1"], ["i1", "i2"], ["x"]]);
  });

  it("draws an artifact alone when it has no lineage, and ignores edges to artifacts not returned", () => {
    expect(layOutLineage("x", lineage([], [], [["gone", "x"]])).columns).toEqual([["x"]]);
  });
});

describe("CSV previews", () => {
  it("reads quoted fields, doubled quotes, line breaks inside quotes and CRLF", () => {
    expect(parseCsv('a,"b, c","say ""hi"""\r\n1,"two\nlines",\r\n', 10)).toEqual({
      rows: [
        ["a", "b, c", 'say "hi"'],
        ["1", "two\nlines", ""],
      ],
      more: false,
    });
  });

  it("keeps a last row without a line end when the text is whole, drops it when the text was cut", () => {
    expect(parseCsv("a,b\n1,2", 10)).toEqual({
      rows: [
        ["a", "b"],
        ["1", "2"],
      ],
      more: false,
    });
    expect(parseCsv("a,b\n1,2", 10, false)).toEqual({ rows: [["a", "b"]], more: true });
  });

  it("stops at the row limit and says there is more", () => {
    expect(parseCsv("1\n2\n3\n4\n", 2)).toEqual({ rows: [["1"], ["2"]], more: true });
    expect(parseCsv("1\n2\n", 2)).toEqual({ rows: [["1"], ["2"]], more: false });
  });
});

describe("the metric chart", () => {
  const points = [0.4, 0.1, 0.9].map((value, index) => ({ id: `a${index}`, name: `a${index}`, value }));
  it("takes the highest as best, or the lowest when lower is better", () => {
    expect(bestValue(points, false)).toBe(0.9);
    expect(bestValue(points, true)).toBe(0.1);
    expect(bestValue([], false)).toBeUndefined();
  });
  it("labels values with four significant digits", () => {
    expect([formatMetric(0.123456), formatMetric(1234567), formatMetric(0), formatMetric(-2.5)]).toEqual(["0.1235", "1.235e+6", "0", "-2.5"]);
  });
});

describe("the page's links", () => {
  const id = "art_01jf3k8z9q4v6w2x7y5t0r1s3m";
  it("open an id as an id, with or without artifact://, and anything the reference grammar takes as a reference", () => {
    expect(parsePageRoute(`#/artifacts/${id}`)).toEqual({ view: "artifact", id });
    expect(parsePageRoute(`#/artifacts/artifact://${id}`)).toEqual({ view: "artifact", id });
    for (const reference of ["orders:latest", "orders@v3", "orders@3", "team/orders:production", "artifact://team/orders@v3"]) {
      expect(parsePageRoute(artifactHref(reference))).toEqual({ view: "reference", reference });
      // Pasted with its separators escaped, as some tools write them.
      expect(parsePageRoute(`#/artifacts/${encodeURIComponent(reference)}`)).toEqual({ view: "reference", reference });
    }
  });
  it("keep a reference readable in the link, and escape what a fragment should not hold", () => {
    expect(artifactHref("team/orders:production")).toBe("#/artifacts/team/orders:production");
    expect(artifactHref("orders@v3")).toBe("#/artifacts/orders@v3");
    expect(artifactHref("a b#c")).toBe("#/artifacts/a%20b%23c");
  });
  it("say why text is neither an id nor a reference, in the grammar's words", () => {
    const reasons = ["#/artifacts/orders", "#/artifacts/orders:Prod", "#/artifacts/orders@v0", "#/artifacts/", "#/artifacts/-x:latest"].map((hash) => {
      const route = parsePageRoute(hash);
      return route.view === "invalid" ? route.reason : route.view;
    });
    expect(reasons[0]).toMatch(/does not name an artifact id .* or a reference .*: it is neither an id nor names a version or alias/);
    expect(reasons[1]).toMatch(/alias "Prod": use 1–64 characters/);
    expect(reasons[2]).toMatch(/version "v0": give @v<number>/);
    expect(reasons[3]).toMatch(/it is empty/);
    expect(reasons[4]).toMatch(/name "-x"/);
    expect(parsePageRoute("#/elsewhere")).toEqual({ view: "invalid", reason: '"#/elsewhere" is not a page of this site' });
  });
});
