import { toJson, type JsonValue } from "@bufbuild/protobuf";
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { ArtifactSchema } from "@artifactd/api/artifacts/v1/artifact_pb.js";
import { Status, Storage, type Artifact } from "@artifactd/client";
import { formatBytes } from "./human-units.ts";

/**
 * How the client commands show artifacts: one tab-separated line each for
 * `ls` and `search`, a labelled block for `show`, and for --json the
 * protobuf JSON mapping of the Artifact message — the same JSON the service
 * answers over the Connect protocol: camelCase names, int64 as strings
 * ("sizeBytes": "1234"), timestamps as RFC 3339, enums by name
 * ("STATUS_DRAFT"), and every field present even when empty, so scripts
 * can rely on the keys.
 */
export function artifactJson(artifact: Artifact): JsonValue {
  return toJson(ArtifactSchema, artifact, { alwaysEmitImplicit: true });
}

/** `id  kind  size  created  name`, tab-separated, for `ls` and `search`. */
export function artifactLine(a: Artifact): string {
  return [a.id, a.kind, formatBytes(Number(a.sizeBytes)), a.createdAt ? isoTime(a.createdAt).slice(0, 19).replace("T", " ") : "", a.name].join("\t");
}

/** `show`: one `key  value` row per field that has a value. */
export function describeArtifact(a: Artifact): string {
  const provenance = a.provenance
    ? Object.entries(a.provenance)
        .filter(([key, value]) => !key.startsWith("$") && value !== "")
        .map(([key, value]) => `${key}=${String(value)}`)
        .join(" ")
    : "";
  const rows: [string, string][] = [
    ["id", a.id],
    ["kind", a.kind],
    ["class", a.artifactClass],
    ["name", a.name],
    ["title", a.title],
    ["mime", a.mimeType],
    ["size", `${formatBytes(Number(a.sizeBytes))} (${a.sizeBytes} bytes)`],
    ["blake3", a.blake3],
    ["storage", Storage[a.storage]?.toLowerCase() ?? String(a.storage)],
    ["status", Status[a.status]?.toLowerCase() ?? String(a.status)],
    ["pinned", String(a.pinned)],
    ["labels", Object.keys(a.labels).length ? JSON.stringify(a.labels) : ""],
    ["tags", a.tags.join(", ")],
    ["metrics", Object.keys(a.metrics).length ? JSON.stringify(a.metrics) : ""],
    ["scope", provenance],
    ["inputs", a.inputs.map((input) => (input.role ? `${input.artifactId} (${input.role})` : input.artifactId)).join(", ")],
    ["created", a.createdAt ? isoTime(a.createdAt) : ""],
    ["by", a.createdBy],
    ["expires", a.expiresAt ? isoTime(a.expiresAt) : ""],
    ["deleted", a.deletedAt ? isoTime(a.deletedAt) : ""],
  ];
  return rows
    .filter(([, value]) => value !== "")
    .map(([key, value]) => `${key.padEnd(8)} ${value}`)
    .join("\n");
}

export function isoTime(timestamp: Timestamp): string {
  return timestampDate(timestamp).toISOString();
}
