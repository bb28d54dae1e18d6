import { randomUUID } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, open, readdir, rename, rm, stat, type FileHandle } from "node:fs/promises";
import path from "node:path";
import { createBlake3 } from "../../blake3.ts";
import type { BlobLister, BlobSessions, BlobStore, BlobWriter, ByteRange } from "../../ports/blob-store.ts";

/**
 * A blob store in a local folder: the embedded default, for a first run with
 * nothing installed.
 *
 * Layout under `root`:
 *   incoming/<uuid>                         a blob being written; never read
 *   blobs/<tenant>/<d0d1>/<digest>.<uuid>   committed blobs, by content
 *
 * A writer appends to its incoming file and, on commit, fsyncs it and renames
 * it into place: rename is atomic on one file system, so a reader never sees a
 * partial blob. The uuid suffix gives every committed file one owner: when two
 * uploads of the same content race, the metadata store keeps one and the
 * other deletes its own file, never the winner's. Leftover incoming files from
 * a crash are removed at start-up.
 *
 * Upload sessions keep their parts in sessions/<ref>/<part number>, each
 * written to a temporary name and renamed, so a part is whole or absent and
 * survives restarts. Completing streams the parts in order through an
 * ordinary writer (hashing on the way) and removes the session folder.
 */
export async function createFsBlobStore(root: string): Promise<BlobStore & BlobLister & BlobSessions> {
  const incoming = path.join(root, "incoming");
  const sessions = path.join(root, "sessions");
  await rm(incoming, { recursive: true, force: true });
  await mkdir(incoming, { recursive: true });
  await mkdir(sessions, { recursive: true });
  await mkdir(path.join(root, "blobs"), { recursive: true });
  const sessionDir = (ref: string): string => {
    if (!/^[0-9a-f-]{36}$/.test(ref)) throw new Error(`not a session of this blob store: ${ref}`);
    return path.join(sessions, ref);
  };

  const keyPath = (key: string): string => {
    if (!/^blobs\/[^/]+\/[0-9a-f]{2}\/[0-9a-f]{64}\.[0-9a-f-]{36}$/.test(key) || key.includes("..")) {
      throw new Error(`not a key of this blob store: ${key}`);
    }
    return path.join(root, key);
  };

  const createWriter = async (tenantId: string): Promise<BlobWriter> => {
    const id = randomUUID();
    const tempPath = path.join(incoming, id);
    const file = await open(tempPath, "wx");
    return new FsBlobWriter(root, tenantId, id, tempPath, file);
  };

  return {
    createWriter,
    async beginSession() {
      const ref = randomUUID();
      await mkdir(sessionDir(ref));
      return { key: "", ref };
    },
    async putPart(_key, ref, partNumber, data) {
      const dir = sessionDir(ref);
      const temp = path.join(dir, `${partNumber}.${randomUUID()}.tmp`);
      const file = await open(temp, "wx");
      try {
        await file.writeFile(data);
        await file.sync();
      } finally {
        await file.close();
      }
      await rename(temp, path.join(dir, String(partNumber)));
      const hasher = createBlake3();
      hasher.update(data);
      return { etag: hasher.digestHex() };
    },
    async completeSession(tenantId, _key, ref, parts) {
      const dir = sessionDir(ref);
      const writer = await createWriter(tenantId);
      const hasher = createBlake3();
      let size = 0;
      try {
        for (const part of parts) {
          for await (const chunk of createReadStream(path.join(dir, String(part.partNumber)), { highWaterMark: 1024 * 1024 }) as AsyncIterable<Buffer>) {
            hasher.update(chunk);
            size += chunk.byteLength;
            await writer.write(chunk);
          }
        }
        const digest = hasher.digestHex();
        const key = await writer.commit(digest);
        await rm(dir, { recursive: true, force: true });
        return { key, size, digest };
      } catch (error) {
        await writer.abort();
        throw error;
      }
    },
    async abortSession(_key, ref) {
      // A part being written into the folder meanwhile makes a recursive rm fail with ENOTEMPTY: try again.
      await rm(sessionDir(ref), { recursive: true, force: true, maxRetries: 5, retryDelay: 20 });
    },
    async *read(key, range: ByteRange, signal) {
      if (range.length === 0) return;
      const stream = createReadStream(keyPath(key), {
        start: range.offset,
        end: range.offset + range.length - 1,
        highWaterMark: 256 * 1024,
        ...(signal ? { signal } : {}),
      });
      yield* stream as AsyncIterable<Uint8Array>;
    },
    async stat(key) {
      try {
        const info = await stat(keyPath(key));
        return { size: info.size };
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
        throw error;
      }
    },
    async delete(key) {
      await rm(keyPath(key), { force: true });
    },
    async ping() {
      await stat(root);
    },
    async *listBlobs() {
      for (const entry of await readdir(path.join(root, "blobs"), { recursive: true, withFileTypes: true })) {
        if (!entry.isFile()) continue;
        const full = path.join(entry.parentPath, entry.name);
        const key = path.relative(root, full).split(path.sep).join("/");
        const info = await stat(full).catch(() => undefined);
        if (info) yield { key, size: info.size, lastModified: info.mtime };
      }
    },
    async *listUnfinishedUploads() {
      for (const entry of await readdir(sessions, { withFileTypes: true })) {
        if (!entry.isDirectory()) continue;
        // The folder's mtime moves with every part stored: the last sign of life, a conservative start time.
        const info = await stat(path.join(sessions, entry.name)).catch(() => undefined);
        if (info) yield { key: "", ref: entry.name, startedAt: info.mtime };
      }
    },
    async close() {},
  };
}

class FsBlobWriter implements BlobWriter {
  #done = false;
  readonly #root: string;
  readonly #tenantId: string;
  readonly #id: string;
  readonly #tempPath: string;
  readonly #file: FileHandle;

  constructor(root: string, tenantId: string, id: string, tempPath: string, file: FileHandle) {
    this.#root = root;
    this.#tenantId = tenantId;
    this.#id = id;
    this.#tempPath = tempPath;
    this.#file = file;
  }

  async write(chunk: Uint8Array): Promise<void> {
    let written = 0;
    while (written < chunk.byteLength) {
      const { bytesWritten } = await this.#file.write(chunk, written, chunk.byteLength - written);
      written += bytesWritten;
    }
  }

  async commit(digest: string): Promise<string> {
    const key = `blobs/${encodeURIComponent(this.#tenantId)}/${digest.slice(0, 2)}/${digest}.${this.#id}`;
    const finalPath = path.join(this.#root, key);
    await this.#file.sync();
    await this.#file.close();
    this.#done = true;
    await mkdir(path.dirname(finalPath), { recursive: true });
    await rename(this.#tempPath, finalPath);
    return key;
  }

  async abort(): Promise<void> {
    if (!this.#done) {
      this.#done = true;
      await this.#file.close().catch(() => {});
    }
    await rm(this.#tempPath, { force: true });
  }
}
