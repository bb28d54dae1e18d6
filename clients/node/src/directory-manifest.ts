/**
 * The content of a directory artifact: a JSON manifest mapping relative
 * paths to file artifacts. Written by `saveDir`, read by `restoreDir` and
 * `asLocalDir`.
 *
 *   {
 *     "format": "artifactd.directory/v1",
 *     "entries": [
 *       { "path": "data", "type": "dir" },
 *       { "path": "data/train.csv", "type": "file", "size": 1234, "blake3": "…64 hex…", "artifactId": "fil_…", "executable": false }
 *     ]
 *   }
 *
 * Entries are sorted by path; paths use `/`. A manifest comes from the
 * network and may have been written by anyone holding a token, so it is
 * checked whole before anything is written: every path must stay inside the
 * target folder (no `..`, `.` or empty segments, nothing absolute, no
 * backslashes or NUL), appear once, and not sit under a file; only files and
 * folders exist (no links, so restoring cannot be steered elsewhere).
 *
 * Its size is bounded too (DirectoryLimits), so a hostile or broken
 * manifest cannot make a restore hold an unbounded document in memory or
 * create millions of files: the manifest's size is checked before it is
 * fetched, the number of entries before any is looked at, and the bytes
 * the files add up to before anything is fetched or written. saveDir checks
 * the same limits, so it never stores a manifest a restore with the
 * defaults would refuse.
 */
export const DIRECTORY_MANIFEST_FORMAT = "artifactd.directory/v1";
export const DIRECTORY_MANIFEST_MIME = "application/vnd.artifactd.directory+json";

export interface DirectoryFileEntry {
  readonly path: string;
  readonly type: "file";
  readonly size: number;
  readonly blake3: string;
  readonly artifactId: string;
  readonly executable: boolean;
}

export interface DirectoryFolderEntry {
  readonly path: string;
  readonly type: "dir";
}

export type DirectoryEntry = DirectoryFileEntry | DirectoryFolderEntry;

export interface DirectoryManifest {
  readonly format: typeof DIRECTORY_MANIFEST_FORMAT;
  readonly entries: readonly DirectoryEntry[];
}

/** A manifest that must not be restored; `path` names the offending entry when there is one. */
export class DirectoryManifestError extends Error {
  override readonly name = "DirectoryManifestError";
  readonly path: string | undefined;
  constructor(message: string, path?: string) {
    super(message);
    this.path = path;
  }
}

/** Bounds on a directory artifact, as options of saveDir, restoreDir and asLocalDir. */
export interface DirectoryLimits {
  /** Most entries (files and folders) a manifest may list. Default 100,000. */
  readonly maxEntries?: number;
  /** Largest manifest, in bytes (about 200 bytes an entry, more with long paths). Default 64 MiB. */
  readonly maxManifestBytes?: number;
  /** Most bytes the files may add up to, each path counted as it is written. Default: no limit. */
  readonly maxTotalBytes?: number;
}

export const DEFAULT_DIRECTORY_LIMITS = Object.freeze({ maxEntries: 100_000, maxManifestBytes: 64 * 1024 * 1024 });

export interface ResolvedDirectoryLimits {
  readonly maxEntries: number;
  readonly maxManifestBytes: number;
  readonly maxTotalBytes: number | undefined;
}

/** The limits with their defaults; a limit that is not a whole number >= 1 is a TypeError naming the caller. */
export function resolveDirectoryLimits(options: DirectoryLimits, caller: string): ResolvedDirectoryLimits {
  const limits = {
    maxEntries: options.maxEntries ?? DEFAULT_DIRECTORY_LIMITS.maxEntries,
    maxManifestBytes: options.maxManifestBytes ?? DEFAULT_DIRECTORY_LIMITS.maxManifestBytes,
    maxTotalBytes: options.maxTotalBytes,
  };
  for (const [name, value] of Object.entries(limits)) {
    if (value !== undefined && (!Number.isSafeInteger(value) || value < 1)) throw new TypeError(`${caller}: ${name} must be a whole number >= 1, got ${value}`);
  }
  return limits;
}

/**
 * Why a directory of this shape breaks a limit — naming the limit, its
 * value, and the option that raises it — or undefined when it does not.
 * `manifestBytes` and `totalBytes` may be left out when not known yet.
 */
export function exceededDirectoryLimit(
  shape: { readonly entries: number; readonly manifestBytes?: number; readonly totalBytes?: number },
  limits: ResolvedDirectoryLimits,
): string | undefined {
  if (shape.manifestBytes !== undefined && shape.manifestBytes > limits.maxManifestBytes) {
    return `its manifest is ${shape.manifestBytes} bytes, over the limit maxManifestBytes (${limits.maxManifestBytes})`;
  }
  if (shape.entries > limits.maxEntries) return `it has ${shape.entries} entries, over the limit maxEntries (${limits.maxEntries})`;
  if (shape.totalBytes !== undefined && limits.maxTotalBytes !== undefined && shape.totalBytes > limits.maxTotalBytes) {
    return `its files add up to ${shape.totalBytes} bytes, over the limit maxTotalBytes (${limits.maxTotalBytes})`;
  }
  return undefined;
}

const HEX_DIGEST = /^[0-9a-f]{64}$/;
const ARTIFACT_ID = /^[a-z]{3,5}_[0-9abcdefghjkmnpqrstvwxyz]{26}$/;
const MAX_PATH = 4096;
const MAX_SEGMENT = 255;

/** Throws DirectoryManifestError unless `relativePath` is a safe relative path inside a folder. */
export function checkEntryPath(relativePath: unknown): string {
  if (typeof relativePath !== "string" || relativePath.length === 0) throw new DirectoryManifestError("an entry has no path");
  const shown = JSON.stringify(relativePath.slice(0, 200));
  if (relativePath.length > MAX_PATH) throw new DirectoryManifestError(`entry path ${shown}… is longer than ${MAX_PATH} characters`, relativePath);
  if (relativePath.includes("\0")) throw new DirectoryManifestError(`entry path ${shown} contains a NUL character`, relativePath);
  if (relativePath.includes("\\")) throw new DirectoryManifestError(`entry path ${shown} contains a backslash; manifests use / only`, relativePath);
  if (relativePath.startsWith("/") || /^[A-Za-z]:/.test(relativePath)) {
    throw new DirectoryManifestError(`entry path ${shown} is absolute; entries must be relative to the directory`, relativePath);
  }
  for (const segment of relativePath.split("/")) {
    if (segment === "" || segment === "." || segment === "..") {
      throw new DirectoryManifestError(
        `entry path ${shown} has a ${segment === "" ? "empty" : JSON.stringify(segment)} segment; it could point outside the directory`,
        relativePath,
      );
    }
    if (segment.length > MAX_SEGMENT) throw new DirectoryManifestError(`entry path ${shown} has a name longer than ${MAX_SEGMENT} characters`, relativePath);
  }
  return relativePath;
}

/** Parses and checks a manifest (see the module comment); throws DirectoryManifestError naming what is wrong. */
export function parseDirectoryManifest(bytes: Uint8Array, artifactId: string, limits: ResolvedDirectoryLimits): DirectoryManifest {
  const refuse = (exceeded: string | undefined) => {
    if (exceeded) throw new DirectoryManifestError(`directory artifact ${artifactId} is refused: ${exceeded}; raise the option if you trust it`);
  };
  refuse(exceededDirectoryLimit({ entries: 0, manifestBytes: bytes.byteLength }, limits));
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (error) {
    throw new DirectoryManifestError(`artifact ${artifactId} is not a directory manifest: ${(error as Error).message}`);
  }
  const manifest = raw as { format?: unknown; entries?: unknown };
  if (manifest?.format !== DIRECTORY_MANIFEST_FORMAT || !Array.isArray(manifest.entries)) {
    throw new DirectoryManifestError(`artifact ${artifactId} is not a directory manifest: expected {"format": "${DIRECTORY_MANIFEST_FORMAT}", "entries": […]}`);
  }
  refuse(exceededDirectoryLimit({ entries: manifest.entries.length }, limits));
  const types = new Map<string, "file" | "dir">();
  const entries: DirectoryEntry[] = [];
  let totalBytes = 0;
  for (const item of manifest.entries as unknown[]) {
    const entry = item as Partial<Omit<DirectoryFileEntry, "type">> & { type?: unknown };
    const entryPath = checkEntryPath(entry?.path);
    if (types.has(entryPath)) throw new DirectoryManifestError(`entry path ${JSON.stringify(entryPath)} appears twice`, entryPath);
    if (entry.type === "dir") {
      types.set(entryPath, "dir");
      entries.push({ path: entryPath, type: "dir" });
    } else if (entry.type === "file") {
      if (!Number.isSafeInteger(entry.size) || entry.size! < 0)
        throw new DirectoryManifestError(`file ${JSON.stringify(entryPath)} has no valid size`, entryPath);
      if (typeof entry.blake3 !== "string" || !HEX_DIGEST.test(entry.blake3))
        throw new DirectoryManifestError(`file ${JSON.stringify(entryPath)} has no valid BLAKE3 digest`, entryPath);
      if (typeof entry.artifactId !== "string" || !ARTIFACT_ID.test(entry.artifactId)) {
        throw new DirectoryManifestError(`file ${JSON.stringify(entryPath)} has no valid artifact id`, entryPath);
      }
      totalBytes += entry.size!;
      refuse(exceededDirectoryLimit({ entries: entries.length, totalBytes }, limits));
      types.set(entryPath, "file");
      entries.push({
        path: entryPath,
        type: "file",
        size: entry.size!,
        blake3: entry.blake3,
        artifactId: entry.artifactId,
        executable: entry.executable === true,
      });
    } else {
      throw new DirectoryManifestError(
        `entry ${JSON.stringify(entryPath)} has type ${JSON.stringify(entry.type)}; only "file" and "dir" can be restored`,
        entryPath,
      );
    }
  }
  // A path under a file would need that file to be a folder as well.
  for (const entryPath of types.keys()) {
    const segments = entryPath.split("/");
    for (let i = 1; i < segments.length; i++) {
      const parent = segments.slice(0, i).join("/");
      if (types.get(parent) === "file")
        throw new DirectoryManifestError(`entry ${JSON.stringify(entryPath)} lies under the file ${JSON.stringify(parent)}`, entryPath);
    }
  }
  return { format: DIRECTORY_MANIFEST_FORMAT, entries };
}

/** The manifest's bytes, entries sorted by path so equal trees give equal bytes (and dedup). */
export function serializeDirectoryManifest(entries: readonly DirectoryEntry[]): Buffer {
  const sorted = [...entries].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return Buffer.from(JSON.stringify({ format: DIRECTORY_MANIFEST_FORMAT, entries: sorted }), "utf8");
}
