import { randomUUID } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, open, readdir, rename, rm, stat, type FileHandle } from "node:fs/promises";
import path from "node:path";
import type { BlobLister, BlobStore, BlobWriter, ByteRange } from "../../ports/blob-store.ts";

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
 */
export async function createFsBlobStore(root: string): Promise<BlobStore & BlobLister> {
  const incoming = path.join(root, "incoming");
  await rm(incoming, { recursive: true, force: true });
  await mkdir(incoming, { recursive: true });
  await mkdir(path.join(root, "blobs"), { recursive: true });

  const keyPath = (key: string): string => {
    if (!/^blobs\/[^/]+\/[0-9a-f]{2}\/[0-9a-f]{64}\.[0-9a-f-]{36}$/.test(key) || key.includes("..")) {
      throw new Error(`not a key of this blob store: ${key}`);
    }
    return path.join(root, key);
  };

  return {
    async createWriter(tenantId) {
      const id = randomUUID();
      const tempPath = path.join(incoming, id);
      const file = await open(tempPath, "wx");
      return new FsBlobWriter(root, tenantId, id, tempPath, file);
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
