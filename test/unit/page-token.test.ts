import { describe, expect, it } from "vitest";
import { decodeKeysetToken, decodeOffsetToken, encodeKeysetToken, encodeOffsetToken } from "../../src/adapters/metadata/page-token.ts";
import { expectArtifactError } from "../support/expect-artifact-error.ts";

const tokenOf = (value: unknown) => Buffer.from(typeof value === "string" ? value : JSON.stringify(value)).toString("base64url");
const refused = (decode: () => unknown) =>
  expectArtifactError(decode, "invalid_argument", /^page_token is not a token this server issued: pass next_page_token from the previous response unchanged$/);

describe("page tokens", () => {
  it("carry a keyset cursor as base64url JSON of its time and id, and back", () => {
    const cursor = { createdAt: new Date("2026-03-04T05:06:07.089Z"), id: "art_01jf3k8z9q4v6w2x7y5t0r1s3m" };
    const token = encodeKeysetToken(cursor);
    expect(token).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(JSON.parse(Buffer.from(token, "base64url").toString("utf8"))).toStrictEqual({ t: "2026-03-04T05:06:07.089Z", i: cursor.id });
    expect(decodeKeysetToken(token)).toStrictEqual(cursor);
  });

  it("carry an offset, and back", () => {
    expect(JSON.parse(Buffer.from(encodeOffsetToken(40), "base64url").toString("utf8"))).toStrictEqual({ o: 40 });
    expect(decodeOffsetToken(encodeOffsetToken(0))).toBe(0);
    expect(decodeOffsetToken(encodeOffsetToken(Number.MAX_SAFE_INTEGER))).toBe(Number.MAX_SAFE_INTEGER);
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

  it("refuse offset tokens that are not a whole number >= 0", () => {
    for (const token of [
      tokenOf("null"),
      tokenOf("7"),
      tokenOf({ o: "5" }),
      tokenOf({ o: -1 }),
      tokenOf({ o: 1.5 }),
      tokenOf({ o: 2 ** 53 }),
      tokenOf({}),
      "%%%",
    ]) {
      refused(() => decodeOffsetToken(token));
    }
  });
});
