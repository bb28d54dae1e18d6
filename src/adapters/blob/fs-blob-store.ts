import { randomUUID } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, open, readdir, readFile, rename, rm, stat, writeFile, type FileHandle } from "node:fs/promises";
import path from "node:path";
import { blake3Hex, createBlake3 } from "../../blake3.ts";
import type { BlobLister, BlobSessions, BlobStore, BlobWriter, ByteRange } from "../../ports/blob-store.ts";
import { fromFsError, isMissingFile } from "./fs-errors.ts";
import { translateBlobStoreErrors } from "./translate-blob-store-errors.ts";
import { ensurePrivateDir } from "../../private-files.ts";

/**
 * A blob store in a local folder: the embedded default, for a first run with
 * nothing installed.
 *
 * Layout under `root`:
 *   incoming/<uuid>                         a blob being written; never read
 *   blobs/<tenant>/<u0u1>/<uuid>            committed blobs
 *   blobs/<tenant>/<d0d1>/<digest>.<uuid>   committed blobs of earlier versions (still read)
 *
 * A blob's key is chosen before its first byte (newKey), so the metadata
 * store can record it as an upload in flight. A writer appends to its
 * incoming file and, on commit, fsyncs it and renames it into place: rename
 * is atomic on one file system, so a reader never sees a partial blob. Every
 * key has one owner: when two uploads of the same content race, the metadata
 * store keeps one and the other's file is discarded, never the winner's.
 * Leftover incoming files from a crash are removed at start-up. The root and
 * its three folders are 0700 (made so at start-up whatever they were).
 *
 * Upload sessions keep their parts in sessions/<uuid of the key>/<part
 * number>.<etag>, each written to a temporary name and renamed, so a part is
 * whole or absent and survives restarts. The etag is the part's BLAKE3: a
 * part sent again with other bytes lands beside the earlier one, and the
 * complete takes exactly the version the session recorded. Completing
 * streams those parts in order through an ordinary writer into the session's
 * key and removes the session folder (with any versions not taken). Folders
 * of earlier versions named parts by number alone: such a part is taken if
 * its BLAKE3 is the recorded etag.
 */
const SESSION_KEY_FILE = "key";
const partFileName = (partNumber: number, etag: string): string => {
  if (!/^[0-9a-f]{64}$/.test(etag)) throw new Error(`not an etag of this blob store: ${etag.slice(0, 80)}`);
  return `${partNumber}.${etag}`;
};

export async function createFsBlobStore(root: string): Promise<BlobStore & BlobLister & BlobSessions> {
  const incoming = path.join(root, "incoming");
  const sessions = path.join(root, "sessions");
  await rm(incoming, { recursive: true, force: true });
  // Owner-only from the root down, even for folders an earlier version made 0755; what is made later
  // inside them (tenant and prefix folders, session folders) is reachable only through them.
  for (const dir of [root, incoming, sessions, path.join(root, "blobs")]) await ensurePrivateDir(dir);
  const sessionDir = (ref: string): string => {
    if (!/^[0-9a-f-]{36}$/.test(ref)) throw new Error(`not a session of this blob store: ${ref}`);
    return path.join(sessions, ref);
  };

  const keyPath = (key: string): string => {
    if (!/^blobs\/[^/]+\/[0-9a-f]{2}\/([0-9a-f]{64}\.)?[0-9a-f-]{36}$/.test(key) || key.includes("..")) {
      throw new Error(`not a key of this blob store: ${key}`);
    }
    return path.join(root, key);
  };
  /** The uuid that ends every key: names the key's incoming file and session folder. */
  const uuidOf = (key: string): string => keyPath(key).slice(-36);

  const createWriter = async (_tenantId: string, key: string): Promise<BlobWriter> => {
    const tempPath = path.join(incoming, uuidOf(key));
    const file = await open(tempPath, "wx");
    return new FsBlobWriter(key, keyPath(key), tempPath, file);
  };

  // What callers see of a full disk: ./fs-errors.ts.
  return translateBlobStoreErrors<BlobStore & BlobLister & BlobSessions>(
    {
      newKey(tenantId) {
        const id = randomUUID();
        return `blobs/${encodeURIComponent(tenantId)}/${id.slice(0, 2)}/${id}`;
      },
      createWriter,
      async beginSession(_tenantId, key) {
        const ref = uuidOf(key);
        await mkdir(sessionDir(ref));
        // The folder is named by the key's uuid; the key itself (with its tenant) is kept beside the parts.
        await writeFile(path.join(sessionDir(ref), SESSION_KEY_FILE), key);
        return { key, ref };
      },
      async putPart(_key, ref, partNumber, data) {
        const dir = sessionDir(ref);
        const etag = blake3Hex(data);
        const temp = path.join(dir, `${partNumber}.${randomUUID()}.tmp`);
        const file = await open(temp, "wx");
        try {
          await file.writeFile(data);
          await file.sync();
        } finally {
          await file.close();
        }
        await rename(temp, path.join(dir, partFileName(partNumber, etag)));
        return { etag };
      },
      async completeSession(tenantId, key, ref, parts) {
        const dir = sessionDir(ref);
        const writer = await createWriter(tenantId, key);
        let size = 0;
        try {
          for (const part of parts) {
            let file = path.join(dir, partFileName(part.partNumber, part.etag));
            // An earlier version's part, named by its number alone: hashed on the way, taken only if it is the recorded one.
            const legacy = !(await stat(file).catch(() => undefined));
            if (legacy) file = path.join(dir, String(part.partNumber));
            const hasher = legacy ? createBlake3() : undefined;
            for await (const chunk of createReadStream(file, { highWaterMark: 1024 * 1024 }) as AsyncIterable<Buffer>) {
              hasher?.update(chunk);
              size += chunk.byteLength;
              await writer.write(chunk);
            }
            if (hasher && hasher.digestHex() !== part.etag) throw new Error(`part ${part.partNumber} of upload session ${ref} is not the one recorded`);
          }
          // The service verifies the content's digest itself (src/service/session-digests.ts); the writer ignores it.
          const key = await writer.commit("");
          await rm(dir, { recursive: true, force: true });
          return { key, size };
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
          if (isMissingFile(error)) return undefined;
          throw error;
        }
      },
      async delete(key) {
        await rm(keyPath(key), { force: true });
      },
      async discard(key) {
        const id = uuidOf(key);
        await rm(path.join(incoming, id), { force: true });
        await rm(sessionDir(id), { recursive: true, force: true, maxRetries: 5, retryDelay: 20 });
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
          if (!info) continue;
          const key = await readFile(path.join(sessions, entry.name, SESSION_KEY_FILE), "utf8").catch(() => "");
          yield { key, ref: entry.name, startedAt: info.mtime };
        }
      },
      async close() {},
    },
    { translate: fromFsError, isMissing: isMissingFile },
  );
}

class FsBlobWriter implements BlobWriter {
  #done = false;
  readonly key: string;
  readonly #finalPath: string;
  readonly #tempPath: string;
  readonly #file: FileHandle;

  constructor(key: string, finalPath: string, tempPath: string, file: FileHandle) {
    this.key = key;
    this.#finalPath = finalPath;
    this.#tempPath = tempPath;
    this.#file = file;
  }

  /** One writev per call, so a message's pieces cost one system call, not one each; a short write goes on with the rest. */
  async write(content: Uint8Array | readonly Uint8Array[]): Promise<void> {
    let pieces = content instanceof Uint8Array ? [content] : content.filter((piece) => piece.byteLength > 0);
    while (pieces.length > 0) {
      let { bytesWritten } = await this.#file.writev(pieces);
      while (pieces.length > 0 && bytesWritten >= pieces[0]!.byteLength) {
        bytesWritten -= pieces[0]!.byteLength;
        pieces = pieces.slice(1);
      }
      if (bytesWritten > 0) pieces = [pieces[0]!.subarray(bytesWritten), ...pieces.slice(1)];
    }
  }

  async commit(_digest: string): Promise<string> {
    await this.#file.sync();
    await this.#file.close();
    this.#done = true;
    await mkdir(path.dirname(this.#finalPath), { recursive: true });
    await rename(this.#tempPath, this.#finalPath);
    return this.key;
  }

  async abort(): Promise<void> {
    if (!this.#done) {
      this.#done = true;
      await this.#file.close().catch(() => {});
    }
    await rm(this.#tempPath, { force: true });
  }
}
