/**
 * BLAKE3 of a file, computed in a Web Worker (blake3-worker.ts) so hashing a
 * large file never blocks the page.
 */
export interface FileDigests {
  /** BLAKE3-256 of the whole content, 64 lowercase hex. */
  readonly digest: string;
  /** BLAKE3 of each part of `partSize` bytes, in order. */
  readonly partDigests: readonly string[];
  readonly partSize: number;
  /** BLAKE3 of `${salt}\n${digest}`: a fixed-length key for what the caller identifies by salt. */
  readonly keyDigest: string;
}

export interface HashFileOptions {
  readonly partSize: number;
  readonly salt: string;
  readonly signal?: AbortSignal | undefined;
  readonly onProgress?: ((hashedBytes: number) => void) | undefined;
}

/** The messages between the page and the worker. */
export interface HashRequest {
  readonly file: Blob;
  readonly partSize: number;
  readonly salt: string;
}
export type HashWorkerMessage =
  | { readonly type: "progress"; readonly hashedBytes: number }
  | { readonly type: "done"; readonly digest: string; readonly partDigests: string[]; readonly keyDigest: string }
  | { readonly type: "error"; readonly message: string };

export function hashFile(file: Blob, options: HashFileOptions): Promise<FileDigests> {
  const { signal } = options;
  signal?.throwIfAborted();
  return new Promise((resolve, reject) => {
    // "./blake3-worker.js", not ".ts": the same line must hold in the npm package, whose compiled files sit side by side
    // (nothing rewrites a URL's text), while Vite, building the page from source, resolves it to blake3-worker.ts.
    const worker = new Worker(new URL("./blake3-worker.js", import.meta.url), { type: "module", name: "artifactd-blake3" });
    const stop = () => {
      worker.terminate();
      signal?.removeEventListener("abort", onAbort);
    };
    const onAbort = () => {
      stop();
      reject(signal!.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    worker.onmessage = (event: MessageEvent<HashWorkerMessage>) => {
      const message = event.data;
      if (message.type === "progress") {
        options.onProgress?.(message.hashedBytes);
        return;
      }
      stop();
      if (message.type === "error") reject(new Error(`hashing ${file instanceof File ? file.name : "the file"} failed: ${message.message}`));
      else resolve({ digest: message.digest, partDigests: message.partDigests, partSize: options.partSize, keyDigest: message.keyDigest });
    };
    worker.onerror = (event) => {
      stop();
      reject(new Error(`the hashing worker failed to run: ${event.message || "it could not be loaded (is the page's Content-Security-Policy blocking it?)"}`));
    };
    const request: HashRequest = { file, partSize: options.partSize, salt: options.salt };
    worker.postMessage(request);
  });
}
