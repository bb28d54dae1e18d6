import { describe, expect, it } from "vitest";
import {
  checkEntryPath,
  DEFAULT_DIRECTORY_LIMITS,
  DIRECTORY_MANIFEST_FORMAT,
  DIRECTORY_MANIFEST_MIME,
  DirectoryManifestError,
  exceededDirectoryLimit,
  parseDirectoryManifest,
  resolveDirectoryLimits,
  serializeDirectoryManifest,
  type DirectoryEntry,
  type ResolvedDirectoryLimits,
} from "../../clients/node/src/directory-manifest.ts";

const DIGEST = "ab".repeat(32);
const ID = "fil_01jf3k8z9q4v6w2x7y5t0r1s3m";
const UNLIMITED: ResolvedDirectoryLimits = { maxEntries: 1000, maxManifestBytes: 1_000_000, maxTotalBytes: undefined };
const file = (path: string, size = 1, more: object = {}) => ({ path, type: "file", size, blake3: DIGEST, artifactId: ID, executable: false, ...more });
const bytesOf = (value: unknown) => new TextEncoder().encode(typeof value === "string" ? value : JSON.stringify(value));
const manifestOf = (entries: unknown[]) => bytesOf({ format: DIRECTORY_MANIFEST_FORMAT, entries });
const parse = (entries: unknown[], limits = UNLIMITED) => parseDirectoryManifest(manifestOf(entries), "dir_x", limits);

/** The DirectoryManifestError `run` throws; fails the test when it throws nothing or something else. */
function manifestError(run: () => unknown): DirectoryManifestError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(DirectoryManifestError);
    expect((error as Error).name).toBe("DirectoryManifestError");
    return error as DirectoryManifestError;
  }
  throw new Error("expected a DirectoryManifestError");
}

describe("directory manifests", () => {
  it("parse back what serialize wrote, entries sorted by path; executable is true only when it says true", () => {
    const entries: DirectoryEntry[] = [
      { path: "data/train.csv", type: "file", size: 3, blake3: DIGEST, artifactId: ID, executable: true },
      { path: "data", type: "dir" },
      { path: "a", type: "file", size: 0, blake3: DIGEST, artifactId: ID, executable: false },
    ];
    const bytes = serializeDirectoryManifest(entries);
    expect(JSON.parse(bytes.toString("utf8"))).toStrictEqual({ format: "artifactd.directory/v1", entries: [entries[2], entries[1], entries[0]] });
    expect(serializeDirectoryManifest([entries[0]!, entries[0]!]).toString()).toContain(`[${JSON.stringify(entries[0])},${JSON.stringify(entries[0])}]`);
    expect(parseDirectoryManifest(bytes, "dir_x", UNLIMITED)).toStrictEqual({
      format: DIRECTORY_MANIFEST_FORMAT,
      entries: [entries[2], entries[1], entries[0]],
    });
    expect(parse([file("x", 1, { executable: "yes" })]).entries[0]).toMatchObject({ executable: false });
    expect(DIRECTORY_MANIFEST_MIME).toBe("application/vnd.artifactd.directory+json");
  });

  it("refuse what is not a manifest: bad UTF-8, bad JSON, another format, entries not a list", () => {
    expect(manifestError(() => parseDirectoryManifest(new Uint8Array([0xff]), "dir_x", UNLIMITED)).message).toMatch(
      /^artifact dir_x is not a directory manifest: /,
    );
    expect(manifestError(() => parseDirectoryManifest(bytesOf("{"), "dir_x", UNLIMITED)).message).toMatch(
      /^artifact dir_x is not a directory manifest: .*JSON/,
    );
    const shape = /^artifact dir_x is not a directory manifest: expected \{"format": "artifactd\.directory\/v1", "entries": \[…\]\}$/;
    const notUtf8 = Buffer.concat([
      Buffer.from(`{"format":"${DIRECTORY_MANIFEST_FORMAT}","entries":[{"path":"`),
      Buffer.from([0xff]),
      Buffer.from('","type":"dir"}]}'),
    ]);
    expect(manifestError(() => parseDirectoryManifest(notUtf8, "dir_x", UNLIMITED)).message).toMatch(
      /^artifact dir_x is not a directory manifest: .*encoded data was not valid/,
    );
    expect(manifestError(() => parse([null])).message).toBe("an entry has no path");
    for (const value of ["null", { format: "artifactd.directory/v2", entries: [] }, { format: DIRECTORY_MANIFEST_FORMAT, entries: {} }, { entries: [] }]) {
      expect(manifestError(() => parseDirectoryManifest(bytesOf(value), "dir_x", UNLIMITED)).message).toMatch(shape);
    }
  });

  it("refuse file entries without a valid size, digest or artifact id, naming the path", () => {
    for (const [bad, what] of [
      [{ size: -1 }, "size"],
      [{ size: 1.5 }, "size"],
      [{ size: "1" }, "size"],
      [{ blake3: DIGEST.toUpperCase() }, "BLAKE3 digest"],
      [{ blake3: `${DIGEST}0` }, "BLAKE3 digest"],
      [{ blake3: 5 }, "BLAKE3 digest"],
      [{ artifactId: "fil_x" }, "artifact id"],
      [{ artifactId: 5 }, "artifact id"],
      [{ artifactId: `1${ID}` }, "artifact id"],
      [{ artifactId: `${ID}x` }, "artifact id"],
    ] as const) {
      const error = manifestError(() => parse([file("f", 1, bad)]));
      expect(error.message).toBe(`file "f" has no valid ${what}`);
      expect(error.path).toBe("f");
    }
    expect(parse([file("empty", 0)]).entries).toHaveLength(1);
  });

  it("refuse entries of other types, paths given twice, and paths under a file", () => {
    const link = manifestError(() => parse([{ path: "l", type: "symlink" }]));
    expect(link.message).toBe('entry "l" has type "symlink"; only "file" and "dir" can be restored');
    expect(link.path).toBe("l");
    const twice = manifestError(() => parse([{ path: "d", type: "dir" }, file("d")]));
    expect(twice.message).toBe('entry path "d" appears twice');
    expect(twice.path).toBe("d");
    const under = manifestError(() => parse([file("a/b"), file("a/b/c/d"), { path: "a", type: "dir" }]));
    expect(under.message).toBe('entry "a/b/c/d" lies under the file "a/b"');
    expect(under.path).toBe("a/b/c/d");
    expect(parse([{ path: "a", type: "dir" }, file("a/b"), file("ab/c"), file("a.b")]).entries).toHaveLength(4);
    expect(parse([file("a"), file("b/a")]).entries).toHaveLength(2);
  });

  it("refuse a manifest over its byte, entry or total-size limit, naming the limit and the option", () => {
    const bytes = manifestOf([file("a", 5), file("b", 5)]);
    const at = (limits: Partial<ResolvedDirectoryLimits>) => parseDirectoryManifest(bytes, "dir_x", { ...UNLIMITED, ...limits });
    expect(at({ maxManifestBytes: bytes.byteLength, maxEntries: 2, maxTotalBytes: 10 }).entries).toHaveLength(2);
    expect(manifestError(() => at({ maxManifestBytes: bytes.byteLength - 1 })).message).toBe(
      `directory artifact dir_x is refused: its manifest is ${bytes.byteLength} bytes, over the limit maxManifestBytes (${bytes.byteLength - 1}); raise the option if you trust it`,
    );
    expect(manifestError(() => at({ maxEntries: 1 })).message).toBe(
      "directory artifact dir_x is refused: it has 2 entries, over the limit maxEntries (1); raise the option if you trust it",
    );
    expect(manifestError(() => at({ maxTotalBytes: 9 })).message).toBe(
      "directory artifact dir_x is refused: its files add up to 10 bytes, over the limit maxTotalBytes (9); raise the option if you trust it",
    );
  });

  it("count entries and total bytes without needing every limit", () => {
    const limits = { maxEntries: 2, maxManifestBytes: 100, maxTotalBytes: 10 };
    expect(exceededDirectoryLimit({ entries: 2, manifestBytes: 100, totalBytes: 10 }, limits)).toBeUndefined();
    expect(exceededDirectoryLimit({ entries: 3 }, limits)).toBe("it has 3 entries, over the limit maxEntries (2)");
    expect(exceededDirectoryLimit({ entries: 0, totalBytes: 11 }, limits)).toMatch(/^its files add up to 11 bytes/);
    expect(exceededDirectoryLimit({ entries: 0, manifestBytes: 101 }, limits)).toMatch(/^its manifest is 101 bytes/);
    expect(exceededDirectoryLimit({ entries: 0, totalBytes: 10 ** 15 }, { ...limits, maxTotalBytes: undefined })).toBeUndefined();
  });

  it("resolve limits to the defaults, refusing any that is not a whole number >= 1", () => {
    expect(resolveDirectoryLimits({}, "saveDir")).toStrictEqual({ maxEntries: 100_000, maxManifestBytes: 64 * 1024 * 1024, maxTotalBytes: undefined });
    expect(DEFAULT_DIRECTORY_LIMITS).toStrictEqual({ maxEntries: 100_000, maxManifestBytes: 64 * 1024 * 1024 });
    expect(resolveDirectoryLimits({ maxEntries: 1, maxManifestBytes: 2, maxTotalBytes: 3 }, "saveDir")).toStrictEqual({
      maxEntries: 1,
      maxManifestBytes: 2,
      maxTotalBytes: 3,
    });
    for (const bad of [0, 1.5, Number.NaN]) {
      expect(() => resolveDirectoryLimits({ maxTotalBytes: bad }, "restoreDir")).toThrow(
        new TypeError(`restoreDir: maxTotalBytes must be a whole number >= 1, got ${bad}`),
      );
    }
    expect(() => resolveDirectoryLimits({ maxEntries: 0 }, "saveDir")).toThrow(/^saveDir: maxEntries must be/);
  });
});

describe("entry paths", () => {
  it("are relative paths of safe segments", () => {
    for (const ok of ["a", "a/b.c", "..a/b..", ".hidden", "a".repeat(255), `${"a/".repeat(2047)}bc`]) expect(checkEntryPath(ok)).toBe(ok);
  });

  it("refuse what could leave the folder, naming why", () => {
    const cases: [unknown, RegExp][] = [
      [undefined, /^an entry has no path$/],
      ["", /^an entry has no path$/],
      [5, /^an entry has no path$/],
      [`${"a/".repeat(2048)}b`, /^entry path "(a\/)+"… is longer than 4096 characters$/],
      ["a\0b", /^entry path "a\\u0000b" contains a NUL character$/],
      ["a\\b", /^entry path "a\\\\b" contains a backslash; manifests use \/ only$/],
      ["/etc/passwd", /^entry path "\/etc\/passwd" is absolute; entries must be relative to the directory$/],
      ["C:/x", /is absolute/],
      ["z:x", /is absolute/],
      ["a//b", /^entry path "a\/\/b" has a empty segment; it could point outside the directory$/],
      ["a/", /has a empty segment/],
      ["./a", /^entry path "\.\/a" has a "\." segment/],
      ["a/../../b", /^entry path "a\/\.\.\/\.\.\/b" has a "\.\." segment/],
      [`a/${"b".repeat(256)}`, /^entry path ".*" has a name longer than 255 characters$/],
    ];
    for (const [path, message] of cases) {
      const error = manifestError(() => checkEntryPath(path));
      expect(error.message, String(path)).toMatch(message);
      expect(error.path).toBe(typeof path === "string" && path !== "" ? path : undefined);
    }
    expect(checkEntryPath("1:x")).toBe("1:x");
    expect(checkEntryPath("ab:x")).toBe("ab:x");
    expect(manifestError(() => checkEntryPath(`${"a/".repeat(2048)}b`)).message).toContain(JSON.stringify(`${"a/".repeat(2048)}b`.slice(0, 200)));
  });
});
