import { describe, expect, it } from "vitest";
import { defaultPrefix, isArtifactId, newArtifactId, PREFIX_PATTERN } from "../../src/artifact-id.ts";

const CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz";

describe("artifact ids", () => {
  it("start with the prefix, then the time in ten base32 digits, most significant first", () => {
    // 32^10 - 1 is the largest time ten digits hold; 1 and 33 show the digit order.
    expect(newArtifactId("art", 0).slice(4, 14)).toBe("0000000000");
    expect(newArtifactId("art", 1).slice(4, 14)).toBe("0000000001");
    expect(newArtifactId("art", 33).slice(4, 14)).toBe("0000000011");
    expect(newArtifactId("art", 31 * 32 ** 9).slice(4, 14)).toBe("z000000000");
    expect(newArtifactId("img", 32 ** 10 - 1)).toMatch(/^img_zzzzzzzzzz[0-9a-z]{16}$/);
  });

  it("end in 16 random base32 digits, different every time", () => {
    const bodies = new Set(Array.from({ length: 200 }, () => newArtifactId("art", 1000).slice(14)));
    expect(bodies.size).toBe(200);
    const seen = new Set([...bodies].join(""));
    // 3,200 random digits cover the whole alphabet and nothing else.
    expect([...seen].sort().join("")).toBe(CROCKFORD);
  });

  it("are recognised only in the exact shape <3–5 lowercase letters>_<26 base32 digits>", () => {
    const body = "01jf3k8z9q4v6w2x7y5t0r1s3m";
    for (const id of [`art_${body}`, `imgs_${body}`, `video_${body}`, newArtifactId("doc")]) expect(isArtifactId(id)).toBe(true);
    for (const id of [
      `ar_${body}`,
      `images_${body}`,
      `Art_${body}`,
      `art_${body}x`,
      `art_${body.slice(1)}`,
      `art_${body.slice(1)}i`,
      `art_${body.slice(1)}L`,
      ` art_${body}`,
      `art-${body}`,
      "",
    ]) {
      expect(isArtifactId(id), id).toBe(false);
    }
  });

  it("take prefixes of 3–5 lowercase letters", () => {
    for (const prefix of ["img", "json", "video"]) expect(PREFIX_PATTERN.test(prefix)).toBe(true);
    for (const prefix of ["im", "videos", "Img", "im1", " img", "img "]) expect(PREFIX_PATTERN.test(prefix), prefix).toBe(false);
  });

  it("get a default prefix from inline content or the media type, case-insensitively", () => {
    expect(defaultPrefix("image/png", "json")).toBe("json");
    expect(defaultPrefix("image/png", "text")).toBe("txt");
    expect(defaultPrefix("IMAGE/PNG")).toBe("img");
    expect(defaultPrefix("video/mp4")).toBe("vid");
    expect(defaultPrefix("audio/ogg")).toBe("aud");
    expect(defaultPrefix("application/pdf")).toBe("doc");
    expect(defaultPrefix("text/plain")).toBe("doc");
    expect(defaultPrefix("application/vnd.oasis.opendocument.text")).toBe("doc");
    expect(defaultPrefix("application/octet-stream")).toBe("art");
    expect(defaultPrefix("x/image/")).toBe("art");
    expect(defaultPrefix("application/pdfx")).toBe("art");
    expect(defaultPrefix("x-text/plain")).toBe("art");
  });
});
