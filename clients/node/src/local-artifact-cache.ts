import { Blake3Hasher } from "@napi-rs/blake-hash";
import { createReadStream } from "node:fs";
import { mkdir, readdir, rename, rm, stat, utimes } from "node:fs/promises";
import os from "node:os";
import path from "node:path";

/**
 * The client's local cache of artifact content, for `asLocalFile`,
 * `asLocalDir` and staging. Content is immutable and addressed by its
 * digest, so an entry is keyed by tenant and BLAKE3 — never by id or by
 * credentials: two ids with the same content share one file, and one
 * tenant's entry is never handed to another.
 *
 * Layout under the cache folder:
 *
 *   <tenant>/blobs/<b0b1>/<blake3>   verified content, one file per digest
 *   <tenant>/dirs/<blake3>/          restored directory artifacts (by manifest digest)
 *   staging/                         stagePath / stageDir, and downloads in progress
 *
 * An entry only appears by rename once its content is verified, so a crash
 * never leaves a half-written entry under its final name. A hit re-hashes
 * the file before trusting it (native BLAKE3 runs at ~3.7 GB/s here, far
 * above any network), so a damaged or edited entry is caught and fetched
 * again. Recency is the entry's mtime, touched on each hit; eviction removes
 * the least recently used entries once the total passes the cap.
 */
export interface LocalArtifactCache {
  /** Final path of a content entry (it may not exist). */
  blobPath(tenantId: string, blake3: string): string;
  /** Final path of a restored directory entry (it may not exist). */
  dirPath(tenantId: string, manifestBlake3: string): string;
  /** Folder for staged files and in-progress downloads, on the cache's file system so renames into the cache are atomic. */
  stagingDir(): Promise<string>;
  /** True when `file` exists with exactly this size and BLAKE3; touches it (LRU) when so. */
  verifyEntry(file: string, expected: { size: number; blake3: string }): Promise<boolean>;
  /** Renames a verified file into its entry (replacing a damaged one) and returns the entry path. */
  adopt(verifiedFile: string, tenantId: string, blake3: string): Promise<string>;
  /** Removes least recently used entries until the cache holds at most maxBytes, never those in `keep`. */
  evict(keep: readonly string[]): Promise<void>;
}

export interface LocalArtifactCacheOptions {
  /** Default: `$XDG_CACHE_HOME/artifactd/artifacts`, else `~/.cache/artifactd/artifacts`. */
  readonly root?: string;
  /** Default 10 GiB. A single entry larger than the cap is kept until the next one arrives. */
  readonly maxBytes?: number;
}

const HEX_DIGEST = /^[0-9a-f]{64}$/;
const SAFE_TENANT = /^[A-Za-z0-9._-]{1,128}$/;

export function defaultCacheRoot(): string {
  return path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), ".cache"), "artifactd", "artifacts");
}

export function createLocalArtifactCache(options: LocalArtifactCacheOptions = {}): LocalArtifactCache {
  const root = path.resolve(options.root ?? defaultCacheRoot());
  const maxBytes = options.maxBytes ?? 10 * 1024 ** 3;
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 0) throw new TypeError(`cacheMaxBytes must be a whole number of bytes >= 0, got ${maxBytes}`);

  // Tenant ids and digests come from the server; they still must not be able to name a path outside the cache.
  const tenantDir = (tenantId: string) => {
    if (!SAFE_TENANT.test(tenantId) || tenantId === "." || tenantId === "..")
      throw new Error(`the server sent a tenant id the cache cannot use as a folder name: ${JSON.stringify(tenantId)}`);
    return path.join(root, tenantId);
  };
  const checkDigest = (blake3: string) => {
    if (!HEX_DIGEST.test(blake3)) throw new Error(`the server sent an artifact without a usable BLAKE3 digest: ${JSON.stringify(blake3)}`);
    return blake3;
  };

  const cache: LocalArtifactCache = {
    blobPath: (tenantId, blake3) => path.join(tenantDir(tenantId), "blobs", checkDigest(blake3).slice(0, 2), blake3),
    dirPath: (tenantId, manifestBlake3) => path.join(tenantDir(tenantId), "dirs", checkDigest(manifestBlake3)),

    async stagingDir() {
      const dir = path.join(root, "staging");
      await mkdir(dir, { recursive: true });
      return dir;
    },

    async verifyEntry(file, expected) {
      const info = await stat(file).catch(() => undefined);
      if (!info?.isFile() || info.size !== expected.size) return false;
      if ((await hashFile(file)) !== expected.blake3) return false;
      const now = new Date();
      await utimes(file, now, now).catch(() => {});
      return true;
    },

    async adopt(verifiedFile, tenantId, blake3) {
      const entry = cache.blobPath(tenantId, blake3);
      await mkdir(path.dirname(entry), { recursive: true });
      await rename(verifiedFile, entry);
      return entry;
    },

    async evict(keep) {
      const kept = new Set(keep.map((p) => path.resolve(p)));
      const entries = await listEntries(root);
      let total = entries.reduce((sum, e) => sum + e.size, 0);
      for (const entry of entries.sort((a, b) => a.lastUsed - b.lastUsed)) {
        if (total <= maxBytes) break;
        if (kept.has(entry.path)) continue;
        await rm(entry.path, { recursive: true, force: true });
        total -= entry.size;
      }
    },
  };
  return cache;
}

/** Lowercase hex BLAKE3 of a file, streamed (never read whole into memory). */
export async function hashFile(file: string): Promise<string> {
  const hasher = new Blake3Hasher();
  for await (const chunk of createReadStream(file, { highWaterMark: 1024 * 1024 })) hasher.update(chunk as Buffer);
  return hasher.digest("hex");
}

interface CacheEntry {
  readonly path: string;
  readonly size: number;
  readonly lastUsed: number;
}

/** Every content entry and restored directory under the cache, with its size and last use. */
async function listEntries(root: string): Promise<CacheEntry[]> {
  const entries: CacheEntry[] = [];
  for (const tenant of await readdir(root, { withFileTypes: true }).catch(() => [])) {
    if (!tenant.isDirectory() || tenant.name === "staging") continue;
    const blobs = path.join(root, tenant.name, "blobs");
    for (const file of await readdir(blobs, { recursive: true, withFileTypes: true }).catch(() => [])) {
      if (!file.isFile()) continue;
      const full = path.join(file.parentPath, file.name);
      const info = await stat(full).catch(() => undefined);
      if (info) entries.push({ path: full, size: info.size, lastUsed: info.mtimeMs });
    }
    const dirs = path.join(root, tenant.name, "dirs");
    for (const dir of await readdir(dirs, { withFileTypes: true }).catch(() => [])) {
      if (!dir.isDirectory()) continue;
      const full = path.join(dirs, dir.name);
      const info = await stat(full).catch(() => undefined);
      if (info) entries.push({ path: full, size: await folderSize(full), lastUsed: info.mtimeMs });
    }
  }
  return entries;
}

async function folderSize(dir: string): Promise<number> {
  let size = 0;
  for (const file of await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => [])) {
    if (file.isFile()) size += (await stat(path.join(file.parentPath, file.name)).catch(() => ({ size: 0 }))).size;
  }
  return size;
}
