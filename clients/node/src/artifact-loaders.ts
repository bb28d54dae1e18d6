import { Code, ConnectError } from "@connectrpc/connect";
import { randomBytes } from "node:crypto";
import { chmod, mkdir, rm } from "node:fs/promises";
import path from "node:path";
import { locatorToRequestId, type ArtifactLocator } from "./artifact-ref.ts";
import type { ArtifactTransfers } from "./artifact-transfers.ts";
import type { ArtifactSpecInit, TransferProgress } from "./artifact-writer.ts";
import { ArtifactIntegrityError } from "./blake3-verifier.ts";
import type { Artifact } from "@artifactd/api/artifacts/v1/artifact_pb.js";
import type { LocalArtifactCache } from "./local-artifact-cache.ts";

/** What the loaders need of the transfer core. */
export type LoaderTransport = Pick<ArtifactTransfers, "get" | "download" | "downloadToFile" | "uploadFile">;

export interface LoadOptions {
  readonly signal?: AbortSignal;
  /** Deadline of the download: DEADLINE_EXCEEDED past it. */
  readonly timeoutMs?: number;
  /** loadBytes / loadText / loadJson refuse larger content (RangeError) before reading it; default 256 MiB. */
  readonly maxBytes?: number;
}

export interface LocalFileOptions {
  readonly signal?: AbortSignal;
  readonly onProgress?: (progress: TransferProgress) => void;
}

/**
 * Reading artifacts into memory or onto local disk, and staging files for
 * tools that must write to a path first, over the transfer core. See
 * ArtifactClient for the contract of each function.
 *
 * loadBytes / loadText / loadJson read inline and blob artifacts alike
 * through one Download call: the service serves inline content on the same
 * stream (artifact first, then the bytes, hashed over their UTF-8 form), so
 * one round trip answers both kinds and inline content gets the same BLAKE3
 * check as a blob — where GetArtifact with include_content would cost blobs
 * a second call and leave inline content unchecked.
 */
export interface ArtifactLoaders {
  /** The content as bytes, BLAKE3-verified; RangeError above `maxBytes` (256 MiB) before any content is read. By id or `artifact://` URI. */
  loadBytes(locator: ArtifactLocator | string, options?: LoadOptions): Promise<Buffer>;
  /** The content as UTF-8 text (TypeError if it is not UTF-8). */
  loadText(locator: ArtifactLocator | string, options?: LoadOptions): Promise<string>;
  /** The content parsed as JSON (SyntaxError naming the artifact if it is not). */
  loadJson<T = unknown>(locator: ArtifactLocator | string, options?: LoadOptions): Promise<T>;
  /**
   * A local path holding the content, from the verified cache (keyed by tenant
   * and BLAKE3): a hit is re-hashed and reused without transferring content; a
   * miss or a damaged entry is downloaded to disk (never held in memory),
   * verified and kept. Treat the file as read-only. A deleted artifact is
   * NOT_FOUND even when cached.
   */
  asLocalFile(locator: ArtifactLocator | string, options?: LocalFileOptions): Promise<string>;
  /**
   * asLocalFile for an artifact the caller has already fetched and checked
   * live: no second metadata call. `deferEviction` leaves eviction to the
   * caller, who fetches many files and must not lose one to the cap before
   * it has been copied out.
   */
  localFileOf(artifact: Artifact, options?: LocalFileOptions & { deferEviction?: boolean }): Promise<string>;
  /** A fresh path (not created) in the cache's staging folder, for a tool that writes a file before it is saved. */
  stagePath(extension?: string): Promise<string>;
  /** A fresh, empty, created folder in the staging folder. */
  stageDir(suffix?: string): Promise<string>;
  /** Uploads a staged file; one made by stagePath then moves into the cache, so reading it back is a hit. A file elsewhere is left alone. */
  ingestFile(stagedPath: string, spec: ArtifactSpecInit, options?: LocalFileOptions): Promise<Artifact>;
  /** The live (not deleted) artifact, or NOT_FOUND as a download would answer. */
  getLive(id: string, signal?: AbortSignal): Promise<Artifact>;
}

const DEFAULT_MAX_LOAD_BYTES = 256 * 1024 * 1024;
const SAFE_SUFFIX = /^[A-Za-z0-9._-]{0,64}$/;

export function createArtifactLoaders(transfers: LoaderTransport, cache: LocalArtifactCache): ArtifactLoaders {
  const tempName = (what: string) => `${what}-${Date.now().toString(36)}-${randomBytes(6).toString("hex")}`;

  const getLive = async (id: string, signal?: AbortSignal) => {
    const artifact = await transfers.get(id, signal ? { signal } : {});
    // get shows deleted artifacts for audit; their content is gone, as Download says.
    if (artifact.deletedAt) throw new ConnectError(`artifact ${id} was deleted; its content cannot be read`, Code.NotFound);
    return artifact;
  };

  const loadBytes = async (locator: ArtifactLocator | string, options: LoadOptions = {}) => {
    const id = locatorToRequestId(locator);
    const maxBytes = options.maxBytes ?? DEFAULT_MAX_LOAD_BYTES;
    if (!Number.isSafeInteger(maxBytes) || maxBytes < 0) throw new TypeError(`loadBytes: maxBytes must be a whole number of bytes >= 0, got ${maxBytes}`);
    const { artifact, content } = await transfers.download(id, {
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
    });
    const iterator = content[Symbol.asyncIterator]();
    if (Number(artifact.sizeBytes) > maxBytes) {
      await iterator.return?.();
      throw new RangeError(
        `artifact ${id} holds ${artifact.sizeBytes} bytes, more than loadBytes takes (${maxBytes}); use asLocalFile or downloadToFile, or raise maxBytes`,
      );
    }
    const parts: Uint8Array[] = [];
    for (let next = await iterator.next(); !next.done; next = await iterator.next()) parts.push(next.value);
    return Buffer.concat(parts);
  };

  const localFileOf = async (artifact: Artifact, options: LocalFileOptions & { deferEviction?: boolean } = {}) => {
    const id = artifact.id;
    const expected = { size: Number(artifact.sizeBytes), blake3: artifact.blake3 };
    const entry = cache.blobPath(artifact.tenantId, artifact.blake3);
    if (await cache.verifyEntry(entry, expected)) return entry;
    // Missing, or damaged since it was stored: fetch it again.
    await rm(entry, { force: true });
    const temp = path.join(await cache.stagingDir(), tempName("download"));
    const downloaded = await transfers.downloadToFile(id, temp, {
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    });
    // downloadToFile verified the bytes against the digest the download announced; the entry is named after the one get gave.
    if (downloaded.blake3 !== artifact.blake3) {
      await rm(temp, { force: true });
      throw new ArtifactIntegrityError(`artifact ${id} was announced with BLAKE3 ${artifact.blake3} but downloaded as ${downloaded.blake3}`);
    }
    // Read-only, so a caller cannot edit the shared entry by accident (an edit would be caught by the next hit's hash anyway).
    await chmod(temp, 0o444);
    const adopted = await cache.adopt(temp, artifact.tenantId, artifact.blake3);
    if (!options.deferEviction) await cache.evict([adopted]);
    return adopted;
  };

  const loadText = async (locator: ArtifactLocator | string, options?: LoadOptions) => {
    const bytes = await loadBytes(locator, options);
    try {
      return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    } catch {
      throw new TypeError(`artifact ${locatorToRequestId(locator)} is not UTF-8 text; use loadBytes`);
    }
  };

  return {
    getLive,
    loadBytes,
    loadText,

    async loadJson<T>(locator: ArtifactLocator | string, options?: LoadOptions) {
      const text = await loadText(locator, options);
      try {
        return JSON.parse(text) as T;
      } catch (error) {
        throw new SyntaxError(`artifact ${locatorToRequestId(locator)} is not JSON: ${(error as Error).message}`);
      }
    },

    async asLocalFile(locator, options = {}) {
      const id = locatorToRequestId(locator);
      return localFileOf(await getLive(id, options.signal), options);
    },

    localFileOf,

    async stagePath(extension = "") {
      if (!SAFE_SUFFIX.test(extension))
        throw new TypeError(`stagePath: the extension ${JSON.stringify(extension)} may only hold letters, digits, ".", "_" and "-"`);
      return path.join(await cache.stagingDir(), tempName("stage") + extension);
    },

    async stageDir(suffix = "") {
      if (!SAFE_SUFFIX.test(suffix)) throw new TypeError(`stageDir: the suffix ${JSON.stringify(suffix)} may only hold letters, digits, ".", "_" and "-"`);
      const dir = path.join(await cache.stagingDir(), tempName("stage") + suffix);
      await mkdir(dir);
      return dir;
    },

    async ingestFile(stagedPath, spec, options = {}) {
      const { artifact } = await transfers.uploadFile(stagedPath, spec, options);
      const staging = await cache.stagingDir();
      // A file staged by stagePath moves into the cache, so reading the new artifact back is a cache hit;
      // a file elsewhere belongs to the caller and is left where it is.
      if (path.dirname(path.resolve(stagedPath)) === staging) {
        if (await cache.verifyEntry(stagedPath, { size: Number(artifact!.sizeBytes), blake3: artifact!.blake3 })) {
          await chmod(stagedPath, 0o444);
          await cache.adopt(stagedPath, artifact!.tenantId, artifact!.blake3);
          await cache.evict([cache.blobPath(artifact!.tenantId, artifact!.blake3)]);
        } else {
          await rm(stagedPath, { force: true });
        }
      }
      return artifact!;
    },
  };
}
