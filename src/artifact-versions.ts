/**
 * Versions and aliases in the domain's own shapes. A versioned artifact
 * (ArtifactSpec.versioned) is version 1, 2, 3… of its (project, name) in
 * commit order; an alias names one version of a name and can be moved;
 * `latest` is the newest version not deleted, computed whenever it is read.
 */

/** A versioned name: (project, name) within a tenant; project '' is the tenant's default. */
export interface VersionedName {
  readonly project: string;
  readonly name: string;
}

/** One change of an alias: set (from nothing), moved, or removed (to nothing). */
export interface AliasMove extends VersionedName {
  readonly alias: string;
  readonly fromArtifactId: string | undefined;
  readonly toArtifactId: string | undefined;
  readonly fromVersion: number | undefined;
  readonly toVersion: number | undefined;
  /** The token name that moved it. */
  readonly movedBy: string;
  readonly movedAt: Date;
  readonly reason: string;
}

/** Who moves an alias and why: recorded in the alias history. */
export interface AliasMoveBy {
  readonly movedBy: string;
  readonly reason: string;
}
