/**
 * @artifactd/client — the typed Node client of artifactd.
 *
 *   const client = createArtifactClient({ baseUrl: "http://127.0.0.1:8080", token });
 *   {
 *     await using writer = client.openWriter({ kind: "model", name: "resnet.pt" });
 *     for await (const chunk of producer) await writer.write(chunk); // awaiting is backpressure
 *     writer.addMetrics({ accuracy: 0.93 });
 *     const { artifact } = await writer.commit(); // leaving the block without commit records nothing
 *   }
 *   await client.downloadToFile(id, "out.bin"); // BLAKE3-verified, renamed into place only when whole
 *
 * Errors from the service are ConnectErrors with the gRPC code (re-exported
 * here with Code); corrupt downloads throw ArtifactIntegrityError.
 */
export { Code, ConnectError } from "@connectrpc/connect";
export { createArtifactClient, type ArtifactClient, type ArtifactClientOptions } from "./artifact-client.ts";
export type { ArtifactFilterInit, ArtifactTransfers, DownloadOptions, TransferOptions } from "./artifact-transfers.ts";
export type { ArtifactCalls, BestOptions, CallOptions, WatchOptions } from "./artifact-calls.ts";
export type { ArtifactScope, ScopedArtifactClient } from "./artifact-client.ts";
export type { ArtifactSpecInit, ArtifactWriter, TransferProgress, WriterOptions } from "./artifact-writer.ts";
export {
  artifactUri,
  isArtifactRef,
  locatorToRequestId,
  parseArtifactRef,
  type ArrayRef,
  type ArtifactLocator,
  type ArtifactRef,
  type AudioRef,
  type DirectoryRef,
  type DocumentRef,
  type ImageRef,
  type JsonRef,
  type ReconRef,
  type TextRef,
  type TypedArtifact,
  type UrlRef,
  type VersionReference,
  type VideoRef,
} from "./artifact-ref.ts";
export type { ArtifactLookupResult, ArtifactVersionCalls, VersionedNameInit } from "./artifact-versions.ts";
export type { AliasMove } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
export type { LoadOptions, LocalFileOptions } from "./artifact-loaders.ts";
export { createRetryPolicy, type RetryOptions, type RetryPolicy } from "./retry-policy.ts";
export { DIRECTORY_ENTRY_CLASS, type RestoreDirOptions, type SaveDirOptions } from "./directory-artifacts.ts";
export {
  DEFAULT_DIRECTORY_LIMITS,
  DIRECTORY_MANIFEST_FORMAT,
  DIRECTORY_MANIFEST_MIME,
  DirectoryManifestError,
  type DirectoryEntry,
  type DirectoryLimits,
  type DirectoryManifest,
} from "./directory-manifest.ts";
export { ArtifactIntegrityError, createBlake3Verifier, type Blake3Verifier } from "./blake3-verifier.ts";
export type { DirectDownloadMode } from "./direct-download.ts";
export type { Artifact } from "@artifactd/api/artifacts/v1/artifact_pb.js";
export { Status, Storage } from "@artifactd/api/artifacts/v1/artifact_pb.js";
export type { ArtifactUsage, GetLineageResponse, UploadResponse, WatchArtifactsResponse } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
export { EventType } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
