import { describe, expect, it } from "vitest";
import { formatUrlSigningKeys, newUrlSigningKey, parseUrlSigningKeys, URL_SIGNING_KEY_ID_PATTERN } from "../../src/url-signing-keys.ts";

const SECRET = "s".repeat(32);
const OTHER = "t".repeat(40);

describe("URL signing keys", () => {
  it("parse <id>:<secret> entries separated by commas or newlines, newest first, trimmed, skipping blank and # lines", () => {
    const keys = parseUrlSigningKeys(`# comment, with a comma\n  k2:${SECRET} ,k1:${OTHER}\n\n   # indented comment\nold:${SECRET}:x,,`);
    expect(keys).toStrictEqual([
      { id: "k2", secret: SECRET },
      { id: "k1", secret: OTHER },
      { id: "old", secret: `${SECRET}:x` },
    ]);
    expect(Object.isFrozen(keys[0])).toBe(true);
  });

  it("take ids of 1–32 characters of A-Z a-z 0-9 _ -", () => {
    expect(parseUrlSigningKeys(`${"A_z-9".padEnd(32, "x")}:${SECRET}`)[0]!.id).toHaveLength(32);
    for (const id of ["", "x".repeat(33), "a.b", "a b", "ä"]) {
      expect(() => parseUrlSigningKeys(`k0:${SECRET},${id}:${SECRET}`), id).toThrow(
        /^key 2 must read <id>:<secret> with an id of 1–32 characters of A-Z a-z 0-9 _ -$/,
      );
    }
    expect(() => parseUrlSigningKeys(SECRET)).toThrow(/^key 1 must read <id>:<secret>/);
    for (const id of ["k", "K-1_b"]) expect(URL_SIGNING_KEY_ID_PATTERN.test(id)).toBe(true);
    for (const id of ["k!", "!k"]) expect(URL_SIGNING_KEY_ID_PATTERN.test(id)).toBe(false);
  });

  it("need secrets of at least 32 characters without white space or commas, and never repeat them in an error", () => {
    const short = "p".repeat(31);
    let error: Error | undefined;
    try {
      parseUrlSigningKeys(`k1:${short}`);
    } catch (e) {
      error = e as Error;
    }
    expect(error?.message).toMatch(/^the secret of key k1 must be at least 32 characters, without commas or spaces/);
    expect(error?.message).not.toContain(short);
    expect(() => parseUrlSigningKeys(`k1:${"p".repeat(16)}\t${"p".repeat(16)}`)).toThrow(/the secret of key k1/);
    expect(() => parseUrlSigningKeys("k1:")).toThrow(/the secret of key k1/);
    expect(() => parseUrlSigningKeys(`k1:x ${"p".repeat(32)}`)).toThrow(/the secret of key k1/);
    expect(() => parseUrlSigningKeys(`k1:${"p".repeat(32)} x`)).toThrow(/the secret of key k1/);
  });

  it("refuse an id given twice, and an empty list", () => {
    expect(() => parseUrlSigningKeys(`k1:${SECRET}\nk1:${OTHER}`)).toThrow(/^key id k1 appears twice: every key needs its own id$/);
    for (const empty of ["", " , ", "# only a comment\n\n"]) {
      expect(() => parseUrlSigningKeys(empty)).toThrow(/^no key given: write <id>:<secret>, newest first, separated by commas$/);
    }
  });

  it("format as a commented file that parses back to the same keys", () => {
    const keys = [
      { id: "k2", secret: SECRET },
      { id: "k1", secret: OTHER },
    ];
    const text = formatUrlSigningKeys(keys);
    expect(text).toBe(
      "# artifactd download-link signing keys, newest first: the first signs, all verify.\n" +
        "# <id>:<secret>. Keep this file private (mode 0600); every replica must have the same keys.\n" +
        `k2:${SECRET}\nk1:${OTHER}\n`,
    );
    expect(parseUrlSigningKeys(text)).toStrictEqual(keys);
  });

  it("are made with a time-stamped id, a suffix when it is taken, and a fresh 32-byte secret", () => {
    const now = new Date("2026-12-04T22:56:39.123Z");
    const key = newUrlSigningKey([], now);
    expect(key.id).toBe("k20261204T225639Z");
    expect(Buffer.from(key.secret, "base64url")).toHaveLength(32);
    expect(key.secret).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(newUrlSigningKey([], now).secret).not.toBe(key.secret);
    expect(newUrlSigningKey(["k20261204T225639Z"], now).id).toBe("k20261204T225639Z-2");
    expect(newUrlSigningKey(["k20261204T225639Z", "k20261204T225639Z-2"], now).id).toBe("k20261204T225639Z-3");
    expect(Object.isFrozen(key)).toBe(true);
    expect(parseUrlSigningKeys(formatUrlSigningKeys([key]))).toStrictEqual([key]);
    expect(newUrlSigningKey().id).toMatch(/^k\d{8}T\d{6}Z$/);
  });
});
