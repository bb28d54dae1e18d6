import { createArtifactLoaders, type ArtifactLoaders, type LocalFileOptions } from "./artifact-loaders.ts";
import type { TypedArtifact } from "./artifact-ref.ts";
import { createArtifactTransfers, type ArtifactTransfers, type TransferOptions } from "./artifact-transfers.ts";
import { createDirectoryArtifacts, type DirectoryArtifacts } from "./directory-artifacts.ts";
import { createLocalArtifactCache } from "./local-artifact-cache.ts";
import { createArtifactVersionCalls, type ArtifactVersionCalls } from "./artifact-versions.ts";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ArtifactFilterInit, ArtifactSpecInit } from "@artifactd/api";
import { ProvenanceSchema } from "@artifactd/api/artifacts/v1/artifact_pb.js";
import type { ArtifactUsage } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import type { CallOptions } from "./artifact-calls.ts";

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
  /**
   * A client for one run, graph, node, job…: every save (writers, uploads,
   * saveJson / saveText / saveFile, saveDir, ingest) gets the scope's
   * provenance, each field the call's own spec leaves empty; list, search,
   * best, top and watch see only artifacts with that provenance (fields the
   * call's filter sets win); recordUsage's run defaults to the scope's. It
   * shares this client's connection and cache.
   */
  withScope(scope: ArtifactScope): ScopedArtifactClient;
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
  const client: ArtifactClient = {
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
    withScope: (scope) => scopeClient(client, scope),
    ...createArtifactVersionCalls(transfers.rpc, options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
  };
  return client;
}

/**
 * Provenance a scoped client stands for: `{ runId, graphId, nodeId,
 * parentRunId, toolName, … }`, any of the Provenance fields.
 */
export type ArtifactScope = Exclude<MessageInitShape<typeof ProvenanceSchema>, { $typeName: string }>;

/**
 * A client bound to a run (or a graph, a node, a job…): see
 * ArtifactClient.withScope. It shares its parent's connection and cache
 * (closing either closes both).
 */
export interface ScopedArtifactClient extends Omit<ArtifactClient, "recordUsage" | "withScope"> {
  /** The provenance this client fills in and narrows to. */
  readonly scope: Readonly<ArtifactScope>;
  /** ArtifactClient.recordUsage, the run being the scope's run unless the call names one. */
  recordUsage(usage: { artifactId: string; runId?: string; role?: string }, options?: CallOptions): Promise<ArtifactUsage>;
  /** A narrower scope: this one's fields, overridden by the given ones. */
  withScope(scope: ArtifactScope): ScopedArtifactClient;
}

/** Every Provenance field, by its name in the init shape: from the message's own descriptor, so a field added to the proto is scoped too. */
const PROVENANCE_KEYS = ProvenanceSchema.fields.map((field) => field.localName) as (keyof ArtifactScope)[];

/** The given provenance, each field it leaves empty taken from the scope: explicit values win. */
function withScopeFields(scope: ArtifactScope, given: ArtifactSpecInit["provenance"] | ArtifactFilterInit["provenance"]): ArtifactScope {
  const merged: Record<string, string> = {};
  for (const key of PROVENANCE_KEYS) {
    const value = (given as ArtifactScope | undefined)?.[key] || scope[key];
    if (value) merged[key] = value;
  }
  return merged;
}

export function scopeClient(client: ArtifactClient, scope: ArtifactScope): ScopedArtifactClient {
  const fixed: ArtifactScope = withScopeFields(scope, undefined);
  const spec = <S extends ArtifactSpecInit>(given: S): S => ({ ...given, provenance: withScopeFields(fixed, given.provenance) });
  const filter = (given: ArtifactFilterInit = {}): ArtifactFilterInit => ({ ...given, provenance: withScopeFields(fixed, given.provenance) });
  return {
    ...client,
    scope: fixed,

    // Saves: the scope's provenance on every one.
    openWriter: (writerSpec, options) => client.openWriter(spec(writerSpec), options),
    withWriter: (writerSpec, write, options) => client.withWriter(spec(writerSpec), write, options),
    uploadFile: (path, fileSpec, options) => client.uploadFile(path, spec(fileSpec), options),
    uploadStream: (source, streamSpec, options) => client.uploadStream(source, spec(streamSpec), options),
    saveFile: (path, fileSpec, options) => client.saveFile(path, spec(fileSpec), options),
    saveJson: (value, jsonSpec, options) => client.saveJson(value, spec(jsonSpec), options),
    saveText: (text, textSpec, options) => client.saveText(text, spec(textSpec), options),
    saveDir: (dirPath, dirSpec, options) => client.saveDir(dirPath, spec(dirSpec), options),
    ingestFile: (stagedPath, fileSpec, options) => client.ingestFile(stagedPath, spec(fileSpec), options),
    ingestDir: (stagedDir, dirSpec, options) => client.ingestDir(stagedDir, spec(dirSpec), options),

    // Queries: narrowed to the scope's artifacts.
    listPage: (listFilter, page) => client.listPage(filter(listFilter), page),
    list: (listFilter, options) => client.list(filter(listFilter), options),
    searchPage: (query, searchFilter, page) => client.searchPage(query, filter(searchFilter), page),
    search: (query, searchFilter, options) => client.search(query, filter(searchFilter), options),
    best: (kind, metric, options = {}) => client.best(kind, metric, { ...options, filter: filter(options.filter) }),
    top: (kind, metric, limit, options = {}) => client.top(kind, metric, limit, { ...options, filter: filter(options.filter) }),
    watch: (watchFilter, options) => client.watch(filter(watchFilter), options),

    async recordUsage(usage, options) {
      const runId = usage.runId || fixed.runId;
      if (!runId) throw new TypeError("recordUsage: give runId, or use a client whose scope has one");
      return client.recordUsage({ ...usage, runId }, options);
    },

    withScope: (narrower) => scopeClient(client, { ...fixed, ...withScopeFields({}, narrower) }),
  };
}
