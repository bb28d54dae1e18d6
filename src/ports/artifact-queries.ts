import type { Artifact, ArtifactFilter, ArtifactOrder, Lineage } from "../artifact.ts";

/**
 * Reading one tenant's artifacts: every method takes the tenant and sees
 * nothing of any other. Deleted artifacts are found by id and by filters
 * that ask for them (ArtifactFilter.includeDeleted).
 */
export interface ArtifactQueries {
  getArtifact(tenantId: string, id: string, options?: { includeContent?: boolean }): Promise<Artifact | undefined>;
  /** Newest first, or in `order`; the page token belongs to the order it was made with. */
  listArtifacts(tenantId: string, filter: ArtifactFilter, page: PageRequest, order?: ArtifactOrder): Promise<Page<Artifact>>;
  countArtifacts(tenantId: string, filter: ArtifactFilter): Promise<number>;
  /** Whether one artifact matches a filter: the same rules as listArtifacts, applied to one row. */
  matchesFilter(tenantId: string, id: string, filter: ArtifactFilter): Promise<boolean>;
  /**
   * Search by fragments of name, title, kind, tags and label values, and by
   * words of those and of inline content; ranked by relevance, or in `order`.
   */
  searchArtifacts(tenantId: string, query: string, filter: ArtifactFilter, page: PageRequest, order?: ArtifactOrder): Promise<Page<Artifact>>;
  /** The `limit` artifacts of `kind` with the highest (or lowest) `metric`, best first; newest wins ties. */
  bestArtifacts(tenantId: string, kind: string, metric: string, minimize: boolean, filter: ArtifactFilter, limit: number): Promise<Artifact[]>;
  /**
   * Ancestors and descendants up to `depth` edges away; each artifact once.
   * Stops reading as soon as the walk holds more than `limits` allow, and
   * then says which limit and at what depth instead of answering.
   */
  lineage(tenantId: string, id: string, depth: number, limits: LineageLimits): Promise<Lineage | LineageTooLarge>;
}

export interface PageRequest {
  readonly pageSize: number;
  /** Opaque cursor from a previous page. */
  readonly pageToken: string;
}

export interface Page<T> {
  readonly items: T[];
  readonly nextPageToken: string;
}

export interface LineageLimits {
  /** Ancestors and descendants together. */
  readonly maxArtifacts: number;
  /** Edges read, both directions together. */
  readonly maxEdges: number;
}

/** A lineage walk that went past its limits: which one, and the level (1 = direct inputs or outputs) where it did. */
export interface LineageTooLarge {
  readonly tooLarge: "artifacts" | "edges";
  readonly atDepth: number;
}
