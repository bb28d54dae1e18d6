/**
 * @artifactd/web-client — the browser client of artifactd.
 *
 *   const client = createWebArtifactClient({ baseUrl: location.origin, token });
 *   const controller = new AbortController();
 *   const { artifact } = await client.uploadFile(file, { kind: "dataset" }, {
 *     onProgress: ({ uploadedBytes, totalBytes }) => bar.value = uploadedBytes / totalBytes,
 *     signal: controller.signal,
 *   });
 *   img.src = (await client.downloadUrl(artifact.id)).url;
 */
export {
  createWebArtifactClient,
  type ArtifactFilterInit,
  type ContentOptions,
  type ListPage,
  type WebArtifactClient,
  type WebArtifactClientOptions,
} from "./web-artifact-client.ts";
export {
  DEFAULT_CONCURRENCY,
  DEFAULT_PART_SIZE,
  MAX_PART_SIZE,
  MIN_PART_SIZE,
  uploadFile,
  type ArtifactSpecInit,
  type UploadFileOptions,
  type UploadFileResult,
  type UploadProgress,
} from "./upload-file.ts";
export { createLocalUploadMemory, type UploadMemory } from "./upload-memory.ts";
export { hashFile, type FileDigests } from "./hash-file.ts";
export { DEFAULT_RETRY, type RetryPolicy } from "./retry.ts";
export type { Artifact } from "@artifactd/api/artifacts/v1/artifact_pb.js";
export { Status, Storage } from "@artifactd/api/artifacts/v1/artifact_pb.js";
