import type { ArtifactReference } from "@artifactd/api";
import type { Artifact, ArtifactStatus } from "../artifact.ts";
import type { AliasMove, AliasMoveBy, VersionedName } from "../artifact-versions.ts";
import type { Page, PageRequest } from "./artifact-queries.ts";

/** A reference by name (a version or an alias), as ./artifact-versions.ts resolves it. */
export type NamedReference = Exclude<ArtifactReference, { kind: "id" }>;

/** What a reference resolved to: an id, or what the tenant lacks (a sentence naming it). */
export type Resolved = { readonly id: string } | { readonly missing: string };

/**
 * One tenant's versions and aliases (ArtifactSpec.versioned, SetAlias): every
 * method takes the tenant and sees nothing of any other. Each alias change is
 * recorded in the alias history and the event log in its own transaction.
 */
export interface ArtifactVersions {
  resolveReference(tenantId: string, reference: NamedReference): Promise<Resolved>;
  /**
   * Points `alias` of the artifact's name at it (the artifact: an id).
   * `expected`: move only if the alias points at this id now ('' = does not
   * exist yet), else aborted. Undefined when the artifact does not exist;
   * failed_precondition when it is deleted or not versioned.
   */
  setAlias(
    tenantId: string,
    artifactId: string,
    alias: string,
    by: AliasMoveBy,
    expected?: string,
  ): Promise<{ artifact: Artifact; move: AliasMove } | undefined>;
  /** Removes an alias; undefined when the name has no such alias. */
  deleteAlias(tenantId: string, name: VersionedName, alias: string, by: AliasMoveBy): Promise<AliasMove | undefined>;
  /** A status change that also moves an alias to the artifact, in one transaction (SetStatus move_alias). */
  setStatusMovingAlias(
    tenantId: string,
    artifactId: string,
    status: ArtifactStatus,
    alias: string,
    by: AliasMoveBy,
  ): Promise<{ artifact: Artifact; move: AliasMove } | undefined>;
  /** The artifacts of these ids that exist, in no particular order (BatchGetArtifacts). */
  getArtifacts(tenantId: string, ids: readonly string[], includeContent: boolean): Promise<Artifact[]>;
  /** Newest version first; undefined when the tenant has no such versioned name. */
  listVersions(tenantId: string, name: VersionedName, includeDeleted: boolean, page: PageRequest): Promise<Page<Artifact> | undefined>;
  /** Newest move first, of every alias of the name or of one; undefined when the tenant has no such versioned name. */
  listAliasHistory(tenantId: string, name: VersionedName, alias: string, page: PageRequest): Promise<Page<AliasMove> | undefined>;
}
