/**
 * @artifactd/api — what the service and its clients read the same way,
 * beside the generated code (`@artifactd/api/artifacts/v1/…_pb.js`,
 * `@artifactd/api/grpc/…`): init shapes of the messages callers build,
 * the status names, the grammar of artifact references, the part-size limits of upload sessions, which
 * failures are worth another try, the trailer of a refused direct link,
 * and the frames of content messages
 * (written with a head before the bytes, read without copying them).
 */
export type { ArtifactFilterInit, ArtifactSpecInit } from "./init-shapes.ts";
export { STATUS_BY_NAME, STATUS_NAMES, statusFromName, statusName, type StatusName } from "./status-names.ts";
export { DEFAULT_PART_SIZE, MAX_PART_SIZE, MIN_PART_SIZE } from "./part-size-limits.ts";
export { isTransientFailure, retryAfterMs } from "./transient-failure.ts";
export { DIRECT_DOWNLOAD_UNAVAILABLE, type DirectDownloadUnavailableReason } from "./direct-download-unavailable.ts";
export {
  aliasProblem,
  ARTIFACT_URI_SCHEME,
  formatArtifactReference,
  isArtifactIdText,
  LATEST_ALIAS,
  parseArtifactReference,
  projectProblem,
  versionedNameProblem,
  type ArtifactReference,
  type ParsedArtifactReference,
} from "./artifact-references.ts";
export { bytesFieldFrameHead, chunkFrameHead, readChunkFrames, type ChunkFrame } from "./chunk-frames.ts";
