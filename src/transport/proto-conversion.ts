import { create } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import type { Artifact, ArtifactFilter, ArtifactStatus, ArtifactStorage, InlineContent, Provenance, SavedInlineContent } from "../artifact.ts";
import { PROVENANCE_FIELDS } from "../artifact.ts";
import { invalidArgument } from "../artifact-error.ts";
import type { AliasMove } from "../artifact-versions.ts";
import { STATUS_BY_NAME, statusName } from "@artifactd/api";
import {
  ArtifactSchema,
  Status,
  Storage,
  type Artifact as ArtifactMessage,
  type ArtifactSpec as ArtifactSpecMessage,
  type Provenance as ProvenanceMessage,
} from "@artifactd/api/artifacts/v1/artifact_pb.js";
import {
  AliasMoveSchema,
  type AliasMove as AliasMoveMessage,
  UploadSessionSchema,
  UploadSessionState,
  type ArtifactFilter as ArtifactFilterMessage,
  type UploadSession as UploadSessionMessage,
} from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import type { SessionView } from "../service/upload-sessions.ts";
import { jsonFilterFromProto } from "./query-conversion.ts";
import type { RawSpec } from "../service/validate-spec.ts";

/** Protobuf messages ⇄ domain shapes. No rules here: validation is the service's. */

/** The domain's statuses are the proto's by their names (STATUS_BY_NAME); the compiler holds the two lists together. */
const STATUS_TO_PROTO: Readonly<Record<ArtifactStatus, Status>> = STATUS_BY_NAME;

export function statusFromProto(field: string, status: Status): ArtifactStatus | undefined {
  if (status === Status.UNSPECIFIED) return undefined;
  const name: ArtifactStatus | undefined = statusName(status);
  if (name === undefined) throw invalidArgument(`${field} ${status} is not a known Status value`);
  return name;
}

function storageFromProto(field: string, storage: Storage): ArtifactStorage | undefined {
  switch (storage) {
    case Storage.UNSPECIFIED:
      return undefined;
    case Storage.INLINE:
      return "inline";
    case Storage.BLOB:
      return "blob";
    default:
      throw invalidArgument(`${field} ${storage} is not a known Storage value`);
  }
}

function dateFromProto(field: string, timestamp: Timestamp | undefined): Date | undefined {
  if (!timestamp) return undefined;
  const date = timestampDate(timestamp);
  if (Number.isNaN(date.getTime())) throw invalidArgument(`${field} is not a valid timestamp`);
  return date;
}

function provenanceFromProto(message: ProvenanceMessage | undefined): Provenance | undefined {
  if (!message) return undefined;
  const provenance: Provenance = {};
  for (const field of PROVENANCE_FIELDS) {
    const value = message[camel(field)];
    if (value) provenance[field] = value;
  }
  return provenance;
}

export function specFromProto(message: ArtifactSpecMessage | undefined): RawSpec | undefined {
  if (!message) return undefined;
  return {
    kind: message.kind,
    artifactClass: message.artifactClass,
    name: message.name,
    title: message.title,
    mimeType: message.mimeType,
    labels: message.labels,
    tags: message.tags,
    metrics: message.metrics,
    provenance: provenanceFromProto(message.provenance),
    inputs: message.inputs.map((i) => ({ artifactId: i.artifactId, role: i.role, requiredClass: i.requiredClass, requiredKind: i.requiredKind })),
    pinned: message.pinned,
    status: statusFromProto("spec.status", message.status),
    expiresAt: dateFromProto("spec.expires_at", message.expiresAt),
    ttlSeconds: int64FromProto("spec.ttl_seconds", message.ttlSeconds),
    typePrefix: message.typePrefix,
    versioned: message.versioned,
    project: message.project,
  };
}

export function filterFromProto(message: ArtifactFilterMessage | undefined): ArtifactFilter {
  if (!message) return {};
  const filter: { -readonly [K in keyof ArtifactFilter]: ArtifactFilter[K] } = {};
  if (message.kind) filter.kind = message.kind;
  if (message.artifactClass) filter.artifactClass = message.artifactClass;
  if (message.namePrefix) filter.namePrefix = message.namePrefix;
  if (message.mimeType) filter.mimeType = message.mimeType;
  const provenance = provenanceFromProto(message.provenance);
  if (provenance) filter.provenance = provenance;
  if (Object.keys(message.labels).length > 0) filter.labels = message.labels;
  if (message.tagsAll.length > 0) filter.tagsAll = message.tagsAll;
  if (message.tagsAny.length > 0) filter.tagsAny = message.tagsAny;
  const status = statusFromProto("filter.status", message.status);
  if (status) filter.status = status;
  if (message.pinned !== undefined) filter.pinned = message.pinned;
  const after = dateFromProto("filter.created_after", message.createdAfter);
  if (after) filter.createdAfter = after;
  const before = dateFromProto("filter.created_before", message.createdBefore);
  if (before) filter.createdBefore = before;
  if (message.metricRanges.length > 0) {
    filter.metricRanges = message.metricRanges.map((r) => ({ name: r.name, min: r.min, max: r.max }));
  }
  if (message.includeDeleted) filter.includeDeleted = true;
  const storage = storageFromProto("filter.storage", message.storage);
  if (storage) filter.storage = storage;
  if (message.project) filter.project = message.project;
  if (message.name) filter.name = message.name;
  Object.assign(filter, jsonFilterFromProto(message));
  return filter;
}

export function inlineContentFromProto(
  content: { case: "text"; value: string } | { case: "json"; value: string } | { case: undefined; value?: undefined },
): SavedInlineContent | undefined {
  switch (content.case) {
    case "text":
      return { type: "text", text: content.value };
    case "json":
      return { type: "json", json: content.value };
    default:
      return undefined;
  }
}

function inlineContentToProto(content: InlineContent) {
  switch (content.type) {
    case "text":
      return { case: "text", value: content.text } as const;
    case "json":
      return { case: "json", value: content.json } as const;
    case "binary":
      return { case: "binary", value: content.bytes } as const;
  }
}

export function artifactToProto(artifact: Artifact): ArtifactMessage {
  const provenance: Partial<Record<string, string>> = {};
  for (const field of PROVENANCE_FIELDS) {
    const value = artifact.provenance[field];
    if (value) provenance[camel(field)] = value;
  }
  return create(ArtifactSchema, {
    id: artifact.id,
    tenantId: artifact.tenantId,
    kind: artifact.kind,
    artifactClass: artifact.artifactClass,
    name: artifact.name,
    title: artifact.title,
    mimeType: artifact.mimeType,
    sizeBytes: BigInt(artifact.sizeBytes),
    blake3: artifact.blake3,
    storage: artifact.storage === "inline" ? Storage.INLINE : Storage.BLOB,
    ...(artifact.inlineContent
      ? {
          inlineContent: {
            content: inlineContentToProto(artifact.inlineContent),
          },
        }
      : {}),
    labels: { ...artifact.labels },
    tags: [...artifact.tags],
    metrics: { ...artifact.metrics },
    pinned: artifact.pinned,
    status: STATUS_TO_PROTO[artifact.status],
    provenance,
    inputs: artifact.inputs.map((i) => ({ artifactId: i.artifactId, role: i.role })),
    createdAt: timestampFromDate(artifact.createdAt),
    createdBy: artifact.createdBy,
    ...(artifact.deletedAt ? { deletedAt: timestampFromDate(artifact.deletedAt) } : {}),
    ...(artifact.expiresAt ? { expiresAt: timestampFromDate(artifact.expiresAt) } : {}),
    project: artifact.project,
    version: BigInt(artifact.version ?? 0),
    aliases: [...artifact.aliases],
  });
}

export function aliasMoveToProto(move: AliasMove): AliasMoveMessage {
  return create(AliasMoveSchema, {
    project: move.project,
    name: move.name,
    alias: move.alias,
    fromArtifactId: move.fromArtifactId ?? "",
    toArtifactId: move.toArtifactId ?? "",
    fromVersion: BigInt(move.fromVersion ?? 0),
    toVersion: BigInt(move.toVersion ?? 0),
    movedBy: move.movedBy,
    movedAt: timestampFromDate(move.movedAt),
    reason: move.reason,
  });
}

type Camel<S extends string> = S extends `${infer A}_${infer B}` ? `${A}${Capitalize<Camel<B>>}` : S;

function camel<S extends (typeof PROVENANCE_FIELDS)[number]>(field: S): Camel<S> & keyof ProvenanceMessage {
  return field.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase()) as Camel<S> & keyof ProvenanceMessage;
}

/** int64 from a request, as a safe JS number. */
export function int64FromProto(field: string, value: bigint): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER)) {
    throw invalidArgument(`${field} ${value} is out of range`);
  }
  return Number(value);
}

const SESSION_STATES: Record<SessionView["session"]["state"], UploadSessionState> = {
  open: UploadSessionState.OPEN,
  completing: UploadSessionState.COMPLETING,
  completed: UploadSessionState.COMPLETED,
};

export function sessionToProto(view: SessionView): UploadSessionMessage {
  const { session } = view;
  return create(UploadSessionSchema, {
    sessionId: session.id,
    partSize: BigInt(session.partSize),
    committedParts: session.parts.map((p) => p.partNumber),
    committedBytes: BigInt(view.committedBytes),
    expiresAt: timestampFromDate(session.expiresAt),
    state: SESSION_STATES[session.state],
    resumeOffset: BigInt(view.resumeOffset),
    artifactId: session.artifactId ?? "",
    ...(session.expectedSize !== undefined ? { expectedSize: BigInt(session.expectedSize) } : {}),
    expectedBlake3: session.expectedBlake3 ?? "",
  });
}
