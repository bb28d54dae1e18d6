import type { Client } from "@connectrpc/connect";
import type { Artifact } from "@artifactd/api/artifacts/v1/artifact_pb.js";
import type { AliasMove, ArtifactService } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import { locatorToRequestId, type ArtifactLocator } from "./artifact-ref.ts";

/** A versioned name: `orders`, `team/orders`, or its parts. */
export type VersionedNameInit = string | { readonly project?: string; readonly name: string };

/** BatchGet's answer for one locator, in the order asked: the artifact, or why there is none. */
export type ArtifactLookupResult = { readonly requested: string; readonly artifact: Artifact } | { readonly requested: string; readonly notFound: string };

/**
 * Versions and aliases (see the README's "Versions and aliases"): moving
 * aliases, listing a name's versions and the history of its aliases, and
 * reading many artifacts by id or reference at once.
 */
export interface ArtifactVersionCalls {
  /**
   * Points `alias` of the artifact's name at it (an id or a reference, e.g.
   * `orders@v3`). With `expectedArtifactId` the move happens only if the
   * alias points there now ('' : only if it does not exist yet), else the
   * call fails with ABORTED. Not retried: a repeat of a compare-and-set that
   * succeeded would be refused.
   */
  setAlias(
    artifact: ArtifactLocator | string,
    alias: string,
    options?: { expectedArtifactId?: string; reason?: string; signal?: AbortSignal },
  ): Promise<{ artifact: Artifact; move: AliasMove }>;
  /** Removes an alias of a name (NOT_FOUND when it has none of that name). */
  deleteAlias(name: VersionedNameInit, alias: string, options?: { reason?: string; signal?: AbortSignal }): Promise<AliasMove>;
  /** The name's versions, newest first, a page at a time, each with its aliases. */
  listVersions(name: VersionedNameInit, options?: { pageSize?: number; includeDeleted?: boolean; signal?: AbortSignal }): AsyncIterable<Artifact[]>;
  /** The moves of the name's aliases (or of one), newest first. */
  aliasHistory(name: VersionedNameInit, options?: { alias?: string; pageSize?: number; signal?: AbortSignal }): AsyncIterable<AliasMove>;
  /** Up to the server's ARTIFACTD_MAX_BATCH_ITEMS artifacts by id or reference, in the order asked. */
  batchGet(artifacts: readonly (ArtifactLocator | string)[], options?: { includeContent?: boolean; signal?: AbortSignal }): Promise<ArtifactLookupResult[]>;
}

export function createArtifactVersionCalls(rpc: Client<typeof ArtifactService>, unary: { timeoutMs?: number }): ArtifactVersionCalls {
  const call = (signal: AbortSignal | undefined) => ({ ...unary, ...(signal ? { signal } : {}) });
  return {
    async setAlias(artifact, alias, options = {}) {
      const response = await rpc.setAlias(
        {
          artifactId: locatorToRequestId(artifact),
          alias,
          reason: options.reason ?? "",
          ...(options.expectedArtifactId !== undefined ? { expectedArtifactId: options.expectedArtifactId } : {}),
        },
        call(options.signal),
      );
      return { artifact: response.artifact!, move: response.move! };
    },

    async deleteAlias(name, alias, options = {}) {
      return (await rpc.deleteAlias({ ...nameOf(name), alias, reason: options.reason ?? "" }, call(options.signal))).move!;
    },

    async *listVersions(name, options = {}) {
      let pageToken = "";
      do {
        const page = await rpc.listVersions(
          { ...nameOf(name), pageSize: options.pageSize ?? 0, pageToken, includeDeleted: options.includeDeleted ?? false },
          call(options.signal),
        );
        yield page.versions;
        pageToken = page.nextPageToken;
      } while (pageToken);
    },

    async *aliasHistory(name, options = {}) {
      let pageToken = "";
      do {
        const page = await rpc.listAliasHistory(
          { ...nameOf(name), alias: options.alias ?? "", pageSize: options.pageSize ?? 0, pageToken },
          call(options.signal),
        );
        yield* page.moves;
        pageToken = page.nextPageToken;
      } while (pageToken);
    },

    async batchGet(artifacts, options = {}) {
      const ids = artifacts.map(locatorToRequestId);
      const response = await rpc.batchGetArtifacts({ ids, includeContent: options.includeContent ?? false }, call(options.signal));
      return response.results.map((result, i) =>
        // As the caller wrote it (artifact:// included), so results can be matched to what was asked.
        result.artifact ? { requested: String(artifacts[i]), artifact: result.artifact } : { requested: String(artifacts[i]), notFound: result.notFound },
      );
    },
  };
}

/** `team/orders` → project team, name orders; a name alone is in the default project. */
function nameOf(name: VersionedNameInit): { project: string; name: string } {
  if (typeof name !== "string") return { project: name.project ?? "", name: name.name };
  const slash = name.indexOf("/");
  return slash < 0 ? { project: "", name } : { project: name.slice(0, slash), name: name.slice(slash + 1) };
}
