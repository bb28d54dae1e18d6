import { constants } from "node:fs";
import { chmod, copyFile, lstat, mkdir, readdir, readFile, rename, rm, rmdir, stat, utimes } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import path from "node:path";
import type { ArtifactLoaders } from "./artifact-loaders.ts";
import { locatorToRequestId, type ArtifactLocator, type TypedArtifact } from "./artifact-ref.ts";
import type { ArtifactTransfers } from "./artifact-transfers.ts";
import type { ArtifactSpecInit, TransferProgress } from "./artifact-writer.ts";
import type { Artifact } from "@artifactd/api/artifacts/v1/artifact_pb.js";
import {
  checkEntryPath,
  DIRECTORY_MANIFEST_MIME,
  DirectoryManifestError,
  exceededDirectoryLimit,
  parseDirectoryManifest,
  resolveDirectoryLimits,
  serializeDirectoryManifest,
  type DirectoryEntry,
  type DirectoryLimits,
  type ResolvedDirectoryLimits,
  type DirectoryFileEntry,
  type DirectoryManifest,
} from "./directory-manifest.ts";
import { hashFile, type LocalArtifactCache } from "./local-artifact-cache.ts";

/**
 * Directory artifacts. `saveDir` uploads each distinct file once, as an
 * artifact of class "directory-entry" (id prefix `fil`, name = its relative
 * path, the directory's kind, labels, provenance, pin and expiry), then the
 * directory artifact itself: a manifest (directory-manifest.ts) naming each
 * path's file artifact, size and BLAKE3. Identical files in one directory
 * are sent once; across saves the server stores one blob per digest, so an
 * unchanged file costs no new storage. Symbolic links, sockets, pipes and
 * devices are refused by name rather than skipped: a directory artifact that
 * silently lacks something is worse than an error.
 *
 * `restoreDir` never trusts the manifest, which anyone holding a token can
 * write: it is parsed and checked whole (paths, types, duplicates — see
 * directory-manifest.ts), then every file artifact is fetched as metadata and
 * must hold the manifest's size and BLAKE3, all before anything is written.
 * The content goes through the verified cache; the tree is built in a fresh
 * folder beside the target with exclusive creates and renamed into place.
 * `asLocalDir` keeps such a restored tree in the cache, keyed by tenant and
 * the manifest's BLAKE3, and re-checks every file and folder on each hit.
 *
 * Both sides bound a directory by the same DirectoryLimits (entries, manifest
 * bytes, optionally total bytes): restoreDir refuses a manifest past them
 * before fetching or writing anything, and saveDir refuses a folder past
 * them before uploading anything, so what it stores restores with the same
 * options.
 *
 * The file artifacts are ordinary artifacts: deleting the directory artifact
 * leaves them (list with artifactClass "directory-entry" to find them), and
 * deleting one of them breaks restores of every directory that names it.
 */
export interface DirectoryArtifacts {
  /**
   * Saves a folder as a directory artifact (prefix `dir`): every regular file
   * and folder, nested folders, empty files and empty folders included. Each
   * distinct file is uploaded once as an artifact of class
   * "directory-entry"; symbolic links, sockets and devices are refused by
   * name rather than skipped.
   */
  saveDir<Prefix extends string = "dir">(
    dirPath: string,
    spec: ArtifactSpecInit & { typePrefix?: Prefix },
    options?: SaveDirOptions,
  ): Promise<TypedArtifact<Prefix>>;
  /**
   * Restores a directory artifact into `targetDir` (new, or an empty folder).
   * The manifest is checked whole first — a path that is absolute, holds
   * `..`, a backslash or NUL, repeats, or lies under a file throws
   * DirectoryManifestError and nothing is written, as does a file whose
   * artifact holds other content than the manifest names (a deleted one is
   * NOT_FOUND); files are verified (BLAKE3), `concurrency` (4) at a time, and
   * the tree is built beside the target and renamed into place.
   */
  restoreDir(locator: ArtifactLocator | string, targetDir: string, options?: RestoreDirOptions): Promise<DirectoryManifest>;
  /** asLocalFile for directory artifacts: a restored folder in the cache, reused while every file and folder still matches (each hit re-hashes the files); treat it as read-only. */
  asLocalDir(locator: ArtifactLocator | string, options?: RestoreDirOptions): Promise<string>;
  /** saveDir of a staged folder, which is removed once saved. */
  ingestDir<Prefix extends string = "dir">(
    stagedDir: string,
    spec: ArtifactSpecInit & { typePrefix?: Prefix },
    options?: SaveDirOptions,
  ): Promise<TypedArtifact<Prefix>>;
}

export interface SaveDirOptions extends DirectoryLimits {
  /** Files uploaded at once; default 4. */
  readonly concurrency?: number;
  readonly signal?: AbortSignal;
  /** Bytes uploaded so far over the whole folder (each distinct content once), once the files are hashed. */
  readonly onProgress?: (progress: TransferProgress) => void;
}

export interface RestoreDirOptions extends DirectoryLimits {
  /** Files fetched at once; default 4. */
  readonly concurrency?: number;
  readonly signal?: AbortSignal;
  /** Bytes fetched (or found in the cache) so far over the whole folder, each distinct content once. */
  readonly onProgress?: (progress: TransferProgress) => void;
}

/** One progress figure for many files moving at once: each file's latest bytes, summed. */
function folderProgress(totalBytes: number, report: ((progress: TransferProgress) => void) | undefined) {
  const perFile = new Map<string, number>();
  let bytes = 0;
  return (file: string, fileBytes: number) => {
    if (!report) return;
    bytes += fileBytes - (perFile.get(file) ?? 0);
    perFile.set(file, fileBytes);
    report({ bytes, totalBytes });
  };
}

export const DIRECTORY_ENTRY_CLASS = "directory-entry";

export function createDirectoryArtifacts(
  transfers: Pick<ArtifactTransfers, "uploadFile" | "uploadStream" | "delete" | "rpc">,
  loaders: ArtifactLoaders,
  cache: LocalArtifactCache,
): DirectoryArtifacts {
  const saveDir = async <Prefix extends string>(dirPath: string, spec: ArtifactSpecInit & { typePrefix?: Prefix }, options: SaveDirOptions = {}) => {
    const root = path.resolve(dirPath);
    const info = await stat(root).catch(() => undefined);
    if (!info?.isDirectory()) throw new TypeError(`saveDir: ${dirPath} is not a directory`);
    const concurrency = options.concurrency ?? 4;
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new TypeError(`saveDir: concurrency must be a whole number >= 1, got ${concurrency}`);
    const limits = resolveDirectoryLimits(options, "saveDir");
    const refuse = (exceeded: string | undefined) => {
      if (exceeded) throw new TypeError(`saveDir: ${dirPath} cannot be stored as one directory artifact: ${exceeded}`);
    };

    const found = await walk(root, limits.maxEntries, refuse);
    // Before hashing or uploading anything: the manifest this folder makes, with ids and digests of their real
    // lengths standing in, and the bytes it holds. Checked again on the real manifest, as files may change meanwhile.
    refuse(exceededDirectoryLimit(folderShape(found, limits), limits));
    const files = found.filter((f) => f.type === "file");
    // Hash first: identical files are uploaded once, and each upload declares its digest so a file edited meanwhile is refused.
    const digests = await mapLimit(files, concurrency, async (f) => ({ ...f, blake3: await hashFile(f.absolute), size: (await stat(f.absolute)).size }));
    const firstByDigest = new Map<string, (typeof digests)[number]>();
    for (const f of digests) if (!firstByDigest.has(f.blake3)) firstByDigest.set(f.blake3, f);

    const entrySpec = (name: string): ArtifactSpecInit => ({
      kind: spec.kind ?? "",
      artifactClass: DIRECTORY_ENTRY_CLASS,
      name,
      typePrefix: "fil",
      ...(spec.labels ? { labels: spec.labels } : {}),
      ...(spec.provenance ? { provenance: spec.provenance } : {}),
      ...(spec.pinned ? { pinned: true } : {}),
      ...(spec.ttlSeconds ? { ttlSeconds: spec.ttlSeconds } : {}),
      ...(spec.expiresAt ? { expiresAt: spec.expiresAt } : {}),
    });
    // By digest: the artifact each distinct content went up as. Its size is the size of the hashed bytes
    // (the upload declared their digest), which the walk's earlier stat might not be if the file changed since.
    const uploaded = new Map<string, { id: string; size: number }>();
    const distinct = [...firstByDigest.values()];
    const progress = folderProgress(
      distinct.reduce((sum, f) => sum + f.size, 0),
      options.onProgress,
    );
    try {
      await mapLimit(distinct, concurrency, async (f) => {
        options.signal?.throwIfAborted();
        const { artifact } = await transfers.uploadFile(f.absolute, entrySpec(f.relative), {
          expectedBlake3: f.blake3,
          ...(options.signal ? { signal: options.signal } : {}),
          onProgress: (p) => progress(f.blake3, p.bytes),
        });
        uploaded.set(f.blake3, { id: artifact!.id, size: Number(artifact!.sizeBytes) });
        progress(f.blake3, Number(artifact!.sizeBytes));
      });

      const digestOf = new Map(digests.map((d) => [d.relative, d.blake3]));
      const entries: DirectoryEntry[] = found.map((f) => {
        if (f.type === "dir") return { path: f.relative, type: "dir" };
        const blake3 = digestOf.get(f.relative)!;
        const { id, size } = uploaded.get(blake3)!;
        return { path: f.relative, type: "file", size, blake3, artifactId: id, executable: f.executable };
      });
      const manifestBytes = serializeDirectoryManifest(entries);
      refuse(exceededDirectoryLimit({ entries: entries.length, manifestBytes: manifestBytes.byteLength, totalBytes: sumOfFileSizes(entries) }, limits));
      const { artifact } = await transfers.uploadStream(
        [manifestBytes],
        {
          ...spec,
          mimeType: DIRECTORY_MANIFEST_MIME,
          typePrefix: spec.typePrefix || "dir",
          name: spec.name || path.basename(root),
        },
        options.signal ? { signal: options.signal } : {},
      );
      return artifact as TypedArtifact<Prefix>;
    } catch (error) {
      // No directory artifact names the files stored so far: soft-delete them (unpinned first when the spec pinned
      // them), so a failed save leaves no live entries and their content is reclaimed by garbage collection.
      await Promise.all(
        [...uploaded.values()].map(async ({ id }) => {
          if (spec.pinned) await transfers.rpc.setPinned({ id, pinned: false }).catch(() => {});
          await transfers.delete(id).catch(() => {});
        }),
      );
      throw error;
    }
  };

  const loadManifest = async (id: string, limits: ResolvedDirectoryLimits, signal?: AbortSignal) => {
    const artifact = await loaders.getLive(id, signal);
    if (artifact.mimeType !== DIRECTORY_MANIFEST_MIME) {
      throw new TypeError(`artifact ${id} is not a directory artifact (its mime type is ${artifact.mimeType}); use asLocalFile or downloadToFile`);
    }
    // Refused by its recorded size before a byte is fetched; parsing checks the bytes themselves again.
    const tooLarge = exceededDirectoryLimit({ entries: 0, manifestBytes: Number(artifact.sizeBytes) }, limits);
    if (tooLarge) throw new DirectoryManifestError(`directory artifact ${id} is refused: ${tooLarge}; raise the option if you trust it`);
    const manifestFile = await loaders.localFileOf(artifact, signal ? { signal } : {});
    return { artifact, manifest: parseDirectoryManifest(await readFile(manifestFile), id, limits) };
  };

  /**
   * The live artifact behind every file of the manifest, one per digest,
   * each checked to hold the size and BLAKE3 the manifest names — all before
   * anything is written, so a manifest pointing at other or deleted content
   * is refused whole (DirectoryManifestError, or NOT_FOUND as the server says).
   */
  const checkFileArtifacts = async (manifest: DirectoryManifest, concurrency: number, signal?: AbortSignal) => {
    const firstByArtifact = new Map<string, DirectoryFileEntry>();
    for (const file of manifest.entries) {
      if (file.type !== "file") continue;
      const seen = firstByArtifact.get(file.artifactId);
      if (seen && (seen.blake3 !== file.blake3 || seen.size !== file.size)) {
        throw new DirectoryManifestError(
          `file ${JSON.stringify(file.path)} names artifact ${file.artifactId} with other content than ${JSON.stringify(seen.path)} does`,
          file.path,
        );
      }
      firstByArtifact.set(file.artifactId, seen ?? file);
    }
    const byDigest = new Map<string, Artifact>();
    await mapLimit([...firstByArtifact.values()], concurrency, async (file) => {
      signal?.throwIfAborted();
      const artifact = await loaders.getLive(file.artifactId, signal);
      if (artifact.blake3 !== file.blake3 || Number(artifact.sizeBytes) !== file.size) {
        throw new DirectoryManifestError(
          `file ${JSON.stringify(file.path)}: artifact ${file.artifactId} does not hold the content the manifest names ` +
            `(it holds ${artifact.sizeBytes} bytes with BLAKE3 ${artifact.blake3}, the manifest says ${file.size} bytes with BLAKE3 ${file.blake3})`,
          file.path,
        );
      }
      byDigest.set(artifact.blake3, artifact);
    });
    return byDigest;
  };

  /** Refuses a target that exists and is not an empty folder (a link included: it is never followed); answers whether one exists. */
  const checkTarget = async (target: string, shown: string) => {
    const existing = await lstat(target).catch(() => undefined);
    if (existing && !(existing.isDirectory() && (await readdir(target)).length === 0)) {
      throw new TypeError(
        `restoreDir: ${shown} already exists${existing.isDirectory() ? " and is not empty" : existing.isSymbolicLink() ? " as a link" : ""}; give a new or empty folder`,
      );
    }
    return existing !== undefined;
  };

  /**
   * Restores a checked manifest into `target`. The content is fetched into
   * the verified cache first (several digests at a time, one fetch per
   * digest, each entry reused when already there), then the tree is built in
   * a fresh folder beside the target — files created exclusively, so nothing
   * already at a path is written through — and renamed into place: the
   * target appears whole or not at all. Eviction waits until the copies are
   * made, so a directory larger than the cache cap still restores; `keep`
   * names the cache entries eviction must spare (asLocalDir's own folder).
   */
  const restoreManifest = async (manifest: DirectoryManifest, target: string, shown: string, options: RestoreDirOptions, keep: readonly string[]) => {
    const concurrency = options.concurrency ?? 4;
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new TypeError(`restoreDir: concurrency must be a whole number >= 1, got ${concurrency}`);
    const signal = options.signal;
    const artifacts = await checkFileArtifacts(manifest, concurrency, signal);
    const existed = await checkTarget(target, shown);

    const sources = new Map<string, string>();
    const distinct = [...artifacts.values()];
    const progress = folderProgress(
      distinct.reduce((sum, a) => sum + Number(a.sizeBytes), 0),
      options.onProgress,
    );
    await mapLimit(distinct, concurrency, async (artifact) => {
      signal?.throwIfAborted();
      const onProgress = (p: TransferProgress) => progress(artifact.blake3, p.bytes);
      sources.set(artifact.blake3, await loaders.localFileOf(artifact, { ...(signal ? { signal } : {}), onProgress, deferEviction: true }));
      // A cache hit moves nothing: count the file as there.
      progress(artifact.blake3, Number(artifact.sizeBytes));
    });

    await mkdir(path.dirname(target), { recursive: true });
    const staging = path.join(path.dirname(target), `.${path.basename(target)}.restore-${randomBytes(6).toString("hex")}`);
    await mkdir(staging);
    try {
      for (const entry of manifest.entries) {
        const destination = path.join(staging, ...entry.path.split("/"));
        if (entry.type === "dir") {
          await mkdir(destination, { recursive: true });
          continue;
        }
        signal?.throwIfAborted();
        await mkdir(path.dirname(destination), { recursive: true });
        // COPYFILE_EXCL: never write through something already at that path (a planted link included).
        await copyFile(sources.get(entry.blake3)!, destination, constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE);
        await chmod(destination, entry.executable ? 0o755 : 0o644);
      }
      if (existed) await rmdir(target);
      await rename(staging, target);
    } catch (error) {
      await rm(staging, { recursive: true, force: true });
      throw error;
    } finally {
      await cache.evict(keep);
    }
    return manifest;
  };

  const restoreDir = async (locator: ArtifactLocator | string, targetDir: string, options: RestoreDirOptions = {}) => {
    const id = locatorToRequestId(locator);
    const limits = resolveDirectoryLimits(options, "restoreDir");
    const target = path.resolve(targetDir);
    // Checked before the manifest is fetched too, so a wrong target fails at once.
    await checkTarget(target, targetDir);
    const { manifest } = await loadManifest(id, limits, options.signal);
    return restoreManifest(manifest, target, targetDir, options, []);
  };

  return {
    saveDir,
    restoreDir,

    async asLocalDir(locator, options = {}) {
      const id = locatorToRequestId(locator);
      const { artifact, manifest } = await loadManifest(id, resolveDirectoryLimits(options, "asLocalDir"), options.signal);
      const dir = cache.dirPath(artifact.tenantId, artifact.blake3);
      if (await matchesManifest(dir, manifest)) {
        const now = new Date();
        await utimes(dir, now, now).catch(() => {});
        return dir;
      }
      await rm(dir, { recursive: true, force: true });
      try {
        await restoreManifest(manifest, dir, dir, options, [dir]);
      } catch (error) {
        // Another call or process may have restored the same directory meanwhile: its copy serves as well as ours.
        if (await matchesManifest(dir, manifest)) return dir;
        throw error;
      }
      return dir;
    },

    async ingestDir(stagedDir, spec, options) {
      const artifact = await saveDir(stagedDir, spec, options);
      await rm(stagedDir, { recursive: true, force: true });
      return artifact;
    },
  };
}

interface FoundEntry {
  readonly relative: string;
  readonly absolute: string;
  readonly type: "file" | "dir";
  readonly executable: boolean;
  /** As the walk saw it (0 for folders). */
  readonly size: number;
}

/** Stand-ins of the real lengths, to measure a manifest before its files are hashed and uploaded. */
const PLACEHOLDER_ID = `fil_${"0".repeat(26)}`;
const PLACEHOLDER_DIGEST = "0".repeat(64);

/** The size of the manifest `found` will make, and the bytes it holds. */
function folderShape(found: readonly FoundEntry[], limits: ResolvedDirectoryLimits) {
  const entries: DirectoryEntry[] = found.map((f) =>
    f.type === "dir"
      ? { path: f.relative, type: "dir" }
      : { path: f.relative, type: "file", size: f.size, blake3: PLACEHOLDER_DIGEST, artifactId: PLACEHOLDER_ID, executable: f.executable },
  );
  // Past the entry limit the manifest is refused anyway; no need to build it.
  const manifestBytes = entries.length > limits.maxEntries ? undefined : serializeDirectoryManifest(entries).byteLength;
  return { entries: entries.length, ...(manifestBytes !== undefined ? { manifestBytes } : {}), totalBytes: sumOfFileSizes(entries) };
}

function sumOfFileSizes(entries: readonly DirectoryEntry[]): number {
  return entries.reduce((sum, e) => sum + (e.type === "file" ? e.size : 0), 0);
}

/**
 * Every folder and regular file under root; anything else (links, sockets,
 * devices) is refused by name. Stops as soon as it finds more than
 * `maxEntries`, so a huge tree is refused without being listed whole.
 */
async function walk(root: string, maxEntries: number, refuse: (exceeded: string | undefined) => void): Promise<FoundEntry[]> {
  const found: FoundEntry[] = [];
  const add = (entry: FoundEntry) => {
    found.push(entry);
    if (found.length > maxEntries) refuse(`it has more than ${maxEntries} entries, over the limit maxEntries (${maxEntries})`);
  };
  const visit = async (dir: string) => {
    for (const item of (await readdir(dir, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const absolute = path.join(dir, item.name);
      const relative = path.relative(root, absolute).split(path.sep).join("/");
      try {
        checkEntryPath(relative);
      } catch (error) {
        throw new TypeError(`saveDir: ${absolute} cannot be stored: ${(error as Error).message}`);
      }
      const info = await lstat(absolute);
      if (info.isSymbolicLink())
        throw new TypeError(`saveDir: ${absolute} is a symbolic link; directory artifacts hold files and folders only (copy what it points to, or remove it)`);
      if (info.isDirectory()) {
        add({ relative, absolute, type: "dir", executable: false, size: 0 });
        await visit(absolute);
      } else if (info.isFile()) {
        add({ relative, absolute, type: "file", executable: (info.mode & 0o111) !== 0, size: info.size });
      } else {
        throw new TypeError(`saveDir: ${absolute} is not a regular file or folder (a socket, pipe or device); remove it first`);
      }
    }
  };
  await visit(root);
  return found;
}

/** True when `dir` holds exactly the manifest's files (sizes and BLAKE3 digests) and folders, and nothing else. */
async function matchesManifest(dir: string, manifest: DirectoryManifest): Promise<boolean> {
  const info = await lstat(dir).catch(() => undefined);
  if (!info?.isDirectory()) return false;
  const files = manifest.entries.filter((e): e is DirectoryFileEntry => e.type === "file");
  // Every folder the tree must hold: those listed, and the parents of every entry.
  const folders = new Set<string>();
  for (const entry of manifest.entries) {
    const segments = entry.path.split("/");
    for (let i = 1; i < segments.length; i++) folders.add(segments.slice(0, i).join("/"));
    if (entry.type === "dir") folders.add(entry.path);
  }
  const present = await readdir(dir, { recursive: true, withFileTypes: true });
  const presentFolders = present.filter((e) => e.isDirectory());
  if (present.length - presentFolders.length !== files.length || presentFolders.length !== folders.size) return false;
  for (const folder of presentFolders) {
    if (!folders.has(path.relative(dir, path.join(folder.parentPath, folder.name)).split(path.sep).join("/"))) return false;
  }
  for (const file of files) {
    const full = path.join(dir, ...file.path.split("/"));
    const stats = await lstat(full).catch(() => undefined);
    if (!stats?.isFile() || stats.size !== file.size || (await hashFile(full)) !== file.blake3) return false;
  }
  return true;
}

/**
 * `work` on every item, at most `limit` at once. After the first failure no
 * new item is started and those in flight are awaited before it is thrown,
 * so no upload or download goes on in the background of a failed call.
 */
async function mapLimit<T, R>(items: readonly T[], limit: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  let failure: { error: unknown } | undefined;
  const runner = async () => {
    while (!failure && next < items.length) {
      const index = next++;
      try {
        results[index] = await work(items[index]!);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, runner));
  if (failure) throw failure.error;
  return results;
}
