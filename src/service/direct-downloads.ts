import { DIRECT_DOWNLOAD_UNAVAILABLE, type DirectDownloadUnavailableReason } from "@artifactd/api";
import type { Artifact, Caller } from "../artifact.ts";
import { ArtifactError, invalidArgument, notFound } from "../artifact-error.ts";
import { hasDirectReads, type BlobStore } from "../ports/blob-store.ts";
import type { ArtifactQueries } from "../ports/artifact-queries.ts";
import type { TenantBlobIndex } from "../ports/tenant-blob-index.ts";
import { readableBlobOf } from "./download-artifact.ts";
import { requireArtifactId } from "./validate-spec.ts";

/**
 * Direct-to-storage downloads: the service authorizes a read and hands the
 * client a presigned GET of the blob store (ports/blob-store.ts DirectReads),
 * so the content goes from the store to the client without passing through
 * the server; the client verifies BLAKE3 itself, as it does on the relayed
 * path (the digest comes with the link).
 *
 * Everything Download checks is checked here, at the moment the link is
 * made: the token (every scope may read), the tenant, deletion (NOT_FOUND),
 * the range (OUT_OF_RANGE past the end, INVALID_ARGUMENT when malformed),
 * a blob marked corrupt (DATA_LOSS). After that the link is the store's
 * alone: it reads that one range of that one object until it expires, so
 * links live at most DIRECT_URL_MAX_TTL_SECONDS. A soft delete stops new
 * links at once; one already handed out works to its end.
 *
 * Not offered (FAILED_PRECONDITION, with the trailer
 * DIRECT_DOWNLOAD_UNAVAILABLE saying why, so a client can tell "never on this
 * server" from "not for this artifact"): a blob store without DirectReads
 * (the folder store, or S3 without ARTIFACTD_DIRECT_DOWNLOAD_ENDPOINT), or
 * content stored inline in the database.
 */
export const DIRECT_URL_MAX_TTL_SECONDS = 60;

export interface DirectDownloadDeps {
  readonly metadata: ArtifactQueries & TenantBlobIndex;
  readonly blobs: BlobStore;
}

export interface DirectDownloadRequest {
  readonly id: string;
  /** 0: DIRECT_URL_MAX_TTL_SECONDS; more is cut to it. */
  readonly ttlSeconds: number;
  readonly offset: number;
  /** undefined: to the end. */
  readonly length: number | undefined;
}

export interface DirectDownloadLink {
  /** Empty when there is nothing to read (length 0): a store cannot sign an empty range. */
  readonly url: string;
  /** What the GET must carry (the signed range). */
  readonly headers: Readonly<Record<string, string>>;
  readonly expiresAt: Date;
  /** Without inline content. */
  readonly artifact: Artifact;
  readonly offset: number;
  /** The bytes the link reads: the request's length cut at the end. */
  readonly length: number;
}

export async function createDirectDownloadUrl(deps: DirectDownloadDeps, caller: Caller, request: DirectDownloadRequest): Promise<DirectDownloadLink> {
  const id = requireArtifactId("id", request.id);
  if (!Number.isInteger(request.ttlSeconds) || request.ttlSeconds < 0) {
    throw invalidArgument(`ttl_seconds ${request.ttlSeconds} is not valid: give seconds >= 1 (direct links live at most ${DIRECT_URL_MAX_TTL_SECONDS}), or 0`);
  }
  if (!Number.isSafeInteger(request.offset) || request.offset < 0) throw invalidArgument(`offset ${request.offset} is not valid: give a byte offset >= 0`);
  if (request.length !== undefined && (!Number.isSafeInteger(request.length) || request.length < 0)) {
    throw invalidArgument(`length ${request.length} is not valid: give a byte count >= 0, or leave it unset to read to the end`);
  }
  const ttl = Math.min(request.ttlSeconds || DIRECT_URL_MAX_TTL_SECONDS, DIRECT_URL_MAX_TTL_SECONDS);
  const artifact = await deps.metadata.getArtifact(caller.tenantId, id);
  if (!artifact || artifact.deletedAt) throw notFound(`artifact ${id} does not exist${artifact ? " any more (it was deleted)" : ""}`);
  if (request.offset > artifact.sizeBytes) {
    throw new ArtifactError("out_of_range", `offset ${request.offset} is past the end of artifact ${id} (${artifact.sizeBytes} bytes)`);
  }
  // Judged after the artifact, so that another tenant's id is NOT_FOUND whatever the server offers.
  if (!hasDirectReads(deps.blobs)) {
    throw new ArtifactError(
      "failed_precondition",
      "this server does not offer direct-to-storage downloads (ARTIFACTD_DIRECT_DOWNLOAD_ENDPOINT is not set): download through the service",
      { trailers: { [DIRECT_DOWNLOAD_UNAVAILABLE]: "server" satisfies DirectDownloadUnavailableReason } },
    );
  }
  if (artifact.storage === "inline") {
    throw new ArtifactError("failed_precondition", `artifact ${id} is stored inline in the database, not in the blob store: download it through the service`, {
      trailers: { [DIRECT_DOWNLOAD_UNAVAILABLE]: "inline" satisfies DirectDownloadUnavailableReason },
    });
  }
  const length = Math.min(request.length ?? Infinity, artifact.sizeBytes - request.offset);
  const answer = { artifact: { ...artifact, inlineContent: undefined }, offset: request.offset, length };
  if (length === 0) return { ...answer, url: "", headers: {}, expiresAt: new Date(Date.now() + ttl * 1000) };
  const storageKey = await readableBlobOf(deps.metadata, caller, artifact);
  const link = await deps.blobs.presignRead(storageKey, { offset: request.offset, length }, ttl);
  return { ...answer, ...link };
}
