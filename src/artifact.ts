import type { AliasMove } from "./artifact-versions.ts";

/**
 * The domain's own shapes, independent of Protobuf and of SQL. The transport
 * converts messages to and from these; the metadata store converts rows.
 */

export type ArtifactStatus = "draft" | "review" | "approved" | "rejected";

/**
 * The review life cycle (seed 001): a draft goes to review; review ends
 * approved or rejected, or goes back to draft; a rejected artifact may be
 * reworked as a draft. Approved is final.
 */
export const STATUS_TRANSITIONS: Readonly<Record<ArtifactStatus, readonly ArtifactStatus[]>> = {
  draft: ["review"],
  review: ["approved", "rejected", "draft"],
  rejected: ["draft"],
  approved: [],
};
export type ArtifactStorage = "inline" | "blob";

export const PROVENANCE_FIELDS = [
  "run_id",
  "graph_id",
  "node_id",
  "tool_name",
  "tool_version",
  "workflow_id",
  "template_id",
  "session_id",
  "user_id",
  "client_id",
  "app_id",
  "parent_run_id",
] as const;
export type ProvenanceField = (typeof PROVENANCE_FIELDS)[number];
/** Only the fields that are set. */
export type Provenance = Partial<Record<ProvenanceField, string>>;

export interface ArtifactInput {
  readonly artifactId: string;
  readonly role: string;
  /** When non-empty, the input must have this class. */
  readonly requiredClass: string;
  /** When non-empty, the input must have this kind. */
  readonly requiredKind: string;
}

/** What a client asks for when creating an artifact, validated. */
export interface ArtifactSpec {
  readonly kind: string;
  readonly artifactClass: string;
  readonly name: string;
  readonly title: string;
  /** Empty means: the default for the storage. */
  readonly mimeType: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly tags: readonly string[];
  readonly metrics: Readonly<Record<string, number>>;
  readonly provenance: Provenance;
  readonly inputs: readonly ArtifactInput[];
  readonly pinned: boolean;
  readonly status: ArtifactStatus;
  readonly expiresAt: Date | undefined;
  /** Empty means: derived from the mime type. */
  readonly typePrefix: string;
  /** Record it as the next version of its (project, name): see ./artifact-versions.ts. */
  readonly versioned: boolean;
  /** Empty: the tenant's default project. */
  readonly project: string;
}

/** Content kept in the metadata database: text or JSON saved with SaveInline, or the bytes of a small Upload. */
export type InlineContent =
  | { readonly type: "text"; readonly text: string }
  | { readonly type: "json"; readonly json: string }
  | { readonly type: "binary"; readonly bytes: Uint8Array };

/** What SaveInline saves: text or JSON (binary content comes with Upload). */
export type SavedInlineContent = Exclude<InlineContent, { readonly type: "binary" }>;

export interface Artifact {
  readonly id: string;
  readonly tenantId: string;
  readonly kind: string;
  readonly artifactClass: string;
  readonly name: string;
  readonly title: string;
  readonly mimeType: string;
  readonly sizeBytes: number;
  readonly blake3: string;
  readonly storage: ArtifactStorage;
  /** Present when the artifact is inline and the read asked for content. */
  readonly inlineContent: InlineContent | undefined;
  readonly labels: Readonly<Record<string, string>>;
  readonly tags: readonly string[];
  readonly metrics: Readonly<Record<string, number>>;
  readonly pinned: boolean;
  readonly status: ArtifactStatus;
  readonly provenance: Provenance;
  readonly inputs: readonly { readonly artifactId: string; readonly role: string }[];
  readonly createdAt: Date;
  readonly createdBy: string;
  readonly deletedAt: Date | undefined;
  readonly expiresAt: Date | undefined;
  readonly project: string;
  /** Its version within its project and name; undefined when saved without versioning. */
  readonly version: number | undefined;
  /** The aliases of its name pointing at it now, sorted, `latest` included (./artifact-versions.ts). */
  readonly aliases: readonly string[];
}

export interface MetricRange {
  readonly name: string;
  readonly min: number | undefined;
  readonly max: number | undefined;
}

export interface ArtifactFilter {
  readonly kind?: string;
  readonly artifactClass?: string;
  readonly namePrefix?: string;
  readonly mimeType?: string;
  readonly provenance?: Provenance;
  readonly labels?: Readonly<Record<string, string>>;
  readonly tagsAll?: readonly string[];
  readonly tagsAny?: readonly string[];
  readonly status?: ArtifactStatus;
  readonly pinned?: boolean;
  readonly createdAfter?: Date;
  readonly createdBefore?: Date;
  readonly metricRanges?: readonly MetricRange[];
  readonly includeDeleted?: boolean;
  readonly storage?: ArtifactStorage;
  /** Exactly this project. */
  readonly project?: string;
  /** Exactly this name. */
  readonly name?: string;
  /** A JSON document the inline JSON content must contain (JSONB `@>`). */
  readonly inlineJsonContains?: string;
  readonly jsonConditions?: readonly JsonCondition[];
}

export type JsonComparison = "eq" | "ne" | "lt" | "le" | "gt" | "ge" | "exists";

/** A condition on one value of inline JSON content: `path` as `$.a.b[0]`, `value` a JSON literal. */
export interface JsonCondition {
  readonly path: string;
  readonly comparison: JsonComparison;
  readonly value: string;
}

/** Artifacts by a metric, highest first unless ascending; those without it last, newest first. */
export interface ArtifactOrder {
  readonly metric: string;
  readonly ascending: boolean;
}

/** Who is calling: resolved from the API token by the transport. */
/**
 * What a token may do: read-only reads (and makes signed links and watches);
 * read-write also creates and changes artifacts of its tenant; admin also
 * archives whole runs.
 */
export type TokenScope = "read-only" | "read-write" | "admin";
export const TOKEN_SCOPES: readonly TokenScope[] = ["read-only", "read-write", "admin"];

export interface Caller {
  readonly tenantId: string;
  /** The token's name, recorded as created_by. */
  readonly principal: string;
  /** The token the call was authenticated with (signed links carry it too). */
  readonly tokenId: string;
  readonly scope: TokenScope;
}

export type ArtifactEventType = "created" | "status_changed" | "pinned" | "unpinned" | "deleted" | "alias_moved";

/** A change as Watch delivers it: the artifact with its life-cycle fields as they were at the event. */
export interface ArtifactEvent {
  readonly type: ArtifactEventType;
  readonly artifact: Artifact;
  /** Where the event stands in the event log: resume after it with this. Opaque to clients. */
  readonly cursor: string;
  /** For alias_moved: the move. */
  readonly aliasMove?: AliasMove;
}

export interface LineageEdge {
  /** `fromId` was an input of `toId`. */
  readonly fromId: string;
  readonly toId: string;
  readonly role: string;
}

export interface Lineage {
  readonly ancestors: Artifact[];
  readonly descendants: Artifact[];
  readonly edges: LineageEdge[];
}
