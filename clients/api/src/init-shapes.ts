import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ArtifactSpecSchema } from "../gen/artifacts/v1/artifact_pb.js";
import type { ArtifactFilterSchema } from "../gen/artifacts/v1/artifact_service_pb.js";

/**
 * An ArtifactSpec as a plain object: `{ kind: "model", labels: { … },
 * provenance: { runId } }`. What the clients' save and upload calls take:
 * the message's init shape without `$typeName`, so callers never `create()`.
 */
export type ArtifactSpecInit = Exclude<MessageInitShape<typeof ArtifactSpecSchema>, { $typeName: string }>;

/** An ArtifactFilter as a plain object, for list / search / watch calls: `{ kind: "model", labels: { team: "vision" } }`. */
export type ArtifactFilterInit = Exclude<MessageInitShape<typeof ArtifactFilterSchema>, { $typeName: string }>;
