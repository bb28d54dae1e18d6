import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { defaultPrefix, isArtifactId, newArtifactId } from "../../src/artifact-id.ts";
import { blake3Hex, createBlake3 } from "../../src/blake3.ts";
import { ensureDebianPackage } from "../support/ensure-debian-package.ts";

describe("BLAKE3", () => {
  it("matches the reference vectors", () => {
    expect(blake3Hex(new Uint8Array(0))).toBe("af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262");
    expect(blake3Hex(Buffer.from("abc"))).toBe("6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85");
  });

  it("gives the same digest incrementally, over views into larger buffers", () => {
    const data = randomBytes(3_000_000);
    const hasher = createBlake3();
    for (let i = 0; i < data.length; i += 65_537) hasher.update(new Uint8Array(data.buffer, data.byteOffset + i, Math.min(65_537, data.length - i)));
    expect(hasher.digestHex()).toBe(blake3Hex(data));
  });

  it("agrees with the independent b3sum tool", { timeout: 300_000 }, async () => {
    // Debian's b3sum is the official Rust implementation: a check that does not share our library's code.
    const b3sum = await ensureDebianPackage("b3sum", "/usr/bin/b3sum");
    for (const size of [0, 1, 1024, 1025, 5_000_001]) {
      const data = randomBytes(size);
      const out = spawnSync(b3sum, ["--no-names"], { input: data, encoding: "utf8" });
      expect(out.status, out.stderr).toBe(0);
      expect(out.stdout.trim(), `${size} bytes`).toBe(blake3Hex(data));
    }
  });
});

describe("artifact ids", () => {
  it("are typed, well-formed and time-ordered", () => {
    const a = newArtifactId("img", 1_000);
    const b = newArtifactId("img", 2_000);
    expect(a).toMatch(/^img_[0-9a-z]{26}$/);
    expect(isArtifactId(a)).toBe(true);
    expect(a < b).toBe(true);
    expect(new Set(Array.from({ length: 1000 }, () => newArtifactId("art"))).size).toBe(1000);
  });

  it("refuses malformed ids", () => {
    for (const bad of [
      "",
      "art_",
      "ART_01jf3k8z9q4v6w2x7y5t0r1s3m",
      "a_01jf3k8z9q4v6w2x7y5t0r1s3m",
      "art_01jf3k8z9q4v6w2x7y5t0r1s3",
      "art_01jf3k8z9q4v6w2x7y5t0r1s3mx",
      "art_01jf3k8z9q4v6w2x7y5t0r1s3u",
      "../../etc/passwd",
    ]) {
      expect(isArtifactId(bad), bad).toBe(false);
    }
  });

  it("derive their prefix from the mime type", () => {
    expect(defaultPrefix("image/png")).toBe("img");
    expect(defaultPrefix("video/mp4")).toBe("vid");
    expect(defaultPrefix("audio/mpeg")).toBe("aud");
    expect(defaultPrefix("application/pdf")).toBe("doc");
    expect(defaultPrefix("application/octet-stream")).toBe("art");
    expect(defaultPrefix("application/json", "json")).toBe("json");
  });
});
