import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { type ArtifactUsage as ArtifactUsageMessage, ArtifactUsageSchema } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import type { ArtifactUsage } from "../ports/artifact-usages.ts";

export function usageToProto(usage: ArtifactUsage): ArtifactUsageMessage {
  return create(ArtifactUsageSchema, {
    artifactId: usage.artifactId,
    runId: usage.runId,
    role: usage.role,
    recordedAt: timestampFromDate(usage.recordedAt),
    recordedBy: usage.recordedBy,
  });
}
