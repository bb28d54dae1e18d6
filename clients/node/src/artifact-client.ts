import type { ArtifactSpecInit } from "./artifact-writer.ts";
import { createArtifactLoaders, type ArtifactLoaders, type LocalFileOptions } from "./artifact-loaders.ts";
import type { TypedArtifact } from "./artifact-ref.ts";
import { createArtifactTransfers, type ArtifactTransfers, type TransferOptions } from "./artifact-transfers.ts";
import { createDirectoryArtifacts, type DirectoryArtifacts } from "./directory-artifacts.ts";
import { createLocalArtifactCache } from "./local-artifact-cache.ts";
import { createArtifactVersionCalls, type ArtifactVersionCalls } from "./artifact-versions.ts";

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
 * verified cache, staging, directory artifacts, and versions and aliases.
 */
export interface ArtifactClient
  extends ArtifactTransfers,
    ArtifactVersionCalls,
    DirectoryArtifacts,
    Pick<ArtifactLoaders, "loadBytes" | "loadText" | "loadJson" | "asLocalFile" | "stagePath" | "stageDir"> {
  /** ArtifactLoaders.ingestFile, typed by the spec's prefix. */
  ingestFile<Prefix extends string = string>(
    stagedPath: string,
    spec: ArtifactSpecInit & { typePrefix?: Prefix },
    options?: LocalFileOptions,
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
    ...directories,
    ...createArtifactVersionCalls(transfers.rpc, options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
  };
}
