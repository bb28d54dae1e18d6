/**
 * @artifactd/client — the typed Node client of artifactd.
 *
 *   const client = createArtifactClient({ baseUrl: "http://127.0.0.1:8080", token });
 *   await using writer = client.openWriter({ kind: "model", name: "resnet.pt" });
 *   await writer.write(bytes);
 *   writer.addMetrics({ accuracy: 0.93 });
 *   const { artifact } = await writer.commit();
 */
export { createArtifactClient, type ArtifactClient, type ArtifactClientOptions, type ArtifactFilterInit, type DownloadOptions } from "./artifact-client.ts";
export { ArtifactWriter, type ArtifactSpecInit, type WriterOptions } from "./artifact-writer.ts";
export { ArtifactIntegrityError, Blake3Verifier } from "./blake3-verifier.ts";
export type { Artifact } from "./gen/artifacts/v1/artifact_pb.js";
export { Status, Storage } from "./gen/artifacts/v1/artifact_pb.js";
