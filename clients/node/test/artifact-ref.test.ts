import { describe, expect, expectTypeOf, it } from "vitest";
import { newArtifactId } from "../../../src/artifact-id.ts";
import {
  artifactUri,
  isArtifactRef,
  parseArtifactRef,
  type ArtifactClient,
  type ArtifactRef,
  type DirectoryRef,
  type ImageRef,
  type JsonRef,
  type TextRef,
  type TypedArtifact,
  type VideoRef,
} from "../src/index.ts";

describe("typed artifact references", () => {
  const image = newArtifactId("img") as ImageRef;

  it("parses bare ids and artifact:// URIs to the same id and prefix", () => {
    expect(parseArtifactRef(image)).toEqual({ id: image, prefix: "img" });
    expect(parseArtifactRef(artifactUri(image))).toEqual({ id: image, prefix: "img" });
    expect(artifactUri(image)).toBe(`artifact://${image}`);
    const recon = newArtifactId("recon");
    expect(parseArtifactRef(recon).prefix).toBe("recon");
  });

  it("refuses what is not an id, saying what an id looks like", () => {
    for (const bad of [
      "",
      "img",
      "img_123",
      `IMG_${image.slice(4)}`,
      `toolong_${image.slice(4)}`,
      "artifact://",
      "s3://bucket/x",
      `${image} `,
      `artifact:/${image}`,
    ]) {
      expect(() => parseArtifactRef(bad), bad).toThrow(/is not an artifact reference: expected <prefix>_<26 characters>/);
    }
    expect(() => parseArtifactRef(42 as unknown as string)).toThrow(TypeError);
    expect(() => artifactUri("nope" as ImageRef)).toThrow(TypeError);
  });

  it("checks a prefix when one is named", () => {
    expect(isArtifactRef(image)).toBe(true);
    expect(isArtifactRef(image, "img")).toBe(true);
    expect(isArtifactRef(image, "vid")).toBe(false);
    expect(isArtifactRef(`artifact://${image}`)).toBe(false);
    expect(isArtifactRef(undefined)).toBe(false);
  });

  it("keeps prefixes apart in the types", () => {
    expectTypeOf<ImageRef>().toEqualTypeOf<ArtifactRef<"img">>();
    expectTypeOf<ImageRef>().not.toEqualTypeOf<VideoRef>();
    expectTypeOf<"img_x">().toExtend<ImageRef>();
    expectTypeOf<"vid_x">().not.toExtend<ImageRef>();
    const value: unknown = image;
    if (isArtifactRef(value, "img")) expectTypeOf(value).toEqualTypeOf<ImageRef>();
  });

  it("types what the client saves by the spec's prefix, or the server's default one", () => {
    // Functions that are type-checked, never called: the assertions are on their result types.
    const image = (c: ArtifactClient) => c.saveFile("cat.png", { kind: "photo", typePrefix: "img" });
    const json = (c: ArtifactClient) => c.saveJson({ a: 1 }, { kind: "summary" });
    const text = (c: ArtifactClient) => c.saveText("hi", { kind: "note" });
    const dir = (c: ArtifactClient) => c.saveDir("out/", { kind: "model" });
    const written = (c: ArtifactClient) => c.openWriter({ kind: "video", typePrefix: "vid" }).commit();
    expectTypeOf<Awaited<ReturnType<typeof image>>["id"]>().toEqualTypeOf<ImageRef>();
    expectTypeOf<Awaited<ReturnType<typeof json>>["id"]>().toEqualTypeOf<JsonRef>();
    expectTypeOf<Awaited<ReturnType<typeof text>>["id"]>().toEqualTypeOf<TextRef>();
    expectTypeOf<Awaited<ReturnType<typeof dir>>["id"]>().toEqualTypeOf<DirectoryRef>();
    expectTypeOf<Awaited<ReturnType<typeof written>>["artifact"]>().toEqualTypeOf<TypedArtifact<"vid"> | undefined>();
  });
});
