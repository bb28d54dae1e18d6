import type { ArtifactSpecInit } from "./artifact-writer.ts";
import { createArtifactLoaders, type LoadOptions, type LocalFileOptions } from "./artifact-loaders.ts";
import type { ArtifactLocator, TypedArtifact } from "./artifact-ref.ts";
import { createArtifactTransfers, type ArtifactTransfers, type TransferOptions } from "./artifact-transfers.ts";
import { createDirectoryArtifacts, type RestoreDirOptions, type SaveDirOptions } from "./directory-artifacts.ts";
import type { DirectoryManifest } from "./directory-manifest.ts";
import { createLocalArtifactCache } from "./local-artifact-cache.ts";

export interface ArtifactClientOptions extends TransferOptions {
  /** Folder of the local verified cache (asLocalFile, asLocalDir, staging). Default: `$XDG_CACHE_HOME/artifactd/artifacts`, else `~/.cache/artifactd/artifacts`. */
  readonly cacheDir?: string;
  /** Size cap of that cache; least recently used entries are removed past it. Default 10 GiB. */
  readonly cacheMaxBytes?: number;
}

/**
 * The typed Node client of artifactd, over gRPC (HTTP/2): the transfer core
 * (calls, writers, uploads, verified downloads — see ArtifactTransfers, which
 * also says which errors to expect), and on top of it loaders, the local
 * verified cache, staging and directory artifacts.
 */
export interface ArtifactClient extends ArtifactTransfers {
  /**
   * Saves a folder as a directory artifact (prefix `dir`): every regular file
   * and folder, nested folders, empty files and empty folders included. Each
   * distinct file is uploaded once as an artifact of class
   * "directory-entry"; symbolic links, sockets and devices are refused by
   * name rather than skipped. See directory-artifacts.ts.
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
  /** The content as bytes, BLAKE3-verified; RangeError above `maxBytes` (256 MiB) before any content is read. By id or `artifact://` URI. */
  loadBytes(locator: ArtifactLocator | string, options?: LoadOptions): Promise<Buffer>;
  /** The content as UTF-8 text (TypeError if it is not UTF-8). */
  loadText(locator: ArtifactLocator | string, options?: LoadOptions): Promise<string>;
  /** The content parsed as JSON (SyntaxError naming the artifact if it is not). */
  loadJson<T = unknown>(locator: ArtifactLocator | string, options?: LoadOptions): Promise<T>;
  /**
   * A local path holding the content, from the verified cache (keyed by tenant
   * and BLAKE3): a hit is re-hashed and reused without transferring content; a
   * miss or a damaged entry is downloaded to disk (never held in memory),
   * verified and kept. Treat the file as read-only. A deleted artifact is
   * NOT_FOUND even when cached.
   */
  asLocalFile(locator: ArtifactLocator | string, options?: LocalFileOptions): Promise<string>;
  /** asLocalFile for directory artifacts: a restored folder in the cache, reused while every file and folder still matches (each hit re-hashes the files); treat it as read-only. */
  asLocalDir(locator: ArtifactLocator | string, options?: RestoreDirOptions): Promise<string>;
  /** A fresh path (not created) in the cache's staging folder, for a tool that writes a file before it is saved. */
  stagePath(extension?: string): Promise<string>;
  /** A fresh, empty, created folder in the staging folder. */
  stageDir(suffix?: string): Promise<string>;
  /** Uploads a staged file; one made by stagePath then moves into the cache, so reading it back is a hit. A file elsewhere is left alone. */
  ingestFile<Prefix extends string = string>(
    stagedPath: string,
    spec: ArtifactSpecInit & { typePrefix?: Prefix },
    options?: LocalFileOptions,
  ): Promise<TypedArtifact<Prefix>>;
  /** saveDir of a staged folder, which is removed once saved. */
  ingestDir<Prefix extends string = "dir">(
    stagedDir: string,
    spec: ArtifactSpecInit & { typePrefix?: Prefix },
    options?: SaveDirOptions,
  ): Promise<TypedArtifact<Prefix>>;
}

/** Composes the client: every part is built on the transfer core, none on the client itself. */
export function createArtifactClient(options: ArtifactClientOptions): ArtifactClient {
  const transfers = createArtifactTransfers(options);
  const cache = createLocalArtifactCache({
    ...(options.cacheDir !== undefined ? { root: options.cacheDir } : {}),
    ...(options.cacheMaxBytes !== undefined ? { maxBytes: options.cacheMaxBytes } : {}),
  });
  const loaders = createArtifactLoaders(transfers, cache);
  const directories = createDirectoryArtifacts(transfers, loaders, cache);
  return {
    ...transfers,
    loadBytes: loaders.loadBytes,
    loadText: loaders.loadText,
    loadJson: loaders.loadJson,
    asLocalFile: loaders.asLocalFile,
    stagePath: loaders.stagePath,
    stageDir: loaders.stageDir,
    ingestFile: async <Prefix extends string>(stagedPath: string, spec: ArtifactSpecInit & { typePrefix?: Prefix }, fileOptions?: LocalFileOptions) =>
      (await loaders.ingestFile(stagedPath, spec, fileOptions)) as TypedArtifact<Prefix>,
    saveDir: directories.saveDir,
    restoreDir: directories.restoreDir,
    asLocalDir: directories.asLocalDir,
    ingestDir: directories.ingestDir,
  };
}
