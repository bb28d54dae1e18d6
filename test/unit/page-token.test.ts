import { describe, expect, it } from "vitest";
import {
  decodeBelowToken,
  decodeKeysetToken,
  decodeMetricToken,
  decodeRankToken,
  encodeKeysetToken,
  encodeMetricToken,
  encodeBelowToken,
  encodeRankToken,
  pageOf,
} from "../../src/adapters/metadata/page-token.ts";
import { expectArtifactError } from "../support/expect-artifact-error.ts";

const tokenOf = (value: unknown) => Buffer.from(typeof value === "string" ? value : JSON.stringify(value)).toString("base64url");
const refused = (decode: () => unknown) =>
  expectArtifactError(decode, "invalid_argument", /^page_token is not a token this server issued: pass next_page_token from the previous response unchanged$/);

describe("page tokens", () => {
  it("carry the version (or move seq) a page of versions ended at, and refuse what is not one", () => {
    expect(decodeBelowToken(encodeBelowToken(42))).toBe(42);
    expect(decodeBelowToken("")).toBeUndefined();
    for (const forged of [tokenOf({ below: 0 }), tokenOf({ below: 1.5 }), tokenOf({ below: "7" }), tokenOf([7]), "%%%"])
      refused(() => decodeBelowToken(forged));
  });

  it("cut a page read with one row extra, with a token only when that row came", () => {
    const tokenAfter = (last: number) => `after ${last}`;
    expect(pageOf([1, 2, 3], 3, tokenAfter)).toEqual({ rows: [1, 2, 3], nextPageToken: "" });
    expect(pageOf([1, 2, 3, 4], 3, tokenAfter)).toEqual({ rows: [1, 2, 3], nextPageToken: "after 3" });
    expect(pageOf([], 3, tokenAfter)).toEqual({ rows: [], nextPageToken: "" });
  });

  it("carry a keyset cursor as base64url JSON of its time and id, and back", () => {
    const cursor = { createdAt: new Date("2026-03-04T05:06:07.089Z"), id: "art_01jf3k8z9q4v6w2x7y5t0r1s3m" };
    const token = encodeKeysetToken(cursor);
    expect(token).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(JSON.parse(Buffer.from(token, "base64url").toString("utf8"))).toStrictEqual({ t: "2026-03-04T05:06:07.089Z", i: cursor.id });
    expect(decodeKeysetToken(token)).toStrictEqual(cursor);
  });

  it("carry a metric order's position with the order, and a search rank, and back", () => {
    const at = { createdAt: new Date("2026-03-04T05:06:07.089Z"), id: "art_01jf3k8z9q4v6w2x7y5t0r1s3m" };
    const order = { metric: "f1", ascending: true };
    for (const value of [0.1 + 0.2, -1e300, 0, undefined]) {
      const token = encodeMetricToken(order, { ...at, value });
      expect(decodeMetricToken(token, order)).toStrictEqual({ ...at, value });
    }
    expect(JSON.parse(Buffer.from(encodeMetricToken(order, { ...at, value: 2 }), "base64url").toString("utf8"))).toStrictEqual({
      o: ["f1", true],
      v: 2,
      t: "2026-03-04T05:06:07.089Z",
      i: at.id,
    });
    expect(decodeRankToken(encodeRankToken({ ...at, rank: 10.873_456_789_012_344 }))).toStrictEqual({ ...at, rank: 10.873_456_789_012_344 });
  });

  it("refuse a token made for another order, saying which", () => {
    const at = { createdAt: new Date("2026-03-04T05:06:07.089Z"), id: "art_01jf3k8z9q4v6w2x7y5t0r1s3m" };
    const byF1 = encodeMetricToken({ metric: "f1", ascending: false }, { ...at, value: 1 });
    const other = (made: RegExp) => new RegExp(`^page_token continues a listing in ${made.source}, but this request asks for .*: pass the same order`);
    expectArtifactError(() => decodeMetricToken(byF1, { metric: "f1", ascending: true }), "invalid_argument", other(/metric "f1" descending/));
    expectArtifactError(() => decodeMetricToken(byF1, { metric: "acc", ascending: false }), "invalid_argument", other(/metric "f1" descending/));
    expectArtifactError(() => decodeKeysetToken(byF1), "invalid_argument", other(/another order/));
    expectArtifactError(() => decodeRankToken(byF1), "invalid_argument", other(/another order/));
    expectArtifactError(() => decodeMetricToken(encodeKeysetToken(at), { metric: "f1", ascending: false }), "invalid_argument", other(/newest first/));
    expectArtifactError(() => decodeRankToken(encodeKeysetToken(at)), "invalid_argument", other(/newest first/));
    const ranked = encodeRankToken({ ...at, rank: 1 });
    expectArtifactError(() => decodeKeysetToken(ranked), "invalid_argument", other(/search by relevance/));
    expectArtifactError(() => decodeMetricToken(ranked, { metric: "f1", ascending: false }), "invalid_argument", other(/search by relevance/));
  });

  it("refuse keyset tokens this server did not issue", () => {
    for (const token of [
      "",
      "not base64 json",
      tokenOf("null"),
      tokenOf("42"),
      tokenOf('"text"'),
      tokenOf({ i: "x" }),
      tokenOf({ t: "not a date", i: "x" }),
      tokenOf({ t: "2026-01-01T00:00:00Z", i: 5 }),
      tokenOf({ t: "2026-01-01T00:00:00Z" }),
    ]) {
      refused(() => decodeKeysetToken(token));
    }
  });

  it("refuse metric and rank tokens this server did not issue, and the offset tokens search once used", () => {
    const order = { metric: "f1", ascending: false };
    const t = "2026-01-01T00:00:00Z";
    for (const token of [
      tokenOf({ o: 40 }),
      tokenOf({ o: ["f1"], t, i: "x" }),
      tokenOf({ o: [1, false], t, i: "x" }),
      tokenOf({ o: ["f1", false], v: "1", t, i: "x" }),
      tokenOf({ o: ["f1", false], v: 1, t: "never", i: "x" }),
      tokenOf({ o: ["f1", false], v: 1, t }),
      tokenOf([]),
      "%%%",
    ]) {
      refused(() => decodeMetricToken(token, order));
    }
    for (const token of [tokenOf({ o: 40 }), tokenOf({ r: "1", t, i: "x" }), tokenOf({ r: 1, t }), tokenOf({ r: 1 }), tokenOf({}), "%%%"]) {
      refused(() => decodeRankToken(token));
    }
  });
});
